//! `compile`: objects in, Snapshot and per-object errors out. Each kind is checked field by
//! field (the same rules the CRD schema states, because local mode has no API server to enforce
//! them), then references are resolved against what has already compiled, in dependency order:
//! Namespace, Topics, EventSubscriptions, ClientGroups, TopicSpaces, Clients, PermissionBindings.

mod access;
mod custom_domains;
mod events;
mod namespace;

use super::objects::{DEFAULT_K8S_NAMESPACE, Kind, ObjectError, ObjectKey, Objects, SecretLookup};
use super::snapshot::Snapshot;
use crate::types::Namespace;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// Compile the objects of one Gridline Namespace.
///
/// `objects` normally holds one Namespace and the objects that refer to it. When it holds
/// several Namespaces, the first by (Kubernetes namespace, name) is compiled and objects that
/// belong to the others are ignored; [`compile_all`] compiles them all. Objects in error are left
/// out of the Snapshot and reported; everything else still compiles. When there is no Namespace,
/// the Snapshot is empty and nothing is reported (see [`compile_all`] for dangling references).
pub fn compile(objects: &Objects) -> (Snapshot, Vec<ObjectError>) {
    let mut namespaces: Vec<&Namespace> = objects.namespaces.iter().collect();
    namespaces.sort_by_key(|ns| (k8s_namespace_of(*ns), ns.name_any()));
    match namespaces.first() {
        Some(namespace) => compile_namespace(objects, namespace),
        None => (Snapshot::default(), Vec::new()),
    }
}

/// A Namespace's identity: (Kubernetes namespace, name).
pub type NamespaceId = (String, String);

/// Compile every Namespace in `objects`, and report objects whose Namespace (or, for
/// subscriptions, Topic) does not exist. Each Snapshot is keyed by its Namespace, also when the
/// Namespace object itself is in error (its Snapshot then has `namespace: None`).
pub fn compile_all(objects: &Objects) -> (BTreeMap<NamespaceId, Snapshot>, Vec<ObjectError>) {
    let mut namespaces: Vec<&Namespace> = objects.namespaces.iter().collect();
    namespaces.sort_by_key(|ns| (k8s_namespace_of(*ns), ns.name_any()));
    let mut snapshots = BTreeMap::new();
    let mut errors = Vec::new();
    for namespace in &namespaces {
        let key = (k8s_namespace_of(*namespace), namespace.name_any());
        if snapshots.contains_key(&key) {
            // Two manifests with the same object: the API server would keep the last applied;
            // a folder cannot say which is last, so say so.
            errors.push(ObjectError {
                object: ObjectKey::of(Kind::Namespace, *namespace),
                field: "metadata.name".into(),
                message: "this Namespace is defined more than once".into(),
            });
            continue;
        }
        let (snapshot, mut namespace_errors) = compile_namespace(objects, namespace);
        snapshots.insert(key, snapshot);
        errors.append(&mut namespace_errors);
    }
    errors.extend(dangling_namespace_refs(objects));
    errors.sort();
    errors.dedup();
    (snapshots, errors)
}

fn compile_namespace(objects: &Objects, namespace: &Namespace) -> (Snapshot, Vec<ObjectError>) {
    let scope = Scope {
        objects,
        k8s_namespace: k8s_namespace_of(namespace),
        namespace_name: namespace.name_any(),
    };
    let mut compiler = Compiler {
        scope,
        snapshot: Snapshot::default(),
        errors: Vec::new(),
    };
    // Topics first: the Namespace's routing refers to one.
    compiler.compile_topics();
    compiler.compile_namespace_object(namespace);
    compiler.compile_subscriptions();
    compiler.compile_client_groups();
    compiler.compile_topic_spaces();
    compiler.compile_clients();
    compiler.compile_permission_bindings();
    compiler.errors.sort();
    compiler.errors.dedup();
    (compiler.snapshot, compiler.errors)
}

/// Which objects belong to the Namespace being compiled.
struct Scope<'a> {
    objects: &'a Objects,
    k8s_namespace: String,
    namespace_name: String,
}

