//! The Snapshot being served, and the rule for replacing it.
//!
//! Every subsystem reads the current [`Snapshot`] through a [`SharedSnapshot`]: a lock-free
//! `ArcSwap`, so readers never wait for a reload and a reload never waits for readers. Only
//! the [`Applier`] writes it, one configuration load at a time.

use crate::config::select::{NamespaceSelection, select};
use crate::config::{LoadedConfig, Problem};
use crate::metrics::{Metrics, ReloadResult};
use arc_swap::ArcSwap;
use gridline_crds::model::{Snapshot, compile_all};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

/// Whether the data plane can serve traffic, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// A Snapshot with a Namespace is served.
    Ready { namespace: String },
    /// Nothing useful is served; the reason is for people (it is shown by `/readyz`).
    NotReady { reason: String },
}

/// The Snapshot every subsystem reads. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct SharedSnapshot {
    inner: Arc<Shared>,
}

struct Shared {
    snapshot: ArcSwap<Snapshot>,
    readiness: ArcSwap<Readiness>,
    /// Bumped after each Snapshot is served: readers that follow the configuration (the MQTT
    /// listeners and connections, lifecycle events) wait on it instead of polling.
    served: watch::Sender<u64>,
}

impl SharedSnapshot {
    /// An empty Snapshot, not ready until the first configuration is applied.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                readiness: ArcSwap::from_pointee(Readiness::NotReady {
                    reason: "no configuration loaded yet".into(),
                }),
                served: watch::Sender::new(0),
            }),
        }
    }

    /// The Snapshot served now. Hold it for the length of one request or one decision, then
    /// load again: a held `Arc` keeps an old Snapshot alive.
    pub fn load(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Whether a Namespace is served.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.inner.readiness.load_full()
    }

    /// Changes (`changed()` resolves) each time a new Snapshot is served; `load` then
    /// returns it or a later one.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.served.subscribe()
    }

    /// Resolves once a Namespace is served (at once if one is).
    pub async fn ready(&self) {
        let mut changes = self.changes();
        let _ = changes
            .wait_for(|_| matches!(*self.readiness(), Readiness::Ready { .. }))
            .await;
    }

    fn publish(&self, snapshot: Arc<Snapshot>, readiness: Readiness) {
        self.inner.snapshot.store(snapshot);
        self.inner.readiness.store(Arc::new(readiness));
        self.inner.served.send_modify(|generation| *generation += 1);
    }
}

impl Default for SharedSnapshot {
    fn default() -> Self {
        Self::new()
    }
}

/// What to do with a reload that has problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadPolicy {
    /// Keep serving the previous Snapshot until the whole configuration is clean. For a folder
    /// of manifests: a half-saved edit must not take half the configuration away.
    AllOrNothing,
    /// Serve whatever compiles, leaving the objects in error out. For Kubernetes, where the
    /// API server has already checked each object and one tenant's broken object must not
    /// freeze every other change in the namespace.
    ServeValid,
}

/// The result of applying one configuration load.
#[derive(Debug)]
pub enum Outcome {
    /// The new Snapshot is served. Objects with problems, if any, were left out.
    Applied { problems: Vec<Problem> },
    /// The previous Snapshot is still served.
    Rejected { problems: Vec<Problem> },
}

/// A configuration that cannot be served at all, even at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FatalConfigError(pub String);

/// Told of every Snapshot the data plane is about to serve (see [`Applier::on_apply`]).
pub type ApplyHook = Box<dyn Fn(Arc<Snapshot>) + Send>;

/// Compiles each configuration load and decides whether it replaces the served Snapshot.
pub struct Applier {
    shared: SharedSnapshot,
    metrics: Arc<Metrics>,
    selection: NamespaceSelection,
    policy: ReloadPolicy,
    started: bool,
    hooks: Vec<ApplyHook>,
}

