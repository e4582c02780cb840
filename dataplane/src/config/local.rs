//! Local mode's configuration source: a folder of manifests, reloaded when it changes.
//!
//! The whole folder is watched recursively rather than each file, because editors and
//! Kubernetes ConfigMap mounts replace files by renaming a new one over the old, which a watch
//! on the old file would never report.

use super::debounce::next_settled_change;
use super::loaded::{LoadedConfig, Problem};
use super::manifests::{ManifestFile, SchemaRules, parse_manifests, read_manifests};
use anyhow::Context;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A folder (or a single file) of manifests.
pub struct LocalSource {
    path: PathBuf,
    ignored: Vec<PathBuf>,
}

/// What one read of the folder saw, to tell a real change from a file merely touched.
type FolderContents = (Vec<ManifestFile>, Vec<Problem>);

impl LocalSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ignored: Vec::new(),
        }
    }

    /// Ignore changes under `path`: the data dir, when it sits inside the manifests folder
    /// (`--manifests . --data-dir ./.data`), changes with every event stored.
    pub fn ignoring(mut self, path: impl Into<PathBuf>) -> Self {
        self.ignored.push(path.into());
        self
    }

    /// Send the folder's configuration now, then after every change that alters it.
    pub async fn run(self, updates: mpsc::Sender<LoadedConfig>) -> anyhow::Result<()> {
        // Event paths are built from the watched path: compare canonical forms.
        let canonical = |p: &PathBuf| p.canonicalize().unwrap_or_else(|_| p.clone());
        let path = canonical(&self.path);
        let ignored: Vec<PathBuf> = self.ignored.iter().map(canonical).collect();
        // A single file is replaced by rename, which a watch on the file itself would not
        // outlive: watch its folder and keep only the file's events.
        let (watched, mode, only) = match (path.is_file(), path.parent()) {
            (true, Some(parent)) => (
                parent.to_path_buf(),
                RecursiveMode::NonRecursive,
                Some(path.clone()),
            ),
            _ => (path.clone(), RecursiveMode::Recursive, None),
        };

        // One slot: signals coalesce, a burst of events is one pending reload.
        let (changes_tx, mut changes) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            match event {
                Ok(event) if is_change(&event) && concerns(&event, only.as_deref(), &ignored) => {
                    // Full means a reload is already pending; it will see this change too.
                    let _ = changes_tx.try_send(());
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "watching the manifests failed"),
            }
        })
        .context("cannot create a file watcher")?;
        // Watch before the first read, so a change made during that read is not missed.
        watcher
            .watch(&watched, mode)
            .with_context(|| format!("cannot watch {}", watched.display()))?;

        let mut last = read(self.path.clone()).await?;
        if updates.send(parse(&last).await?).await.is_err() {
            return Ok(());
        }
        while next_settled_change(&mut changes).await {
            let contents = read(self.path.clone()).await?;
            if contents == last {
                debug!(path = %self.path.display(), "manifests touched but unchanged; not reloading");
                continue;
            }
            last = contents;
            if updates.send(parse(&last).await?).await.is_err() {
                break;
            }
        }
        // `watcher` lives until here: dropping it stops the watch.
        drop(watcher);
        Ok(())
    }
}

/// Whether a file-system event can change what the folder holds. Reads are not changes (our
/// own reads would otherwise trigger reloads forever), except the close of a file written to.
fn is_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether an event touches the manifests: the one file watched, if any, and anything but
/// the ignored folders. An event without paths (a rescan request) always does.
fn concerns(event: &Event, only: Option<&Path>, ignored: &[PathBuf]) -> bool {
    if event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|path| {
        only.is_none_or(|file| path == file) && !ignored.iter().any(|i| path.starts_with(i))
    })
}

// File reading and YAML parsing block; they run off the async workers.
async fn read(path: PathBuf) -> anyhow::Result<FolderContents> {
    tokio::task::spawn_blocking(move || read_manifests(&path))
        .await
        .context("reading the manifests panicked")
}

