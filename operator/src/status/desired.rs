//! From objects to the statuses they should carry: compile once (the same `compile_all` the
//! data plane runs), judge each object, and keep only the statuses that differ from what the
//! object already says.

use super::conditions::{self, Desired};
use super::members::{MemberLease, live_members, membership_problem};
use gridline_crds::model::{
    CompiledCustomDomain, DEFAULT_K8S_NAMESPACE, Kind, ObjectError, ObjectKey, Objects, Snapshot,
    compile_all,
};
use gridline_crds::types::{
    CONDITION_ACCEPTED, CONDITION_READY, Client, ClientGroup, ClusterMember, EventSubscription,
    Namespace, NamespaceStatus, PermissionBinding, ResourceStatus, Topic, TopicSpace,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};

/// Warning condition of a Namespace that takes MQTT usernames without proof (SPEC §D).
pub const CONDITION_INSECURE: &str = "InsecureUsernameAuthentication";

/// Condition of a Namespace with `spec.customDomains`: True when every domain has a
/// certificate that covers it. A domain without one is served with the `spec.tls` certificate,
/// so this never makes the Namespace un-Accepted. Absent when there are no custom domains.
pub const CONDITION_CUSTOM_DOMAINS: &str = "CustomDomainsReady";

/// At most this many problems are spelled out in a condition message.
const MAX_PROBLEMS_IN_MESSAGE: usize = 5;

/// The pods of one Namespace, as its StatefulSet reports them, and the membership Leases
/// they hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    /// `spec.replicas` of the StatefulSet (lags the Namespace until the next apply).
    pub desired: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// The Namespace's member Leases, live or not (liveness is judged at the pass's `now`).
    pub leases: Vec<MemberLease>,
}

/// What was decided about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// `Err` holds the compile problems of the object.
    pub accepted: Result<(), Vec<ObjectError>>,
    pub ready: Desired,
    /// Extra conditions of a Namespace: the insecure-identity warning, `CustomDomainsReady`.
    pub warnings: Vec<Desired>,
    /// A Namespace's live members (`status.members`); `None` for the other kinds.
    pub members: Option<Vec<ClusterMember>>,
}

/// Judge every object: compile the Kubernetes namespace's objects once, then decide Accepted
/// and Ready for each. `pods` is keyed by Gridline Namespace name; member Leases are judged
/// live at `now`.
pub fn evaluate(
    objects: &Objects,
    pods: &BTreeMap<String, Pods>,
    now: &Time,
) -> HashMap<ObjectKey, Evaluation> {
    let (snapshots, errors) = compile_all(objects);
    let mut problems: HashMap<ObjectKey, Vec<ObjectError>> = HashMap::new();
    for error in errors {
        problems
            .entry(error.object.clone())
            .or_default()
            .push(error);
    }
    let accepted = |key: &ObjectKey| match problems.get(key) {
        Some(errors) => Err(errors.clone()),
        None => Ok(()),
    };

    let mut evaluations = HashMap::new();
    let mut namespace_ready: HashMap<String, bool> = HashMap::new();
    for ns in &objects.namespaces {
        let key = ObjectKey::of(Kind::Namespace, ns);
        let accepted = accepted(&key);
        let pods = pods.get(&ns.name_any());
        let members = pods.map_or_else(Vec::new, |p| live_members(&p.leases, now.0));
        let ready = namespace_readiness(ns, accepted.is_ok(), pods, &members);
        namespace_ready.insert(ns.name_any(), ready.status);
        let k8s_namespace = ns
            .namespace()
            .unwrap_or_else(|| DEFAULT_K8S_NAMESPACE.to_string());
        let snapshot = snapshots.get(&(k8s_namespace, ns.name_any()));
        let warnings = insecure_identity_warning(ns)
            .into_iter()
            .chain(custom_domains_condition(ns, snapshot))
            .collect();
        evaluations.insert(
            key,
            Evaluation {
                accepted,
                ready,
                warnings,
                members: Some(members),
            },
        );
    }

    let mut add = |key: ObjectKey, namespace: Option<&str>| {
        let accepted = accepted(&key);
        let ready = served_by(namespace, accepted.is_ok(), &namespace_ready);
        evaluations.insert(
            key,
            Evaluation {
                accepted,
                ready,
                warnings: Vec::new(),
                members: None,
            },
        );
    };
    let topic_namespaces: HashMap<String, &str> = objects
        .topics
        .iter()
        .map(|t| (t.name_any(), t.spec.namespace_ref.name.as_str()))
        .collect();
    for o in &objects.topics {
        add(
            ObjectKey::of(Kind::Topic, o),
            Some(&o.spec.namespace_ref.name),
        );
    }
    for o in &objects.event_subscriptions {
        let namespace = topic_namespaces.get(&o.spec.topic_ref.name).copied();
        add(ObjectKey::of(Kind::EventSubscription, o), namespace);
    }
    for o in &objects.clients {
        add(
            ObjectKey::of(Kind::Client, o),
            Some(&o.spec.namespace_ref.name),
        );
    }
    for o in &objects.client_groups {
        add(
            ObjectKey::of(Kind::ClientGroup, o),
            Some(&o.spec.namespace_ref.name),
        );
    }
    for o in &objects.topic_spaces {
        add(
            ObjectKey::of(Kind::TopicSpace, o),
            Some(&o.spec.namespace_ref.name),
        );
    }
    for o in &objects.permission_bindings {
        add(
            ObjectKey::of(Kind::PermissionBinding, o),
            Some(&o.spec.namespace_ref.name),
        );
    }
    evaluations
}

