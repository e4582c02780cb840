//! A Gridline Namespace's life in the cluster: applied, run by the operator as a StatefulSet
//! behind Services, reported Ready, then deleted with everything that was made for it.

use anyhow::{Context, ensure};
use gridline_e2e::manifests::{self, Manifest};
use gridline_e2e::{E2e, EXAMPLE_NAMESPACE, condition_status, e2e_or_skip};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What the operator makes for a Namespace called `name` (its contract), as `kind name`.
fn children(name: &str) -> Vec<(&'static str, String)> {
    let base = format!("{name}-gridline");
    vec![
        ("StatefulSet", base.clone()),
        ("Service", base.clone()),
        ("Service", format!("{base}-peers")),
        ("PodDisruptionBudget", base.clone()),
        ("ServiceAccount", base.clone()),
        ("Role", base.clone()),
        ("RoleBinding", base.clone()),
        // The peer CA and the pods' peer certificate (mutual TLS between pods).
        ("Secret", format!("{base}-peer-ca")),
        ("Secret", format!("{base}-peer-tls")),
    ]
}

/// The metadata of child `kind name`, or `None` when it does not exist.
async fn child_meta(e2e: &E2e, kind: &str, name: &str) -> anyhow::Result<Option<ObjectMeta>> {
    async fn meta<K>(e2e: &E2e, name: &str) -> anyhow::Result<Option<ObjectMeta>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + kube::Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(e2e.client.clone(), &e2e.k8s_namespace);
        Ok(api.get_opt(name).await?.map(|o| o.meta().clone()))
    }
    match kind {
        "StatefulSet" => meta::<StatefulSet>(e2e, name).await,
        "Service" => meta::<Service>(e2e, name).await,
        "PodDisruptionBudget" => meta::<PodDisruptionBudget>(e2e, name).await,
        "ServiceAccount" => meta::<ServiceAccount>(e2e, name).await,
        "Role" => meta::<Role>(e2e, name).await,
        "RoleBinding" => meta::<RoleBinding>(e2e, name).await,
        "Secret" => meta::<Secret>(e2e, name).await,
        other => anyhow::bail!("no child kind {other}"),
    }
}

/// The data plane pods of Namespace `name` (the StatefulSet's: `<name>-gridline-<ordinal>`).
async fn dataplane_pods(e2e: &E2e, name: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<Pod> = Api::namespaced(e2e.client.clone(), &e2e.k8s_namespace);
    let prefix = format!("{name}-gridline-");
    Ok(api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|ordinal| ordinal.chars().all(|c| c.is_ascii_digit()))
        })
        .collect())
}

