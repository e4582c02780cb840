//! A connection's batch of PUBLISH packets, fanned out: the deliveries are gathered per
//! target session while the batch is handled and handed over after it, one session lock each.
//!
//! Why: in a 1 → N fan-out the publisher's thread queued every message into N sessions, one
//! lock per message and session, on cache lines the subscribers' connections (on the other
//! worker thread) had just used to take messages off: measured on 1 → 100 QoS 1, queueing
//! was the largest cost of the broker's own code. Gathered, a batch of 64 messages costs
//! each session one lock and one stretch of queue writes. Handed over after the batch, each
//! subscriber's connection is also woken once and writes the whole batch in one go, instead
//! of one message per wake-up (woken at once per message, a fan-out's subscribers wrote one
//! message per `write`).
//!
//! The batch is bounded (`MAX_PACKETS_PER_WAKE` packets), and the connection hands the
//! deliveries over before it writes to its socket (where it may wait), so the delay is a
//! batch's handling, never the publisher's reading.

use super::metrics::MqttMetrics;
use super::session::{QueueLimits, Queued, Session};
use std::sync::Arc;

/// Emptied delivery lists kept for the next batch: enough for a wide fan-out without holding
/// memory for an unbounded one.
const SPARE_LISTS: usize = 1024;

/// Boxed, and only once a batch fans out: an idle connection carries one pointer.
#[derive(Default)]
pub struct Outbox(Option<Box<Lists>>);

#[derive(Default)]
struct Lists {
    /// The batch's target sessions in address order, each with its deliveries in the order
    /// they were published.
    slots: Vec<Slot>,
    spare: Vec<Vec<Queued>>,
}

struct Slot {
    session: Arc<Session>,
    deliveries: Vec<Queued>,
}

