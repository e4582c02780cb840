//! Client lifecycle events (SPEC §D; Event Grid's `Microsoft.EventGrid.MQTTClient*` system
//! events): a session connected or disconnected (hooks in `connection.rs`), a Client created,
//! updated or deleted (the Snapshot's Clients compared with the previous ones). Published to
//! the Topic the Namespace names in `topicSpacesConfiguration.clientLifecycleEvents`, through
//! the store like any publish, by one task with its own bounded queue (a flood of routed
//! messages cannot crowd these out). See README.md, "Lifecycle events".

use super::cloud_event::{new_event_id, published, rfc3339};
use super::session::CONNECTION_COUNT_BITS;
use crate::snapshot::SharedSnapshot;
use crate::store::EventStore;
use chrono::{DateTime, Utc};
use gridline_crds::model::Snapshot;
use gridline_crds::model::snapshot::CompiledClient;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Lifecycle events waiting for their task; beyond it they are dropped and counted.
pub const LIFECYCLE_QUEUE: usize = 10_000;

/// Event Grid's reasons for `MQTTClientSessionDisconnected` (`disconnectionReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectionReason {
    ClientAuthenticationError,
    ClientAuthorizationError,
    ClientError,
    ClientInitiatedDisconnect,
    ConnectionLost,
    QuotaExceeded,
    ServerError,
    ServerInitiatedDisconnect,
    SessionOverflow,
    SessionTakenOver,
}

impl DisconnectionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientAuthenticationError => "ClientAuthenticationError",
            Self::ClientAuthorizationError => "ClientAuthorizationError",
            Self::ClientError => "ClientError",
            Self::ClientInitiatedDisconnect => "ClientInitiatedDisconnect",
            Self::ConnectionLost => "ConnectionLost",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::ServerError => "ServerError",
            Self::ServerInitiatedDisconnect => "ServerInitiatedDisconnect",
            Self::SessionOverflow => "SessionOverflow",
            Self::SessionTakenOver => "SessionTakenOver",
        }
    }
}

/// One lifecycle event, before it is a CloudEvent.
#[derive(Clone, Debug, PartialEq)]
pub enum LifecycleEvent {
    SessionConnected {
        authentication_name: String,
        session: String,
        sequence: u64,
    },
    SessionDisconnected {
        authentication_name: String,
        session: String,
        sequence: u64,
        reason: DisconnectionReason,
    },
    ClientCreatedOrUpdated {
        client: CompiledClient,
        created_on: DateTime<Utc>,
        updated_on: DateTime<Utc>,
    },
    ClientDeleted {
        name: String,
        authentication_name: String,
    },
}

impl LifecycleEvent {
    /// The CloudEvents `type`, and the metric label.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::SessionConnected { .. } => "Microsoft.EventGrid.MQTTClientSessionConnected",
            Self::SessionDisconnected { .. } => "Microsoft.EventGrid.MQTTClientSessionDisconnected",
            Self::ClientCreatedOrUpdated { .. } => "Microsoft.EventGrid.MQTTClientCreatedOrUpdated",
            Self::ClientDeleted { .. } => "Microsoft.EventGrid.MQTTClientDeleted",
        }
    }

    /// The CloudEvent, as Event Grid shapes it: `source` the namespace, `subject`
    /// `clients/<authentication name>/sessions/<session>` for session events and
    /// `clients/<client name>` for resource events.
    pub fn to_cloud_event(
        &self,
        namespace: &str,
        snapshot: &Snapshot,
        time: DateTime<Utc>,
    ) -> Value {
        let (subject, data) = match self {
            Self::SessionConnected {
                authentication_name,
                session,
                sequence,
            } => (
                session_subject(authentication_name, session),
                session_data(namespace, snapshot, authentication_name, session, *sequence),
            ),
            Self::SessionDisconnected {
                authentication_name,
                session,
                sequence,
                reason,
            } => {
                let mut data =
                    session_data(namespace, snapshot, authentication_name, session, *sequence);
                data["disconnectionReason"] = reason.as_str().into();
                (session_subject(authentication_name, session), data)
            }
            Self::ClientCreatedOrUpdated {
                client,
                created_on,
                updated_on,
            } => (
                format!("clients/{}", client.name),
                json!({
                    "namespaceName": namespace,
                    "clientName": client.name,
                    "clientAuthenticationName": client.authentication_name,
                    "state": if client.enabled { "Enabled" } else { "Disabled" },
                    "attributes": client.attributes,
                    "createdOn": rfc3339(*created_on),
                    "updatedOn": rfc3339(*updated_on),
                }),
            ),
            Self::ClientDeleted {
                name,
                authentication_name,
            } => (
                format!("clients/{name}"),
                json!({
                    "namespaceName": namespace,
                    "clientName": name,
                    "clientAuthenticationName": authentication_name,
                }),
            ),
        };
        json!({
            "specversion": "1.0",
            "id": new_event_id(),
            "source": namespace,
            "type": self.event_type(),
            "subject": subject,
            "time": rfc3339(time),
            "datacontenttype": "application/json",
            "data": data,
        })
    }
}

