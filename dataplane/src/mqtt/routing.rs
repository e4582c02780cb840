//! Routing MQTT messages into a namespace Topic as CloudEvents (SPEC §D, Event Grid's "MQTT
//! message routing"). The connection task only queues the message (`Broker::route`, never
//! waiting); one routing task builds the events and appends them through the store's ordinary
//! publish path, a batch at a time, so queue and push subscriptions get them like any HTTP
//! publish. A QoS 1/2 message carries a `RouteTicket`: its connection holds the PUBACK /
//! PUBREC back until the routing task reports the batch stored. See README.md, "Routing
//! (decision)".

use super::cloud_event::{new_event_id, published, rfc3339};
use super::codec::Message;
use super::reason::ReasonCode;
use super::session::Session;
use crate::snapshot::SharedSnapshot;
use crate::store::{EventStore, PublishedEvent, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use gridline_crds::attributes::AttributeValue;
use gridline_crds::model::snapshot::CompiledClient;
use gridline_crds::types::namespace::RoutingEnrichments;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// The CloudEvents `type` of a routed message (Event Grid's).
pub const ROUTED_EVENT_TYPE: &str = "MQTT.EventPublished";

/// Messages waiting for the routing task beyond which best-effort ones (QoS 0, wills) are
/// dropped and counted (`gridline_mqtt_routed_events_total{result="dropped"}`). QoS 1/2
/// messages are never dropped: each connection has at most our receive maximum of them
/// waiting (its acknowledgements wait for them), which bounds them instead.
pub const ROUTING_QUEUE: usize = 10_000;

/// Events appended in one store call at most (one group commit).
pub const MAX_BATCH: usize = 500;

/// A message accepted by the broker, on its way to the routing task.
pub struct Routed {
    pub message: Message,
    pub authentication_name: String,
    pub received: DateTime<Utc>,
    /// Whose acknowledgement waits for it to be stored (QoS 1/2); None: best effort.
    pub ticket: Option<RouteTicket>,
}

/// A routed message's place among its connection's: the acknowledgement waits for it.
pub struct RouteTicket {
    pub acks: Arc<RoutedAcks>,
    /// Numbered from 1 per connection, in PUBLISH order.
    pub seq: u64,
}

/// What the routing task tells one connection about its routed messages: how far they are
/// stored, which failed (with the reason code to acknowledge them with), and a wake-up
/// through the session's `wake` (the connection already waits on it).
pub struct RoutedAcks {
    /// The sequence number up to which this connection's routed messages are done (stored,
    /// or failed). The routing task works in queue order, so it only grows.
    finished: AtomicU64,
    /// Set once `failures` has had an entry: lets the connection skip the lock.
    any_failed: AtomicBool,
    /// Failed messages (sequence number, MQTT 5 reason code), in order.
    failures: parking_lot::Mutex<VecDeque<(u64, ReasonCode)>>,
    session: Arc<Session>,
}

impl RoutedAcks {
    pub fn new(session: Arc<Session>) -> Self {
        Self {
            finished: AtomicU64::new(0),
            any_failed: AtomicBool::new(false),
            failures: parking_lot::Mutex::new(VecDeque::new()),
            session,
        }
    }

    /// This connection's routed messages up to this sequence number are done.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// The reason code that message `seq` (done) failed with, taken; None when stored.
    /// Called in sequence order.
    pub fn failure(&self, seq: u64) -> Option<ReasonCode> {
        if !self.any_failed.load(Ordering::Acquire) {
            return None;
        }
        let mut failures = self.failures.lock();
        while failures.front().is_some_and(|(failed, _)| *failed < seq) {
            failures.pop_front();
        }
        match failures.front() {
            Some((failed, code)) if *failed == seq => {
                let code = *code;
                failures.pop_front();
                Some(code)
            }
            _ => None,
        }
    }

    /// Message `seq` is done: stored (`failed` None) or refused with that reason code.
    fn done(&self, seq: u64, failed: Option<ReasonCode>) {
        if let Some(code) = failed {
            self.failures.lock().push_back((seq, code));
            self.any_failed.store(true, Ordering::Release);
        }
        self.finished.fetch_max(seq, Ordering::AcqRel);
    }

    fn wake(&self) {
        self.session.wake.notify_one();
    }
}

/// The MQTT 5 reason code of a routed message the store refused: 0x97 quota exceeded when
/// the disk is full (the client may try later), else 0x80 unspecified error (the Topic is
/// not served, the store is shutting down or failed).
pub fn refusal_code(error: &StoreError) -> ReasonCode {
    if error.is_storage_full() {
        ReasonCode::QuotaExceeded
    } else {
        ReasonCode::UnspecifiedError
    }
}

/// `gridline_mqtt_routed_events_total{result}`: `appended`, `dropped` (queue full), `failed`
/// (the store refused the batch: topic not served, shutting down, I/O error).
#[derive(Clone)]
pub struct RoutingMetrics {
    pub routed: IntCounterVec,
}

impl RoutingMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let routed = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_routed_events_total",
                "MQTT messages routed to the Namespace's routing Topic, by result (appended, dropped, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(routed.clone()))?;
        Ok(Self { routed })
    }

    fn count(&self, result: &str, n: usize) {
        self.routed.with_label_values(&[result]).inc_by(n as u64);
    }
}

