//! Waiting for a burst of changes to end before reloading.
//!
//! Saving one file is several file-system events (an editor writes a temporary file, renames
//! it, changes modes), and `kubectl apply -f dir/` is one watch event per object. Reloading on
//! each would compile half-written states and count rejections nobody caused.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// How long the sources must be quiet before a reload.
pub const QUIET_PERIOD: Duration = Duration::from_millis(200);
/// The longest a reload waits for quiet: a file rewritten in a loop must not starve reloads.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Wait for a change signal, then until `QUIET_PERIOD` passes without another one (at most
/// `MAX_DELAY` after the first). Returns `false` when the sender is gone.
pub async fn next_settled_change(changes: &mut mpsc::Receiver<()>) -> bool {
    if changes.recv().await.is_none() {
        return false;
    }
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet_until = (Instant::now() + QUIET_PERIOD).min(deadline);
        match timeout_at(quiet_until, changes.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => continue,
            Ok(Some(())) | Err(_) => return true,
            Ok(None) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_single_change_settles_after_the_quiet_period() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.send(()).await.unwrap();
        let start = Instant::now();
        assert!(next_settled_change(&mut rx).await);
        assert_eq!(start.elapsed(), QUIET_PERIOD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_a_quiet_period_after_its_last_change() {
        let (tx, mut rx) = mpsc::channel(1);
        let start = Instant::now();
        tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Keep the sender alive until the waiter has settled.
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        assert!(next_settled_change(&mut rx).await);
        assert_eq!(start.elapsed(), Duration::from_millis(200) + QUIET_PERIOD);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_burst_settles_after_the_max_delay() {
        let (tx, mut rx) = mpsc::channel(1);
        let start = Instant::now();
        tokio::spawn(async move {
            loop {
                if tx.send(()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(next_settled_change(&mut rx).await);
        assert!(start.elapsed() <= MAX_DELAY + Duration::from_millis(50));
        assert!(start.elapsed() >= MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_ends_the_wait() {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        drop(tx);
        assert!(!next_settled_change(&mut rx).await);
    }
}
