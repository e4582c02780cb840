//! The Event Grid data-plane API as a client sees it: publish, receive, acknowledge, with a
//! shared access key.

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

pub const API_VERSION: &str = "2024-06-01";

/// A client of one data plane's HTTP API, authenticated with one key.
pub struct EventGrid {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// A received event and its lock token.
#[derive(Debug)]
pub struct Received {
    pub lock_token: String,
    pub event: Value,
}

impl EventGrid {
    pub fn new(base: &str, key: &str) -> Self {
        let http = reqwest::Client::builder()
            // Longer than the longest receive wait the tests ask for.
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http,
        }
    }

    /// POSTs `body` to `path` (which starts with `/` and has no query); the status and the
    /// JSON answer (`Null` when the body is not JSON).
    pub async fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut params = vec![("api-version", API_VERSION.to_string())];
        params.extend(query.iter().cloned());
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .query(&params)
            .header("Authorization", format!("SharedAccessKey {}", self.key))
            .header("Content-Type", content_type)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Publishes one CloudEvent to `topic`.
    pub async fn publish(&self, topic: &str, event: &Value) -> anyhow::Result<(StatusCode, Value)> {
        self.post(
            &format!("/topics/{topic}:publish"),
            &[],
            "application/cloudevents+json; charset=utf-8",
            event,
        )
        .await
    }

    /// Receives up to `max_events` from a queue subscription, waiting up to `max_wait`
    /// seconds (10-120) for something to arrive.
    pub async fn receive(
        &self,
        topic: &str,
        subscription: &str,
        max_events: u32,
        max_wait: u32,
    ) -> anyhow::Result<Vec<Received>> {
        let (status, body) = self
            .post(
                &format!("/topics/{topic}/eventsubscriptions/{subscription}:receive"),
                &[
                    ("maxEvents", max_events.to_string()),
                    ("maxWaitTime", max_wait.to_string()),
                ],
                "application/json",
                &Value::Null,
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "receive: {status} {body}");
        let details = body["value"].as_array().cloned().unwrap_or_default();
        details
            .into_iter()
            .map(|detail| {
                let lock_token = detail["brokerProperties"]["lockToken"]
                    .as_str()
                    .context("a received event without a lock token")?
                    .to_string();
                Ok(Received {
                    lock_token,
                    event: detail["event"].clone(),
                })
            })
            .collect()
    }

    /// Acknowledges lock tokens; the answer's `succeededLockTokens`.
    pub async fn acknowledge(
        &self,
        topic: &str,
        subscription: &str,
        lock_tokens: &[String],
    ) -> anyhow::Result<Vec<String>> {
        let (status, body) = self
            .post(
                &format!("/topics/{topic}/eventsubscriptions/{subscription}:acknowledge"),
                &[],
                "application/json",
                &json!({ "lockTokens": lock_tokens }),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "acknowledge: {status} {body}");
        Ok(body["succeededLockTokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }
}

/// A unique CloudEvent id, so that a test finds its own events in a shared namespace.
pub fn unique_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the time still makes ids unique enough across runs.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos as u64).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
