//! The aggregator's counters.
//!
//! A [`Metrics`] is created by the caller and passed into [`crate::run`], so tests read the same
//! numbers an exporter would. Names follow `tokentrail_aggregator_*` (the field name is the
//! metric's suffix). Exporting them (OpenTelemetry, `/metrics`) is not built yet; `tracing`
//! carries the same events as structured logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Distinct `cluster` label values; more are counted as `other`.
pub const MAX_CLUSTERS: usize = 256;

/// Counters (`_total`) and gauges of one aggregator.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Raw audit records consumed.
    pub records_in_total: AtomicU64,
    /// Audit events decoded (several per EventList record).
    pub events_decoded_total: AtomicU64,
    /// Observation records produced and acknowledged (broadcast copies counted once each).
    pub observations_out_total: AtomicU64,
    /// Raw records sent to the dead-letter topic.
    pub dead_letters_total: AtomicU64,
    /// Problems the decoders reported (a record can have several).
    pub decode_errors_total: AtomicU64,
    /// Offset commits that succeeded.
    pub commits_total: AtomicU64,
    /// Attestation messages processed (resends not counted).
    pub attestations_accepted_total: AtomicU64,
    /// Attestation messages acknowledged again without processing (resends).
    pub attestations_resent_total: AtomicU64,
    /// Pods or credentials refused: attested by an agent for another node than its own.
    pub attestations_refused_total: AtomicU64,
    /// Attestation streams refused: no or wrong node identity, too many streams.
    pub streams_refused_total: AtomicU64,
    /// Gauge: attestation streams open.
    pub streams_open: AtomicU64,
    /// Records in and out per cluster.
    per_cluster: Mutex<BTreeMap<String, ClusterCounts>>,
}

/// Per-cluster counts (the `cluster` label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Raw records consumed for the cluster.
    pub records_in: u64,
    /// Observation records produced for the cluster.
    pub observations_out: u64,
}

impl Metrics {
    /// Reads a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Per-cluster counts so far.
    pub fn clusters(&self) -> BTreeMap<String, ClusterCounts> {
        self.per_cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn cluster(&self, cluster: &str, records_in: u64, observations_out: u64) {
        let mut m = self.per_cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Cluster names may come from record headers: bound the label's cardinality.
        let cluster = if m.len() >= MAX_CLUSTERS && !m.contains_key(cluster) { "other" } else { cluster };
        let c = m.entry(cluster.to_string()).or_default();
        c.records_in += records_in;
        c.observations_out += observations_out;
    }
}
