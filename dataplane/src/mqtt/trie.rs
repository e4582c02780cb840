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
    multi: BTreeMap<K, V>,
    /// Subscribers whose filter ends exactly here.
    exact: BTreeMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            single: None,
            multi: BTreeMap::new(),
            exact: BTreeMap::new(),
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
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = Vec::new();
        // `$` topics are out of reach of filters that start with a wildcard.
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, dollar, &mut out);
        out
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

fn collect<K: Clone, V: Clone>(
    node: &Node<K, V>,
    levels: &[&str],
    first_is_dollar: bool,
    out: &mut Vec<(K, V)>,
) {
    // `#` matches the parent level too (`a/#` matches `a`), and everything below.
    if !first_is_dollar {
        out.extend(node.multi.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let Some((&level, rest)) = levels.split_first() else {
        out.extend(node.exact.iter().map(|(k, v)| (k.clone(), v.clone())));
        return;
    };
    if let Some(child) = node.literal.get(level) {
        collect(child, rest, false, out);
    }
    if !first_is_dollar && let Some(child) = &node.single {
        collect(child, rest, false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

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
