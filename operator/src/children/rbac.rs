//! The identity of a Namespace's pods and what it may do: read its Kubernetes namespace's
//! Gridline objects and Secrets (the data plane's configuration source reflects them) and keep
//! the membership Leases (DESIGN §5). Nothing else: the peer certificate is mounted from its
//! Secret, not read through the API.

use super::conventions::*;
use gridline_crds::types::{GROUP, Namespace};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;

/// The plurals of the seven Gridline kinds.
pub const GRIDLINE_RESOURCES: [&str; 7] = [
    "namespaces",
    "topics",
    "eventsubscriptions",
    "clients",
    "clientgroups",
    "topicspaces",
    "permissionbindings",
];

const READ: [&str; 3] = ["get", "list", "watch"];

pub fn service_account(ns: &Namespace) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(ns, base_name(ns)),
        ..ServiceAccount::default()
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// The data plane's rules. The operator must hold every one of them itself (RBAC refuses to
/// grant what the granter lacks), so its ClusterRole is a superset.
pub fn dataplane_rules() -> Vec<PolicyRule> {
    vec![
        rule(GROUP, &GRIDLINE_RESOURCES, &READ),
        // Push delivery's EndpointValidated / EndpointHealthy conditions (the data plane's
        // delivery/status_writer.rs applies them, nothing else).
        rule(GROUP, &["eventsubscriptions/status"], &["get", "patch"]),
        rule("", &["secrets"], &READ),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
    ]
}

pub fn role(ns: &Namespace) -> Role {
    Role {
        metadata: child_meta(ns, base_name(ns)),
        rules: Some(dataplane_rules()),
    }
}

pub fn role_binding(ns: &Namespace) -> RoleBinding {
    RoleBinding {
        metadata: child_meta(ns, base_name(ns)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: base_name(ns),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: base_name(ns),
            namespace: ns.namespace(),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_namespaces::namespace;
    use super::*;
    use serde_json::json;

    #[test]
    fn the_role_reads_gridline_objects_and_secrets_and_manages_leases() {
        let role = role(&namespace(json!({})));
        assert_eq!(role.metadata.name.as_deref(), Some("orders-gridline"));
        assert_eq!(role.metadata.namespace.as_deref(), Some("shop"));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].api_groups.as_ref().unwrap(), &["gridline.dev"]);
        assert_eq!(rules[0].resources.as_ref().unwrap().len(), 7);
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        // The only write on Gridline objects: push delivery conditions in the status.
        assert_eq!(
            rules[1].resources.as_ref().unwrap(),
            &["eventsubscriptions/status"]
        );
        assert_eq!(rules[1].verbs, ["get", "patch"]);
        assert_eq!(rules[2].api_groups.as_ref().unwrap(), &[""]);
        assert_eq!(rules[2].resources.as_ref().unwrap(), &["secrets"]);
        assert_eq!(rules[2].verbs, ["get", "list", "watch"]);
        assert_eq!(
            rules[3].api_groups.as_ref().unwrap(),
            &["coordination.k8s.io"]
        );
        // Membership (issue 15): each pod creates, renews and releases its own Lease and
        // watches the others'. No Secret write: the peer certificate is mounted.
        assert_eq!(rules[3].resources.as_ref().unwrap(), &["leases"]);
        assert_eq!(
            rules[3].verbs,
            [
                "get", "list", "watch", "create", "update", "patch", "delete"
            ]
        );
        // Read-only on Secrets and Gridline objects: no write verb sneaks in.
        for rule in [&rules[0], &rules[2]] {
            assert!(rule.verbs.iter().all(|v| READ.contains(&v.as_str())));
        }
    }

    #[test]
    fn the_binding_gives_the_role_to_the_pods_service_account() {
        let ns = namespace(json!({}));
        let binding = role_binding(&ns);
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(binding.role_ref.name, "orders-gridline");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.name, "orders-gridline");
        assert_eq!(subject.namespace.as_deref(), Some("shop"));
        assert_eq!(
            service_account(&ns).metadata.name.as_deref(),
            Some("orders-gridline")
        );
    }

    #[test]
    fn every_rbac_object_is_owned_by_the_namespace() {
        let ns = namespace(json!({}));
        for meta in [
            service_account(&ns).metadata,
            role(&ns).metadata,
            role_binding(&ns).metadata,
        ] {
            assert_eq!(meta.owner_references.unwrap()[0].name, "orders");
        }
    }
}
