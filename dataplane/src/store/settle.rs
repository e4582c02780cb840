//! What receive hands out and what settling by lock token answers.

use super::lock_token::LockTokenError;
use serde_json::value::RawValue;
use std::time::Duration;

/// One event handed out by `receive`, locked for the subscription's lock duration.
pub struct ReceivedEvent {
    pub lock_token: String,
    /// 1 on first delivery.
    pub delivery_count: u32,
    pub event: Box<RawValue>,
}

/// What to do with the events named by lock tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Settle {
    Acknowledge,
    Release { delay: Duration },
    Reject,
    RenewLock,
}

/// Which tokens a settle call succeeded and failed for.
#[derive(Debug, Default, PartialEq)]
pub struct SettleOutcome {
    pub succeeded: Vec<String>,
    pub failed: Vec<FailedLockToken>,
}

/// One token a settle call failed for, and why.
#[derive(Debug, PartialEq)]
pub struct FailedLockToken {
    pub lock_token: String,
    pub error: LockTokenError,
}
