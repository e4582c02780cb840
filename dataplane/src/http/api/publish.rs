//! `POST /topics/{topic}:publish`: one event (`application/cloudevents+json`), a batch
//! (`application/cloudevents-batch+json`, what the Azure SDKs always send) or, as a Gridline
//! extension, one event in binary mode. `200 {}` only once the store holds the events durably;
//! a publish the store could not write is 503 with `Retry-After` (nothing of it was stored).

use super::body::read_body;
use super::error::ApiError;
use crate::cloudevents::{self, Mode, binary};
use crate::http::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::debug;

pub async fn publish(
    state: &AppState,
    topic: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not ASCII)"));
    // Refuse what cannot be read before reading it.
    let mode = Mode::detect(content_type, binary::has_ce_headers(headers))
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    let body = read_body(headers, body).await?;
    let events = match mode {
        Mode::Structured => vec![cloudevents::parse_structured(&body)?],
        Mode::Batch => cloudevents::parse_batch(&body)?,
        Mode::Binary => vec![binary::parse_binary(headers, &body)?],
    };
    drop(body);

    let count = events.len();
    if count > 0 {
        state
            .queues
            .publish(topic, events)
            .await
            .map_err(ApiError::publish_failed)?;
        state.api.published(topic, count);
    }
    debug!(events = count, ?mode, "published");
    Ok(Json(json!({})).into_response())
}
