//! The member set: the pods of this Namespace that hold a live membership lease, this pod
//! included. Every part that cares (peer links, MQTT forwarding, receive gathering) reads it
//! from one watch channel, so they all agree on one version at a time.

use crate::pod::PodIdentity;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// One pod of the Namespace as its membership lease describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The pod's name and owner number (the owner is derived from the name).
    pub pod: PodIdentity,
    /// Where its peer link listens, `host:port` as other pods dial it (in Kubernetes the pod's
    /// DNS name under the headless peers Service).
    pub peer_addr: String,
}

impl Member {
    pub fn name(&self) -> &str {
        self.pod.name()
    }
}

/// The live members, keyed by pod name, and which of them is this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSet {
    this: Arc<str>,
    members: BTreeMap<Arc<str>, Member>,
}

impl MemberSet {
    /// A set holding only this pod: what a pod outside a cluster is, and where a pod in one
    /// starts before it has read the others' leases.
    pub fn alone(this: Member) -> MemberSet {
        let name: Arc<str> = Arc::from(this.name());
        MemberSet {
            this: name.clone(),
            members: BTreeMap::from([(name, this)]),
        }
    }

    /// This pod plus the `others` (an entry named like this pod is ignored: this process
    /// describes itself).
    pub fn new(this: Member, others: impl IntoIterator<Item = Member>) -> MemberSet {
        let mut set = MemberSet::alone(this);
        for member in others {
            if member.name() != &*set.this {
                set.members.insert(Arc::from(member.name()), member);
            }
        }
        set
    }

    /// This pod's own entry.
    pub fn this(&self) -> &Member {
        &self.members[&self.this]
    }

    pub fn this_name(&self) -> &Arc<str> {
        &self.this
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// Every member, this pod included, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Every member but this pod, in name order.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|(name, _)| **name != self.this)
            .map(|(_, member)| member)
    }

    /// The member whose owner number is `owner` (the number a lock token carries).
    pub fn by_owner(&self, owner: u16) -> Option<&Member> {
        self.members.values().find(|m| m.pod.owner() == owner)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a set always holds this pod.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The member set as every part reads it. A new value is sent only when the set changed.
pub type MembersWatch = watch::Receiver<Arc<MemberSet>>;

/// A channel fixed on a set of one: what the parts read when this process is not in a cluster.
pub fn alone(this: Member) -> MembersWatch {
    let (sender, receiver) = watch::channel(Arc::new(MemberSet::alone(this)));
    // The sender's drop closes the channel; readers keep the last value, which is all they
    // need, and `changed()` returns an error they treat as "no more changes".
    drop(sender);
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, port: u16) -> Member {
        Member {
            pod: PodIdentity::new(name).unwrap(),
            peer_addr: format!("127.0.0.1:{port}"),
        }
    }

    #[test]
    fn a_set_holds_this_pod_and_its_peers_in_name_order() {
        let set = MemberSet::new(
            member("pod-1", 1),
            [member("pod-2", 2), member("pod-0", 0), member("pod-1", 9)],
        );
        assert_eq!(set.len(), 3);
        assert_eq!(
            set.this().peer_addr,
            "127.0.0.1:1",
            "this pod describes itself"
        );
        let peers: Vec<_> = set.peers().map(Member::name).collect();
        assert_eq!(peers, ["pod-0", "pod-2"]);
        assert_eq!(set.by_owner(2).map(Member::name), Some("pod-2"));
        assert!(set.by_owner(7).is_none());
        assert!(!set.contains("pod-3"));
    }
}