impl Applier {
    pub fn new(
        shared: SharedSnapshot,
        metrics: Arc<Metrics>,
        selection: NamespaceSelection,
        policy: ReloadPolicy,
    ) -> Self {
        Self {
            shared,
            metrics,
            selection,
            policy,
            started: false,
            hooks: Vec::new(),
        }
    }

    /// Hand every Snapshot to `hook` before it is served (the first one included): a
    /// subsystem with state of its own (the event store) sets it up before any request can
    /// name what it holds. The hook runs on the applier's task, so it must not block.
    pub fn on_apply(mut self, hook: impl Fn(Arc<Snapshot>) + Send + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Apply one load. The first load is the start-up configuration: whatever compiles is
    /// served, so a data plane with one bad object still starts. Later loads follow the
    /// [`ReloadPolicy`]. Every problem is logged.
    pub fn apply(&mut self, loaded: LoadedConfig) -> Result<Outcome, FatalConfigError> {
        let first = !self.started;
        let mut problems = loaded.problems.clone();

        // Every Namespace of the configuration is compiled, not only the one served: an edit
        // that leaves an object dangling (a namespaceRef that names nothing) must be reported,
        // and in a folder it makes the whole folder invalid.
        let (mut snapshots, errors) = compile_all(&loaded.objects);
        problems.extend(errors.into_iter().map(|e| loaded.locate(e)));
        let (snapshot, not_ready_reason) = match select(&loaded.objects, &self.selection) {
            Ok(selected) => {
                let key = (selected.k8s_namespace.clone(), selected.name.clone());
                let snapshot = snapshots.remove(&key).unwrap_or_default();
                let reason = format!(
                    "Namespace {}/{} has errors: see the configuration problems logged",
                    selected.k8s_namespace, selected.name
                );
                (snapshot, reason)
            }
            Err(error) if error.is_ambiguous() => {
                if first {
                    return Err(FatalConfigError(error.to_string()));
                }
                log_problems(&problems, "rejected");
                warn!(%error, "configuration rejected; still serving the previous one");
                self.metrics
                    .record_load(ReloadResult::Rejected, problems.len() + 1);
                return Ok(Outcome::Rejected { problems });
            }
            // Nothing to serve (yet): an empty Snapshot, and /readyz says why.
            Err(error) => (Snapshot::default(), error.to_string()),
        };
        self.started = true;

        if !first && !problems.is_empty() && self.policy == ReloadPolicy::AllOrNothing {
            log_problems(&problems, "rejected");
            warn!(
                problems = problems.len(),
                "configuration rejected; still serving the previous one"
            );
            self.metrics
                .record_load(ReloadResult::Rejected, problems.len());
            return Ok(Outcome::Rejected { problems });
        }

        log_problems(&problems, "left out");
        let counts = snapshot.object_counts();
        let readiness = match &snapshot.namespace {
            Some(namespace) => Readiness::Ready {
                namespace: namespace.name.clone(),
            },
            None => Readiness::NotReady {
                reason: not_ready_reason,
            },
        };
        info!(
            ?counts,
            problems = problems.len(),
            ready = matches!(readiness, Readiness::Ready { .. }),
            "configuration applied"
        );
        let snapshot = Arc::new(snapshot);
        for hook in &self.hooks {
            hook(snapshot.clone());
        }
        self.shared.publish(snapshot, readiness);
        self.metrics
            .record_load(ReloadResult::Applied, problems.len());
        self.metrics.record_applied(&counts);
        Ok(Outcome::Applied { problems })
    }
}

/// One warning per problem, in the same `<file>: <Kind> <ns>/<name>: <field>: <message>`
/// shape `check` prints, so a person can grep logs and check output alike.
fn log_problems(problems: &[Problem], consequence: &str) {
    for problem in problems {
        warn!(consequence, "configuration problem: {problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::config::manifests::{ManifestFile, SchemaRules, parse_manifests};

    const NAMESPACE: &str = "apiVersion: gridline.dev/v1alpha1
kind: Namespace
metadata:
  name: ns1
spec:
  listeners:
    mqttTls: {enabled: false, port: 8883}
    https: {enabled: false, port: 443}
";

    fn topic(name: &str) -> String {
        format!(
            "---\napiVersion: gridline.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {name}\nspec:\n  namespaceRef:\n    name: ns1\n"
        )
    }

    fn load(text: &str) -> LoadedConfig {
        parse_manifests(
            &[ManifestFile {
                path: "m.yaml".into(),
                text: text.into(),
            }],
            &SchemaRules::new(),
        )
    }

    fn problem() -> Problem {
        Problem::document(
            Origin::File {
                path: "m.yaml".into(),
                document: 9,
            },
            "did not find expected key",
        )
    }

    fn applier(policy: ReloadPolicy) -> (Applier, SharedSnapshot, Arc<Metrics>) {
        let shared = SharedSnapshot::new();
        let metrics = Arc::new(Metrics::new().unwrap());
        let applier = Applier::new(
            shared.clone(),
            metrics.clone(),
            NamespaceSelection::Only,
            policy,
        );
        (applier, shared, metrics)
    }

    #[test]
    fn before_any_load_the_data_plane_is_not_ready() {
        assert!(matches!(
            *SharedSnapshot::new().readiness(),
            Readiness::NotReady { .. }
        ));
    }

    #[test]
    fn the_first_load_is_applied_even_with_problems() {
        let (mut applier, _, metrics) = applier(ReloadPolicy::AllOrNothing);
        let mut loaded = load(NAMESPACE);
        loaded.problems.push(problem());
        let outcome = applier.apply(loaded).unwrap();
        assert!(matches!(outcome, Outcome::Applied { ref problems } if problems.len() == 1));
        let text = metrics.render().unwrap();
        assert!(text.contains("gridline_config_reloads_total{result=\"applied\"} 1"));
        assert!(text.contains("gridline_config_errors 1"));
    }

    #[test]
    fn a_reload_with_a_problem_keeps_the_previous_snapshot() {
        let (mut applier, shared, metrics) = applier(ReloadPolicy::AllOrNothing);
        applier.apply(load(NAMESPACE)).unwrap();
        let served = shared.load();
        let mut loaded = load(&format!("{NAMESPACE}{}", topic("orders")));
        loaded.problems.push(problem());
        let outcome = applier.apply(loaded).unwrap();
        assert!(matches!(outcome, Outcome::Rejected { .. }));
        assert!(Arc::ptr_eq(&served, &shared.load()));
        let text = metrics.render().unwrap();
        assert!(text.contains("gridline_config_reloads_total{result=\"rejected\"} 1"));
    }

    #[test]
    fn a_clean_reload_replaces_the_snapshot() {
        let (mut applier, shared, _) = applier(ReloadPolicy::AllOrNothing);
        applier.apply(load(NAMESPACE)).unwrap();
        let served = shared.load();
        let outcome = applier.apply(load(NAMESPACE)).unwrap();
        assert!(matches!(outcome, Outcome::Applied { ref problems } if problems.is_empty()));
        assert!(!Arc::ptr_eq(&served, &shared.load()));
    }

    #[tokio::test]
    async fn followers_are_told_after_a_snapshot_is_served_not_after_a_rejected_load() {
        let (mut applier, shared, _) = applier(ReloadPolicy::AllOrNothing);
        let mut changes = shared.changes();
        let ready = tokio::spawn({
            let shared = shared.clone();
            async move { shared.ready().await }
        });
        applier.apply(load(NAMESPACE)).unwrap();
        assert!(changes.has_changed().unwrap(), "told of the first Snapshot");
        changes.borrow_and_update();
        tokio::time::timeout(std::time::Duration::from_secs(5), ready)
            .await
            .expect("ready once a Namespace is served")
            .unwrap();
        let mut rejected = load(NAMESPACE);
        rejected.problems.push(problem());
        applier.apply(rejected).unwrap();
        assert!(!changes.has_changed().unwrap(), "nothing new is served");
        applier.apply(load(NAMESPACE)).unwrap();
        assert!(changes.has_changed().unwrap(), "told of the reload");
    }

    #[test]
    fn under_serve_valid_a_reload_with_problems_is_applied() {
        let (mut applier, shared, _) = applier(ReloadPolicy::ServeValid);
        applier.apply(load(NAMESPACE)).unwrap();
        let served = shared.load();
        let mut loaded = load(NAMESPACE);
        loaded.problems.push(problem());
        assert!(matches!(
            applier.apply(loaded).unwrap(),
            Outcome::Applied { .. }
        ));
        assert!(!Arc::ptr_eq(&served, &shared.load()));
    }

    #[test]
    fn every_applied_snapshot_reaches_the_hooks_before_it_is_served() {
        let (applier, shared, _) = applier(ReloadPolicy::AllOrNothing);
        let seen: Arc<std::sync::Mutex<Vec<Arc<Snapshot>>>> = Arc::default();
        let record = seen.clone();
        let watched = shared.clone();
        let mut applier = applier.on_apply(move |snapshot| {
            // Not served yet when the hook runs.
            assert!(!Arc::ptr_eq(&snapshot, &watched.load()));
            record.lock().unwrap().push(snapshot);
        });
        applier.apply(load(NAMESPACE)).unwrap();
        let mut loaded = load(&format!("{NAMESPACE}{}", topic("orders")));
        loaded.problems.push(problem());
        applier.apply(loaded).unwrap(); // rejected: not handed on
        applier
            .apply(load(&format!("{NAMESPACE}{}", topic("orders"))))
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(Arc::ptr_eq(&seen[1], &shared.load()));
        assert_eq!(seen[1].topics.len(), 1);
    }

    #[test]
    fn several_namespaces_at_start_up_are_fatal() {
        let (mut applier, _, _) = applier(ReloadPolicy::AllOrNothing);
        let two = format!("{NAMESPACE}---\n{}", NAMESPACE.replace("ns1", "ns2"));
        assert!(applier.apply(load(&two)).is_err());
    }

    #[test]
    fn several_namespaces_on_reload_are_rejected() {
        let (mut applier, _, _) = applier(ReloadPolicy::AllOrNothing);
        applier.apply(load(NAMESPACE)).unwrap();
        let two = format!("{NAMESPACE}---\n{}", NAMESPACE.replace("ns1", "ns2"));
        assert!(matches!(
            applier.apply(load(&two)).unwrap(),
            Outcome::Rejected { .. }
        ));
    }

    #[test]
    fn without_a_namespace_readyz_has_a_reason() {
        let (mut applier, shared, _) = applier(ReloadPolicy::AllOrNothing);
        applier.apply(load(&topic("orders"))).unwrap();
        assert_eq!(
            *shared.readiness(),
            Readiness::NotReady {
                reason: "the configuration holds no valid Namespace".into()
            }
        );
    }

    // Needs `compile` (being written): it must put the Namespace and Topics in the Snapshot.
    #[test]
    fn a_served_namespace_makes_the_data_plane_ready_and_counts_its_objects() {
        let (mut applier, shared, metrics) = applier(ReloadPolicy::AllOrNothing);
        applier
            .apply(load(&format!(
                "{NAMESPACE}{}{}",
                topic("orders"),
                topic("invoices")
            )))
            .unwrap();
        assert_eq!(
            *shared.readiness(),
            Readiness::Ready {
                namespace: "ns1".into()
            }
        );
        assert_eq!(shared.load().topics.len(), 2);
        let text = metrics.render().unwrap();
        assert!(
            text.contains("gridline_config_objects{kind=\"Topic\"} 2"),
            "{text}"
        );
    }
}