fn session_subject(authentication_name: &str, session: &str) -> String {
    format!("clients/{authentication_name}/sessions/{session}")
}

fn session_data(
    namespace: &str,
    snapshot: &Snapshot,
    authentication_name: &str,
    session: &str,
    sequence: u64,
) -> Value {
    let mut data = json!({
        "namespaceName": namespace,
        "clientAuthenticationName": authentication_name,
        "clientSessionName": session,
        "sequenceNumber": sequence,
    });
    if let Some(client) = snapshot.client_by_authentication_name(authentication_name) {
        data["clientName"] = client.name.clone().into();
    }
    data
}

/// Sequence numbers of session events: `2 × (start-up time in µs + connection id)`, plus one
/// for a disconnect. Connection ids grow under the router lock, so for one session every
/// event is numbered above the one before — a take-over's old connection ends below the new
/// one's connect even when its event is written later — and a restart starts above anything
/// the last run could have numbered (unless it made more than a million connections a
/// second). Event Grid only promises "higher than the previous event".
#[derive(Clone, Copy, Debug)]
pub struct Sequence {
    base: u64,
}

impl Sequence {
    pub fn starting_now() -> Self {
        let micros = Utc::now().timestamp_micros();
        Self {
            base: u64::try_from(micros).unwrap_or(0),
        }
    }

    /// The connect of `connection_id`, above `floor` (the session's last number on the pod
    /// it came from: pods' clocks and counts differ, so a session moving between them would
    /// otherwise go backwards).
    pub fn connected(self, connection_id: u64, floor: u64) -> u64 {
        // The pod's owner number above the count is left out: it would swamp the clock.
        let count = connection_id & ((1 << CONNECTION_COUNT_BITS) - 1);
        let own = self.base.saturating_add(count).saturating_mul(2);
        // Even numbers are connects: the next one above the floor.
        own.max(floor.saturating_add(2) & !1)
    }

    pub fn disconnected(self, connection_id: u64, floor: u64) -> u64 {
        self.connected(connection_id, floor).saturating_add(1)
    }
}

/// What the task remembers of each Client, to tell a change from a Snapshot that only changed
/// something else, and to give `createdOn` / `updatedOn`.
#[derive(Default)]
pub struct ClientBook {
    known: BTreeMap<String, KnownClient>,
    /// Unset until the first Snapshot with a Namespace: its Clients are the baseline.
    started: bool,
}

