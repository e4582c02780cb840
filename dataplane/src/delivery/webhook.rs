//! The HTTP side of push delivery: clients (rustls; the system and webpki roots, or only the
//! CA a subscription names), the endpoint with its delivery headers, one delivery attempt,
//! and the CloudEvents webhook validation handshake (abuse protection).
//!
//! Secrets stay out of logs and status: secret header values are marked sensitive (their
//! `Debug` prints nothing), error messages are taken without the URL (`without_url`), and
//! the endpoint is shown without its query string or user info (an Azure Functions style
//! `?code=` key lives there).

use super::schedule::{Attempt, DELIVERY_TIMEOUT, Failure};
use gridline_crds::model::{DeliveryHeader, HeaderValueSource, PushDelivery};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// What Gridline calls itself in `WebHook-Request-Origin` (Event Grid sends
/// `eventgrid.azure.net`).
pub const ORIGIN: &str = "gridline.dev";

/// The rate asked for in `WebHook-Request-Rate` (requests per minute): more than one
/// dispatcher ever sends, so that an endpoint echoing it back limits nothing.
pub const REQUESTED_RATE_PER_MINUTE: u32 = 600_000;

/// How long a connection may take to open (inside the attempt's 30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for webhooks: rustls, no redirects (a 3xx is a failed attempt: following
/// it would send events where nobody validated), an attempt timeout of 30 s. With
/// `ca_pem`, only that CA (one or more PEM certificates) is trusted.
pub fn client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("gridline/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("the CA certificate is not PEM: {}", e.without_url()))?;
        if certificates.is_empty() {
            return Err("the CA certificate Secret holds no certificate".into());
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}

/// A subscription's webhook: where, with which client and headers.
pub struct Endpoint {
    url: reqwest::Url,
    /// The URL without query string and user info, for logs and status.
    pub shown: String,
    client: reqwest::Client,
    /// Static and secret headers, the same on every request.
    fixed_headers: HeaderMap,
    /// Headers whose value comes from an event attribute.
    dynamic_headers: Vec<(HeaderName, String)>,
}

impl Endpoint {
    /// `shared` serves subscriptions without a CA of their own.
    pub fn new(push: &PushDelivery, shared: &reqwest::Client) -> Result<Endpoint, String> {
        let url = reqwest::Url::parse(&push.endpoint_url)
            .map_err(|e| format!("the endpoint URL does not parse: {e}"))?;
        let client = match &push.ca_certificate_pem {
            Some(pem) => client(Some(pem))?,
            None => shared.clone(),
        };
        let (fixed_headers, dynamic_headers) = headers(&push.headers);
        Ok(Endpoint {
            shown: redact(&url),
            url,
            client,
            fixed_headers,
            dynamic_headers,
        })
    }

    /// The dynamic header values for one event (`None` where it lacks the attribute): the
    /// key events are batched by.
    pub fn dynamic_values(&self, event_json: &[u8]) -> Vec<Option<String>> {
        if self.dynamic_headers.is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(event_json) else {
            return vec![None; self.dynamic_headers.len()];
        };
        self.dynamic_headers
            .iter()
            .map(|(_, attribute)| attribute_text(&event, attribute))
            .collect()
    }

    /// One attempt: POST `body` with the subscription's headers and the events' dynamic ones.
    pub async fn deliver(
        &self,
        body: Vec<u8>,
        content_type: &'static str,
        dynamic_values: &[Option<String>],
    ) -> Attempt {
        let mut headers = self.fixed_headers.clone();
        for ((name, _), value) in self.dynamic_headers.iter().zip(dynamic_values) {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name.clone(), value);
            }
        }
        // Ours, whatever a mapping says.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let sent = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                // Read (and drop) the body so the connection goes back to the pool; a slow
                // body counts against the same timeout.
                let _ = response.bytes().await;
                if (200..300).contains(&status) {
                    Attempt::Delivered { status }
                } else {
                    Attempt::Failed(Failure::Status {
                        code: status,
                        retry_after,
                    })
                }
            }
            Err(error) => Attempt::Failed(transport_failure(&error)),
        }
    }

    /// The CloudEvents webhook validation handshake: `OPTIONS` with our origin and rate; the
    /// endpoint must answer 200 with `WebHook-Allowed-Origin` equal to it or `*`. Its
    /// `WebHook-Allowed-Rate` (requests per minute, or `*`) limits the dispatcher.
    pub async fn validate(&self) -> Result<Validated, Refusal> {
        let sent = self
            .client
            .request(reqwest::Method::OPTIONS, self.url.clone())
            .header("WebHook-Request-Origin", ORIGIN)
            .header(
                "WebHook-Request-Rate",
                REQUESTED_RATE_PER_MINUTE.to_string(),
            )
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Err(Refusal {
                    reason: "EndpointUnreachable",
                    message: format!(
                        "the validation request (OPTIONS) failed: {}",
                        transport_failure(&error).describe()
                    ),
                });
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(str::to_string)
        };
        let origin = header("WebHook-Allowed-Origin");
        let rate = header("WebHook-Allowed-Rate");
        let _ = response.bytes().await;
        check_validation(status, origin.as_deref(), rate.as_deref())
    }
}

