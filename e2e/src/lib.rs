//! Support for Gridline's end-to-end tests: they drive a real cluster (the one `KUBECONFIG`,
//! `~/.kube/config` or the in-cluster service account names) with real clients, through the
//! same manifests a user applies. `e2e/README.md` says how to run them.
//!
//! Without a cluster every test prints a `SKIP` line and passes, so that `cargo test
//! --workspace` works on a machine without one; with a cluster they run for real and a
//! cluster that cannot be reached is a failure, not a skip.
//!
//! Environment:
//! - `GRIDLINE_E2E_NAMESPACE`: use this existing Kubernetes namespace (neither created nor
//!   deleted) instead of a fresh `gridline-e2e-<random>` one per test.
//! - `GRIDLINE_E2E_HTTP` (`http://127.0.0.1:8080`), `GRIDLINE_E2E_MQTT` (`127.0.0.1:1883`):
//!   where the data plane of the example Namespace answers. Unset: the tests port-forward to
//!   its client Service with `kubectl port-forward`. Setting them needs `GRIDLINE_E2E_NAMESPACE`.
//! - `GRIDLINE_E2E_LOCAL_DATAPLANE=1`: the data plane runs as a local process (`e2e/local.sh`),
//!   not as the StatefulSet's pods: objects count as served once `Accepted`, and nothing waits
//!   for (or on deletion, checks) the pods.
//! - `GRIDLINE_E2E_TIMEOUT_SECS`: how long to wait for objects to be served (default 240).
//! - `GRIDLINE_E2E_KEEP=1`: keep the fresh namespaces after the tests, to look at them.
//! - `GRIDLINE_E2E_SKIP=1`: skip even though a cluster is configured.

pub mod endpoints;
pub mod http;
pub mod manifests;
pub mod mqtt;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace as CoreNamespace, Secret};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use manifests::Manifest;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "gridline-e2e";

/// The Gridline Namespace the example manifests define.
pub const EXAMPLE_NAMESPACE: &str = "dev";

/// The example Secret with the HTTP API's shared access keys.
pub const EXAMPLE_KEYS_SECRET: &str = "dev-access-keys";

