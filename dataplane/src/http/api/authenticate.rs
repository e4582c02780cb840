//! The credentials of an HTTP request, as Event Grid takes them: `Authorization:
//! SharedAccessKey <key>` (what the Azure SDKs send), the `aeg-sas-key` header, or a SAS token
//! in `Authorization: SharedAccessSignature <token>` or the `aeg-sas-token` header. Only the
//! first of these present counts. Verification is [`crate::auth`]'s.

use crate::auth::{AuthError, RequestTarget, SasKeys};
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::request::Parts;
use chrono::Utc;

/// What a request presents.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    Key(&'a str),
    Token(&'a str),
}

/// Authenticate a request against the Namespace's keys (before its body is read).
pub fn authenticate(namespace: &str, keys: &[String], parts: &Parts) -> Result<(), AuthError> {
    if keys.is_empty() {
        // Whatever the request presents: say why nothing can work.
        return Err(AuthError::NoKeysConfigured {
            namespace: namespace.to_string(),
        });
    }
    let keys = SasKeys::new(namespace, keys);
    match presented(parts)? {
        Presented::Key(key) => keys.verify_key(key),
        Presented::Token(token) => {
            let target = RequestTarget {
                host: parts
                    .headers
                    .get(HOST)
                    .and_then(|host| host.to_str().ok())
                    .or_else(|| parts.uri.authority().map(|a| a.as_str())),
                path: parts.uri.path(),
            };
            keys.verify_token(token, &target, Utc::now())
        }
    }
}

fn presented(parts: &Parts) -> Result<Presented<'_>, AuthError> {
    let header = |name: &str| {
        parts.headers.get(name).map(|value| {
            value
                .to_str()
                .map(str::trim)
                .map_err(|_| AuthError::MalformedToken(format!("the {name} header is not ASCII")))
        })
    };
    if let Some(value) = header(AUTHORIZATION.as_str()) {
        let value = value?;
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        let credential = credential.trim();
        return if scheme.eq_ignore_ascii_case("SharedAccessKey") {
            Ok(Presented::Key(credential))
        } else if scheme.eq_ignore_ascii_case("SharedAccessSignature") {
            Ok(Presented::Token(credential))
        } else {
            Err(AuthError::UnsupportedScheme(scheme.to_string()))
        };
    }
    if let Some(key) = header("aeg-sas-key") {
        return Ok(Presented::Key(key?));
    }
    if let Some(token) = header("aeg-sas-token") {
        return Ok(Presented::Token(token?));
    }
    Err(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sign_token;
    use axum::http::Request;

    const KEY: &str = "dev-key-1-change-me";

    fn keys() -> Vec<String> {
        vec![KEY.to_string(), "dev-key-2-change-me".to_string()]
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::post("/topics/orders:publish?api-version=2024-06-01");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn check(headers: &[(&str, &str)]) -> Result<(), AuthError> {
        authenticate("dev", &keys(), &parts(headers))
    }

    fn token(resource: &str) -> String {
        sign_token(KEY, resource, "2999-01-01T00:00:00Z")
    }

    #[test]
    fn a_shared_access_key_is_taken_from_authorization_or_aeg_sas_key() {
        assert_eq!(
            check(&[("authorization", &format!("SharedAccessKey {KEY}"))]),
            Ok(())
        );
        assert_eq!(
            check(&[("authorization", &format!("sharedaccesskey  {KEY} "))]),
            Ok(())
        );
        assert_eq!(check(&[("aeg-sas-key", KEY)]), Ok(()));
    }

    #[test]
    fn a_wrong_key_is_refused() {
        assert_eq!(
            check(&[("authorization", "SharedAccessKey nope")]),
            Err(AuthError::WrongKey)
        );
        assert_eq!(check(&[("aeg-sas-key", "nope")]), Err(AuthError::WrongKey));
        assert_eq!(
            check(&[("authorization", "SharedAccessKey")]),
            Err(AuthError::WrongKey)
        );
    }

    #[test]
    fn a_sas_token_is_taken_from_authorization_or_aeg_sas_token() {
        let token = token("http://ns.local:8080/topics/orders");
        let host = ("host", "ns.local:8080");
        assert_eq!(
            check(&[
                host,
                ("authorization", &format!("SharedAccessSignature {token}"))
            ]),
            Ok(())
        );
        assert_eq!(check(&[host, ("aeg-sas-token", &token)]), Ok(()));
    }

    #[test]
    fn a_token_for_another_host_is_refused() {
        let token = token("http://elsewhere/topics/orders");
        assert!(matches!(
            check(&[("host", "ns.local"), ("aeg-sas-token", &token)]),
            Err(AuthError::WrongResource(_))
        ));
    }

    #[test]
    fn no_credentials_or_another_scheme_is_refused() {
        assert_eq!(check(&[]), Err(AuthError::Missing));
        assert_eq!(
            check(&[("authorization", "Bearer eyJ0eXAi")]),
            Err(AuthError::UnsupportedScheme("Bearer".into()))
        );
    }

    #[test]
    fn authorization_wins_over_the_other_headers() {
        assert_eq!(
            check(&[
                ("authorization", "SharedAccessKey nope"),
                ("aeg-sas-key", KEY)
            ]),
            Err(AuthError::WrongKey)
        );
    }

    #[test]
    fn a_namespace_without_keys_refuses_everything() {
        assert_eq!(
            authenticate("dev", &[], &parts(&[("aeg-sas-key", "")])),
            Err(AuthError::NoKeysConfigured {
                namespace: "dev".into()
            })
        );
        assert!(matches!(
            authenticate("dev", &[], &parts(&[])),
            Err(AuthError::NoKeysConfigured { .. })
        ));
    }
}
