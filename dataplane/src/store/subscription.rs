//! The delivery state machine of one queue subscription, free of I/O: the caller reads the
//! log, writes the journal records these methods return, and publishes dead letters.
//!
//! State: a `cursor` (the address of the first event never handed out; every matching event
//! before it is settled unless it is in `in_flight`) and the sparse `in_flight` map of events
//! handed out at least once and not settled yet. Memory is proportional to the events in
//! flight, not to the log.
//!
//! Each in-flight event is in one of three states (`EventState`):
//! ```text
//!            receive                 acknowledge / reject / dead-letter / drop
//!  (log) ─────────────> Locked ───────────────────────────────────────────────> (gone)
//!                       │  ▲ │ renewLock (same token, new deadline)
//!     release / expiry  │  │ └──────────┐
//!                       ▼  │ receive    │
//!                       Waiting ────────┘
//!                       │ TTL passed or max delivery count reached on the next receive
//!                       ▼
//!                       DeadLettering ──(dead-letter topic has it)──> (gone)
//! ```

use super::clock::Millis;
use super::dead_letter::{DeadLetterReason, LastAttempt};
use super::lock_token::{LockToken, LockTokenError};
use std::collections::{BTreeMap, BTreeSet};

/// A subscription's number within its topic: what event records and lock tokens name.
pub type SubscriptionId = u32;

/// One event handed out and not settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Record length in the log, header included (to read it back with one read).
    pub len: u32,
    pub publish_time: Millis,
    /// How many times it was handed out.
    pub delivery_count: u32,
    pub state: EventState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventState {
    /// Handed out; the lock holder may settle it until `deadline`.
    Locked { deadline: Millis, nonce: u64 },
    /// Released or its lock expired: available again from `not_before`.
    Waiting { not_before: Millis },
    /// Being appended to the dead-letter topic; nobody may take it meanwhile. Persisted as
    /// `Waiting`, so a crash retries the dead-lettering.
    DeadLettering,
}

/// The settings of a queue subscription that the state machine applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    pub lock_duration: Millis,
    pub max_delivery_count: u32,
    pub time_to_live: Millis,
    pub dead_letter_topic: Option<String>,
}

/// An event that must leave the subscription: dead-lettered (then `finish_dead_letter`) or
/// dropped (already removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doomed {
    pub address: u64,
    pub len: u32,
    pub publish_time: Millis,
    pub delivery_attempts: u32,
    pub reason: DeadLetterReason,
    pub last_attempt: Option<LastAttempt>,
}

/// An event just locked for a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: u64,
    pub len: u32,
    pub publish_time: Millis,
    pub token: LockToken,
}

/// The result of handing out events: what to return, what to dead-letter or drop.
#[derive(Debug, Default)]
pub struct Handout {
    pub leases: Vec<Lease>,
    pub doomed: Vec<Doomed>,
    /// Lock expiries found due while handing out (for the metric).
    pub expired_locks: u64,
    /// Stop leasing once the leased records hold this many bytes (`None`: no limit). Push
    /// delivery sets it so that one take fills its free requests and no more.
    pub byte_budget: Option<u64>,
    /// Record bytes leased so far.
    pub leased_bytes: u64,
}

impl Handout {
    /// With a byte budget: at least one event, then up to the budget.
    pub fn with_byte_budget(bytes: u64) -> Handout {
        Handout {
            byte_budget: Some(bytes),
            ..Handout::default()
        }
    }

    /// No more leases: `max` reached or the byte budget spent.
    pub fn is_full(&self, max: usize) -> bool {
        self.leases.len() >= max || self.byte_budget.is_some_and(|b| self.leased_bytes >= b)
    }
}

/// A new event at the cursor, as read from the log.
#[derive(Clone, Copy, Debug)]
pub struct NewEvent {
    pub address: u64,
    pub len: u32,
    pub publish_time: Millis,
    pub matched: bool,
}

