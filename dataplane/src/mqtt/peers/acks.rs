//! A connection's QoS 1/2 acknowledgements waiting for other pods: a message forwarded to
//! pods with matching subscribers is acknowledged to its publisher only once every one of
//! them has queued it. Pods answer independently, so the answers for one connection arrive
//! out of order; the acknowledgements still leave in PUBLISH order (`finished` only grows
//! over a contiguous run of done messages).

use crate::mqtt::reason::ReasonCode;
use crate::mqtt::session::Session;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One connection's forwarded messages: numbered from 1 in PUBLISH order.
pub struct ForwardAcks {
    state: parking_lot::Mutex<State>,
    /// Every message up to this number is done (mirrors `State::base - 1`, readable without
    /// the lock on the connection's hot path).
    finished: AtomicU64,
    /// Its connection waits on the session's `wake`.
    session: Arc<Session>,
}

#[derive(Default)]
struct State {
    /// Numbers given so far.
    opened: u64,
    /// The lowest number not done; `remaining[i]` is for `base + i`.
    base: u64,
    remaining: VecDeque<u32>,
    /// Messages that failed (number, the reason to acknowledge them with), in order.
    failures: VecDeque<(u64, ReasonCode)>,
}

/// A forwarded message's place among its connection's: each pod it went to says `done` once.
#[derive(Clone)]
pub struct ForwardTicket {
    pub acks: Arc<ForwardAcks>,
    pub seq: u64,
}

impl ForwardAcks {
    pub fn new(session: Arc<Session>) -> Self {
        Self {
            state: parking_lot::Mutex::new(State {
                base: 1,
                ..State::default()
            }),
            finished: AtomicU64::new(0),
            session,
        }
    }

    /// Number the next message, which waits for `parts` answers (at least one).
    pub fn open(self: &Arc<Self>, parts: u32) -> ForwardTicket {
        let mut state = self.state.lock();
        state.opened += 1;
        state.remaining.push_back(parts.max(1));
        ForwardTicket {
            acks: self.clone(),
            seq: state.opened,
        }
    }

    /// Every message up to this number is done.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// The reason message `seq` (done) failed with, taken; None when every pod queued it.
    /// Called in number order.
    pub fn failure(&self, seq: u64) -> Option<ReasonCode> {
        let mut state = self.state.lock();
        while state.failures.front().is_some_and(|(s, _)| *s < seq) {
            state.failures.pop_front();
        }
        match state.failures.front() {
            Some((s, code)) if *s == seq => {
                let code = *code;
                state.failures.pop_front();
                Some(code)
            }
            _ => None,
        }
    }

    /// One pod answered for message `seq`: queued (`failed` None) or not. The first failure
    /// of a message is the one acknowledged.
    pub fn done(&self, seq: u64, failed: Option<ReasonCode>) {
        let advanced = {
            let mut state = self.state.lock();
            if seq < state.base {
                return;
            }
            let index = (seq - state.base) as usize;
            let Some(remaining) = state.remaining.get_mut(index) else {
                return;
            };
            if *remaining == 0 {
                return;
            }
            *remaining -= 1;
            if let Some(code) = failed
                && !state.failures.iter().any(|(s, _)| *s == seq)
            {
                let at = state.failures.partition_point(|(s, _)| *s < seq);
                state.failures.insert(at, (seq, code));
            }
            let before = state.base;
            while state.remaining.front() == Some(&0) {
                state.remaining.pop_front();
                state.base += 1;
            }
            self.finished.store(state.base - 1, Ordering::Release);
            state.base != before
        };
        if advanced {
            self.session.wake.notify_one();
        }
    }
}

impl ForwardTicket {
    pub fn done(&self, failed: Option<ReasonCode>) {
        self.acks.done(self.seq, failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks() -> Arc<ForwardAcks> {
        Arc::new(ForwardAcks::new(Arc::new(Session::new(
            "c".into(),
            "c".into(),
        ))))
    }

    #[test]
    fn answers_out_of_order_finish_messages_in_order() {
        let acks = acks();
        let first = acks.open(2);
        let second = acks.open(1);
        second.done(None);
        assert_eq!(acks.finished(), 0, "the second waits for the first");
        first.done(None);
        assert_eq!(acks.finished(), 0, "the first waits for its second pod");
        first.done(Some(ReasonCode::UnspecifiedError));
        assert_eq!(acks.finished(), 2);
        assert_eq!(acks.failure(1), Some(ReasonCode::UnspecifiedError));
        assert_eq!(acks.failure(2), None);
    }

    #[test]
    fn extra_or_stale_answers_change_nothing() {
        let acks = acks();
        let ticket = acks.open(1);
        ticket.done(None);
        ticket.done(Some(ReasonCode::UnspecifiedError));
        acks.done(99, None);
        assert_eq!(acks.finished(), 1);
        assert_eq!(acks.failure(1), None);
    }
}
