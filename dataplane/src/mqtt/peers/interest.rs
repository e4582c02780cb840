//! Subscription interest between pods: which topic filters this pod's sessions hold (counted,
//! with the changes not yet told to the peers), and which filters each peer holds (matched
//! against a published topic to find the pods a message must be forwarded to).
//!
//! An interest is a filter with its share group: `(None, "a/+")` for plain subscriptions,
//! `(Some("g"), "a/+")` for members of the share `$share/g/a/+`. Plain interest makes a pod
//! receive every matching message; a share's interest makes it a candidate for the one
//! delivery the share gets (see `RemoteTargets::shares`).

use crate::mqtt::trie::Trie;
use gridline_crds::model::topic::TopicFilter;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A filter with its share group (None: a plain subscription).
pub type Interest = (Option<String>, String);

/// A change of this pod's interest, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterestChange {
    Added(Interest),
    Removed(Interest),
}

/// This pod's interest: how many subscriptions hold each filter, and the changes (a filter's
/// first subscription, its last one gone) not yet taken by the task that tells the peers.
#[derive(Debug, Default)]
pub struct LocalInterest {
    counts: HashMap<Interest, usize>,
    pending: Vec<InterestChange>,
    /// Changes made so far; the peers have been told up to some version of it.
    version: u64,
}

impl LocalInterest {
    /// One more subscription holds `interest`.
    pub fn add(&mut self, interest: Interest) {
        use std::collections::hash_map::Entry;
        match self.counts.entry(interest) {
            Entry::Occupied(mut held) => *held.get_mut() += 1,
            Entry::Vacant(new) => {
                let change = InterestChange::Added(new.key().clone());
                new.insert(1);
                self.changed(change);
            }
        }
    }

    /// One subscription fewer holds `interest`.
    pub fn remove(&mut self, interest: &Interest) {
        let Some(count) = self.counts.get_mut(interest) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.counts.remove(interest);
            self.changed(InterestChange::Removed(interest.clone()));
        }
    }

    fn changed(&mut self, change: InterestChange) {
        self.pending.push(change);
        self.version += 1;
    }

    /// The changes not taken yet, and the version they bring the peers to.
    pub fn take_pending(&mut self) -> (Vec<InterestChange>, u64) {
        (std::mem::take(&mut self.pending), self.version)
    }

    /// Every interest held now, and the version it is: what a peer whose link just came up
    /// is told.
    pub fn all(&self) -> (Vec<Interest>, u64) {
        let mut all: Vec<Interest> = self.counts.keys().cloned().collect();
        all.sort();
        (all, self.version)
    }

    /// Changes made so far.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether any subscription holds `interest`.
    pub fn holds(&self, interest: &Interest) -> bool {
        self.counts.contains_key(interest)
    }
}

/// A share: (group, filter).
pub type Share = (String, String);

/// The pods a published message goes to, besides this one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteTargets {
    /// Pods with a plain subscription matching the topic, in name order.
    pub plain: Vec<Arc<str>>,
    /// Shares matching the topic held on other pods, each with the pods holding members of
    /// it (name order).
    pub shares: Vec<(Share, Vec<Arc<str>>)>,
}

impl RemoteTargets {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shares.is_empty()
    }
}

/// The peers' interest, as they told it.
#[derive(Debug, Default)]
pub struct RemoteInterest {
    /// Keyed by (pod, share group); the value is the filter (to name the share).
    trie: Trie<(Arc<str>, Option<String>), String>,
    by_pod: HashMap<Arc<str>, BTreeSet<Interest>>,
}

impl RemoteInterest {
    /// `pod` holds `interest` now. A filter that does not parse (a peer running a newer
    /// version could send one) is ignored: it can match nothing here.
    pub fn add(&mut self, pod: &Arc<str>, interest: Interest) {
        let Ok(filter) = TopicFilter::parse(&interest.1) else {
            return;
        };
        self.trie.insert(
            &filter,
            (pod.clone(), interest.0.clone()),
            interest.1.clone(),
        );
        self.by_pod.entry(pod.clone()).or_default().insert(interest);
    }

    pub fn remove(&mut self, pod: &Arc<str>, interest: &Interest) {
        let Some(held) = self.by_pod.get_mut(pod) else {
            return;
        };
        if !held.remove(interest) {
            return;
        }
        if held.is_empty() {
            self.by_pod.remove(pod);
        }
        if let Ok(filter) = TopicFilter::parse(&interest.1) {
            self.trie
                .remove(&filter, &(pod.clone(), interest.0.clone()));
        }
    }

