//! Queue (pull) delivery on top of the subscription state machine: receive with long poll,
//! settle by lock token, and the dead-lettering both can cause. Log reads run on the blocking
//! pool; subscription locks are held only for the in-memory steps, never across an `.await`.

use super::Inner;
use super::clock::{Millis, duration_millis};
use super::dead_letter::{DeadLetter, dead_letter_event};
use super::journal;
use super::lock_token::{self, LockToken};
use super::log::{Chunk, Record};
use super::subscription::{
    Doomed, Handout, InFlight, Lease, NewEvent, QueuePolicy, SettleAction, SubscriptionState,
};
use super::topic::{Subscription, Topic, wait};
use super::{FailedLockToken, LockTokenError, ReceivedEvent, Settle, SettleOutcome, StoreError};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How much of the log one read past the cursor covers.
const CHUNK_BYTES: usize = 256 << 10;
/// How much of the log one receive attempt scans at most (events of other subscriptions are
/// skipped; past this the long poll loop goes on with a fresh attempt).
const SCAN_BUDGET_BYTES: usize = 4 << 20;

/// Long poll: return as soon as events are available, or empty once `max_wait` has passed.
pub async fn receive(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    max_events: usize,
    max_wait: Duration,
) -> Result<Vec<ReceivedEvent>, StoreError> {
    let clock = topic.clock;
    let deadline = clock.now().saturating_add(duration_millis(max_wait));
    // The HTTP layer validates 1-100; the clamp only bounds the work of a bad caller.
    let max_events = max_events.clamp(1, 100);
    loop {
        // Registered before looking, so a publish between the look and the wait wakes us.
        let notified = subscription.notify.notified();
        let shutdown = inner.stopped.stopped();
        tokio::pin!(notified, shutdown);
        notified.as_mut().enable();
        if inner.is_closing() {
            return Err(StoreError::ShuttingDown);
        }
        if !is_served(topic, subscription) {
            return Ok(Vec::new());
        }
        let now = clock.now();
        let config = subscription.config.load();
        let expired = config.expiration.is_some_and(|t| now >= t);
        if !expired {
            let limits = TakeLimits {
                max_events,
                max_bytes: None,
                new_events: true,
                durable_leases: true,
            };
            let nonces = lock_token::nonces(max_events)?.into_iter();
            let (events, more) = take_batch(
                inner,
                topic,
                subscription,
                &config.policy,
                limits,
                nonces,
                received_event,
            )
            .await?;
            if !events.is_empty() {
                return Ok(events);
            }
            if more {
                // Only skipped past events of other subscriptions: keep reading.
                continue;
            }
        }
        let now = clock.now();
        if now >= deadline {
            return Ok(Vec::new());
        }
        // An expired subscription hands nothing out, so its due timers would wake it in vain.
        let next_due = if expired {
            None
        } else {
            subscription.state.lock().next_due()
        };
        let wake = next_due.map_or(deadline, |due| due.clamp(now, deadline));
        tokio::select! {
            () = &mut notified => {}
            () = &mut shutdown => {}
            () = tokio::time::sleep_until(clock.instant_at(wake)) => {}
        }
    }
}

fn is_served(topic: &Topic, subscription: &Arc<Subscription>) -> bool {
    topic
        .served
        .load()
        .get(&subscription.name)
        .is_some_and(|s| Arc::ptr_eq(s, subscription))
}

/// Queue the journal records of a change to `state` (called with its lock held, which keeps
/// one subscription's records in sequence order).
fn record_change(
    topic: &Arc<Topic>,
    state: &mut SubscriptionState,
    upserts: &[(u64, InFlight)],
    removes: &[u64],
    cursor_moved: bool,
) -> Result<Option<oneshot::Receiver<super::commit::CommitResult>>, StoreError> {
    let mut buffer = Vec::new();
    if !upserts.is_empty() || cursor_moved {
        journal::upsert_record(state, upserts, &mut buffer);
    }
    if !removes.is_empty() {
        journal::remove_record(state, removes, &mut buffer);
    }
    if buffer.is_empty() {
        return Ok(None);
    }
    topic
        .committer
        .submit(&[], &buffer)
        .map(Some)
        .ok_or(StoreError::ShuttingDown)
}