struct KnownClient {
    client: CompiledClient,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

impl ClientBook {
    /// The Client events between the Clients known and those of `snapshot` (a Snapshot with
    /// a Namespace). The first one after start-up is the baseline and yields none: what
    /// changed while the data plane was down is not known (see README.md).
    pub fn changes(&mut self, snapshot: &Snapshot, now: DateTime<Utc>) -> Vec<LifecycleEvent> {
        let baseline = !self.started;
        self.started = true;
        let mut events = Vec::new();
        for (name, client) in &snapshot.clients {
            match self.known.get_mut(name) {
                Some(known) if same_resource(&known.client, client) => {
                    known.client = client.clone();
                }
                Some(known) => {
                    known.client = client.clone();
                    known.updated_on = now;
                    events.push(LifecycleEvent::ClientCreatedOrUpdated {
                        client: client.clone(),
                        created_on: known.created_on,
                        updated_on: now,
                    });
                }
                None => {
                    self.known.insert(
                        name.clone(),
                        KnownClient {
                            client: client.clone(),
                            created_on: now,
                            updated_on: now,
                        },
                    );
                    if !baseline {
                        events.push(LifecycleEvent::ClientCreatedOrUpdated {
                            client: client.clone(),
                            created_on: now,
                            updated_on: now,
                        });
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|name| !snapshot.clients.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(known) = self.known.remove(&name) {
                events.push(LifecycleEvent::ClientDeleted {
                    name,
                    authentication_name: known.client.authentication_name,
                });
            }
        }
        events
    }
}

/// Whether two compilations describe the same Client resource. Group membership is left out:
/// it follows from the ClientGroups, and editing a group does not update the Client.
fn same_resource(a: &CompiledClient, b: &CompiledClient) -> bool {
    a.authentication_name == b.authentication_name
        && a.enabled == b.enabled
        && a.attributes == b.attributes
        && a.validation_scheme == b.validation_scheme
        && a.allowed_thumbprints == b.allowed_thumbprints
}

/// `gridline_mqtt_lifecycle_events_total{type,result}`: `type` is the event type without its
/// `Microsoft.EventGrid.MQTTClient` prefix; `result` is appended, dropped (queue full) or
/// failed (no Namespace, or the store refused).
#[derive(Clone)]
pub struct LifecycleMetrics {
    pub events: IntCounterVec,
}

impl LifecycleMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_lifecycle_events_total",
                "Client lifecycle events, by type and result (appended, dropped, failed)",
            ),
            &["type", "result"],
        )?;
        registry.register(Box::new(events.clone()))?;
        Ok(Self { events })
    }

    fn count(&self, event: &LifecycleEvent, result: &str) {
        let label = event
            .event_type()
            .trim_start_matches("Microsoft.EventGrid.MQTTClient");
        self.events.with_label_values(&[label, result]).inc();
    }
}

/// The connection side: a bounded queue to the lifecycle task.
pub struct Lifecycle {
    queue: mpsc::Sender<LifecycleEvent>,
    metrics: LifecycleMetrics,
    /// Whether the served Namespace names a lifecycle Topic (checked per event).
    snapshot: SharedSnapshot,
    pub sequence: Sequence,
    /// Events queued and not yet appended (or given up on): what a shutdown waits for.
    pending: Arc<AtomicUsize>,
}

impl Lifecycle {
    /// Start the lifecycle task, which also watches `snapshot` for Client changes.
    pub fn start(store: EventStore, snapshot: SharedSnapshot, metrics: LifecycleMetrics) -> Self {
        let (queue, receiver) = mpsc::channel(LIFECYCLE_QUEUE);
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
            sequence: Sequence::starting_now(),
            pending,
        }
    }

    /// Events queued and not yet appended (or given up on).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// A session was attached to connection `connection_id` (CONNACK accepted).
    pub fn session_connected(
        &self,
        authentication_name: &str,
        session: &str,
        connection_id: u64,
        floor: u64,
    ) {
        if !self.enabled() {
            return;
        }
        let sequence = self.sequence.connected(connection_id, floor);
        self.queue(LifecycleEvent::SessionConnected {
            authentication_name: authentication_name.to_string(),
            session: session.to_string(),
            sequence,
        });
    }

    /// Connection `connection_id` of a session ended, for `reason`.
    pub fn session_disconnected(
        &self,
        authentication_name: &str,
        session: &str,
        connection_id: u64,
        floor: u64,
        reason: DisconnectionReason,
    ) {
        if !self.enabled() {
            return;
        }
        let sequence = self.sequence.disconnected(connection_id, floor);
        self.queue(LifecycleEvent::SessionDisconnected {
            authentication_name: authentication_name.to_string(),
            session: session.to_string(),
            sequence,
            reason,
        });
    }

    fn enabled(&self) -> bool {
        self.snapshot
            .load()
            .namespace
            .as_ref()
            .is_some_and(|n| n.lifecycle_topic.is_some())
    }

    fn queue(&self, event: LifecycleEvent) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(error) = self.queue.try_send(event) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            let event = match error {
                mpsc::error::TrySendError::Full(event)
                | mpsc::error::TrySendError::Closed(event) => event,
            };
            self.metrics.count(&event, "dropped");
        }
    }
}

