//! The Namespace controller: for each Gridline Namespace, server-side apply its children
//! (ServiceAccount, Role, RoleBinding, Services, StatefulSet, PodDisruptionBudget), keep its
//! peer TLS Secrets (`peer_tls.rs`), all owned by it so that they are garbage-collected with
//! it, and delete the member Leases of pods that are gone (`member_leases.rs`). Changes to the
//! Namespace or to any child (someone edits or deletes a child) bring the Namespace back here.

use super::member_leases::collect_garbage;
use super::peer_tls::ensure_peer_tls;
use crate::backoff::Backoff;
use crate::children;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, RESULT_OK};
use crate::options::{FIELD_MANAGER, Options, WatchScope};
use futures::StreamExt;
use gridline_crds::types::Namespace;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{Instrument, info, info_span, warn};

/// Re-apply this often even without a change, to repair drift nobody watched (e.g. a child
/// edited while the operator was down and its watch event lost).
const RESYNC: Duration = Duration::from_secs(300);
/// Changes to a Namespace or its children within this window make one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(500);

pub struct Context {
    pub client: Client,
    pub options: Options,
    pub metrics: Arc<Metrics>,
    /// Failure counts per Namespace (Kubernetes namespace, name).
    pub backoff: Backoff<(String, String)>,
}

impl Context {
    pub fn new(client: Client, options: Options, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            client,
            options,
            metrics,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
        })
    }
}

fn key_of(ns: &Namespace) -> (String, String) {
    (ns.namespace().unwrap_or_default(), ns.name_any())
}

/// Apply every child of `ns`. Idempotent: applying the same desired objects again changes
/// nothing on the API server.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let (k8s_namespace, name) = key_of(&ns);
    let span =
        info_span!("reconcile", kind = "Namespace", namespace = %k8s_namespace, name = %name);
    async {
        let started = Instant::now();
        let result = apply_children(&ns, &ctx).await;
        ctx.metrics.observe_duration("Namespace", started);
        if result.is_ok() {
            ctx.metrics.reconciled("Namespace", RESULT_OK);
            ctx.backoff.succeeded(&key_of(&ns));
        }
        result.map(|next_due| Action::requeue(requeue_after(next_due)))
    }
    .instrument(span)
    .await
}

/// The resync, or sooner when an expired member Lease becomes garbage before it.
fn requeue_after(next_garbage: Option<Duration>) -> Duration {
    next_garbage.map_or(RESYNC, |due| due.min(RESYNC))
}

/// Apply the children, keep the peer TLS Secrets, collect member Lease garbage. Returns when
/// the next Lease becomes garbage, if one is waiting to.
async fn apply_children(ns: &Namespace, ctx: &Context) -> Result<Option<Duration>> {
    if ns.metadata.deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector.
        return Ok(None);
    }
    let k8s_namespace = ns.namespace().ok_or_else(|| Error::NoK8sNamespace {
        name: ns.name_any(),
    })?;
    let client = &ctx.client;
    // The identity first, so that pods never start without their ServiceAccount.
    apply(client, &k8s_namespace, children::service_account(ns)).await?;
    apply(client, &k8s_namespace, children::role(ns)).await?;
    apply(client, &k8s_namespace, children::role_binding(ns)).await?;
    apply(client, &k8s_namespace, children::peers_service(ns)).await?;
    apply(client, &k8s_namespace, children::client_service(ns)).await?;
    // Before the pods, which mount the leaf.
    ensure_peer_tls(client, ns, &k8s_namespace, SystemTime::now()).await?;
    apply(
        client,
        &k8s_namespace,
        children::statefulset(ns, &ctx.options),
    )
    .await?;
    apply(client, &k8s_namespace, children::pod_disruption_budget(ns)).await?;
    let collected = collect_garbage(client, ns, &k8s_namespace, Timestamp::now()).await?;
    Ok(collected.next_due)
}

/// Server-side apply under the operator's field manager. `force`: the operator owns these
/// objects, so a field another manager set is taken back rather than left in conflict.
async fn apply<K>(client: &Client, k8s_namespace: &str, object: K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + k8s_openapi::Resource,
    K: Clone + Debug + Serialize + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), k8s_namespace);
    let name = object.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|source| Error::Apply {
            kind: <K as k8s_openapi::Resource>::KIND,
            namespace: k8s_namespace.to_string(),
            name,
            source: Box::new(source),
        })?;
    Ok(())
}

/// Requeue after a per-Namespace exponential backoff (1 s doubling to 5 min).
pub fn error_policy(ns: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(key_of(&ns));
    ctx.metrics.failed("Namespace", error.metric_label());
    warn!(
        kind = "Namespace",
        namespace = %ns.namespace().unwrap_or_default(),
        name = %ns.name_any(),
        %error,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Run the controller over `scope` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: &WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let children = watcher::Config::default().labels(&format!(
        "{}={}",
        children::MANAGED_BY_LABEL,
        children::MANAGED_BY
    ));
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let controllers = scope
        .apis::<Namespace>(&client)
        .into_iter()
        .map(|namespaces| {
            let ns = namespaces.namespace().map(str::to_string);
            let c = client.clone();
            Controller::new(namespaces, watcher::Config::default())
                // A rollout updates the StatefulSet's status many times a second; each would
                // otherwise be a full round of applies.
                .with_config(controller::Config::default().debounce(DEBOUNCE))
                .owns(scoped::<StatefulSet>(&c, ns.as_deref()), children.clone())
                .owns(scoped::<Service>(&c, ns.as_deref()), children.clone())
                .owns(
                    scoped::<PodDisruptionBudget>(&c, ns.as_deref()),
                    children.clone(),
                )
                .owns(
                    scoped::<ServiceAccount>(&c, ns.as_deref()),
                    children.clone(),
                )
                .owns(scoped::<Role>(&c, ns.as_deref()), children.clone())
                .owns(scoped::<RoleBinding>(&c, ns.as_deref()), children.clone())
                // The peer TLS Secrets: a deleted leaf is issued again at once.
                .owns(scoped::<Secret>(&c, ns.as_deref()), children.clone())
                .graceful_shutdown_on(shutdown.clone())
                .run(reconcile, error_policy, ctx.clone())
                .for_each(|result| async move {
                    match result {
                        // Logged, with the object, by error_policy.
                        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                        Err(error) => warn!(%error, "Namespace controller error"),
                    }
                })
        });
    info!("Namespace controller started");
    futures::future::join_all(controllers).await;
}

fn scoped<K>(client: &Client, k8s_namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match k8s_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
#[path = "children_tests.rs"]
mod tests;
