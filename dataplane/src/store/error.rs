//! Failures of a whole store call.

/// A store call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("topic '{0}' not found")]
    TopicNotFound(String),
    #[error("event subscription '{subscription}' not found on topic '{topic}'")]
    SubscriptionNotFound { topic: String, subscription: String },
    #[error(
        "event subscription '{subscription}' on topic '{topic}' uses push delivery; receive and settle work on queue subscriptions only"
    )]
    NotAQueueSubscription { topic: String, subscription: String },
    #[error("event subscription '{subscription}' on topic '{topic}' uses queue delivery")]
    NotAPushSubscription { topic: String, subscription: String },
    #[error("the store is shutting down")]
    ShuttingDown,
    /// Reading or writing failed. A call that writes (publish, receive's locks, settle) stored
    /// nothing of its own when it fails this way.
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// No room to write: the volume is full (ENOSPC), a quota is spent (EDQUOT) or a file-size
    /// limit is reached (EFBIG). Nothing of the call was stored, and storing works again once
    /// space is freed. (A failed write reaches callers as `Io` with `ErrorKind::StorageFull`
    /// for all three.)
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
    }
}
