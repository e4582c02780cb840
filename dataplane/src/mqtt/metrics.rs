//! `gridline_mqtt_*` metrics, registered into the data plane's registry.

use super::authorize::Listener;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every listener's metric handle of one family, looked up once (`Listener as usize`).
type ByListener<T> = [T; 4];

pub struct MqttMetrics {
    /// Open connections, by listener (`mqtt`, `mqtts`, `ws`, `wss`).
    pub connections: IntGaugeVec,
    /// CONNECT attempts by listener and result, and sockets closed before one (over the
    /// listener's connection limit, failed TLS handshakes).
    pub connects: IntCounterVec,
    pub sessions: IntGauge,
    pub subscriptions: IntGauge,
    pub messages_in: IntCounterVec,
    pub messages_out: IntCounterVec,
    /// `messages_in` / `messages_out` by QoS, looked up once: a label lookup per message
    /// (a hash under a lock) was a visible share of the router's cost.
    messages_in_by_qos: [IntCounter; 3],
    messages_out_by_qos: [IntCounter; 3],
    pub retained: IntGauge,
    pub dropped: IntCounterVec,
    /// Payload bytes received and sent, by listener.
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    connections_by_listener: ByListener<IntGauge>,
    bytes_in_by_listener: ByListener<IntCounter>,
    bytes_out_by_listener: ByListener<IntCounter>,
    /// Namespace limits hit, by limit (`subscriptions_per_connection`, `messages_per_second`).
    pub limited: IntCounterVec,
    /// Connections ended, by Event Grid's `disconnectionReason` (the lifecycle event's).
    pub disconnections: IntCounterVec,
    /// Authentication successes and failures (`authenticate`).
    pub auth: super::authenticate::AuthMetrics,
}

impl MqttMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let messages_in = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_messages_in_total",
                "PUBLISH received, by QoS",
            ),
            &["qos"],
        )?;
        let messages_out = IntCounterVec::new(
            Opts::new("gridline_mqtt_messages_out_total", "PUBLISH sent, by QoS"),
            &["qos"],
        )?;
        let by_qos = |vec: &IntCounterVec| ["0", "1", "2"].map(|qos| vec.with_label_values(&[qos]));
        let connections = IntGaugeVec::new(
            Opts::new(
                "gridline_mqtt_connections",
                "Open MQTT connections, by listener",
            ),
            &["listener"],
        )?;
        let bytes_in = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_received_bytes_total",
                "PUBLISH payload bytes received, by listener",
            ),
            &["listener"],
        )?;
        let bytes_out = IntCounterVec::new(
            Opts::new(
                "gridline_mqtt_sent_bytes_total",
                "PUBLISH payload bytes sent, by listener",
            ),
            &["listener"],
        )?;
        let by_listener_gauge =
            |vec: &IntGaugeVec| Listener::ALL.map(|l| vec.with_label_values(&[l.label()]));
        let by_listener =
            |vec: &IntCounterVec| Listener::ALL.map(|l| vec.with_label_values(&[l.label()]));
        let metrics = Self {
            connections_by_listener: by_listener_gauge(&connections),
            bytes_in_by_listener: by_listener(&bytes_in),
            bytes_out_by_listener: by_listener(&bytes_out),
            messages_in_by_qos: by_qos(&messages_in),
            messages_out_by_qos: by_qos(&messages_out),
            connections,
            connects: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_connects_total",
                    "CONNECT attempts, by listener and result (accepted, the refusal reason \
                     code, over_limit, tls_failed, tls_timeout)",
                ),
                &["listener", "result"],
            )?,
            sessions: IntGauge::new("gridline_mqtt_sessions", "MQTT sessions, connected or not")?,
            subscriptions: IntGauge::new("gridline_mqtt_subscriptions", "MQTT subscriptions")?,
            messages_in,
            messages_out,
            retained: IntGauge::new("gridline_mqtt_retained_messages", "Retained messages")?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_dropped_messages_total",
                    "Messages dropped, by reason",
                ),
                &["reason"],
            )?,
            bytes_in,
            bytes_out,
            auth: super::authenticate::AuthMetrics::register(registry)?,
            limited: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_limited_total",
                    "Namespace limits hit (subscriptions refused, reads paused), by limit",
                ),
                &["limit"],
            )?,
            disconnections: IntCounterVec::new(
                Opts::new(
                    "gridline_mqtt_disconnections_total",
                    "Connections ended after CONNACK, by disconnection reason (Event Grid's \
                     disconnectionReason: ConnectionLost, SessionOverflow, ...)",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(metrics.connections.clone()))?;
        registry.register(Box::new(metrics.connects.clone()))?;
        registry.register(Box::new(metrics.sessions.clone()))?;
        registry.register(Box::new(metrics.subscriptions.clone()))?;
        registry.register(Box::new(metrics.messages_in.clone()))?;
        registry.register(Box::new(metrics.messages_out.clone()))?;
        registry.register(Box::new(metrics.retained.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.bytes_in.clone()))?;
        registry.register(Box::new(metrics.bytes_out.clone()))?;
        registry.register(Box::new(metrics.limited.clone()))?;
        registry.register(Box::new(metrics.disconnections.clone()))?;
        Ok(metrics)
    }

    pub fn connection_opened(&self, listener: Listener) {
        self.connections_by_listener[listener as usize].inc();
    }

    pub fn connection_closed(&self, listener: Listener) {
        self.connections_by_listener[listener as usize].dec();
    }

    /// A CONNECT (or a socket that never got to one) on `listener` ended as `result`.
    pub fn connect(&self, listener: Listener, result: &str) {
        self.connects
            .with_label_values(&[listener.label(), result])
            .inc();
    }

    pub fn bytes_in(&self, listener: Listener, bytes: u64) {
        self.bytes_in_by_listener[listener as usize].inc_by(bytes);
    }

    pub fn bytes_out(&self, listener: Listener, bytes: u64) {
        self.bytes_out_by_listener[listener as usize].inc_by(bytes);
    }

    /// A PUBLISH received at `qos`.
    pub fn message_in(&self, qos: super::codec::QoS) {
        self.messages_in_by_qos[qos as usize].inc();
    }

    /// Messages sent, by QoS (index 0, 1, 2).
    pub fn messages_out(&self, by_qos: [u64; 3]) {
        for (counter, count) in self.messages_out_by_qos.iter().zip(by_qos) {
            if count > 0 {
                counter.inc_by(count);
            }
        }
    }

    /// A connection ended for `reason` (`lifecycle::DisconnectionReason::as_str`).
    pub fn disconnection(&self, reason: &str) {
        self.disconnections.with_label_values(&[reason]).inc();
    }

    pub fn drop_message(&self, reason: &str) {
        self.dropped.with_label_values(&[reason]).inc();
    }
}
