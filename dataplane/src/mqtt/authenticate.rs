//! Who a CONNECT is (SPEC §D), decided against the Snapshot served at that moment, and the
//! one place where an authentication failure becomes an MQTT reason code.
//!
//! In order:
//! 1. the broker must be on (else 0x88) and the listener open in the Snapshot (else 0x87);
//! 2. an Authentication Method (MQTT 5) selects JWT (`OAUTH2-JWT`, or Event Grid's custom-JWT
//!    name `CUSTOM-JWT`); any other method is refused with 0x8C. JWT is not taken on the
//!    plaintext listener, where the token would travel in clear;
//! 3. a connection that presented a client certificate (TLS, or WebSockets over TLS) is
//!    judged by it (X.509), whatever the development switch says;
//! 4. otherwise the development identity, as before issue 6: the username, taken without
//!    proof when the Namespace sets `mqttPlaintext.insecureUsernameAuthentication` (for every
//!    listener: a TLS connection without a certificate proves nothing more); without the
//!    switch, 0x8C.
//!
//! The authentication name is the CONNECT username. With X.509 and an empty username, the
//! Namespace's `clientAuthentication.alternativeAuthenticationNameSources` are tried in order.

use super::authorize::Listener;
use super::codec::Connect;
use super::reason::ReasonCode;
use crate::auth::AuthFailure;
use crate::auth::jwt::{JwtVerifier, LEEWAY_SECS};
use crate::auth::x509::{CaTrust, ClientCertificate};
use gridline_crds::model::{CompiledNamespace, Snapshot};
use gridline_crds::types::State;
use gridline_crds::types::client::ValidationScheme;
use prometheus::{IntCounterVec, Opts, Registry};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Authentication Methods that carry a JWT as Authentication Data.
pub const JWT_METHODS: [&str; 2] = ["OAUTH2-JWT", "CUSTOM-JWT"];

/// How a client proved (or tried to prove) who it is; the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Refused before a method applied (broker off, listener closed, unknown method).
    None,
    /// `insecureUsernameAuthentication`: the username, without proof.
    Development,
    X509,
    Jwt,
}

impl Method {
    pub const LABELS: [&'static str; 4] = ["none", "development", "x509", "jwt"];

    pub fn label(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Development => "development",
            Method::X509 => "x509",
            Method::Jwt => "jwt",
        }
    }
}

/// A CONNECT that authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub authentication_name: String,
    pub method: Method,
    /// JWT: the Authentication Method, repeated in CONNACK and required on AUTH.
    pub authentication_method: Option<String>,
    /// JWT: when the session must end unless re-authenticated.
    pub token_expiry: Option<TokenExpiry>,
}

/// When a token stops being good, as an instant the connection can sleep until.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenExpiry {
    /// The token's `exp`, Unix seconds.
    pub expires_at: u64,
    /// `exp` plus the leeway, from now.
    pub remaining: Duration,
}

/// The longest a session is kept on one token: an `exp` decades away (signed, but still the
/// client's number) must not overflow the connection's deadline arithmetic.
const LONGEST_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

impl TokenExpiry {
    fn of(expires_at: u64, now: u64) -> Self {
        let remaining = expires_at.saturating_add(LEEWAY_SECS).saturating_sub(now);
        Self {
            expires_at,
            remaining: Duration::from_secs(remaining).min(LONGEST_TOKEN_LIFETIME),
        }
    }
}

/// A refused CONNECT: the reason code to answer with, and what to count and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ReasonCode,
    pub method: Method,
    pub failure: AuthFailure,
}

impl Refusal {
    fn new(method: Method, failure: AuthFailure) -> Self {
        Self {
            code: connack_code(failure),
            method,
            failure,
        }
    }
}

/// The CONNACK reason code of a failure (MQTT 5 numbering; the codec maps it for 3.1.1:
/// 0x86 → 4, 0x87/0x8C → 5, 0x88 → 3).
pub fn connack_code(failure: AuthFailure) -> ReasonCode {
    match failure {
        AuthFailure::BrokerDisabled => ReasonCode::ServerUnavailable,
        AuthFailure::ListenerClosed | AuthFailure::ClientDisabled => ReasonCode::NotAuthorized,
        AuthFailure::NoCredentials
        | AuthFailure::UnsupportedMethod
        | AuthFailure::MethodNotConfigured => ReasonCode::BadAuthenticationMethod,
        _ => ReasonCode::BadUserNameOrPassword,
    }
}

