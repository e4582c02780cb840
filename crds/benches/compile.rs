//! How long `compile` takes on a large Namespace: the cost of every configuration reload.
//! `cargo bench -p gridline-crds --bench compile` prints the figures recorded in BENCHMARKS.md.

use gridline_crds::attributes::AttributeValue;
use gridline_crds::model::{Objects, compile};
use gridline_crds::types::*;
use std::time::{Duration, Instant};

const CLIENTS: usize = 10_000;
const CLIENT_GROUPS: usize = 100;
const TOPIC_SPACES: usize = 100;
const PERMISSION_BINDINGS: usize = 200;
const TOPICS: usize = 50;
const SUBSCRIPTIONS: usize = 200;

fn metadata(name: String) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn large_namespace() -> Objects {
    let namespace_ref = ObjectRef::new("bench");
    let mut namespace_spec: namespace::NamespaceSpec =
        serde_json::from_value(serde_json::json!({})).expect("defaults");
    namespace_spec.listeners.mqtt_tls.enabled = false;
    namespace_spec.listeners.https.enabled = false;
    let mut objects = Objects {
        namespaces: vec![Namespace {
            metadata: metadata("bench".into()),
            spec: namespace_spec,
            status: None,
        }],
        ..Default::default()
    };
    for i in 0..TOPICS {
        objects.topics.push(Topic {
            metadata: metadata(format!("topic-{i}")),
            spec: serde_json::from_value(serde_json::json!({"namespaceRef": {"name": "bench"}}))
                .expect("topic"),
            status: None,
        });
    }
    for i in 0..SUBSCRIPTIONS {
        let spec = serde_json::json!({
            "topicRef": {"name": format!("topic-{}", i % TOPICS)},
            "deliveryConfiguration": {"deliveryMode": "Queue", "queue": {"eventTimeToLive": "P1D"}},
            "filtersConfiguration": {
                "includedEventTypes": ["com.example.created"],
                "filters": [
                    {"operatorType": "NumberInRange", "key": "data.total", "values": [[0, 100], [1000, 5000]]},
                    {"operatorType": "StringBeginsWith", "key": "subject", "values": ["orders/eu", "orders/us"]}
                ]
            }
        });
        objects.event_subscriptions.push(EventSubscription {
            metadata: metadata(format!("subscription-{i}")),
            spec: serde_json::from_value(spec).expect("subscription"),
            status: None,
        });
    }
    for i in 0..CLIENT_GROUPS {
        objects.client_groups.push(ClientGroup {
            metadata: metadata(format!("group-{i}")),
            spec: ClientGroupSpec {
                namespace_ref: namespace_ref.clone(),
                description: None,
                query: format!(
                    "attributes.floor = {} OR (attributes.type IN ['sensor', 'gateway'] AND attributes.site = 'site-{}')",
                    i % 20,
                    i
                ),
            },
            status: None,
        });
    }
    for i in 0..TOPIC_SPACES {
        objects.topic_spaces.push(TopicSpace {
            metadata: metadata(format!("space-{i}")),
            spec: TopicSpaceSpec {
                namespace_ref: namespace_ref.clone(),
                description: None,
                topic_templates: vec![
                    format!("area-{i}/${{client.authenticationName}}/telemetry/#"),
                    format!("area-{i}/floors/${{client.attributes.floor}}/+"),
                ],
            },
            status: None,
        });
    }
    for i in 0..PERMISSION_BINDINGS {
        objects.permission_bindings.push(PermissionBinding {
            metadata: metadata(format!("binding-{i}")),
            spec: PermissionBindingSpec {
                namespace_ref: namespace_ref.clone(),
                description: None,
                topic_space_name: format!("space-{}", i % TOPIC_SPACES),
                permission: if i % 2 == 0 {
                    permission_binding::Permission::Publisher
                } else {
                    permission_binding::Permission::Subscriber
                },
                client_group_name: format!("group-{}", i % CLIENT_GROUPS),
            },
            status: None,
        });
    }
    for i in 0..CLIENTS {
        let attributes = [
            (
                "floor".to_string(),
                AttributeValue::Integer((i % 20) as i64),
            ),
            (
                "type".to_string(),
                AttributeValue::String(["sensor", "gateway", "app"][i % 3].into()),
            ),
            (
                "site".to_string(),
                AttributeValue::String(format!("site-{}", i % 100)),
            ),
            (
                "capabilities".to_string(),
                AttributeValue::StringArray(vec!["temperature".into(), "humidity".into()]),
            ),
        ]
        .into_iter()
        .collect();
        objects.clients.push(Client {
            metadata: metadata(format!("client-{i}")),
            spec: ClientSpec {
                namespace_ref: namespace_ref.clone(),
                authentication_name: None,
                description: None,
                client_certificate_authentication: None,
                state: State::Enabled,
                attributes,
            },
            status: None,
        });
    }
    objects
}

fn main() {
    let objects = large_namespace();
    let runs = 10;
    let mut timings: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let (snapshot, errors) = compile(&objects);
        timings.push(started.elapsed());
        assert!(
            errors.is_empty(),
            "the benchmark namespace is valid: {errors:?}"
        );
        assert_eq!(snapshot.clients.len(), CLIENTS);
        std::hint::black_box(snapshot);
    }
    timings.sort();
    println!(
        "compile: {CLIENTS} clients, {CLIENT_GROUPS} client groups, {TOPIC_SPACES} topic spaces, {PERMISSION_BINDINGS} permission bindings, {TOPICS} topics, {SUBSCRIPTIONS} filtered subscriptions"
    );
    println!(
        "  {runs} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        timings[0].as_secs_f64() * 1e3,
        timings[runs / 2].as_secs_f64() * 1e3,
        timings[runs - 1].as_secs_f64() * 1e3
    );
}
