//! Typed manifests. An object a test varies (a Namespace's settings, an access model, a push
//! subscription) is built from the real API types of `gridline-crds` and serialized with
//! serde_yaml, so a field that does not exist fails to compile and a change cannot silently
//! miss, as a text edit whose pattern stopped matching would. Only a test that deliberately
//! writes what the types cannot hold (a wrong type, a misspelt field) edits text, through
//! [`deliberately_invalid`], which panics when its pattern is absent.

use gridline_crds::attributes::AttributeValue;
use gridline_crds::types::namespace::{
    CaCertificate, CustomDomain, JwtConfiguration, JwtIssuer, Listener, PlaintextMqttListener,
    SasKeysConfiguration, TlsConfiguration, TlsVersion, TopicSpacesConfiguration,
};
use gridline_crds::types::{
    Client, ClientGroup, Namespace, NamespaceSpec, ObjectRef, PermissionBinding, State, TopicSpace,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The YAML of one API object.
pub fn to_yaml<T: Serialize>(object: &T) -> String {
    serde_yaml::to_string(object).expect("an API object serializes to YAML")
}

/// A value with every field at the default the data plane's parser gives an absent field:
/// what a manifest that leaves the whole section out means.
pub fn parser_defaults<T: DeserializeOwned>() -> T {
    parsed("{}")
}

/// What the parser makes of `required` (the YAML of the fields that have no default, to be
/// overwritten by the caller): every other field at its default. Panics when `required`
/// does not parse, e.g. after a field was renamed.
pub fn parsed<T: DeserializeOwned>(required: &str) -> T {
    serde_yaml::from_str(required).unwrap_or_else(|e| panic!("{required:?}: {e}"))
}

/// A Namespace manifest under construction. Each method sets one setting; [`Self::spec`]
/// and [`Self::topic_spaces`] reach any other field of the real types.
#[derive(Clone, Debug)]
pub struct NamespaceManifest {
    object: Namespace,
}

impl NamespaceManifest {
    /// A Namespace that needs no certificate: the TLS listeners (MQTT over TLS, HTTPS) off,
    /// plaintext HTTP on 8080, as in local development. Everything else at its default (the
    /// broker off).
    pub fn local(name: &str) -> Self {
        let mut spec: NamespaceSpec = parser_defaults();
        spec.listeners.mqtt_tls = Listener {
            enabled: false,
            port: 8883,
        };
        spec.listeners.https = Listener {
            enabled: false,
            port: 443,
        };
        spec.listeners.http = Some(Listener {
            enabled: true,
            port: 8080,
        });
        Self {
            object: Namespace::new(name, spec),
        }
    }

    /// Any change to the spec the other methods do not name.
    pub fn spec(mut self, change: impl FnOnce(&mut NamespaceSpec)) -> Self {
        change(&mut self.object.spec);
        self
    }

    /// A change to `topicSpacesConfiguration` (the broker's state, routing, limits).
    pub fn topic_spaces(self, change: impl FnOnce(&mut TopicSpacesConfiguration)) -> Self {
        self.spec(|spec| change(&mut spec.topic_spaces_configuration))
    }

    /// The MQTT broker on (`topicSpacesConfiguration.state: Enabled`).
    pub fn broker_enabled(self) -> Self {
        self.topic_spaces(|t| t.state = State::Enabled)
    }

    /// Shared access keys of the HTTP API from Secret `secret` (see [`super::sas_keys_secret`]).
    pub fn sas_keys(self, secret: &str) -> Self {
        self.spec(|spec| {
            spec.sas_keys = Some(SasKeysConfiguration {
                secret_name: secret.to_string(),
            })
        })
    }

    /// The TLS listeners' certificate from `kubernetes.io/tls` Secret `secret`.
    pub fn tls_secret(self, secret: &str) -> Self {
        self.spec(|spec| {
            spec.tls = Some(TlsConfiguration {
                secret_name: secret.to_string(),
            })
        })
    }

    /// `minimumTlsVersionAllowed`.
    pub fn minimum_tls_version(self, version: TlsVersion) -> Self {
        self.spec(|spec| spec.minimum_tls_version_allowed = version)
    }

    /// MQTT over TLS on or off (its port unchanged).
    pub fn mqtt_tls(self, enabled: bool) -> Self {
        self.spec(|spec| spec.listeners.mqtt_tls.enabled = enabled)
    }

    /// The HTTPS listener (the Event Grid API and WSS at `/mqtt`) on or off.
    pub fn https(self, enabled: bool) -> Self {
        self.spec(|spec| spec.listeners.https.enabled = enabled)
    }

    /// MQTT over WebSockets on or off.
    pub fn websockets(self, enabled: bool) -> Self {
        self.spec(|spec| spec.listeners.websockets = enabled)
    }

    /// Push subscriptions may deliver to `http://` endpoints.
    pub fn allow_insecure_webhooks(self) -> Self {
        self.spec(|spec| spec.listeners.allow_insecure_webhooks = true)
    }

    /// The plaintext MQTT listener as given.
    pub fn mqtt_plaintext(self, listener: PlaintextMqttListener) -> Self {
        self.spec(|spec| spec.listeners.mqtt_plaintext = Some(listener))
    }

    /// A change to the plaintext MQTT listener; panics when the Namespace has none, so a test
    /// cannot believe it changed a listener that is not there.
    pub fn plaintext_listener(self, change: impl FnOnce(&mut PlaintextMqttListener)) -> Self {
        self.spec(|spec| {
            change(
                spec.listeners
                    .mqtt_plaintext
                    .as_mut()
                    .expect("this Namespace has no plaintext MQTT listener to change"),
            )
        })
    }

    /// A CA client certificates may chain to, from Secret `secret` (key `ca.crt`).
    pub fn ca_certificate(self, name: &str, secret: &str) -> Self {
        self.spec(|spec| {
            spec.ca_certificates.push(CaCertificate {
                name: name.to_string(),
                secret_name: secret.to_string(),
                key: "ca.crt".to_string(),
            })
        })
    }

    /// A trusted JWT issuer whose JWKS is in Secret `keys_secret`.
    pub fn jwt_issuer(self, issuer: &str, audiences: &[&str], keys_secret: &str) -> Self {
        self.spec(|spec| {
            spec.jwt
                .get_or_insert_with(JwtConfiguration::default)
                .issuers
                .push(JwtIssuer {
                    issuer: issuer.to_string(),
                    audiences: audiences.iter().map(|a| a.to_string()).collect(),
                    keys_secret_name: keys_secret.to_string(),
                })
        })
    }

    /// A custom domain whose certificate is in `kubernetes.io/tls` Secret `secret`.
    pub fn custom_domain(self, fully_qualified_domain_name: &str, secret: &str) -> Self {
        self.spec(|spec| {
            spec.custom_domains.push(CustomDomain {
                fully_qualified_domain_name: fully_qualified_domain_name.to_string(),
                tls: TlsConfiguration {
                    secret_name: secret.to_string(),
                },
            })
        })
    }

    /// The object as built.
    pub fn object(&self) -> &Namespace {
        &self.object
    }

    /// The manifest.
    pub fn yaml(&self) -> String {
        to_yaml(&self.object)
    }
}

/// A reference by name, as every `...Ref` field takes it.
pub fn reference(name: &str) -> Option<ObjectRef> {
    Some(ObjectRef::new(name))
}

/// Clients, client groups, topic spaces and permission bindings of one Namespace: an MQTT
/// access model, edited as objects.
#[derive(Clone, Debug, Default)]
pub struct AccessModel {
    pub clients: Vec<Client>,
    pub client_groups: Vec<ClientGroup>,
    pub topic_spaces: Vec<TopicSpace>,
    pub permission_bindings: Vec<PermissionBinding>,
}

impl AccessModel {
    /// The objects of `yaml` (one or more documents of these four kinds), moved into
    /// Namespace `namespace`. Panics on any other kind: this reads fixtures, not user input.
    pub fn parse(yaml: &str, namespace: &str) -> Self {
        let mut model = Self::default();
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_yaml::Value::deserialize(document).expect("a YAML document");
            fn typed<T: DeserializeOwned>(value: serde_yaml::Value) -> T {
                serde_yaml::from_value(value)
                    .unwrap_or_else(|e| panic!("an object of the access model: {e}"))
            }
            match value["kind"].as_str() {
                Some("Client") => model.clients.push(typed(value)),
                Some("ClientGroup") => model.client_groups.push(typed(value)),
                Some("TopicSpace") => model.topic_spaces.push(typed(value)),
                Some("PermissionBinding") => model.permission_bindings.push(typed(value)),
                other => panic!("not a kind of the access model: {other:?}"),
            }
        }
        model.move_to(namespace);
        model
    }

    /// Every object's `namespaceRef` set to `namespace`.
    pub fn move_to(&mut self, namespace: &str) {
        let namespace = ObjectRef::new(namespace);
        for client in &mut self.clients {
            client.spec.namespace_ref = namespace.clone();
        }
        for group in &mut self.client_groups {
            group.spec.namespace_ref = namespace.clone();
        }
        for space in &mut self.topic_spaces {
            space.spec.namespace_ref = namespace.clone();
        }
        for binding in &mut self.permission_bindings {
            binding.spec.namespace_ref = namespace.clone();
        }
    }

    /// The objects of `other` added after these.
    pub fn extend(&mut self, other: AccessModel) {
        self.clients.extend(other.clients);
        self.client_groups.extend(other.client_groups);
        self.topic_spaces.extend(other.topic_spaces);
        self.permission_bindings.extend(other.permission_bindings);
    }

    /// The Client named `name`; panics when there is none.
    pub fn client_mut(&mut self, name: &str) -> &mut Client {
        self.clients
            .iter_mut()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Client {name:?} in the access model"))
    }

    /// Client `name`'s attribute `key` set to an integer.
    pub fn set_integer_attribute(&mut self, client: &str, key: &str, value: i64) {
        self.client_mut(client)
            .spec
            .attributes
            .insert(key.to_string(), AttributeValue::Integer(value));
    }

    /// Every object, one document each, in the order clients, groups, topic spaces, bindings.
    pub fn yaml(&self) -> String {
        let documents: Vec<String> = (self.clients.iter().map(to_yaml))
            .chain(self.client_groups.iter().map(to_yaml))
            .chain(self.topic_spaces.iter().map(to_yaml))
            .chain(self.permission_bindings.iter().map(to_yaml))
            .collect();
        super::documents(&documents)
    }
}

/// `manifest` with the one occurrence of `from` replaced by `to`: only for a test that
/// deliberately writes what the typed builders cannot hold (a value of the wrong type, a
/// misspelt field). Panics unless `from` occurs exactly once, so an edit that stopped
/// matching fails the test instead of passing it unchanged.
pub fn deliberately_invalid(manifest: &str, from: &str, to: &str) -> String {
    let found = manifest.matches(from).count();
    assert_eq!(
        found, 1,
        "{from:?} occurs {found} times in the manifest, not once:\n{manifest}"
    );
    manifest.replacen(from, to, 1)
}
