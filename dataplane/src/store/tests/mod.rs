//! Store behaviour through its public façade: `delivery` covers the queue semantics,
//! `durability` recovery, retention and the fsync policies, `lifecycle` what happens to the
//! files of removed topics and subscriptions, `push` the push dispatcher's access, `faults`
//! corrupt records and failing writes.

mod cluster;
mod delivery;
mod durability;
mod faults;
mod lifecycle;
mod push;

use super::*;
use crate::metrics::Metrics;
use gridline_crds::model::filter::CompiledFilter;
use gridline_crds::model::{
    CompiledNamespace, CompiledSubscription, CompiledTopic, Delivery, QueueDelivery,
};
use gridline_crds::types::filters::FiltersConfiguration;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::path::Path;

pub const TOPIC: &str = "orders";
pub const DEAD: &str = "orders-dead";
pub const SUB: &str = "all-orders";
pub const LOCK: Duration = Duration::from_secs(60);

pub fn event(id: &str) -> PublishedEvent {
    event_of_type(id, "com.example.order")
}

pub fn event_of_type(id: &str, kind: &str) -> PublishedEvent {
    let attributes = json!({
        "specversion": "1.0", "id": id, "source": "/tests", "type": kind, "data": {"n": id}
    });
    PublishedEvent {
        json: RawValue::from_string(attributes.to_string()).unwrap(),
        attributes,
    }
}

pub fn events(prefix: &str, count: usize) -> Vec<PublishedEvent> {
    (0..count)
        .map(|n| event(&format!("{prefix}-{n}")))
        .collect()
}

pub fn id_of(received: &ReceivedEvent) -> String {
    let value: Value = serde_json::from_str(received.event.get()).unwrap();
    value["id"].as_str().unwrap().to_string()
}

pub fn ids(received: &[ReceivedEvent]) -> Vec<String> {
    received.iter().map(id_of).collect()
}

pub fn tokens(received: &[ReceivedEvent]) -> Vec<String> {
    received.iter().map(|r| r.lock_token.clone()).collect()
}

pub fn queue(max_delivery_count: u32, dead_letter: bool) -> QueueDelivery {
    QueueDelivery {
        receive_lock_duration: LOCK,
        max_delivery_count,
        event_time_to_live: Duration::from_secs(24 * 3600),
        dead_letter_topic: dead_letter.then(|| DEAD.to_string()),
    }
}

pub fn subscription(topic: &str, name: &str, delivery: QueueDelivery) -> CompiledSubscription {
    CompiledSubscription {
        name: name.to_string(),
        topic: topic.to_string(),
        delivery: Delivery::Queue(delivery),
        filter: CompiledFilter::accept_all(),
        expiration_time: None,
    }
}

pub fn type_filter(kind: &str) -> CompiledFilter {
    CompiledFilter::compile(&FiltersConfiguration {
        included_event_types: vec![kind.to_string()],
        ..FiltersConfiguration::default()
    })
    .unwrap()
}

/// A Snapshot with the topics `orders` and `orders-dead` (each with a `<topic>` subscription
/// list as given) and the namespace's storage settings.
pub fn snapshot(subscriptions: Vec<CompiledSubscription>, storage: Value) -> Arc<Snapshot> {
    let spec = serde_json::from_value(json!({ "storage": storage })).unwrap();
    let mut snapshot = Snapshot {
        namespace: Some(CompiledNamespace {
            name: "tests".into(),
            k8s_namespace: "default".into(),
            spec,
            sas_keys: Vec::new(),
            route_topic: None,
            lifecycle_topic: None,
            routing_enrichments: Default::default(),
            tls_certificate: None,
            custom_domains: Vec::new(),
            ca_certificates: Default::default(),
            jwt_issuers: Vec::new(),
            cluster: Default::default(),
        }),
        ..Snapshot::default()
    };
    for topic in [TOPIC, DEAD] {
        snapshot.topics.insert(
            topic.to_string(),
            CompiledTopic {
                name: topic.to_string(),
                event_retention: Duration::from_secs(24 * 3600),
            },
        );
    }
    for subscription in subscriptions {
        snapshot.subscriptions.insert(
            (subscription.topic.clone(), subscription.name.clone()),
            subscription,
        );
    }
    Arc::new(snapshot)
}

/// One queue subscription on `orders`, one catching the dead letters on `orders-dead`.
pub fn standard(max_delivery_count: u32, dead_letter: bool) -> Arc<Snapshot> {
    snapshot(
        vec![
            subscription(TOPIC, SUB, queue(max_delivery_count, dead_letter)),
            subscription(DEAD, SUB, queue(10, false)),
        ],
        json!({}),
    )
}

pub async fn open_with(dir: &Path, tuning: StoreTuning) -> EventStore {
    let options = StoreOptions {
        data_dir: dir.to_path_buf(),
        metrics: Arc::new(Metrics::new().unwrap()),
    };
    EventStore::open_tuned(options, tuning).await.unwrap()
}

pub async fn open(dir: &Path, snapshot: &Arc<Snapshot>) -> EventStore {
    let store = open_with(
        dir,
        StoreTuning {
            // Out of the way of the tests that do not exercise it.
            retention_period: Duration::from_secs(365 * 24 * 3600),
            ..StoreTuning::default()
        },
    )
    .await;
    store.apply_snapshot(Arc::clone(snapshot));
    store
}

impl EventStore {
    /// Receive without waiting.
    pub async fn poll(&self, topic: &str, subscription: &str, max: usize) -> Vec<ReceivedEvent> {
        self.receive(topic, subscription, max, Duration::ZERO)
            .await
            .unwrap()
    }

    pub async fn settle_all(&self, action: Settle, tokens: &[String]) -> SettleOutcome {
        self.settle(TOPIC, SUB, action, tokens).await.unwrap()
    }

    pub fn fsync_count(&self, topic: &str) -> u64 {
        self.inner.topics.read()[topic].committer.fsync_count()
    }

    pub fn segment_count(&self, topic: &str) -> usize {
        self.inner.topics.read()[topic].log.segment_count()
    }
}

pub fn succeeded(outcome: &SettleOutcome, count: usize) {
    assert_eq!(outcome.failed, vec![], "no token should fail");
    assert_eq!(outcome.succeeded.len(), count);
}