/// The connection side of routing: the queue to the routing task (bounded for best-effort
/// messages by [`ROUTING_QUEUE`], for acknowledged ones by the connections' receive maximum).
pub struct Routing {
    queue: mpsc::UnboundedSender<Routed>,
    metrics: RoutingMetrics,
    /// Whether the served Namespace names a routing Topic (checked per message).
    snapshot: SharedSnapshot,
    /// Messages queued and not yet appended (or given up on): what a shutdown waits for.
    pending: Arc<AtomicUsize>,
}

impl Routing {
    /// Start the routing task, appending to `store` under the Snapshot served at each batch.
    pub fn start(store: EventStore, snapshot: SharedSnapshot, metrics: RoutingMetrics) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(
            receiver,
            store,
            snapshot.clone(),
            metrics.clone(),
            pending.clone(),
        ));
        Self {
            queue,
            metrics,
            snapshot,
            pending,
        }
    }

    /// Messages queued and not yet appended (or given up on).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Whether an authorized message is to be routed: the served Namespace names a routing
    /// Topic, and it is not on a `$` topic (the broker's own).
    pub fn routes(&self, message: &Message) -> bool {
        !message.topic.starts_with('$')
            && self
                .snapshot
                .load()
                .namespace
                .as_ref()
                .is_some_and(|n| n.route_topic.is_some())
    }

    /// Queue a message that [`Routing::routes`] for routing. Never waits. Without a ticket it
    /// is best effort: dropped (and counted) once [`ROUTING_QUEUE`] messages wait. With one
    /// it is always queued and its connection is told when it is stored or failed.
    pub fn route(&self, message: &Message, authentication_name: &str, ticket: Option<RouteTicket>) {
        let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
        if ticket.is_none() && waiting >= ROUTING_QUEUE {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.metrics.count("dropped", 1);
            return;
        }
        let routed = Routed {
            message: message.clone(),
            authentication_name: authentication_name.to_string(),
            received: Utc::now(),
            ticket,
        };
        if let Err(mpsc::error::SendError(routed)) = self.queue.send(routed) {
            // The routing task is gone (shutting down).
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.metrics.count("failed", 1);
            if let Some(ticket) = routed.ticket {
                ticket
                    .acks
                    .done(ticket.seq, Some(ReasonCode::UnspecifiedError));
                ticket.acks.wake();
            }
        }
    }
}

/// Batches being appended at once: while one waits for its fsync the next is built and
/// queued behind it in the store's group commit.
const APPENDS_IN_FLIGHT: usize = 4;

