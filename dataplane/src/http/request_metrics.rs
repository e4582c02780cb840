//! Request metrics by route label: a leaf below the router (`mod.rs`), which layers
//! [`record_request`] over every route, and the API handlers (`api/`), which name their
//! operation with a [`RouteLabel`].

use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;

/// The metrics label of a response, set by a handler that serves several operations on one
/// route (the Event Grid API labels by operation name, not by path).
#[derive(Clone, Copy, Debug)]
pub struct RouteLabel(pub &'static str);

/// The route label of requests that matched no route: one value for every unknown path, so a
/// scanner cannot grow the metric without bound.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Count each request and time it, labelled by the operation the handler named, else by the
/// route pattern that matched (never the raw path). The API's paths that name no operation
/// count as unmatched.
pub async fn record_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let pattern = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = match (response.extensions().get::<RouteLabel>(), &pattern) {
        (Some(label), _) => label.0,
        (None, Some(pattern)) if !pattern.starts_with("/topics/") => pattern.as_str(),
        _ => UNMATCHED_ROUTE,
    };
    metrics.record_http_request(route, response.status().as_u16(), started.elapsed());
    response
}
