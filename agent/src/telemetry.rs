//! The agent's counters and gauges.
//!
//! A [`Metrics`] is created by the caller and passed into [`crate::run`], so tests read the same
//! numbers an exporter would. Names follow `tokentrail_agent_*`; [`register`] makes them
//! OpenTelemetry instruments on the meter start-up hands in (exported over OTLP with
//! `--otlp-endpoint`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::Meter;

/// Whether an instrument only grows (`_total`) or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Exported name, kind, description and field of every counter and gauge.
type Field = fn(&Metrics) -> &AtomicU64;
#[rustfmt::skip]
const EXPORTED: &[(&str, Kind, &str, Field)] = &[
    ("tokentrail_agent_pods_seen", Kind::Gauge, "Pod directories seen in the last full scan.", |m| &m.pods_seen),
    ("tokentrail_agent_credentials_attested", Kind::Gauge, "Credentials currently attested.", |m| &m.credentials_attested),
    ("tokentrail_agent_rotations_total", Kind::Counter, "Credentials replaced by a new JTI.", |m| &m.rotations_total),
    ("tokentrail_agent_files_refused_total", Kind::Counter, "Token files or directories refused.", |m| &m.files_refused_total),
    ("tokentrail_agent_scans_total", Kind::Counter, "Scans run (full and per pod).", |m| &m.scans_total),
    ("tokentrail_agent_messages_sent_total", Kind::Counter, "Messages written to a stream, resends included.", |m| &m.messages_sent_total),
    ("tokentrail_agent_messages_acked_total", Kind::Counter, "Messages released by acks.", |m| &m.messages_acked_total),
    ("tokentrail_agent_messages_dropped_total", Kind::Counter, "Messages dropped: the queue was full.", |m| &m.messages_dropped_total),
    ("tokentrail_agent_send_failures_total", Kind::Counter, "Connection attempts or streams that failed.", |m| &m.send_failures_total),
    ("tokentrail_agent_heartbeats_total", Kind::Counter, "Heartbeats queued (nothing changed for a while).", |m| &m.heartbeats_total),
    ("tokentrail_agent_connections_total", Kind::Counter, "Streams established.", |m| &m.connections_total),
    ("tokentrail_agent_queue_depth", Kind::Gauge, "Unacknowledged messages.", |m| &m.queue_depth),
    ("tokentrail_agent_token_reads_reported_total", Kind::Counter, "Foreign opens of token files attested.", |m| &m.token_reads_reported_total),
    ("tokentrail_agent_token_reads_allowed_total", Kind::Counter, "Opens of token files by allowed readers.", |m| &m.token_reads_allowed_total),
    ("tokentrail_agent_token_reads_suppressed_total", Kind::Counter, "Foreign opens not attested again within the report interval.", |m| &m.token_reads_suppressed_total),
    ("tokentrail_agent_token_reads_unattributed_total", Kind::Counter, "Opens of token files whose opener could not be read from /proc.", |m| &m.token_reads_unattributed_total),
    ("tokentrail_agent_token_read_overflows_total", Kind::Counter, "Times the kernel's fanotify queue overflowed (opens lost).", |m| &m.token_read_overflows_total),
    ("tokentrail_agent_token_marks_failed_total", Kind::Counter, "Token files the watch could not mark.", |m| &m.token_marks_failed_total),
];

/// Registers the agent's metrics on `meter` as observable instruments reading `metrics` when
/// the exporter collects (the meter keeps them for its provider's lifetime).
pub fn register(metrics: &Arc<Metrics>, meter: &Meter) {
    for &(name, kind, description, field) in EXPORTED {
        let m = Arc::clone(metrics);
        let read = move || Metrics::get(field(&m));
        match kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(move |o| o.observe(read(), &[]))
                    .build();
            }
            Kind::Gauge => {
                meter
                    .u64_observable_gauge(name)
                    .with_description(description)
                    .with_callback(move |o| o.observe(read(), &[]))
                    .build();
            }
        }
    }
}

/// Counters (`_total`) and gauges of one agent.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Gauge: pod directories seen in the last full scan.
    pub pods_seen: AtomicU64,
    /// Gauge: credentials currently attested.
    pub credentials_attested: AtomicU64,
    /// Credentials replaced by a new JTI at the same location.
    pub rotations_total: AtomicU64,
    /// Heartbeats queued: the node's clock, when nothing changed for `heartbeat_interval`.
    pub heartbeats_total: AtomicU64,
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
    /// Foreign opens of token files attested (`--watch-token-reads`).
    pub token_reads_reported_total: AtomicU64,
    /// Opens of token files by allowed readers (the pod, the kubelet, the runtime, the agent,
    /// the allow-list).
    pub token_reads_allowed_total: AtomicU64,
    /// Foreign opens not attested again within the report interval.
    pub token_reads_suppressed_total: AtomicU64,
    /// Opens whose opener was gone from /proc, or whose file could not be named.
    pub token_reads_unattributed_total: AtomicU64,
    /// Times the kernel's fanotify queue overflowed.
    pub token_read_overflows_total: AtomicU64,
    /// Token files the watch could not mark.
    pub token_marks_failed_total: AtomicU64,
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