impl Scope<'_> {
    fn in_k8s_namespace<K: kube::Resource>(&self, object: &K) -> bool {
        k8s_namespace_of(object) == self.k8s_namespace
    }

    fn secret(&self, name: &str, key: &str) -> SecretLookup {
        self.objects.secret_value(&self.k8s_namespace, name, key)
    }
}

struct Compiler<'a> {
    scope: Scope<'a>,
    snapshot: Snapshot,
    errors: Vec<ObjectError>,
}

/// Problems found in one object; the object compiles only when there are none.
struct ObjectProblems {
    key: ObjectKey,
    errors: Vec<ObjectError>,
}

impl ObjectProblems {
    fn new(key: ObjectKey) -> Self {
        Self {
            key,
            errors: Vec::new(),
        }
    }

    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ObjectError {
            object: self.key.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn check_range(&mut self, field: &str, value: i32, min: i32, max: i32) {
        if !(min..=max).contains(&value) {
            self.add(
                field,
                format!("{value} is out of range: must be {min}-{max}"),
            );
        }
    }

    fn check_name(&mut self) {
        if !is_valid_resource_name(&self.key.name) {
            self.add(
                "metadata.name",
                format!(
                    "'{}' is not a valid name: use 3-50 characters of letters, digits and '-'",
                    self.key.name
                ),
            );
        }
    }

    fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Hand the problems over; true when there were none.
    fn finish(self, sink: &mut Vec<ObjectError>) -> bool {
        let ok = self.errors.is_empty();
        sink.extend(self.errors);
        ok
    }
}

/// Event Grid resource names: 3-50 characters, letters, digits and '-'.
pub(crate) fn is_valid_resource_name(name: &str) -> bool {
    (3..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn k8s_namespace_of<K: kube::Resource>(object: &K) -> String {
    object
        .namespace()
        .unwrap_or_else(|| DEFAULT_K8S_NAMESPACE.to_string())
}

/// Objects whose `namespaceRef` names no Namespace of their Kubernetes namespace, and
/// subscriptions whose Topic does not exist.
fn dangling_namespace_refs(objects: &Objects) -> Vec<ObjectError> {
    let namespaces: BTreeSet<(String, String)> = objects
        .namespaces
        .iter()
        .map(|ns| (k8s_namespace_of(ns), ns.name_any()))
        .collect();
    let topics: BTreeSet<(String, String)> = objects
        .topics
        .iter()
        .map(|t| (k8s_namespace_of(t), t.name_any()))
        .collect();
    let mut errors = Vec::new();
    let mut check = |key: ObjectKey, target: &str| {
        if !namespaces.contains(&(key.namespace.clone(), target.to_string())) {
            let message = format!(
                "Namespace '{target}' not found in Kubernetes namespace '{}'",
                key.namespace
            );
            errors.push(ObjectError {
                object: key,
                field: "spec.namespaceRef.name".into(),
                message,
            });
        }
    };
    for o in &objects.topics {
        check(ObjectKey::of(Kind::Topic, o), &o.spec.namespace_ref.name);
    }
    for o in &objects.clients {
        check(ObjectKey::of(Kind::Client, o), &o.spec.namespace_ref.name);
    }
    for o in &objects.client_groups {
        check(
            ObjectKey::of(Kind::ClientGroup, o),
            &o.spec.namespace_ref.name,
        );
    }
    for o in &objects.topic_spaces {
        check(
            ObjectKey::of(Kind::TopicSpace, o),
            &o.spec.namespace_ref.name,
        );
    }
    for o in &objects.permission_bindings {
        check(
            ObjectKey::of(Kind::PermissionBinding, o),
            &o.spec.namespace_ref.name,
        );
    }
    for subscription in &objects.event_subscriptions {
        let key = ObjectKey::of(Kind::EventSubscription, subscription);
        let topic = &subscription.spec.topic_ref.name;
        if !topics.contains(&(key.namespace.clone(), topic.clone())) {
            let message = format!(
                "Topic '{topic}' not found in Kubernetes namespace '{}'",
                key.namespace
            );
            errors.push(ObjectError {
                object: key,
                field: "spec.topicRef.name".into(),
                message,
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests;