    /// `pod` holds exactly `all` now (what it says when a link comes up).
    pub fn replace(&mut self, pod: &Arc<str>, all: Vec<Interest>) {
        self.forget(pod);
        for interest in all {
            self.add(pod, interest);
        }
    }

    /// `pod` is gone: none of its interest counts any more.
    pub fn forget(&mut self, pod: &Arc<str>) {
        for interest in self.by_pod.remove(pod).unwrap_or_default() {
            if let Ok(filter) = TopicFilter::parse(&interest.1) {
                self.trie.remove(&filter, &(pod.clone(), interest.0));
            }
        }
    }

    /// Filters `pod` holds.
    pub fn of(&self, pod: &str) -> usize {
        self.by_pod.get(pod).map_or(0, BTreeSet::len)
    }

    /// The pods a message published on `topic` must reach.
    pub fn targets(&self, topic: &str) -> RemoteTargets {
        let mut targets = RemoteTargets::default();
        if self.by_pod.is_empty() {
            return targets;
        }
        self.trie
            .for_each_match(topic, |(pod, group), filter| match group {
                None => targets.plain.push(pod.clone()),
                Some(group) => {
                    let share = (group.clone(), filter.clone());
                    match targets.shares.iter_mut().find(|(key, _)| *key == share) {
                        Some((_, pods)) => pods.push(pod.clone()),
                        None => targets.shares.push((share, vec![pod.clone()])),
                    }
                }
            });
        targets.plain.sort();
        targets.plain.dedup();
        for (_, pods) in &mut targets.shares {
            pods.sort();
            pods.dedup();
        }
        targets.shares.sort_by(|a, b| a.0.cmp(&b.0));
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(filter: &str) -> Interest {
        (None, filter.to_string())
    }

    fn shared(group: &str, filter: &str) -> Interest {
        (Some(group.to_string()), filter.to_string())
    }

    #[test]
    fn only_a_filters_first_and_last_subscription_are_changes() {
        let mut local = LocalInterest::default();
        local.add(plain("a/+"));
        local.add(plain("a/+"));
        local.add(shared("g", "a/+"));
        local.remove(&plain("a/+"));
        let (changes, version) = local.take_pending();
        assert_eq!(
            changes,
            [
                InterestChange::Added(plain("a/+")),
                InterestChange::Added(shared("g", "a/+"))
            ]
        );
        assert_eq!(version, 2);
        local.remove(&plain("a/+"));
        local.remove(&plain("never/held"));
        assert_eq!(
            local.take_pending().0,
            [InterestChange::Removed(plain("a/+"))]
        );
        assert_eq!(local.all().0, [shared("g", "a/+")]);
        assert_eq!(local.version(), 3);
    }

    #[test]
    fn a_topic_reaches_the_pods_whose_filters_match_it_once_each() {
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let mut remote = RemoteInterest::default();
        remote.add(&b, plain("s/#"));
        remote.add(&b, plain("s/+/t"));
        remote.add(&a, plain("s/1/t"));
        remote.add(&c, plain("other"));
        remote.add(&c, shared("g", "s/+/t"));
        remote.add(&a, shared("g", "s/+/t"));
        let targets = remote.targets("s/1/t");
        assert_eq!(targets.plain, [a.clone(), b.clone()]);
        assert_eq!(
            targets.shares,
            [(
                ("g".to_string(), "s/+/t".to_string()),
                vec![a.clone(), c.clone()]
            )]
        );
        assert!(remote.targets("nothing").is_empty());
        // `$` topics are out of reach of wildcards, as locally.
        remote.add(&a, plain("#"));
        assert!(remote.targets("$sys/x").is_empty());
    }

    #[test]
    fn a_removed_or_forgotten_pod_is_no_target() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut remote = RemoteInterest::default();
        remote.add(&a, plain("t"));
        remote.add(&b, plain("t"));
        remote.remove(&a, &plain("t"));
        assert_eq!(remote.targets("t").plain, std::slice::from_ref(&b));
        remote.forget(&b);
        assert!(remote.targets("t").is_empty());
        remote.replace(&a, vec![plain("t"), plain("u")]);
        assert_eq!(remote.of("a"), 2);
        remote.replace(&a, vec![plain("u")]);
        assert!(remote.targets("t").is_empty());
        assert_eq!(remote.targets("u").plain, [a]);
    }

    #[test]
    fn a_filter_that_does_not_parse_matches_nothing() {
        let a: Arc<str> = "a".into();
        let mut remote = RemoteInterest::default();
        remote.add(&a, plain("a/#/b"));
        assert!(remote.targets("a/x/b").is_empty());
        assert_eq!(remote.of("a"), 0);
    }
}
