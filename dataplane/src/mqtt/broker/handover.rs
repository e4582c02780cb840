//! A session moving between pods: a CONNECT on another pod claims the client id, and the pod
//! holding its session hands it over (`hand_over`): its connection ends with 0x8E, exactly as
//! a take-over on one pod, and the session (subscriptions, undelivered QoS 1/2 messages)
//! travels as a `persist::StoredSession` that the claiming pod `adopt`s.
//!
//! Wills stay where the old connection was: published there when the take-over ends the
//! session (clean start, another identity), discarded when the session is resumed, as on one
//! pod. The claiming pod learns the last lifecycle sequence number of the session, so its own
//! events number above it.

use super::Broker;
use super::stored::stored_session;
use crate::mqtt::persist::{self, StoredSession};
use crate::mqtt::session::Session;
use std::sync::Arc;

/// What this pod answers a claim for a client id.
#[derive(Debug, Default, PartialEq)]
pub struct Handover {
    /// Sessions of the claim's authentication name connected here (after the hand-over).
    pub connected_for_name: u32,
    /// The session was connected here (the claim takes a connected session over: not a new
    /// one for the per-name limit).
    pub was_connected: bool,
    /// The lifecycle sequence number of the session's last event here (0: none).
    pub last_sequence: u64,
    /// The session, when the claim resumes it (same identity, no clean start).
    pub session: Option<StoredSession>,
}

impl Broker {
    /// Another pod claims `client_id` for a CONNECT of `authentication_name`: end the session's
    /// connection here (0x8E), remove the session, and hand it over unless the claim starts
    /// clean or comes from another identity.
    pub fn hand_over(
        &self,
        client_id: &str,
        authentication_name: &str,
        clean_start: bool,
    ) -> Handover {
        let mut router = self.state.lock();
        let Some(session) = router.sessions.get(client_id).cloned() else {
            return Handover {
                connected_for_name: connected(&router.connected_by_name, authentication_name),
                ..Handover::default()
            };
        };
        let (old, pending_will) = {
            let mut state = session.state.lock();
            (state.attachment.take(), state.pending_will.take())
        };
        if old.is_some() {
            router.count_connected(&session.authentication_name, -1);
        }
        let resumed = session.authentication_name == authentication_name && !clean_start;
        let stored = resumed.then(|| {
            let state = session.state.lock();
            stored_session(&session, &state, persist::now())
        });
        Self::remove_locked(&mut router, &session, &self.metrics);
        self.note_interest(&router);
        let connected_for_name = connected(&router.connected_by_name, authentication_name);
        drop(router);
        let floor = session.state.lock().sequence_floor;
        let last_sequence = old.as_ref().map_or(floor, |old| {
            self.disconnect_sequence(old.connection_id, floor)
        });
        let was_connected = old.is_some() && session.authentication_name == authentication_name;
        if let Some(old) = old {
            old.kick(!resumed);
        }
        if let Some(will) = pending_will
            && !resumed
        {
            self.publish_will(will.message, &session.authentication_name, client_id);
        }
        Handover {
            connected_for_name,
            was_connected,
            last_sequence,
            session: stored,
        }
    }

    /// Take a session handed over by another pod, detached, for the CONNECT about to attach
    /// to it (a session of the same client id here is replaced: the one handed over is the
    /// latest). It is not set to expire: the attach follows at once, and a session left
    /// detached (the attach refused) is removed by the caller through `discard_adopted`.
    pub fn adopt(self: &Arc<Self>, stored: StoredSession, last_sequence: u64) {
        let session = Arc::new(Session::new(
            stored.client_id.clone(),
            stored.authentication_name.clone(),
        ));
        {
            let mut router = self.state.lock();
            if let Some(existing) = router.sessions.get(&stored.client_id).cloned() {
                Self::remove_locked(&mut router, &existing, &self.metrics);
            }
            router
                .sessions
                .insert(stored.client_id.clone(), session.clone());
            self.metrics.sessions.inc();
        }
        {
            let mut state = session.state.lock();
            state.expiry_interval = stored.expiry_interval;
            state.sequence_floor = last_sequence;
        }
        self.fill_session(&session, stored);
        session.state.lock().detached_at = Some(persist::now());
    }

    /// An adopted session whose CONNECT was refused after all: gone, as if never adopted.
    pub fn discard_adopted(&self, client_id: &str) {
        let session = self.state.lock().sessions.get(client_id).cloned();
        if let Some(session) = session {
            self.remove_if_detached(&session);
        }
    }

    /// The sessions a stopping pod hands to its peers: every one that outlives its connection
    /// (expiry above 0) and has none now (the listeners ended them first).
    pub fn sessions_to_hand_off(&self) -> Vec<StoredSession> {
        let router = self.state.lock();
        let now = persist::now();
        router
            .sessions
            .values()
            .filter_map(|session| {
                let state = session.state.lock();
                (state.expiry_interval > 0 && state.attachment.is_none())
                    .then(|| stored_session(session, &state, now))
            })
            .collect()
    }

    /// A peer keeps these sessions now: gone from here, with a will still waiting for its
    /// delay (the session goes on elsewhere, as if resumed).
    pub fn handed_off(&self, client_ids: &[String]) {
        let mut router = self.state.lock();
        for client_id in client_ids {
            let Some(session) = router.sessions.get(client_id).cloned() else {
                continue;
            };
            {
                let mut state = session.state.lock();
                if state.attachment.is_some() {
                    // A client came back meanwhile: it stays here.
                    continue;
                }
                state.pending_will = None;
            }
            Self::remove_locked(&mut router, &session, &self.metrics);
        }
        self.note_interest(&router);
    }

    /// Sessions a stopping peer handed over: kept detached until their clients come back (a
    /// claim finds them here) or they expire. One already here stays as it is.
    pub fn take_handed_off(self: &Arc<Self>, sessions: Vec<StoredSession>) -> usize {
        let now = persist::now();
        sessions
            .into_iter()
            .map(|session| usize::from(self.restore_session(session, now)))
            .sum()
    }

    /// The lifecycle sequence number the disconnection of `connection_id` gets here.
    fn disconnect_sequence(&self, connection_id: u64, floor: u64) -> u64 {
        self.events.as_ref().map_or(0, |events| {
            events.lifecycle.sequence.disconnected(connection_id, floor)
        })
    }
}

fn connected(by_name: &std::collections::HashMap<String, usize>, name: &str) -> u32 {
    by_name.get(name).copied().unwrap_or(0) as u32
}