/// The lifecycle task: session events from the queue, Client events from Snapshot changes,
/// each batch appended in one store call.
async fn run(
    mut queue: mpsc::Receiver<LifecycleEvent>,
    store: EventStore,
    snapshot: SharedSnapshot,
    metrics: LifecycleMetrics,
    pending: Arc<AtomicUsize>,
) {
    let mut book = ClientBook::default();
    let mut seen: Option<Arc<Snapshot>> = None;
    // Told of each Snapshot served (Client changes make events); marked unseen so that the
    // first pass records the Clients served at start as known.
    let mut changes = snapshot.changes();
    changes.mark_changed();
    let mut batch = Vec::new();
    loop {
        let queued = tokio::select! {
            received = queue.recv_many(&mut batch, 500) => {
                if received == 0 {
                    return;
                }
                received
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                0
            }
        };
        append_batch(
            &mut batch, &mut book, &mut seen, &store, &snapshot, &metrics,
        )
        .await;
        pending.fetch_sub(queued, Ordering::AcqRel);
    }
}

/// Add the Client events of a new Snapshot to `batch`, then build and append it (emptied).
async fn append_batch(
    batch: &mut Vec<LifecycleEvent>,
    book: &mut ClientBook,
    seen: &mut Option<Arc<Snapshot>>,
    store: &EventStore,
    snapshot: &SharedSnapshot,
    metrics: &LifecycleMetrics,
) {
    let served = snapshot.load();
    if served.namespace.is_some() && seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &served)) {
        batch.extend(book.changes(&served, Utc::now()));
        *seen = Some(served.clone());
    }
    if batch.is_empty() {
        return;
    }
    let target = served
        .namespace
        .as_ref()
        .and_then(|n| Some((n.name.as_str(), n.lifecycle_topic.as_deref()?)));
    let Some((namespace, topic)) = target else {
        // Turned off (or no Namespace): Client changes are still tracked, not published.
        if served.namespace.is_none() {
            batch.iter().for_each(|e| metrics.count(e, "failed"));
        }
        batch.clear();
        return;
    };
    let now = Utc::now();
    let events = batch
        .iter()
        .filter_map(|e| published(e.to_cloud_event(namespace, &served, now)))
        .collect();
    match store.publish(topic, events).await {
        Ok(()) => {
            debug!(topic, events = batch.len(), "lifecycle events appended");
            batch.iter().for_each(|e| metrics.count(e, "appended"));
        }
        Err(error) => {
            warn!(topic, events = batch.len(), %error, "lifecycle events not appended");
            batch.iter().for_each(|e| metrics.count(e, "failed"));
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridline_crds::attributes::AttributeValue;

    fn client(name: &str, enabled: bool) -> CompiledClient {
        CompiledClient {
            name: name.into(),
            authentication_name: format!("{name}-auth"),
            enabled,
            attributes: [("room".to_string(), AttributeValue::String("lab".into()))].into(),
            validation_scheme: Default::default(),
            allowed_thumbprints: Vec::new(),
            groups: vec!["$all".into()],
        }
    }

    /// Clients as a compiled Namespace holds them (the book does not look at the Namespace).
    fn snapshot(clients: &[CompiledClient]) -> Snapshot {
        Snapshot {
            clients: clients
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            clients_by_authentication_name: clients
                .iter()
                .map(|c| (c.authentication_name.clone(), c.name.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_first_snapshot_is_the_baseline_then_changes_are_events() {
        let mut book = ClientBook::default();
        assert!(
            book.changes(&snapshot(&[client("a", true)]), at(1))
                .is_empty()
        );

        let events = book.changes(&snapshot(&[client("a", true), client("b", true)]), at(2));
        assert_eq!(
            events,
            vec![LifecycleEvent::ClientCreatedOrUpdated {
                client: client("b", true),
                created_on: at(2),
                updated_on: at(2),
            }]
        );

        let events = book.changes(&snapshot(&[client("a", false), client("b", true)]), at(3));
        assert_eq!(
            events,
            vec![LifecycleEvent::ClientCreatedOrUpdated {
                client: client("a", false),
                created_on: at(1),
                updated_on: at(3),
            }]
        );

        let events = book.changes(&snapshot(&[client("a", false)]), at(4));
        assert_eq!(
            events,
            vec![LifecycleEvent::ClientDeleted {
                name: "b".into(),
                authentication_name: "b-auth".into(),
            }]
        );
    }

    #[test]
    fn a_change_of_group_membership_alone_is_not_an_update() {
        let mut book = ClientBook::default();
        book.changes(&snapshot(&[client("a", true)]), at(0));
        let mut regrouped = client("a", true);
        regrouped.groups.push("sensors".into());
        assert!(book.changes(&snapshot(&[regrouped]), at(1)).is_empty());
    }

    #[test]
    fn session_events_have_event_grid_shape() {
        let served = snapshot(&[client("a", true)]);
        let event = LifecycleEvent::SessionDisconnected {
            authentication_name: "a-auth".into(),
            session: "s-1".into(),
            sequence: 7,
            reason: DisconnectionReason::ClientInitiatedDisconnect,
        }
        .to_cloud_event("dev", &served, at(0));
        assert_eq!(
            event["type"],
            "Microsoft.EventGrid.MQTTClientSessionDisconnected"
        );
        assert_eq!(event["source"], "dev");
        assert_eq!(event["subject"], "clients/a-auth/sessions/s-1");
        assert_eq!(
            event["data"],
            json!({
                "namespaceName": "dev",
                "clientName": "a",
                "clientAuthenticationName": "a-auth",
                "clientSessionName": "s-1",
                "sequenceNumber": 7,
                "disconnectionReason": "ClientInitiatedDisconnect",
            })
        );
        let stored = published(event).unwrap();
        crate::cloudevents::parse_structured(stored.json.get().as_bytes()).expect("a valid event");
    }

    #[test]
    fn client_events_carry_state_attributes_and_times() {
        let event = LifecycleEvent::ClientCreatedOrUpdated {
            client: client("a", false),
            created_on: at(0),
            updated_on: at(60),
        }
        .to_cloud_event("dev", &Snapshot::default(), at(60));
        assert_eq!(
            event["type"],
            "Microsoft.EventGrid.MQTTClientCreatedOrUpdated"
        );
        assert_eq!(event["subject"], "clients/a");
        assert_eq!(
            event["data"],
            json!({
                "namespaceName": "dev",
                "clientName": "a",
                "clientAuthenticationName": "a-auth",
                "state": "Disabled",
                "attributes": {"room": "lab"},
                "createdOn": "2027-01-15T08:00:00.000000Z",
                "updatedOn": "2027-01-15T08:01:00.000000Z",
            })
        );
    }

    #[test]
    fn sequence_numbers_grow_per_session_across_take_overs() {
        let sequence = Sequence { base: 1_000 };
        let (old, new) = (4, 9);
        assert!(sequence.connected(old, 0) < sequence.disconnected(old, 0));
        // The old connection's end is numbered below the connection that took over.
        assert!(sequence.disconnected(old, 0) < sequence.connected(new, 0));
        let on_another_pod = crate::mqtt::session::connection_id(7, 1);
        assert!(sequence.connected(on_another_pod, 0) < sequence.connected(old, 0));
        let restarted = Sequence::starting_now();
        assert!(restarted.connected(0, 0) > sequence.disconnected(u32::MAX.into(), 0));
    }
}
