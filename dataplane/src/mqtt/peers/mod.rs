//! MQTT across the Namespace's pods (DESIGN §5): each pod tells its peers which filters its
//! sessions hold (`interest`), and a message published on a pod is forwarded once to each
//! pod with matching interest, never to others (`Peers::forward`). A QoS 1/2 publisher's
//! acknowledgement waits until those pods have queued the message (`acks`): such forwards are
//! numbered per peer (a lane) and confirmed by the peer's cumulative `Queued`. Retained
//! messages are on every pod: each retained update is sent to every peer, the latest
//! (time, origin) winning everywhere. What crosses the link is in `wire`.
//!
//! This module knows nothing of the broker: the broker asks it where a message goes and hands
//! it the message; `mqtt::peer_service` (above both) turns what peers send into broker calls.
//! The link itself is behind [`PeerTransport`], so that tests can join brokers in memory.

pub mod acks;
pub mod interest;
pub mod wire;

use crate::mqtt::codec::{Message, QoS};
use crate::mqtt::persist::StoredSession;
use crate::mqtt::reason::ReasonCode;
use acks::ForwardTicket;
use interest::{Interest, RemoteInterest, RemoteTargets};
use prometheus::{IntCounterVec, Opts, Registry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};
use wire::{ClaimAnswer, Forward, PeerMqtt, RetainVersion, RetainedUpdate};

pub use crate::cluster::transport::{PeerTransport, TransportError};

/// How long a forwarded message or an interest change waits for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim for a client id waits for each pod's answer: within the CONNECT's own
/// handshake timeout.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a message goes besides this pod's own sessions, decided once per message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ForwardPlan {
    /// Each pod it goes to: whether to its plain subscriptions, and which shares' delivery.
    pub pods: BTreeMap<Arc<str>, PodForward>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PodForward {
    pub plain: bool,
    pub shares: Vec<(String, String)>,
}