/// Ready: the StatefulSet has all `spec.replicas` pods ready, and (see
/// [`membership_problem`]) they are members that see each other.
fn namespace_readiness(
    ns: &Namespace,
    accepted: bool,
    pods: Option<&Pods>,
    members: &[ClusterMember],
) -> Desired {
    let want = ns.spec.replicas;
    match pods {
        _ if !accepted => Desired::new(
            CONDITION_READY,
            false,
            "NotAccepted",
            "the Namespace is not accepted; see the Accepted condition".into(),
        ),
        None => Desired::new(
            CONDITION_READY,
            false,
            "StatefulSetPending",
            format!("waiting for StatefulSet {}-gridline", ns.name_any()),
        ),
        Some(pods) if pods.desired == want && pods.ready >= want => {
            if let Some(problem) = membership_problem(&ns.name_any(), want, members) {
                return problem;
            }
            let connected = if want > 1 {
                ", each linked to every other"
            } else {
                ""
            };
            Desired::new(
                CONDITION_READY,
                true,
                "PodsReady",
                format!("{want} of {want} data-plane pods ready{connected}"),
            )
        }
        Some(pods) => Desired::new(
            CONDITION_READY,
            false,
            "PodsNotReady",
            format!("{} of {want} data-plane pods ready", pods.ready.min(want)),
        ),
    }
}

fn served_by(
    namespace: Option<&str>,
    accepted: bool,
    namespace_ready: &HashMap<String, bool>,
) -> Desired {
    match namespace {
        _ if !accepted => Desired::new(
            CONDITION_READY,
            false,
            "NotAccepted",
            "the object is not accepted; see the Accepted condition".into(),
        ),
        Some(name) if namespace_ready.get(name).copied().unwrap_or(false) => Desired::new(
            CONDITION_READY,
            true,
            "NamespaceReady",
            format!("served by Namespace '{name}'"),
        ),
        Some(name) => Desired::new(
            CONDITION_READY,
            false,
            "NamespaceNotReady",
            format!("Namespace '{name}' is not ready"),
        ),
        None => Desired::new(
            CONDITION_READY,
            false,
            "NamespaceNotReady",
            "the object's Namespace is not known".into(),
        ),
    }
}

fn insecure_identity_warning(ns: &Namespace) -> Option<Desired> {
    let plaintext = ns.spec.listeners.mqtt_plaintext.as_ref()?;
    (plaintext.enabled && plaintext.insecure_username_authentication).then(|| {
        Desired::new(
            CONDITION_INSECURE,
            true,
            "DevelopmentIdentityEnabled",
            "listeners.mqttPlaintext.insecureUsernameAuthentication is on: MQTT usernames are \
             taken as authentication names without proof; never use it in production"
                .into(),
        )
    })
}

