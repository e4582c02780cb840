//! The `gridline_push_*` families, registered into the data plane's registry. Labels are
//! topic and subscription names (bounded by the configuration) and small fixed sets
//! (`class`, `reason`); a subscription's series go when it does.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

const SUB: &[&str] = &["topic", "subscription"];

pub struct PushMetrics {
    delivered: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    dead_lettered: IntCounterVec,
    latency: HistogramVec,
    healthy: IntGaugeVec,
    validated: IntGaugeVec,
    in_flight: IntGaugeVec,
}

/// The failure classes of `gridline_push_failed_attempts_total`.
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "connection"];
/// The reasons of `gridline_push_dead_lettered_events_total`.
const REASONS: [&str; 3] = [
    "NonRetryableStatus",
    "MaxDeliveryCountExceeded",
    "TimeToLiveExceeded",
];

impl PushMetrics {
    /// Create and register every family. A family already registered (a second data plane on
    /// one registry, in tests) is skipped, as the store does.
    pub fn register(registry: &Registry) -> prometheus::Result<PushMetrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let metrics = PushMetrics {
            delivered: counter(
                "gridline_push_delivered_events_total",
                "Events the endpoint accepted (2xx)",
                SUB,
            )?,
            failed: counter(
                "gridline_push_failed_attempts_total",
                "Event delivery attempts that failed, by class: the status (1xx..5xx), timeout or connection",
                &["topic", "subscription", "class"],
            )?,
            retried: counter(
                "gridline_push_retried_events_total",
                "Events scheduled for another attempt after a failed one",
                SUB,
            )?,
            dead_lettered: counter(
                "gridline_push_dead_lettered_events_total",
                "Events given up on by the dispatcher, by reason: appended to the dead-letter topic, or dropped without one",
                &["topic", "subscription", "reason"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "gridline_push_delivery_latency_seconds",
                    "From an event's publish to its successful delivery (retries included)",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0, 1800.0, 7200.0,
                ]),
                SUB,
            )?,
            healthy: IntGaugeVec::new(
                Opts::new(
                    "gridline_push_endpoint_healthy",
                    "1 unless the endpoint's recent requests failed in a row (the EndpointHealthy condition)",
                ),
                SUB,
            )?,
            validated: IntGaugeVec::new(
                Opts::new(
                    "gridline_push_endpoint_validated",
                    "1 once the endpoint passed the validation handshake (the EndpointValidated condition)",
                ),
                SUB,
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "gridline_push_requests_in_flight",
                    "Delivery requests waiting for the endpoint's answer",
                ),
                SUB,
            )?,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(metrics.delivered.clone()),
            Box::new(metrics.failed.clone()),
            Box::new(metrics.retried.clone()),
            Box::new(metrics.dead_lettered.clone()),
            Box::new(metrics.latency.clone()),
            Box::new(metrics.healthy.clone()),
            Box::new(metrics.validated.clone()),
            Box::new(metrics.in_flight.clone()),
        ];
        for collector in collectors {
            if let Err(error) = registry.register(collector) {
                tracing::warn!(%error, "push metric not registered");
            }
        }
        Ok(metrics)
    }

    /// The series of one subscription, resolved once; present (at 0) from the start.
    pub fn subscription(&self, topic: &str, subscription: &str) -> SubscriptionMetrics {
        let labels = [topic, subscription];
        SubscriptionMetrics {
            delivered: self.delivered.with_label_values(&labels),
            failed: CLASSES
                .map(|class| {
                    let series = self.failed.with_label_values(&[topic, subscription, class]);
                    (class, series)
                })
                .to_vec(),
            retried: self.retried.with_label_values(&labels),
            dead_lettered: REASONS
                .map(|reason| {
                    let series =
                        self.dead_lettered
                            .with_label_values(&[topic, subscription, reason]);
                    (reason, series)
                })
                .to_vec(),
            latency: self.latency.with_label_values(&labels),
            healthy: self.healthy.with_label_values(&labels),
            validated: self.validated.with_label_values(&labels),
            in_flight: self.in_flight.with_label_values(&labels),
        }
    }

    /// Drop the series of a subscription that is no longer served.
    pub fn forget(&self, topic: &str, subscription: &str) {
        let labels = [topic, subscription];
        for family in [&self.delivered, &self.retried] {
            let _ = family.remove_label_values(&labels);
        }
        for class in CLASSES {
            let _ = self
                .failed
                .remove_label_values(&[topic, subscription, class]);
        }
        for reason in REASONS {
            let _ = self
                .dead_lettered
                .remove_label_values(&[topic, subscription, reason]);
        }
        let _ = self.latency.remove_label_values(&labels);
        for gauge in [&self.healthy, &self.validated, &self.in_flight] {
            let _ = gauge.remove_label_values(&labels);
        }
    }
}

/// One subscription's series.
pub struct SubscriptionMetrics {
    pub delivered: IntCounter,
    failed: Vec<(&'static str, IntCounter)>,
    pub retried: IntCounter,
    dead_lettered: Vec<(&'static str, IntCounter)>,
    pub latency: Histogram,
    pub healthy: IntGauge,
    pub validated: IntGauge,
    pub in_flight: IntGauge,
}

impl SubscriptionMetrics {
    pub fn failed(&self, class: &str, events: u64) {
        if let Some((_, counter)) = self.failed.iter().find(|(c, _)| *c == class) {
            counter.inc_by(events);
        }
    }

    pub fn dead_lettered(&self, reason: &str) {
        if let Some((_, counter)) = self.dead_lettered.iter().find(|(r, _)| *r == reason) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriptions_series_exist_from_the_start_and_go_with_it() {
        let registry = Registry::new();
        let metrics = PushMetrics::register(&registry).unwrap();
        let series = metrics.subscription("orders", "hook");
        series.failed("5xx", 2);
        series.dead_lettered("NonRetryableStatus");
        let text = render(&registry);
        for line in [
            r#"gridline_push_delivered_events_total{subscription="hook",topic="orders"} 0"#,
            r#"gridline_push_failed_attempts_total{class="5xx",subscription="hook",topic="orders"} 2"#,
            r#"gridline_push_failed_attempts_total{class="timeout",subscription="hook",topic="orders"} 0"#,
            r#"gridline_push_dead_lettered_events_total{reason="NonRetryableStatus",subscription="hook",topic="orders"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
        metrics.forget("orders", "hook");
        assert!(!render(&registry).contains("hook"));
    }

    fn render(registry: &Registry) -> String {
        let mut buffer = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buffer,
        )
        .unwrap();
        String::from_utf8(buffer).unwrap()
    }
}
