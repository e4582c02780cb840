//! The status pass: per Kubernetes namespace, gather every Gridline object from the stores,
//! compile once, and write the statuses that changed, a bounded number at a time.
//!
//! Passes are driven by the stores' dirty marks, debounced, so that `kubectl apply` of a
//! thousand objects costs a handful of compiles rather than a thousand. Failed writes back
//! off per object; the namespace is passed over again when the earliest retry is due.

use super::stores::Stores;
use crate::backoff::Backoff;
use crate::error::Error;
use crate::metrics::{Metrics, RESULT_PATCHED, RESULT_UNCHANGED};
use crate::options::FIELD_MANAGER;
use crate::status::{AcceptedEvent, Plan, Pods, StatusChange, conditions, members, plan};
use futures::{StreamExt, stream};
use gridline_crds::model::{Kind, ObjectKey, Objects};
use gridline_crds::types::{
    Client as GridlineClient, ClientGroup, ClusterMember, EventSubscription, GROUP, Namespace,
    PermissionBinding, ResourceStatus, Topic, TopicSpace, VERSION,
};
use gridline_kubernetes::Dirty;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{Instrument, debug, info_span, warn};

/// How long a burst of changes may keep arriving before the pass starts.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Every namespace is passed over this often even without changes (drift, lost events).
pub const RESYNC: Duration = Duration::from_secs(300);
/// Kubernetes namespaces passed over at once.
const NAMESPACE_CONCURRENCY: usize = 4;
/// Event notes are limited to 1 kB by the API server.
const MAX_EVENT_NOTE: usize = 1000;

/// The status writes this replica made, by object (uid, conditions, a Namespace's members):
/// the stores lag behind writes, and a pass that compared against a stale store would write
/// the same status twice.
type Written = HashMap<ObjectKey, (Option<String>, ResourceStatus, Option<Vec<ClusterMember>>)>;

pub struct StatusContext {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub backoff: Backoff<ObjectKey>,
    written: Mutex<Written>,
    /// Status writes in flight at once, per namespace.
    pub concurrency: usize,
}

impl StatusContext {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: String) -> Arc<Self> {
        let reporter = kube::runtime::events::Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(instance),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            written: Mutex::new(HashMap::new()),
            concurrency: 16,
        })
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one pass over a namespace did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub patched: usize,
    pub unchanged: usize,
    pub failed: usize,
    /// When some writes failed: pass over the namespace again after this long.
    pub retry_after: Option<Duration>,
}

