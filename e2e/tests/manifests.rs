//! The install manifests, checked without a cluster: deploy/gridline.yaml (the chart rendered
//! with its default values) must hold valid Kubernetes objects, and what they grant and run
//! must match the operator's contract. With helm at hand (scripts/install-helm.sh), the
//! chart's watchNamespaces rendering is checked too.

use anyhow::{Context, bail, ensure};
use gridline_e2e::manifests::{Manifest, parse, read_dir, repository_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const RELEASE_NAMESPACE: &str = "gridline-system";

fn deploy_manifests() -> anyhow::Result<Vec<Manifest>> {
    let path = repository_root().join("deploy/gridline.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    parse(&text, &path)
}

/// `manifest` as the k8s-openapi type `K`, refusing any field the type does not know: the
/// typed value must serialize back to exactly the manifest (serde would drop a misspelt
/// field silently).
fn strictly<K: DeserializeOwned + Serialize>(manifest: &Manifest) -> anyhow::Result<K> {
    let typed: K = serde_json::from_value(manifest.body.clone())
        .with_context(|| format!("{} is not a valid {}", manifest.name, manifest.kind))?;
    let back = serde_json::to_value(&typed)?;
    if let Some(difference) = first_difference(&manifest.body, &back, String::new()) {
        bail!(
            "{} {}: {difference} (a misspelt or misplaced field?)",
            manifest.kind,
            manifest.name
        );
    }
    Ok(typed)
}

fn first_difference(written: &Value, typed: &Value, path: String) -> Option<String> {
    match (written, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}/{key}");
                match b.get(key) {
                    None => return Some(format!("{here} is not a field of the type")),
                    Some(other) => {
                        if let Some(d) = first_difference(value, other, here) {
                            return Some(d);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}/{i}"))),
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: written {a}, read back {b}")),
    }
}

fn one<'a>(manifests: &'a [Manifest], kind: &str) -> anyhow::Result<&'a Manifest> {
    let found: Vec<&Manifest> = manifests.iter().filter(|m| m.kind == kind).collect();
    match found.as_slice() {
        [manifest] => Ok(manifest),
        other => bail!("expected one {kind}, found {}", other.len()),
    }
}

/// Whether `rules` allow `verb` on `resource` of `group` everywhere they apply.
fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Option<Vec<String>>, item: &str| {
        list.iter().flatten().any(|x| x == item || x == "*")
    };
    rules.iter().any(|rule| {
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb || v == "*")
            && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
    })
}

const GRIDLINE_KINDS: [&str; 7] = [
    "namespaces",
    "topics",
    "eventsubscriptions",
    "clients",
    "clientgroups",
    "topicspaces",
    "permissionbindings",
];

