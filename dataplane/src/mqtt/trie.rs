//! The subscription trie: topic filters, level by level, to the subscribers on each. Matching
//! a topic walks only the branches that can match it (literal, `+`, `#`), so its cost grows
//! with the topic's depth, not with the number of subscriptions.

use gridline_crds::model::topic::TopicFilter;
use std::collections::{BTreeMap, HashMap};

/// Subscribers `K` (with their options `V`) by topic filter.
#[derive(Debug)]
pub struct Trie<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    literal: HashMap<String, Node<K, V>>,
    single: Option<Box<Node<K, V>>>,
    /// Subscribers whose filter ends with `#` here.
    multi: Entries<K, V>,
    /// Subscribers whose filter ends exactly here.
    exact: Entries<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            single: None,
            multi: Entries::default(),
            exact: Entries::default(),
        }
    }
}

/// The subscribers at one node. Most filters have one subscriber (a device's own topic),
/// and a `BTreeMap` allocates room for eleven at its first insert: a small vector holds the
/// few, the map the many (a filter thousands of clients share).
#[derive(Debug)]
enum Entries<K, V> {
    Few(Vec<(K, V)>),
    Many(BTreeMap<K, V>),
}

/// Subscribers kept in the vector before the map takes over.
const FEW: usize = 8;

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Entries::Few(Vec::new())
    }
}

impl<K, V> Entries<K, V> {
    fn for_each<'a>(&'a self, visit: &mut impl FnMut(&'a K, &'a V)) {
        match self {
            Entries::Few(few) => few.iter().for_each(|(k, v)| visit(k, v)),
            Entries::Many(many) => many.iter().for_each(|(k, v)| visit(k, v)),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Entries::Few(few) => few.is_empty(),
            Entries::Many(many) => many.is_empty(),
        }
    }
}

impl<K: Ord, V> Entries<K, V> {
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            Entries::Few(few) => {
                if let Some((_, held)) = few.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(held, value));
                }
                if few.len() < FEW {
                    if few.capacity() == 0 {
                        few.reserve_exact(1);
                    }
                    few.push((key, value));
                } else {
                    let mut many: BTreeMap<K, V> = std::mem::take(few).into_iter().collect();
                    many.insert(key, value);
                    *self = Entries::Many(many);
                }
                None
            }
            Entries::Many(many) => many.insert(key, value),
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Entries::Few(few) => {
                let at = few.iter().position(|(k, _)| k == key)?;
                Some(few.swap_remove(at).1)
            }
            Entries::Many(many) => many.remove(key),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.single.is_none()
            && self.multi.is_empty()
            && self.exact.is_empty()
    }
}

impl<K: Ord + Clone, V: Clone> Default for Trie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone, V: Clone> Trie<K, V> {
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Subscriptions held (one per filter and key).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s subscription to `filter`; returns the options it replaced.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.as_str().split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" {
                let old = node.multi.insert(key, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = if level == "+" {
                node.single.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(level.to_string()).or_default()
            };
            if levels.peek().is_none() {
                break;
            }
        }
        let old = node.exact.insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes `key`'s subscription to `filter`; returns its options.
    pub fn remove(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.as_str().split('/').collect();
        let removed = remove(&mut self.root, &levels, key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Every subscription whose filter matches `topic` (a valid topic name), once per filter.
    pub fn matches(&self, topic: &str) -> Vec<(K, V)> {
        let mut out = Vec::new();
        self.for_each_match(topic, |k, v| out.push((k.clone(), v.clone())));
        out
    }

    /// [`Trie::matches`] without copying: the router's hot path visits each match in place.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a K, &'a V)) {
        // Topics are at most a few levels deep (SPEC §D: 8): no allocation for the split.
        let mut levels: [&str; 16] = [""; 16];
        let mut depth = 0;
        let mut overflow = Vec::new();
        for level in topic.split('/') {
            if depth < levels.len() {
                levels[depth] = level;
            } else {
                overflow.push(level);
            }
            depth += 1;
        }
        let all: Vec<&str>;
        let levels: &[&str] = if overflow.is_empty() {
            &levels[..depth]
        } else {
            all = levels.iter().copied().chain(overflow).collect();
            &all
        };
        // `$` topics are out of reach of filters that start with a wildcard.
        let dollar = topic.starts_with('$');
        visit_matches(&self.root, levels, dollar, &mut visit);
    }
}

fn remove<K: Ord, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    let (&level, rest) = levels.split_first()?;
    if level == "#" {
        return node.multi.remove(key);
    }
    if level == "+" {
        let child = node.single.as_deref_mut()?;
        let removed = if rest.is_empty() {
            child.exact.remove(key)
        } else {
            remove(child, rest, key)
        };
        if child.is_empty() {
            node.single = None;
        }
        removed
    } else {
        let child = node.literal.get_mut(level)?;
        let removed = if rest.is_empty() {
            child.exact.remove(key)
        } else {
            remove(child, rest, key)
        };
        if child.is_empty() {
            node.literal.remove(level);
        }
        removed
    }
}