#[tokio::test]
async fn the_example_namespace_runs_as_a_statefulset_and_deleting_it_removes_what_was_made()
-> anyhow::Result<()> {
    let e2e = e2e_or_skip!("namespace_lifecycle::apply_serve_delete");
    let examples = e2e.apply_examples().await?;
    e2e.wait_until_served(&examples).await?;
    let namespace = manifests::find(&examples, "Namespace", EXAMPLE_NAMESPACE)?;
    let namespace_uid = e2e
        .get(namespace)
        .await?
        .and_then(|n| n.metadata.uid)
        .context("the Namespace has no uid")?;

    // Every child exists and is owned by the Namespace, so deleting it collects them.
    for (kind, name) in children(EXAMPLE_NAMESPACE) {
        let meta = child_meta(&e2e, kind, &name)
            .await?
            .with_context(|| format!("{kind} {name} was not created"))?;
        let owned = meta.owner_references.iter().flatten().any(|o| {
            o.kind == "Namespace"
                && o.api_version.starts_with("gridline.dev/")
                && o.uid == namespace_uid
        });
        ensure!(
            owned,
            "{kind} {name} is not owned by the Namespace: {:?}",
            meta.owner_references
        );
    }

    let services: Api<Service> = Api::namespaced(e2e.client.clone(), &e2e.k8s_namespace);
    let client_service = services
        .get(&format!("{EXAMPLE_NAMESPACE}-gridline"))
        .await?;
    let ports: Vec<(String, i32)> = client_service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect();
    for expected in [("http", 8080), ("mqtt", 1883)] {
        ensure!(
            ports
                .iter()
                .any(|(n, p)| n == expected.0 && *p == expected.1),
            "the client Service lacks port {expected:?} (the examples enable plaintext MQTT): {ports:?}"
        );
    }
    let peers = services
        .get(&format!("{EXAMPLE_NAMESPACE}-gridline-peers"))
        .await?;
    let peer_ports: Vec<(String, i32)> = peers
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect();
    ensure!(
        peer_ports.contains(&("peer".to_string(), 7443)),
        "the peers Service carries the peer port: {peer_ports:?}"
    );
    ensure!(
        peers.spec.and_then(|s| s.cluster_ip).as_deref() == Some("None"),
        "the peers Service is headless"
    );
    let secrets: Api<Secret> = Api::namespaced(e2e.client.clone(), &e2e.k8s_namespace);
    let leaf = secrets
        .get(&format!("{EXAMPLE_NAMESPACE}-gridline-peer-tls"))
        .await?;
    let mut keys: Vec<String> = leaf.data.into_iter().flat_map(|d| d.into_keys()).collect();
    keys.sort();
    ensure!(
        keys == ["ca.crt", "tls.crt", "tls.key"],
        "the peer certificate Secret holds {keys:?}"
    );

    if !e2e.local_dataplane {
        let statefulsets: Api<StatefulSet> =
            Api::namespaced(e2e.client.clone(), &e2e.k8s_namespace);
        let statefulset = statefulsets
            .get(&format!("{EXAMPLE_NAMESPACE}-gridline"))
            .await?;
        let wanted = namespace.body["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
        let ready = statefulset
            .status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        ensure!(ready == wanted, "Ready with {ready} of {wanted} pods ready");
        // Members, when the pods hold Leases, are this Namespace's pods.
        let current = e2e.get(namespace).await?.context("the Namespace is gone")?;
        let members: Vec<String> = current.data["status"]["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect();
        let pods = dataplane_pods(&e2e, EXAMPLE_NAMESPACE).await?;
        ensure!(
            members.iter().all(|m| pods.contains(m)),
            "status.members {members:?} are not all pods of the Namespace {pods:?}"
        );
    }

    // Delete the Namespace: its children go (owner references), its Topics lose it.
    e2e.delete(namespace).await?;
    e2e.eventually(
        "every child of the deleted Namespace is gone",
        e2e.timeout(),
        || async {
            let mut left = Vec::new();
            for (kind, name) in children(EXAMPLE_NAMESPACE) {
                if child_meta(&e2e, kind, &name).await?.is_some() {
                    left.push(format!("{kind} {name}"));
                }
            }
            if !e2e.local_dataplane {
                left.extend(dataplane_pods(&e2e, EXAMPLE_NAMESPACE).await?);
            }
            if !left.is_empty() {
                println!("still there: {}", left.join(", "));
            }
            Ok(left.is_empty().then_some(()))
        },
    )
    .await?;
    let orders = manifests::find(&examples, "Topic", "orders")?;
    e2e.eventually(
        "Topic orders is no longer Accepted once its Namespace is gone",
        e2e.timeout(),
        || async {
            let topic = e2e.get(orders).await?.context("Topic orders disappeared")?;
            Ok((condition_status(&topic, "Accepted").as_deref() == Some("False")).then_some(()))
        },
    )
    .await?;

    restore_if_shared(&e2e, &examples).await
}

/// A namespace the test did not create outlives it (and, with a local data plane, is what
/// that process serves): put the examples back.
async fn restore_if_shared(e2e: &E2e, examples: &[Manifest]) -> anyhow::Result<()> {
    if std::env::var("GRIDLINE_E2E_NAMESPACE").is_ok_and(|v| !v.is_empty()) {
        for manifest in examples {
            e2e.apply(manifest).await?;
        }
        e2e.wait_until_served(examples).await?;
    }
    Ok(())
}