#[test]
fn every_object_of_deploy_gridline_yaml_is_a_valid_kubernetes_object() -> anyhow::Result<()> {
    let manifests = deploy_manifests()?;
    for manifest in &manifests {
        match manifest.kind.as_str() {
            "Namespace" => drop(strictly::<Namespace>(manifest)?),
            "CustomResourceDefinition" => drop(strictly::<CustomResourceDefinition>(manifest)?),
            "ServiceAccount" => drop(strictly::<ServiceAccount>(manifest)?),
            "ClusterRole" => drop(strictly::<ClusterRole>(manifest)?),
            "ClusterRoleBinding" => drop(strictly::<ClusterRoleBinding>(manifest)?),
            "Role" => drop(strictly::<Role>(manifest)?),
            "RoleBinding" => drop(strictly::<RoleBinding>(manifest)?),
            "Service" => drop(strictly::<Service>(manifest)?),
            "Deployment" => drop(strictly::<Deployment>(manifest)?),
            other => bail!("deploy/gridline.yaml has a {other}, which this test does not know"),
        }
    }
    // The Namespace comes first: `kubectl apply -f` creates objects in file order.
    ensure!(
        manifests
            .first()
            .map(|m| (m.kind.as_str(), m.name.as_str()))
            == Some(("Namespace", RELEASE_NAMESPACE)),
        "deploy/gridline.yaml must start with Namespace {RELEASE_NAMESPACE}"
    );
    for manifest in &manifests {
        let cluster_scoped = matches!(
            manifest.kind.as_str(),
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        let namespace = manifest.body["metadata"]["namespace"].as_str();
        if cluster_scoped {
            ensure!(
                namespace.is_none(),
                "{} has a namespace",
                manifest.describe()
            );
        } else {
            ensure!(
                namespace == Some(RELEASE_NAMESPACE),
                "{} is not in {RELEASE_NAMESPACE}",
                manifest.describe()
            );
        }
    }
    Ok(())
}

#[test]
fn deploy_gridline_yaml_carries_the_charts_seven_crds_unchanged() -> anyhow::Result<()> {
    let deployed: Vec<Manifest> = deploy_manifests()?
        .into_iter()
        .filter(|m| m.kind == "CustomResourceDefinition")
        .collect();
    let chart = read_dir(&repository_root().join("charts/gridline/crds"))?;
    ensure!(chart.len() == 7, "the chart has {} CRDs", chart.len());
    ensure!(
        deployed.len() == chart.len(),
        "{} CRDs deployed",
        deployed.len()
    );
    for crd in &chart {
        let twin = deployed
            .iter()
            .find(|m| m.name == crd.name)
            .with_context(|| {
                format!(
                    "CRD {} missing from deploy/gridline.yaml: run scripts/render-manifests.sh",
                    crd.name
                )
            })?;
        ensure!(
            twin.body == crd.body,
            "CRD {} differs from the chart's",
            crd.name
        );
    }
    Ok(())
}

fn operator_container(manifests: &[Manifest]) -> anyhow::Result<Container> {
    let deployment: Deployment = strictly(one(manifests, "Deployment")?)?;
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .context("no pod spec")?;
    let [container] = <[Container; 1]>::try_from(pod.containers)
        .map_err(|c| anyhow::anyhow!("expected one container, found {}", c.len()))?;
    Ok(container)
}

#[test]
fn the_operator_runs_as_the_cli_contract_says_and_meets_the_restricted_pod_standard()
-> anyhow::Result<()> {
    let manifests = deploy_manifests()?;
    let container = operator_container(&manifests)?;
    let args = container.args.clone().unwrap_or_default();
    ensure!(args.first().map(String::as_str) == Some("run"), "{args:?}");
    let metrics_port: i32 = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-addr=0.0.0.0:"))
        .context("no --metrics-addr on all interfaces")?
        .parse()?;
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .context("no metrics port")?;
    ensure!(
        port.container_port == metrics_port,
        "probes and Service use the port the operator serves"
    );
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .context("probe")?;
        ensure!(
            get.path.as_deref() == Some(path),
            "probe path {:?}",
            get.path
        );
    }
    ensure!(
        args.iter().any(|a| a.starts_with("--dataplane-image=")),
        "the operator is told the data plane image: {args:?}"
    );
    ensure!(
        args.iter().any(|a| a.starts_with("--lease-name=")),
        "leader election is on by default: {args:?}"
    );
    ensure!(
        !args.iter().any(|a| a.starts_with("--watch-namespace")),
        "the default watches every namespace: {args:?}"
    );
    let pod_namespace = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_NAMESPACE")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    ensure!(
        pod_namespace.as_deref() == Some("metadata.namespace"),
        "POD_NAMESPACE"
    );

    // deploy/gridline.yaml labels its Namespace `enforce: restricted`.
    let security = container.security_context.context("no securityContext")?;
    ensure!(security.allow_privilege_escalation == Some(false));
    ensure!(security.read_only_root_filesystem == Some(true));
    let dropped = security
        .capabilities
        .and_then(|c| c.drop)
        .unwrap_or_default();
    ensure!(dropped == ["ALL"], "capabilities dropped: {dropped:?}");
    let deployment: Deployment = strictly(one(&manifests, "Deployment")?)?;
    let pod_security = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.security_context)
        .context("no pod securityContext")?;
    ensure!(pod_security.run_as_non_root == Some(true));
    ensure!(pod_security.run_as_user.is_some_and(|u| u != 0));
    ensure!(
        pod_security.seccomp_profile.map(|p| p.type_).as_deref() == Some("RuntimeDefault"),
        "seccomp RuntimeDefault"
    );
    Ok(())
}

