//! The correlator's [`Metrics`] as OTLP instruments (`tokentrail_proto::otlp`), exported when
//! `--otlp-endpoint` or `$OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokentrail_proto::otlp::{Instrument, Kind};

use super::Metrics;

/// Exported name, description and field of every counter (all monotonic).
type Field = fn(&Metrics) -> &AtomicU64;
#[rustfmt::skip]
const EXPORTED: &[(&str, &str, Field)] = &[
    ("tokentrail_correlator_observations_total", "Input records folded into an engine.", |m| &m.observations),
    ("tokentrail_correlator_undecodable_total", "Input records that could not be decoded.", |m| &m.undecodable),
    ("tokentrail_correlator_findings_total", "Findings produced (new and updates).", |m| &m.findings),
    ("tokentrail_correlator_transactions_total", "Transactions committed.", |m| &m.transactions),
    ("tokentrail_correlator_transaction_aborts_total", "Transactions aborted (the replica then stops and its restart redoes the work).", |m| &m.transaction_aborts),
    ("tokentrail_correlator_restores_total", "Partitions restored from the changelog.", |m| &m.restores),
];

/// The correlator's counters as OTLP instruments reading `metrics`.
pub fn instruments(metrics: &Arc<Metrics>) -> Vec<Instrument> {
    let mut all: Vec<Instrument> = EXPORTED
        .iter()
        .map(|&(name, description, field)| {
            let m = Arc::clone(metrics);
            Instrument::new(Kind::Counter, name, description, move || field(&m).load(Ordering::Relaxed))
        })
        .collect();
    let m = Arc::clone(metrics);
    all.push(Instrument::with_attributes(
        Kind::Counter,
        "tokentrail_correlator_findings_by_rule_total",
        "Findings produced (new and updates), by rule.",
        move || match m.findings_by_rule.lock() {
            Ok(by_rule) => by_rule.iter().map(|(rule, n)| (*n, vec![("rule", (*rule).to_string())])).collect(),
            Err(_) => Vec::new(),
        },
    ));
    let m = Arc::clone(metrics);
    all.push(Instrument::new(
        Kind::Gauge,
        "tokentrail_correlator_watermark_lag_seconds",
        "How far the slowest node's agent trails the latest event (attestation-dependent verdicts wait this long plus the grace).",
        move || m.watermark_lag_seconds.load(Ordering::Relaxed),
    ));
    let m = Arc::clone(metrics);
    all.push(Instrument::new(
        Kind::Gauge,
        "tokentrail_correlator_state_entries",
        "Entries the engines hold: use groups, attested credentials, pods.",
        move || m.state_entries.load(Ordering::Relaxed),
    ));
    all
}
