//! Prometheus metrics and the operator's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Result labels of `gridline_operator_reconciles_total`.
pub const RESULT_OK: &str = "ok";
pub const RESULT_ERROR: &str = "error";
/// A status reconcile that found the status already right.
pub const RESULT_UNCHANGED: &str = "unchanged";
/// A status reconcile that wrote a new status.
pub const RESULT_PATCHED: &str = "patched";

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    durations: HistogramVec,
    errors: IntCounterVec,
    pub leader: IntGauge,
    ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "gridline_operator_reconciles_total",
                "Reconciles by kind and result (ok, error; for status: patched, unchanged, error)",
            ),
            &["kind", "result"],
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "gridline_operator_reconcile_duration_seconds",
                "Duration of a Namespace children reconcile (kind=Namespace) or of a status pass \
                 over one Kubernetes namespace (kind=Status)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "gridline_operator_reconcile_errors_total",
                "Failed reconciles by kind and error",
            ),
            &["kind", "error"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "gridline_operator_leader",
            "1 while this replica holds the leader Lease",
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations.clone()),
            Box::new(errors.clone()),
            Box::new(leader.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Arc::new(Self {
            registry,
            reconciles,
            durations,
            errors,
            leader,
            ready: AtomicBool::new(false),
        })
    }

    pub fn reconciled(&self, kind: &str, result: &str) {
        self.reconciles.with_label_values(&[kind, result]).inc();
    }

    pub fn reconciled_many(&self, kind: &str, result: &str, count: u64) {
        self.reconciles
            .with_label_values(&[kind, result])
            .inc_by(count);
    }

    pub fn failed(&self, kind: &str, error: &str) {
        self.reconciles
            .with_label_values(&[kind, RESULT_ERROR])
            .inc();
        self.errors.with_label_values(&[kind, error]).inc();
    }

    pub fn observe_duration(&self, kind: &str, started: Instant) {
        self.durations
            .with_label_values(&[kind])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Ready: connected to the API server and taking part in leader election.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_name_kind_and_result() {
        let metrics = Metrics::new();
        metrics.reconciled("Topic", RESULT_PATCHED);
        metrics.failed("Namespace", "apply");
        metrics.observe_duration("Namespace", Instant::now());
        let (status, text) = get(&router(metrics), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains(r#"gridline_operator_reconciles_total{kind="Topic",result="patched"} 1"#)
        );
        assert!(
            text.contains(
                r#"gridline_operator_reconciles_total{kind="Namespace",result="error"} 1"#
            )
        );
        assert!(text.contains(
            r#"gridline_operator_reconcile_errors_total{error="apply",kind="Namespace"} 1"#
        ));
        assert!(
            text.contains(
                "gridline_operator_reconcile_duration_seconds_count{kind=\"Namespace\"} 1"
            )
        );
    }

    #[tokio::test]
    async fn healthz_is_always_ok_and_readyz_waits_for_start() {
        let metrics = Metrics::new();
        let router = router(metrics.clone());
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&router, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.set_ready();
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
    }
}
