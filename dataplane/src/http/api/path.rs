//! The operation paths of the Event Grid API. axum's router cannot match `{topic}:publish`
//! inside one segment, so the API takes every path under `/topics/` and parses it here.
//!
//! Event Grid resource names and paths are case-insensitive: `eventsubscriptions` and the
//! operation after the colon match in any case (`:renewLock`, `:renewlock`), and names are
//! percent-decoded here and matched against the Snapshot's names without regard to case by the
//! caller.

use percent_encoding::percent_decode_str;

/// An Event Grid data-plane operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Publish,
    Receive,
    Acknowledge,
    Release,
    Reject,
    RenewLock,
}

impl Operation {
    /// The operation's name as Event Grid writes it after the colon; also the `path` label of
    /// the request metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Publish => "publish",
            Operation::Receive => "receive",
            Operation::Acknowledge => "acknowledge",
            Operation::Release => "release",
            Operation::Reject => "reject",
            Operation::RenewLock => "renewLock",
        }
    }

    fn on_subscription(action: &str) -> Option<Self> {
        [
            Operation::Receive,
            Operation::Acknowledge,
            Operation::Release,
            Operation::Reject,
            Operation::RenewLock,
        ]
        .into_iter()
        .find(|op| op.name().eq_ignore_ascii_case(action))
    }
}

/// A parsed operation path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPath {
    pub topic: String,
    /// `None` for publish, the subscription for the others.
    pub subscription: Option<String>,
    pub operation: Operation,
}

/// `/topics/{topic}:publish` or `/topics/{topic}/eventsubscriptions/{subscription}:{action}`;
/// `None` for anything else.
pub fn parse(path: &str) -> Option<ApiPath> {
    let rest = path.strip_prefix("/topics/")?;
    let (resource, action) = rest.rsplit_once(':')?;
    let segments: Vec<&str> = resource.split('/').collect();
    match segments.as_slice() {
        [topic] if action.eq_ignore_ascii_case("publish") => Some(ApiPath {
            topic: name(topic)?,
            subscription: None,
            operation: Operation::Publish,
        }),
        [topic, collection, subscription]
            if collection.eq_ignore_ascii_case("eventsubscriptions") =>
        {
            Some(ApiPath {
                topic: name(topic)?,
                subscription: Some(name(subscription)?),
                operation: Operation::on_subscription(action)?,
            })
        }
        _ => None,
    }
}

/// A percent-decoded, non-empty name.
fn name(segment: &str) -> Option<String> {
    let decoded = percent_decode_str(segment).decode_utf8().ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(topic: &str, subscription: Option<&str>, operation: Operation) -> Option<ApiPath> {
        Some(ApiPath {
            topic: topic.into(),
            subscription: subscription.map(Into::into),
            operation,
        })
    }

    #[test]
    fn publish_names_the_topic() {
        assert_eq!(
            parse("/topics/orders:publish"),
            op("orders", None, Operation::Publish)
        );
    }

    #[test]
    fn subscription_operations_name_topic_and_subscription() {
        for (action, operation) in [
            ("receive", Operation::Receive),
            ("acknowledge", Operation::Acknowledge),
            ("release", Operation::Release),
            ("reject", Operation::Reject),
            ("renewLock", Operation::RenewLock),
        ] {
            assert_eq!(
                parse(&format!(
                    "/topics/orders/eventsubscriptions/eu-orders:{action}"
                )),
                op("orders", Some("eu-orders"), operation),
                "{action}"
            );
        }
    }

    #[test]
    fn segments_and_actions_match_in_any_case() {
        assert_eq!(
            parse("/topics/Orders/EventSubscriptions/All:RENEWLOCK"),
            op("Orders", Some("All"), Operation::RenewLock)
        );
        assert_eq!(
            parse("/topics/orders:Publish"),
            op("orders", None, Operation::Publish)
        );
    }

    #[test]
    fn names_are_percent_decoded() {
        assert_eq!(
            parse("/topics/my%2Dtopic/eventsubscriptions/s%31:receive"),
            op("my-topic", Some("s1"), Operation::Receive)
        );
    }

    #[test]
    fn anything_else_is_no_operation() {
        for path in [
            "/topics/orders",
            "/topics/orders:receive",
            "/topics/orders:frobnicate",
            "/topics/:publish",
            "/topics/orders/:publish",
            "/topics/orders/eventsubscriptions/all:publish",
            "/topics/orders/eventsubscriptions/all:frobnicate",
            "/topics/orders/eventsubscriptions/:receive",
            "/topics/orders/subscriptions/all:receive",
            "/topics/orders/eventsubscriptions/all/extra:receive",
            "/topics/orders/eventsubscriptions/all:receive/",
            "/topics/%FF:publish",
            "/orders:publish",
            "/",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }
}