/// Pass over one Kubernetes namespace's objects (the live ones, from the stores).
pub async fn sync_namespace(
    ctx: &StatusContext,
    k8s_namespace: &str,
    mut objects: Objects,
    pods: BTreeMap<String, Pods>,
) -> PassOutcome {
    let started = Instant::now();
    overlay_written(&mut ctx.written(), k8s_namespace, &mut objects);
    // Compiling thousands of objects takes long enough to stall other tasks on this thread.
    let now = conditions::now();
    let plan = tokio::task::spawn_blocking(move || plan(&objects, &pods, &now))
        .await
        .unwrap_or_else(|error| {
            warn!(k8s_namespace, %error, "the status computation panicked");
            Plan::default()
        });
    let mut outcome = PassOutcome::default();
    let mut changed_per_kind: HashMap<Kind, usize> = HashMap::new();
    for change in &plan.changes {
        *changed_per_kind.entry(change.key.kind).or_default() += 1;
    }
    for (kind, evaluated) in &plan.evaluated {
        let unchanged = evaluated - changed_per_kind.get(kind).copied().unwrap_or(0);
        outcome.unchanged += unchanged;
        ctx.metrics
            .reconciled_many(kind.as_str(), RESULT_UNCHANGED, unchanged as u64);
    }

    let results: Vec<_> = stream::iter(plan.changes)
        .map(|change| async move {
            let result = write(ctx, &change).await;
            (change, result)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .collect()
        .await;
    for (change, result) in results {
        let kind = change.key.kind.as_str();
        match result {
            Ok(()) => {
                outcome.patched += 1;
                ctx.metrics.reconciled(kind, RESULT_PATCHED);
                ctx.backoff.succeeded(&change.key);
            }
            Err(error) => {
                outcome.failed += 1;
                ctx.metrics.failed(kind, error.metric_label());
                let delay = ctx.backoff.failed(change.key.clone());
                warn!(kind, namespace = %change.key.namespace, name = %change.key.name, %error,
                    retry_in_ms = delay.as_millis() as u64, "status write failed");
                outcome.retry_after = Some(outcome.retry_after.map_or(delay, |d| d.min(delay)));
            }
        }
    }
    ctx.metrics.observe_duration("Status", started);
    debug!(
        k8s_namespace,
        ?outcome,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "status pass"
    );
    outcome
}

/// Read back, in place of each object's status, what this replica last wrote for it (when it
/// is the same object: same uid), and forget what was written for objects that are gone.
fn overlay_written(written: &mut Written, k8s_namespace: &str, objects: &mut Objects) {
    let mut present = HashSet::new();
    fn overlay<K: crate::status::Reported>(
        written: &Written,
        present: &mut HashSet<ObjectKey>,
        kind: Kind,
        objects: &mut [K],
    ) {
        for object in objects {
            let key = ObjectKey::of(kind, object);
            if let Some((uid, status, members)) = written.get(&key)
                && *uid == object.meta().uid
            {
                object.set_status(status.clone(), members.clone());
            }
            present.insert(key);
        }
    }
    overlay(
        written,
        &mut present,
        Kind::Namespace,
        &mut objects.namespaces,
    );
    overlay(written, &mut present, Kind::Topic, &mut objects.topics);
    overlay(
        written,
        &mut present,
        Kind::EventSubscription,
        &mut objects.event_subscriptions,
    );
    overlay(written, &mut present, Kind::Client, &mut objects.clients);
    overlay(
        written,
        &mut present,
        Kind::ClientGroup,
        &mut objects.client_groups,
    );
    overlay(
        written,
        &mut present,
        Kind::TopicSpace,
        &mut objects.topic_spaces,
    );
    overlay(
        written,
        &mut present,
        Kind::PermissionBinding,
        &mut objects.permission_bindings,
    );
    written.retain(|key, _| key.namespace != k8s_namespace || present.contains(key));
}

fn api_resource(kind: Kind) -> Option<ApiResource> {
    Some(match kind {
        Kind::Namespace => ApiResource::erase::<Namespace>(&()),
        Kind::Topic => ApiResource::erase::<Topic>(&()),
        Kind::EventSubscription => ApiResource::erase::<EventSubscription>(&()),
        Kind::Client => ApiResource::erase::<GridlineClient>(&()),
        Kind::ClientGroup => ApiResource::erase::<ClientGroup>(&()),
        Kind::TopicSpace => ApiResource::erase::<TopicSpace>(&()),
        Kind::PermissionBinding => ApiResource::erase::<PermissionBinding>(&()),
        Kind::Secret => return None,
    })
}

/// Merge-patch the status subresource (the whole condition list: the operator owns it), then
/// record an Event if Accepted changed. An object deleted meanwhile needs no status.
async fn write(ctx: &StatusContext, change: &StatusChange) -> Result<(), Error> {
    let key = &change.key;
    let span = info_span!("status", kind = %key.kind, namespace = %key.namespace, name = %key.name);
    async {
        let Some(resource) = api_resource(key.kind) else {
            return Ok(());
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &key.namespace, &resource);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let body = status_patch(change);
        match api
            .patch_status(&key.name, &params, &Patch::Merge(&body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                debug!("object gone before its status was written");
                return Ok(());
            }
            Err(source) => {
                return Err(Error::Status {
                    object: key.clone(),
                    source: Box::new(source),
                });
            }
        }
        ctx.written().insert(
            key.clone(),
            (
                change.uid.clone(),
                change.status.clone(),
                change.members.clone(),
            ),
        );
        if let Some(event) = &change.event {
            publish(ctx, change, event).await;
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// The merge patch of a status: the conditions whole (the operator owns the list), and for a
/// Namespace its members whole, or `null` to remove them when there are none.
fn status_patch(change: &StatusChange) -> serde_json::Value {
    let mut status = serde_json::json!(change.status);
    if let Some(members) = &change.members {
        status["members"] = if members.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(members)
        };
    }
    serde_json::json!({ "status": status })
}

/// Events are for people reading `kubectl describe`; losing one is not worth a retry.
async fn publish(ctx: &StatusContext, change: &StatusChange, event: &AcceptedEvent) {
    let key = &change.key;
    let event = match event {
        AcceptedEvent::Accepted => Event {
            type_: EventType::Normal,
            reason: "Accepted".into(),
            note: Some("the object is valid and its references resolve".into()),
            action: "Validate".into(),
            secondary: None,
        },
        AcceptedEvent::Refused { reason, message } => Event {
            type_: EventType::Warning,
            reason: reason.clone(),
            note: Some(truncate(message, MAX_EVENT_NOTE)),
            action: "Validate".into(),
            secondary: None,
        },
    };
    let reference = ObjectReference {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some(key.kind.as_str().to_string()),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid: change.uid.clone(),
        ..ObjectReference::default()
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        warn!(%error, "could not record an Event");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Pass over dirty namespaces until the process ends.
pub async fn run(ctx: Arc<StatusContext>, stores: Arc<Stores>, dirty: Arc<Dirty>) {
    for k8s_namespace in stores.k8s_namespaces() {
        dirty.mark(&k8s_namespace);
    }
    let mut retries: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    loop {
        let next_retry = retries.values().min().copied();
        tokio::select! {
            () = dirty.changed() => {}
            () = sleep_until(next_retry) => {}
            _ = resync.tick() => {
                for k8s_namespace in stores.k8s_namespaces() {
                    dirty.mark(&k8s_namespace);
                }
            }
        }
        // A fixed window from the first change, not a sliding one: a steady trickle of
        // changes must not postpone the pass forever.
        tokio::time::sleep(DEBOUNCE).await;
        let now = tokio::time::Instant::now();
        let mut batch = dirty.take();
        retries.retain(|ns, due| {
            let is_due = *due <= now;
            if is_due {
                batch.insert(ns.clone());
            }
            !is_due
        });
        let outcomes: Vec<(String, Option<Duration>)> = stream::iter(batch)
            .map(|k8s_namespace| {
                let ctx = &ctx;
                let stores = &stores;
                async move {
                    let (objects, pods) = stores.gather(&k8s_namespace);
                    // Leases run out without a watch event: look again when one may have.
                    let recheck = membership_recheck(&pods, conditions::now().0);
                    let outcome = sync_namespace(ctx, &k8s_namespace, objects, pods).await;
                    let again = [outcome.retry_after, recheck].into_iter().flatten().min();
                    (k8s_namespace, again)
                }
            })
            .buffer_unordered(NAMESPACE_CONCURRENCY)
            .collect()
            .await;
        for (k8s_namespace, again) in outcomes {
            if let Some(delay) = again {
                retries.insert(k8s_namespace, tokio::time::Instant::now() + delay);
            }
        }
    }
}

/// The earliest moment a member Lease of these Namespaces can change a status unseen.
fn membership_recheck(
    pods: &BTreeMap<String, Pods>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Duration> {
    pods.values()
        .filter_map(|pods| members::next_recheck(&pods.leases, now))
        .min()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
