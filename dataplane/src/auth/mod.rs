//! Who may talk to the data plane: the Namespace's shared access keys, presented as they
//! are or as SAS tokens signed with them ([`sas`], the HTTP API); MQTT client certificates
//! ([`x509`]) and OAuth 2.0 JWTs ([`jwt`]), which `mqtt::authenticate` applies at CONNECT.
//!
//! Nothing in this module logs or returns a key, a token or a signature: an [`AuthError`]
//! (HTTP) or an [`AuthFailure`] (MQTT) names what was wrong in words safe to log.

mod failure;
pub mod jwt;
pub mod sas;
pub mod x509;

pub use failure::AuthFailure;
pub use sas::{RequestTarget, SasKeys, sign_token};

/// Why a request was not authenticated. [`AuthError::reason`] is the bounded metric label;
/// `Display` is the message for the client (and the log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The Namespace has no keys, so nothing can authenticate.
    #[error(
        "no shared access keys are configured for Namespace '{namespace}': set spec.sasKeys.secretName to a Secret holding key1 and/or key2"
    )]
    NoKeysConfigured { namespace: String },
    /// No credential at all.
    #[error(
        "the request carries no credentials: send 'Authorization: SharedAccessKey <key>', the header 'aeg-sas-key: <key>', or a SAS token ('Authorization: SharedAccessSignature <token>' or 'aeg-sas-token: <token>')"
    )]
    Missing,
    /// An `Authorization` scheme this data plane does not take.
    #[error(
        "the authorization scheme '{0}' is not supported: use 'SharedAccessKey <key>' or 'SharedAccessSignature <token>'"
    )]
    UnsupportedScheme(String),
    /// A key that is neither of the Namespace's keys.
    #[error("the shared access key is not valid")]
    WrongKey,
    /// A token that does not parse.
    #[error("the SAS token is malformed: {0}")]
    MalformedToken(String),
    /// A well-formed token past its expiry.
    #[error("the SAS token expired at {0}")]
    Expired(String),
    /// A well-formed token for another resource.
    #[error("the SAS token is for resource '{0}', which does not cover this request")]
    WrongResource(String),
    /// A well-formed token signed with neither key.
    #[error("the SAS token's signature does not match a key of the Namespace")]
    BadSignature,
}

impl AuthError {
    /// Every [`AuthError::reason`], so a metric can show each at 0 from the start.
    pub const REASONS: [&'static str; 8] = [
        "no_keys",
        "missing",
        "unsupported_scheme",
        "wrong_key",
        "malformed_token",
        "expired",
        "wrong_resource",
        "bad_signature",
    ];

    /// A short label for metrics and logs: one of [`AuthError::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NoKeysConfigured { .. } => "no_keys",
            AuthError::Missing => "missing",
            AuthError::UnsupportedScheme(_) => "unsupported_scheme",
            AuthError::WrongKey => "wrong_key",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::Expired(_) => "expired",
            AuthError::WrongResource(_) => "wrong_resource",
            AuthError::BadSignature => "bad_signature",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_listed_reason() {
        let errors = [
            AuthError::NoKeysConfigured {
                namespace: "dev".into(),
            },
            AuthError::Missing,
            AuthError::UnsupportedScheme("Bearer".into()),
            AuthError::WrongKey,
            AuthError::MalformedToken("x".into()),
            AuthError::Expired("x".into()),
            AuthError::WrongResource("x".into()),
            AuthError::BadSignature,
        ];
        let reasons: Vec<_> = errors.iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AuthError::REASONS);
    }

    #[test]
    fn the_message_for_a_namespace_without_keys_says_how_to_add_them() {
        let message = AuthError::NoKeysConfigured {
            namespace: "dev".into(),
        }
        .to_string();
        assert!(
            message.contains("no shared access keys are configured"),
            "{message}"
        );
        assert!(message.contains("spec.sasKeys.secretName"), "{message}");
    }
}