fn dropped_addresses(handout: &Handout, from: usize, policy: &QueuePolicy) -> Vec<u64> {
    if policy.dead_letter_topic.is_some() {
        return Vec::new();
    }
    handout.doomed[from..].iter().map(|d| d.address).collect()
}

/// How much one take may lease.
#[derive(Clone, Copy, Debug)]
pub struct TakeLimits {
    pub max_events: usize,
    /// Stop once the leased records hold this many bytes (at least one event is leased).
    pub max_bytes: Option<u64>,
    /// Whether to read new events at the cursor, or only hand out redeliveries.
    pub new_events: bool,
    /// Whether to return only once the leases are durable. A queue receive must (the client
    /// holds lock tokens that must outlive a crash). Push delivery need not: its leases never
    /// leave the process, and the settlement that follows a lease is journaled after it, so a
    /// durable settlement implies a durable lease; a lease lost in a crash only means the
    /// event is attempted again.
    pub durable_leases: bool,
}

/// The queue API's view of a leased event.
fn received_event(lease: &Lease, json: &[u8]) -> Option<ReceivedEvent> {
    Some(ReceivedEvent {
        lock_token: lease.token.encode(),
        delivery_count: lease.token.delivery_count,
        event: raw_event(json)?,
    })
}

/// One attempt: redeliveries first (in address order), then new events from the cursor.
/// `make` turns each lease and its event's stored JSON into what the caller returns; `nonces`
/// supplies one lock nonce per lease. Returns the events and whether more of the log is left
/// to scan.
pub async fn take_batch<T>(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    policy: &QueuePolicy,
    limits: TakeLimits,
    mut nonces: impl Iterator<Item = u64>,
    make: impl Fn(&Lease, &[u8]) -> Option<T>,
) -> Result<(Vec<T>, bool), StoreError> {
    let clock = topic.clock;
    let max_events = limits.max_events;
    let mut handout = match limits.max_bytes {
        Some(bytes) => Handout::with_byte_budget(bytes),
        None => Handout::default(),
    };
    let mut commits = Vec::new();

    // Redeliveries: decided in memory.
    let (cursor, want_more) = {
        let mut state = subscription.state.lock();
        let now = clock.now();
        let changed = state.hand_out_waiting(now, max_events, policy, &mut nonces, &mut handout);
        let dropped = dropped_addresses(&handout, 0, policy);
        commits.extend(record_change(topic, &mut state, &changed, &dropped, false)?);
        subscription.update_pending(&state);
        (
            state.cursor,
            limits.new_events && !handout.is_full(max_events),
        )
    };
    let redelivered = handout.leases.len();
    let doomed_waiting = handout.doomed.len();

    // Read what the leases and dead letters need, and the log at the cursor.
    let wanted: Vec<(u64, u32)> = handout
        .leases
        .iter()
        .map(|l| (l.address, l.len))
        .chain(
            handout
                .doomed
                .iter()
                .filter(|_| policy.dead_letter_topic.is_some())
                .map(|d| (d.address, d.len)),
        )
        .collect();
    let read_cursor = want_more && cursor < topic.log.end();
    let log = Arc::clone(&topic.log);
    let read = (!wanted.is_empty() || read_cursor).then(|| {
        tokio::task::spawn_blocking(move || -> io::Result<_> {
            let mut records = HashMap::new();
            for (address, len) in wanted {
                if let Some(record) = log.read_record(address, len)? {
                    records.insert(address, record);
                }
            }
            let chunk = if read_cursor {
                Some(log.read_chunk(cursor, CHUNK_BYTES)?)
            } else {
                None
            };
            Ok((records, chunk))
        })
    });
    let (records, chunk) = match read {
        // Nothing to read: a receive at the end of the log does not leave the runtime.
        None => (HashMap::new(), None),
        Some(read) => read.await.map_err(io::Error::other)??,
    };

    // New events: decided in memory against what was read, chunk after chunk (a chunk ends
    // at a segment's end) until the batch is full, the log ends or the scan budget is spent.
    let mut chunks = Vec::new();
    let mut next = chunk;
    let mut scanned = 0usize;
    let mut more = false;
    while let Some(chunk) = next.take() {
        let (cursor, full) = {
            let mut state = subscription.state.lock();
            let before = state.cursor;
            if chunk.start > state.cursor {
                // The cursor was in segments deleted while the subscription was not served.
                state.cursor = chunk.start;
            }
            let events = chunk.events().map(|event| NewEvent {
                address: event.address,
                len: event.total_len,
                publish_time: event.publish_time,
                matched: event.matched(subscription.id),
            });
            let doomed_before = handout.doomed.len();
            let changed = state.hand_out_new(
                events,
                clock.now(),
                max_events,
                policy,
                &mut nonces,
                &mut handout,
            );
            let dropped = dropped_addresses(&handout, doomed_before, policy);
            let moved = state.cursor != before;
            if changed.is_empty() && dropped.is_empty() {
                // Only skipped events of other subscriptions: nobody needs to wait for that.
                if moved {
                    let mut buffer = Vec::new();
                    journal::upsert_record(&mut state, &[], &mut buffer);
                    topic.committer.submit_quietly(&buffer);
                }
            } else {
                commits.extend(record_change(topic, &mut state, &changed, &dropped, moved)?);
            }
            subscription.update_pending(&state);
            (state.cursor, handout.is_full(max_events))
        };
        scanned += chunk.len();
        chunks.push(chunk);
        if full || cursor >= topic.log.end() {
            break;
        }
        if scanned >= SCAN_BUDGET_BYTES {
            more = true;
            break;
        }
        let log = Arc::clone(&topic.log);
        let read = tokio::task::spawn_blocking(move || log.read_chunk(cursor, CHUNK_BYTES));
        next = Some(read.await.map_err(io::Error::other)??);
    }

    if limits.durable_leases {
        for commit in commits {
            wait(commit).await?;
        }
    }
    subscription
        .metrics
        .lock_expiries
        .inc_by(handout.expired_locks);

    // The events to return, in the order they were leased.
    let read_at_cursor = chunk_index(&chunks);
    let mut received = Vec::with_capacity(handout.leases.len());
    let mut unreadable = Vec::new();
    for (index, lease) in handout.leases.iter().enumerate() {
        let json = if index < redelivered {
            records
                .get(&lease.address)
                .and_then(|r| r.view())
                .map(|v| v.json)
        } else {
            read_at_cursor.get(&lease.address).copied()
        };
        let Some(json) = json else {
            // A redelivery whose record was found corrupt since it was first handed out
            // (the log quarantined it): its content is lost, so is the event.
            unreadable.push(lease.address);
            continue;
        };
        match make(lease, json) {
            Some(event) => received.push(event),
            None => tracing::error!(
                topic = %topic.name,
                subscription = %subscription.name,
                address = lease.address,
                "a leased event could not be read back; it will be redelivered after its lock"
            ),
        }
    }
    if !unreadable.is_empty() {
        forget_unreadable(topic, subscription, &unreadable, limits.durable_leases).await?;
    }

    let json_of = |index: usize, doomed: &Doomed| {
        if index < doomed_waiting {
            records
                .get(&doomed.address)
                .and_then(Record::view)
                .map(|v| v.json.to_vec())
        } else {
            read_at_cursor
                .get(&doomed.address)
                .map(|json| json.to_vec())
        }
    };
    dead_letter_or_drop(inner, topic, subscription, policy, &handout.doomed, json_of).await?;
    subscription.metrics.received.inc_by(received.len() as u64);
    if !received.is_empty() {
        // Other long polls recompute when to wake up: a new lock deadline may be the earliest.
        subscription.notify.notify_waiters();
    }
    Ok((received, more))
}

