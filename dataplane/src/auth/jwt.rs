//! OAuth 2.0 JWT authentication of MQTT 5 clients (SPEC §D): the token comes as the CONNECT's
//! (or a re-authenticating AUTH's) Authentication Data. It must be signed by a key of the
//! issuer its `iss` claim names, among the Namespace's `jwt.issuers` (keys from the issuer's
//! JWKS), carry one of that issuer's audiences, and be within `nbf`..`exp` (with
//! [`LEEWAY_SECS`] of clock skew either way). `exp` is required: the broker disconnects the
//! session when it passes, so a token without one would never end.
//!
//! A key is chosen by the token's `kid` when it has one, else every key of the issuer is
//! tried. A key's family must fit the token's `alg` (jsonwebtoken refuses an RSA key for
//! HS256 and the like), and a JWK that names its own `alg` is used for that one only.

use super::AuthFailure;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gridline_crds::model::CompiledJwtIssuer;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use std::sync::Arc;

/// Clock skew tolerated on `exp` and `nbf`, seconds.
pub const LEEWAY_SECS: u64 = 5;

/// A token that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `exp` claim, Unix seconds.
    pub expires_at: u64,
}

/// The Namespace's issuers with their keys parsed, rebuilt only when the issuers change.
#[derive(Default)]
pub struct JwtVerifier {
    cached: parking_lot::Mutex<Option<Parsed>>,
}

/// The issuers as configured, and with their keys parsed.
struct Parsed {
    source: Vec<CompiledJwtIssuer>,
    issuers: Arc<Vec<Issuer>>,
}

struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
}

struct Key {
    id: Option<String>,
    /// The `alg` the JWK restricts itself to.
    algorithm: Option<String>,
    key: DecodingKey,
}

/// The claims read before the signature is checked, to choose the issuer.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

/// The time claims of a verified token.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    nbf: Option<u64>,
}

impl JwtVerifier {
    /// Verify `token` against `issuers` at `now` (Unix seconds).
    pub fn verify(
        &self,
        issuers: &[CompiledJwtIssuer],
        token: &str,
        now: u64,
    ) -> Result<VerifiedToken, AuthFailure> {
        if issuers.is_empty() {
            return Err(AuthFailure::MethodNotConfigured);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::MalformedToken)?;
        let issuer_name = unverified_issuer(token)?;
        let parsed = self.issuers(issuers);
        let issuer = parsed
            .iter()
            .find(|i| i.issuer == issuer_name)
            .ok_or(AuthFailure::UnknownIssuer)?;
        let mut validation = Validation::new(header.alg);
        // The times are checked below against the caller's `now`, not jsonwebtoken's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let alg = format!("{:?}", header.alg);
        let candidates = issuer.keys.iter().filter(|k| {
            header
                .kid
                .as_ref()
                .is_none_or(|kid| k.id.as_ref() == Some(kid))
                && k.algorithm.as_ref().is_none_or(|a| *a == alg)
        });
        let mut failure = AuthFailure::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    if data.claims.exp.saturating_add(LEEWAY_SECS) <= now {
                        return Err(AuthFailure::TokenExpired);
                    }
                    if data
                        .claims
                        .nbf
                        .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
                    {
                        return Err(AuthFailure::TokenNotYetValid);
                    }
                    return Ok(VerifiedToken {
                        expires_at: data.claims.exp,
                    });
                }
                Err(error) => match failure_of(error.kind()) {
                    // Another key may still verify it.
                    AuthFailure::BadSignature => {}
                    // The signature verified: the claims are what is wrong.
                    other => failure = other,
                },
            }
            if failure != AuthFailure::BadSignature {
                break;
            }
        }
        Err(failure)
    }

    fn issuers(&self, issuers: &[CompiledJwtIssuer]) -> Arc<Vec<Issuer>> {
        let mut cached = self.cached.lock();
        if let Some(parsed) = cached.as_ref()
            && parsed.source.as_slice() == issuers
        {
            return parsed.issuers.clone();
        }
        let parsed = Arc::new(issuers.iter().map(parse_issuer).collect::<Vec<_>>());
        *cached = Some(Parsed {
            source: issuers.to_vec(),
            issuers: parsed.clone(),
        });
        parsed
    }
}

/// The `iss` claim, read without verifying anything.
fn unverified_issuer(token: &str) -> Result<String, AuthFailure> {
    let payload = token.split('.').nth(1).ok_or(AuthFailure::MalformedToken)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| AuthFailure::MalformedToken)?;
    let claims: Unverified =
        serde_json::from_slice(&bytes).map_err(|_| AuthFailure::MalformedToken)?;
    claims.iss.ok_or(AuthFailure::MalformedToken)
}

/// An issuer's usable keys: a JWK that does not parse, or is for encryption, is skipped
/// (one odd key must not lock out the others).
fn parse_issuer(issuer: &CompiledJwtIssuer) -> Issuer {
    let document: serde_json::Value = serde_json::from_slice(&issuer.jwks_json).unwrap_or_default();
    let keys = document
        .get("keys")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
        .filter_map(|value| serde_json::from_value::<Jwk>(value.clone()).ok())
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            Some(Key {
                id: jwk.common.key_id.clone(),
                algorithm: jwk.common.key_algorithm.map(|a| format!("{a:?}")),
                key: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect();
    Issuer {
        issuer: issuer.issuer.clone(),
        audiences: issuer.audiences.clone(),
        keys,
    }
}

fn failure_of(kind: &ErrorKind) -> AuthFailure {
    match kind {
        ErrorKind::ExpiredSignature => AuthFailure::TokenExpired,
        ErrorKind::ImmatureSignature => AuthFailure::TokenNotYetValid,
        ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
        ErrorKind::InvalidIssuer => AuthFailure::UnknownIssuer,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::Crypto(_) => AuthFailure::BadSignature,
        _ => AuthFailure::MalformedToken,
    }
}

#[cfg(test)]
pub(crate) mod tests;
