//! The HTTP listener: the Event Grid data-plane API ([`api`]), health, readiness and metrics.

pub mod api;
pub mod listener;
pub mod request_metrics;
pub mod state;

use crate::metrics;
use crate::snapshot::Readiness;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use request_metrics::record_request;
use serde_json::json;
use std::future::Future;
use tokio::net::TcpListener;

pub use request_metrics::RouteLabel;
pub use state::AppState;

/// Every route, with request metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        // `{topic}:publish` is not a route axum can match: the API parses its paths itself.
        .route("/topics/{*operation}", any(api::handle))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/status/eventsubscriptions", get(push_status))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            record_request,
        ))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The process is alive: it answers.
async fn healthz() -> &'static str {
    "ok"
}

/// The data plane serves a Namespace.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.snapshot.readiness().as_ref() {
        Readiness::Ready { namespace } => (
            StatusCode::OK,
            Json(json!({"ready": true, "namespace": namespace})),
        )
            .into_response(),
        Readiness::NotReady { reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

/// Push subscriptions' delivery status (see `delivery/status.rs`); the operator will copy it
/// into the EventSubscriptions' status.
async fn push_status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.push_status.render())
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render metrics: {error}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::snapshot::SharedSnapshot;
    use crate::store::{EventStore, Queues, StoreOptions};
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// A router on an empty Snapshot and a store in a temporary folder (kept alive by the
    /// returned guard).
    pub(crate) async fn app_with(
        snapshot: SharedSnapshot,
    ) -> (Router, AppState, tempfile::TempDir) {
        let data = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let store = EventStore::open(StoreOptions {
            data_dir: data.path().to_path_buf(),
            metrics: metrics.clone(),
        })
        .await
        .unwrap();
        let state = AppState::new(snapshot, metrics, Queues::local(store)).unwrap();
        (router(state.clone()), state, data)
    }

    async fn app() -> (Router, AppState, tempfile::TempDir) {
        app_with(SharedSnapshot::new()).await
    }

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
    async fn healthz_answers_while_the_process_runs() {
        let (router, _, _data) = app().await;
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_503_with_a_reason_before_a_namespace_is_served() {
        let (router, _, _data) = app().await;
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["ready"], false);
        assert_eq!(body["reason"], "no configuration loaded yet");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_not_by_raw_path() {
        let (router, _, _data) = app().await;
        get(&router, "/healthz").await;
        get(&router, "/no/such/path/1").await;
        get(&router, "/no/such/path/2").await;
        get(&router, "/topics/no/such/operation").await;
        get(&router, "/topics/orders:publish").await;
        let (_, text) = get(&router, "/metrics").await;
        assert!(
            text.contains(r#"gridline_http_requests_total{path="/healthz",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gridline_http_requests_total{path="unmatched",status="404"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gridline_http_requests_total{path="publish",status="405"} 1"#),
            "{text}"
        );
        assert!(!text.contains("/no/such/path"));
        assert!(!text.contains("/topics/"));
    }

    #[tokio::test]
    async fn draining_resolves_once_shutdown_begins() {
        let (stop, stopped) = crate::shutdown::Stopper::new();
        let draining = stopped;
        let waiting = tokio::spawn(async move { draining.stopped().await });
        stop.stop();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
