//! The one stop signal every long-running task of the data plane watches: listeners, MQTT
//! connections, session persistence, push delivery, the HTTP API's long polls.
//!
//! A `StopSignal` is made by a `Stopper`; `Stopper::stop` (or dropping the last `Stopper`:
//! whoever owns the task is gone) makes every clone of the signal fire, once and for good.
//! A task that stops in stages (a listener: refuse new work, then let what runs finish) takes
//! the signal for the first stage and keeps its own deadline for the second; draining a pod
//! before it is scaled down is the same signal sent earlier.

use tokio::sync::watch;

/// Sends the stop. Clones share it: any clone's `stop` stops everyone.
#[derive(Clone, Debug)]
pub struct Stopper(watch::Sender<bool>);

/// Watches for the stop. Cheap to clone; cancel-safe to await in `select!`.
#[derive(Clone, Debug)]
pub struct StopSignal {
    stopped: watch::Receiver<bool>,
    /// Keeps `never()`'s sender alive so that the signal does not read as dropped.
    _never: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Stopper {
    pub fn new() -> (Stopper, StopSignal) {
        let (sender, stopped) = watch::channel(false);
        let signal = StopSignal {
            stopped,
            _never: None,
        };
        (Stopper(sender), signal)
    }

    /// Every signal fires; later calls do nothing.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// One more signal of this stopper.
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            stopped: self.0.subscribe(),
            _never: None,
        }
    }
}

impl StopSignal {
    /// A signal that never fires (tests, tools that run until their work is done).
    pub fn never() -> StopSignal {
        let (sender, stopped) = watch::channel(false);
        StopSignal {
            stopped,
            _never: Some(std::sync::Arc::new(sender)),
        }
    }

    /// Whether the stop was sent (or the stopper dropped).
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow() || self.stopped.has_changed().is_err()
    }

    /// Resolves once the stop was sent, at once if it was sent already.
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // An error means every stopper was dropped: the owner of the task is gone.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_clone_fires_once_stop_is_sent_even_clones_made_later() {
        let (stopper, signal) = Stopper::new();
        let early = signal.clone();
        assert!(!early.is_stopped());
        let waiting = tokio::spawn(async move { early.stopped().await });
        stopper.stop();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the early clone fired")
            .unwrap();
        let late = stopper.signal();
        assert!(late.is_stopped());
        late.stopped().await;
        assert!(signal.is_stopped());
    }

    #[tokio::test]
    async fn dropping_every_stopper_stops() {
        let (stopper, signal) = Stopper::new();
        let copy = stopper.clone();
        drop(stopper);
        assert!(!signal.is_stopped(), "one stopper is left");
        drop(copy);
        assert!(signal.is_stopped());
        tokio::time::timeout(Duration::from_secs(5), signal.stopped())
            .await
            .expect("fired on drop");
    }

    #[tokio::test(start_paused = true)]
    async fn never_does_not_fire() {
        let signal = StopSignal::never();
        assert!(!signal.is_stopped());
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), signal.stopped())
                .await
                .is_err()
        );
    }
}
