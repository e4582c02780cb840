//! The end of a connection: what it read still applied, its publishers released, the
//! disconnection counted and told (lifecycle events), its will published now, later or not
//! at all (mqtt/README.md "Wills"), the socket closed and the session detached.

use super::established::{End, Established, FINAL_WRITE_TIMEOUT, WRITE_STALLED};
use super::outbound::apply_acks;
use crate::mqtt::codec::Message;
use futures::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

impl<IO: AsyncRead + AsyncWrite + Unpin> Established<IO> {
    /// The connection ended (`end`): everything after the loop, in this order.
    pub(super) async fn finish(mut self, end: End) {
        // Acknowledgements read but not applied still count: those messages were delivered.
        if !self.acks.is_empty() {
            let mut state = self.session.state.lock();
            apply_acks(&mut state, &mut self.acks, &mut bytes::BytesMut::new());
        }
        // Nobody drains this session now: publishers paused on it must not wait for us.
        self.session.release_publishers();
        let disconnection = end.disconnection_reason();
        self.broker.metrics.disconnection(disconnection.as_str());
        self.broker.session_disconnected(
            self.authorizer.authentication_name(),
            &self.session.client_id,
            self.attachment.connection_id,
            self.session.state.lock().sequence_floor,
            disconnection,
        );
        let why = match &end {
            End::Disconnected { .. } => "disconnected",
            End::Lost(why) => why,
            End::TakenOver => "taken over",
        };
        info!(client = %self.session.client_id, why, listener = ?self.transport.listener(), "connection ended");
        let publish_will = match end {
            End::Disconnected { publish_will } => publish_will,
            End::Lost(_) | End::TakenOver => true,
        };
        if let Some(will) = self.will.take()
            && publish_will
        {
            let will: Message = *will;
            let delay = self.will_delay;
            let client_id = &self.session.client_id;
            let owner = self.authorizer.authentication_name().to_string();
            if let End::TakenOver = end {
                // MQTT 5 §3.1.4: the will of a connection taken over is published as usual —
                // at once when its delay is 0 or the take-over ends the session (clean start,
                // another identity); a delayed will is discarded, as the new connection
                // resumed the session before the delay passed.
                if delay == 0 || self.attachment.session_ended() {
                    self.broker.publish_will(will, &owner, client_id);
                }
            } else {
                // §3.1.3.2.2: after the delay, or when the session ends if that is sooner.
                let expiry = self.session.state.lock().expiry_interval;
                if delay == 0 || expiry == 0 {
                    self.broker.publish_will(will, &owner, client_id);
                } else {
                    let after = Duration::from_secs(u64::from(delay.min(expiry)));
                    self.broker.publish_will_later(
                        &self.session,
                        self.attachment.connection_id,
                        will,
                        after,
                    );
                }
            }
        }
        // A socket that takes nothing would hold the close (and this task) for ever.
        if !matches!(end, End::Lost(WRITE_STALLED)) {
            let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, self.framed.close()).await;
        }
        self.broker
            .detach(&self.session, self.attachment.connection_id);
    }
}
