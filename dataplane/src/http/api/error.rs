//! Every error the Event Grid API answers with, made here and only here, in Event Grid's shape
//! (`Azure.Core.Foundations.ErrorResponse` of the 2024-06-01 REST specification):
//! `{"error":{"code":"…","message":"…","target":"…"?}}`, the code also in the
//! `x-ms-error-code` header. Codes are the names of the HTTP statuses as Event Grid spells
//! them (`BadRequest`, `Unauthorized`, `NotFound`, ...).
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `BadRequest` | bad or missing `api-version`, bad query parameter, malformed JSON, an invalid event (message `event <i>: …`, `target` the attribute), a bad `lockTokens` body, receive/settle on a push subscription |
//! | 401 | `Unauthorized` | no, wrong, expired or misdirected credentials; a Namespace without keys |
//! | 404 | `NotFound` | unknown topic, subscription or operation |
//! | 405 | `MethodNotAllowed` | anything but POST |
//! | 413 | `RequestEntityTooLarge` | a request or an event over 1 MB |
//! | 415 | `UnsupportedMediaType` | a publish that is neither structured, batch nor binary mode |
//! | 500 | `InternalServerError` | the store failed to read (details in the log only) |
//! | 503 | `ServiceUnavailable` | no Namespace is served yet, or the store is shutting down |
//! | 503 + `Retry-After` | `ServiceUnavailable` | the store's volume is full, or a publish could not be written: nothing of the request was stored, retrying later works |

use crate::auth::AuthError;
use crate::cloudevents::ParseError;
use crate::store::StoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// How long a client is asked to wait when the store cannot write (a full volume needs an
/// operator or retention to free space; sooner would only add load).
pub const STORAGE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The API versions Gridline serves.
pub const API_VERSIONS: [&str; 2] = ["2023-11-01", "2024-06-01"];

