//! The MQTT service of the peer links, wired to the broker: what peers send becomes broker
//! calls (`serve_inbound`), and this pod's interest and retained messages reach the peers
//! (`tell_peers`): all of it when a link comes up, the changes as they happen.
//!
//! Above both `broker` and `peers` (which know nothing of each other's insides).

use super::broker::{Broker, Origin};
use super::outbox::Outbox;
use super::peers::interest::{Interest, InterestChange};
use super::peers::wire::{ClaimAnswer, Forward, PeerMqtt, WireError};
use super::peers::{ANSWER_TIMEOUT, Peers, TransportError};
use crate::shutdown::StopSignal;
use bytes::Bytes;
use futures::FutureExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use crate::cluster::transport::{InboundQueue, PeerInbound, PeerReply};

/// The peers a link is up to, each with the link's generation: a new link to the same pod
/// (it restarted, or the link dropped and came back) has a new number, and is told
/// everything again.
pub type ConnectedPeers = watch::Receiver<Arc<BTreeMap<Arc<str>, u64>>>;

/// Turn what peers send into broker calls, until `inbound` closes or `stop`.
pub async fn serve_inbound(broker: Arc<Broker>, mut inbound: impl InboundQueue, stop: StopSignal) {
    let Some(peers) = broker.peers.clone() else {
        return;
    };
    // Numbered forwards queued here and not yet acknowledged, by the pod that sent them: one
    // cumulative `Queued` per pod once nothing more is waiting in the queue (a burst costs
    // one answer, not one per message).
    let mut due: HashMap<Arc<str>, u64> = HashMap::new();
    loop {
        let ready = match inbound.recv().now_or_never() {
            Some(received) => received,
            None => {
                acknowledge(&peers, &mut due);
                tokio::select! {
                    received = inbound.recv() => received,
                    _ = stop.stopped() => return,
                }
            }
        };
        let Some(PeerInbound { from, body, reply }) = ready else {
            acknowledge(&peers, &mut due);
            return;
        };
        let answer = match PeerMqtt::decode(body) {
            Ok(body) => {
                handle(&broker, &peers, &from, body, &mut due).map_err(|error| error.to_string())
            }
            Err(error) => {
                if let Some(suppressed) = broker.refusal_log.allow("peer_body_refused") {
                    warn!(peer = %from, %error, suppressed, "MQTT body from a peer refused");
                }
                Err(error.to_string())
            }
        };
        if let Some(reply) = reply {
            reply(answer);
        }
    }
}

/// Tell each pod how far its numbered forwards are queued here; one whose link is full is
/// told next time (its answer is cumulative).
fn acknowledge(peers: &Peers, due: &mut HashMap<Arc<str>, u64>) {
    due.retain(|pod, up_to| {
        let Ok(body) = PeerMqtt::Queued { up_to: *up_to }.encode() else {
            return false;
        };
        match peers.transport().send(pod, body) {
            Ok(()) | Err(TransportError::Down(_)) => false,
            Err(_) => true,
        }
    });
}

/// What a body asks; the answer to give when it was a request.
fn handle(
    broker: &Arc<Broker>,
    peers: &Peers,
    from: &Arc<str>,
    body: PeerMqtt,
    due: &mut HashMap<Arc<str>, u64>,
) -> Result<Bytes, WireError> {
    match body {
        PeerMqtt::Interest {
            full,
            added,
            removed,
        } => {
            debug!(peer = %from, full, added = added.len(), removed = removed.len(), "peer interest");
            peers.on_interest(from, full, added, removed);
        }
        PeerMqtt::Forward(Forward {
            plain,
            ack,
            shares,
            message,
        }) => {
            let mut outbox = Outbox::default();
            broker.metrics.message_in(message.qos);
            // Queued here before the answer goes back: the publisher's acknowledgement waits
            // for it. A subscriber that is behind is the peer's concern no more than a local
            // one's: its queue bound drops what it cannot take.
            broker.publish_from(
                message,
                "",
                &mut outbox,
                Origin::Peer {
                    plain,
                    shares: &shares,
                },
            );
            outbox.deliver(broker.limits.queue, &broker.metrics);
            if let Some(seq) = ack {
                let up_to = due.entry(from.clone()).or_insert(seq);
                *up_to = (*up_to).max(seq);
            }
        }
        PeerMqtt::Queued { up_to } => peers.on_queued(from, up_to),
        PeerMqtt::Retained(updates) => broker.apply_retained(updates),
        PeerMqtt::Handoff(sessions) => {
            let offered = sessions.len();
            let kept = broker.take_handed_off(sessions);
            info!(peer = %from, offered, kept, "sessions handed over by a stopping pod");
        }
        PeerMqtt::Claim {
            client_id,
            authentication_name,
            clean_start,
        } => {
            let handover = broker.hand_over(&client_id, &authentication_name, clean_start);
            if handover.session.is_some() || handover.was_connected {
                info!(peer = %from, client = %client_id, resumed = handover.session.is_some(), "session handed over to another pod");
            }
            return ClaimAnswer {
                connected_for_name: handover.connected_for_name,
                was_connected: handover.was_connected,
                last_sequence: handover.last_sequence,
                session: handover.session,
            }
            .encode();
        }
    }
    Ok(Bytes::new())
}

