//! Conditions as the Kubernetes convention wants them: CamelCase reasons, a message for
//! people, `observedGeneration`, and a `lastTransitionTime` that moves only when the status
//! does (zookeeper-operator merges the same way).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The current time at the API server's precision (whole seconds), so that a condition read
/// back compares equal to the one written.
pub fn now() -> Time {
    let seconds = Timestamp::now().as_second();
    Time(Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// What a condition should say, before its transition time is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: String) -> Self {
        Self {
            type_,
            status,
            reason,
            message,
        }
    }
}

fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Condition types the operator reports; a type it no longer wants (the insecure-identity
/// warning once the switch is off, `CustomDomainsReady` once the domains are gone) is removed.
pub const OPERATOR_CONDITIONS: [&str; 4] = [
    "Accepted",
    "Ready",
    "InsecureUsernameAuthentication",
    "CustomDomainsReady",
];

/// The conditions to write: `desired`, in order, each keeping the `lastTransitionTime` of the
/// current condition of its type when its status has not changed, and taking `now` otherwise.
/// Current conditions of the operator's types that are not desired are dropped; those of other
/// types are kept as they are, after ours: the data plane writes a push subscription's
/// `EndpointValidated` / `EndpointHealthy` (server-side apply, its own field manager), and a
/// status patch of ours must not erase them.
pub fn merge(
    current: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let foreign = current
        .iter()
        .filter(|c| !OPERATOR_CONDITIONS.contains(&c.type_.as_str()))
        .cloned();
    desired
        .iter()
        .map(|d| {
            let status = status_text(d.status);
            let last_transition_time = current
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_string(),
                status: status.to_string(),
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .chain(foreign)
        .collect()
}

/// The status of condition `type_`, if present.
pub fn status_of(conditions: &[Condition], type_: &str) -> Option<bool> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn ready(status: bool, reason: &'static str) -> Desired {
        Desired::new("Ready", status, reason, format!("{reason}!"))
    }

    #[test]
    fn a_new_condition_transitions_now() {
        let merged = merge(&[], &[ready(false, "PodsNotReady")], Some(2), &at(100));
        assert_eq!(merged[0].last_transition_time, at(100));
        assert_eq!(merged[0].status, "False");
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time_even_when_the_reason_changes() {
        let current = merge(&[], &[ready(false, "PodsNotReady")], Some(1), &at(100));
        let merged = merge(&current, &[ready(false, "NotAccepted")], Some(2), &at(200));
        assert_eq!(merged[0].last_transition_time, at(100));
        assert_eq!(merged[0].reason, "NotAccepted");
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn a_changed_status_transitions_now() {
        let current = merge(&[], &[ready(false, "PodsNotReady")], Some(1), &at(100));
        let merged = merge(&current, &[ready(true, "PodsReady")], Some(1), &at(200));
        assert_eq!(merged[0].last_transition_time, at(200));
        assert_eq!(status_of(&merged, "Ready"), Some(true));
    }

    #[test]
    fn merging_what_is_already_there_changes_nothing() {
        let current = merge(&[], &[ready(true, "PodsReady")], Some(1), &at(100));
        assert_eq!(
            merge(&current, &[ready(true, "PodsReady")], Some(1), &at(500)),
            current
        );
    }

    #[test]
    fn the_data_planes_conditions_are_kept_and_a_dropped_warning_goes() {
        let mut current = merge(&[], &[ready(true, "PodsReady")], Some(1), &at(100));
        let warning = Desired::new(
            "InsecureUsernameAuthentication",
            true,
            "DevelopmentIdentityEnabled",
            String::new(),
        );
        current.extend(merge(&[], &[warning], Some(1), &at(100)));
        let mut endpoint = merge(&[], &[ready(false, "DeliveryFailing")], Some(1), &at(150));
        endpoint[0].type_ = "EndpointHealthy".to_string();
        current.extend(endpoint.clone());

        let merged = merge(&current, &[ready(true, "PodsReady")], Some(1), &at(200));
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "EndpointHealthy"]);
        assert_eq!(
            merged[1], endpoint[0],
            "kept exactly as the data plane wrote it"
        );
    }

    #[test]
    fn now_has_whole_seconds_like_the_api_server() {
        assert_eq!(now().0.subsec_nanosecond(), 0);
    }
}
