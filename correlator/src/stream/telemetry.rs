//! The correlator's [`Metrics`] as OpenTelemetry instruments on the meter start-up hands in,
//! exported over OTLP when `--otlp-endpoint` or `$OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use super::Metrics;

/// Exported name, description and field of every counter (all monotonic).
type Field = Exported<Metrics>;

/// An instrument's name, description and the field of `M` it reads.
pub(crate) type Exported<M> = (&'static str, &'static str, fn(&M) -> &AtomicU64);
#[rustfmt::skip]
const EXPORTED: &[Field] = &[
    ("tokentrail_correlator_observations_total", "Input records folded into an engine.", |m| &m.observations),
    ("tokentrail_correlator_undecodable_total", "Input records that could not be decoded.", |m| &m.undecodable),
    ("tokentrail_correlator_findings_total", "Findings produced (new and updates).", |m| &m.findings),
    ("tokentrail_correlator_transactions_total", "Transactions committed.", |m| &m.transactions),
    ("tokentrail_correlator_transaction_aborts_total", "Transactions aborted (the replica then stops and its restart redoes the work).", |m| &m.transaction_aborts),
    ("tokentrail_correlator_restores_total", "Partitions restored from the changelog.", |m| &m.restores),
    ("tokentrail_correlator_changelog_records_total", "Changelog records written: changed state entries and deletions.", |m| &m.changelog_records),
    ("tokentrail_correlator_changelog_bytes_total", "Bytes of state entries written to the changelog.", |m| &m.changelog_bytes),
    ("tokentrail_correlator_judgements_total", "Judgements of the partitions' state for findings due.", |m| &m.judgements),
    ("tokentrail_correlator_judging_milliseconds_total", "Time spent judging (held to judging_share of the wall clock).", |m| &m.judging_milliseconds),
];

/// Counters (`gauges` false) or gauges read from fields of `metrics` when the exporter collects
/// (the meter keeps them for its provider's lifetime): the correlator's, `tokentrail incidents`'.
pub(crate) fn observe<M: Send + Sync + 'static>(meter: &Meter, metrics: &Arc<M>, gauges: bool, fields: &[Exported<M>]) {
    for &(name, description, field) in fields {
        let m = Arc::clone(metrics);
        let read = move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            o.observe(field(&m).load(Ordering::Relaxed), &[])
        };
        if gauges {
            meter.u64_observable_gauge(name).with_description(description).with_callback(read).build();
        } else {
            meter.u64_observable_counter(name).with_description(description).with_callback(read).build();
        }
    }
}

/// Registers the correlator's metrics on `meter` as observable instruments reading `metrics`
/// when the exporter collects (the meter keeps them for its provider's lifetime).
pub fn register(metrics: &Arc<Metrics>, meter: &Meter) {
    observe(meter, metrics, false, EXPORTED);
    let m = Arc::clone(metrics);
    meter
        .u64_observable_counter("tokentrail_correlator_findings_by_rule_total")
        .with_description("Findings produced (new and updates), by rule.")
        .with_callback(move |o| {
            if let Ok(by_rule) = m.findings_by_rule.lock() {
                by_rule.iter().for_each(|(rule, n)| o.observe(*n, &[KeyValue::new("rule", *rule)]));
            }
        })
        .build();
    #[rustfmt::skip]
    let gauges: [Field; 2] = [
        ("tokentrail_correlator_watermark_lag_seconds", "How far the slowest node's agent trails the latest event (attestation-dependent verdicts wait this long plus the grace).", |m| &m.watermark_lag_seconds),
        ("tokentrail_correlator_state_entries", "Entries the engines hold: use groups, attested credentials, pods.", |m| &m.state_entries),
    ];
    observe(meter, metrics, true, &gauges);
}