/// `CustomDomainsReady`, from the domains as compiled: each domain's problem is named in the
/// message. The reason is `CertificateMissing` when some domain has no usable certificate at
/// all (no Secret, no `tls.crt` / `tls.key`, no readable certificate), else
/// `CertificateMismatch` when some certificate does not cover its name.
fn custom_domains_condition(ns: &Namespace, snapshot: Option<&Snapshot>) -> Option<Desired> {
    if ns.spec.custom_domains.is_empty() {
        return None;
    }
    let Some(compiled) = snapshot.and_then(|s| s.namespace.as_ref()) else {
        return Some(Desired::new(
            CONDITION_CUSTOM_DOMAINS,
            false,
            "NotAccepted",
            "the Namespace is not accepted; see the Accepted condition".into(),
        ));
    };
    let failing: Vec<&CompiledCustomDomain> = compiled
        .custom_domains
        .iter()
        .filter(|domain| domain.problem.is_some())
        .collect();
    if failing.is_empty() {
        let count = compiled.custom_domains.len();
        return Some(Desired::new(
            CONDITION_CUSTOM_DOMAINS,
            true,
            "AllDomainsServed",
            if count == 1 {
                "the custom domain is served with its own certificate".into()
            } else {
                format!("all {count} custom domains are served with their own certificates")
            },
        ));
    }
    let reason = if failing.iter().all(|domain| domain.certificate_mismatch()) {
        "CertificateMismatch"
    } else {
        "CertificateMissing"
    };
    let problems = failing
        .iter()
        .map(|domain| {
            format!(
                "{}: {}",
                domain.fully_qualified_domain_name,
                domain.problem.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(Desired::new(
        CONDITION_CUSTOM_DOMAINS,
        false,
        reason,
        format!("{problems} (served with the spec.tls certificate meanwhile)"),
    ))
}

fn accepted_condition(accepted: &Result<(), Vec<ObjectError>>) -> Desired {
    match accepted {
        Ok(()) => Desired::new(
            CONDITION_ACCEPTED,
            true,
            "Accepted",
            "the object is valid and its references resolve".into(),
        ),
        Err(errors) => {
            let unresolved = errors.iter().all(|e| e.message.contains("not found"));
            let mut message = errors
                .iter()
                .take(MAX_PROBLEMS_IN_MESSAGE)
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            if errors.len() > MAX_PROBLEMS_IN_MESSAGE {
                let more = errors.len() - MAX_PROBLEMS_IN_MESSAGE;
                message.push_str(&format!("; and {more} more"));
            }
            let reason = if unresolved {
                "UnresolvedReference"
            } else {
                "Invalid"
            };
            Desired::new(CONDITION_ACCEPTED, false, reason, message)
        }
    }
}

/// The status an object should carry, given what it carries now.
pub fn desired_status(
    evaluation: &Evaluation,
    generation: Option<i64>,
    current: Option<&ResourceStatus>,
    now: &Time,
) -> ResourceStatus {
    let mut desired = vec![
        accepted_condition(&evaluation.accepted),
        evaluation.ready.clone(),
    ];
    desired.extend(evaluation.warnings.iter().cloned());
    let current = current.map_or(&[][..], |s| &s.conditions[..]);
    ResourceStatus {
        observed_generation: generation,
        conditions: conditions::merge(current, &desired, generation, now),
    }
}

/// An Event to record because `Accepted` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptedEvent {
    /// It became valid again after being refused.
    Accepted,
    /// It is refused (first sight, or after being accepted).
    Refused { reason: String, message: String },
}

/// A status write to make.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub key: ObjectKey,
    /// The object's uid, to tell a recreated object from the one that was evaluated.
    pub uid: Option<String>,
    pub status: ResourceStatus,
    /// A Namespace's `status.members` (possibly empty: then the field is removed); `None` for
    /// other kinds.
    pub members: Option<Vec<ClusterMember>>,
    pub event: Option<AcceptedEvent>,
}

/// The writes for one batch, and how many objects of each kind were evaluated.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub changes: Vec<StatusChange>,
    pub evaluated: BTreeMap<Kind, usize>,
}

