//! The operations on a queue subscription: receive (a long poll), and acknowledge, release,
//! reject and renewLock on lock tokens. Settling answers 200 even when some tokens failed:
//! each failure is an entry of `failedLockTokens` with Event Grid's code (`BadToken` for a
//! token that is not one, `TokenLost` for one whose lock is gone or that this subscription
//! does not hold).

use super::body::read_body;
use super::error::ApiError;
use super::path::Operation;
use super::query::Query;
use crate::http::state::AppState;
use crate::store::{LockTokenError, Settle};
use axum::Json;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::debug;

/// Lock tokens per settle request: Event Grid's 1-100.
const LOCK_TOKENS: std::ops::RangeInclusive<usize> = 1..=100;

#[derive(Serialize)]
struct ReceiveResult<'a> {
    value: Vec<ReceiveDetails<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiveDetails<'a> {
    broker_properties: BrokerProperties<'a>,
    event: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerProperties<'a> {
    lock_token: &'a str,
    delivery_count: u32,
}

pub async fn receive(
    state: &AppState,
    topic: &str,
    subscription: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let max_events = query.max_events()?;
    let max_wait = query.max_wait()?;
    let events = tokio::select! {
        received = state.queues.receive(topic, subscription, max_events, max_wait) => received?,
        // Shutting down: end the long poll as if it had timed out, so the server can stop
        // without waiting up to two minutes for it.
        () = state.draining.stopped() => Vec::new(),
    };
    debug!(events = events.len(), "received");
    let value = events
        .iter()
        .map(|event| ReceiveDetails {
            broker_properties: BrokerProperties {
                lock_token: &event.lock_token,
                delivery_count: event.delivery_count,
            },
            event: &event.event,
        })
        .collect();
    Ok(Json(ReceiveResult { value }).into_response())
}

#[derive(Deserialize)]
struct LockTokensBody {
    #[serde(rename = "lockTokens")]
    lock_tokens: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettleResult<'a> {
    failed_lock_tokens: Vec<FailedLockToken<'a>>,
    succeeded_lock_tokens: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedLockToken<'a> {
    lock_token: &'a str,
    error: TokenError,
}

#[derive(Serialize)]
struct TokenError {
    code: &'static str,
    message: String,
}

/// Event Grid's code for a per-token failure.
fn code(error: &LockTokenError) -> &'static str {
    match error {
        LockTokenError::Malformed => "BadToken",
        // Event Grid: "TokenLost: which indicates that token is not found".
        LockTokenError::Lost | LockTokenError::WrongSubscription => "TokenLost",
    }
}

pub async fn settle(
    state: &AppState,
    topic: &str,
    subscription: &str,
    operation: Operation,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let action = match operation {
        Operation::Acknowledge => Settle::Acknowledge,
        Operation::Release => Settle::Release {
            delay: query.release_delay()?,
        },
        Operation::Reject => Settle::Reject,
        Operation::RenewLock => Settle::RenewLock,
        Operation::Publish | Operation::Receive => {
            return Err(ApiError::internal(format!(
                "{} is not a settle operation",
                operation.name()
            )));
        }
    };
    let body = read_body(headers, body).await?;
    let tokens: LockTokensBody = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be {{\"lockTokens\": [\"<lock token>\", ...]}}: {error}"
        ))
    })?;
    if !LOCK_TOKENS.contains(&tokens.lock_tokens.len()) {
        return Err(ApiError::bad_request(format!(
            "lockTokens must hold {} to {} lock tokens; got {}",
            LOCK_TOKENS.start(),
            LOCK_TOKENS.end(),
            tokens.lock_tokens.len()
        )));
    }

    let outcome = state
        .queues
        .settle(topic, subscription, action, &tokens.lock_tokens)
        .await?;
    debug!(
        succeeded = outcome.succeeded.len(),
        failed = outcome.failed.len(),
        "settled"
    );
    let failed_lock_tokens = outcome
        .failed
        .iter()
        .map(|failed| FailedLockToken {
            lock_token: &failed.lock_token,
            error: TokenError {
                code: code(&failed.error),
                message: failed.error.to_string(),
            },
        })
        .collect();
    Ok(Json(SettleResult {
        failed_lock_tokens,
        succeeded_lock_tokens: &outcome.succeeded,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_token_failures_get_event_grids_codes() {
        assert_eq!(code(&LockTokenError::Malformed), "BadToken");
        assert_eq!(code(&LockTokenError::Lost), "TokenLost");
        assert_eq!(code(&LockTokenError::WrongSubscription), "TokenLost");
    }

    #[test]
    fn a_settle_result_has_the_shape_the_sdk_parses() {
        let succeeded = vec!["t1".to_string()];
        let result = SettleResult {
            failed_lock_tokens: vec![FailedLockToken {
                lock_token: "t2",
                error: TokenError {
                    code: "TokenLost",
                    message: "gone".into(),
                },
            }],
            succeeded_lock_tokens: &succeeded,
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            json!({
                "failedLockTokens": [{"lockToken": "t2", "error": {"code": "TokenLost", "message": "gone"}}],
                "succeededLockTokens": ["t1"]
            })
        );
    }

    #[test]
    fn a_receive_result_has_the_shape_the_sdk_parses() {
        let event = RawValue::from_string(r#"{"id":"1"}"#.into()).unwrap();
        let result = ReceiveResult {
            value: vec![ReceiveDetails {
                broker_properties: BrokerProperties {
                    lock_token: "tok",
                    delivery_count: 2,
                },
                event: &event,
            }],
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"value":[{"brokerProperties":{"lockToken":"tok","deliveryCount":2},"event":{"id":"1"}}]}"#
        );
    }
}
