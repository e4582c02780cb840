use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example.com";
const AUDIENCE: &str = "gridline-dev";

/// A P-256 signing key and its public JWK (as `kid`).
pub(crate) fn es256_key(kid: Option<&str>) -> (EncodingKey, Value) {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw();
    let mut jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    });
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    (EncodingKey::from_ec_der(&key.serialize_der()), jwk)
}

pub(crate) fn issuer(jwks: &[Value]) -> CompiledJwtIssuer {
    CompiledJwtIssuer {
        issuer: ISSUER.into(),
        audiences: vec!["other".into(), AUDIENCE.into()],
        jwks_json: serde_json::to_vec(&json!({ "keys": jwks })).unwrap(),
    }
}

pub(crate) fn sign(key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(exp: u64) -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "exp": exp, "sub": "device-1" })
}

#[test]
fn a_token_of_a_trusted_issuer_verifies_and_gives_its_expiry() {
    let (key, jwk) = es256_key(Some("k1"));
    let token = sign(&key, Some("k1"), claims(NOW + 60));
    let verified = JwtVerifier::default().verify(&[issuer(&[jwk])], &token, NOW);
    assert_eq!(
        verified,
        Ok(VerifiedToken {
            expires_at: NOW + 60
        })
    );
}

#[test]
fn each_wrong_claim_has_its_reason() {
    let (key, jwk) = es256_key(None);
    let issuers = [issuer(&[jwk])];
    let verifier = JwtVerifier::default();
    let cases = [
        (
            json!({"iss": "https://evil.example.com", "aud": AUDIENCE, "exp": NOW + 60}),
            AuthFailure::UnknownIssuer,
        ),
        (
            json!({"iss": ISSUER, "aud": "someone-else", "exp": NOW + 60}),
            AuthFailure::WrongAudience,
        ),
        (
            json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW - 60}),
            AuthFailure::TokenExpired,
        ),
        (
            json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 600, "nbf": NOW + 60}),
            AuthFailure::TokenNotYetValid,
        ),
        (
            json!({"iss": ISSUER, "aud": AUDIENCE}),
            AuthFailure::MalformedToken,
        ),
        (
            json!({"iss": ISSUER, "exp": NOW + 60}),
            AuthFailure::MalformedToken,
        ),
        (
            json!({"aud": AUDIENCE, "exp": NOW + 60}),
            AuthFailure::MalformedToken,
        ),
    ];
    for (claims, expected) in cases {
        let token = sign(&key, None, claims.clone());
        assert_eq!(
            verifier.verify(&issuers, &token, NOW),
            Err(expected),
            "{claims}"
        );
    }
}

#[test]
fn the_clock_may_be_a_few_seconds_off_either_way() {
    let (key, jwk) = es256_key(None);
    let issuers = [issuer(&[jwk])];
    let verifier = JwtVerifier::default();
    let just_expired = sign(&key, None, claims(NOW - 2));
    assert!(verifier.verify(&issuers, &just_expired, NOW).is_ok());
    let almost_valid = sign(
        &key,
        None,
        json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60, "nbf": NOW + 2}),
    );
    assert!(verifier.verify(&issuers, &almost_valid, NOW).is_ok());
}

#[test]
fn a_token_signed_by_another_key_has_a_bad_signature() {
    let (_, trusted) = es256_key(None);
    let (stranger, _) = es256_key(None);
    let token = sign(&stranger, None, claims(NOW + 60));
    assert_eq!(
        JwtVerifier::default().verify(&[issuer(&[trusted])], &token, NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn the_kid_picks_the_key_and_without_one_every_key_is_tried() {
    let (first, first_jwk) = es256_key(Some("first"));
    let (second, second_jwk) = es256_key(Some("second"));
    let issuers = [issuer(&[first_jwk, second_jwk])];
    let verifier = JwtVerifier::default();
    let by_kid = sign(&second, Some("second"), claims(NOW + 60));
    assert!(verifier.verify(&issuers, &by_kid, NOW).is_ok());
    let without_kid = sign(&second, None, claims(NOW + 60));
    assert!(verifier.verify(&issuers, &without_kid, NOW).is_ok());
    let wrong_kid = sign(&first, Some("second"), claims(NOW + 60));
    assert_eq!(
        verifier.verify(&issuers, &wrong_kid, NOW),
        Err(AuthFailure::BadSignature)
    );
    let unknown_kid = sign(&first, Some("third"), claims(NOW + 60));
    assert_eq!(
        verifier.verify(&issuers, &unknown_kid, NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn an_hmac_token_made_with_the_public_key_is_refused() {
    let (_, jwk) = es256_key(None);
    let public = serde_json::to_vec(&jwk).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(NOW + 60),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        JwtVerifier::default().verify(&[issuer(&[jwk])], &token, NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn a_jwk_that_names_its_algorithm_serves_only_that_one() {
    let (key, mut jwk) = es256_key(None);
    jwk["alg"] = json!("ES384");
    let token = sign(&key, None, claims(NOW + 60));
    assert_eq!(
        JwtVerifier::default().verify(&[issuer(&[jwk])], &token, NOW),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn an_unusable_key_in_the_set_does_not_lock_out_the_others() {
    let (key, jwk) = es256_key(None);
    let odd = json!({"kty": "unknown", "x": "y"});
    let token = sign(&key, None, claims(NOW + 60));
    assert!(
        JwtVerifier::default()
            .verify(&[issuer(&[odd, jwk])], &token, NOW)
            .is_ok()
    );
}

#[test]
fn malformed_tokens_and_missing_issuers_are_refused() {
    let (_, jwk) = es256_key(None);
    let verifier = JwtVerifier::default();
    for token in ["", "abc", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.!!!.x"] {
        assert_eq!(
            verifier.verify(&[issuer(std::slice::from_ref(&jwk))], token, NOW),
            Err(AuthFailure::MalformedToken),
            "{token}"
        );
    }
    assert_eq!(
        verifier.verify(&[], "a.b.c", NOW),
        Err(AuthFailure::MethodNotConfigured)
    );
}
