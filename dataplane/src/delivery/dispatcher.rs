//! One push subscription's dispatcher: a task that validates the endpoint, then takes events
//! from the subscription's durable state and delivers them, a bounded number of requests at
//! a time, each request its own small task; a settler task journals the outcomes, many
//! requests' at once (see `README.md`).
//!
//! ```text
//!  Validating ──handshake refused──> (wait: 10 s, 30 s, 1 min, 5 min, ...) ──> Validating
//!      │ accepted
//!      ▼
//!  Delivering ──stop──> Draining (in-flight requests finish, or are cut after the grace) ──> end
//! ```

use super::PushTuning;
use super::batch::{self, BatchLimits};
use super::metrics::SubscriptionMetrics;
use super::rate::RateLimit;
use super::schedule::{self, Attempt, EventAttempts, Next, RetryPolicy};
use super::status::{FAILING_AFTER, StatusHandle};
use super::webhook::Endpoint;
use crate::shutdown::StopSignal;
use crate::store::{PushConsumer, PushEvent, PushSettle, PushTake, StoreError};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::futures::Notified;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// Settlements of finished requests waiting for the settler (backpressure beyond: a request
/// task holds its slot until its settlement is queued).
const SETTLE_QUEUE: usize = 64;
/// At most this many settlements go into one journal write.
const SETTLE_BATCH: usize = 10_000;

type Settlements = Vec<(crate::store::PushLease, PushSettle)>;

/// What a dispatcher works with, shared with its request tasks.
pub struct Shared {
    pub consumer: PushConsumer,
    pub endpoint: Endpoint,
    pub retry: RetryPolicy,
    pub batch: BatchLimits,
    pub metrics: SubscriptionMetrics,
    pub status: StatusHandle,
    /// The settler journaled outcomes: the events in flight went down, so a take that found
    /// the window full may now find room.
    pub settled: tokio::sync::Notify,
    /// Pods delivering this subscription's events, each from its own partition (1 alone):
    /// the concurrency limit holds for the Namespace, so each takes its share of it.
    pub pods: Arc<std::sync::atomic::AtomicUsize>,
}

/// The take from the store, which runs beside the requests in flight.
enum Taking<'a> {
    /// Nothing asked for.
    Idle,
    /// A take is running; `notified` was registered before it, so that what is published
    /// while it runs (and finds nothing) still wakes us.
    Running {
        take: Pin<Box<dyn Future<Output = Result<Vec<PushEvent>, StoreError>> + Send + 'a>>,
        notified: Pin<Box<Notified<'a>>>,
    },
    /// The last take found nothing: wait for a publish or a release (or a retry's due time).
    Waiting { notified: Pin<Box<Notified<'a>>> },
}

/// What the take side has to say.
enum TakeEvent {
    Taken(Result<Vec<PushEvent>, StoreError>),
    Notified,
}

/// The dispatcher's phases.
enum Phase {
    /// The handshake has not succeeded yet; `refusals` so far.
    Validating { refusals: u32 },
    /// Taking and delivering events, at most at the endpoint's allowed rate.
    Delivering { rate: Option<RateLimit> },
    /// Stop: no new requests; those in flight get the grace period.
    Draining,
}

/// How the endpoint's recent requests went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Unknown,
    Delivering,
    /// Requests failing in a row.
    Failing {
        in_a_row: u32,
    },
}

/// A request waiting for a free slot: events bound for one POST.
struct Request {
    events: Vec<PushEvent>,
    /// Its dynamic header values (every event of a request has the same).
    dynamic: Vec<Option<String>>,
}

/// What a finished request reports to its dispatcher.
struct Completion {
    events: u64,
    /// `None`: delivered; else how it failed.
    failure: Option<String>,
}

pub struct Dispatcher {
    shared: Arc<Shared>,
    tuning: PushTuning,
    stop: StopSignal,
    health: Health,
}

