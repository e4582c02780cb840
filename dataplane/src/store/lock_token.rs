//! Lock tokens: opaque to clients, but they carry everything the store needs to find the lock
//! (subscription, event address, lock generation) plus random bits that make them unguessable,
//! and an owner field (the issuing pod's `PodIdentity::owner`) so that a cluster can route a
//! token to the pod that owns its event. A store refuses a token of another owner as `Lost`.
//!
//! Layout (big-endian, then base64url without padding):
//! `version u8 | owner u16 | subscription u32 | address u64 | delivery_count u32 | nonce u64`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const VERSION: u8 = 1;
const ENCODED_BYTES: usize = 1 + 2 + 4 + 8 + 4 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockToken {
    /// The pod that owns the event: its owner number (`PodIdentity::owner`, the StatefulSet
    /// ordinal; 0 for `local`).
    pub owner: u16,
    /// The subscription's id, unique within the store's topic (see `subscription::SubscriptionId`).
    pub subscription: u32,
    /// The event's address in its topic log.
    pub address: u64,
    /// The lock generation: a token of an earlier delivery of the same event is stale.
    pub delivery_count: u32,
    /// Random bits drawn for this lock.
    pub nonce: u64,
}

impl LockToken {
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; ENCODED_BYTES];
        bytes[0] = VERSION;
        bytes[1..3].copy_from_slice(&self.owner.to_be_bytes());
        bytes[3..7].copy_from_slice(&self.subscription.to_be_bytes());
        bytes[7..15].copy_from_slice(&self.address.to_be_bytes());
        bytes[15..19].copy_from_slice(&self.delivery_count.to_be_bytes());
        bytes[19..27].copy_from_slice(&self.nonce.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `None` for anything this store did not issue in this format.
    pub fn decode(text: &str) -> Option<LockToken> {
        // Checked before decoding so a huge string costs nothing.
        if text.len() != ENCODED_BYTES.div_ceil(3) * 4 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let bytes: [u8; ENCODED_BYTES] = bytes.try_into().ok()?;
        if bytes[0] != VERSION {
            return None;
        }
        let field = |range: std::ops::Range<usize>| &bytes[range];
        Some(LockToken {
            owner: u16::from_be_bytes(field(1..3).try_into().ok()?),
            subscription: u32::from_be_bytes(field(3..7).try_into().ok()?),
            address: u64::from_be_bytes(field(7..15).try_into().ok()?),
            delivery_count: u32::from_be_bytes(field(15..19).try_into().ok()?),
            nonce: u64::from_be_bytes(field(19..27).try_into().ok()?),
        })
    }
}

/// Per-token failures; the HTTP layer turns them into Event Grid's `failedLockTokens` entries.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LockTokenError {
    /// Not a token this store issues (malformed). Event Grid code "BadToken".
    #[error("the lock token is malformed")]
    Malformed,
    /// A well-formed token whose lock expired or was already settled. Event Grid code "TokenLost".
    #[error("the lock for this token was lost: it expired or the event was already settled")]
    Lost,
    /// A well-formed token of another subscription.
    #[error("the lock token does not belong to this subscription")]
    WrongSubscription,
}

/// `count` random nonces from one call to the operating system's generator (one syscall per
/// receive, not per event).
pub fn nonces(count: usize) -> std::io::Result<Vec<u64>> {
    let mut bytes = vec![0u8; count * 8];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_ne_bytes(word)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> LockToken {
        LockToken {
            owner: 3,
            subscription: 0xdead_beef,
            address: 1 << 40,
            delivery_count: 7,
            nonce: 0x0123_4567_89ab_cdef,
        }
    }

    #[test]
    fn a_token_round_trips() {
        let text = token().encode();
        assert_eq!(text.len(), 36);
        assert_eq!(LockToken::decode(&text), Some(token()));
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert_eq!(LockToken::decode(""), None);
        assert_eq!(LockToken::decode("not a token"), None);
        assert_eq!(LockToken::decode(&"A".repeat(36)), None, "version 0");
        let mut text = token().encode();
        text.replace_range(0..1, "!");
        assert_eq!(LockToken::decode(&text), None);
    }

    #[test]
    fn nonces_differ() {
        let drawn = nonces(4).unwrap();
        assert_eq!(drawn.len(), 4);
        assert!(drawn.windows(2).all(|pair| pair[0] != pair[1]));
    }
}
