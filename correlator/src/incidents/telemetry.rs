//! `tokentrail incidents`' [`Metrics`] as OpenTelemetry instruments on the meter start-up
//! hands in (and so on `/metrics`).

use std::sync::Arc;

use opentelemetry::metrics::Meter;

use super::Metrics;
use crate::stream::telemetry::{observe, Exported};

type Field = Exported<Metrics>;

#[rustfmt::skip]
const COUNTERS: &[Field] = &[
    ("tokentrail_incidents_findings_total", "Finding records folded in (after the replay).", |m| &m.findings),
    ("tokentrail_incidents_replayed_total", "Finding records read back at start-up to rebuild the incidents.", |m| &m.replayed),
    ("tokentrail_incidents_undecodable_total", "Finding records that are not tokentrail.finding/v1 JSON (skipped).", |m| &m.undecodable),
    ("tokentrail_incidents_records_total", "Incident records produced: new and changed incidents, and ids that no longer stand.", |m| &m.records),
    ("tokentrail_incidents_closed_total", "Incident ids that no longer stand (merged, split or withdrawn), sent once more.", |m| &m.closed),
    ("tokentrail_incidents_transactions_total", "Transactions committed.", |m| &m.transactions),
    ("tokentrail_incidents_transaction_aborts_total", "Transactions aborted (the process then stops and its restart redoes the work).", |m| &m.transaction_aborts),
    ("tokentrail_incidents_forgotten_aged_total", "Findings forgotten with their incident, past the horizon.", |m| &m.forgotten_aged),
    ("tokentrail_incidents_forgotten_capped_total", "Findings forgotten with their incident at the cap (max_findings).", |m| &m.forgotten_capped),
];

#[rustfmt::skip]
const GAUGES: &[Field] = &[
    ("tokentrail_incidents_findings_held", "Findings the feed holds.", |m| &m.held),
    ("tokentrail_incidents_standing", "Incidents sent that still stand.", |m| &m.standing),
];

/// Registers the metrics on `meter` as observable instruments reading `metrics`.
pub fn register(metrics: &Arc<Metrics>, meter: &Meter) {
    observe(meter, metrics, false, COUNTERS);
    observe(meter, metrics, true, GAUGES);
}
