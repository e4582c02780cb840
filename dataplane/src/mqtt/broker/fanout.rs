//! Subscriptions and fan-out: the subscription trie's changes, and a published message's
//! way to every matching session (under the router lock: collect the targets; after it:
//! enqueue, each under its session's lock) and into the retained store.

use super::{
    Broker, NewSubscription, Origin, Published, RouterState, Subscriber, WAKE_AT_ONCE_UP_TO, split,
};
use crate::mqtt::codec::{Message, QoS};
use crate::mqtt::metrics::MqttMetrics;
use crate::mqtt::outbox::Outbox;
use crate::mqtt::peers::ForwardPlan;
use crate::mqtt::peers::wire::RetainedUpdate;
use crate::mqtt::session::{Delivery, Enqueued, Queued, Session};
use std::num::NonZeroU32;
use std::sync::Arc;

impl Broker {
    /// Add (or replace) a subscription; whether it existed before, and the retained
    /// messages it should receive now.
    pub fn subscribe(&self, session: &Arc<Session>, new: NewSubscription) -> (bool, Vec<Message>) {
        let mut router = self.state.lock();
        let key = (new.share_group.clone(), session.client_id.clone());
        let existed = router
            .trie
            .insert(
                &new.filter,
                key,
                Subscriber {
                    session: session.clone(),
                    options: new.options,
                    filter: new.filter.as_str().to_string(),
                    subscription_id: new.subscription_id,
                },
            )
            .is_some();
        if !existed {
            self.metrics.subscriptions.inc();
            router
                .interest
                .add((new.share_group.clone(), new.filter.as_str().to_string()));
            self.note_interest(&router);
        }
        // Retained messages go to new, non-shared subscriptions (retain handling 0 and 1).
        let send_retained = new.share_group.is_none()
            && match new.options.retain_handling {
                0 => true,
                1 => !existed,
                _ => false,
            };
        let retained = if send_retained {
            router
                .retained
                .values()
                .filter(|m| new.filter.matches(&m.topic))
                .map(|m| {
                    let mut m = m.clone();
                    m.qos = m.qos.min(new.options.qos);
                    m
                })
                .collect()
        } else {
            Vec::new()
        };
        drop(router);
        let mut state = session.state.lock();
        state
            .subscriptions
            .insert(new.raw, new.options, new.subscription_id);
        (existed, retained)
    }