/// What a settle does to one locked event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SettleAction {
    Acknowledge,
    Release {
        delay: Millis,
    },
    Reject,
    RenewLock,
    /// Push delivery gives up on the event: like `Reject`, with the dispatcher's reason and
    /// what its last attempt ended with.
    DeadLetter {
        reason: DeadLetterReason,
        last_attempt: LastAttempt,
    },
}

#[derive(Debug)]
pub struct SubscriptionState {
    pub id: SubscriptionId,
    pub name: String,
    /// Sequence number of the last change; journal records at or below it are already applied.
    pub seq: u64,
    pub cursor: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// `Waiting` events whose `not_before` has passed, by address (roughly FIFO redelivery).
    ready: BTreeSet<u64>,
    /// Lock deadlines and future `not_before` times.
    timers: BTreeSet<(Millis, u64)>,
    /// Matching events after the cursor (best effort, for the pending gauge).
    pub unread_estimate: u64,
    /// The owner number tokens carry (`PodIdentity::owner`); a token of another is refused.
    owner: u16,
    /// When the configuration stopped serving this subscription (journaled). No event
    /// published after that matches it, so once retention has passed since, its state holds
    /// nothing worth keeping and is forgotten.
    pub retired_at: Option<Millis>,
}

impl SubscriptionState {
    pub fn new(id: SubscriptionId, name: String, cursor: u64, owner: u16) -> Self {
        SubscriptionState {
            id,
            name,
            seq: 0,
            cursor,
            in_flight: BTreeMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            unread_estimate: 0,
            owner,
            retired_at: None,
        }
    }

    /// Mark the subscription as no longer served, from `now` (unless it already is). Returns
    /// whether that changed anything.
    pub fn retire(&mut self, now: Millis) -> bool {
        if self.retired_at.is_some() {
            return false;
        }
        self.retired_at = Some(now);
        true
    }

    /// Served again. Returns whether it had been retired.
    pub fn revive(&mut self) -> bool {
        self.retired_at.take().is_some()
    }

    /// Every lock becomes a wait that is due `now` (push delivery, when its dispatcher starts:
    /// the only holder of this subscription's locks was an earlier dispatcher, now gone).
    /// Returns the changed entries for the journal.
    pub fn release_locks(&mut self, now: Millis) -> Vec<(u64, InFlight)> {
        let locked: Vec<(u64, InFlight)> = self
            .in_flight
            .iter()
            .filter(|(_, entry)| matches!(entry.state, EventState::Locked { .. }))
            .map(|(address, entry)| {
                let waiting = InFlight {
                    state: EventState::Waiting { not_before: now },
                    ..*entry
                };
                (*address, waiting)
            })
            .collect();
        for (address, entry) in &locked {
            self.set(*address, *entry);
        }
        self.process_due(now);
        locked
    }

    pub fn in_flight(&self) -> impl Iterator<Item = (&u64, &InFlight)> {
        self.in_flight.iter()
    }

    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// The lowest address this subscription may still need (retention keeps it).
    pub fn low_watermark(&self) -> u64 {
        self.in_flight
            .first_key_value()
            .map_or(self.cursor, |(a, _)| (*a).min(self.cursor))
    }

    /// When the next lock expires or delayed release comes due.
    pub fn next_due(&self) -> Option<Millis> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Put (or replace) an in-flight event and keep the indexes in step.
    pub fn set(&mut self, address: u64, entry: InFlight) {
        self.unindex(address);
        match entry.state {
            EventState::Locked { deadline, .. } => {
                self.timers.insert((deadline, address));
            }
            EventState::Waiting { not_before } => {
                self.timers.insert((not_before, address));
            }
            EventState::DeadLettering => {}
        }
        self.in_flight.insert(address, entry);
    }

    pub fn remove(&mut self, address: u64) -> Option<InFlight> {
        self.unindex(address);
        self.in_flight.remove(&address)
    }

    fn unindex(&mut self, address: u64) {
        if let Some(old) = self.in_flight.get(&address) {
            match old.state {
                EventState::Locked { deadline, .. } => {
                    self.timers.remove(&(deadline, address));
                }
                EventState::Waiting { not_before } => {
                    self.timers.remove(&(not_before, address));
                }
                EventState::DeadLettering => {}
            }
            self.ready.remove(&address);
        }
    }