/// The routing task: take what is queued (up to [`MAX_BATCH`]), build the events under the
/// Snapshot served now, append them in one call, with up to [`APPENDS_IN_FLIGHT`] calls
/// under way. While batches are being made durable the next ones queue up, so batches grow
/// with the load (group commit). Outcomes are told to the connections in queue order (a
/// later batch may be stored first; `RoutedAcks::finished` must only count what is stored).
async fn run(
    mut queue: mpsc::UnboundedReceiver<Routed>,
    store: EventStore,
    snapshot: SharedSnapshot,
    metrics: RoutingMetrics,
    pending: Arc<AtomicUsize>,
) {
    let mut appending = futures::stream::FuturesOrdered::new();
    let mut open = true;
    while open || !appending.is_empty() {
        let taking = open && appending.len() < APPENDS_IN_FLIGHT;
        tokio::select! {
            batch = async {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                queue.recv_many(&mut batch, MAX_BATCH).await;
                batch
            }, if taking => {
                if batch.is_empty() {
                    open = false;
                } else {
                    appending.push_back(append_batch(batch, &store, &snapshot, &metrics));
                }
            }
            Some(appended) = futures::StreamExt::next(&mut appending) => {
                let Appended { outcomes } = appended;
                let taken = outcomes.len();
                settle(outcomes.into_iter());
                pending.fetch_sub(taken, Ordering::AcqRel);
            }
        }
    }
}

/// A batch's outcome: for each of its messages in order, its ticket and the reason code it
/// failed with (None: stored).
struct Appended {
    outcomes: Vec<(Option<RouteTicket>, Option<ReasonCode>)>,
}

/// Build and append one batch.
async fn append_batch(
    batch: Vec<Routed>,
    store: &EventStore,
    snapshot: &SharedSnapshot,
    metrics: &RoutingMetrics,
) -> Appended {
    let served = snapshot.load();
    let namespace = served.namespace.as_ref();
    let Some((namespace, topic)) =
        namespace.and_then(|n| n.route_topic.as_deref().map(|topic| (n, topic)))
    else {
        // Routing was turned off while these waited.
        metrics.count("failed", batch.len());
        let outcomes = batch
            .into_iter()
            .map(|routed| (routed.ticket, Some(ReasonCode::UnspecifiedError)))
            .collect();
        return Appended { outcomes };
    };
    let mut tickets = Vec::with_capacity(batch.len());
    let events: Vec<PublishedEvent> = batch
        .into_iter()
        .filter_map(|mut routed| {
            let client = served.client_by_authentication_name(&routed.authentication_name);
            let event = routed_event(
                &namespace.name,
                &routed,
                client,
                &namespace.routing_enrichments,
            );
            let event = published(event);
            tickets.push((routed.ticket.take(), event.is_some()));
            event
        })
        .collect();
    let count = events.len();
    let refused = match store.publish(topic, events).await {
        Ok(()) => {
            debug!(topic, events = count, "routed MQTT messages appended");
            metrics.count("appended", count);
            None
        }
        Err(error) => {
            warn!(topic, events = count, %error, "routed MQTT messages not appended");
            metrics.count("failed", count);
            Some(refusal_code(&error))
        }
    };
    let outcomes = tickets
        .into_iter()
        .map(|(ticket, built)| {
            let failed = if built {
                refused
            } else {
                Some(ReasonCode::UnspecifiedError)
            };
            (ticket, failed)
        })
        .collect();
    Appended { outcomes }
}

/// Tell each connection how its routed messages went, in queue order, and wake it once per
/// run of its messages rather than once per message.
fn settle(outcomes: impl Iterator<Item = (Option<RouteTicket>, Option<ReasonCode>)>) {
    let mut to_wake: Option<Arc<RoutedAcks>> = None;
    for (ticket, failed) in outcomes {
        let Some(ticket) = ticket else {
            continue;
        };
        ticket.acks.done(ticket.seq, failed);
        match &to_wake {
            Some(acks) if Arc::ptr_eq(acks, &ticket.acks) => {}
            _ => {
                if let Some(previous) = to_wake.replace(ticket.acks) {
                    previous.wake();
                }
            }
        }
    }
    if let Some(acks) = to_wake {
        acks.wake();
    }
}