impl ForwardPlan {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Start from the pods with plain interest.
    pub fn from_targets(targets: &RemoteTargets) -> ForwardPlan {
        ForwardPlan {
            pods: targets
                .plain
                .iter()
                .map(|pod| {
                    (
                        pod.clone(),
                        PodForward {
                            plain: true,
                            shares: Vec::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Give `share`'s one delivery to `pod`.
    pub fn share(&mut self, pod: &Arc<str>, share: (String, String)) {
        self.pods.entry(pod.clone()).or_default().shares.push(share);
    }
}

/// This pod's side of MQTT across pods.
pub struct Peers {
    this: Arc<str>,
    transport: Arc<dyn PeerTransport>,
    remote: parking_lot::RwLock<RemoteInterest>,
    /// The version of each retained topic's latest update (set or clear) known here.
    retained_versions: parking_lot::Mutex<HashMap<String, RetainVersion>>,
    /// Each peer's numbered forwards waiting for its `Queued`.
    lanes: parking_lot::Mutex<HashMap<Arc<str>, Lane>>,
    metrics: PeerMetrics,
}

/// The forwards to one peer whose publishers wait, in the order they were sent.
#[derive(Default)]
struct Lane {
    /// The last number given.
    next: u64,
    pending: std::collections::VecDeque<(u64, Instant, ForwardTicket)>,
}

struct PeerMetrics {
    forwarded: IntCounterVec,
}

impl Peers {
    pub fn new(
        this: Arc<str>,
        transport: Arc<dyn PeerTransport>,
        registry: &Registry,
    ) -> Result<Peers, prometheus::Error> {
        let forwarded = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_peer_forwarded_total",
                "MQTT messages forwarded to other pods, by result (sent, unreachable, full, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(forwarded.clone()))?;
        Ok(Peers {
            this,
            transport,
            remote: Default::default(),
            retained_versions: Default::default(),
            lanes: Default::default(),
            metrics: PeerMetrics { forwarded },
        })
    }

    pub fn this(&self) -> &Arc<str> {
        &self.this
    }

    pub fn transport(&self) -> &Arc<dyn PeerTransport> {
        &self.transport
    }

    /// The pods with interest in `topic`.
    pub fn targets(&self, topic: &str) -> RemoteTargets {
        self.remote.read().targets(topic)
    }

    /// Send `message` to the pods of `plan`. With `ticket` (a QoS 1/2 publish), each pod's
    /// answer is one part of it: queued there (its cumulative `Queued`), or the reason the
    /// publisher is told. A pod without a link holds no session reachable from here and
    /// counts as done.
    pub fn forward(&self, message: &Message, plan: ForwardPlan, ticket: Option<ForwardTicket>) {
        let waits = ticket.is_some() && message.qos != QoS::AtMostOnce;
        for (pod, what) in plan.pods {
            // Numbered and sent under the lanes' lock: numbers go out in order on each link,
            // so a cumulative answer is exact.
            let mut lanes = self.lanes.lock();
            let lane = lanes.entry(pod.clone()).or_default();
            let ack = waits.then(|| {
                lane.next += 1;
                lane.next
            });
            let body = PeerMqtt::Forward(Forward {
                plain: what.plain,
                ack,
                shares: what.shares,
                message: message.clone(),
            })
            .encode();
            let sent = match body {
                Ok(body) => self.transport.send(&pod, body),
                // Only a message our own codec refuses to encode (over the protocol's bounds),
                // which the publisher's PUBLISH could not have been.
                Err(error) => Err(TransportError::Failed(error.to_string())),
            };
            let failed = match sent {
                Ok(()) => {
                    self.count("sent");
                    if let (Some(seq), Some(ticket)) = (ack, &ticket) {
                        lane.pending
                            .push_back((seq, Instant::now(), ticket.clone()));
                    }
                    continue;
                }
                Err(TransportError::Down(_)) => {
                    self.count("unreachable");
                    None
                }
                Err(TransportError::Full(_)) => {
                    self.count("full");
                    Some(ReasonCode::UnspecifiedError)
                }
                Err(TransportError::Failed(error)) => {
                    debug!(%pod, %error, "message not forwarded");
                    self.count("failed");
                    Some(ReasonCode::UnspecifiedError)
                }
            };
            drop(lanes);
            if let Some(ticket) = &ticket
                && waits
            {
                ticket.done(failed);
            }
        }
    }

    /// `pod` queued this pod's numbered forwards up to `up_to`.
    pub fn on_queued(&self, pod: &Arc<str>, up_to: u64) {
        let done: Vec<ForwardTicket> = {
            let mut lanes = self.lanes.lock();
            let Some(lane) = lanes.get_mut(pod) else {
                return;
            };
            let mut done = Vec::new();
            while lane
                .pending
                .front()
                .is_some_and(|(seq, _, _)| *seq <= up_to)
            {
                if let Some((_, _, ticket)) = lane.pending.pop_front() {
                    done.push(ticket);
                }
            }
            done
        };
        for ticket in done {
            ticket.done(None);
        }
    }

    /// The link to `pod` went down (or was replaced): what was sent on it and not confirmed
    /// fails, and the publishers send it again.
    pub fn link_lost(&self, pod: &Arc<str>) {
        let lost = self
            .lanes
            .lock()
            .get_mut(pod)
            .map(|lane| std::mem::take(&mut lane.pending))
            .unwrap_or_default();
        if !lost.is_empty() {
            debug!(peer = %pod, messages = lost.len(), "forwarded messages not confirmed before the link went down");
        }
        for (_, _, ticket) in lost {
            self.count("failed");
            ticket.done(Some(ReasonCode::UnspecifiedError));
        }
    }

    /// Fail forwards that waited longer than [`ANSWER_TIMEOUT`] for their pod.
    pub fn expire_forwards(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        for lane in self.lanes.lock().values_mut() {
            while lane
                .pending
                .front()
                .is_some_and(|(_, sent, _)| now.duration_since(*sent) > ANSWER_TIMEOUT)
            {
                if let Some((_, _, ticket)) = lane.pending.pop_front() {
                    expired.push(ticket);
                }
            }
        }
        for ticket in expired {
            self.count("failed");
            ticket.done(Some(ReasonCode::UnspecifiedError));
        }
    }

    fn count(&self, result: &str) {
        self.metrics.forwarded.with_label_values(&[result]).inc();
    }

    /// `pod` told its interest.
    pub fn on_interest(
        &self,
        pod: &Arc<str>,
        full: bool,
        added: Vec<Interest>,
        removed: Vec<Interest>,
    ) {
        let mut remote = self.remote.write();
        if full {
            remote.replace(pod, added);
        } else {
            for interest in &removed {
                remote.remove(pod, interest);
            }
            for interest in added {
                remote.add(pod, interest);
            }
        }
    }

    /// The link to `pod` is down: its sessions are out of reach until it comes back and tells
    /// its interest again.
    pub fn forget(&self, pod: &Arc<str>) {
        self.remote.write().forget(pod);
    }

    /// A retained update made here: the version it gets (later than any known for the topic,
    /// whatever the clocks of the pods that set it before).
    pub fn retained_here(&self, topic: &str) -> RetainVersion {
        let now = now_ms();
        let mut versions = self.retained_versions.lock();
        let at_ms = match versions.get(topic) {
            Some(known) if known.at_ms >= now => known.at_ms + 1,
            _ => now,
        };
        let version = RetainVersion {
            at_ms,
            origin: self.this.clone(),
        };
        versions.insert(topic.to_string(), version.clone());
        version
    }

    /// Whether a peer's retained update is newer than what this pod has (and record it).
    pub fn retained_from_peer(&self, topic: &str, version: &RetainVersion) -> bool {
        let mut versions = self.retained_versions.lock();
        match versions.get(topic) {
            Some(known) if known >= version => false,
            _ => {
                versions.insert(topic.to_string(), version.clone());
                true
            }
        }
    }

    /// The version of a retained message held here (restored ones have none yet: the oldest).
    pub fn retained_version(&self, topic: &str) -> RetainVersion {
        self.retained_versions
            .lock()
            .get(topic)
            .cloned()
            .unwrap_or_else(|| RetainVersion {
                at_ms: 0,
                origin: self.this.clone(),
            })
    }

    /// Ask every connected peer about `client_id` for a CONNECT here: each ends and hands over
    /// a session it holds, and says how many sessions of the authentication name it has
    /// connected. A peer that does not answer is left out (its sessions are out of reach).
    pub async fn claim(
        &self,
        client_id: &str,
        authentication_name: &str,
        clean_start: bool,
    ) -> Vec<ClaimAnswer> {
        let body = PeerMqtt::Claim {
            client_id: client_id.to_string(),
            authentication_name: authentication_name.to_string(),
            clean_start,
        }
        .encode();
        let Ok(body) = body else {
            return Vec::new();
        };
        let requests: Vec<_> = self
            .transport
            .connected()
            .into_iter()
            .map(|pod| {
                (
                    self.transport.request(&pod, body.clone(), CLAIM_TIMEOUT),
                    pod,
                )
            })
            .collect();
        let mut answers = Vec::with_capacity(requests.len());
        for (request, pod) in requests {
            match request.await.map(ClaimAnswer::decode) {
                Ok(Ok(answer)) => answers.push(answer),
                Ok(Err(error)) => warn!(peer = %pod, %error, "claim answer refused"),
                Err(error) => debug!(peer = %pod, %error, "claim not answered"),
            }
        }
        answers
    }

    /// Hand `sessions` to the connected peers (each to one, by a hash of its client id, in
    /// slices), and return the client ids of those a peer acknowledged.
    pub async fn hand_off(&self, sessions: Vec<StoredSession>) -> Vec<String> {
        let pods = self.transport.connected();
        if pods.is_empty() {
            return Vec::new();
        }
        let mut by_pod: BTreeMap<Arc<str>, Vec<StoredSession>> = BTreeMap::new();
        for session in sessions {
            let pod = rendezvous(&session.client_id, &pods);
            by_pod.entry(pod).or_default().push(session);
        }
        let mut requests = Vec::new();
        for (pod, sessions) in by_pod {
            let mut sessions = sessions.into_iter().peekable();
            while sessions.peek().is_some() {
                let slice: Vec<StoredSession> = sessions.by_ref().take(HANDOFF_SLICE).collect();
                let ids: Vec<String> = slice.iter().map(|s| s.client_id.clone()).collect();
                match PeerMqtt::Handoff(slice).encode() {
                    Ok(body) => requests.push((
                        pod.clone(),
                        ids,
                        self.transport.request(&pod, body, ANSWER_TIMEOUT),
                    )),
                    Err(error) => warn!(peer = %pod, %error, "sessions not encodable"),
                }
            }
        }
        let mut handed = Vec::new();
        for (pod, ids, request) in requests {
            match request.await {
                Ok(_) => handed.extend(ids),
                Err(error) => {
                    warn!(peer = %pod, %error, sessions = ids.len(), "sessions not handed off")
                }
            }
        }
        handed
    }

    /// Send retained updates to every connected peer.
    pub fn broadcast_retained(&self, updates: Vec<RetainedUpdate>) {
        if updates.is_empty() {
            return;
        }
        let Ok(body) = PeerMqtt::Retained(updates).encode() else {
            return;
        };
        for pod in self.transport.connected() {
            if let Err(error) = self.transport.send(&pod, body.clone()) {
                debug!(%pod, %error, "retained update not sent");
            }
        }
    }
}

/// Sessions per Handoff body.
const HANDOFF_SLICE: usize = 500;

/// The pod `key` goes to among `pods`: the highest hash of (key, pod), so that a pod coming or
/// going moves only its own share.
fn rendezvous(key: &str, pods: &[Arc<str>]) -> Arc<str> {
    use std::hash::{Hash, Hasher};
    pods.iter()
        .max_by_key(|pod| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (key, pod.as_ref()).hash(&mut hasher);
            hasher.finish()
        })
        .cloned()
        .expect("at least one pod")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_leaving_moves_only_its_own_share_of_sessions() {
        let three: Vec<Arc<str>> = ["pod-0", "pod-1", "pod-2"].map(Arc::from).to_vec();
        let two: Vec<Arc<str>> = ["pod-0", "pod-1"].map(Arc::from).to_vec();
        let mut per_pod = BTreeMap::<Arc<str>, usize>::new();
        for n in 0..3000 {
            let key = format!("client-{n}");
            let before = rendezvous(&key, &three);
            *per_pod.entry(before.clone()).or_default() += 1;
            if &*before != "pod-2" {
                assert_eq!(rendezvous(&key, &two), before, "{key} moved without cause");
            }
        }
        // Spread: each pod about a third (generous bounds: a hash, not a count).
        assert!(
            per_pod.values().all(|n| (700..1300).contains(n)),
            "{per_pod:?}"
        );
    }
}