#[test]
fn the_cluster_role_holds_what_the_operator_does_and_what_it_grants_the_data_plane()
-> anyhow::Result<()> {
    let manifests = deploy_manifests()?;
    let role: ClusterRole = strictly(one(&manifests, "ClusterRole")?)?;
    let rules = role.rules.unwrap_or_default();
    let mut missing = Vec::new();
    let mut need = |group: &str, resources: &[&str], verbs: &[&str]| {
        for resource in resources {
            for verb in verbs {
                if !allows(&rules, group, resource, verb) {
                    missing.push(format!("{verb} {group}/{resource}"));
                }
            }
        }
    };
    let read = ["get", "list", "watch"];
    // Reconciling: read the Gridline objects, write their status.
    need("gridline.dev", &GRIDLINE_KINDS, &read);
    let statuses: Vec<String> = GRIDLINE_KINDS
        .iter()
        .map(|k| format!("{k}/status"))
        .collect();
    let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
    need("gridline.dev", &statuses, &["get", "patch", "update"]);
    // The children of a Namespace, applied server-side and garbage-collected.
    let manage = [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ];
    need("apps", &["statefulsets"], &manage);
    need("", &["services", "serviceaccounts"], &manage);
    need("policy", &["poddisruptionbudgets"], &manage);
    need(
        "rbac.authorization.k8s.io",
        &["roles", "rolebindings"],
        &manage,
    );
    need("", &["pods"], &read);
    need("events.k8s.io", &["events"], &["create", "patch"]);
    // RBAC lets the operator grant the data plane's Role only what it holds itself. And each
    // Namespace's peer CA and peer certificate Secrets: the CA created once, the certificate
    // applied server-side when it is re-issued.
    need("", &["secrets"], &read);
    need("", &["secrets"], &["create", "patch", "update"]);
    // Member Leases of pods that are gone are deleted only after looking the pod up.
    need("", &["pods"], &["get"]);
    need(
        "coordination.k8s.io",
        &["leases"],
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    );
    ensure!(
        missing.is_empty(),
        "the ClusterRole lacks: {}",
        missing.join(", ")
    );

    // Least privilege: nothing cluster-wide beyond that, and no wildcards.
    for rule in &rules {
        let everything = [&rule.api_groups, &rule.resources]
            .into_iter()
            .flatten()
            .flatten()
            .chain(&rule.verbs);
        ensure!(
            everything.into_iter().all(|x| x != "*"),
            "a wildcard: {rule:?}"
        );
    }
    ensure!(
        !allows(&rules, "", "secrets", "delete"),
        "the operator never deletes a Secret (owner references do, with their Namespace)"
    );
    ensure!(
        !allows(&rules, "gridline.dev", "namespaces", "update"),
        "specs are the user's"
    );

    let binding: ClusterRoleBinding = strictly(one(&manifests, "ClusterRoleBinding")?)?;
    let account = one(&manifests, "ServiceAccount")?;
    ensure!(binding.role_ref.name == role.metadata.name.unwrap_or_default());
    ensure!(
        binding
            .subjects
            .iter()
            .flatten()
            .any(|s| s.kind == "ServiceAccount"
                && s.name == account.name
                && s.namespace.as_deref() == Some(RELEASE_NAMESPACE)),
        "the binding names the operator's ServiceAccount"
    );
    Ok(())
}

fn helm() -> Option<PathBuf> {
    let local = repository_root().join(".tools/bin/helm");
    if local.exists() {
        return Some(local);
    }
    let on_path = Command::new("helm").arg("version").output();
    on_path
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("helm"))
}

fn render(helm: &Path, settings: &[&str]) -> anyhow::Result<Vec<Manifest>> {
    let chart = repository_root().join("charts/gridline");
    let mut command = Command::new(helm);
    command.args(["template", "gridline"]).arg(&chart);
    command.args(["--namespace", RELEASE_NAMESPACE]);
    for setting in settings {
        command.args(["--set", setting]);
    }
    let output = command.output().context("running helm")?;
    ensure!(
        output.status.success(),
        "helm template {settings:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(
        &String::from_utf8(output.stdout)?,
        Path::new("helm template"),
    )
}

#[test]
fn watch_namespaces_bind_the_operator_only_in_those_namespaces() -> anyhow::Result<()> {
    let Some(helm) = helm() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIP manifests::watch_namespaces: no helm (scripts/install-helm.sh installs it)"
        );
        return Ok(());
    };
    let manifests = render(&helm, &["watchNamespaces={team-a,team-b}"])?;
    ensure!(
        !manifests.iter().any(|m| m.kind == "ClusterRoleBinding"),
        "no cluster-wide binding when namespaces are listed"
    );
    let role_name = one(&manifests, "ClusterRole")?.name.clone();
    for namespace in ["team-a", "team-b"] {
        let bound = manifests
            .iter()
            .filter(|m| m.kind == "RoleBinding")
            .any(|m| {
                let binding: Result<RoleBinding, _> = strictly(m);
                binding.is_ok_and(|b| {
                    b.metadata.namespace.as_deref() == Some(namespace)
                        && b.role_ref.kind == "ClusterRole"
                        && b.role_ref.name == role_name
                })
            });
        ensure!(bound, "no RoleBinding of {role_name} in {namespace}");
    }
    let args = operator_container(&manifests)?.args.unwrap_or_default();
    for namespace in ["team-a", "team-b"] {
        ensure!(
            args.contains(&format!("--watch-namespace={namespace}")),
            "{args:?}"
        );
    }

    // One replica without an election is allowed; several are refused at render time.
    let single = render(&helm, &["leaderElection.enabled=false"])?;
    let args = operator_container(&single)?.args.unwrap_or_default();
    ensure!(
        args.contains(&"--no-leader-election".to_string()),
        "{args:?}"
    );
    ensure!(
        render(&helm, &["leaderElection.enabled=false", "replicaCount=2"]).is_err(),
        "two replicas without leader election must not render"
    );
    Ok(())
}