/// Forget in-flight events whose records can no longer be read (quarantined as corrupt):
/// nothing is left to deliver or dead-letter. The log has logged and counted the range.
async fn forget_unreadable(
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    addresses: &[u64],
    durable: bool,
) -> Result<(), StoreError> {
    let commit = {
        let mut state = subscription.state.lock();
        for address in addresses {
            state.remove(*address);
        }
        let commit = record_change(topic, &mut state, &[], addresses, false)?;
        subscription.update_pending(&state);
        commit
    };
    tracing::error!(
        topic = %topic.name,
        subscription = %subscription.name,
        events = addresses.len(),
        "in-flight events whose records were found corrupt are forgotten: their content is unreadable"
    );
    if let Some(commit) = commit
        && durable
    {
        wait(commit).await?;
    }
    Ok(())
}

/// The complete events of the chunks read, by address. (A chunk's bytes usually end inside a
/// record that the next chunk starts with: an address is found by the records, not by the
/// byte ranges read.)
fn chunk_index(chunks: &[Chunk]) -> HashMap<u64, &[u8]> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.events().map(|event| (event.address, event.json)))
        .collect()
}

fn raw_event(json: &[u8]) -> Option<Box<RawValue>> {
    let text = std::str::from_utf8(json).ok()?;
    RawValue::from_string(text.to_string()).ok()
}

