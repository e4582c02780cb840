//! Persistent sessions and retained messages across restarts: `<data_dir>/mqtt/state.json`.
//!
//! What is kept: every session that outlives its connection (session expiry > 0, which
//! 3.1.1 clean session = false is) with its subscriptions and its undelivered QoS 1/2
//! messages (queued, and in flight: those are sent again), and the retained messages.
//! QoS 0 messages are not kept. The file is a snapshot written by one task every
//! [`INTERVAL`] when it changed (written to a temporary file, then renamed, so a crash
//! leaves the previous one whole) and once more on shutdown: a crash loses at most the
//! last interval's changes. A PUBACK does not wait for the disk.

use super::codec::{Message, MessageProperties, QoS, SubscriptionOptions};
use super::session::{Delivery, Outbound};
use crate::shutdown::StopSignal;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// How often the state is written when it changed.
pub const INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredState {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<StoredMessage>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredSession {
    pub client_id: String,
    pub authentication_name: String,
    pub expiry_interval: u32,
    /// When the session expires (seconds since the epoch), counted from when it was last
    /// seen connected (a session connected at a crash counts from the last write).
    pub expires_at: u64,
    pub subscriptions: Vec<(String, StoredOptions)>,
    pub queue: Vec<StoredMessage>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier (absent in files of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub payload_is_utf8: bool,
    /// Seconds left when written.
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Vec<(String, String)>,
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl StoredMessage {
    pub fn from_message(message: &Message, expiry_left: Option<u32>) -> Self {
        let p = &message.properties;
        Self {
            topic: message.topic.to_string(),
            payload: message.payload.to_vec(),
            qos: message.qos.as_u8(),
            retain: message.retain,
            payload_is_utf8: p.payload_is_utf8,
            message_expiry_interval: expiry_left,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|b| b.to_vec()),
            user_properties: p.user_properties.clone(),
        }
    }

    pub fn into_message(self) -> Message {
        Message {
            topic: self.topic.into(),
            payload: Bytes::from(self.payload),
            qos: qos(self.qos),
            retain: self.retain,
            properties: MessageProperties {
                payload_is_utf8: self.payload_is_utf8,
                message_expiry_interval: self.message_expiry_interval.and_then(NonZeroU32::new),
                content_type: self.content_type,
                response_topic: self.response_topic,
                correlation_data: self.correlation_data.map(Bytes::from),
                user_properties: self.user_properties,
            },
        }
    }
}

impl From<&SubscriptionOptions> for StoredOptions {
    fn from(o: &SubscriptionOptions) -> Self {
        Self {
            qos: o.qos.as_u8(),
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: o.retain_handling,
            subscription_id: None,
        }
    }
}

impl StoredOptions {
    pub fn options(&self) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: qos(self.qos),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling,
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The undelivered QoS 1/2 messages of a session, in-flight ones first (they were sent
/// first), with their remaining expiry.
pub fn undelivered(state: &super::session::SessionState) -> Vec<StoredMessage> {
    let now = tokio::time::Instant::now();
    let stored = |delivery: &Delivery, left: Option<NonZeroU32>| {
        let mut message = StoredMessage::from_message(&delivery.message, left.map(|l| l.get()));
        message.qos = delivery.qos.as_u8();
        message.retain = delivery.retain;
        message
    };
    let inflight = state.inflight.iter().filter_map(|(_, o)| match o {
        // Already on its way: resent after the restart even when its expiry has passed
        // meanwhile (MQTT 5 §3.3.2.3.3 drops only what was not yet sent).
        Outbound::AwaitingPubAck(d) | Outbound::AwaitingPubRec(d) => Some(stored(
            d,
            d.expiry_left(now).unwrap_or(Some(NonZeroU32::MIN)),
        )),
        Outbound::AwaitingPubComp => None,
    });
    let queued = state
        .queue
        .iter()
        .filter(|q| q.delivery.qos != QoS::AtMostOnce)
        .filter_map(|q| Some(stored(&q.delivery, q.delivery.expiry_left(now).ok()?)));
    inflight.chain(queued).collect()
}

/// Where the state lives under the data dir.
pub fn state_file(data_dir: &Path) -> PathBuf {
    data_dir.join("mqtt").join("state.json")
}

/// Read the state written by the last run (none: empty). A file that cannot be read is
/// moved aside and reported, never fatal: the broker starts empty.
pub fn load(data_dir: &Path) -> StoredState {
    let path = state_file(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return StoredState::default();
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read the MQTT state; starting empty");
            return StoredState::default();
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => state,
        Err(error) => {
            let aside = path.with_extension("json.unreadable");
            let _ = std::fs::rename(&path, &aside);
            warn!(path = %path.display(), %error, aside = %aside.display(), "unreadable MQTT state; starting empty");
            StoredState::default()
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}

/// Write `state` now (after the persister's last write: sessions a stopping pod handed to
/// its peers must not come back here at the next start).
pub fn write_now(data_dir: &Path, state: &StoredState) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    write(&state_file(data_dir), &bytes)
}

/// Write the state `current` gives (the broker's sessions and retained messages) every
/// [`INTERVAL`] when it changed, and once more on `stop`.
pub async fn run(
    current: impl Fn() -> StoredState + Send + 'static,
    data_dir: PathBuf,
    stop: StopSignal,
) {
    let path = state_file(&data_dir);
    let mut last: Option<Vec<u8>> = std::fs::read(&path).ok();
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(INTERVAL) => false,
            _ = stop.stopped() => true,
        };
        let bytes = match serde_json::to_vec(&current()) {
            Ok(bytes) => bytes,
            Err(error) => {
                warn!(%error, "cannot serialize the MQTT state");
                continue;
            }
        };
        if last.as_deref() != Some(bytes.as_slice()) {
            let (path, written) = (path.clone(), bytes.clone());
            match tokio::task::spawn_blocking(move || write(&path, &written)).await {
                Ok(Ok(())) => last = Some(bytes),
                Ok(Err(error)) => warn!(%error, "cannot write the MQTT state"),
                Err(error) => warn!(%error, "writing the MQTT state panicked"),
            }
        }
        if stopping {
            info!("MQTT state written");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::broker::{Broker, Limits};
    use crate::mqtt::metrics::MqttMetrics;
    use crate::snapshot::SharedSnapshot;
    use std::sync::Arc;

    fn broker() -> Arc<Broker> {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        Arc::new(Broker::new(
            SharedSnapshot::new(),
            metrics,
            Limits::default(),
        ))
    }

    fn session(client_id: &str, expires_at: u64) -> StoredSession {
        StoredSession {
            client_id: client_id.into(),
            authentication_name: "dashboard".into(),
            expiry_interval: 3600,
            expires_at,
            subscriptions: vec![(
                "lab/#".into(),
                StoredOptions {
                    qos: 1,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                    subscription_id: None,
                },
            )],
            queue: vec![StoredMessage::from_message(
                &Message {
                    topic: "lab/a".into(),
                    payload: Bytes::from_static(b"x"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: MessageProperties {
                        user_properties: vec![("k".into(), "v".into())],
                        ..Default::default()
                    },
                },
                None,
            )],
        }
    }

    #[tokio::test]
    async fn expired_sessions_are_dropped_on_restore_and_live_ones_come_back_whole() {
        let broker = broker();
        let restored = broker.restore(StoredState {
            sessions: vec![session("gone", now() - 1), session("kept", now() + 600)],
            retained: Vec::new(),
        });
        assert_eq!(restored, 1);
        let stored = broker.stored_state();
        assert_eq!(stored.sessions.len(), 1);
        let kept = &stored.sessions[0];
        assert_eq!(kept.client_id, "kept");
        assert_eq!(kept.subscriptions, session("kept", 0).subscriptions);
        assert_eq!(kept.queue, session("kept", 0).queue);
    }

    #[tokio::test]
    async fn sessions_without_expiry_are_not_stored() {
        let broker = broker();
        let session = broker.attach("c", "dashboard", true, 1).unwrap().session;
        assert_eq!(session.state.lock().expiry_interval, 0);
        assert!(broker.stored_state().sessions.is_empty());
    }
}
