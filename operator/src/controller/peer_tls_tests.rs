use super::*;
use crate::children::peer_tls::LEAF_VALIDITY;
use crate::fixtures::{Expect, mock_client};
use crate::testing::namespace;
use base64::Engine;
use http::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

const CA_PATH: &str = "/api/v1/namespaces/shop/secrets/orders-gridline-peer-ca";
const LEAF_PATH: &str = "/api/v1/namespaces/shop/secrets/orders-gridline-peer-tls";
const CREATE: &str = "/api/v1/namespaces/shop/secrets?&fieldManager=gridline-operator";
const APPLY_QUERY: &str = "?&force=true&fieldManager=gridline-operator";

fn get(path: &str) -> Expect {
    Expect::new(Method::GET, path)
}

fn not_found(path: &str) -> Expect {
    get(path).fail(StatusCode::NOT_FOUND, "NotFound")
}

fn found(path: &str, secret: &Secret) -> Expect {
    get(path).respond(StatusCode::OK, serde_json::to_value(secret).unwrap())
}

fn apply_leaf() -> Expect {
    Expect::new(Method::PATCH, format!("{LEAF_PATH}{APPLY_QUERY}"))
        .echo()
        .body(|b| {
            assert_eq!(b["kind"], "Secret");
            assert_eq!(b["type"], "kubernetes.io/tls");
            assert_eq!(b["metadata"]["ownerReferences"][0]["name"], "orders");
            assert_eq!(
                b["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "gridline-operator"
            );
            let keys: Vec<&String> = b["data"].as_object().unwrap().keys().collect();
            assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
        })
}

fn pem_of(body: &Value, key: &str) -> String {
    let encoded = body["data"][key].as_str().expect("a data key");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

fn secret_of(body: &Value) -> Secret {
    serde_json::from_value(body.clone()).unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_601_600)
}

#[tokio::test]
async fn a_new_namespace_gets_a_ca_created_and_a_leaf_applied() {
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                not_found(CA_PATH),
                Expect::new(Method::POST, CREATE).echo().body(|b| {
                    assert_eq!(b["metadata"]["name"], "orders-gridline-peer-ca");
                    assert_eq!(b["type"], "Opaque");
                    assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "Namespace");
                    let keys: Vec<&String> = b["data"].as_object().unwrap().keys().collect();
                    assert_eq!(keys, ["ca.crt", "ca.key"]);
                }),
                not_found(LEAF_PATH),
                apply_leaf(),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = ensure_peer_tls(&client, &namespace("orders"), "shop", now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PeerTlsOutcome {
            ca_created: true,
            leaf: LeafVerdict::Missing
        }
    );
    let bodies = script.await.unwrap();
    // The leaf applied is the created CA's, and carries that CA as ca.crt.
    let ca = PeerCa::from_secret(&secret_of(&bodies[1])).unwrap();
    assert_eq!(pem_of(&bodies[3], "ca.crt"), ca.cert_pem);
    assert_eq!(
        judge_leaf(Some(&secret_of(&bodies[3])), &ca, now()),
        LeafVerdict::Current
    );
}

#[tokio::test]
async fn a_second_reconcile_reads_both_secrets_and_writes_nothing() {
    let ns = namespace("orders");
    let ca = PeerCa::generate("orders", now()).unwrap();
    let leaf = ca.issue_leaf(now()).unwrap();
    let (client, mut server) = mock_client();
    let (ca_secret, leaf_secret) = (ca_secret(&ns, &ca), leaf_secret(&ns, &ca, &leaf));
    let script = tokio::spawn(async move {
        server
            .run(vec![
                found(CA_PATH, &ca_secret),
                found(LEAF_PATH, &leaf_secret),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let outcome = ensure_peer_tls(&client, &ns, "shop", now()).await.unwrap();
    assert_eq!(outcome.leaf, LeafVerdict::Current);
    assert!(!outcome.ca_created);
    script.await.unwrap();
}

/// The leaf is re-issued from the CA that is there; the CA is only read.
async fn reissue(leaf: &Secret, ca: &PeerCa, at: SystemTime) -> PeerTlsOutcome {
    let ns = namespace("orders");
    let (client, mut server) = mock_client();
    let (ca_secret, leaf) = (ca_secret(&ns, ca), leaf.clone());
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                found(CA_PATH, &ca_secret),
                found(LEAF_PATH, &leaf),
                apply_leaf(),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = ensure_peer_tls(&client, &ns, "shop", at).await.unwrap();
    let bodies = script.await.unwrap();
    let written = secret_of(&bodies[2]);
    assert_eq!(judge_leaf(Some(&written), ca, at), LeafVerdict::Current);
    outcome
}

#[tokio::test]
async fn an_expiring_leaf_is_reissued_from_the_existing_ca() {
    let ns = namespace("orders");
    let ca = PeerCa::generate("orders", now()).unwrap();
    let old = leaf_secret(&ns, &ca, &ca.issue_leaf(now()).unwrap());
    let later = now() + LEAF_VALIDITY - Duration::from_secs(10 * 24 * 60 * 60);
    let outcome = reissue(&old, &ca, later).await;
    assert!(
        matches!(outcome.leaf, LeafVerdict::Expiring { .. }),
        "{outcome:?}"
    );
    assert!(!outcome.ca_created);
}

#[tokio::test]
async fn a_leaf_of_another_ca_is_reissued_and_the_ca_is_kept() {
    let ns = namespace("orders");
    let ca = PeerCa::generate("orders", now()).unwrap();
    let other = PeerCa::generate("orders", now()).unwrap();
    let foreign = leaf_secret(&ns, &other, &other.issue_leaf(now()).unwrap());
    let outcome = reissue(&foreign, &ca, now()).await;
    assert_eq!(outcome.leaf, LeafVerdict::OtherCa);
}

#[tokio::test]
async fn a_ca_made_meanwhile_wins_over_ours() {
    let ns = namespace("orders");
    let theirs = PeerCa::generate("orders", now()).unwrap();
    let (client, mut server) = mock_client();
    let their_secret = ca_secret(&ns, &theirs);
    let script = tokio::spawn(async move {
        let bodies = server
            .run(vec![
                not_found(CA_PATH),
                Expect::new(Method::POST, CREATE).fail(StatusCode::CONFLICT, "AlreadyExists"),
                found(CA_PATH, &their_secret),
                not_found(LEAF_PATH),
                apply_leaf(),
            ])
            .await;
        server.expect_no_more(Duration::from_millis(100)).await;
        bodies
    });
    let outcome = ensure_peer_tls(&client, &ns, "shop", now()).await.unwrap();
    assert!(!outcome.ca_created);
    let bodies = script.await.unwrap();
    assert_eq!(pem_of(&bodies[4], "ca.crt"), theirs.cert_pem);
}

#[tokio::test]
async fn an_unusable_ca_is_an_error_naming_the_secret_and_nothing_is_written() {
    let ns = namespace("orders");
    let ca = PeerCa::generate("orders", now()).unwrap();
    let mut broken = ca_secret(&ns, &ca);
    broken.data.as_mut().unwrap().remove("ca.key");
    let (client, mut server) = mock_client();
    let script = tokio::spawn(async move {
        server.run(vec![found(CA_PATH, &broken)]).await;
        server.expect_no_more(Duration::from_millis(100)).await;
    });
    let error = ensure_peer_tls(&client, &ns, "shop", now())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PeerTls { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("Secret shop/orders-gridline-peer-ca holds no usable peer CA"),
        "{error}"
    );
    script.await.unwrap();
}