    /// Remove a subscription by the filter the client wrote; whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, raw: &str) -> bool {
        let mut router = self.state.lock();
        let removed = Self::unsubscribe_locked(&mut router, session, raw, &self.metrics);
        self.note_interest(&router);
        removed
    }

    /// Tell `mqtt::peer_service` when this pod's interest changed.
    pub(super) fn note_interest(&self, router: &RouterState) {
        let version = router.interest.version();
        self.interest_changes.send_if_modified(|told| {
            let changed = *told != version;
            *told = version;
            changed
        });
    }

    pub(super) fn unsubscribe_locked(
        router: &mut RouterState,
        session: &Arc<Session>,
        raw: &str,
        metrics: &MqttMetrics,
    ) -> bool {
        let Ok(Some((group, filter))) = split(raw) else {
            return false;
        };
        let key = (group, session.client_id.clone());
        let removed = router.trie.remove(&filter, &key).is_some();
        if removed {
            metrics.subscriptions.dec();
            router
                .interest
                .remove(&(key.0, filter.as_str().to_string()));
        }
        let mut state = session.state.lock();
        state.subscriptions.remove(raw);
        removed
    }

    /// Route an (authorized) message to every matching subscription and keep it if retained.
    pub fn publish(&self, message: Message, publisher: &str) -> Published {
        let mut outbox = Outbox::default();
        let mut published = self.publish_batched(message, publisher, &mut outbox);
        let congested = outbox.deliver(self.limits.queue, &self.metrics);
        published.congested.extend(congested);
        published
    }

    /// [`Broker::publish`] within a connection's batch of packets: a message for more than
    /// `WAKE_AT_ONCE_UP_TO` sessions (or any message once the batch has deferred one, to keep
    /// their order) is left in `outbox` for the caller to deliver when the batch is handled.
    pub fn publish_batched(
        &self,
        message: Message,
        publisher: &str,
        outbox: &mut Outbox,
    ) -> Published {
        self.publish_from(message, publisher, outbox, Origin::Here { acks: None })
    }

    /// [`Broker::publish_batched`] from `origin`: a message published here also goes to the
    /// peers with matching interest; one forwarded by a peer only to this pod's sessions.
    pub fn publish_from(
        &self,
        message: Message,
        publisher: &str,
        outbox: &mut Outbox,
        origin: Origin<'_>,
    ) -> Published {
        // Made before the router lock is taken: with many publishers, every instruction under
        // it is waited for by the others (100 → 1 lost a fifth of its rate to an allocation and
        // the deliveries built under it).
        let message = Arc::new(message);
        // The peers' interest is read under its own lock, before the router's.
        let remote = match (origin, &self.peers) {
            (Origin::Here { .. }, Some(peers)) => Some(peers.targets(&message.topic)),
            _ => None,
        };
        let (deliver_plain, chosen_shares) = match origin {
            Origin::Here { .. } => (true, None),
            Origin::Peer { plain, shares } => (plain, Some(shares)),
        };
        let mut plan = remote
            .as_ref()
            .map(ForwardPlan::from_targets)
            .unwrap_or_default();
        let mut router = self.state.lock();
        let mut retained_update = None;
        if message.retain && chosen_shares.is_none() {
            let had = if message.payload.is_empty() {
                router.retained.remove(&*message.topic).is_some()
            } else {
                router
                    .retained
                    .insert(message.topic.to_string(), Message::clone(&message))
                    .is_some()
            };
            match (had, message.payload.is_empty()) {
                (false, false) => self.metrics.retained.inc(),
                (true, true) => self.metrics.retained.dec(),
                _ => {}
            }
            if let Some(peers) = &self.peers {
                retained_update = Some(RetainedUpdate {
                    version: peers.retained_here(&message.topic),
                    message: Message::clone(&message),
                });
            }
        }
        // One copy per session (the highest QoS of its matching filters, every matching
        // subscription's id); one member per share. Visited in place under the router lock:
        // no key, filter or session `Arc` is copied per message.
        let mut direct: Vec<Target<'_>> = Vec::new();
        let mut shares: Vec<((&str, &str), Vec<&Subscriber>)> = Vec::new();
        // Disjoint borrows: the trie is read while share turns move.
        let state = &mut *router;
        let share_turn = &mut state.share_turn;
        state.trie.for_each_match(
            &message.topic,
            |(group, client_id), subscriber| match group {
                None => {
                    if deliver_plain && !(subscriber.options.no_local && client_id == publisher) {
                        direct.push(Target::of(subscriber));
                    }
                }
                Some(group) => {
                    let share = (group.as_str(), subscriber.filter.as_str());
                    match shares.iter_mut().find(|(key, _)| *key == share) {
                        Some((_, members)) => members.push(subscriber),
                        None => shares.push((share, vec![subscriber])),
                    }
                }
            },
        );
        // A session matched by several of its filters gets one copy: sorted by session,
        // its targets are neighbours and merge (cheaper than hashing client ids per target).
        direct.sort_unstable_by_key(|target| target.address());
        direct.dedup_by(|duplicate, kept| {
            if !Arc::ptr_eq(duplicate.session, kept.session) {
                return false;
            }
            kept.how.qos = kept.how.qos.max(duplicate.how.qos);
            kept.how.retain_as_published |= duplicate.how.retain_as_published;
            kept.how.ids.append(&mut duplicate.how.ids);
            true
        });
        let mut targets = direct;
        let shared = !shares.is_empty();
        for ((group, filter), members) in shares {
            if let Some(chosen) = chosen_shares
                && !chosen.iter().any(|(g, f)| g == group && f == filter)
            {
                continue;
            }
            // A share with members on other pods too: its one delivery goes to a pod in
            // turn, this one among them.
            let elsewhere = remote.as_ref().and_then(|remote| {
                remote
                    .shares
                    .iter()
                    .find(|((g, f), _)| g == group && f == filter)
                    .map(|(_, pods)| pods)
            });
            let turn = share_turn
                .entry((group.to_string(), filter.to_string()))
                .or_insert(0);
            if let Some(pods) = elsewhere {
                let at = *turn % (pods.len() + 1);
                if at > 0 {
                    *turn = turn.wrapping_add(1);
                    plan.share(&pods[at - 1], (group.to_string(), filter.to_string()));
                    continue;
                }
            }
            // Prefer connected members, in turn.
            let connected: Vec<&Subscriber> = members
                .iter()
                .copied()
                .filter(|m| m.session.state.lock().attachment.is_some())
                .collect();
            let pool = if connected.is_empty() {
                members
            } else {
                connected
            };
            targets.push(Target::of(pool[*turn % pool.len()]));
            *turn = turn.wrapping_add(1);
        }
        // Shares with members only on other pods.
        if let Some(remote) = &remote {
            for ((group, filter), pods) in &remote.shares {
                if state.interest.holds(&(Some(group.clone()), filter.clone())) {
                    continue;
                }
                let turn = share_turn
                    .entry((group.clone(), filter.clone()))
                    .or_insert(0);
                plan.share(&pods[*turn % pods.len()], (group.clone(), filter.clone()));
                *turn = turn.wrapping_add(1);
            }
        }
        if shared {
            // The outbox merges targets in address order.
            targets.sort_by_key(|target| target.address());
        }
        let mut outcome = Published::default();
        // A message for a few sessions wakes them at once: their connections write while the
        // publisher goes on with its batch (1 → 1 keeps both threads busy). A fan-out is
        // handed over after the batch (`Outbox`): one lock and one wake-up per session.
        if targets.len() > WAKE_AT_ONCE_UP_TO || !outbox.is_empty() {
            outbox.add(
                targets
                    .into_iter()
                    .map(|target| (target.session, target.how.queued(&message))),
            );
            drop(router);
            self.forward(&message, plan, retained_update, origin, &mut outcome);
            return outcome;
        }
        // At most `WAKE_AT_ONCE_UP_TO`: on the stack, no allocation per message; the
        // deliveries are made once the router lock is released.
        let mut owned: [Option<(Arc<Session>, How)>; WAKE_AT_ONCE_UP_TO] = Default::default();
        for (slot, target) in owned.iter_mut().zip(targets) {
            *slot = Some((Arc::clone(target.session), target.how));
        }
        drop(router);
        for (session, how) in owned.into_iter().flatten() {
            match session.enqueue_quietly(how.queued(&message), self.limits.queue, &self.metrics) {
                Enqueued::QueuedFirst => session.wake.notify_one(),
                Enqueued::Queued | Enqueued::Dropped => {}
                Enqueued::QueuedCongested => outcome.congested.push(session),
            }
        }
        self.forward(&message, plan, retained_update, origin, &mut outcome);
        outcome
    }

    /// After the router lock: the message to the pods of `plan`, a retained update to every
    /// peer.
    fn forward(
        &self,
        message: &Message,
        plan: ForwardPlan,
        retained_update: Option<RetainedUpdate>,
        origin: Origin<'_>,
        outcome: &mut Published,
    ) {
        let Some(peers) = &self.peers else {
            return;
        };
        if let Some(update) = retained_update {
            peers.broadcast_retained(vec![update]);
        }
        if plan.is_empty() {
            return;
        }
        let ticket = match origin {
            Origin::Here { acks: Some(acks) } if message.qos != QoS::AtMostOnce => {
                let ticket = acks.open(plan.pods.len() as u32);
                outcome.forwarded = Some(ticket.seq);
                Some(ticket)
            }
            _ => None,
        };
        peers.forward(message, plan, ticket);
    }

    /// A peer's retained updates: each newer than what this pod has replaces it (an empty
    /// payload clears the topic). Nothing is delivered: subscribers got the message through
    /// forwarding.
    pub fn apply_retained(&self, updates: Vec<RetainedUpdate>) {
        let Some(peers) = &self.peers else {
            return;
        };
        let mut router = self.state.lock();
        for update in updates {
            let topic = update.message.topic.to_string();
            if !peers.retained_from_peer(&topic, &update.version) {
                continue;
            }
            if update.message.payload.is_empty() {
                router.retained.remove(&topic);
            } else {
                router.retained.insert(topic, update.message);
            }
        }
        self.metrics.retained.set(router.retained.len() as i64);
    }

    /// Every retained message held here, with its version: what a peer whose link just came
    /// up is sent.
    pub fn retained_updates(&self) -> Vec<RetainedUpdate> {
        let Some(peers) = &self.peers else {
            return Vec::new();
        };
        let router = self.state.lock();
        router
            .retained
            .values()
            .map(|message| RetainedUpdate {
                version: peers.retained_version(&message.topic),
                message: message.clone(),
            })
            .collect()
    }
}

/// A session a message goes to (borrowed from the trie, under the router lock), and how.
struct Target<'a> {
    session: &'a Arc<Session>,
    how: How,
}

/// How a message goes to a session.
struct How {
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<NonZeroU32>,
}

impl<'a> Target<'a> {
    fn of(subscriber: &'a Subscriber) -> Self {
        Target {
            session: &subscriber.session,
            how: How {
                qos: subscriber.options.qos,
                retain_as_published: subscriber.options.retain_as_published,
                ids: subscriber.subscription_id.into_iter().collect(),
            },
        }
    }

    fn address(&self) -> usize {
        Arc::as_ptr(self.session) as usize
    }
}

impl How {
    /// This session's delivery of `message`, with the identifiers of its matching
    /// subscriptions.
    fn queued(mut self, message: &Arc<Message>) -> Queued {
        self.ids.sort_unstable();
        self.ids.dedup();
        Queued {
            delivery: Delivery::new(
                Arc::clone(message),
                message.qos.min(self.qos),
                message.retain && self.retain_as_published,
            ),
            subscription_ids: self.ids,
        }
    }
}