impl Slot {
    fn address(&self) -> usize {
        Arc::as_ptr(&self.session) as usize
    }
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|lists| lists.slots.is_empty())
    }

    /// Add one message's deliveries, given in session address order (as
    /// `Broker::publish_batched` sorts its targets): merging them into the slots is one walk,
    /// and the next message to the same sessions finds each at the next slot. A session is
    /// cloned only the first time the batch sees it.
    pub fn add<'a>(&mut self, deliveries: impl IntoIterator<Item = (&'a Arc<Session>, Queued)>) {
        let Lists { slots, spare } = &mut **self.0.get_or_insert_with(Default::default);
        let mut slot = 0;
        for (session, queued) in deliveries {
            let address = Arc::as_ptr(session) as usize;
            while slot < slots.len() && slots[slot].address() < address {
                slot += 1;
            }
            if slot == slots.len() || slots[slot].address() != address {
                let deliveries = spare.pop().unwrap_or_default();
                slots.insert(
                    slot,
                    Slot {
                        session: Arc::clone(session),
                        deliveries,
                    },
                );
            }
            slots[slot].deliveries.push(queued);
        }
    }

    /// Hand every delivery to its session (one lock each, in order, within the session's
    /// limits) and wake the connections whose queue was empty. Returns the connected sessions
    /// that are now behind: the publisher pauses for them (README "Flow control").
    pub fn deliver(&mut self, limits: QueueLimits, metrics: &MqttMetrics) -> Vec<Arc<Session>> {
        let mut congested = Vec::new();
        let Some(lists) = self.0.as_deref_mut() else {
            return congested;
        };
        for Slot {
            session,
            mut deliveries,
        } in lists.slots.drain(..)
        {
            let queued = session.enqueue_batch(deliveries.drain(..), limits, metrics);
            if queued.wake {
                session.wake.notify_one();
            }
            if lists.spare.len() < SPARE_LISTS {
                lists.spare.push(deliveries);
            }
            if queued.congested {
                congested.push(session);
            }
        }
        congested
    }

    /// Give the memory back while idle.
    pub fn release(&mut self) {
        debug_assert!(self.is_empty());
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{Message, QoS};
    use crate::mqtt::session::{Attachment, Delivery};
    use bytes::Bytes;
    use futures::FutureExt;

    fn limits() -> QueueLimits {
        QueueLimits {
            pause_publishers_at: 5,
            resume_publishers_below: 2,
            max_queued: 6,
            max_queued_offline: 2,
            max_queued_qos0_offline: 1,
        }
    }

    fn queued(payload: &'static str) -> Queued {
        Queued {
            delivery: Delivery::of(Message {
                topic: "t".into(),
                payload: Bytes::from_static(payload.as_bytes()),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            }),
            subscription_ids: Vec::new(),
        }
    }

    fn connected_session(id: &str) -> Arc<Session> {
        let session = Arc::new(Session::new(id.into(), id.into()));
        session.state.lock().attachment = Some(Attachment::new(1));
        session
    }

    fn payloads(session: &Session) -> Vec<Bytes> {
        let state = session.state.lock();
        let queue = state.queue.iter();
        queue.map(|q| q.delivery.message.payload.clone()).collect()
    }

    fn sorted(mut sessions: Vec<Arc<Session>>) -> Vec<Arc<Session>> {
        sessions.sort_by_key(|s| Arc::as_ptr(s) as usize);
        sessions
    }

    #[test]
    fn a_batch_reaches_each_session_in_publish_order_and_wakes_it_once() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let sessions = sorted(vec![connected_session("a"), connected_session("b")]);
        let mut outbox = Outbox::default();
        outbox.add(sessions.iter().map(|s| (s, queued("1"))));
        outbox.add(sessions.iter().map(|s| (s, queued("2"))));
        outbox.add([(&sessions[1], queued("3"))]);
        assert!(
            payloads(&sessions[0]).is_empty(),
            "nothing is queued before the batch ends"
        );
        let congested = outbox.deliver(limits(), &metrics);
        assert!(congested.is_empty());
        assert!(outbox.is_empty());
        assert_eq!(payloads(&sessions[0]), ["1", "2"]);
        assert_eq!(payloads(&sessions[1]), ["1", "2", "3"]);
        for session in &sessions {
            assert_eq!(Arc::strong_count(session), 1, "the outbox let go of it");
            assert!(session.wake.notified().now_or_never().is_some());
            assert!(
                session.wake.notified().now_or_never().is_none(),
                "woken once for the whole batch"
            );
        }
    }

    #[test]
    fn a_session_with_messages_waiting_is_not_woken_again() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = connected_session("a");
        session.state.lock().queue.push_back(queued("0"));
        let mut outbox = Outbox::default();
        outbox.add([(&session, queued("1"))]);
        outbox.deliver(limits(), &metrics);
        assert_eq!(payloads(&session), ["0", "1"]);
        assert!(
            session.wake.notified().now_or_never().is_none(),
            "its connection is due already"
        );
    }

    #[test]
    fn a_batch_that_fills_a_queue_names_the_session_and_drops_beyond_the_bound() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = connected_session("a");
        let mut outbox = Outbox::default();
        for payload in ["1", "2", "3", "4", "5", "6", "7"] {
            outbox.add([(&session, queued(payload))]);
        }
        let congested = outbox.deliver(limits(), &metrics);
        assert_eq!(congested.len(), 1, "its publishers pause");
        assert!(session.is_congested());
        assert_eq!(payloads(&session), ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(metrics.dropped.with_label_values(&["queue_full"]).get(), 1);
    }

    #[test]
    fn an_offline_session_keeps_its_offline_bound() {
        let metrics = MqttMetrics::register(&prometheus::Registry::new()).unwrap();
        let session = Arc::new(Session::new("a".into(), "a".into()));
        let mut outbox = Outbox::default();
        for payload in ["1", "2", "3"] {
            outbox.add([(&session, queued(payload))]);
        }
        let congested = outbox.deliver(limits(), &metrics);
        assert!(congested.is_empty(), "nobody waits for an absent client");
        assert_eq!(payloads(&session), ["1", "2"]);
        assert_eq!(
            metrics
                .dropped
                .with_label_values(&["queue_full_offline"])
                .get(),
            1
        );
    }
}