/// An error response of the Event Grid API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            target: None,
            retry_after: None,
        }
    }

    fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn unauthorized(error: &AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", error.to_string())
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("method {method} is not allowed: every Event Grid operation is a POST"),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            message,
        )
    }

    pub fn unsupported_media_type(content_type: Option<&str>) -> Self {
        let sent = match content_type {
            Some(content_type) => format!("content type '{content_type}' is not supported"),
            None => "the request has no content type".to_string(),
        };
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "{sent}: publish one event as application/cloudevents+json, a JSON array of events as application/cloudevents-batch+json, or one event in binary mode (ce-* headers, the body its data)"
            ),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// The store cannot write: 503 with `Retry-After`.
    fn storage_unavailable(message: &str) -> Self {
        let mut error = Self::unavailable(message);
        error.retry_after = Some(STORAGE_RETRY_AFTER);
        error
    }

    /// A publish the store refused. A publish only writes, so any storage failure is a failed
    /// write: nothing of the request was stored and the same request may be sent again (503).
    pub fn publish_failed(error: StoreError) -> Self {
        match error {
            // The store logs its failed writes (rate-limited), not once per request.
            StoreError::Io(_) if !error.is_storage_full() => Self::storage_unavailable(
                "the event store could not write the events durably; nothing of this request was stored, retry later",
            ),
            other => other.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }

    /// A missing or unsupported `api-version`.
    pub fn api_version(sent: Option<&str>) -> Self {
        let supported = API_VERSIONS.join(", ");
        Self::bad_request(match sent {
            None => format!(
                "the api-version query parameter is required; supported versions: {supported}"
            ),
            Some(version) => {
                format!("api-version '{version}' is not supported; supported versions: {supported}")
            }
        })
    }

    /// An operation path that names nothing Event Grid has.
    pub fn no_such_operation(path: &str) -> Self {
        Self::not_found(format!(
            "no operation at '{path}': the API has POST /topics/{{topic}}:publish and POST /topics/{{topic}}/eventsubscriptions/{{subscription}}:receive|acknowledge|release|reject|renewLock"
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
                target: self.target.as_deref(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-ms-error-code", HeaderValue::from_static(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the schemes that would work.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("SharedAccessKey, SharedAccessSignature"),
            );
        }
        if let Some(after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> Self {
        let target = match &error {
            ParseError::Invalid { index, .. } => error
                .attribute()
                .map(|attribute| format!("events[{index}].{attribute}")),
            _ => None,
        };
        let api = match &error {
            ParseError::TooLarge { .. } => ApiError::too_large(error.to_string()),
            _ => ApiError::bad_request(error.to_string()),
        };
        match target {
            Some(target) => api.with_target(target),
            None => api,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::TopicNotFound(_) | StoreError::SubscriptionNotFound { .. } => {
                ApiError::not_found(error.to_string())
            }
            StoreError::NotAQueueSubscription { .. } | StoreError::NotAPushSubscription { .. } => {
                ApiError::bad_request(error.to_string())
            }
            StoreError::ShuttingDown => ApiError::unavailable(error.to_string()),
            // Logged by the store (rate-limited), not once per request.
            full if full.is_storage_full() => ApiError::storage_unavailable(
                "the event store's storage is full; nothing of this request was stored, retry later",
            ),
            StoreError::Io(io) => {
                // The details are for the operator, not the client.
                tracing::error!(error = %io, "the event store failed");
                ApiError::internal("the event store failed; the data plane's log says why")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevents::Problem;
    use axum::body::to_bytes;
    use serde_json::{Value, json};

    async fn render(error: ApiError) -> (StatusCode, Option<String>, Value) {
        let response = error.into_response();
        let status = response.status();
        let code = response
            .headers()
            .get("x-ms-error-code")
            .map(|v| v.to_str().unwrap().to_string());
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, code, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn an_error_has_event_grids_shape_and_header() {
        let (status, code, body) = render(ApiError::not_found("topic 'x' not found")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(code.as_deref(), Some("NotFound"));
        assert_eq!(
            body,
            json!({"error": {"code": "NotFound", "message": "topic 'x' not found"}})
        );
    }

    #[tokio::test]
    async fn an_invalid_event_names_its_index_and_attribute() {
        let error = ParseError::Invalid {
            index: 3,
            problem: Problem::Missing("source"),
        };
        let (status, _, body) = render(error.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {
                "code": "BadRequest",
                "message": "event 3: required attribute 'source' is missing",
                "target": "events[3].source"
            }})
        );
    }

    #[tokio::test]
    async fn an_oversized_event_is_413() {
        let error = ParseError::TooLarge {
            index: 0,
            size: 2 << 20,
        };
        let (status, code, _) = render(error.into()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(code.as_deref(), Some("RequestEntityTooLarge"));
    }

    #[tokio::test]
    async fn api_version_errors_name_the_supported_versions() {
        let (status, _, body) = render(ApiError::api_version(Some("2018-01-01"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["error"]["message"],
            "api-version '2018-01-01' is not supported; supported versions: 2023-11-01, 2024-06-01"
        );
        let (_, _, body) = render(ApiError::api_version(None)).await;
        assert_eq!(
            body["error"]["message"],
            "the api-version query parameter is required; supported versions: 2023-11-01, 2024-06-01"
        );
    }

    #[tokio::test]
    async fn store_errors_map_to_statuses() {
        let cases = [
            (StoreError::TopicNotFound("t".into()), StatusCode::NOT_FOUND),
            (
                StoreError::SubscriptionNotFound {
                    topic: "t".into(),
                    subscription: "s".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::NotAQueueSubscription {
                    topic: "t".into(),
                    subscription: "s".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (StoreError::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE),
            (
                StoreError::Io(std::io::Error::other("disk on fire")),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let (got, _, body) = render(error.into()).await;
            assert_eq!(got, status);
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("disk on fire")
            );
        }
    }

    #[tokio::test]
    async fn a_full_store_answers_503_with_retry_after_and_says_storage_is_full() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        for error in [
            ApiError::from(StoreError::Io(full)),
            ApiError::publish_failed(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "Disk quota exceeded",
            ))),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "10");
            let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "ServiceUnavailable");
            assert_eq!(
                body["error"]["message"],
                "the event store's storage is full; nothing of this request was stored, retry later"
            );
        }
    }

    #[tokio::test]
    async fn a_publish_that_fails_to_write_is_503_with_retry_after_and_other_reads_500() {
        let eio = || std::io::Error::other("Input/output error");
        let response = ApiError::publish_failed(StoreError::Io(eio())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "10");
        let response = ApiError::from(StoreError::Io(eio())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn method_not_allowed_says_allow_post() {
        let response = ApiError::method_not_allowed("GET").into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }
}
