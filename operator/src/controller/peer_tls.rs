//! Keep a Namespace's peer TLS Secrets (`children::peer_tls` builds and judges them): read
//! the CA, create it when it is missing and never replace it; read the leaf, and issue it
//! again from that CA when it is missing, unusable, of another CA, or expiring. A reconcile
//! that finds both in order writes nothing.

use crate::children::peer_tls::{
    LeafVerdict, PeerCa, PeerTlsError, ca_secret, judge_leaf, leaf_secret,
};
use crate::children::{peer_ca_secret_name, peer_tls_secret_name};
use crate::error::{Error, Result};
use crate::options::FIELD_MANAGER;
use gridline_crds::types::Namespace;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use std::time::SystemTime;
use tracing::info;

/// What [`ensure_peer_tls`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsOutcome {
    /// Whether the CA was made now (else it was there).
    pub ca_created: bool,
    /// Why the leaf was issued, or `Current` when it was kept.
    pub leaf: LeafVerdict,
}

/// Make sure the CA and the leaf Secrets of `ns` exist and the leaf is good at `now`.
pub async fn ensure_peer_tls(
    client: &Client,
    ns: &Namespace,
    k8s_namespace: &str,
    now: SystemTime,
) -> Result<PeerTlsOutcome> {
    let api: Api<Secret> = Api::namespaced(client.clone(), k8s_namespace);
    let peer_tls_error = |source: PeerTlsError| Error::PeerTls {
        namespace: k8s_namespace.to_string(),
        name: ns.name_any(),
        source,
    };
    let request_error = |verb: &'static str, name: &str| {
        let name = name.to_string();
        move |source: kube::Error| Error::Request {
            verb,
            kind: "Secret",
            namespace: k8s_namespace.to_string(),
            name,
            source: Box::new(source),
        }
    };

    let ca_name = peer_ca_secret_name(ns);
    let (ca, ca_created) = match api
        .get_opt(&ca_name)
        .await
        .map_err(request_error("reading", &ca_name))?
    {
        Some(secret) => (PeerCa::from_secret(&secret).map_err(peer_tls_error)?, false),
        None => {
            let ca = PeerCa::generate(&ns.name_any(), now).map_err(peer_tls_error)?;
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PostParams::default()
            };
            match api.create(&params, &ca_secret(ns, &ca)).await {
                Ok(_) => {
                    info!(secret = %ca_name, "created the peer CA");
                    (ca, true)
                }
                // Made meanwhile (by a previous leader finishing its reconcile): that one is
                // the CA, ours is dropped.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let secret = api
                        .get(&ca_name)
                        .await
                        .map_err(request_error("reading", &ca_name))?;
                    (PeerCa::from_secret(&secret).map_err(peer_tls_error)?, false)
                }
                Err(source) => return Err(request_error("creating", &ca_name)(source)),
            }
        }
    };

    let leaf_name = peer_tls_secret_name(ns);
    let current = api
        .get_opt(&leaf_name)
        .await
        .map_err(request_error("reading", &leaf_name))?;
    let verdict = judge_leaf(current.as_ref(), &ca, now);
    if verdict != LeafVerdict::Current {
        let leaf = ca.issue_leaf(now).map_err(peer_tls_error)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(
            &leaf_name,
            &params,
            &Patch::Apply(&leaf_secret(ns, &ca, &leaf)),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: "Secret",
            namespace: k8s_namespace.to_string(),
            name: leaf_name.clone(),
            source: Box::new(source),
        })?;
        info!(secret = %leaf_name, reason = ?verdict, "issued the peer certificate");
    }
    Ok(PeerTlsOutcome {
        ca_created,
        leaf: verdict,
    })
}

#[cfg(test)]
#[path = "peer_tls_tests.rs"]
mod tests;
