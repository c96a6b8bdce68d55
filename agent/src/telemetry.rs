//! The agent's counters and gauges.
//!
//! A [`Metrics`] is created by the caller and passed into [`crate::run`], so tests read the same
//! numbers an exporter would. Names follow `tokentrail_agent_*`; exporting them (OpenTelemetry,
//! `/metrics`) is not built yet.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters (`_total`) and gauges of one agent.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Gauge: pod directories seen in the last full scan.
    pub pods_seen: AtomicU64,
    /// Gauge: credentials currently attested.
    pub credentials_attested: AtomicU64,
    /// Credentials replaced by a new JTI at the same location.
    pub rotations_total: AtomicU64,
    /// Token files or directories refused (symlink, too large, malformed, ...).
    pub files_refused_total: AtomicU64,
    /// Scans run (full and per pod).
    pub scans_total: AtomicU64,
    /// Messages written to a gRPC stream (resends included).
    pub messages_sent_total: AtomicU64,
    /// Messages released by acks.
    pub messages_acked_total: AtomicU64,
    /// Messages dropped because the unacknowledged queue was full.
    pub messages_dropped_total: AtomicU64,
    /// Connection attempts or streams that failed.
    pub send_failures_total: AtomicU64,
    /// Streams established.
    pub connections_total: AtomicU64,
    /// Gauge: unacknowledged messages.
    pub queue_depth: AtomicU64,
}

impl Metrics {
    /// Reads a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }
}
