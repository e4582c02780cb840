//! Who may connect, publish and subscribe, read from the served Snapshot (SPEC §D).
//! Authorization denies by default: a PUBLISH needs a `Publisher` binding of one of the
//! client's groups on a topic space with a template that, expanded for this client, matches
//! the topic; a SUBSCRIBE needs a `Subscriber` binding whose expanded template covers the filter.

use super::codec::{Connect, reason};
use crate::snapshot::SharedSnapshot;
use gridline_crds::model::Snapshot;
use gridline_crds::model::topic::{ClientIdentity, TopicFilter};
use gridline_crds::types::State;
use gridline_crds::types::permission_binding::Permission;
use std::sync::Arc;

/// The listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Plaintext,
    Tls,
    WebSocket,
}

/// Checks a CONNECT; the authentication name, or the reason code of the refusal (MQTT 5
/// numbering; the codec maps it for 3.1.1).
///
/// Until X.509 and JWT authentication exist (issue 6), the only identity is the development
/// one: the CONNECT username, taken without proof, and only when the Namespace turns on
/// `mqttPlaintext.insecureUsernameAuthentication`. On TLS and WebSockets the same switch
/// applies (a Namespace without it refuses every CONNECT there with 0x8C): TLS alone proves
/// nothing about the client, so it must not become a way around the switch.
pub fn authenticate(
    snapshot: &Snapshot,
    connect: &Connect,
    listener: Listener,
) -> Result<String, u8> {
    let Some(namespace) = &snapshot.namespace else {
        return Err(reason::SERVER_UNAVAILABLE);
    };
    if namespace.spec.topic_spaces_configuration.state != State::Enabled {
        return Err(reason::SERVER_UNAVAILABLE);
    }
    let listeners = &namespace.spec.listeners;
    let plaintext = listeners.mqtt_plaintext.as_ref();
    let open = match listener {
        Listener::Plaintext => plaintext.is_some_and(|l| l.enabled),
        Listener::Tls => listeners.mqtt_tls.enabled,
        Listener::WebSocket => listeners.websockets,
    };
    if !open {
        return Err(reason::NOT_AUTHORIZED);
    }
    let development_identity = plaintext.is_some_and(|l| l.insecure_username_authentication);
    if !development_identity || connect.authentication_method.is_some() {
        return Err(reason::BAD_AUTHENTICATION_METHOD);
    }
    let Some(name) = connect.username.as_deref() else {
        return Err(reason::BAD_USER_NAME_OR_PASSWORD);
    };
    match snapshot.client_by_authentication_name(name) {
        None => Err(reason::BAD_USER_NAME_OR_PASSWORD),
        Some(client) if !client.enabled => Err(reason::NOT_AUTHORIZED),
        Some(_) => Ok(name.to_string()),
    }
}

/// One client's permissions in one Snapshot: its templates, expanded.
#[derive(Debug)]
pub struct Permissions {
    snapshot: Arc<Snapshot>,
    publish: Vec<TopicFilter>,
    subscribe: Vec<TopicFilter>,
}

impl Permissions {
    /// The permissions of `authentication_name` in `snapshot`; none when the client is gone
    /// or disabled.
    pub fn compute(snapshot: Arc<Snapshot>, authentication_name: &str) -> Self {
        let mut publish = Vec::new();
        let mut subscribe = Vec::new();
        if let Some(client) = snapshot.client_by_authentication_name(authentication_name)
            && client.enabled
        {
            let identity = ClientIdentity {
                authentication_name: &client.authentication_name,
                attributes: &client.attributes,
            };
            for binding in snapshot.permission_bindings.values() {
                if !client.groups.contains(&binding.client_group) {
                    continue;
                }
                let Some(space) = snapshot.topic_spaces.get(&binding.topic_space) else {
                    continue;
                };
                let target = match binding.permission {
                    Permission::Publisher => &mut publish,
                    Permission::Subscriber => &mut subscribe,
                };
                target.extend(space.templates.iter().filter_map(|t| t.expand(&identity)));
            }
        }
        Self {
            snapshot,
            publish,
            subscribe,
        }
    }

    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| f.matches(topic))
    }

    pub fn can_subscribe(&self, filter: &TopicFilter) -> bool {
        self.subscribe.iter().any(|f| f.covers(filter))
    }
}

/// A session's view of its permissions, recomputed only when the Snapshot changes.
pub struct Authorizer {
    shared: SharedSnapshot,
    authentication_name: String,
    cached: Permissions,
}

impl Authorizer {
    pub fn new(shared: SharedSnapshot, authentication_name: String) -> Self {
        let cached = Permissions::compute(shared.load(), &authentication_name);
        Self {
            shared,
            authentication_name,
            cached,
        }
    }

    pub fn authentication_name(&self) -> &str {
        &self.authentication_name
    }

    /// The permissions under the Snapshot served now.
    pub fn current(&mut self) -> &Permissions {
        let served = self.shared.load();
        if !Arc::ptr_eq(&served, &self.cached.snapshot) {
            self.cached = Permissions::compute(served, &self.authentication_name);
        }
        &self.cached
    }
}