/// Journal the outcomes the request tasks send, all that are waiting in one write.
async fn settler(shared: Arc<Shared>, mut settlements: mpsc::Receiver<Settlements>) {
    while let Some(mut batch) = settlements.recv().await {
        while batch.len() < SETTLE_BATCH
            && let Ok(more) = settlements.try_recv()
        {
            batch.extend(more);
        }
        match shared.consumer.settle(&batch).await {
            Ok(held) => {
                let lost = held.iter().filter(|h| !**h).count();
                if lost > 0 {
                    tracing::warn!(lost, "settling found locks gone (released meanwhile)");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot settle delivery attempts; their events are attempted again when their lock expires")
            }
        }
        // A stored permit if the dispatcher is not waiting: it looks again when it is.
        shared.settled.notify_one();
    }
}

impl Dispatcher {
    pub fn new(shared: Shared, tuning: PushTuning, stop: StopSignal) -> Dispatcher {
        Dispatcher {
            shared: Arc::new(shared),
            tuning,
            stop,
            health: Health::Unknown,
        }
    }

    /// Run until told to stop (or the store closes).
    pub async fn run(mut self, span: tracing::Span) {
        async move {
            match self.shared.consumer.release_locks().await {
                Ok(0) => {}
                Ok(released) => tracing::info!(
                    released,
                    "attempts of an earlier dispatcher were cut short; their events are attempted again"
                ),
                Err(error) => tracing::warn!(%error, "cannot release an earlier dispatcher's locks; they expire on their own"),
            }
            let (settle, settlements) = mpsc::channel(SETTLE_QUEUE);
            let settler = tokio::spawn(settler(Arc::clone(&self.shared), settlements));
            let mut phase = Phase::Validating { refusals: 0 };
            let mut tasks = JoinSet::new();
            let mut queued = VecDeque::new();
            loop {
                phase = match phase {
                    Phase::Validating { refusals } => self.validate(refusals).await,
                    Phase::Delivering { rate } => {
                        self.deliver(rate, &mut tasks, &mut queued, &settle).await
                    }
                    Phase::Draining => {
                        self.drain(&mut tasks).await;
                        // The settler ends once the last request's outcome is journaled.
                        drop(settle);
                        let _ = settler.await;
                        // Queued events stay locked: the next dispatcher releases them.
                        return;
                    }
                };
            }
        }
        .instrument(span)
        .await;
    }

    /// One handshake (or a wait after a refusal, then the handshake).
    async fn validate(&mut self, refusals: u32) -> Phase {
        if refusals > 0 {
            // The retry schedule without its "immediately": 10 s, 30 s, 1 min, 5 min, ...
            let wait = self.shared.retry.time_scale.apply(schedule::jitter(
                schedule::scheduled_wait(refusals + 1),
                schedule::random_unit(),
            ));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = self.stop.stopped() => return Phase::Draining,
            }
        }
        let answer = tokio::select! {
            answer = self.shared.endpoint.validate() => answer,
            _ = self.stop.stopped() => return Phase::Draining,
        };
        match answer {
            Ok(validated) => {
                tracing::info!(allowed_rate = ?validated.allowed_rate, "endpoint validated");
                self.shared.status.validated(&validated.message);
                self.shared.metrics.validated.set(1);
                Phase::Delivering {
                    rate: validated.allowed_rate.map(RateLimit::per_minute),
                }
            }
            Err(refusal) => {
                tracing::warn!(
                    reason = refusal.reason,
                    message = %refusal.message,
                    "endpoint not validated; nothing is delivered until it is"
                );
                self.shared
                    .status
                    .not_validated(refusal.reason, &refusal.message);
                self.shared.metrics.validated.set(0);
                Phase::Validating {
                    refusals: refusals + 1,
                }
            }
        }
    }

    /// The delivery loop; returns `Draining` once told to stop.
    async fn deliver(
        &mut self,
        mut rate: Option<RateLimit>,
        tasks: &mut JoinSet<Completion>,
        queued: &mut VecDeque<Request>,
        settle: &mpsc::Sender<Settlements>,
    ) -> Phase {
        let shared = Arc::clone(&self.shared);
        let mut taking = Taking::Idle;
        loop {
            let pods = shared
                .pods
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1);
            let max_requests = self.tuning.max_concurrent_requests.div_ceil(pods).max(1);
            // Start what waits, as far as free slots and the allowed rate let us.
            let mut rate_wait = None;
            while tasks.len() < max_requests && !queued.is_empty() {
                if let Some(limit) = rate.as_mut()
                    && let Err(at) = limit.try_acquire()
                {
                    rate_wait = Some(at);
                    break;
                }
                if let Some(request) = queued.pop_front() {
                    shared.metrics.in_flight.inc();
                    tasks.spawn(attempt(Arc::clone(&shared), request, settle.clone()));
                }
            }
            // Keep up to one round of requests taken ahead, so that a freed slot never waits
            // for the store; under an allowed rate, about a second's worth (taken events must
            // not wait anywhere near their lock's five minutes).
            let ahead = rate
                .as_ref()
                .map_or(max_requests, |limit| limit.burst().clamp(1, max_requests));
            if matches!(taking, Taking::Idle) && queued.len() < ahead {
                let wanted = if rate.is_some() {
                    ahead - queued.len()
                } else {
                    (max_requests + ahead).saturating_sub(tasks.len() + queued.len())
                };
                let limits = self.take_limits(wanted);
                let mut notified = Box::pin(shared.consumer.notified());
                notified.as_mut().enable();
                taking = Taking::Running {
                    take: Box::pin(shared.consumer.take(limits)),
                    notified,
                };
            }
            let due = match taking {
                Taking::Waiting { .. } => shared.consumer.next_due(),
                Taking::Idle | Taking::Running { .. } => None,
            };
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                _ = self.stop.stopped() => return Phase::Draining,
                Some(done) = tasks.join_next() => self.completed(done),
                event = poll_taking(&mut taking) => match event {
                    TakeEvent::Taken(Ok(events)) => {
                        taking = match std::mem::replace(&mut taking, Taking::Idle) {
                            Taking::Running { notified, .. } if events.is_empty() => {
                                Taking::Waiting { notified }
                            }
                            _ => Taking::Idle,
                        };
                        queued.extend(requests(&shared, events));
                    }
                    TakeEvent::Taken(Err(StoreError::ShuttingDown)) => return Phase::Draining,
                    TakeEvent::Taken(Err(error)) => {
                        taking = Taking::Idle;
                        tracing::error!(%error, "cannot take events; trying again in a second");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = self.stop.stopped() => return Phase::Draining,
                        }
                    }
                    TakeEvent::Notified => taking = Taking::Idle,
                },
                () = shared.settled.notified(), if matches!(taking, Taking::Waiting { .. }) => {
                    taking = Taking::Idle;
                }
                () = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => {
                    taking = Taking::Idle;
                }
                () = tokio::time::sleep_until(rate_wait.unwrap_or(far)), if rate_wait.is_some() => {}
            }
        }
    }

    /// How much the next take may lock: `requests` full requests. New events only while few
    /// events wait for a retry, and, while the endpoint fails, only once nothing does (its
    /// retries are the probes): a dead endpoint leaves the backlog on disk, not in memory.
    fn take_limits(&self, requests: usize) -> PushTake {
        let free = requests.max(1);
        let batch = self.shared.batch;
        let in_flight = self.shared.consumer.in_flight();
        // Above what a healthy stream has taken and not yet settled (two rounds of full
        // requests taken ahead, as many again whose outcome the settler is journaling).
        let window = self
            .tuning
            .retry_window_events
            .max(4 * self.tuning.max_concurrent_requests * batch.max_events);
        let new_events = in_flight < window
            && (!matches!(self.health, Health::Failing { .. }) || in_flight == 0);
        PushTake {
            max_events: free * batch.max_events,
            max_bytes: u64::try_from(free * batch.max_bytes).unwrap_or(u64::MAX),
            new_events,
        }
    }

    fn completed(&mut self, done: Result<Completion, tokio::task::JoinError>) {
        self.shared.metrics.in_flight.dec();
        let completion = match done {
            Ok(completion) => completion,
            Err(error) => {
                tracing::error!(%error, "a delivery request task failed; its events are attempted again when their lock expires");
                return;
            }
        };
        let status = &self.shared.status;
        match completion.failure {
            None => {
                if matches!(self.health, Health::Failing { in_a_row } if in_a_row >= FAILING_AFTER)
                {
                    tracing::info!("the endpoint accepts deliveries again");
                }
                self.health = Health::Delivering;
                status.delivered(completion.events);
                self.shared.metrics.healthy.set(1);
            }
            Some(description) => {
                let in_a_row = match self.health {
                    Health::Failing { in_a_row } => in_a_row.saturating_add(1),
                    Health::Unknown | Health::Delivering => 1,
                };
                self.health = Health::Failing { in_a_row };
                status.failed(completion.events, &description);
                if in_a_row == FAILING_AFTER {
                    tracing::warn!(last = %description, "the endpoint is failing: {FAILING_AFTER} requests in a row failed");
                    self.shared.metrics.healthy.set(0);
                }
            }
        }
    }

    /// Let the requests in flight finish within the grace period, then cut them off (their
    /// events stay locked; the next dispatcher releases them).
    async fn drain(&mut self, tasks: &mut JoinSet<Completion>) {
        let grace = tokio::time::sleep(self.tuning.stop_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => self.completed(done),
                    None => break,
                },
                () = &mut grace => {
                    tracing::info!(cut = tasks.len(), "stopping: requests still in flight are cut off");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {
                        self.shared.metrics.in_flight.dec();
                    }
                    break;
                }
            }
        }
    }
}

