//! The sending half of one link, shared by everyone who writes to the peer: callers of
//! `PeerLinks`, the `Reply`s of requests the peer made, and the link's own reader (pongs).
//!
//! One queue per link keeps the order of everything sent to a peer. The queue is unbounded,
//! but what callers put on it is bounded by a semaphore of `capacity` permits, one per frame,
//! given back when the writer has encoded the frame. Responses and pongs take no permit: a
//! response answers a request the peer sent, so the peer's own bound limits them, and a
//! `Reply` can answer (or be dropped) without waiting.

use super::error::PeerError;
use super::frame::{Frame, Goodbye, LENGTH_PREFIX, Outcome, RESPONSE_TOO_LARGE, ServiceId};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

/// What the writer of a link takes off its queue.
pub enum Outgoing {
    /// A frame, with the queue space it holds (none for responses and pongs).
    Frame(Frame, Option<OwnedSemaphorePermit>),
    /// Send this Goodbye and close.
    Close(Goodbye),
}

/// An answer to one of this pod's requests.
pub struct Answer {
    pub outcome: Outcome,
    pub body: Bytes,
}

pub struct LinkSender {
    peer: Arc<str>,
    queue: mpsc::UnboundedSender<Outgoing>,
    space: Arc<Semaphore>,
    capacity: usize,
    max_frame: u32,
    pending: parking_lot::Mutex<Pending>,
    next_id: AtomicU64,
    /// Numbers this link among all links this process made: a new link to the same peer has
    /// a higher one (services tell a peer everything again on a new link).
    generation: u64,
}

/// The next link's generation.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// Requests waiting for their answer. Once the link closed, nothing new may wait: a request
/// registered after the close would never be answered.
#[derive(Default)]
struct Pending {
    closed: bool,
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
}

impl LinkSender {
    /// A sender and the queue its link's writer drains.
    pub fn new(
        peer: Arc<str>,
        capacity: usize,
        max_frame: u32,
    ) -> (Arc<LinkSender>, mpsc::UnboundedReceiver<Outgoing>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let sender = LinkSender {
            peer,
            queue,
            space: Arc::new(Semaphore::new(capacity)),
            capacity,
            max_frame,
            pending: parking_lot::Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        };
        (Arc::new(sender), receiver)
    }

    pub fn peer(&self) -> &Arc<str> {
        &self.peer
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    fn check_size(&self, frame: &Frame) -> Result<(), PeerError> {
        let length = frame.encoded_len();
        if length > self.max_frame as usize {
            return Err(PeerError::TooLarge {
                pod: self.peer.clone(),
                size: length + LENGTH_PREFIX,
                max: self.max_frame,
            });
        }
        Ok(())
    }

    fn down(&self) -> PeerError {
        PeerError::LinkDown {
            pod: self.peer.clone(),
        }
    }

    fn enqueue(&self, frame: Frame, permit: Option<OwnedSemaphorePermit>) -> Result<(), PeerError> {
        self.queue
            .send(Outgoing::Frame(frame, permit))
            .map_err(|_| self.down())
    }

    /// Queue `frame`, waiting for queue space.
    pub async fn send(&self, frame: Frame) -> Result<(), PeerError> {
        self.check_size(&frame)?;
        let permit = self
            .space
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.down())?;
        self.enqueue(frame, Some(permit))
    }

