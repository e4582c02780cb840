//! Why an MQTT client was not authenticated, in words safe to log: never a token, a key or
//! a certificate's contents. [`AuthFailure::reason`] is the bounded metric label; the MQTT
//! reason code each maps to is chosen in one place, `mqtt::authenticate`.

/// Why a CONNECT (or a re-authentication) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("the Namespace's MQTT broker is disabled")]
    BrokerDisabled,
    #[error("the listener is turned off in the served Namespace")]
    ListenerClosed,
    #[error("no credentials: no client certificate, no token, and no development identity")]
    NoCredentials,
    #[error("unsupported authentication method")]
    UnsupportedMethod,
    #[error("the Namespace configures no JWT issuers")]
    MethodNotConfigured,
    #[error("no authentication name: empty username and no alternative source filled")]
    NoAuthenticationName,
    #[error("no Client has this authentication name")]
    UnknownClient,
    #[error("the Client is disabled")]
    ClientDisabled,
    #[error("no client certificate")]
    NoCertificate,
    #[error("the client certificate does not parse")]
    BadCertificate,
    #[error("the client certificate has expired")]
    CertificateExpired,
    #[error("the client certificate is not valid yet")]
    CertificateNotYetValid,
    #[error("the Namespace has no usable CA certificate")]
    NoCaCertificates,
    #[error("the client certificate does not chain to a CA certificate of the Namespace")]
    UntrustedCertificate,
    #[error(
        "the certificate field of the Client's validation scheme does not hold its authentication name"
    )]
    NameMismatch,
    #[error("the certificate's thumbprint is not one of the Client's allowed thumbprints")]
    ThumbprintMismatch,
    #[error("the token is not a well-formed JWT")]
    MalformedToken,
    #[error("the token's issuer is not trusted by the Namespace")]
    UnknownIssuer,
    #[error("the token's audience is not one the issuer is trusted for")]
    WrongAudience,
    #[error("the token's signature does not verify with a key of its issuer")]
    BadSignature,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token is not valid yet")]
    TokenNotYetValid,
}

impl AuthFailure {
    /// Every [`AuthFailure::reason`].
    pub const REASONS: [&'static str; 22] = [
        "broker_disabled",
        "listener_closed",
        "no_credentials",
        "unsupported_method",
        "method_not_configured",
        "no_authentication_name",
        "unknown_client",
        "client_disabled",
        "no_certificate",
        "bad_certificate",
        "certificate_expired",
        "certificate_not_yet_valid",
        "no_ca_certificates",
        "untrusted_certificate",
        "name_mismatch",
        "thumbprint_mismatch",
        "malformed_token",
        "unknown_issuer",
        "wrong_audience",
        "bad_signature",
        "token_expired",
        "token_not_yet_valid",
    ];

    /// A short label for metrics and logs: one of [`AuthFailure::REASONS`].
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::BrokerDisabled => "broker_disabled",
            AuthFailure::ListenerClosed => "listener_closed",
            AuthFailure::NoCredentials => "no_credentials",
            AuthFailure::UnsupportedMethod => "unsupported_method",
            AuthFailure::MethodNotConfigured => "method_not_configured",
            AuthFailure::NoAuthenticationName => "no_authentication_name",
            AuthFailure::UnknownClient => "unknown_client",
            AuthFailure::ClientDisabled => "client_disabled",
            AuthFailure::NoCertificate => "no_certificate",
            AuthFailure::BadCertificate => "bad_certificate",
            AuthFailure::CertificateExpired => "certificate_expired",
            AuthFailure::CertificateNotYetValid => "certificate_not_yet_valid",
            AuthFailure::NoCaCertificates => "no_ca_certificates",
            AuthFailure::UntrustedCertificate => "untrusted_certificate",
            AuthFailure::NameMismatch => "name_mismatch",
            AuthFailure::ThumbprintMismatch => "thumbprint_mismatch",
            AuthFailure::MalformedToken => "malformed_token",
            AuthFailure::UnknownIssuer => "unknown_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::TokenExpired => "token_expired",
            AuthFailure::TokenNotYetValid => "token_not_yet_valid",
        }
    }

    /// Every variant, in [`AuthFailure::REASONS`] order (for tests).
    #[cfg(test)]
    pub const ALL: [AuthFailure; 22] = [
        AuthFailure::BrokerDisabled,
        AuthFailure::ListenerClosed,
        AuthFailure::NoCredentials,
        AuthFailure::UnsupportedMethod,
        AuthFailure::MethodNotConfigured,
        AuthFailure::NoAuthenticationName,
        AuthFailure::UnknownClient,
        AuthFailure::ClientDisabled,
        AuthFailure::NoCertificate,
        AuthFailure::BadCertificate,
        AuthFailure::CertificateExpired,
        AuthFailure::CertificateNotYetValid,
        AuthFailure::NoCaCertificates,
        AuthFailure::UntrustedCertificate,
        AuthFailure::NameMismatch,
        AuthFailure::ThumbprintMismatch,
        AuthFailure::MalformedToken,
        AuthFailure::UnknownIssuer,
        AuthFailure::WrongAudience,
        AuthFailure::BadSignature,
        AuthFailure::TokenExpired,
        AuthFailure::TokenNotYetValid,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_listed_reason() {
        let reasons: Vec<_> = AuthFailure::ALL.iter().map(|f| f.reason()).collect();
        assert_eq!(reasons, AuthFailure::REASONS);
    }
}
