//! Who may publish and subscribe, read from the served Snapshot (SPEC §D); who may connect
//! is `authenticate`'s. Authorization denies by default: a PUBLISH needs a `Publisher`
//! binding of one of the client's groups on a topic space with a template that, expanded for
//! this client, matches the topic; a SUBSCRIBE needs a `Subscriber` binding whose expanded
//! template covers the filter.

use crate::snapshot::SharedSnapshot;
use gridline_crds::model::Snapshot;
use gridline_crds::model::topic::{ClientIdentity, TopicFilter};
use gridline_crds::types::permission_binding::Permission;
use std::sync::Arc;

/// The listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Plaintext,
    Tls,
    /// MQTT over WebSockets on the HTTP listener (`ws://`, no TLS).
    WebSocket,
    /// MQTT over WebSockets over TLS (`wss://`, the WSS listener).
    SecureWebSocket,
}

impl Listener {
    pub const ALL: [Listener; 4] = [
        Listener::Plaintext,
        Listener::Tls,
        Listener::WebSocket,
        Listener::SecureWebSocket,
    ];

    /// The `listener` label of the MQTT metrics: the URL scheme a client uses.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Plaintext => "mqtt",
            Listener::Tls => "mqtts",
            Listener::WebSocket => "ws",
            Listener::SecureWebSocket => "wss",
        }
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
        publish.shrink_to_fit();
        subscribe.shrink_to_fit();
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
