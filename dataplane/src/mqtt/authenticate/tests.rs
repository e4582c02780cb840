use super::*;
use crate::auth::jwt::tests::{es256_key, issuer, sign};
use crate::auth::x509::tests::{ca, dns, leaf};
use crate::mqtt::codec::Version;
use gridline_crds::model::CompiledClient;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn client(name: &str, scheme: ValidationScheme, enabled: bool) -> CompiledClient {
    CompiledClient {
        name: name.into(),
        authentication_name: name.into(),
        enabled,
        attributes: Default::default(),
        validation_scheme: scheme,
        allowed_thumbprints: Vec::new(),
        groups: vec!["$all".into()],
    }
}

/// A Namespace with the broker on, both TCP listeners open, the development identity as
/// `development` says, `alternative_sources` (Event Grid names), the CAs and JWT issuers
/// given, and Clients `subject` (default scheme), `dns-1.example.com` (DNS), `disabled`.
fn snapshot(
    development: bool,
    alternative_sources: &[&str],
    cas: &[&rcgen::CertifiedIssuer<'static, rcgen::KeyPair>],
    jwt_issuers: Vec<gridline_crds::model::CompiledJwtIssuer>,
) -> Arc<Snapshot> {
    let spec = serde_json::from_value(json!({
        "topicSpacesConfiguration": {
            "state": "Enabled",
            "clientAuthentication": {
                "alternativeAuthenticationNameSources": alternative_sources,
            },
        },
        "listeners": {
            "mqttTls": {"enabled": true, "port": 8883},
            "mqttPlaintext": {"port": 1883, "insecureUsernameAuthentication": development},
        },
    }))
    .unwrap();
    let mut snapshot = Snapshot {
        namespace: Some(CompiledNamespace {
            name: "dev".into(),
            k8s_namespace: "default".into(),
            spec,
            sas_keys: Vec::new(),
            route_topic: None,
            lifecycle_topic: None,
            routing_enrichments: Default::default(),
            tls_certificate: None,
            custom_domains: Vec::new(),
            ca_certificates: cas
                .iter()
                .enumerate()
                .map(|(i, ca)| (format!("ca-{i}"), ca.pem().into_bytes()))
                .collect(),
            jwt_issuers,
            cluster: Default::default(),
        }),
        ..Snapshot::default()
    };
    for client in [
        client(
            "subject",
            ValidationScheme::SubjectMatchesAuthenticationName,
            true,
        ),
        client(
            "dns-1.example.com",
            ValidationScheme::DnsMatchesAuthenticationName,
            true,
        ),
        client(
            "disabled",
            ValidationScheme::SubjectMatchesAuthenticationName,
            false,
        ),
    ] {
        snapshot
            .clients_by_authentication_name
            .insert(client.authentication_name.clone(), client.name.clone());
        snapshot.clients.insert(client.name.clone(), client);
    }
    Arc::new(snapshot)
}

fn connect(version: Version, username: Option<&str>) -> Connect {
    Connect {
        version,
        client_id: "c1".into(),
        clean_start: true,
        keep_alive: 60,
        username: username.map(str::to_string),
        password: None,
        session_expiry_interval: 0,
        receive_maximum: None,
        maximum_packet_size: None,
        topic_alias_maximum: 0,
        authentication_method: None,
        authentication_data: None,
        will: None,
    }
}

fn jwt_connect(username: &str, method: &str, token: &str) -> Connect {
    let mut connect = connect(Version::V5, Some(username));
    connect.authentication_method = Some(method.into());
    connect.authentication_data = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
    connect
}

fn refused(outcome: Result<Authenticated, Refusal>) -> (u8, &'static str, &'static str) {
    let refusal = outcome.expect_err("refused");
    (
        refusal.code.as_u8(),
        refusal.method.label(),
        refusal.failure.reason(),
    )
}

/// An authenticator and the snapshot it judges CONNECTs against, at [`now`]. A test swaps
/// or edits `snapshot` to serve another one to the same authenticator.
struct Judge {
    authenticator: Authenticator,
    snapshot: Arc<Snapshot>,
}

impl Judge {
    fn new(snapshot: Arc<Snapshot>) -> Self {
        Judge {
            authenticator: Authenticator::default(),
            snapshot,
        }
    }

    /// A CONNECT as `username`, with neither certificate nor token, on `listener`.
    fn username(
        &self,
        version: Version,
        username: &str,
        listener: Listener,
    ) -> Result<Authenticated, Refusal> {
        let connect = connect(version, Some(username));
        self.authenticate(&connect, listener, &[])
    }

    /// A CONNECT as `username` (none: no username) over TLS presenting `certificate`.
    fn certificate(
        &self,
        version: Version,
        username: Option<&str>,
        certificate: &CertificateDer<'static>,
    ) -> Result<Authenticated, Refusal> {
        let connect = connect(version, username);
        self.authenticate(&connect, Listener::Tls, std::slice::from_ref(certificate))
    }

    /// An MQTT 5 CONNECT as `username` carrying `token` under Authentication Method `method`
    /// on `listener`.
    fn token(
        &self,
        username: &str,
        method: &str,
        token: &str,
        listener: Listener,
    ) -> Result<Authenticated, Refusal> {
        self.authenticate(&jwt_connect(username, method, token), listener, &[])
    }

    /// `authentication_name`'s session presenting `token` again (MQTT 5 re-authentication).
    fn reauthenticate(
        &self,
        authentication_name: &str,
        token: &str,
    ) -> Result<TokenExpiry, AuthFailure> {
        self.authenticator.reauthenticate(
            &self.snapshot,
            authentication_name,
            Some(token.as_bytes()),
            now(),
        )
    }

    fn authenticate(
        &self,
        connect: &Connect,
        listener: Listener,
        certificates: &[CertificateDer<'static>],
    ) -> Result<Authenticated, Refusal> {
        self.authenticator
            .authenticate(&self.snapshot, connect, listener, certificates, now())
    }
}

#[test]
fn the_development_identity_takes_the_username_on_plaintext_connections_only() {
    let judge = Judge::new(snapshot(true, &[], &[], Vec::new()));
    for listener in [Listener::Plaintext, Listener::WebSocket] {
        let outcome = judge.username(Version::V311, "subject", listener);
        let authenticated = outcome.unwrap();
        assert_eq!(authenticated.method, Method::Development);
        assert_eq!(authenticated.authentication_name, "subject");
    }
    // SPEC §D: over TLS a client proves its name (certificate or token), switch or not.
    for listener in [Listener::Tls, Listener::SecureWebSocket] {
        let outcome = judge.username(Version::V311, "subject", listener);
        assert_eq!(
            refused(outcome),
            (0x8C, "none", "no_credentials"),
            "{listener:?}"
        );
    }
    let outcome = judge.username(Version::V5, "disabled", Listener::Plaintext);
    assert_eq!(refused(outcome), (0x87, "development", "client_disabled"));
    let outcome = judge.username(Version::V5, "nobody", Listener::Plaintext);
    assert_eq!(refused(outcome), (0x86, "development", "unknown_client"));
}

#[test]
fn without_credentials_or_the_development_identity_the_method_is_bad() {
    let judge = Judge::new(snapshot(false, &[], &[], Vec::new()));
    let outcome = judge.username(Version::V5, "subject", Listener::Tls);
    assert_eq!(refused(outcome), (0x8C, "none", "no_credentials"));
}

#[test]
fn a_certificate_decides_even_with_the_development_identity_on() {
    let trusted = ca("trusted");
    let stranger = ca("stranger");
    let judge = Judge::new(snapshot(true, &[], &[&trusted], Vec::new()));
    let check = |username: Option<&str>, certificate| {
        judge.certificate(Version::V5, username, &certificate)
    };
    let good = check(
        Some("subject"),
        leaf("subject", vec![], Some(&trusted), false),
    )
    .unwrap();
    assert_eq!(good.method, Method::X509);
    assert_eq!(good.authentication_name, "subject");
    let foreign = check(
        Some("subject"),
        leaf("subject", vec![], Some(&stranger), false),
    );
    assert_eq!(refused(foreign), (0x86, "x509", "untrusted_certificate"));
    let other_name = check(
        Some("subject"),
        leaf("someone", vec![], Some(&trusted), false),
    );
    assert_eq!(refused(other_name), (0x86, "x509", "name_mismatch"));
    let expired = check(
        Some("subject"),
        leaf("subject", vec![], Some(&trusted), true),
    );
    assert_eq!(refused(expired), (0x86, "x509", "certificate_expired"));
    let disabled = check(
        Some("disabled"),
        leaf("disabled", vec![], Some(&trusted), false),
    );
    assert_eq!(refused(disabled), (0x87, "x509", "client_disabled"));
    let unknown = check(
        Some("nobody"),
        leaf("nobody", vec![], Some(&trusted), false),
    );
    assert_eq!(refused(unknown), (0x86, "x509", "unknown_client"));
    let dns_client = check(
        Some("dns-1.example.com"),
        leaf("x", vec![dns("dns-1.example.com")], Some(&trusted), false),
    );
    assert!(dns_client.is_ok(), "{dns_client:?}");
}

#[test]
fn without_a_username_the_alternative_sources_name_the_client() {
    let trusted = ca("trusted");
    let certificate = leaf(
        "subject",
        vec![dns("dns-1.example.com")],
        Some(&trusted),
        false,
    );
    let without_sources = snapshot(false, &[], &[&trusted], Vec::new());
    let mut judge = Judge::new(without_sources.clone());
    let mut named = Vec::new();
    for sources in [
        &["ClientCertificateDns", "ClientCertificateSubject"][..],
        &["ClientCertificateUri", "ClientCertificateSubject"][..],
    ] {
        judge.snapshot = snapshot(false, sources, &[&trusted], Vec::new());
        for username in [None, Some("")] {
            let outcome = judge.certificate(Version::V5, username, &certificate);
            named.push(outcome.unwrap().authentication_name);
        }
    }
    assert_eq!(
        named,
        [
            "dns-1.example.com",
            "dns-1.example.com",
            "subject",
            "subject"
        ]
    );
    judge.snapshot = without_sources;
    let outcome = judge.certificate(Version::V5, None, &certificate);
    assert_eq!(refused(outcome), (0x86, "x509", "no_authentication_name"));
}

#[test]
fn thumbprint_match_takes_a_self_signed_certificate_without_any_ca() {
    let certificate = leaf("whatever", vec![], None, false);
    let mut judge = Judge::new(snapshot(false, &[], &[], Vec::new()));
    let mut device = client("device", ValidationScheme::ThumbprintMatch, true);
    device.allowed_thumbprints = vec![crate::auth::x509::thumbprint(&certificate)];
    let edited = Arc::make_mut(&mut judge.snapshot);
    edited
        .clients_by_authentication_name
        .insert("device".into(), "device".into());
    edited.clients.insert("device".into(), device);
    let outcome = judge.certificate(Version::V311, Some("device"), &certificate);
    assert_eq!(outcome.unwrap().method, Method::X509);
    let other = leaf("whatever", vec![], None, false);
    let outcome = judge.certificate(Version::V311, Some("device"), &other);
    assert_eq!(refused(outcome), (0x86, "x509", "thumbprint_mismatch"));
}

#[test]
fn a_good_token_authenticates_and_is_echoed_with_its_expiry() {
    let (key, jwk) = es256_key(None);
    let judge = Judge::new(snapshot(false, &[], &[], vec![issuer(&[jwk])]));
    let token = sign(
        &key,
        None,
        json!({"iss": "https://issuer.example.com", "aud": "gridline-dev", "exp": NOW + 30}),
    );
    // A token travels under TLS only: not over `ws://` on the HTTP listener.
    let outcome = judge.token("subject", "OAUTH2-JWT", &token, Listener::WebSocket);
    assert_eq!(refused(outcome).0, 0x8C);
    for listener in [Listener::Tls, Listener::SecureWebSocket] {
        let outcome = judge.token("subject", "OAUTH2-JWT", &token, listener);
        let authenticated = outcome.unwrap();
        assert_eq!(authenticated.method, Method::Jwt);
        assert_eq!(
            authenticated.authentication_method.as_deref(),
            Some("OAUTH2-JWT")
        );
        assert_eq!(
            authenticated.token_expiry,
            Some(TokenExpiry {
                expires_at: NOW + 30,
                remaining: Duration::from_secs(30 + LEEWAY_SECS),
            })
        );
    }
    let plaintext = judge.token("subject", "OAUTH2-JWT", &token, Listener::Plaintext);
    assert_eq!(refused(plaintext), (0x8C, "none", "unsupported_method"));
    let disabled = judge.token("disabled", "OAUTH2-JWT", &token, Listener::Tls);
    assert_eq!(refused(disabled), (0x87, "jwt", "client_disabled"));
    let bad = judge.token("subject", "OAUTH2-JWT", "not.a.token", Listener::Tls);
    assert_eq!(refused(bad), (0x86, "jwt", "malformed_token"));
    assert_eq!(
        judge.reauthenticate("subject", &token),
        Ok(TokenExpiry {
            expires_at: NOW + 30,
            remaining: Duration::from_secs(30 + LEEWAY_SECS),
        })
    );
    assert_eq!(
        judge.reauthenticate("disabled", &token),
        Err(AuthFailure::ClientDisabled)
    );
}

#[test]
fn an_unknown_method_or_a_namespace_without_issuers_is_a_bad_method() {
    let judge = Judge::new(snapshot(true, &[], &[], Vec::new()));
    let unknown = judge.token("subject", "SCRAM-SHA-1", "x", Listener::Tls);
    assert_eq!(refused(unknown), (0x8C, "none", "unsupported_method"));
    let unconfigured = judge.token("subject", "CUSTOM-JWT", "a.b.c", Listener::Tls);
    assert_eq!(
        refused(unconfigured),
        (0x8C, "jwt", "method_not_configured")
    );
}

#[test]
fn a_disabled_broker_or_a_closed_listener_refuses_before_any_method() {
    let mut judge = Judge::new(snapshot(true, &[], &[], Vec::new()));
    if let Some(namespace) = Arc::make_mut(&mut judge.snapshot).namespace.as_mut() {
        namespace.spec.listeners.mqtt_tls.enabled = false;
    }
    let closed = judge.username(Version::V5, "subject", Listener::Tls);
    assert_eq!(refused(closed), (0x87, "none", "listener_closed"));
    if let Some(namespace) = Arc::make_mut(&mut judge.snapshot).namespace.as_mut() {
        namespace.spec.topic_spaces_configuration.state = State::Disabled;
    }
    let disabled = judge.username(Version::V5, "subject", Listener::Plaintext);
    assert_eq!(refused(disabled), (0x88, "none", "broker_disabled"));
}

#[test]
fn a_token_expiring_decades_away_keeps_the_session_at_most_a_year() {
    let expiry = TokenExpiry::of(u64::MAX, NOW);
    assert_eq!(expiry.expires_at, u64::MAX);
    assert_eq!(expiry.remaining, LONGEST_TOKEN_LIFETIME);
    assert_eq!(TokenExpiry::of(NOW - 100, NOW).remaining, Duration::ZERO);
}

#[test]
fn a_new_snapshot_with_other_cas_is_read_while_the_served_one_is_not_compared_again() {
    let first = ca("first");
    let second = ca("second");
    let before = snapshot(false, &[], &[&first], Vec::new());
    let after = snapshot(false, &[], &[&first, &second], Vec::new());
    let mut judge = Judge::new(before.clone());
    let check = |judge: &Judge| {
        let certificate = leaf("subject", vec![], Some(&second), false);
        judge.certificate(Version::V5, Some("subject"), &certificate)
    };
    assert_eq!(
        refused(check(&judge)),
        (0x86, "x509", "untrusted_certificate")
    );
    judge.snapshot = after;
    assert!(check(&judge).is_ok());
    assert!(check(&judge).is_ok());
    // Served again (a reload back), its CAs are read again.
    judge.snapshot = before;
    assert_eq!(
        refused(check(&judge)),
        (0x86, "x509", "untrusted_certificate")
    );
}