/// Group taken events into requests (see `batch.rs`).
fn requests(shared: &Shared, events: Vec<PushEvent>) -> Vec<Request> {
    let keyed: Vec<(PushEvent, Vec<Option<String>>)> = events
        .into_iter()
        .map(|event| {
            let key = shared.endpoint.dynamic_values(&event.json);
            (event, key)
        })
        .collect();
    batch::pack(
        keyed,
        shared.batch,
        |(e, _)| e.json.len(),
        |(_, k)| k.clone(),
    )
    .into_iter()
    .map(|batch| {
        let dynamic = batch.first().map(|(_, k)| k.clone()).unwrap_or_default();
        Request {
            events: batch.into_iter().map(|(e, _)| e).collect(),
            dynamic,
        }
    })
    .collect()
}

/// One request: POST, decide each event's fate by the outcome, hand that to the settler,
/// report.
async fn attempt(
    shared: Arc<Shared>,
    request: Request,
    settle: mpsc::Sender<Settlements>,
) -> Completion {
    let batched = shared.batch.is_batched();
    let body = batch::body(request.events.iter().map(|e| e.json.as_slice()), batched);
    let outcome = shared
        .endpoint
        .deliver(body, shared.batch.content_type(), &request.dynamic)
        .await;
    let now = shared.consumer.now();
    let events = request.events.len() as u64;
    let metrics = &shared.metrics;
    let (settlements, failure): (Settlements, _) = match &outcome {
        Attempt::Delivered { .. } => {
            metrics.delivered.inc_by(events);
            for event in &request.events {
                let latency = now.saturating_sub(event.publish_time).max(0) as f64 / 1000.0;
                metrics.latency.observe(latency);
            }
            let settled = request
                .events
                .iter()
                .map(|e| (e.lease, PushSettle::Delivered))
                .collect();
            (settled, None)
        }
        Attempt::Failed(failure) => {
            metrics.failed(failure.class(), events);
            let settled = request
                .events
                .iter()
                .map(|event| {
                    let history = EventAttempts {
                        attempts: event.delivery_count,
                        publish_time: event.publish_time,
                    };
                    let next = schedule::after_failure(
                        failure,
                        history,
                        &shared.retry,
                        now,
                        schedule::random_unit(),
                    );
                    let settle = match next {
                        Next::RetryAfter(delay) => {
                            metrics.retried.inc();
                            PushSettle::Retry { delay }
                        }
                        Next::GiveUp(reason) => {
                            metrics.dead_lettered(reason.as_str());
                            PushSettle::GiveUp {
                                reason,
                                last_attempt: schedule::last_attempt(failure, now),
                            }
                        }
                    };
                    (event.lease, settle)
                })
                .collect();
            tracing::debug!(events, failure = %failure.describe(), "delivery attempt failed");
            (settled, Some(failure.describe()))
        }
    };
    // Closed only once every request task is gone.
    let _ = settle.send(settlements).await;
    Completion { events, failure }
}

/// Poll the take side: a running take, or the wait after an empty one.
fn poll_taking<'a, 'b>(taking: &'b mut Taking<'a>) -> impl Future<Output = TakeEvent> + 'b {
    std::future::poll_fn(move |cx| match taking {
        Taking::Idle => Poll::Pending,
        Taking::Running { take, .. } => take.as_mut().poll(cx).map(TakeEvent::Taken),
        Taking::Waiting { notified } => notified.as_mut().poll(cx).map(|()| TakeEvent::Notified),
    })
}