/// The verifiers of the served Namespace's CAs and JWT issuers, each rebuilt only when its
/// configuration changes.
#[derive(Default)]
pub struct Authenticator {
    ca_trust: CaTrust,
    jwt: JwtVerifier,
}

impl Authenticator {
    /// Authenticate `connect`, received on `listener` with `client_certificates` (leaf
    /// first; empty without TLS or without a certificate), at `now`.
    pub fn authenticate(
        &self,
        snapshot: &Arc<Snapshot>,
        connect: &Connect,
        listener: Listener,
        client_certificates: &[CertificateDer<'static>],
        now: SystemTime,
    ) -> Result<Authenticated, Refusal> {
        let refuse = |failure| Refusal::new(Method::None, failure);
        let Some(namespace) = &snapshot.namespace else {
            return Err(refuse(AuthFailure::BrokerDisabled));
        };
        if namespace.spec.topic_spaces_configuration.state != State::Enabled {
            return Err(refuse(AuthFailure::BrokerDisabled));
        }
        let listeners = &namespace.spec.listeners;
        let plaintext = listeners.mqtt_plaintext.as_ref();
        let open = match listener {
            Listener::Plaintext => plaintext.is_some_and(|l| l.enabled),
            Listener::Tls => listeners.mqtt_tls.enabled,
            Listener::WebSocket | Listener::SecureWebSocket => listeners.websockets,
        };
        if !open {
            return Err(refuse(AuthFailure::ListenerClosed));
        }
        let username = connect.username.as_deref().filter(|u| !u.is_empty());
        if let Some(method) = &connect.authentication_method {
            // A token travels only under TLS.
            let unencrypted = matches!(listener, Listener::Plaintext | Listener::WebSocket);
            if !JWT_METHODS.contains(&method.as_str()) || unencrypted {
                return Err(refuse(AuthFailure::UnsupportedMethod));
            }
            return self
                .jwt(snapshot, namespace, connect, username, unix_secs(now))
                .map_err(|failure| Refusal::new(Method::Jwt, failure));
        }
        if !client_certificates.is_empty() {
            return self
                .x509(snapshot, namespace, username, client_certificates, now)
                .map_err(|failure| Refusal::new(Method::X509, failure));
        }
        // SPEC §D: the development identity exists on plaintext connections only (the
        // plaintext MQTT listener and `ws://` on the HTTP listener); over TLS a client proves
        // who it is with a certificate or a token.
        let development = matches!(listener, Listener::Plaintext | Listener::WebSocket)
            && plaintext.is_some_and(|l| l.insecure_username_authentication);
        if !development {
            return Err(refuse(AuthFailure::NoCredentials));
        }
        let development_refusal = |failure| Refusal::new(Method::Development, failure);
        let name = username.ok_or(development_refusal(AuthFailure::NoAuthenticationName))?;
        enabled_client(snapshot, name).map_err(development_refusal)?;
        Ok(Authenticated {
            authentication_name: name.to_string(),
            method: Method::Development,
            authentication_method: None,
            token_expiry: None,
        })
    }

    fn x509(
        &self,
        snapshot: &Arc<Snapshot>,
        namespace: &CompiledNamespace,
        username: Option<&str>,
        chain: &[CertificateDer<'static>],
        now: SystemTime,
    ) -> Result<Authenticated, AuthFailure> {
        let leaf = chain.first().ok_or(AuthFailure::NoCertificate)?;
        let certificate = ClientCertificate::parse(leaf)?;
        let name = match username {
            Some(name) => name.to_string(),
            None => {
                let sources = namespace
                    .spec
                    .topic_spaces_configuration
                    .client_authentication
                    .as_ref()
                    .map(|c| c.alternative_authentication_name_sources.as_slice())
                    .unwrap_or_default();
                certificate
                    .name_from_sources(sources)
                    .ok_or(AuthFailure::NoAuthenticationName)?
            }
        };
        let client = enabled_client(snapshot, &name)?;
        let now_secs = i64::try_from(unix_secs(now)).unwrap_or(i64::MAX);
        certificate.check_validity(now_secs)?;
        if client.validation_scheme != ValidationScheme::ThumbprintMatch {
            let at = UnixTime::since_unix_epoch(Duration::from_secs(unix_secs(now)));
            self.ca_trust.verify_served(snapshot, chain, at)?;
        }
        certificate.check_scheme(client.validation_scheme, &name, &client.allowed_thumbprints)?;
        Ok(Authenticated {
            authentication_name: name,
            method: Method::X509,
            authentication_method: None,
            token_expiry: None,
        })
    }

    fn jwt(
        &self,
        snapshot: &Snapshot,
        namespace: &CompiledNamespace,
        connect: &Connect,
        username: Option<&str>,
        now: u64,
    ) -> Result<Authenticated, AuthFailure> {
        let name = username.ok_or(AuthFailure::NoAuthenticationName)?;
        let expires_at =
            self.verify_token(namespace, connect.authentication_data.as_deref(), now)?;
        // The token first: an unauthenticated caller learns nothing about which names exist.
        enabled_client(snapshot, name)?;
        Ok(Authenticated {
            authentication_name: name.to_string(),
            method: Method::Jwt,
            authentication_method: connect.authentication_method.clone(),
            token_expiry: Some(TokenExpiry::of(expires_at, now)),
        })
    }

    fn verify_token(
        &self,
        namespace: &CompiledNamespace,
        data: Option<&[u8]>,
        now: u64,
    ) -> Result<u64, AuthFailure> {
        let token = data
            .and_then(|d| std::str::from_utf8(d).ok())
            .ok_or(AuthFailure::MalformedToken)?;
        let verified = self.jwt.verify(&namespace.jwt_issuers, token.trim(), now)?;
        Ok(verified.expires_at)
    }

    /// A connected X.509 client's certificate against a newly served Snapshot: a CA removed
    /// from the Namespace, a thumbprint taken off the Client's list or a changed validation
    /// scheme must end the session (SPEC §D's "a certificate revoked"), as a new CONNECT
    /// would be refused.
    pub fn recheck_certificate(
        &self,
        snapshot: &Arc<Snapshot>,
        authentication_name: &str,
        chain: &[CertificateDer<'static>],
        now: SystemTime,
    ) -> Result<(), AuthFailure> {
        let leaf = chain.first().ok_or(AuthFailure::NoCertificate)?;
        let certificate = ClientCertificate::parse(leaf)?;
        let client = enabled_client(snapshot, authentication_name)?;
        let now_secs = i64::try_from(unix_secs(now)).unwrap_or(i64::MAX);
        certificate.check_validity(now_secs)?;
        if client.validation_scheme != ValidationScheme::ThumbprintMatch {
            let at = UnixTime::since_unix_epoch(Duration::from_secs(unix_secs(now)));
            self.ca_trust.verify_served(snapshot, chain, at)?;
        }
        certificate.check_scheme(
            client.validation_scheme,
            authentication_name,
            &client.allowed_thumbprints,
        )
    }

    /// MQTT 5 re-authentication (AUTH 0x19) of a JWT session as `authentication_name` with
    /// the token in `data`: the token's expiry, or why it failed.
    pub fn reauthenticate(
        &self,
        snapshot: &Snapshot,
        authentication_name: &str,
        data: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<TokenExpiry, AuthFailure> {
        let namespace = snapshot
            .namespace
            .as_ref()
            .ok_or(AuthFailure::BrokerDisabled)?;
        let now = unix_secs(now);
        let expires_at = self.verify_token(namespace, data, now)?;
        enabled_client(snapshot, authentication_name)?;
        Ok(TokenExpiry::of(expires_at, now))
    }
}

fn enabled_client<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> Result<&'a gridline_crds::model::CompiledClient, AuthFailure> {
    match snapshot.client_by_authentication_name(name) {
        None => Err(AuthFailure::UnknownClient),
        Some(client) if !client.enabled => Err(AuthFailure::ClientDisabled),
        Some(client) => Ok(client),
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `gridline_mqtt_auth_successes_total{method}` and
/// `gridline_mqtt_auth_failures_total{method,reason}`; labels from fixed lists.
pub struct AuthMetrics {
    successes: IntCounterVec,
    failures: IntCounterVec,
}

impl AuthMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            successes: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_auth_successes_total",
                    "MQTT authentications (CONNECT and AUTH) that succeeded, by method",
                ),
                &["method"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_auth_failures_total",
                    "MQTT authentications (CONNECT and AUTH) refused, by method and reason",
                ),
                &["method", "reason"],
            )?,
        };
        registry.register(Box::new(metrics.successes.clone()))?;
        registry.register(Box::new(metrics.failures.clone()))?;
        Ok(metrics)
    }

    pub fn success(&self, method: Method) {
        self.successes.with_label_values(&[method.label()]).inc();
    }

    pub fn failure(&self, method: Method, failure: AuthFailure) {
        self.failures
            .with_label_values(&[method.label(), failure.reason()])
            .inc();
    }
}

#[cfg(test)]
mod tests;