/// Compute every object's status and keep those that differ from the current ones. Objects
/// being deleted must not be in `objects`.
pub fn plan(objects: &Objects, pods: &BTreeMap<String, Pods>, now: &Time) -> Plan {
    let evaluations = evaluate(objects, pods, now);
    let mut plan = Plan::default();
    collect(
        &mut plan,
        Kind::Namespace,
        &objects.namespaces,
        &evaluations,
        now,
    );
    collect(&mut plan, Kind::Topic, &objects.topics, &evaluations, now);
    collect(
        &mut plan,
        Kind::EventSubscription,
        &objects.event_subscriptions,
        &evaluations,
        now,
    );
    collect(&mut plan, Kind::Client, &objects.clients, &evaluations, now);
    collect(
        &mut plan,
        Kind::ClientGroup,
        &objects.client_groups,
        &evaluations,
        now,
    );
    collect(
        &mut plan,
        Kind::TopicSpace,
        &objects.topic_spaces,
        &evaluations,
        now,
    );
    collect(
        &mut plan,
        Kind::PermissionBinding,
        &objects.permission_bindings,
        &evaluations,
        now,
    );
    plan
}

fn collect<K: Reported>(
    plan: &mut Plan,
    kind: Kind,
    objects: &[K],
    evaluations: &HashMap<ObjectKey, Evaluation>,
    now: &Time,
) {
    *plan.evaluated.entry(kind).or_default() += objects.len();
    for object in objects {
        let key = ObjectKey::of(kind, object);
        let Some(evaluation) = evaluations.get(&key) else {
            continue;
        };
        let current = object.status();
        let status = desired_status(evaluation, object.meta().generation, current, now);
        let members_changed = evaluation.members.as_deref() != object.members();
        if current == Some(&status) && !members_changed {
            continue;
        }
        let event = accepted_event(current, &status);
        plan.changes.push(StatusChange {
            key,
            uid: object.meta().uid.clone(),
            status,
            members: evaluation.members.clone(),
            event,
        });
    }
}

fn accepted_event(
    current: Option<&ResourceStatus>,
    desired: &ResourceStatus,
) -> Option<AcceptedEvent> {
    let before = current.and_then(|s| conditions::status_of(&s.conditions, CONDITION_ACCEPTED));
    let after = desired
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ACCEPTED)?;
    match (before, after.status == "True") {
        // A first acceptance is the normal case; thousands of objects applied at once would
        // otherwise mean thousands of Events.
        (None, true) | (Some(true), true) | (Some(false), false) => None,
        (Some(false), true) => Some(AcceptedEvent::Accepted),
        (_, false) => Some(AcceptedEvent::Refused {
            reason: after.reason.clone(),
            message: after.message.clone(),
        }),
    }
}

/// The kinds that carry a [`ResourceStatus`] (a Namespace's with its members beside it).
pub trait Reported: Resource<DynamicType = ()> {
    fn status(&self) -> Option<&ResourceStatus>;
    /// The members its status lists: a Namespace's (empty when none), `None` for other kinds.
    fn members(&self) -> Option<&[ClusterMember]> {
        None
    }
    /// Take `status` (and a Namespace's `members`) as the object's status: what was written.
    fn set_status(&mut self, status: ResourceStatus, members: Option<Vec<ClusterMember>>);
}

impl Reported for Namespace {
    fn status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref().map(|s| &s.resource)
    }
    fn members(&self) -> Option<&[ClusterMember]> {
        Some(self.status.as_ref().map_or(&[][..], |s| &s.members[..]))
    }
    fn set_status(&mut self, status: ResourceStatus, members: Option<Vec<ClusterMember>>) {
        self.status = Some(NamespaceStatus {
            resource: status,
            members: members.unwrap_or_default(),
        });
    }
}

macro_rules! reported {
    ($($kind:ty),*) => {$(
        impl Reported for $kind {
            fn status(&self) -> Option<&ResourceStatus> {
                self.status.as_ref()
            }
            fn set_status(&mut self, status: ResourceStatus, _members: Option<Vec<ClusterMember>>) {
                self.status = Some(status);
            }
        }
    )*};
}

reported!(
    Topic,
    EventSubscription,
    Client,
    ClientGroup,
    TopicSpace,
    PermissionBinding
);

#[cfg(test)]
mod tests;
