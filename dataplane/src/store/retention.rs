//! Background upkeep of the store: fsync under the `Interval` policy, the time-to-live sweep
//! (events no subscription can deliver any more are dead-lettered or dropped, so cursors move
//! on even when nobody receives), deleting segments that every served subscription is past
//! and that are older than the topic's retention, and deleting what the configuration removed
//! once retention has passed: the state of a removed subscription, the files of a removed
//! topic. Never sooner, so that a configuration mistake, fixed, destroys nothing.

use super::Inner;
use super::clock::Millis;
use super::journal;
use super::queue;
use super::subscription::{Doomed, Handout, NewEvent};
use super::topic::{Subscription, Topic};
use super::{FsyncPolicy, StoreError};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How much of the log the sweep reads per subscription per pass.
const SWEEP_BYTES: usize = 1 << 20;

/// The longest retention a topic can have (`eventRetentionInDays` ≤ 7): what is assumed for
/// a topic on disk whose configuration this process has never seen.
const MAX_RETENTION: Millis = 7 * 24 * 3600 * 1000;

/// Fsync dirty topics every interval while the policy is `Interval`.
pub async fn fsync_task(inner: Weak<Inner>) {
    loop {
        let Some(store) = inner.upgrade() else { return };
        let (policy, interval) = store.fsync_policy();
        {
            let shutdown = store.stopped.stopped();
            tokio::pin!(shutdown);
            if store.is_closing() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown => return,
            }
        }
        drop(store);
        if policy != FsyncPolicy::Interval {
            continue;
        }
        let Some(store) = inner.upgrade() else { return };
        for topic in store.all_topics() {
            let committer = Arc::clone(&topic.committer);
            // A failed fsync is counted and logged (rate-limited) by the committer.
            let synced = tokio::task::spawn_blocking(move || committer.sync_if_dirty()).await;
            if let Err(error) = synced {
                tracing::error!(topic = %topic.name, %error, "interval fsync task failed");
            }
        }
    }
}

/// Sweep and delete every `period`.
pub async fn retention_task(inner: Weak<Inner>, period: Duration) {
    loop {
        let Some(store) = inner.upgrade() else { return };
        {
            let shutdown = store.stopped.stopped();
            tokio::pin!(shutdown);
            if store.is_closing() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = shutdown => return,
            }
        }
        if let Err(error) = run_once(&store).await {
            tracing::warn!(%error, "retention pass failed");
        }
    }
}

/// One pass over every topic.
pub async fn run_once(inner: &Arc<Inner>) -> Result<(), StoreError> {
    for topic in inner.served_topics() {
        let subscriptions: Vec<Arc<Subscription>> = topic.served.load().values().cloned().collect();
        for subscription in &subscriptions {
            sweep_expired(inner, &topic, subscription).await?;
        }
        delete_segments(&topic).await?;
        forget_retired_subscriptions(inner, &topic).await?;
    }
    for topic in inner.unserved_topics() {
        delete_removed_topic(inner, &topic).await?;
    }
    Ok(())
}

/// Forget the state of the topic's subscriptions that the configuration removed longer than
/// the topic's retention ago.
async fn forget_retired_subscriptions(
    inner: &Arc<Inner>,
    topic: &Arc<Topic>,
) -> Result<(), StoreError> {
    let retention = topic.retention.load(Ordering::Relaxed).min(MAX_RETENTION);
    let (inner, topic) = (Arc::clone(inner), Arc::clone(topic));
    tokio::task::spawn_blocking(move || {
        let _lifecycle = inner.lifecycle.lock();
        if !topic.is_served.load(Ordering::Acquire) {
            // Its files go as a whole (`delete_removed_topic`).
            return Ok(Vec::new());
        }
        topic.forget_retired(retention)
    })
    .await
    .map_err(io::Error::other)??;
    Ok(())
}

/// Delete the files of a topic the configuration no longer has, once its newest event is past
/// its retention (the last retention it was served with; the longest possible if it was not
/// served since the process started).
async fn delete_removed_topic(inner: &Arc<Inner>, topic: &Arc<Topic>) -> Result<(), StoreError> {
    let retention = topic.retention.load(Ordering::Relaxed).min(MAX_RETENTION);
    let Some(newest) = topic.log.newest_activity() else {
        return Ok(());
    };
    if topic.clock.now().saturating_sub(newest) <= retention {
        return Ok(());
    }
    let (inner, name) = (Arc::clone(inner), topic.name.clone());
    let deleted = tokio::task::spawn_blocking(move || inner.delete_topic_files(&name))
        .await
        .map_err(io::Error::other)??;
    if deleted {
        tracing::info!(topic = %topic.name, "deleted the files of a topic removed from the configuration: its newest event is past retention");
    }
    Ok(())
}