/// Doomed events (rejected, out of deliveries, past their time to live) leave the
/// subscription: appended to its dead-letter topic when the policy names one, else dropped
/// and counted by reason (the caller has already removed those from the subscription's
/// state). `json_of` gives an event's stored JSON, by its index in `doomed`, when the caller
/// has it at hand; the dead-lettering reads the others from the log.
pub async fn dead_letter_or_drop(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    policy: &QueuePolicy,
    doomed: &[Doomed],
    json_of: impl Fn(usize, &Doomed) -> Option<Vec<u8>>,
) -> Result<(), StoreError> {
    if doomed.is_empty() {
        return Ok(());
    }
    let Some(dead_letter_topic) = &policy.dead_letter_topic else {
        for doomed in doomed {
            topic
                .metrics
                .dropped_events
                .with_label_values(&[
                    topic.name.as_str(),
                    subscription.name.as_str(),
                    doomed.reason.as_str(),
                ])
                .inc();
        }
        return Ok(());
    };
    let doomed = doomed
        .iter()
        .enumerate()
        .map(|(index, doomed)| (*doomed, json_of(index, doomed)))
        .collect();
    dead_letter(inner, topic, subscription, dead_letter_topic, doomed).await
}

/// Append doomed events to the dead-letter topic, then forget them. If the append fails they
/// become available again (and are retried on a later receive).
async fn dead_letter(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    dead_letter_topic: &str,
    doomed: Vec<(Doomed, Option<Vec<u8>>)>,
) -> Result<(), StoreError> {
    // Read what was not read yet (rejections).
    let missing: Vec<(u64, u32)> = doomed
        .iter()
        .filter(|(_, json)| json.is_none())
        .map(|(d, _)| (d.address, d.len))
        .collect();
    let mut read = HashMap::new();
    if !missing.is_empty() {
        let log = Arc::clone(&topic.log);
        read = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let mut read = HashMap::new();
            for (address, len) in missing {
                if let Some(view) = log
                    .read_record(address, len)?
                    .as_ref()
                    .and_then(Record::view)
                {
                    read.insert(address, view.json.to_vec());
                }
            }
            Ok(read)
        })
        .await
        .map_err(io::Error::other)??;
    }
    let now = topic.clock.now();
    let mut events = Vec::with_capacity(doomed.len());
    let mut addresses = Vec::with_capacity(doomed.len());
    let mut reasons = Vec::with_capacity(doomed.len());
    for (doomed, json) in &doomed {
        let Some(json) = json
            .as_deref()
            .or_else(|| read.get(&doomed.address).map(Vec::as_slice))
        else {
            // Gone from disk (retention): nothing left to dead-letter.
            addresses.push(doomed.address);
            continue;
        };
        let facts = DeadLetter {
            reason: doomed.reason,
            delivery_attempts: doomed.delivery_attempts,
            dead_letter_time: now,
            publish_time: doomed.publish_time,
            subscription: &subscription.name,
            last_attempt: doomed.last_attempt,
        };
        match dead_letter_event(json, &facts) {
            Some(event) => events.push(event),
            None => tracing::error!(
                topic = %topic.name,
                subscription = %subscription.name,
                "a stored event is not a JSON object; dropping it instead of dead-lettering"
            ),
        }
        addresses.push(doomed.address);
        reasons.push(doomed.reason);
    }
    let published = if events.is_empty() {
        Ok(())
    } else {
        Box::pin(inner.publish(dead_letter_topic, events)).await
    };
    let commit = {
        let mut state = subscription.state.lock();
        if let Err(error) = &published {
            tracing::error!(
                topic = %topic.name,
                subscription = %subscription.name,
                dead_letter_topic,
                %error,
                "dead-lettering failed; the events stay available"
            );
            let now = topic.clock.now();
            for address in &addresses {
                state.abandon_dead_letter(*address, now);
            }
            None
        } else {
            let finished: Vec<u64> = addresses
                .iter()
                .copied()
                .filter(|a| state.finish_dead_letter(*a))
                .collect();
            let commit = record_change(topic, &mut state, &[], &finished, false)?;
            subscription.update_pending(&state);
            commit
        }
    };
    published?;
    if let Some(commit) = commit {
        wait(commit).await?;
    }
    for reason in reasons {
        topic
            .metrics
            .dead_lettered_events
            .with_label_values(&[
                topic.name.as_str(),
                subscription.name.as_str(),
                reason.as_str(),
            ])
            .inc();
    }
    Ok(())
}

