//! The StatefulSet of data-plane pods: one volume per pod, because each pod stores the events
//! published to it.

use super::conventions::*;
use crate::options::Options;
use gridline_crds::types::Namespace;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The StatefulSet `<ns-name>-gridline` serving `ns`.
pub fn statefulset(ns: &Namespace, options: &Options) -> StatefulSet {
    StatefulSet {
        metadata: child_meta(ns, base_name(ns)),
        spec: Some(StatefulSetSpec {
            replicas: Some(ns.spec.replicas),
            service_name: Some(peers_name(ns)),
            // Pods are peers, not a chain: start and stop them all at once.
            pod_management_policy: Some("Parallel".to_string()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(ns)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(ns)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(ns, options)),
            },
            volume_claim_templates: Some(vec![volume_claim(ns)]),
            persistent_volume_claim_retention_policy: Some(volume_claim_retention(ns)),
            // One pod at a time, each waiting for the previous to be ready again: a pod being
            // replaced drains to its peers, which must be there to take it. (Parallel pod
            // management above concerns scaling only.)
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: None,
            }),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(ns: &Namespace, options: &Options) -> PodSpec {
    PodSpec {
        service_account_name: Some(base_name(ns)),
        containers: vec![container(ns, options)],
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(DATAPLANE_UID),
            run_as_group: Some(DATAPLANE_UID),
            // The volume must be writable by the non-root user.
            fs_group: Some(DATAPLANE_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        // Draining hands events and sessions to peers (DESIGN §5); give it time.
        termination_grace_period_seconds: Some(60),
        affinity: Some(spread_over_nodes(ns)),
        volumes: Some(vec![
            Volume {
                // The root filesystem is read-only; some libraries still want a scratch /tmp.
                name: "tmp".to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            Volume {
                // The certificate of the peer links; the CA's key stays in its own Secret.
                name: PEER_TLS_VOLUME.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(peer_tls_secret_name(ns)),
                    // Owner and group read: the group is the pod's fsGroup, the data plane's.
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

const PEER_TLS_VOLUME: &str = "peer-tls";

/// `spec.storage.volumeClaimRetention` as the StatefulSet's policy (same spelling).
fn volume_claim_retention(ns: &Namespace) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    let retention = &ns.spec.storage.volume_claim_retention;
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_scaled: Some(retention.when_scaled.as_str().to_string()),
        when_deleted: Some(retention.when_deleted.as_str().to_string()),
    }
}

/// Prefer one pod per node, so that losing a node loses one partition, not several.
fn spread_over_nodes(ns: &Namespace) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(ns)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_string(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The arguments of `gridline-dataplane run` (the contract with the data plane's CLI).
pub fn dataplane_args(ns: &Namespace) -> Vec<String> {
    [
        "run",
        "--kubernetes",
        "--namespace",
        &ns.name_any(),
        "--data-dir",
        DATA_DIR,
        "--http-addr",
        &format!("0.0.0.0:{HTTP_PORT}"),
        "--mqtt-addr",
        &format!("0.0.0.0:{MQTT_PORT}"),
        "--mqtts-addr",
        &format!("0.0.0.0:{MQTTS_PORT}"),
        "--https-addr",
        &format!("0.0.0.0:{HTTPS_PORT}"),
        // The address peers dial: the pod's own name under the headless Service. Kubernetes
        // expands `$(VAR)` from the container's environment (POD_NAME, POD_NAMESPACE below).
        "--peer-addr",
        &format!(
            "$(POD_NAME).{}.$(POD_NAMESPACE).svc:{PEER_PORT}",
            peers_name(ns)
        ),
        "--peer-listen",
        &format!("0.0.0.0:{PEER_PORT}"),
        "--peer-tls-dir",
        PEER_TLS_DIR,
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn container(ns: &Namespace, options: &Options) -> Container {
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    };
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    Container {
        name: "dataplane".to_string(),
        image: Some(options.dataplane_image.clone()),
        image_pull_policy: Some(options.dataplane_image_pull_policy.clone()),
        command: Some(vec!["gridline-dataplane".to_string()]),
        args: Some(dataplane_args(ns)),
        env: Some(vec![
            field_env("GRIDLINE_K8S_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            port("http", HTTP_PORT),
            port("mqtt", MQTT_PORT),
            port("mqtts", MQTTS_PORT),
            port("https", HTTPS_PORT),
            port("peer", PEER_PORT),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        // Generous: a pod replaying a large store must not be killed for being slow to start.
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        // The Namespace's own, else the operator's defaults.
        resources: Some(
            ns.spec
                .resources
                .clone()
                .unwrap_or_else(|| options.dataplane_resources.clone()),
        ),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(DATAPLANE_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_string(),
                mount_path: DATA_DIR.to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_string(),
                mount_path: "/tmp".to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: PEER_TLS_VOLUME.to_string(),
                mount_path: PEER_TLS_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(HTTP_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// One `data` volume per pod, sized and classed by `spec.storage` (both immutable in the CRD,
/// as they are in a StatefulSet).
fn volume_claim(ns: &Namespace) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            labels: Some(selector_labels(ns)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: ns.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(
                    [(
                        "storage".to_string(),
                        Quantity(ns.spec.storage.size.clone()),
                    )]
                    .into(),
                ),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_namespaces::namespace;
    use super::*;
    use serde_json::json;

    fn pod(sts: &StatefulSet) -> &PodSpec {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("a pod template")
    }

    #[test]
    fn replicas_name_and_peers_service_come_from_the_namespace() {
        let sts = statefulset(&namespace(json!({"replicas": 3})), &Options::default());
        assert_eq!(sts.metadata.name.as_deref(), Some("orders-gridline"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("shop"));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("orders-gridline-peers"));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()["app.kubernetes.io/instance"],
            "orders"
        );
        assert_eq!(
            pod(&sts).service_account_name.as_deref(),
            Some("orders-gridline")
        );
    }

    #[test]
    fn the_statefulset_is_owned_by_its_namespace() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let owners = sts.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Namespace");
        assert_eq!(owners[0].api_version, "gridline.dev/v1alpha1");
        assert_eq!(owners[0].uid, "uid-orders");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(
            sts.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
            "gridline-operator"
        );
    }

    #[test]
    fn storage_size_and_class_become_the_volume_claim_template() {
        let ns = namespace(json!({"storage": {"size": "50Gi", "storageClassName": "fast-ssd"}}));
        let sts = statefulset(&ns, &Options::default());
        let claims = sts.spec.unwrap().volume_claim_templates.unwrap();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let spec = claims[0].spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(
            spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("50Gi".into())
        );
    }

    #[test]
    fn without_a_storage_class_the_cluster_default_is_used() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let claims = sts.spec.unwrap().volume_claim_templates.unwrap();
        let spec = claims[0].spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name, None);
        assert_eq!(
            spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("10Gi".into())
        );
    }

    #[test]
    fn the_container_runs_the_dataplane_against_its_namespace() {
        let options = Options {
            dataplane_image: "registry.local/gridline:dev".into(),
            dataplane_image_pull_policy: "Always".into(),
            ..Options::default()
        };
        let sts = statefulset(&namespace(json!({})), &options);
        let container = &pod(&sts).containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.local/gridline:dev")
        );
        assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            container.command.as_deref(),
            Some(&["gridline-dataplane".to_string()][..])
        );
        assert_eq!(
            container.args.as_ref().unwrap().join(" "),
            "run --kubernetes --namespace orders --data-dir /var/lib/gridline \
             --http-addr 0.0.0.0:8080 --mqtt-addr 0.0.0.0:1883 --mqtts-addr 0.0.0.0:8883 \
             --https-addr 0.0.0.0:8443 \
             --peer-addr $(POD_NAME).orders-gridline-peers.$(POD_NAMESPACE).svc:7443 \
             --peer-listen 0.0.0.0:7443 --peer-tls-dir /etc/gridline/peer-tls --log-level info"
        );
        let env = &container.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "GRIDLINE_K8S_NAMESPACE");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.namespace"
        );
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "data" && m.mount_path == "/var/lib/gridline")
        );
    }

    #[test]
    fn the_dataplane_learns_its_pod_name_from_the_downward_api() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let env = pod(&sts).containers[0].env.as_ref().unwrap();
        let pod_name = env.iter().find(|e| e.name == "POD_NAME").unwrap();
        let field = pod_name
            .value_from
            .as_ref()
            .and_then(|source| source.field_ref.as_ref())
            .map(|selector| selector.field_path.as_str());
        assert_eq!(field, Some("metadata.name"));
        assert_eq!(pod_name.value, None);
    }

    #[test]
    fn probes_hit_the_dataplane_health_endpoints() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let container = &pod(&sts).containers[0];
        let path = |p: &Option<Probe>| {
            let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
            (get.path.clone().unwrap(), get.port.clone())
        };
        assert_eq!(
            path(&container.readiness_probe),
            ("/readyz".into(), IntOrString::Int(8080))
        );
        assert_eq!(
            path(&container.liveness_probe),
            ("/healthz".into(), IntOrString::Int(8080))
        );
    }

    #[test]
    fn the_namespaces_resources_replace_the_operators_defaults() {
        let defaults = statefulset(&namespace(json!({})), &Options::default());
        assert_eq!(
            pod(&defaults).containers[0].resources,
            Some(Options::default().dataplane_resources)
        );
        let resources =
            json!({"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}});
        let sts = statefulset(
            &namespace(json!({"resources": resources})),
            &Options::default(),
        );
        let got = serde_json::to_value(&pod(&sts).containers[0].resources).unwrap();
        assert_eq!(got, resources);
    }

    #[test]
    fn pods_run_as_non_root_with_a_read_only_root_filesystem() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let pod = pod(&sts);
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.run_as_user, Some(10001));
        assert_eq!(pod_security.fs_group, Some(10001));
        let container_security = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(container_security.read_only_root_filesystem, Some(true));
        assert_eq!(container_security.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn the_container_always_exposes_every_listener_port() {
        // The data plane opens MQTT listeners from the Namespace's config; the ports are
        // declared regardless so that a config change never needs a pod restart.
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let ports: Vec<_> = pod(&sts).containers[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_string(), 8080),
                ("mqtt".to_string(), 1883),
                ("mqtts".to_string(), 8883),
                ("https".to_string(), 8443),
                ("peer".to_string(), 7443)
            ]
        );
    }

    #[test]
    fn the_peer_address_expands_from_env_vars_the_container_defines() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let container = &pod(&sts).containers[0];
        let env = container.env.as_ref().unwrap();
        let field_of = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value_from.as_ref())
                .and_then(|source| source.field_ref.as_ref())
                .map(|selector| selector.field_path.clone())
        };
        assert_eq!(
            field_of("POD_NAMESPACE").as_deref(),
            Some("metadata.namespace")
        );
        // Kubernetes expands `$(VAR)` only for variables defined before use in `env`.
        let args = container.args.as_ref().unwrap();
        let peer_addr = &args[args.iter().position(|a| a == "--peer-addr").unwrap() + 1];
        for variable in ["POD_NAME", "POD_NAMESPACE"] {
            assert!(peer_addr.contains(&format!("$({variable})")));
            assert!(field_of(variable).is_some(), "{variable} is defined");
        }
    }

    #[test]
    fn the_peer_tls_secret_is_mounted_read_only_and_the_ca_secret_never() {
        let sts = statefulset(&namespace(json!({})), &Options::default());
        let pod = pod(&sts);
        let secrets: Vec<_> = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|v| Some((v.name.clone(), v.secret.as_ref()?.secret_name.clone()?)))
            .collect();
        assert_eq!(
            secrets,
            [(
                "peer-tls".to_string(),
                "orders-gridline-peer-tls".to_string()
            )]
        );
        let mount = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "peer-tls")
            .expect("the peer-tls mount");
        assert_eq!(mount.mount_path, "/etc/gridline/peer-tls");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn volume_claims_are_retained_unless_the_namespace_says_delete() {
        let retention = |spec| {
            let sts = statefulset(&namespace(spec), &Options::default());
            let policy = sts
                .spec
                .unwrap()
                .persistent_volume_claim_retention_policy
                .unwrap();
            (policy.when_scaled.unwrap(), policy.when_deleted.unwrap())
        };
        assert_eq!(retention(json!({})), ("Retain".into(), "Retain".into()));
        assert_eq!(
            retention(json!({"storage": {"volumeClaimRetention": {"whenScaled": "Delete"}}})),
            ("Delete".into(), "Retain".into())
        );
        assert_eq!(
            retention(json!({"storage": {"volumeClaimRetention": {"whenDeleted": "Delete"}}})),
            ("Retain".into(), "Delete".into())
        );
    }

    #[test]
    fn pods_are_replaced_one_at_a_time() {
        let sts = statefulset(&namespace(json!({"replicas": 3})), &Options::default());
        let strategy = sts.spec.unwrap().update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        // No maxUnavailable: the default, one pod at a time.
        assert_eq!(strategy.rolling_update, None);
    }
}
