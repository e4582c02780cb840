//! The broker's state as plain values (`persist::StoredState`) and back: what is written to
//! disk, and what a session handed to another pod will be.

use super::{Broker, NewSubscription, split};
use crate::mqtt::persist::{self, StoredSession, StoredState};
use crate::mqtt::session::Session;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// What outlives a restart (see `persist`): sessions with an expiry, their
    /// subscriptions and undelivered QoS 1/2 messages, and the retained messages.
    pub fn stored_state(&self) -> StoredState {
        let router = self.state.lock();
        let now = persist::now();
        let mut sessions = Vec::new();
        for session in router.sessions.values() {
            let state = session.state.lock();
            if state.expiry_interval == 0 {
                continue;
            }
            sessions.push(stored_session(session, &state, now));
        }
        sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let retained = router
            .retained
            .values()
            .map(|m| {
                let left = m.properties.message_expiry_interval.map(|e| e.get());
                persist::StoredMessage::from_message(m, left)
            })
            .collect();
        StoredState { sessions, retained }
    }

    /// Restore what the last run stored: expired sessions are dropped, the others wait
    /// detached for their client (and expire on time if it does not come back).
    pub fn restore(self: &Arc<Self>, stored: StoredState) -> usize {
        let now = persist::now();
        {
            let mut router = self.state.lock();
            for message in stored.retained {
                let message = message.into_message();
                if router
                    .retained
                    .insert(message.topic.to_string(), message)
                    .is_none()
                {
                    self.metrics.retained.inc();
                }
            }
        }
        let mut restored = 0;
        for stored in stored.sessions {
            restored += usize::from(self.restore_session(stored, now));
        }
        restored
    }

    /// Put one stored session back, detached, unless it has expired or a session of its client
    /// id is here already; whether it was.
    pub(super) fn restore_session(self: &Arc<Self>, stored: StoredSession, now: u64) -> bool {
        let Some(left) = stored.expires_at.checked_sub(now).filter(|l| *l > 0) else {
            return false;
        };
        let session = Arc::new(Session::new(
            stored.client_id.clone(),
            stored.authentication_name.clone(),
        ));
        {
            let mut router = self.state.lock();
            if router.sessions.contains_key(&stored.client_id) {
                return false;
            }
            router
                .sessions
                .insert(stored.client_id.clone(), session.clone());
            self.metrics.sessions.inc();
        }
        session.state.lock().expiry_interval = stored.expiry_interval;
        self.fill_session(&session, stored);
        session.state.lock().detached_at = Some(now);
        self.expire_later(&session, Duration::from_secs(left));
        true
    }

    /// A stored session's subscriptions and messages into `session`.
    pub(super) fn fill_session(&self, session: &Arc<Session>, stored: StoredSession) {
        for (raw, options) in &stored.subscriptions {
            let Ok(Some((share_group, filter))) = split(raw) else {
                continue;
            };
            self.subscribe(
                session,
                NewSubscription {
                    raw: raw.clone(),
                    share_group,
                    filter,
                    options: options.options(),
                    subscription_id: options.subscription_id.and_then(NonZeroU32::new),
                },
            );
        }
        for message in stored.queue {
            session.enqueue(message.into_message(), self.limits.queue, &self.metrics);
        }
    }
}

/// One session as a value (its subscriptions and undelivered QoS 1/2 messages), seen at `now`.
pub(super) fn stored_session(
    session: &Session,
    state: &crate::mqtt::session::SessionState,
    now: u64,
) -> StoredSession {
    let seen = match state.attachment {
        Some(_) => now,
        None => state.detached_at.unwrap_or(now),
    };
    StoredSession {
        client_id: session.client_id.clone(),
        authentication_name: session.authentication_name.clone(),
        expiry_interval: state.expiry_interval,
        expires_at: seen.saturating_add(u64::from(state.expiry_interval)),
        subscriptions: state
            .subscriptions
            .iter()
            .map(|held| {
                let mut stored: persist::StoredOptions = (&held.options).into();
                stored.subscription_id = held.id.map(NonZeroU32::get);
                (held.raw.clone(), stored)
            })
            .collect(),
        queue: persist::undelivered(state),
    }
}