/// The CloudEvent of a routed message (Event Grid's routing schema): `data` when the MQTT 5
/// content type is JSON or the payload format indicator says UTF-8 (the payload itself when
/// it parses as JSON, else as a JSON string); `data_base64` otherwise (MQTT 3.1.1, binary).
pub fn routed_event(
    namespace: &str,
    routed: &Routed,
    client: Option<&CompiledClient>,
    enrichments: &RoutingEnrichments,
) -> Value {
    let message = &routed.message;
    let properties = &message.properties;
    let mut event = Map::new();
    for (key, value) in enrichment_values(routed, client, enrichments) {
        event.insert(key, value);
    }
    event.insert("specversion".into(), "1.0".into());
    event.insert("id".into(), new_event_id().into());
    event.insert("source".into(), namespace.into());
    event.insert("type".into(), ROUTED_EVENT_TYPE.into());
    event.insert("subject".into(), message.topic.to_string().into());
    event.insert("time".into(), rfc3339(routed.received).into());
    if let Some(content_type) = properties.content_type.as_deref().filter(|c| !c.is_empty()) {
        event.insert("datacontenttype".into(), content_type.into());
    }
    let json_content = properties
        .content_type
        .as_deref()
        .is_some_and(is_json_media);
    let text = std::str::from_utf8(&message.payload).ok();
    match text {
        Some(text) if json_content || properties.payload_is_utf8 => {
            let data = serde_json::from_str::<Value>(text).unwrap_or_else(|_| text.into());
            event.insert("data".into(), data);
        }
        _ => {
            event.insert("data_base64".into(), BASE64.encode(&message.payload).into());
        }
    }
    Value::Object(event)
}

/// The enrichments of one message: static values as they are, dynamic ones expanded; a
/// dynamic value with nothing to expand to (an attribute the client lacks, a property the
/// message lacks) is left out. Keys are checked by `compile` (lowercase letters and digits,
/// not a context attribute), so they cannot overwrite the event's own attributes.
pub fn enrichment_values(
    routed: &Routed,
    client: Option<&CompiledClient>,
    enrichments: &RoutingEnrichments,
) -> Vec<(String, Value)> {
    let mut values: Vec<(String, Value)> = enrichments
        .static_enrichments
        .iter()
        .map(|e| (e.key.clone(), Value::from(e.value.as_str())))
        .collect();
    for enrichment in &enrichments.dynamic_enrichments {
        if let Some(value) = expand(&enrichment.value, routed, client) {
            values.push((enrichment.key.clone(), value));
        }
    }
    values
}

/// One dynamic enrichment value (the variables `compile` accepts). Correlation data is binary
/// and goes base64-encoded; an integer attribute stays a number; a string array becomes its
/// items joined by commas (CloudEvents extension values cannot be arrays).
fn expand(variable: &str, routed: &Routed, client: Option<&CompiledClient>) -> Option<Value> {
    let properties = &routed.message.properties;
    match variable {
        "${client.authenticationName}" => return Some(routed.authentication_name.clone().into()),
        "${mqtt.message.topicName}" => return Some(routed.message.topic.to_string().into()),
        "${mqtt.message.responseTopic}" => {
            return properties.response_topic.clone().map(Value::from);
        }
        "${mqtt.message.correlationData}" => {
            return properties
                .correlation_data
                .as_ref()
                .map(|data| BASE64.encode(data).into());
        }
        _ => {}
    }
    let name = |prefix: &str| variable.strip_prefix(prefix)?.strip_suffix('}');
    if let Some(attribute) = name("${client.attributes.") {
        return match client?.attributes.get(attribute)? {
            AttributeValue::String(text) => Some(text.clone().into()),
            AttributeValue::Integer(number) => Some((*number).into()),
            AttributeValue::StringArray(items) => Some(items.join(",").into()),
        };
    }
    if let Some(property) = name("${mqtt.message.userProperties.") {
        return properties
            .user_properties
            .iter()
            .find(|(key, _)| key == property)
            .map(|(_, value)| value.clone().into());
    }
    None
}

