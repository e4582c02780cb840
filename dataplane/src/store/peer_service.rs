//! The events service of the peer links, served from this pod's store: peers receive from,
//! settle on, and wait for this pod's partition (see `peers` for the bodies). Each request
//! runs in its own task: a wait lasts as long as the peer's long poll.

use super::EventStore;
use super::peers::{PartitionRequest, encode_outcome, encode_received};
use crate::cluster::transport::{InboundQueue, PeerInbound};
use crate::shutdown::StopSignal;
use bytes::Bytes;
use std::time::Duration;
use tracing::debug;

/// Answer peers' requests on this pod's partition until `inbound` closes or `stop`.
pub async fn serve(store: EventStore, mut inbound: impl InboundQueue, stop: StopSignal) {
    loop {
        let received = tokio::select! {
            received = inbound.recv() => received,
            _ = stop.stopped() => return,
        };
        let Some(PeerInbound { from, body, reply }) = received else {
            return;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let answer = answer(&store, body).await;
            if let Err(error) = &answer {
                debug!(peer = %from, %error, "events request refused");
            }
            if let Some(reply) = reply {
                reply(answer);
            }
        });
    }
}

async fn answer(store: &EventStore, body: Bytes) -> Result<Bytes, String> {
    let request = PartitionRequest::decode(body).map_err(|error| error.to_string())?;
    match request {
        PartitionRequest::Receive {
            topic,
            subscription,
            max_events,
        } => {
            let events = store
                .receive(
                    &topic,
                    &subscription,
                    usize::from(max_events),
                    Duration::ZERO,
                )
                .await
                .map_err(|error| error.to_string())?;
            encode_received(&events).map_err(|error| error.to_string())
        }
        PartitionRequest::Settle {
            topic,
            subscription,
            action,
            lock_tokens,
        } => {
            let outcome = store
                .settle(&topic, &subscription, action, &lock_tokens)
                .await
                .map_err(|error| error.to_string())?;
            encode_outcome(&outcome).map_err(|error| error.to_string())
        }
        PartitionRequest::Wait {
            topic,
            subscription,
            max_wait,
        } => {
            // Bounded whatever the peer asks: a long poll is at most a minute.
            let max_wait = max_wait.min(Duration::from_secs(60));
            store
                .wait_for_activity(&topic, &subscription, max_wait)
                .await
                .map_err(|error| error.to_string())?;
            Ok(Bytes::new())
        }
    }
}
