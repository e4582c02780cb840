//! `gridline_peer_*` metrics, registered into the data plane's registry. Labels are bounded:
//! `peer` is a pod name of the Namespace (at most `spec.replicas` of them, stable names).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why a link failed or ended badly, as `gridline_peer_link_failures_total{reason}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The TLS handshake failed: no certificate, another CA, no ALPN.
    Tls,
    /// No common protocol version.
    Version,
    /// A Hello refused (by either side): another Namespace, not a member, wrong direction.
    Refused,
    /// No frame within the peer timeout (a link), or no handshake within it.
    Timeout,
    /// A socket error or a connection closed without a Goodbye.
    Io,
    /// An undecodable, oversized or unexpected frame.
    Protocol,
}

impl Failure {
    pub const ALL: [Failure; 6] = [
        Failure::Tls,
        Failure::Version,
        Failure::Refused,
        Failure::Timeout,
        Failure::Io,
        Failure::Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Failure::Tls => "tls",
            Failure::Version => "version",
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
            Failure::Protocol => "protocol",
        }
    }
}

pub struct LinkMetrics {
    links: IntGaugeVec,
    frames: IntCounterVec,
    bytes: IntCounterVec,
    failures: IntCounterVec,
    /// Requests from this pod, from sending to the answer (or the timeout).
    pub request_seconds: Histogram,
}

/// One peer's handles, looked up once per link: a label lookup per frame would cost a hash
/// under a lock on the hot path.
#[derive(Clone)]
pub struct PeerCounters {
    pub up: IntGauge,
    pub frames_in: IntCounter,
    pub frames_out: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
}

impl LinkMetrics {
    pub fn register(registry: &Registry) -> Result<LinkMetrics, prometheus::Error> {
        let links = IntGaugeVec::new(
            Opts::new(
                "gridline_peer_links",
                "Whether the link to each peer is up (1) or not (0)",
            ),
            &["peer"],
        )?;
        let frames = IntCounterVec::new(
            Opts::new(
                "gridline_peer_frames_total",
                "Frames sent to (out) and received from (in) each peer",
            ),
            &["peer", "direction"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "gridline_peer_bytes_total",
                "Frame bytes (before TLS) sent to and received from each peer",
            ),
            &["peer", "direction"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "gridline_peer_link_failures_total",
                "Links refused, failed or dropped, by reason",
            ),
            &["reason"],
        )?;
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gridline_peer_request_seconds",
                "Requests to peers, from sending to the answer",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(links.clone()))?;
        registry.register(Box::new(frames.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        for failure in Failure::ALL {
            failures.with_label_values(&[failure.label()]);
        }
        Ok(LinkMetrics {
            links,
            frames,
            bytes,
            failures,
            request_seconds,
        })
    }

    pub fn peer(&self, peer: &str) -> PeerCounters {
        PeerCounters {
            up: self.links.with_label_values(&[peer]),
            frames_in: self.frames.with_label_values(&[peer, "in"]),
            frames_out: self.frames.with_label_values(&[peer, "out"]),
            bytes_in: self.bytes.with_label_values(&[peer, "in"]),
            bytes_out: self.bytes.with_label_values(&[peer, "out"]),
        }
    }

    pub fn failed(&self, failure: Failure) {
        self.failures.with_label_values(&[failure.label()]).inc();
    }
}
