//! Who this data-plane process is among the pods serving one Namespace: its pod name
//! (`--pod-name`, default from `POD_NAME`, which the operator sets from the downward API's
//! `metadata.name`, else `local`) and the owner number derived from it.
//!
//! The owner number is what the store writes into the lock tokens it issues, so that a cluster
//! can route a token to the pod that owns its event. The rule, stable across restarts because
//! it depends on the name alone:
//! - `local` (a process outside Kubernetes) is 0;
//! - a name ending in `-N`, `N` a decimal ordinal below 32,768 (a StatefulSet's pods:
//!   `orders-gridline-0`, `orders-gridline-1`, ...), is `N`;
//! - any other name is 32,768 plus a 15-bit FNV-1a hash of the name, so a hashed number never
//!   equals an ordinal.
//!
//! Collisions: within one StatefulSet (the data-plane pods of one Namespace, which share the
//! tokens' subscriptions) ordinals are distinct, so owners are. Two pods named without an
//! ordinal collide with probability 1 in 32,768 per pair, and a pod named `x-3` collides with
//! any other `y-3`. A collision only misroutes a token: the pod that gets it still checks the
//! token against its own lock (subscription, delivery count and a 64-bit nonce) and answers
//! "lock lost" for one it did not issue.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The environment variable `--pod-name` defaults to.
pub const POD_NAME_ENV: &str = "POD_NAME";

/// The pod name of a process run outside Kubernetes.
pub const LOCAL: &str = "local";

/// The longest DNS-1123 label.
const MAX_NAME_BYTES: usize = 63;

/// Owner numbers at or above this are hashed names (below it: ordinals).
const HASHED_OWNERS: u16 = 1 << 15;

/// This pod's name and owner number. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodIdentity {
    name: Arc<str>,
    owner: u16,
}

/// Why a pod name was refused: it must be a DNS-1123 label, as Kubernetes pod names of a
/// StatefulSet are.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PodNameError {
    #[error("the pod name is empty")]
    Empty,
    #[error("the pod name {name:?} is {length} bytes long; a DNS-1123 label has at most 63")]
    TooLong { name: String, length: usize },
    #[error(
        "the pod name {name:?} has {found:?}; a DNS-1123 label holds only lowercase letters, digits and '-'"
    )]
    InvalidCharacter { name: String, found: char },
    #[error(
        "the pod name {name:?} must start and end with a lowercase letter or a digit (DNS-1123 label)"
    )]
    InvalidEdge { name: String },
}

impl PodIdentity {
    /// The identity of the pod called `name` (a DNS-1123 label).
    pub fn new(name: &str) -> Result<PodIdentity, PodNameError> {
        validate(name)?;
        Ok(PodIdentity {
            name: Arc::from(name),
            owner: owner_of(name),
        })
    }

    /// A process outside Kubernetes: `local`, owner 0.
    pub fn local() -> PodIdentity {
        PodIdentity {
            name: Arc::from(LOCAL),
            owner: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner number lock tokens carry (see the module's documentation for the rule).
    pub fn owner(&self) -> u16 {
        self.owner
    }
}

impl Default for PodIdentity {
    fn default() -> Self {
        PodIdentity::local()
    }
}

impl FromStr for PodIdentity {
    type Err = PodNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        PodIdentity::new(name)
    }
}

impl fmt::Display for PodIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn validate(name: &str) -> Result<(), PodNameError> {
    if name.is_empty() {
        return Err(PodNameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(PodNameError::TooLong {
            name: name.to_string(),
            length: name.len(),
        });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(PodNameError::InvalidCharacter {
            name: name.to_string(),
            found,
        });
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(PodNameError::InvalidEdge {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The owner number of a valid pod name (the rule is in the module's documentation).
fn owner_of(name: &str) -> u16 {
    if name == LOCAL {
        return 0;
    }
    let ordinal = name
        .rsplit_once('-')
        .map(|(_, suffix)| suffix)
        .filter(|suffix| suffix.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|suffix| suffix.parse::<u16>().ok())
        .filter(|ordinal| *ordinal < HASHED_OWNERS);
    ordinal.unwrap_or_else(|| HASHED_OWNERS | (fnv1a(name) as u16 & (HASHED_OWNERS - 1)))
}

/// 32-bit FNV-1a: small, and fixed by its definition (unlike std's hashers, which may change
/// between Rust releases and would renumber the pods).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_is_owner_zero() {
        assert_eq!(PodIdentity::new("local").unwrap(), PodIdentity::local());
        assert_eq!(PodIdentity::local().owner(), 0);
    }

    #[test]
    fn a_statefulset_pod_owns_its_ordinal() {
        assert_eq!(PodIdentity::new("orders-gridline-0").unwrap().owner(), 0);
        assert_eq!(PodIdentity::new("orders-gridline-2").unwrap().owner(), 2);
        assert_eq!(
            PodIdentity::new("orders-gridline-32767").unwrap().owner(),
            32767
        );
    }

    #[test]
    fn a_name_without_an_ordinal_gets_a_stable_hashed_owner_above_every_ordinal() {
        let owner = PodIdentity::new("gridline-dataplane-7d9f8b6c5-x2k4q")
            .unwrap()
            .owner();
        assert!(owner >= HASHED_OWNERS);
        // Fixed by FNV-1a's definition: the same name gets the same number in every release.
        assert_eq!(
            owner,
            HASHED_OWNERS | (fnv1a("gridline-dataplane-7d9f8b6c5-x2k4q") as u16 & 0x7fff)
        );
        assert_eq!(fnv1a("a"), 0xe40c_292c);
        let too_large = PodIdentity::new("orders-gridline-40000").unwrap().owner();
        assert!(
            too_large >= HASHED_OWNERS,
            "an ordinal past 32,767 is hashed"
        );
        assert!(PodIdentity::new("gridline").unwrap().owner() >= HASHED_OWNERS);
    }

    #[test]
    fn names_that_are_not_dns_labels_are_refused_with_the_reason() {
        assert_eq!(PodIdentity::new(""), Err(PodNameError::Empty));
        assert!(matches!(
            PodIdentity::new(&"a".repeat(64)),
            Err(PodNameError::TooLong { length: 64, .. })
        ));
        assert!(matches!(
            PodIdentity::new("Orders-0"),
            Err(PodNameError::InvalidCharacter { found: 'O', .. })
        ));
        assert!(matches!(
            PodIdentity::new("orders.gridline-0"),
            Err(PodNameError::InvalidCharacter { found: '.', .. })
        ));
        assert!(matches!(
            PodIdentity::new("-orders"),
            Err(PodNameError::InvalidEdge { .. })
        ));
        assert!(matches!(
            PodIdentity::new("orders-"),
            Err(PodNameError::InvalidEdge { .. })
        ));
        assert_eq!(PodIdentity::new(&"a".repeat(63)).unwrap().name().len(), 63);
    }
}
