//! `spec.cluster` and `spec.storage.volumeClaimRetention` of a Namespace.

use super::*;
use std::time::Duration;

#[test]
fn cluster_timing_defaults_to_ten_and_fifteen_seconds_in_the_snapshot() {
    let (snapshot, errors) = compile_yaml("");
    assert!(errors.is_empty(), "{errors:#?}");
    let cluster = snapshot.namespace.expect("the Namespace").cluster;
    assert_eq!(cluster.peer_timeout, Duration::from_secs(10));
    assert_eq!(cluster.member_lease, Duration::from_secs(15));
}

#[test]
fn cluster_timing_set_on_the_namespace_reaches_the_snapshot() {
    let mut objects = objects("");
    objects.namespaces[0].spec.cluster.peer_timeout_seconds = 3;
    objects.namespaces[0].spec.cluster.member_lease_seconds = 30;
    let (snapshots, errors) = compile_all(&objects);
    assert!(errors.is_empty(), "{errors:#?}");
    let snapshot = &snapshots[&("default".to_string(), "ns1".to_string())];
    let cluster = snapshot.namespace.as_ref().unwrap().cluster;
    assert_eq!(cluster.peer_timeout, Duration::from_secs(3));
    assert_eq!(cluster.member_lease, Duration::from_secs(30));
}

#[test]
fn a_peer_timeout_not_below_the_member_lease_is_refused() {
    let mut objects = objects("");
    objects.namespaces[0].spec.cluster.peer_timeout_seconds = 15;
    let (_, errors) = compile_all(&objects);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "spec.cluster.peerTimeoutSeconds");
    assert!(
        errors[0]
            .message
            .starts_with("15 must be less than memberLeaseSeconds (15)"),
        "{}",
        errors[0].message
    );
}

#[test]
fn cluster_timing_outside_its_ranges_is_refused() {
    let mut objects = objects("");
    objects.namespaces[0].spec.cluster.peer_timeout_seconds = 0;
    objects.namespaces[0].spec.cluster.member_lease_seconds = 301;
    let (_, errors) = compile_all(&objects);
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "spec.cluster.memberLeaseSeconds",
            "spec.cluster.peerTimeoutSeconds"
        ],
        "{errors:#?}"
    );
}

#[test]
fn volume_claim_retention_reads_retain_and_delete() {
    let extra = "apiVersion: gridline.dev/v1alpha1\nkind: Namespace\nmetadata: {name: ns2}\nspec: {storage: {volumeClaimRetention: {whenScaled: Delete}}, listeners: {mqttTls: {enabled: false, port: 8883}, https: {enabled: false, port: 443}}}\n";
    let objects = objects(extra);
    let retention = &objects.namespaces[1].spec.storage.volume_claim_retention;
    use crate::types::namespace::VolumeClaimRetentionPolicy::{Delete, Retain};
    assert_eq!(
        (retention.when_scaled, retention.when_deleted),
        (Delete, Retain)
    );
}
