//! The Hello rules: which side of a pair dials, which protocol version a link speaks, and
//! which Hellos a pod refuses. Pure functions over the two Hellos and the member set.

use super::frame::{GoodbyeReason, Hello, PROTOCOL_VERSIONS};
use crate::cluster::members::MemberSet;
use crate::pod::PodIdentity;

/// Which end of a link this pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

/// Whether `this` pod dials `peer`: the one whose name sorts lower dials, so each pair has
/// exactly one link.
pub fn dials(this: &str, peer: &str) -> bool {
    this < peer
}

/// The Hello this pod sends.
pub fn hello_of(this: &PodIdentity, namespace: &str) -> Hello {
    Hello {
        min_version: *PROTOCOL_VERSIONS.start(),
        max_version: *PROTOCOL_VERSIONS.end(),
        owner: this.owner(),
        pod: this.name().to_string(),
        namespace: namespace.to_string(),
    }
}

/// Why a Hello was refused: what the Goodbye says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: GoodbyeReason,
    pub message: String,
}

impl Refusal {
    fn refused(message: String) -> Refusal {
        Refusal {
            reason: GoodbyeReason::Refused,
            message,
        }
    }
}

/// The version both Hellos allow: the highest common one.
pub fn common_version(ours: &Hello, theirs: &Hello) -> Result<u16, Refusal> {
    let highest = ours.max_version.min(theirs.max_version);
    let lowest = ours.min_version.max(theirs.min_version);
    if highest < lowest || theirs.min_version > theirs.max_version {
        return Err(Refusal {
            reason: GoodbyeReason::Version,
            message: format!(
                "no common protocol version: {} speaks {}..={}, {} offered {}..={}",
                ours.pod,
                ours.min_version,
                ours.max_version,
                crate::log_limit::truncated(&theirs.pod),
                theirs.min_version,
                theirs.max_version
            ),
        });
    }
    Ok(highest)
}

