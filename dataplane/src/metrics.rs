//! The data plane's Prometheus metrics, in a registry of its own (never the process-global
//! default registry, so tests and embedded uses get independent counts).

use gridline_crds::model::Kind;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The outcome of a configuration load, as counted in `gridline_config_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Applied,
    Rejected,
}

impl ReloadResult {
    fn label(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Rejected => "rejected",
        }
    }
}

/// Every metric of the data plane, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    config_objects: IntGaugeVec,
    config_errors: IntGauge,
    config_reloads: IntCounterVec,
    config_last_applied: Gauge,
    http_requests: IntCounterVec,
    http_request_duration: HistogramVec,
}

/// The kinds counted in `gridline_config_objects`: those a Snapshot holds (Secrets are
/// inputs, not served objects).
fn served_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| *k != Kind::Secret)
}

impl Metrics {
    /// The registry `/metrics` renders. Subsystems (store, delivery, MQTT) register their own
    /// metric families here, each in its own module.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Create and register every metric. Fails only on a programming error (a bad name or a
    /// metric registered twice), so callers treat it as a start-up failure.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let config_objects = IntGaugeVec::new(
            Opts::new(
                "gridline_config_objects",
                "Objects of each kind in the served Snapshot",
            ),
            &["kind"],
        )?;
        let config_errors = IntGauge::new(
            "gridline_config_errors",
            "Problems found by the last configuration load",
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "gridline_config_reloads_total",
                "Configuration loads, by whether the result was applied or rejected",
            ),
            &["result"],
        )?;
        let config_last_applied = Gauge::new(
            "gridline_config_last_applied_timestamp_seconds",
            "When a configuration was last applied (Unix time)",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("gridline_build_info", "The running build; always 1"),
            &["version"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "gridline_http_requests_total",
                "HTTP requests, by route and status code",
            ),
            &["path", "status"],
        )?;
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gridline_http_request_duration_seconds",
                "HTTP request duration, by route",
            ),
            &["path"],
        )?;

        registry.register(Box::new(config_objects.clone()))?;
        registry.register(Box::new(config_errors.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_last_applied.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_request_duration.clone()))?;

        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Present from the start, so a dashboard sees 0 rather than no series.
        for kind in served_kinds() {
            config_objects.with_label_values(&[kind.as_str()]).set(0);
        }
        for result in [ReloadResult::Applied, ReloadResult::Rejected] {
            config_reloads.with_label_values(&[result.label()]);
        }

        Ok(Self {
            registry,
            config_objects,
            config_errors,
            config_reloads,
            config_last_applied,
            http_requests,
            http_request_duration,
        })
    }

    /// Record a configuration load: how many problems it had and whether it was applied.
    pub fn record_load(&self, result: ReloadResult, problems: usize) {
        self.config_reloads
            .with_label_values(&[result.label()])
            .inc();
        self.config_errors
            .set(i64::try_from(problems).unwrap_or(i64::MAX));
    }

    /// Record the object counts of a Snapshot just applied.
    pub fn record_applied(&self, counts: &BTreeMap<Kind, usize>) {
        for kind in served_kinds() {
            let count = counts.get(&kind).copied().unwrap_or(0);
            self.config_objects
                .with_label_values(&[kind.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.config_last_applied.set(now.as_secs_f64());
    }

    /// Record one HTTP request. `route` is the matched route pattern (bounded), never the raw
    /// path (a client could make up any number of those).
    pub fn record_http_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_is_present_before_any_load() {
        let text = Metrics::new().unwrap().render().unwrap();
        for kind in served_kinds() {
            assert!(
                text.contains(&format!("gridline_config_objects{{kind=\"{kind}\"}} 0")),
                "{kind} missing in:\n{text}"
            );
        }
        assert!(!text.contains("kind=\"Secret\""));
    }

    #[test]
    fn build_info_carries_the_version() {
        let text = Metrics::new().unwrap().render().unwrap();
        assert!(text.contains(&format!(
            "gridline_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn an_applied_load_sets_counts_and_timestamp() {
        let metrics = Metrics::new().unwrap();
        metrics.record_load(ReloadResult::Applied, 0);
        metrics.record_applied(&BTreeMap::from([(Kind::Topic, 3)]));
        let text = metrics.render().unwrap();
        assert!(
            text.contains("gridline_config_objects{kind=\"Topic\"} 3"),
            "{text}"
        );
        assert!(text.contains("gridline_config_reloads_total{result=\"applied\"} 1"));
        assert!(text.contains("gridline_config_reloads_total{result=\"rejected\"} 0"));
        assert!(!text.contains("gridline_config_last_applied_timestamp_seconds 0\n"));
    }

    #[test]
    fn a_rejected_load_counts_its_problems() {
        let metrics = Metrics::new().unwrap();
        metrics.record_load(ReloadResult::Rejected, 2);
        let text = metrics.render().unwrap();
        assert!(text.contains("gridline_config_reloads_total{result=\"rejected\"} 1"));
        assert!(text.contains("gridline_config_errors 2"));
    }

    #[test]
    fn http_requests_are_counted_by_route_and_status() {
        let metrics = Metrics::new().unwrap();
        metrics.record_http_request("/healthz", 200, Duration::from_millis(2));
        let text = metrics.render().unwrap();
        assert!(text.contains("gridline_http_requests_total{path=\"/healthz\",status=\"200\"} 1"));
        assert!(text.contains("gridline_http_request_duration_seconds_count{path=\"/healthz\"} 1"));
    }
}