async fn parse(contents: &FolderContents) -> anyhow::Result<LoadedConfig> {
    let (files, read_problems) = contents.clone();
    tokio::task::spawn_blocking(move || {
        let mut loaded = parse_manifests(&files, &SchemaRules::new());
        loaded.problems.splice(0..0, read_problems);
        loaded
    })
    .await
    .context("parsing the manifests panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TOPIC: &str = "apiVersion: gridline.dev/v1alpha1
kind: Topic
metadata:
  name: orders
spec:
  namespaceRef:
    name: ns1
";

    async fn next(updates: &mut mpsc::Receiver<LoadedConfig>) -> LoadedConfig {
        tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("an update within 5 s")
            .expect("the source is running")
    }

    #[tokio::test]
    async fn the_folder_is_sent_at_start_and_again_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), TOPIC).unwrap();
        let (tx, mut updates) = mpsc::channel(1);
        let source = tokio::spawn(LocalSource::new(dir.path()).run(tx));

        assert_eq!(next(&mut updates).await.objects.topics.len(), 1);
        std::fs::write(
            dir.path().join("b.yaml"),
            TOPIC.replace("orders", "invoices"),
        )
        .unwrap();
        assert_eq!(next(&mut updates).await.objects.topics.len(), 2);

        drop(updates);
        source.abort();
    }

    #[tokio::test]
    async fn a_file_replaced_by_rename_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/a.yaml");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, TOPIC).unwrap();
        let (tx, mut updates) = mpsc::channel(1);
        let source = tokio::spawn(LocalSource::new(dir.path()).run(tx));
        next(&mut updates).await;

        let temporary = dir.path().join("sub/.a.yaml.tmp");
        std::fs::write(
            &temporary,
            format!("{TOPIC}---\n{}", TOPIC.replace("orders", "x2x")),
        )
        .unwrap();
        std::fs::rename(&temporary, &target).unwrap();
        let loaded = next(&mut updates).await;
        assert_eq!(loaded.objects.topics.len(), 2, "{:?}", loaded.problems);

        source.abort();
    }

    #[tokio::test]
    async fn a_single_file_replaced_by_rename_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("all.yaml");
        std::fs::write(&target, TOPIC).unwrap();
        let (tx, mut updates) = mpsc::channel(1);
        let source = tokio::spawn(LocalSource::new(&target).run(tx));
        assert_eq!(next(&mut updates).await.objects.topics.len(), 1);

        let temporary = dir.path().join("all.yaml.new");
        std::fs::write(
            &temporary,
            format!("{TOPIC}---\n{}", TOPIC.replace("orders", "invoices")),
        )
        .unwrap();
        std::fs::rename(&temporary, &target).unwrap();
        assert_eq!(next(&mut updates).await.objects.topics.len(), 2);

        source.abort();
    }

    #[test]
    fn changes_in_ignored_folders_and_other_files_do_not_concern_the_manifests() {
        let event = |path: &str| Event::new(EventKind::Any).add_path(PathBuf::from(path));
        let ignored = [PathBuf::from("/m/.data")];
        assert!(concerns(&event("/m/a.yaml"), None, &ignored));
        assert!(!concerns(&event("/m/.data/topic/0001.log"), None, &ignored));
        assert!(concerns(
            &event("/m/a.yaml"),
            Some(Path::new("/m/a.yaml")),
            &[]
        ));
        assert!(!concerns(
            &event("/m/b.yaml"),
            Some(Path::new("/m/a.yaml")),
            &[]
        ));
        assert!(concerns(&Event::new(EventKind::Any), None, &ignored));
    }

    #[test]
    fn reads_are_not_changes() {
        let open = Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)));
        let closed_after_read = Event::new(EventKind::Access(AccessKind::Close(AccessMode::Read)));
        let closed_after_write =
            Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write)));
        assert!(!is_change(&open));
        assert!(!is_change(&closed_after_read));
        assert!(is_change(&closed_after_write));
        assert!(is_change(&Event::new(EventKind::Remove(
            notify::event::RemoveKind::File
        ))));
    }
}