/// `application/json`, `text/json` or any `+json` media type, parameters ignored.
fn is_json_media(content_type: &str) -> bool {
    let media = crate::cloudevents::media_type(content_type);
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{MessageProperties, QoS};
    use bytes::Bytes;
    use serde_json::json;

    fn routed(payload: &[u8], properties: MessageProperties) -> Routed {
        Routed {
            message: Message {
                topic: "sensors/s1/temperature".into(),
                payload: Bytes::copy_from_slice(payload),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties,
            },
            authentication_name: "s1".into(),
            received: DateTime::parse_from_rfc3339("2026-11-25T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            ticket: None,
        }
    }

    fn client() -> CompiledClient {
        CompiledClient {
            name: "sensor-1".into(),
            authentication_name: "s1".into(),
            enabled: true,
            attributes: [
                ("floor".to_string(), AttributeValue::Integer(3)),
                ("room".to_string(), AttributeValue::String("lab".into())),
                (
                    "tags".to_string(),
                    AttributeValue::StringArray(vec!["a".into(), "b".into()]),
                ),
            ]
            .into(),
            validation_scheme: Default::default(),
            allowed_thumbprints: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn enrichments(value: Value) -> RoutingEnrichments {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_json_message_becomes_data_with_the_fixed_attributes() {
        let properties = MessageProperties {
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        let event = routed_event(
            "dev",
            &routed(br#"{"celsius": 21.5}"#, properties),
            None,
            &RoutingEnrichments::default(),
        );
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "dev");
        assert_eq!(event["type"], "MQTT.EventPublished");
        assert_eq!(event["subject"], "sensors/s1/temperature");
        assert_eq!(event["time"], "2026-11-25T10:00:00.500000Z");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"], json!({"celsius": 21.5}));
        assert!(event.get("data_base64").is_none());
        let id = event["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
    }

    #[test]
    fn utf8_text_that_is_not_json_becomes_a_json_string() {
        let properties = MessageProperties {
            payload_is_utf8: true,
            ..Default::default()
        };
        let event = routed_event(
            "dev",
            &routed(b"hello", properties),
            None,
            &Default::default(),
        );
        assert_eq!(event["data"], "hello");
        assert!(event.get("datacontenttype").is_none());
    }

    #[test]
    fn without_a_json_content_type_or_utf8_indicator_the_payload_is_data_base64() {
        // MQTT 3.1.1 messages carry neither, like this one.
        let event = routed_event(
            "dev",
            &routed(br#"{"a":1}"#, MessageProperties::default()),
            None,
            &Default::default(),
        );
        assert_eq!(event["data_base64"], BASE64.encode(br#"{"a":1}"#));
        assert!(event.get("data").is_none());
        let binary = MessageProperties {
            content_type: Some("application/json".into()),
            ..Default::default()
        };
        let event = routed_event(
            "dev",
            &routed(&[0xff, 0x00], binary),
            None,
            &Default::default(),
        );
        assert_eq!(
            event["data_base64"], "/wA=",
            "not UTF-8 even though labelled JSON"
        );
    }

    #[test]
    fn enrichments_expand_client_and_message_values_and_skip_missing_ones() {
        let properties = MessageProperties {
            response_topic: Some("replies/s1".into()),
            correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
            user_properties: vec![("unit".into(), "C".into()), ("unit".into(), "F".into())],
            ..Default::default()
        };
        let enrichments = enrichments(json!({
            "static": [{"key": "site", "value": "lab", "valueType": "String"}],
            "dynamic": [
                {"key": "device", "value": "${client.authenticationName}"},
                {"key": "floor", "value": "${client.attributes.floor}"},
                {"key": "room", "value": "${client.attributes.room}"},
                {"key": "tags", "value": "${client.attributes.tags}"},
                {"key": "missing", "value": "${client.attributes.nope}"},
                {"key": "unit", "value": "${mqtt.message.userProperties.unit}"},
                {"key": "nouser", "value": "${mqtt.message.userProperties.other}"},
                {"key": "topic", "value": "${mqtt.message.topicName}"},
                {"key": "reply", "value": "${mqtt.message.responseTopic}"},
                {"key": "correlation", "value": "${mqtt.message.correlationData}"}
            ]
        }));
        let client = client();
        let event = routed_event(
            "dev",
            &routed(b"x", properties),
            Some(&client),
            &enrichments,
        );
        assert_eq!(event["site"], "lab");
        assert_eq!(event["device"], "s1");
        assert_eq!(event["floor"], 3);
        assert_eq!(event["room"], "lab");
        assert_eq!(event["tags"], "a,b");
        assert_eq!(event["unit"], "C", "the first of repeated user properties");
        assert_eq!(event["topic"], "sensors/s1/temperature");
        assert_eq!(event["reply"], "replies/s1");
        assert_eq!(event["correlation"], "AQID");
        assert!(event.get("missing").is_none());
        assert!(event.get("nouser").is_none());
        let no_client = routed_event("dev", &routed(b"x", Default::default()), None, &enrichments);
        assert!(no_client.get("floor").is_none());
        assert!(no_client.get("reply").is_none());
    }

    fn routing_into(pending: usize) -> (Routing, mpsc::UnboundedReceiver<Routed>) {
        let registry = Registry::new();
        let (queue, receiver) = mpsc::unbounded_channel();
        let routing = Routing {
            queue,
            metrics: RoutingMetrics::register(&registry).unwrap(),
            snapshot: SharedSnapshot::new(),
            pending: Arc::new(AtomicUsize::new(pending)),
        };
        (routing, receiver)
    }

    #[test]
    fn a_full_routing_queue_drops_best_effort_messages_and_counts_them_never_acknowledged_ones() {
        let (routing, mut receiver) = routing_into(ROUTING_QUEUE);
        let message = routed(b"x", Default::default()).message;
        routing.route(&message, "s1", None);
        assert_eq!(
            routing.metrics.routed.with_label_values(&["dropped"]).get(),
            1
        );
        assert!(receiver.try_recv().is_err(), "dropped");
        let session = Arc::new(Session::new("s1".into(), "s1".into()));
        let acks = Arc::new(RoutedAcks::new(session));
        let ticket = RouteTicket { acks, seq: 1 };
        routing.route(&message, "s1", Some(ticket));
        let queued = receiver.try_recv().expect("queued beyond the bound");
        assert_eq!(queued.ticket.map(|t| t.seq), Some(1));
        assert_eq!(
            routing.metrics.routed.with_label_values(&["dropped"]).get(),
            1
        );
    }

    #[test]
    fn routed_messages_finish_in_order_with_their_failure_codes_and_wake_the_connection() {
        let session = Arc::new(Session::new("s1".into(), "s1".into()));
        let acks = Arc::new(RoutedAcks::new(session.clone()));
        let ticket = |seq| {
            Some(RouteTicket {
                acks: acks.clone(),
                seq,
            })
        };
        settle(
            [
                (ticket(1), None),
                (ticket(2), Some(ReasonCode::QuotaExceeded)),
                (None, None),
                (ticket(3), None),
            ]
            .into_iter(),
        );
        assert_eq!(acks.finished(), 3);
        assert_eq!(acks.failure(1), None);
        assert_eq!(acks.failure(2), Some(ReasonCode::QuotaExceeded));
        assert_eq!(acks.failure(3), None);
        use futures::FutureExt;
        assert!(session.wake.notified().now_or_never().is_some(), "woken");
    }

    #[test]
    fn a_full_disk_refuses_with_quota_exceeded_anything_else_with_unspecified_error() {
        let full = StoreError::Io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(refusal_code(&full), ReasonCode::QuotaExceeded);
        let failed = StoreError::Io(std::io::Error::other("bad sector"));
        assert_eq!(refusal_code(&failed), ReasonCode::UnspecifiedError);
        assert_eq!(
            refusal_code(&StoreError::TopicNotFound("telemetry".into())),
            ReasonCode::UnspecifiedError
        );
    }

    #[test]
    fn a_routed_event_passes_the_publish_path_validation() {
        let properties = MessageProperties {
            content_type: Some("application/vnd.example+json; charset=utf-8".into()),
            ..Default::default()
        };
        let enrichments = enrichments(json!({"static": [{"key": "site", "value": "lab"}]}));
        let event = routed_event("dev", &routed(b"[1,2]", properties), None, &enrichments);
        let stored = published(event).unwrap();
        let parsed = crate::cloudevents::parse_structured(stored.json.get().as_bytes())
            .expect("what HTTP would accept");
        assert_eq!(parsed.attributes["data"], json!([1, 2]));
    }
}
