//! The Event Grid namespace data-plane API (api-versions 2023-11-01 and 2024-06-01), as the
//! Azure SDKs call it:
//!
//! | operation | path | body | answer |
//! |---|---|---|---|
//! | publish | `POST /topics/{topic}:publish` | one event, a batch, or binary mode | `{}` once stored |
//! | receive | `POST /topics/{topic}/eventsubscriptions/{sub}:receive?maxEvents=&maxWaitTime=` | none | `{"value":[{"brokerProperties":{"lockToken","deliveryCount"},"event":{…}}]}` |
//! | acknowledge, release (`releaseDelayInSeconds=`), reject, renewLock | `…/{sub}:<operation>` | `{"lockTokens":[…]}` | `{"failedLockTokens":[…],"succeededLockTokens":[…]}` |
//!
//! Each request goes through the same steps, cheapest and least revealing first: the path
//! (404), the method (405), a served Namespace (503), the credentials (401, before anything
//! about topics is revealed and before the body is read), `api-version` (400), the query
//! parameters (400), the topic and subscription (404, 400 for a push subscription), then the
//! body. Errors are made in [`error`].

pub mod authenticate;
mod body;
pub mod error;
pub mod metrics;
pub mod path;
mod publish;
pub mod query;
mod subscription;
#[cfg(test)]
mod tests;

use super::request_metrics::RouteLabel;
use super::state::AppState;
use crate::log_limit::truncated;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use gridline_crds::model::{Delivery, Snapshot};
use path::{ApiPath, Operation};
use query::Query;
use tracing::{Instrument, debug, info, info_span, warn};

pub use body::MAX_REQUEST_BYTES;

/// Every request under `/topics/`.
pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(path) = path::parse(parts.uri.path()) else {
        return ApiError::no_such_operation(&truncated(parts.uri.path())).into_response();
    };
    let operation = path.operation;
    // Names as the client sent them, before anything checked them: cut for the logs.
    let span = info_span!(
        "api",
        op = operation.name(),
        topic = %truncated(&path.topic),
        subscription = %truncated(path.subscription.as_deref().unwrap_or("")),
    );
    let mut response = match serve(&state, &parts, body, path)
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| {
                if error.status.is_server_error() {
                    warn!(status = error.status.as_u16(), code = error.code, message = %error.message, "request failed");
                } else {
                    debug!(status = error.status.as_u16(), code = error.code, message = %truncated(&error.message), "request refused");
                }
            });
            error.into_response()
        }
    };
    response
        .extensions_mut()
        .insert(RouteLabel(operation.name()));
    response
}

async fn serve(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
    path: ApiPath,
) -> Result<Response, ApiError> {
    if parts.method != Method::POST {
        return Err(ApiError::method_not_allowed(parts.method.as_str()));
    }
    let snapshot = state.snapshot.load();
    let Some(namespace) = &snapshot.namespace else {
        let reason = match state.snapshot.readiness().as_ref() {
            crate::snapshot::Readiness::NotReady { reason } => reason.clone(),
            crate::snapshot::Readiness::Ready { .. } => "no Namespace is served".into(),
        };
        return Err(ApiError::unavailable(format!(
            "the data plane serves no Namespace yet: {reason}"
        )));
    };
    if let Err(refused) = authenticate::authenticate(&namespace.name, &namespace.sas_keys, parts) {
        // The reason only, never what was presented; a line a second per reason at most, since
        // anyone can cause it (every refusal is counted in the metric).
        if let Some(suppressed) = state.api.auth_failure_log.allow(refused.reason()) {
            info!(
                reason = refused.reason(),
                suppressed, "authentication failed: {refused}"
            );
        }
        state.api.auth_failed(&refused);
        return Err(ApiError::unauthorized(&refused));
    }
    let query = Query::parse(parts.uri.query());
    query.api_version()?;

    // Resolve names to the Snapshot's spelling, then let the Snapshot go: a long poll must not
    // keep an old configuration alive.
    let target = Target::resolve(&snapshot, &path)?;
    drop(snapshot);

    match (path.operation, target) {
        (Operation::Publish, Target::Topic(topic)) => {
            publish::publish(state, &topic, &parts.headers, body).await
        }
        (Operation::Receive, Target::Subscription(topic, subscription)) => {
            subscription::receive(state, &topic, &subscription, &query).await
        }
        (operation, Target::Subscription(topic, subscription)) => {
            subscription::settle(
                state,
                &topic,
                &subscription,
                operation,
                &query,
                &parts.headers,
                body,
            )
            .await
        }
        (_, Target::Topic(_)) => Err(ApiError::no_such_operation(parts.uri.path())),
    }
}

/// What an operation acts on, by the names the Snapshot (and so the store) uses.
enum Target {
    Topic(String),
    Subscription(String, String),
}

impl Target {
    /// Names match without regard to case, as Event Grid's do; an exact match wins.
    fn resolve(snapshot: &Snapshot, path: &ApiPath) -> Result<Self, ApiError> {
        let namespace = snapshot
            .namespace
            .as_ref()
            .map(|n| n.name.as_str())
            .unwrap_or_default();
        let topic = find(snapshot.topics.keys(), &path.topic).ok_or_else(|| {
            ApiError::not_found(format!(
                "topic '{}' not found in namespace '{namespace}'",
                path.topic
            ))
        })?;
        let Some(wanted) = &path.subscription else {
            return Ok(Target::Topic(topic.clone()));
        };
        let names = snapshot.subscriptions_of(topic).map(|s| &s.name);
        let name = find(names, wanted).ok_or_else(|| {
            ApiError::not_found(format!(
                "event subscription '{wanted}' not found on topic '{topic}'"
            ))
        })?;
        let subscription = &snapshot.subscriptions[&(topic.clone(), name.clone())];
        if let Delivery::Push(_) = subscription.delivery {
            return Err(ApiError::bad_request(format!(
                "event subscription '{name}' on topic '{topic}' uses push delivery; receive, acknowledge, release, reject and renewLock work on queue subscriptions only"
            )));
        }
        Ok(Target::Subscription(topic.clone(), name.clone()))
    }
}

fn find<'a>(names: impl Iterator<Item = &'a String>, wanted: &str) -> Option<&'a String> {
    let names: Vec<&String> = names.collect();
    names
        .iter()
        .find(|name| **name == wanted)
        .or_else(|| names.iter().find(|name| name.eq_ignore_ascii_case(wanted)))
        .copied()
}
