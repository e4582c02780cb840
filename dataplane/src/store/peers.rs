//! Queue operations on another pod's partition, over the peer link's events service: what
//! `Queues` asks a peer (receive, settle, wait for activity) and the bodies that carry it.
//! Every pod stores what is published to it (pods are the partitions of every topic); a lock
//! token names the pod whose partition holds its event.
//!
//! Bodies (integers big-endian; a str is a u16 length and UTF-8; bytes a u32 length):
//!
//! | tag | request | answer |
//! |---|---|---|
//! | 1 Receive | topic str, subscription str, max u16 | count u32 × (lock token str, delivery count u32, event bytes) |
//! | 2 Settle | topic str, subscription str, action u8 (0 ack, 1 release, 2 reject, 3 renew), release delay ms u32, count u32 × token str | succeeded u32 × token str, failed u32 × (token str, reason u8: 0 malformed, 1 lost, 2 wrong subscription) |
//! | 3 Wait | topic str, subscription str, max wait ms u32 | empty, once the partition may have events or the wait ends |
//!
//! A request the peer's store refuses (its topic or subscription not served there yet, the
//! store shutting down) is answered with an error message.

use super::{FailedLockToken, LockTokenError, ReceivedEvent, Settle, SettleOutcome};
use crate::cluster::transport::{PeerTransport, TransportError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

const RECEIVE: u8 = 1;
const SETTLE: u8 = 2;
const WAIT: u8 = 3;

/// How long a receive or settle on a peer may take before the peer counts as unreachable.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to a peer's partition.
#[derive(Clone, Debug, PartialEq)]
pub enum PartitionRequest {
    Receive {
        topic: String,
        subscription: String,
        max_events: u16,
    },
    Settle {
        topic: String,
        subscription: String,
        action: Settle,
        lock_tokens: Vec<String>,
    },
    Wait {
        topic: String,
        subscription: String,
        max_wait: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionWireError {
    #[error("the body ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("unknown events request tag {0}")]
    UnknownTag(u8),
    #[error("unknown {0} {1}")]
    Unknown(&'static str, u8),
    #[error("an event is not JSON: {0}")]
    Event(String),
    #[error("a string of {0} bytes is longer than 65,535")]
    TooLong(usize),
    #[error("{0} bytes after the body")]
    Trailing(usize),
}

impl PartitionRequest {
    pub fn encode(&self) -> Result<Bytes, PartitionWireError> {
        let mut out = BytesMut::with_capacity(64);
        match self {
            PartitionRequest::Receive {
                topic,
                subscription,
                max_events,
            } => {
                out.put_u8(RECEIVE);
                put_str(&mut out, topic)?;
                put_str(&mut out, subscription)?;
                out.put_u16(*max_events);
            }
            PartitionRequest::Settle {
                topic,
                subscription,
                action,
                lock_tokens,
            } => {
                out.put_u8(SETTLE);
                put_str(&mut out, topic)?;
                put_str(&mut out, subscription)?;
                let (code, delay) = match action {
                    Settle::Acknowledge => (0, Duration::ZERO),
                    Settle::Release { delay } => (1, *delay),
                    Settle::Reject => (2, Duration::ZERO),
                    Settle::RenewLock => (3, Duration::ZERO),
                };
                out.put_u8(code);
                out.put_u32(delay.as_millis().min(u128::from(u32::MAX)) as u32);
                out.put_u32(lock_tokens.len() as u32);
                for token in lock_tokens {
                    put_str(&mut out, token)?;
                }
            }
            PartitionRequest::Wait {
                topic,
                subscription,
                max_wait,
            } => {
                out.put_u8(WAIT);
                put_str(&mut out, topic)?;
                put_str(&mut out, subscription)?;
                out.put_u32(max_wait.as_millis().min(u128::from(u32::MAX)) as u32);
            }
        }
        Ok(out.freeze())
    }

    pub fn decode(mut body: Bytes) -> Result<PartitionRequest, PartitionWireError> {
        let tag = get_u8(&mut body, "a request")?;
        let topic = get_str(&mut body, "a topic")?;
        let subscription = get_str(&mut body, "a subscription")?;
        let request = match tag {
            RECEIVE => PartitionRequest::Receive {
                topic,
                subscription,
                max_events: get_u16(&mut body, "a receive")?,
            },
            SETTLE => {
                let code = get_u8(&mut body, "a settle")?;
                let delay = Duration::from_millis(u64::from(get_u32(&mut body, "a settle")?));
                let action = match code {
                    0 => Settle::Acknowledge,
                    1 => Settle::Release { delay },
                    2 => Settle::Reject,
                    3 => Settle::RenewLock,
                    other => return Err(PartitionWireError::Unknown("settle action", other)),
                };
                let count = get_u32(&mut body, "a token count")?;
                let mut lock_tokens = Vec::with_capacity((count as usize).min(100));
                for _ in 0..count {
                    lock_tokens.push(get_str(&mut body, "a lock token")?);
                }
                PartitionRequest::Settle {
                    topic,
                    subscription,
                    action,
                    lock_tokens,
                }
            }
            WAIT => PartitionRequest::Wait {
                topic,
                subscription,
                max_wait: Duration::from_millis(u64::from(get_u32(&mut body, "a wait")?)),
            },
            other => return Err(PartitionWireError::UnknownTag(other)),
        };
        if body.has_remaining() {
            return Err(PartitionWireError::Trailing(body.remaining()));
        }
        Ok(request)
    }
}

pub fn encode_received(events: &[ReceivedEvent]) -> Result<Bytes, PartitionWireError> {
    let mut out =
        BytesMut::with_capacity(64 + events.iter().map(|e| e.event.get().len()).sum::<usize>());
    out.put_u32(events.len() as u32);
    for event in events {
        put_str(&mut out, &event.lock_token)?;
        out.put_u32(event.delivery_count);
        let json = event.event.get().as_bytes();
        out.put_u32(json.len() as u32);
        out.put_slice(json);
    }
    Ok(out.freeze())
}

pub fn decode_received(mut body: Bytes) -> Result<Vec<ReceivedEvent>, PartitionWireError> {
    let count = get_u32(&mut body, "an event count")?;
    let mut events = Vec::with_capacity((count as usize).min(100));
    for _ in 0..count {
        let lock_token = get_str(&mut body, "a lock token")?;
        let delivery_count = get_u32(&mut body, "a delivery count")?;
        let length = get_u32(&mut body, "an event length")? as usize;
        if body.remaining() < length {
            return Err(PartitionWireError::Truncated("an event"));
        }
        let json = body.split_to(length);
        let text =
            std::str::from_utf8(&json).map_err(|_| PartitionWireError::NotUtf8("an event"))?;
        let event = RawValue::from_string(text.to_string())
            .map_err(|error| PartitionWireError::Event(error.to_string()))?;
        events.push(ReceivedEvent {
            lock_token,
            delivery_count,
            event,
        });
    }
    if body.has_remaining() {
        return Err(PartitionWireError::Trailing(body.remaining()));
    }
    Ok(events)
}

pub fn encode_outcome(outcome: &SettleOutcome) -> Result<Bytes, PartitionWireError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(outcome.succeeded.len() as u32);
    for token in &outcome.succeeded {
        put_str(&mut out, token)?;
    }
    out.put_u32(outcome.failed.len() as u32);
    for failed in &outcome.failed {
        put_str(&mut out, &failed.lock_token)?;
        out.put_u8(match failed.error {
            LockTokenError::Malformed => 0,
            LockTokenError::Lost => 1,
            LockTokenError::WrongSubscription => 2,
        });
    }
    Ok(out.freeze())
}

pub fn decode_outcome(mut body: Bytes) -> Result<SettleOutcome, PartitionWireError> {
    let mut outcome = SettleOutcome::default();
    for _ in 0..get_u32(&mut body, "a token count")? {
        outcome.succeeded.push(get_str(&mut body, "a lock token")?);
    }
    for _ in 0..get_u32(&mut body, "a token count")? {
        let lock_token = get_str(&mut body, "a lock token")?;
        let error = match get_u8(&mut body, "a token error")? {
            0 => LockTokenError::Malformed,
            1 => LockTokenError::Lost,
            2 => LockTokenError::WrongSubscription,
            other => return Err(PartitionWireError::Unknown("token error", other)),
        };
        outcome.failed.push(FailedLockToken { lock_token, error });
    }
    if body.has_remaining() {
        return Err(PartitionWireError::Trailing(body.remaining()));
    }
    Ok(outcome)
}

/// Why a peer's partition did not answer as asked.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Wire(#[from] PartitionWireError),
}

/// The other pods' partitions, as `Queues` reaches them.
pub struct Partitions {
    transport: Arc<dyn PeerTransport>,
}

impl Partitions {
    pub fn new(transport: Arc<dyn PeerTransport>) -> Partitions {
        Partitions { transport }
    }

    /// The peers a link is up to.
    pub fn peers(&self) -> Vec<Arc<str>> {
        self.transport.connected()
    }

    /// Take up to `max_events` events available now on `pod`'s partition.
    pub async fn receive(
        &self,
        pod: &str,
        topic: &str,
        subscription: &str,
        max_events: usize,
    ) -> Result<Vec<ReceivedEvent>, PartitionError> {
        let body = PartitionRequest::Receive {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            max_events: max_events.min(usize::from(u16::MAX)) as u16,
        }
        .encode()?;
        let answer = self.transport.request(pod, body, ANSWER_TIMEOUT).await?;
        Ok(decode_received(answer)?)
    }

    /// Settle tokens of events held on `pod`.
    pub async fn settle(
        &self,
        pod: &str,
        topic: &str,
        subscription: &str,
        action: Settle,
        lock_tokens: Vec<String>,
    ) -> Result<SettleOutcome, PartitionError> {
        let body = PartitionRequest::Settle {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            action,
            lock_tokens,
        }
        .encode()?;
        let answer = self.transport.request(pod, body, ANSWER_TIMEOUT).await?;
        Ok(decode_outcome(answer)?)
    }

    /// Returns once `pod`'s partition may have events for the subscription, or after
    /// `max_wait`.
    pub async fn wait(
        &self,
        pod: &str,
        topic: &str,
        subscription: &str,
        max_wait: Duration,
    ) -> Result<(), PartitionError> {
        let body = PartitionRequest::Wait {
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            max_wait,
        }
        .encode()?;
        self.transport
            .request(pod, body, max_wait + ANSWER_TIMEOUT)
            .await?;
        Ok(())
    }
}

fn put_str(out: &mut BytesMut, s: &str) -> Result<(), PartitionWireError> {
    let length = u16::try_from(s.len()).map_err(|_| PartitionWireError::TooLong(s.len()))?;
    out.put_u16(length);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn get_u8(body: &mut Bytes, what: &'static str) -> Result<u8, PartitionWireError> {
    if body.remaining() < 1 {
        return Err(PartitionWireError::Truncated(what));
    }
    Ok(body.get_u8())
}

fn get_u16(body: &mut Bytes, what: &'static str) -> Result<u16, PartitionWireError> {
    if body.remaining() < 2 {
        return Err(PartitionWireError::Truncated(what));
    }
    Ok(body.get_u16())
}

fn get_u32(body: &mut Bytes, what: &'static str) -> Result<u32, PartitionWireError> {
    if body.remaining() < 4 {
        return Err(PartitionWireError::Truncated(what));
    }
    Ok(body.get_u32())
}

fn get_str(body: &mut Bytes, what: &'static str) -> Result<String, PartitionWireError> {
    let length = usize::from(get_u16(body, what)?);
    if body.remaining() < length {
        return Err(PartitionWireError::Truncated(what));
    }
    let bytes = body.split_to(length);
    String::from_utf8(bytes.to_vec()).map_err(|_| PartitionWireError::NotUtf8(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_request_and_answer_round_trips() {
        for request in [
            PartitionRequest::Receive {
                topic: "orders".into(),
                subscription: "billing".into(),
                max_events: 100,
            },
            PartitionRequest::Settle {
                topic: "orders".into(),
                subscription: "billing".into(),
                action: Settle::Release {
                    delay: Duration::from_secs(10),
                },
                lock_tokens: vec!["a".into(), "b".into()],
            },
            PartitionRequest::Settle {
                topic: "t".into(),
                subscription: "s".into(),
                action: Settle::Reject,
                lock_tokens: vec![],
            },
            PartitionRequest::Wait {
                topic: "t".into(),
                subscription: "s".into(),
                max_wait: Duration::from_millis(2500),
            },
        ] {
            let decoded = PartitionRequest::decode(request.encode().unwrap()).unwrap();
            assert_eq!(decoded, request);
        }
        let events = vec![ReceivedEvent {
            lock_token: "tok".into(),
            delivery_count: 3,
            event: RawValue::from_string(r#"{"id":"1","data":{"x":[1,2]}}"#.into()).unwrap(),
        }];
        let back = decode_received(encode_received(&events).unwrap()).unwrap();
        assert_eq!(back[0].lock_token, "tok");
        assert_eq!(back[0].delivery_count, 3);
        assert_eq!(back[0].event.get(), events[0].event.get());
        let outcome = SettleOutcome {
            succeeded: vec!["a".into()],
            failed: vec![FailedLockToken {
                lock_token: "b".into(),
                error: LockTokenError::Lost,
            }],
        };
        assert_eq!(
            decode_outcome(encode_outcome(&outcome).unwrap()).unwrap(),
            outcome
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PartitionRequest::decode(Bytes::from(bytes.clone()));
            let _ = decode_received(Bytes::from(bytes.clone()));
            let _ = decode_outcome(Bytes::from(bytes));
        }
    }
}
