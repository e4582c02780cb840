//! What a service receives from peers: their requests, each with the [`Reply`] that answers
//! it, and their one-way messages, in the order the peer sent them.

use super::frame::{Frame, MAX_ERROR_MESSAGE, Outcome, UNANSWERED, cut};
use super::sender::LinkSender;
use bytes::Bytes;
use std::sync::Arc;

/// A frame for a service, from the pod `from`.
#[derive(Debug)]
pub enum Inbound {
    Request {
        from: Arc<str>,
        body: Bytes,
        reply: Reply,
    },
    Message {
        from: Arc<str>,
        body: Bytes,
    },
}

impl Inbound {
    pub fn from(&self) -> &Arc<str> {
        match self {
            Inbound::Request { from, .. } | Inbound::Message { from, .. } => from,
        }
    }
}

/// Answers one request, once. Dropping it unanswered answers the error [`UNANSWERED`], so the
/// requesting pod never waits for its timeout because a service lost a request.
pub struct Reply {
    id: u64,
    link: Option<Arc<LinkSender>>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("id", &self.id).finish()
    }
}

impl Reply {
    pub(super) fn new(id: u64, link: Arc<LinkSender>) -> Reply {
        Reply {
            id,
            link: Some(link),
        }
    }

    /// Answer with `body`.
    pub fn ok(mut self, body: Bytes) {
        self.answer(Outcome::Ok, body);
    }

    /// Answer with an error: `code` is the service's (below
    /// [`FIRST_LINK_ERROR_CODE`](super::frame::FIRST_LINK_ERROR_CODE)); `message` is for
    /// people and cut at 1 KiB.
    pub fn error(mut self, code: u16, message: impl Into<String>) {
        let message = message.into();
        let message = cut(&message, MAX_ERROR_MESSAGE).to_string();
        self.answer(Outcome::Error { code, message }, Bytes::new());
    }

    fn answer(&mut self, outcome: Outcome, body: Bytes) {
        if let Some(link) = self.link.take() {
            link.respond(Frame::Response {
                id: self.id,
                outcome,
                body,
            });
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.answer(
            Outcome::Error {
                code: UNANSWERED,
                message: "the service dropped the request without answering it".into(),
            },
            Bytes::new(),
        );
    }
}
