//! The change notification the operator's status pass runs on: the Kubernetes namespace of
//! each change, coalesced in a dirty set.
//!
//! Not every watch event is a change: writing an object's status bumps its resourceVersion
//! but not its generation, so the operator's own status writes would otherwise trigger
//! another pass for every object written. Each watch remembers a fingerprint per object
//! (the generation for the Gridline kinds, the resourceVersion for Secrets, whatever its
//! caller chooses for other kinds) and marks the object's namespace only when it moves.

use kube::Resource;
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Kubernetes namespaces with changes not yet processed.
#[derive(Debug, Default)]
pub struct Dirty {
    namespaces: Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Dirty {
    pub fn mark(&self, k8s_namespace: &str) {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if !namespaces.contains(k8s_namespace) {
            namespaces.insert(k8s_namespace.to_string());
        }
        drop(namespaces);
        // A permit is stored when nobody waits, so a mark during a pass is not lost.
        self.notify.notify_one();
    }

    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// What a status depends on in a Gridline object: its generation (a status write does not
/// move it), and whether it is being deleted.
pub fn generation<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{:?}/{}",
        meta.generation,
        meta.deletion_timestamp.is_some()
    )
}

/// Secrets have no generation: a rotated key only shows in the resourceVersion.
pub fn resource_version<K: Resource>(object: &K) -> String {
    object.meta().resource_version.clone().unwrap_or_default()
}

/// Turns one watch's events into dirty marks, skipping those that change nothing the status
/// depends on.
pub struct Changes<K> {
    fingerprint: fn(&K) -> String,
    dirty: Arc<Dirty>,
    /// uid → (Kubernetes namespace, fingerprint).
    seen: HashMap<String, (String, String)>,
    /// During a re-list: the uids listed so far.
    relisted: Option<HashSet<String>>,
}

impl<K: Resource> Changes<K> {
    pub fn new(fingerprint: fn(&K) -> String, dirty: Arc<Dirty>) -> Self {
        Self {
            fingerprint,
            dirty,
            seen: HashMap::new(),
            relisted: None,
        }
    }

    pub fn observe(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(relisted) = self.relisted.as_mut() {
                    relisted.insert(uid(object));
                }
                self.applied(object);
            }
            watcher::Event::Apply(object) => self.applied(object),
            watcher::Event::Delete(object) => {
                self.seen.remove(&uid(object));
                self.dirty.mark(&namespace(object));
            }
            watcher::Event::InitDone => {
                // Objects deleted while the watch was down produce no Delete: whatever was
                // not re-listed is gone, and its namespace must be looked at again.
                let relisted = self.relisted.take().unwrap_or_default();
                let dirty = &self.dirty;
                self.seen.retain(|uid, (ns, _)| {
                    let kept = relisted.contains(uid);
                    if !kept {
                        dirty.mark(ns);
                    }
                    kept
                });
            }
        }
    }

    fn applied(&mut self, object: &K) {
        let k8s_namespace = namespace(object);
        let fingerprint = (self.fingerprint)(object);
        let previous = self
            .seen
            .insert(uid(object), (k8s_namespace.clone(), fingerprint.clone()));
        if previous.is_none_or(|(_, before)| before != fingerprint) {
            self.dirty.mark(&k8s_namespace);
        }
    }

    /// How many objects this watch remembers.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

fn uid<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    meta.uid
        .clone()
        .unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name))
}

fn namespace<K: Resource>(object: &K) -> String {
    object.meta().namespace.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{K8S_NS, secret, topic};
    use gridline_crds::types::Topic;

    fn changes() -> (Changes<Topic>, Arc<Dirty>) {
        let dirty = Arc::new(Dirty::default());
        (Changes::new(generation, dirty.clone()), dirty)
    }

    #[test]
    fn a_new_object_or_a_new_generation_marks_its_namespace() {
        let (mut changes, dirty) = changes();
        let mut t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        assert_eq!(dirty.take(), BTreeSet::from([K8S_NS.to_string()]));
        t.metadata.generation = Some(2);
        changes.observe(&watcher::Event::Apply(t));
        assert_eq!(dirty.take().len(), 1);
    }

    #[test]
    fn a_status_write_marks_nothing() {
        let (mut changes, dirty) = changes();
        let mut t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        dirty.take();
        t.metadata.resource_version = Some("2".into());
        t.status = Some(Default::default());
        changes.observe(&watcher::Event::Apply(t));
        assert!(dirty.take().is_empty());
    }

    #[test]
    fn a_deletion_marks_its_namespace() {
        let (mut changes, dirty) = changes();
        let t = topic("placed", "orders");
        changes.observe(&watcher::Event::Apply(t.clone()));
        dirty.take();
        changes.observe(&watcher::Event::Delete(t));
        assert_eq!(dirty.take().len(), 1);
    }

    #[test]
    fn an_object_missing_from_a_relist_counts_as_deleted() {
        let (mut changes, dirty) = changes();
        let kept = topic("kept", "orders");
        changes.observe(&watcher::Event::Apply(kept.clone()));
        changes.observe(&watcher::Event::Apply(topic("gone", "orders")));
        dirty.take();
        changes.observe(&watcher::Event::Init);
        changes.observe(&watcher::Event::InitApply(kept));
        assert!(
            dirty.take().is_empty(),
            "an unchanged object re-listed is no change"
        );
        changes.observe(&watcher::Event::InitDone);
        assert_eq!(dirty.take().len(), 1);
        assert_eq!(changes.remembered(), 1);
    }

    #[test]
    fn any_new_version_of_a_secret_marks_its_namespace() {
        // Secrets have no generation: a rotated key only shows in the resourceVersion.
        let dirty = Arc::new(Dirty::default());
        let mut changes = Changes::new(resource_version, dirty.clone());
        changes.observe(&watcher::Event::Apply(secret("keys", "1")));
        assert_eq!(dirty.take().len(), 1);
        changes.observe(&watcher::Event::Apply(secret("keys", "1")));
        assert!(dirty.take().is_empty());
        changes.observe(&watcher::Event::Apply(secret("keys", "2")));
        assert_eq!(dirty.take(), BTreeSet::from([K8S_NS.to_string()]));
    }

    #[tokio::test]
    async fn a_mark_made_while_nobody_waits_is_not_lost() {
        let dirty = Dirty::default();
        dirty.mark(K8S_NS);
        tokio::time::timeout(std::time::Duration::from_secs(5), dirty.changed())
            .await
            .expect("the stored permit wakes the next waiter");
        assert_eq!(dirty.take(), BTreeSet::from([K8S_NS.to_string()]));
        assert!(dirty.take().is_empty());
    }
}
