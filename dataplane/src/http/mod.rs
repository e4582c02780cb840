//! The HTTP listener: health, readiness and metrics (the Event Grid data-plane API joins it
//! later).

use crate::metrics::{self, Metrics};
use crate::snapshot::{Readiness, SharedSnapshot};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
}

/// The route label of requests that matched no route: one value for every unknown path, so a
/// scanner cannot grow the metric without bound.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Every route, with request metrics.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
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

/// Count each request and time it, labelled by the route pattern that matched.
async fn record_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE.to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_http_request(&route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    fn app() -> (Router, AppState) {
        let state = AppState {
            snapshot: SharedSnapshot::new(),
            metrics: Arc::new(Metrics::new().unwrap()),
        };
        (router(state.clone()), state)
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
        let (router, _) = app();
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_503_with_a_reason_before_a_namespace_is_served() {
        let (router, _) = app();
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["ready"], false);
        assert_eq!(body["reason"], "no configuration loaded yet");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_not_by_raw_path() {
        let (router, _) = app();
        get(&router, "/healthz").await;
        get(&router, "/no/such/path/1").await;
        get(&router, "/no/such/path/2").await;
        let (_, text) = get(&router, "/metrics").await;
        assert!(
            text.contains(r#"gridline_http_requests_total{path="/healthz",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gridline_http_requests_total{path="unmatched",status="404"} 2"#),
            "{text}"
        );
        assert!(!text.contains("/no/such/path"));
    }
}
