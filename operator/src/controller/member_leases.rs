//! The garbage of scale-downs: a pod that drains releases its member Lease, but one that was
//! killed cannot, and its Lease would stay forever. The Namespace reconcile lists the
//! Namespace's member Leases and deletes those expired for more than
//! [`GARBAGE_AFTER`](crate::status::members::GARBAGE_AFTER) whose pod no longer exists.
//! A pod that still exists keeps its Lease: it may come back and renew it.

use crate::error::{Error, Result};
use crate::status::members::{GARBAGE_AFTER, MEMBER_LEASE_SELECTOR, MemberLease, NAMESPACE_LABEL};
use gridline_crds::types::Namespace;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use std::time::Duration;
use tracing::info;

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// The Leases deleted.
    pub deleted: Vec<String>,
    /// When a Lease expired less than [`GARBAGE_AFTER`] ago becomes garbage, if any.
    pub next_due: Option<Duration>,
}

/// Delete the member Leases of `ns` that are garbage at `now`.
pub async fn collect_garbage(
    client: &Client,
    ns: &Namespace,
    k8s_namespace: &str,
    now: Timestamp,
) -> Result<Collected> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), k8s_namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), k8s_namespace);
    let request_error = |verb: &'static str, kind: &'static str, name: String| {
        move |source: kube::Error| Error::Request {
            verb,
            kind,
            namespace: k8s_namespace.to_string(),
            name,
            source: Box::new(source),
        }
    };
    let selector = format!(
        "{MEMBER_LEASE_SELECTOR},{NAMESPACE_LABEL}={}",
        ns.name_any()
    );
    let listed = leases
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(request_error("listing", "Lease", selector.clone()))?;
    let mut collected = Collected::default();
    for member in listed.items.iter().filter_map(MemberLease::from_lease) {
        let Some(expired_for) = member.expired_for(now) else {
            continue;
        };
        if expired_for < GARBAGE_AFTER {
            let due = GARBAGE_AFTER - expired_for;
            collected.next_due = Some(collected.next_due.map_or(due, |d| d.min(due)));
            continue;
        }
        let pod = member.pod().to_string();
        let present =
            pods.get_opt(&pod)
                .await
                .map_err(request_error("reading", "Pod", pod.clone()))?;
        if present.is_some() {
            continue;
        }
        // Only the Lease as read: one renewed meanwhile (its pod is back) is not garbage.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: member.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match leases.delete(&member.lease_name, &params).await {
            Ok(_) => {
                info!(lease = %member.lease_name, %pod, expired_s = expired_for.as_secs(),
                    "deleted the member Lease of a pod that is gone");
                collected.deleted.push(member.lease_name.clone());
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(source) => {
                return Err(request_error(
                    "deleting",
                    "Lease",
                    member.lease_name.clone(),
                )(source));
            }
        }
    }
    Ok(collected)
}

#[cfg(test)]
#[path = "member_leases_tests.rs"]
mod tests;