/// Why there is no cluster, or `None` when there is one to talk to.
pub fn no_cluster_reason() -> Option<String> {
    // A developer's kubeconfig may point at a cluster they do not want tests in.
    if env_flag("GRIDLINE_E2E_SKIP") {
        return Some("GRIDLINE_E2E_SKIP is set".to_string());
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return None;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home {
        Some(home) if home.join(".kube/config").exists() => None,
        _ => Some("KUBECONFIG is not set and ~/.kube/config does not exist".to_string()),
    }
}

/// Starts an end-to-end test, or prints why it is skipped and returns `Ok(())` from the test
/// (which returns `anyhow::Result<()>`).
#[macro_export]
macro_rules! e2e_or_skip {
    ($test:expr) => {
        match $crate::E2e::setup($test).await {
            Some(e2e) => e2e,
            None => return Ok(()),
        }
    };
}

/// One test's view of the cluster: a client and the Kubernetes namespace it works in.
pub struct E2e {
    pub client: Client,
    /// The Kubernetes namespace the examples are applied to.
    pub k8s_namespace: String,
    /// The data plane runs as a local process, not as the StatefulSet's pods.
    pub local_dataplane: bool,
    /// The test created `k8s_namespace` and deletes it when dropped.
    owns_namespace: bool,
    test: String,
    resources: Mutex<HashMap<(String, String), ApiResource>>,
}

impl E2e {
    /// Connects to the cluster and prepares the test's namespace; `None` (after a `SKIP` line)
    /// when there is no cluster. Panics when there is one but it cannot be used: a broken
    /// cluster must fail the suite.
    pub async fn setup(test: &str) -> Option<E2e> {
        if let Some(reason) = no_cluster_reason() {
            // Straight to stderr: libtest captures `println!` of passing tests, and a skip
            // must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP {test}: {reason}; the end-to-end tests need a cluster (e2e/README.md)"
            );
            return None;
        }
        match Self::connect(test).await {
            Ok(e2e) => Some(e2e),
            Err(error) => panic!("{test}: cannot set up the end-to-end test: {error:#}"),
        }
    }

    async fn connect(test: &str) -> anyhow::Result<E2e> {
        let client = Client::try_default()
            .await
            .context("cannot build a Kubernetes client from the kubeconfig")?;
        client
            .apiserver_version()
            .await
            .context("the Kubernetes API server does not answer")?;
        let local_dataplane = env_flag("GRIDLINE_E2E_LOCAL_DATAPLANE");
        let given = std::env::var("GRIDLINE_E2E_NAMESPACE")
            .ok()
            .filter(|v| !v.is_empty());
        if given.is_none()
            && (endpoint_env("GRIDLINE_E2E_HTTP").is_some()
                || endpoint_env("GRIDLINE_E2E_MQTT").is_some()
                || local_dataplane)
        {
            bail!(
                "GRIDLINE_E2E_HTTP, GRIDLINE_E2E_MQTT and GRIDLINE_E2E_LOCAL_DATAPLANE name a data \
                 plane serving one Kubernetes namespace: set GRIDLINE_E2E_NAMESPACE to it"
            );
        }
        let (k8s_namespace, owns_namespace) = match given {
            Some(ns) => (ns, false),
            None => (create_namespace(&client, test).await?, true),
        };
        println!("{test}: Kubernetes namespace {k8s_namespace}");
        Ok(E2e {
            client,
            k8s_namespace,
            local_dataplane,
            owns_namespace,
            test: test.to_string(),
            resources: Mutex::new(HashMap::new()),
        })
    }

    /// How long to wait for objects to be served, pods to start and children to go.
    pub fn timeout(&self) -> Duration {
        let secs = std::env::var("GRIDLINE_E2E_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(240);
        Duration::from_secs(secs)
    }

    /// The API of `kind` in `api_version`, in the test's namespace (found by discovery, so
    /// a missing CRD is reported as such).
    pub async fn api(&self, api_version: &str, kind: &str) -> anyhow::Result<Api<DynamicObject>> {
        let key = (api_version.to_string(), kind.to_string());
        let cached = self
            .resources
            .lock()
            .ok()
            .and_then(|r| r.get(&key).cloned());
        let resource = match cached {
            Some(resource) => resource,
            None => {
                let (group, version) = match api_version.split_once('/') {
                    Some((group, version)) => (group, version),
                    None => ("", api_version),
                };
                let gvk = GroupVersionKind::gvk(group, version, kind);
                let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                    .await
                    .with_context(|| {
                        format!("the cluster does not serve {kind} ({api_version}): CRDs missing?")
                    })?;
                if let Ok(mut resources) = self.resources.lock() {
                    resources.insert(key, resource.clone());
                }
                resource
            }
        };
        Ok(Api::namespaced_with(
            self.client.clone(),
            &self.k8s_namespace,
            &resource,
        ))
    }

    /// Server-side applies `manifest` into the test's namespace.
    pub async fn apply(&self, manifest: &Manifest) -> anyhow::Result<DynamicObject> {
        let api = self.api(&manifest.api_version, &manifest.kind).await?;
        let mut body = manifest.body.clone();
        body["metadata"]["namespace"] = json!(self.k8s_namespace);
        api.patch(
            &manifest.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .with_context(|| format!("applying {}", manifest.describe()))
    }

    /// Applies every example manifest (deploy/examples) and returns them.
    pub async fn apply_examples(&self) -> anyhow::Result<Vec<Manifest>> {
        let manifests = manifests::examples()?;
        for manifest in &manifests {
            self.apply(manifest).await?;
        }
        Ok(manifests)
    }

    /// The object `manifest` describes, as the cluster has it now (`None`: not there).
    pub async fn get(&self, manifest: &Manifest) -> anyhow::Result<Option<DynamicObject>> {
        let api = self.api(&manifest.api_version, &manifest.kind).await?;
        api.get_opt(&manifest.name)
            .await
            .with_context(|| format!("reading {}", manifest.describe()))
    }

    /// Deletes the object `manifest` describes (already gone is fine).
    pub async fn delete(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let api = self.api(&manifest.api_version, &manifest.kind).await?;
        match api.delete(&manifest.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error).with_context(|| format!("deleting {}", manifest.describe())),
        }
    }

    /// The condition the tests take as "served": `Ready` against a data plane in the cluster;
    /// `Accepted` when it runs locally (the StatefulSet's pods then never become ready).
    pub fn served_condition(&self) -> &'static str {
        if self.local_dataplane {
            "Accepted"
        } else {
            "Ready"
        }
    }

    /// Waits until every Gridline object of `manifests` has the served condition `True` for
    /// its current generation. On timeout the error lists each object still waiting with its
    /// conditions.
    pub async fn wait_until_served(&self, manifests: &[Manifest]) -> anyhow::Result<()> {
        let gridline: Vec<&Manifest> = manifests.iter().filter(|m| m.is_gridline()).collect();
        let wanted = self.served_condition();
        let deadline = Instant::now() + self.timeout();
        loop {
            let mut waiting = Vec::new();
            for manifest in &gridline {
                let object = self.get(manifest).await?;
                let state = object
                    .as_ref()
                    .map(|o| condition_is_true(o, wanted))
                    .unwrap_or(Err("not found".to_string()));
                if let Err(why) = state {
                    waiting.push(format!("{}: {why}", manifest.describe()));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "after {:?}, {} object(s) are not {wanted}:\n  {}",
                    self.timeout(),
                    waiting.len(),
                    waiting.join("\n  ")
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Polls `check` every second until it returns `Ok(Some(_))`, for at most `timeout`; the
    /// error names `what` and the last reason `check` gave (`Ok(None)` or `Err`).
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check().await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => "not yet".to_string(),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                bail!("{what}: still not the case after {timeout:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A key of the example Secret, read from the cluster (so the tests use what was applied).
    pub async fn secret_value(&self, secret: &str, key: &str) -> anyhow::Result<String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.k8s_namespace);
        let secret_object = api
            .get(secret)
            .await
            .with_context(|| format!("reading Secret {}/{secret}", self.k8s_namespace))?;
        let bytes = secret_object
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .with_context(|| format!("Secret {secret} has no key {key}"))?;
        String::from_utf8(bytes.0.clone()).with_context(|| format!("{secret}/{key} is not UTF-8"))
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        if !self.owns_namespace {
            return;
        }
        if env_flag("GRIDLINE_E2E_KEEP") {
            println!("{}: keeping namespace {}", self.test, self.k8s_namespace);
            return;
        }
        // Drop cannot await, and the test's runtime may be the one dropping us: delete from a
        // thread with its own runtime. Deletion is not awaited; the namespace goes in the
        // background and its name is never reused.
        let client = self.client.clone();
        let namespace = self.k8s_namespace.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let api: Api<CoreNamespace> = Api::all(client);
                api.delete(&namespace, &DeleteParams::background()).await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            eprintln!(
                "{}: could not delete namespace {}; delete it by hand",
                self.test, self.k8s_namespace
            );
        }
    }
}

/// `Ok` when `object` has condition `wanted` `True` for its current generation, otherwise
/// a description of its conditions.
pub fn condition_is_true(object: &DynamicObject, wanted: &str) -> Result<(), String> {
    let generation = object.metadata.generation;
    let conditions = object.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = conditions.iter().find(|c| c["type"] == wanted);
    let Some(condition) = found else {
        return Err(format!(
            "no {wanted} condition yet ({})",
            describe(&conditions)
        ));
    };
    let observed = condition["observedGeneration"].as_i64();
    if condition["status"] != "True" {
        return Err(describe(&conditions));
    }
    match (observed, generation) {
        (Some(observed), Some(generation)) if observed < generation => Err(format!(
            "{wanted} is for generation {observed}, the object is at {generation}"
        )),
        _ => Ok(()),
    }
}

/// The status of condition `wanted` of `object` (`"True"`, `"False"`, `"Unknown"`), if any.
pub fn condition_status(object: &DynamicObject, wanted: &str) -> Option<String> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == wanted)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

fn describe(conditions: &[Value]) -> String {
    if conditions.is_empty() {
        return "no conditions".to_string();
    }
    conditions
        .iter()
        .map(|c| {
            format!(
                "{}={} {}: {}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
                c["reason"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn create_namespace(client: &Client, test: &str) -> anyhow::Result<String> {
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).context("no randomness for the namespace name")?;
    let name = format!(
        "gridline-e2e-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let namespace: CoreNamespace = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "gridline-e2e"},
            "annotations": {"gridline.dev/e2e-test": test},
        }
    }))?;
    Api::<CoreNamespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn endpoint_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
