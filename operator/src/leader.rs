//! Leader election, so that several operator replicas can run and only one reconciles and
//! writes: the shared Lease loop (`gridline_kubernetes::LeaseLoop`, client-go's timings) on
//! the `--lease-name` Lease, held under an identity new per process. A leader that loses the
//! Lease stops: `run` exits and the pod restarts as a candidate, so no half-stopped
//! controller keeps writing.

/// `<pod name>_<random>`: unique per process, so a restarted pod is a new candidate.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "gridline-operator".to_string());
    let mut bytes = [0u8; 4];
    // Without randomness two processes on one host could share an identity; the host name
    // alone still distinguishes pods.
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_unique_per_process_start() {
        assert_ne!(identity(), identity());
    }
}