fn visit_matches<'a, K, V>(
    node: &'a Node<K, V>,
    levels: &[&str],
    first_is_dollar: bool,
    visit: &mut impl FnMut(&'a K, &'a V),
) {
    // `#` matches the parent level too (`a/#` matches `a`), and everything below.
    if !first_is_dollar {
        node.multi.for_each(visit);
    }
    let Some((&level, rest)) = levels.split_first() else {
        node.exact.for_each(visit);
        return;
    };
    if let Some(child) = node.literal.get(level) {
        visit_matches(child, rest, false, visit);
    }
    if !first_is_dollar && let Some(child) = &node.single {
        visit_matches(child, rest, false, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    #[test]
    fn many_subscribers_of_one_filter_move_from_the_vector_to_the_map_and_back_out() {
        let filter = TopicFilter::parse("a/+").unwrap();
        let mut trie: Trie<u32, u32> = Trie::new();
        for key in 0..20 {
            assert_eq!(trie.insert(&filter, key, key), None);
        }
        assert_eq!(
            trie.insert(&filter, 3, 33),
            Some(3),
            "a re-subscription replaces"
        );
        let mut seen: Vec<(u32, u32)> = trie.matches("a/b");
        seen.sort_unstable();
        assert_eq!(seen.len(), 20);
        assert_eq!(seen[3], (3, 33));
        for key in 0..20 {
            assert!(trie.remove(&filter, &key).is_some(), "{key}");
        }
        assert!(trie.is_empty());
        assert!(trie.matches("a/b").is_empty());
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("$x"), Just(""), Just("c")].prop_map(String::from)
    }

    fn topic() -> impl Strategy<Value = String> {
        vec(level(), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("invalid topic", |t| {
                gridline_crds::model::topic::validate_topic_name(t).is_ok()
            })
    }

    fn filter() -> impl Strategy<Value = TopicFilter> {
        (
            vec(prop_oneof![level(), Just("+".to_string())], 1..5),
            any::<bool>(),
        )
            .prop_filter_map("invalid filter", |(mut levels, multi)| {
                if multi {
                    levels.push("#".into());
                }
                TopicFilter::parse(&levels.join("/")).ok()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn matching_agrees_with_every_filter_checked_one_by_one(
            subscriptions in vec((filter(), 0u8..4), 0..30),
            removed in vec(any::<prop::sample::Index>(), 0..10),
            topics in vec(topic(), 1..10),
        ) {
            let mut trie = Trie::new();
            let mut reference: BTreeMap<(String, u8), TopicFilter> = BTreeMap::new();
            for (filter, key) in &subscriptions {
                trie.insert(filter, (filter.as_str().to_string(), *key), ());
                reference.insert((filter.as_str().to_string(), *key), filter.clone());
            }
            for index in removed {
                if subscriptions.is_empty() { break; }
                let (filter, key) = index.get(&subscriptions);
                trie.remove(filter, &(filter.as_str().to_string(), *key));
                reference.remove(&(filter.as_str().to_string(), *key));
            }
            prop_assert_eq!(trie.len(), reference.len());
            for topic in topics {
                let mut got: Vec<_> = trie.matches(&topic).into_iter().map(|(k, ())| k).collect();
                got.sort();
                let expected: Vec<_> = reference
                    .iter()
                    .filter(|(_, f)| f.matches(&topic))
                    .map(|(k, _)| k.clone())
                    .collect();
                prop_assert_eq!(got, expected, "topic {}", topic);
            }
        }
    }

    #[test]
    fn removing_the_last_subscription_prunes_the_branch() {
        let mut trie = Trie::new();
        let filter = TopicFilter::parse("a/+/c").unwrap();
        trie.insert(&filter, 1, ());
        assert_eq!(trie.remove(&filter, &1), Some(()));
        assert!(trie.root.is_empty());
        assert!(trie.is_empty());
    }
}