/// The endpoint allowed delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// Requests per minute; `None`: unlimited.
    pub allowed_rate: Option<u32>,
    pub message: String,
}

/// Why the endpoint may not (yet) receive events.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// A CamelCase condition reason.
    pub reason: &'static str,
    pub message: String,
}

/// Judge a validation answer.
pub fn check_validation(
    status: u16,
    allowed_origin: Option<&str>,
    allowed_rate: Option<&str>,
) -> Result<Validated, Refusal> {
    if status != 200 {
        return Err(Refusal {
            reason: "ValidationRefused",
            message: format!(
                "the endpoint answered the validation request (OPTIONS) with HTTP {status}; it must answer 200 with WebHook-Allowed-Origin: {ORIGIN} (or *)"
            ),
        });
    }
    match allowed_origin {
        Some(origin) if origin == "*" || origin.eq_ignore_ascii_case(ORIGIN) => {}
        Some(origin) => {
            return Err(Refusal {
                reason: "OriginNotAllowed",
                message: format!(
                    "the endpoint allows origin '{origin}', not '{ORIGIN}' (WebHook-Allowed-Origin)"
                ),
            });
        }
        None => {
            return Err(Refusal {
                reason: "OriginNotAllowed",
                message: format!(
                    "the endpoint's answer to the validation request has no WebHook-Allowed-Origin header (expected '{ORIGIN}' or '*')"
                ),
            });
        }
    }
    let allowed_rate = match allowed_rate {
        None | Some("*") => None,
        Some(text) => match text.parse::<u32>() {
            Ok(0) => {
                return Err(Refusal {
                    reason: "RateNotAllowed",
                    message: "the endpoint allows 0 requests per minute (WebHook-Allowed-Rate)"
                        .into(),
                });
            }
            Ok(rate) => Some(rate),
            // A value we cannot read limits nothing rather than blocking delivery.
            Err(_) => None,
        },
    };
    let message = match allowed_rate {
        Some(rate) => format!("the endpoint allows delivery at up to {rate} requests per minute"),
        None => "the endpoint allows delivery".to_string(),
    };
    Ok(Validated {
        allowed_rate,
        message,
    })
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past is no
/// wait; anything else unreadable is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: too many of them is a very long wait, not an error.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The URL as logs and status show it: no user info, no query, no fragment.
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A transport error, described without its URL.
fn transport_failure(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        return Failure::Timeout;
    }
    // The innermost cause says most ("Connection refused", a TLS alert).
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    let message = if std::ptr::eq(
        source as *const dyn std::error::Error as *const u8,
        error as *const reqwest::Error as *const u8,
    ) {
        "the request failed".to_string()
    } else {
        source.to_string()
    };
    Failure::Connection { message }
}

