//! The Services in front of a Namespace's pods and the disruption budget that keeps a drain
//! from taking them all at once.

use super::conventions::*;
use gridline_crds::types::Namespace;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn service_port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(target.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// `<ns-name>-gridline-peers`: headless, listing pods before they are ready, because a pod
/// joining the cluster must reach its peers before it can report ready. Each pod is
/// `<pod>.<ns-name>-gridline-peers.<k8s-namespace>.svc`; `peer` is the port of the links
/// between pods (mutual TLS), `http` the data plane's HTTP API.
pub fn peers_service(ns: &Namespace) -> Service {
    Service {
        metadata: child_meta(ns, peers_name(ns)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(ns)),
            ports: Some(vec![
                service_port("http", HTTP_PORT, "http"),
                service_port("peer", PEER_PORT, "peer"),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<ns-name>-gridline`: what clients connect to. MQTT over TLS on `listeners.mqttTls.port`
/// when enabled, HTTPS (the CloudEvents API, and MQTT over WebSockets at `/mqtt` when
/// `websockets` is on) on `listeners.https.port` (443, as Event Grid) when enabled, plaintext
/// MQTT on `listeners.mqttPlaintext.port` when enabled, and the HTTP listener (the same, in
/// clear) on `listeners.http.port`, 8080 when unset.
pub fn client_service(ns: &Namespace) -> Service {
    let listeners = &ns.spec.listeners;
    let mut ports = Vec::new();
    if listeners.mqtt_tls.enabled {
        ports.push(service_port("mqtts", listeners.mqtt_tls.port, "mqtts"));
    }
    if listeners.https.enabled {
        ports.push(service_port("https", listeners.https.port, "https"));
    }
    if let Some(plaintext) = listeners.mqtt_plaintext.as_ref().filter(|l| l.enabled) {
        ports.push(service_port("mqtt", plaintext.port, "mqtt"));
    }
    let http_port = listeners
        .http
        .as_ref()
        .filter(|l| l.enabled)
        .map_or(HTTP_PORT, |l| l.port);
    // Without `listeners.http` the port is ours to choose, and compile has not checked it
    // against the others: a Service with two equal ports would be refused whole.
    if ports.iter().all(|p| p.port != http_port) {
        ports.push(service_port("http", http_port, "http"));
    }
    Service {
        metadata: child_meta(ns, base_name(ns)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(ns)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// At most one pod voluntarily down at a time: each pod holds a partition of every topic, and
/// draining one hands its events to the others (DESIGN §5).
pub fn pod_disruption_budget(ns: &Namespace) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(ns, base_name(ns)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(ns)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_namespaces::namespace;
    use super::*;
    use serde_json::json;

    fn ports(service: &Service) -> Vec<(String, i32, String)> {
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .unwrap()
            .iter()
            .map(|p| {
                let target = match p.target_port.as_ref().unwrap() {
                    IntOrString::String(s) => s.clone(),
                    IntOrString::Int(i) => i.to_string(),
                };
                (p.name.clone().unwrap(), p.port, target)
            })
            .collect()
    }

    fn port(name: &str, port: i32) -> (String, i32, String) {
        (name.to_string(), port, name.to_string())
    }

    #[test]
    fn by_default_clients_get_mqtt_over_tls_https_on_443_and_http() {
        let service = client_service(&namespace(json!({})));
        assert_eq!(service.metadata.name.as_deref(), Some("orders-gridline"));
        assert_eq!(
            ports(&service),
            [port("mqtts", 8883), port("https", 443), port("http", 8080)]
        );
    }

    #[test]
    fn https_carries_the_event_grid_api_with_or_without_websockets() {
        let ns = namespace(json!({"listeners": {"websockets": false}}));
        assert_eq!(
            ports(&client_service(&ns)),
            [port("mqtts", 8883), port("https", 443), port("http", 8080)]
        );
        let ns = namespace(json!({"listeners": {"https": {"enabled": false, "port": 443}}}));
        assert_eq!(
            ports(&client_service(&ns)),
            [port("mqtts", 8883), port("http", 8080)]
        );
    }

    #[test]
    fn the_plaintext_listener_adds_port_1883() {
        let ns = namespace(json!({"listeners": {"mqttPlaintext": {}, "websockets": false}}));
        assert_eq!(
            ports(&client_service(&ns)),
            [
                port("mqtts", 8883),
                port("https", 443),
                port("mqtt", 1883),
                port("http", 8080)
            ]
        );
    }

    #[test]
    fn a_disabled_plaintext_listener_and_disabled_tls_expose_only_http() {
        let ns = namespace(json!({"listeners": {
            "mqttPlaintext": {"enabled": false},
            "mqttTls": {"enabled": false, "port": 8883},
            "https": {"enabled": false, "port": 443},
        }}));
        assert_eq!(ports(&client_service(&ns)), [port("http", 8080)]);
    }

    #[test]
    fn listener_ports_from_the_spec_are_the_service_ports() {
        let ns = namespace(json!({"listeners": {
            "mqttTls": {"port": 9883},
            "mqttPlaintext": {"port": 11883},
            "http": {"port": 80},
            "https": {"port": 8443},
            "websockets": true,
        }}));
        assert_eq!(
            ports(&client_service(&ns)),
            [
                ("mqtts".into(), 9883, "mqtts".into()),
                port("https", 8443),
                ("mqtt".into(), 11883, "mqtt".into()),
                ("http".into(), 80, "http".into()),
            ]
        );
    }

    #[test]
    fn the_default_http_port_gives_way_to_a_listener_that_took_it() {
        let ns =
            namespace(json!({"listeners": {"mqttPlaintext": {"port": 8080}, "websockets": false}}));
        assert_eq!(
            ports(&client_service(&ns)),
            [
                port("mqtts", 8883),
                port("https", 443),
                ("mqtt".into(), 8080, "mqtt".into())
            ]
        );
    }

    #[test]
    fn the_peers_service_is_headless_and_lists_unready_pods() {
        let service = peers_service(&namespace(json!({})));
        assert_eq!(
            service.metadata.name.as_deref(),
            Some("orders-gridline-peers")
        );
        let spec = service.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector.as_ref().unwrap()["app.kubernetes.io/name"],
            "gridline-dataplane"
        );
        assert_eq!(
            ports(&service),
            [port("http", 8080), port("peer", 7443)],
            "the peer links' port, by the container port's name"
        );
    }

    #[test]
    fn the_disruption_budget_allows_one_pod_down() {
        let pdb = pod_disruption_budget(&namespace(json!({"replicas": 5})));
        assert_eq!(pdb.metadata.name.as_deref(), Some("orders-gridline"));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "orders"
        );
    }
}