    /// Move what came due by `now` to `ready`: expired locks and delayed releases. Returns
    /// how many locks expired.
    pub fn process_due(&mut self, now: Millis) -> u64 {
        let mut expired = 0;
        while let Some(&(at, address)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, address));
            let Some(entry) = self.in_flight.get_mut(&address) else {
                continue;
            };
            if let EventState::Locked { .. } = entry.state {
                // Not journaled: after a restart the deadline in the journal says the same.
                entry.state = EventState::Waiting { not_before: at };
                expired += 1;
            }
            self.ready.insert(address);
        }
        expired
    }

    /// Hand out up to `max` events that are waiting for redelivery. Events past their TTL or
    /// out of deliveries are doomed instead. `nonces` supplies one random nonce per lease.
    pub fn hand_out_waiting(
        &mut self,
        now: Millis,
        max: usize,
        policy: &QueuePolicy,
        nonces: &mut impl Iterator<Item = u64>,
        handout: &mut Handout,
    ) -> Vec<(u64, InFlight)> {
        handout.expired_locks += self.process_due(now);
        let mut changed = Vec::new();
        while !handout.is_full(max) {
            let Some(address) = self.ready.pop_first() else {
                break;
            };
            let Some(entry) = self.in_flight.get(&address).copied() else {
                continue;
            };
            let EventState::Waiting { not_before } = entry.state else {
                continue;
            };
            self.timers.remove(&(not_before, address));
            if let Some(doomed) = self.doom_if_due(address, &entry, now, policy) {
                self.doom(doomed, policy, handout, &mut changed);
                continue;
            }
            let Some(nonce) = nonces.next() else {
                self.ready.insert(address);
                break;
            };
            let leased = self.lease(address, entry, now, policy, nonce, handout);
            changed.push((address, leased));
        }
        changed
    }

    /// Hand out new events read at the cursor (in address order, starting at or after the
    /// cursor). Stops after `max` leases; advances the cursor past what it consumed.
    pub fn hand_out_new(
        &mut self,
        events: impl IntoIterator<Item = NewEvent>,
        now: Millis,
        max: usize,
        policy: &QueuePolicy,
        nonces: &mut impl Iterator<Item = u64>,
        handout: &mut Handout,
    ) -> Vec<(u64, InFlight)> {
        let mut changed = Vec::new();
        let mut consumed_to = self.cursor;
        for event in events {
            if event.address < self.cursor {
                // Another receiver took it between our read and this lock.
                continue;
            }
            if handout.is_full(max) {
                break;
            }
            if event.matched {
                let entry = InFlight {
                    len: event.len,
                    publish_time: event.publish_time,
                    delivery_count: 0,
                    state: EventState::DeadLettering,
                };
                if let Some(doomed) = self.doom_if_due(event.address, &entry, now, policy) {
                    self.in_flight.insert(event.address, entry);
                    self.doom(doomed, policy, handout, &mut changed);
                } else {
                    let Some(nonce) = nonces.next() else {
                        break;
                    };
                    let leased = self.lease(event.address, entry, now, policy, nonce, handout);
                    changed.push((event.address, leased));
                }
                self.unread_estimate = self.unread_estimate.saturating_sub(1);
            }
            consumed_to = event.address + u64::from(event.len);
        }
        self.cursor = self.cursor.max(consumed_to);
        changed
    }

    /// Doom the matching events at the cursor that are past their time to live, up to the
    /// first one that is not (the log is in publish order). Hands nothing out.
    pub fn expire_new(
        &mut self,
        events: impl IntoIterator<Item = NewEvent>,
        now: Millis,
        policy: &QueuePolicy,
        handout: &mut Handout,
    ) -> Vec<(u64, InFlight)> {
        let mut changed = Vec::new();
        let mut consumed_to = self.cursor;
        for event in events {
            if event.address < self.cursor {
                continue;
            }
            if event.matched {
                if now.saturating_sub(event.publish_time) <= policy.time_to_live {
                    break;
                }
                self.in_flight.insert(
                    event.address,
                    InFlight {
                        len: event.len,
                        publish_time: event.publish_time,
                        delivery_count: 0,
                        state: EventState::DeadLettering,
                    },
                );
                let doomed = Doomed {
                    address: event.address,
                    len: event.len,
                    publish_time: event.publish_time,
                    delivery_attempts: 0,
                    reason: DeadLetterReason::TimeToLiveExceeded,
                    last_attempt: None,
                };
                self.doom(doomed, policy, handout, &mut changed);
                self.unread_estimate = self.unread_estimate.saturating_sub(1);
            }
            consumed_to = event.address + u64::from(event.len);
        }
        self.cursor = self.cursor.max(consumed_to);
        changed
    }

    /// Doom the waiting events that are past their time to live. Hands nothing out.
    pub fn expire_waiting(
        &mut self,
        now: Millis,
        policy: &QueuePolicy,
        handout: &mut Handout,
    ) -> Vec<(u64, InFlight)> {
        handout.expired_locks += self.process_due(now);
        let stale: Vec<(u64, InFlight)> = self
            .ready
            .iter()
            .filter_map(|address| self.in_flight.get(address).map(|e| (*address, *e)))
            .filter(|(_, entry)| now.saturating_sub(entry.publish_time) > policy.time_to_live)
            .collect();
        let mut changed = Vec::new();
        for (address, entry) in stale {
            self.ready.remove(&address);
            let doomed = Doomed {
                address,
                len: entry.len,
                publish_time: entry.publish_time,
                delivery_attempts: entry.delivery_count,
                reason: DeadLetterReason::TimeToLiveExceeded,
                last_attempt: None,
            };
            self.doom(doomed, policy, handout, &mut changed);
        }
        changed
    }

    fn doom_if_due(
        &self,
        address: u64,
        entry: &InFlight,
        now: Millis,
        policy: &QueuePolicy,
    ) -> Option<Doomed> {
        let reason = if now.saturating_sub(entry.publish_time) > policy.time_to_live {
            DeadLetterReason::TimeToLiveExceeded
        } else if entry.delivery_count >= policy.max_delivery_count {
            DeadLetterReason::MaxDeliveryCountExceeded
        } else {
            return None;
        };
        Some(Doomed {
            address,
            len: entry.len,
            publish_time: entry.publish_time,
            delivery_attempts: entry.delivery_count,
            reason,
            last_attempt: None,
        })
    }

    /// Doomed events are held as `DeadLettering` when a dead-letter topic is set (the caller
    /// appends them there, then calls `finish_dead_letter`), else dropped at once.
    fn doom(
        &mut self,
        doomed: Doomed,
        policy: &QueuePolicy,
        handout: &mut Handout,
        changed: &mut Vec<(u64, InFlight)>,
    ) {
        if policy.dead_letter_topic.is_some() {
            if let Some(entry) = self.in_flight.get_mut(&doomed.address) {
                entry.state = EventState::DeadLettering;
                changed.push((doomed.address, *entry));
            }
        } else {
            self.remove(doomed.address);
        }
        handout.doomed.push(doomed);
    }

    fn lease(
        &mut self,
        address: u64,
        entry: InFlight,
        now: Millis,
        policy: &QueuePolicy,
        nonce: u64,
        handout: &mut Handout,
    ) -> InFlight {
        let delivery_count = entry.delivery_count + 1;
        let leased = InFlight {
            delivery_count,
            state: EventState::Locked {
                deadline: now + policy.lock_duration,
                nonce,
            },
            ..entry
        };
        self.set(address, leased);
        handout.leased_bytes += u64::from(entry.len);
        handout.leases.push(Lease {
            address,
            len: entry.len,
            publish_time: entry.publish_time,
            token: LockToken {
                owner: self.owner,
                subscription: self.id,
                address,
                delivery_count,
                nonce,
            },
        });
        leased
    }

    /// Check that `token` holds a live lock on an event of this subscription.
    pub fn check_lock(
        &mut self,
        token: &LockToken,
        now: Millis,
    ) -> Result<InFlight, LockTokenError> {
        if token.subscription != self.id {
            return Err(LockTokenError::WrongSubscription);
        }
        if token.owner != self.owner {
            return Err(LockTokenError::Lost);
        }
        self.process_due(now);
        match self.in_flight.get(&token.address) {
            Some(
                entry @ InFlight {
                    state: EventState::Locked { nonce, .. },
                    ..
                },
            ) if *nonce == token.nonce && entry.delivery_count == token.delivery_count => {
                Ok(*entry)
            }
            _ => Err(LockTokenError::Lost),
        }
    }

    /// Apply a settle action to a locked event (checked by `check_lock`). Returns the new
    /// entry (`None`: removed) and, for a reject, the doomed event.
    pub fn settle(
        &mut self,
        address: u64,
        entry: InFlight,
        action: SettleAction,
        now: Millis,
        policy: &QueuePolicy,
    ) -> (Option<InFlight>, Option<Doomed>) {
        match action {
            SettleAction::Acknowledge => {
                self.remove(address);
                (None, None)
            }
            SettleAction::Release { delay } => {
                let released = InFlight {
                    state: EventState::Waiting {
                        not_before: now + delay,
                    },
                    ..entry
                };
                self.set(address, released);
                if delay <= 0 {
                    self.process_due(now);
                }
                (Some(released), None)
            }
            SettleAction::RenewLock => {
                let EventState::Locked { nonce, .. } = entry.state else {
                    return (Some(entry), None);
                };
                let renewed = InFlight {
                    state: EventState::Locked {
                        deadline: now + policy.lock_duration,
                        nonce,
                    },
                    ..entry
                };
                self.set(address, renewed);
                (Some(renewed), None)
            }
            SettleAction::Reject | SettleAction::DeadLetter { .. } => {
                let (reason, last_attempt) = match action {
                    SettleAction::DeadLetter {
                        reason,
                        last_attempt,
                    } => (reason, Some(last_attempt)),
                    _ => (DeadLetterReason::Rejected, None),
                };
                let doomed = Doomed {
                    address,
                    len: entry.len,
                    publish_time: entry.publish_time,
                    delivery_attempts: entry.delivery_count,
                    reason,
                    last_attempt,
                };
                if policy.dead_letter_topic.is_some() {
                    let held = InFlight {
                        state: EventState::DeadLettering,
                        ..entry
                    };
                    self.set(address, held);
                    (Some(held), Some(doomed))
                } else {
                    self.remove(address);
                    (None, Some(doomed))
                }
            }
        }
    }

    /// The dead-letter topic has the event: forget it.
    pub fn finish_dead_letter(&mut self, address: u64) -> bool {
        matches!(
            self.in_flight.get(&address),
            Some(InFlight {
                state: EventState::DeadLettering,
                ..
            })
        ) && self.remove(address).is_some()
    }

    /// Dead-lettering failed: make the event available again (at once: the failure was ours).
    pub fn abandon_dead_letter(&mut self, address: u64, now: Millis) {
        if let Some(entry) = self.in_flight.get(&address).copied()
            && entry.state == EventState::DeadLettering
        {
            self.set(
                address,
                InFlight {
                    state: EventState::Waiting { not_before: now },
                    ..entry
                },
            );
            self.process_due(now);
        }
    }

    /// Drop everything at or past `end` (events lost with an unsynced log tail) and move the
    /// cursor back to it if needed.
    pub fn clamp_to(&mut self, start: u64, end: u64) {
        let lost: Vec<u64> = self.in_flight.range(end..).map(|(a, _)| *a).collect();
        for address in lost {
            self.remove(address);
        }
        self.cursor = self.cursor.clamp(start, end);
    }

    /// Next sequence number, for a journal record about to be written (see `journal.rs`).
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: Millis = 60_000;

    fn policy(dead_letter: bool) -> QueuePolicy {
        QueuePolicy {
            lock_duration: LOCK,
            max_delivery_count: 2,
            time_to_live: 3_600_000,
            dead_letter_topic: dead_letter.then(|| "dead".to_string()),
        }
    }

    fn event(address: u64, matched: bool) -> NewEvent {
        NewEvent {
            address,
            len: 10,
            publish_time: 0,
            matched,
        }
    }

    fn receive(
        state: &mut SubscriptionState,
        events: &[NewEvent],
        now: Millis,
        p: &QueuePolicy,
    ) -> Handout {
        let mut handout = Handout::default();
        let mut nonces = 1u64..;
        state.hand_out_waiting(now, 10, p, &mut nonces, &mut handout);
        state.hand_out_new(
            events.iter().copied(),
            now,
            10,
            p,
            &mut nonces,
            &mut handout,
        );
        handout
    }

    #[test]
    fn new_events_are_locked_with_delivery_count_one_and_the_cursor_moves_past_them() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 0);
        let handout = receive(
            &mut state,
            &[event(0, true), event(10, false), event(20, true)],
            0,
            &policy(false),
        );
        assert_eq!(handout.leases.len(), 2);
        assert!(handout.leases.iter().all(|l| l.token.delivery_count == 1));
        assert_eq!(state.cursor, 30);
        assert_eq!(state.next_due(), Some(LOCK));
    }

    #[test]
    fn an_expired_lock_is_handed_out_again_with_a_higher_count() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 0);
        let first = receive(&mut state, &[event(0, true)], 0, &policy(false));
        assert!(
            receive(&mut state, &[], LOCK - 1, &policy(false))
                .leases
                .is_empty()
        );
        let second = receive(&mut state, &[], LOCK, &policy(false));
        assert_eq!(second.expired_locks, 1);
        assert_eq!(second.leases[0].token.delivery_count, 2);
        let stale = first.leases[0].token;
        assert_eq!(state.check_lock(&stale, LOCK), Err(LockTokenError::Lost));
    }

    #[test]
    fn the_delivery_after_the_last_allowed_one_is_doomed() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 0);
        receive(&mut state, &[event(0, true)], 0, &policy(true));
        receive(&mut state, &[], LOCK, &policy(true));
        let third = receive(&mut state, &[], 2 * LOCK, &policy(true));
        assert!(third.leases.is_empty());
        assert_eq!(
            third.doomed[0].reason,
            DeadLetterReason::MaxDeliveryCountExceeded
        );
        assert_eq!(third.doomed[0].delivery_attempts, 2);
        assert!(state.finish_dead_letter(0));
        assert_eq!(state.in_flight_count(), 0);
    }

    #[test]
    fn a_token_of_another_subscription_is_refused() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 0);
        let handout = receive(&mut state, &[event(0, true)], 0, &policy(false));
        let mut foreign = handout.leases[0].token;
        foreign.subscription = 2;
        assert_eq!(
            state.check_lock(&foreign, 0),
            Err(LockTokenError::WrongSubscription)
        );
        let mut guessed = handout.leases[0].token;
        guessed.nonce ^= 1;
        assert_eq!(state.check_lock(&guessed, 0), Err(LockTokenError::Lost));
    }

    #[test]
    fn a_token_of_another_owner_is_refused_as_lost() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 3);
        let handout = receive(&mut state, &[event(0, true)], 0, &policy(false));
        let issued = handout.leases[0].token;
        assert_eq!(issued.owner, 3);
        let foreign = LockToken { owner: 4, ..issued };
        assert_eq!(state.check_lock(&foreign, 0), Err(LockTokenError::Lost));
        assert!(state.check_lock(&issued, 0).is_ok());
    }

    #[test]
    fn the_low_watermark_is_the_oldest_unsettled_event() {
        let mut state = SubscriptionState::new(1, "s".into(), 0, 0);
        let handout = receive(
            &mut state,
            &[event(0, true), event(10, true)],
            0,
            &policy(false),
        );
        assert_eq!(state.low_watermark(), 0);
        let token = handout.leases[0].token;
        let entry = state.check_lock(&token, 1).unwrap();
        state.settle(0, entry, SettleAction::Acknowledge, 1, &policy(false));
        assert_eq!(state.low_watermark(), 10);
    }
}