/// Delete the segments every served subscription is past and that are older than retention.
pub async fn delete_segments(topic: &Arc<Topic>) -> Result<usize, StoreError> {
    let before = topic.low_watermark();
    let retention = topic.retention.load(Ordering::Relaxed);
    let published_by: Millis = topic.clock.now().saturating_sub(retention);
    let log = Arc::clone(&topic.log);
    let deleted = tokio::task::spawn_blocking(move || log.delete_segments(before, published_by))
        .await
        .map_err(io::Error::other)??;
    if deleted > 0 {
        tracing::info!(topic = %topic.name, deleted, "deleted log segments past retention");
        topic
            .metrics
            .store_bytes
            .with_label_values(&[topic.name.as_str()])
            .set(i64::try_from(topic.log.bytes_on_disk()).unwrap_or(i64::MAX));
    }
    Ok(deleted)
}

/// Dead-letter (or drop) the events at a subscription's cursor that are past its time to
/// live, and waiting events past it, without handing anything out.
pub async fn sweep_expired(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
) -> Result<(), StoreError> {
    let config = subscription.config.load();
    let policy = &config.policy;
    let cursor = subscription.state.lock().cursor;
    if cursor >= topic.log.end() {
        return sweep_waiting(inner, topic, subscription).await;
    }
    let log = Arc::clone(&topic.log);
    let chunk = tokio::task::spawn_blocking(move || log.read_chunk(cursor, SWEEP_BYTES))
        .await
        .map_err(io::Error::other)??;
    let (handout, commit) = {
        let mut state = subscription.state.lock();
        let before = state.cursor;
        state.cursor = state.cursor.max(chunk.start);
        let mut handout = Handout::default();
        let events = chunk.events().map(|event| NewEvent {
            address: event.address,
            len: event.total_len,
            publish_time: event.publish_time,
            matched: event.matched(subscription.id),
        });
        let changed = state.expire_new(events, topic.clock.now(), policy, &mut handout);
        if state.cursor == before && handout.doomed.is_empty() {
            (handout, None)
        } else {
            let dropped: Vec<u64> = if policy.dead_letter_topic.is_none() {
                handout.doomed.iter().map(|d| d.address).collect()
            } else {
                Vec::new()
            };
            let mut buffer = Vec::new();
            journal::upsert_record(&mut state, &changed, &mut buffer);
            if !dropped.is_empty() {
                journal::remove_record(&mut state, &dropped, &mut buffer);
            }
            subscription.update_pending(&state);
            let commit = topic
                .committer
                .submit(&[], &buffer)
                .ok_or(StoreError::ShuttingDown)?;
            (handout, Some(commit))
        }
    };
    if let Some(commit) = commit {
        super::topic::wait(commit).await?;
    }
    subscription
        .metrics
        .lock_expiries
        .inc_by(handout.expired_locks);
    let json_of = |_: usize, doomed: &Doomed| {
        chunk
            .events()
            .find(|e| e.address == doomed.address)
            .map(|e| e.json.to_vec())
    };
    queue::dead_letter_or_drop(inner, topic, subscription, policy, &handout.doomed, json_of)
        .await?;
    sweep_waiting(inner, topic, subscription).await
}

/// Waiting (released or expired) events past their time to live.
async fn sweep_waiting(
    inner: &Inner,
    topic: &Arc<Topic>,
    subscription: &Arc<Subscription>,
) -> Result<(), StoreError> {
    let config = subscription.config.load();
    let policy = &config.policy;
    let (handout, commit) = {
        let mut state = subscription.state.lock();
        let mut handout = Handout::default();
        let changed = state.expire_waiting(topic.clock.now(), policy, &mut handout);
        if handout.doomed.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        if policy.dead_letter_topic.is_none() {
            let dropped: Vec<u64> = handout.doomed.iter().map(|d| d.address).collect();
            journal::remove_record(&mut state, &dropped, &mut buffer);
        } else {
            journal::upsert_record(&mut state, &changed, &mut buffer);
        }
        subscription.update_pending(&state);
        let commit = topic.committer.submit(&[], &buffer);
        (handout, commit)
    };
    if let Some(commit) = commit {
        super::topic::wait(commit).await?;
    }
    subscription
        .metrics
        .lock_expiries
        .inc_by(handout.expired_locks);
    queue::dead_letter_or_drop(
        inner,
        topic,
        subscription,
        policy,
        &handout.doomed,
        |_, _| None,
    )
    .await
}