    /// Queue `frame` if there is space now.
    pub fn try_send(&self, frame: Frame) -> Result<(), PeerError> {
        self.check_size(&frame)?;
        let permit = match self.space.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::NoPermits) => {
                return Err(PeerError::QueueFull {
                    pod: self.peer.clone(),
                    capacity: self.capacity,
                });
            }
            Err(TryAcquireError::Closed) => return Err(self.down()),
        };
        self.enqueue(frame, Some(permit))
    }

    /// Send a request and wait for its answer (the caller bounds the wait). Dropping the
    /// future forgets the request: a late answer is discarded.
    pub async fn request(&self, service: ServiceId, body: Bytes) -> Result<Answer, PeerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::Request { id, service, body };
        self.check_size(&frame)?;
        let (answer, answered) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(self.down());
            }
            pending.waiting.insert(id, answer);
        }
        let _forget = ForgetOnDrop { sender: self, id };
        self.send(frame).await?;
        answered.await.map_err(|_| PeerError::LinkClosed {
            pod: self.peer.clone(),
        })
    }

    /// [`request`](Self::request), queued now rather than when the future is first polled
    /// (so that it keeps its place among what is sent after it) or refused at once: the link
    /// is down or its queue is full. The future waits for the answer.
    pub fn request_now(
        self: &Arc<Self>,
        service: ServiceId,
        body: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<Answer, PeerError>> + use<>, PeerError>
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::Request { id, service, body };
        self.check_size(&frame)?;
        let (answer, answered) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(self.down());
            }
            pending.waiting.insert(id, answer);
        }
        let forget = OwnedForget {
            sender: self.clone(),
            id,
        };
        self.try_send(frame)?;
        let peer = self.peer.clone();
        Ok(async move {
            let _forget = forget;
            answered
                .await
                .map_err(|_| PeerError::LinkClosed { pod: peer })
        })
    }

    /// Queue a response or a pong (no queue space needed; see the module's documentation).
    /// Nothing happens when the link is closed: the peer's request failed with it.
    pub fn respond(&self, frame: Frame) {
        let frame = match self.check_size(&frame) {
            Ok(()) => frame,
            Err(error) => match frame {
                Frame::Response { id, .. } => Frame::Response {
                    id,
                    outcome: Outcome::Error {
                        code: RESPONSE_TOO_LARGE,
                        message: error.to_string(),
                    },
                    body: Bytes::new(),
                },
                other => other,
            },
        };
        let _ = self.enqueue(frame, None);
    }

    /// The peer answered request `id`.
    pub fn answer(&self, id: u64, answer: Answer) {
        let waiting = self.pending.lock().waiting.remove(&id);
        if let Some(waiting) = waiting {
            let _ = waiting.send(answer);
        }
    }

    /// Ask the writer to send `goodbye` and close the link.
    pub fn close_with(&self, goodbye: Goodbye) {
        let _ = self.queue.send(Outgoing::Close(goodbye));
    }

    /// The link is gone: every waiting request fails now, new ones fail at once, and callers
    /// waiting for queue space are woken with an error.
    pub fn closed(&self) {
        let waiting = {
            let mut pending = self.pending.lock();
            pending.closed = true;
            std::mem::take(&mut pending.waiting)
        };
        // Dropping the senders fails the waiters with `LinkClosed`.
        drop(waiting);
        self.space.close();
    }
}

/// Removes a request from the pending ones when its caller stops waiting (timeout, cancel).
struct ForgetOnDrop<'a> {
    sender: &'a LinkSender,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.sender.pending.lock().waiting.remove(&self.id);
    }
}

/// [`ForgetOnDrop`] for a future that owns its link.
struct OwnedForget {
    sender: Arc<LinkSender>,
    id: u64,
}

impl Drop for OwnedForget {
    fn drop(&mut self) {
        self.sender.pending.lock().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(body: &'static [u8]) -> Frame {
        Frame::Message {
            service: ServiceId(1),
            body: Bytes::from_static(body),
        }
    }

    #[tokio::test]
    async fn try_send_fails_when_the_queue_is_full_and_send_waits_for_space() {
        let (link, mut queue) = LinkSender::new(Arc::from("pod-1"), 2, 1024);
        link.try_send(message(b"1")).unwrap();
        link.try_send(message(b"2")).unwrap();
        assert_eq!(
            link.try_send(message(b"3")),
            Err(PeerError::QueueFull {
                pod: Arc::from("pod-1"),
                capacity: 2
            })
        );
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send(message(b"3")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "send waits for space");
        // The writer takes a frame: its permit goes back.
        drop(queue.recv().await);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn closing_fails_waiting_requests_at_once_and_refuses_new_ones() {
        let (link, _queue) = LinkSender::new(Arc::from("pod-1"), 8, 1024);
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.request(ServiceId(1), Bytes::new()).await }
        });
        while link.pending.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        link.closed();
        let result = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(result, Err(PeerError::LinkClosed { .. })));
        assert!(matches!(
            link.request(ServiceId(1), Bytes::new()).await,
            Err(PeerError::LinkDown { .. })
        ));
        assert!(matches!(
            link.send(message(b"late")).await,
            Err(PeerError::LinkDown { .. })
        ));
    }

    #[tokio::test]
    async fn a_frame_over_the_maximum_is_refused_before_it_is_queued() {
        let (link, _queue) = LinkSender::new(Arc::from("pod-1"), 8, 16);
        let body = Bytes::from(vec![0u8; 15]);
        let result = link.try_send(Frame::Message {
            service: ServiceId(1),
            body,
        });
        assert_eq!(
            result,
            Err(PeerError::TooLarge {
                pod: Arc::from("pod-1"),
                size: 21,
                max: 16
            })
        );
    }

    #[tokio::test]
    async fn an_answer_after_the_caller_gave_up_is_discarded() {
        let (link, _queue) = LinkSender::new(Arc::from("pod-1"), 8, 1024);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            link.request(ServiceId(1), Bytes::new()),
        )
        .await;
        assert!(gave_up.is_err());
        assert!(link.pending.lock().waiting.is_empty(), "forgotten");
        link.answer(
            1,
            Answer {
                outcome: Outcome::Ok,
                body: Bytes::new(),
            },
        );
    }
}