/// Acknowledge, release, reject or renew, per token; durable before it returns.
pub async fn settle(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    action: Settle,
    lock_tokens: &[String],
) -> Result<SettleOutcome, StoreError> {
    let action = match action {
        Settle::Acknowledge => SettleAction::Acknowledge,
        Settle::Release { delay } => SettleAction::Release {
            delay: duration_millis(delay),
        },
        Settle::Reject => SettleAction::Reject,
        Settle::RenewLock => SettleAction::RenewLock,
    };
    let mut outcome = SettleOutcome::default();
    let mut items = Vec::with_capacity(lock_tokens.len());
    let mut texts = Vec::with_capacity(lock_tokens.len());
    for text in lock_tokens {
        match LockToken::decode(text) {
            Some(token) => {
                items.push((token, action));
                texts.push(text);
            }
            None => outcome.failed.push(FailedLockToken {
                lock_token: text.clone(),
                error: LockTokenError::Malformed,
            }),
        }
    }
    let results = settle_tokens(inner, topic, subscription, &items).await?;
    for (text, result) in texts.into_iter().zip(results) {
        match result {
            Ok(()) => outcome.succeeded.push(text.clone()),
            Err(error) => outcome.failed.push(FailedLockToken {
                lock_token: text.clone(),
                error,
            }),
        }
    }
    Ok(outcome)
}

/// Settle each locked event with its own action (push delivery settles a request's events
/// together, each with what its attempt count and age call for). One journal write for all;
/// durable before it returns; then the dead letters. One result per item, in order.
pub async fn settle_tokens(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
    items: &[(LockToken, SettleAction)],
) -> Result<Vec<Result<(), LockTokenError>>, StoreError> {
    let config = subscription.config.load();
    let policy = &config.policy;
    let mut results = Vec::with_capacity(items.len());
    let mut doomed = Vec::new();
    let commit = {
        let mut state = subscription.state.lock();
        let now: Millis = topic.clock.now();
        let expired = state.process_due(now);
        subscription.metrics.lock_expiries.inc_by(expired);
        let mut upserts = Vec::new();
        let mut removes = Vec::new();
        for (token, action) in items {
            match state.check_lock(token, now) {
                Ok(entry) => {
                    let (after, rejected) =
                        state.settle(token.address, entry, *action, now, policy);
                    match after {
                        Some(entry) => upserts.push((token.address, entry)),
                        None => removes.push(token.address),
                    }
                    doomed.extend(rejected);
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        let commit = record_change(topic, &mut state, &upserts, &removes, false)?;
        subscription.update_pending(&state);
        commit
    };
    if let Some(commit) = commit {
        wait(commit).await?;
    }
    let metrics = &subscription.metrics;
    let mut released = false;
    for ((_, action), result) in items.iter().zip(&results) {
        if result.is_err() {
            continue;
        }
        match action {
            SettleAction::Acknowledge => metrics.acknowledged.inc(),
            SettleAction::Release { .. } => {
                metrics.released.inc();
                released = true;
            }
            SettleAction::Reject | SettleAction::DeadLetter { .. } => metrics.rejected.inc(),
            SettleAction::RenewLock => {}
        }
    }
    if released {
        // Released events (or a new deadline to wait for) are there for long polls.
        subscription.notify.notify_waiters();
    }
    dead_letter_or_drop(inner, topic, subscription, policy, &doomed, |_, _| None).await?;
    Ok(results)
}