/// Split the mappings into the fixed headers and the per-event ones. A name or value that is
/// not a valid header is skipped (with a log line that never shows a secret value).
fn headers(mappings: &[DeliveryHeader]) -> (HeaderMap, Vec<(HeaderName, String)>) {
    let mut fixed = HeaderMap::new();
    let mut dynamic = Vec::new();
    for mapping in mappings {
        let Ok(name) = HeaderName::from_bytes(mapping.name.as_bytes()) else {
            tracing::warn!(header = %mapping.name, "not a valid header name; not sent");
            continue;
        };
        match &mapping.value {
            HeaderValueSource::Static(value) => match HeaderValue::from_str(value) {
                Ok(value) => {
                    fixed.insert(name, value);
                }
                Err(_) => {
                    tracing::warn!(header = %mapping.name, "not a valid header value; not sent")
                }
            },
            HeaderValueSource::Secret(value) => match HeaderValue::from_str(value) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    fixed.insert(name, value);
                }
                Err(_) => {
                    tracing::warn!(header = %mapping.name, "the secret is not a valid header value; not sent")
                }
            },
            HeaderValueSource::EventAttribute(attribute) => {
                dynamic.push((name, attribute.clone()));
            }
        }
    }
    (fixed, dynamic)
}

/// An event attribute as header text: `subject`, an extension, or a path into the data
/// (`data.a.b`). Strings as they are, numbers and booleans as JSON writes them; objects,
/// arrays and null are not header values.
fn attribute_text(event: &serde_json::Value, attribute: &str) -> Option<String> {
    let mut value = event;
    let mut path = attribute.split('.');
    let first = path.next()?;
    value = value.get(first)?;
    if first == "data" {
        for step in path {
            value = value.get(step)?;
        }
    } else if path.next().is_some() {
        return None;
    }
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10)),
            "the obsolete RFC 850 form"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn validation_needs_200_and_our_origin_or_a_star() {
        let ok = check_validation(200, Some(ORIGIN), None).unwrap();
        assert_eq!(ok.allowed_rate, None);
        assert!(check_validation(200, Some("*"), Some("*")).is_ok());
        assert!(check_validation(200, Some("GRIDLINE.DEV"), None).is_ok());
        assert_eq!(
            check_validation(200, Some("*"), Some("120"))
                .unwrap()
                .allowed_rate,
            Some(120)
        );
        let refused = check_validation(405, None, None).unwrap_err();
        assert_eq!(refused.reason, "ValidationRefused");
        assert!(refused.message.contains("HTTP 405"), "{}", refused.message);
        let elsewhere = check_validation(200, Some("eventgrid.azure.net"), None).unwrap_err();
        assert_eq!(elsewhere.reason, "OriginNotAllowed");
        assert!(elsewhere.message.contains("eventgrid.azure.net"));
        let missing = check_validation(200, None, None).unwrap_err();
        assert_eq!(missing.reason, "OriginNotAllowed");
        assert_eq!(
            check_validation(200, Some("*"), Some("0"))
                .unwrap_err()
                .reason,
            "RateNotAllowed"
        );
    }

    #[test]
    fn logs_and_status_show_the_url_without_secrets() {
        let url =
            reqwest::Url::parse("https://user:pw@hooks.example.com:8443/api/events?code=s3cret#x")
                .unwrap();
        assert_eq!(redact(&url), "https://hooks.example.com:8443/api/events");
    }

    #[test]
    fn secret_headers_are_sensitive_and_event_attributes_are_read_per_event() {
        let mappings = vec![
            DeliveryHeader {
                name: "X-Static".into(),
                value: HeaderValueSource::Static("plain".into()),
            },
            DeliveryHeader {
                name: "Authorization".into(),
                value: HeaderValueSource::Secret("Bearer s3cret".into()),
            },
            DeliveryHeader {
                name: "X-Region".into(),
                value: HeaderValueSource::EventAttribute("data.order.region".into()),
            },
            DeliveryHeader {
                name: "X-Subject".into(),
                value: HeaderValueSource::EventAttribute("subject".into()),
            },
        ];
        let (fixed, dynamic) = headers(&mappings);
        assert_eq!(fixed["x-static"], "plain");
        assert!(fixed["authorization"].is_sensitive());
        assert!(!format!("{fixed:?}").contains("s3cret"));
        assert_eq!(dynamic.len(), 2);
        let event = json!({"subject": "orders/1", "data": {"order": {"region": "eu", "n": 3}}});
        assert_eq!(
            attribute_text(&event, "data.order.region").as_deref(),
            Some("eu")
        );
        assert_eq!(attribute_text(&event, "data.order.n").as_deref(), Some("3"));
        assert_eq!(attribute_text(&event, "data.order"), None, "an object");
        assert_eq!(
            attribute_text(&event, "subject").as_deref(),
            Some("orders/1")
        );
        assert_eq!(attribute_text(&event, "subject.x"), None);
        assert_eq!(attribute_text(&event, "missing"), None);
    }

    fn endpoint_at(url: &str) -> Endpoint {
        let push = PushDelivery {
            endpoint_url: url.to_string(),
            max_events_per_batch: 1,
            preferred_batch_size_bytes: 65536,
            max_delivery_count: 10,
            event_time_to_live: Duration::from_secs(3600),
            dead_letter_topic: None,
            headers: Vec::new(),
            ca_certificate_pem: None,
        };
        Endpoint::new(&push, &client(None).unwrap()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_never_answers_times_out_after_30_seconds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let endpoint = endpoint_at(&format!("http://{addr}/hook"));
        let started = tokio::time::Instant::now();
        let attempt = endpoint
            .deliver(b"{}".to_vec(), "application/json", &[])
            .await;
        assert_eq!(attempt, Attempt::Failed(Failure::Timeout));
        assert_eq!(started.elapsed(), DELIVERY_TIMEOUT);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_failure_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let endpoint = endpoint_at(&format!("http://{addr}/hook?code=s3cret"));
        let Attempt::Failed(failure) = endpoint.deliver(Vec::new(), "application/json", &[]).await
        else {
            panic!("delivered to nobody");
        };
        assert_eq!(failure.class(), "connection");
        assert!(
            !failure.describe().contains("s3cret"),
            "{}",
            failure.describe()
        );
        let refusal = endpoint.validate().await.unwrap_err();
        assert_eq!(refusal.reason, "EndpointUnreachable");
        assert!(!refusal.message.contains("s3cret"), "{}", refusal.message);
    }

    #[test]
    fn a_client_trusts_exactly_the_named_ca_or_refuses_garbage() {
        assert!(client(None).is_ok());
        assert!(client(Some(TEST_CA)).is_ok());
        assert!(client(Some(b"not a certificate")).is_err());
    }

    /// A self-signed CA certificate (no key: only its public half is needed here).
    const TEST_CA: &[u8] = b"-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUTK68y/OCN3UpxxNZ6RgvwZi0G9AwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQR3JpZGxpbmUgVGVzdCBDQTAgFw0yNjExMjUyMTAzMjJaGA8y
MTI2MTEwMTIxMDMyMlowGzEZMBcGA1UEAwwQR3JpZGxpbmUgVGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABMu6qi6I2SxNs90Di0KYaG8QjtVroYNBNx7S
MEEmr3yDEHazyJTpELcLgE4kWp1t11AE2szfsrKXiIHQu/95EfKjUzBRMB0GA1Ud
DgQWBBQvAJPDKTqG2IlGL9BXMiR8NTFaJzAfBgNVHSMEGDAWgBQvAJPDKTqG2IlG
L9BXMiR8NTFaJzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIF1+
7Im0aWW3uXEN2yNdpIbqsb40ZDKmUQRpAo1gfy6NAiBzcSkFXM+NbTLf56EeYTBz
ipF9/OenzNVEUEzpwHkB5g==
-----END CERTIFICATE-----
";
}