/// Check the peer's Hello: the version the link speaks, or why it is refused. `dialled` is
/// the member a dialer dialled (`None` for the acceptor, which learns who it is from here).
pub fn check(
    ours: &Hello,
    theirs: &Hello,
    role: Role,
    dialled: Option<&str>,
    members: &MemberSet,
) -> Result<u16, Refusal> {
    let version = common_version(ours, theirs)?;
    let name = crate::log_limit::truncated(&theirs.pod);
    if theirs.namespace != ours.namespace {
        return Err(Refusal::refused(format!(
            "{name} serves the Namespace {:?}, {} serves {:?}",
            crate::log_limit::truncated(&theirs.namespace),
            ours.pod,
            ours.namespace
        )));
    }
    if theirs.pod == ours.pod {
        return Err(Refusal::refused(format!(
            "the peer calls itself {name}, this pod's own name"
        )));
    }
    let identity = PodIdentity::new(&theirs.pod)
        .map_err(|error| Refusal::refused(format!("the peer's name is refused: {error}")))?;
    if identity.owner() != theirs.owner {
        return Err(Refusal::refused(format!(
            "{name} says its owner number is {}; its name makes it {}",
            theirs.owner,
            identity.owner()
        )));
    }
    match role {
        Role::Acceptor if !dials(&theirs.pod, &ours.pod) => {
            return Err(Refusal::refused(format!(
                "{name} dialled {}, but the pod whose name sorts lower dials: {} dials {name}",
                ours.pod, ours.pod
            )));
        }
        Role::Dialer if dialled != Some(theirs.pod.as_str()) => {
            return Err(Refusal::refused(format!(
                "dialled {} but {name} answered",
                dialled.unwrap_or("?")
            )));
        }
        _ => {}
    }
    if !members.contains(&theirs.pod) {
        return Err(Refusal::refused(format!(
            "{name} is not in {}'s member set",
            ours.pod
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::members::Member;

    fn member(name: &str) -> Member {
        Member {
            pod: PodIdentity::new(name).unwrap(),
            peer_addr: "127.0.0.1:1".into(),
        }
    }

    fn hello(name: &str) -> Hello {
        hello_of(&PodIdentity::new(name).unwrap(), "default/orders")
    }

    fn members() -> MemberSet {
        MemberSet::new(member("pod-1"), [member("pod-0"), member("pod-2")])
    }

    #[test]
    fn the_pod_whose_name_sorts_lower_dials() {
        assert!(dials("pod-0", "pod-1"));
        assert!(!dials("pod-1", "pod-0"));
        assert!(!dials("pod-1", "pod-1"));
    }

    #[test]
    fn the_highest_common_version_is_spoken() {
        let mut ours = hello("pod-1");
        let mut theirs = hello("pod-0");
        (ours.min_version, ours.max_version) = (1, 3);
        (theirs.min_version, theirs.max_version) = (2, 5);
        assert_eq!(common_version(&ours, &theirs), Ok(3));
        assert_eq!(common_version(&theirs, &ours), Ok(3));
    }

    #[test]
    fn disjoint_versions_are_refused_naming_both_ranges() {
        let ours = hello("pod-1");
        let mut theirs = hello("pod-0");
        (theirs.min_version, theirs.max_version) = (2, 4);
        let refusal = common_version(&ours, &theirs).unwrap_err();
        assert_eq!(refusal.reason, GoodbyeReason::Version);
        assert_eq!(
            refusal.message,
            "no common protocol version: pod-1 speaks 1..=1, pod-0 offered 2..=4"
        );
    }

    #[test]
    fn an_acceptor_takes_a_lower_named_member_of_its_namespace() {
        let result = check(
            &hello("pod-1"),
            &hello("pod-0"),
            Role::Acceptor,
            None,
            &members(),
        );
        assert_eq!(result, Ok(1));
    }

    #[test]
    fn an_acceptor_refuses_a_pod_that_should_have_been_dialled() {
        let refusal = check(
            &hello("pod-1"),
            &hello("pod-2"),
            Role::Acceptor,
            None,
            &members(),
        )
        .unwrap_err();
        assert_eq!(refusal.reason, GoodbyeReason::Refused);
        assert!(refusal.message.contains("sorts lower dials"), "{refusal:?}");
    }

    #[test]
    fn another_namespace_is_refused_even_with_a_member_name() {
        let mut theirs = hello("pod-0");
        theirs.namespace = "default/billing".into();
        let refusal =
            check(&hello("pod-1"), &theirs, Role::Acceptor, None, &members()).unwrap_err();
        assert!(refusal.message.contains("default/billing"), "{refusal:?}");
    }

    #[test]
    fn a_name_outside_the_member_set_is_refused() {
        let refusal = check(
            &hello("pod-1"),
            &hello("pod-00"),
            Role::Acceptor,
            None,
            &members(),
        )
        .unwrap_err();
        assert!(
            refusal.message.contains("not in pod-1's member set"),
            "{refusal:?}"
        );
    }

    #[test]
    fn this_pods_own_name_is_refused() {
        let refusal = check(
            &hello("pod-1"),
            &hello("pod-1"),
            Role::Acceptor,
            None,
            &members(),
        )
        .unwrap_err();
        assert!(refusal.message.contains("own name"), "{refusal:?}");
    }

    #[test]
    fn an_owner_number_that_does_not_match_the_name_is_refused() {
        let mut theirs = hello("pod-0");
        theirs.owner = 7;
        let refusal =
            check(&hello("pod-1"), &theirs, Role::Acceptor, None, &members()).unwrap_err();
        assert!(refusal.message.contains("owner number is 7"), "{refusal:?}");
    }

    #[test]
    fn a_dialer_refuses_an_answer_from_another_pod_than_it_dialled() {
        let ok = check(
            &hello("pod-1"),
            &hello("pod-2"),
            Role::Dialer,
            Some("pod-2"),
            &members(),
        );
        assert_eq!(ok, Ok(1));
        let refusal = check(
            &hello("pod-0"),
            &hello("pod-2"),
            Role::Dialer,
            Some("pod-1"),
            &members(),
        )
        .unwrap_err();
        assert!(
            refusal.message.contains("dialled pod-1 but pod-2"),
            "{refusal:?}"
        );
    }
}