/// A stopping pod's sessions (detached, persistent) to its peers, spread by client id; the
/// sessions a peer acknowledged are removed here. Returns how many were handed off.
pub async fn hand_off_sessions(broker: &Broker) -> usize {
    let Some(peers) = broker.peers.clone() else {
        return 0;
    };
    let sessions = broker.sessions_to_hand_off();
    if sessions.is_empty() {
        return 0;
    }
    let handed = peers.hand_off(sessions).await;
    broker.handed_off(&handed);
    handed.len()
}

/// Keep every connected peer told of this pod's interest and retained messages, until
/// `stop`. Sets `broker.interest_told` to the interest version every connected peer has
/// acknowledged.
pub async fn tell_peers(broker: Arc<Broker>, mut connected: ConnectedPeers, stop: StopSignal) {
    let Some(peers) = broker.peers.clone() else {
        return;
    };
    let mut interest_changes = broker.interest_changes.subscribe();
    let mut known: Arc<BTreeMap<Arc<str>, u64>> = Arc::new(BTreeMap::new());
    // Forwards a pod never confirms fail after `ANSWER_TIMEOUT`, looked at every second.
    let mut expiry = tokio::time::interval(std::time::Duration::from_secs(1));
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Links first: a peer that just came up is told everything, which covers the
        // changes made meanwhile.
        let now = connected.borrow_and_update().clone();
        let new: Vec<Arc<str>> = now
            .iter()
            .filter(|(pod, generation)| known.get(*pod) != Some(generation))
            .map(|(pod, _)| pod.clone())
            .collect();
        for (pod, _) in known.iter().filter(|(pod, _)| !now.contains_key(*pod)) {
            info!(peer = %pod, "peer link down: its MQTT interest is forgotten");
            peers.forget(pod);
            peers.link_lost(pod);
        }
        for pod in known
            .iter()
            .filter(|(pod, g)| now.get(*pod).is_some_and(|n| n != *g))
        {
            // The same pod on a new link: what it told before may be stale, and what was
            // sent on the old link unconfirmed is lost with it.
            peers.forget(pod.0);
            peers.link_lost(pod.0);
        }
        known = now;
        for pod in &new {
            tell_everything(&broker, &peers, pod).await;
        }
        let (changes, version) = broker.take_interest_changes();
        if !changes.is_empty() {
            let (added, removed) = net(changes);
            let body = PeerMqtt::Interest {
                full: false,
                added,
                removed,
            }
            .encode();
            match body {
                Ok(body) => {
                    let requests = known.keys().map(|pod| {
                        (
                            pod.clone(),
                            peers.transport().request(pod, body.clone(), ANSWER_TIMEOUT),
                        )
                    });
                    for (pod, request) in requests.collect::<Vec<_>>() {
                        if let Err(error) = request.await {
                            log_unanswered(&pod, &error);
                        }
                    }
                }
                Err(error) => warn!(%error, "interest change not encodable"),
            }
        }
        broker.interest_told.send_replace(version);
        tokio::select! {
            changed = connected.changed() => if changed.is_err() { return },
            changed = interest_changes.changed() => if changed.is_err() { return },
            _ = expiry.tick() => peers.expire_forwards(),
            _ = stop.stopped() => return,
        }
    }
}

/// A peer whose link just came up: all of this pod's interest, then its retained messages.
async fn tell_everything(broker: &Broker, peers: &Peers, pod: &Arc<str>) {
    let (all, _) = broker.all_interest();
    let count = all.len();
    match (PeerMqtt::Interest {
        full: true,
        added: all,
        removed: Vec::new(),
    })
    .encode()
    {
        Ok(body) => {
            if let Err(error) = peers.transport().request(pod, body, ANSWER_TIMEOUT).await {
                log_unanswered(pod, &error);
            }
        }
        Err(error) => warn!(%error, "interest not encodable"),
    }
    let retained = broker.retained_updates();
    let retained_count = retained.len();
    // In slices: one body stays far below the link's frame limit however many there are.
    for chunk in retained.chunks(256) {
        if let Ok(body) = PeerMqtt::Retained(chunk.to_vec()).encode()
            && let Err(error) = peers.transport().send(pod, body)
        {
            debug!(peer = %pod, %error, "retained messages not sent");
        }
    }
    info!(peer = %pod, filters = count, retained = retained_count, "peer link up: MQTT interest and retained messages told");
}

fn log_unanswered(pod: &str, error: &TransportError) {
    match error {
        // Gone meanwhile: the next link is told everything.
        TransportError::Down(_) => debug!(peer = %pod, %error, "interest not told"),
        _ => warn!(peer = %pod, %error, "interest not acknowledged"),
    }
}

/// The net effect of changes in order: each change toggles its interest, so the last one
/// of each says where it ends.
fn net(changes: Vec<InterestChange>) -> (Vec<Interest>, Vec<Interest>) {
    let mut last: HashMap<Interest, bool> = HashMap::new();
    for change in changes {
        match change {
            InterestChange::Added(interest) => last.insert(interest, true),
            InterestChange::Removed(interest) => last.insert(interest, false),
        };
    }
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (interest, present) in last {
        if present {
            added.push(interest);
        } else {
            removed.push(interest);
        }
    }
    added.sort();
    removed.sort();
    (added, removed)
}

#[cfg(test)]
mod tests;
