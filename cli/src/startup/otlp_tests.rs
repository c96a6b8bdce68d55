//! OTLP metrics export end to end: the correlator's `Metrics`, registered by the same code
//! `tokentrail correlator --otlp-endpoint` runs, reach a fake collector (the OTLP
//! `MetricsService` over tonic on 127.0.0.1:0, shared with the integration tests) periodically
//! and once more on shutdown.

#![allow(clippy::unwrap_used)]

#[path = "../../../integration-tests/tests/otlp_support/mod.rs"]
mod otlp_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlp_support::Collector;
use tokentrail_correlator::stream::{telemetry, Metrics};

use crate::startup::otlp;

#[test]
fn correlator_counters_reach_an_otlp_collector_periodically_and_on_shutdown() {
    let collector = Collector::start();
    let started = Instant::now();

    let metrics = Arc::new(Metrics::default());
    metrics.observations.store(42, Ordering::Relaxed);
    metrics.findings.store(3, Ordering::Relaxed);
    metrics.findings_by_rule.lock().unwrap().extend([("token-used-off-cluster", 2), ("legacy-token-use", 1)]);
    metrics.watermark_lag_seconds.store(12, Ordering::Relaxed);
    let exporter =
        otlp::start(&collector.endpoint(), "tokentrail-correlator", Some(Duration::from_millis(200)), |meter| {
            telemetry::register(&metrics, meter)
        })
        .unwrap();

    // Periodic export: every instrument, counters monotonic, current values, the service named.
    let first = collector.wait_for("observations = 42", started, Duration::from_secs(20), |e| {
        e.value("tokentrail_correlator_observations_total") == Some(42)
    });
    assert_eq!(first.service(), Some("tokentrail-correlator"));
    let names: Vec<&str> = first.metrics.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "tokentrail_correlator_findings_by_rule_total",
            "tokentrail_correlator_findings_total",
            "tokentrail_correlator_observations_total",
            "tokentrail_correlator_restores_total",
            "tokentrail_correlator_state_entries",
            "tokentrail_correlator_transaction_aborts_total",
            "tokentrail_correlator_transactions_total",
            "tokentrail_correlator_undecodable_total",
            "tokentrail_correlator_watermark_lag_seconds",
        ]
    );
    let value = |name: &str| (first.metrics[name].total(), first.metrics[name].monotonic);
    assert_eq!(value("tokentrail_correlator_findings_total"), (3, true));
    // By rule: one point per rule.
    assert_eq!(value("tokentrail_correlator_findings_by_rule_total"), (3, true));
    let by_rule = &first.metrics["tokentrail_correlator_findings_by_rule_total"];
    assert_eq!(by_rule.point(&["rule=token-used-off-cluster"]), Some(2));
    assert_eq!(value("tokentrail_correlator_watermark_lag_seconds"), (12, false));
    assert_eq!(value("tokentrail_correlator_restores_total"), (0, true));

    // Values change between exports; shutdown exports the last ones before returning.
    metrics.observations.store(50, Ordering::Relaxed);
    metrics.transactions.store(7, Ordering::Relaxed);
    exporter.shutdown().unwrap();
    let last = collector.exports().pop().expect("an export on shutdown");
    assert_eq!(last.value("tokentrail_correlator_observations_total"), Some(50));
    assert_eq!(last.value("tokentrail_correlator_transactions_total"), Some(7));
}

#[test]
fn nothing_starts_without_an_endpoint() {
    // With no flag, export follows only $OTEL_EXPORTER_OTLP_ENDPOINT, which tests do not set.
    if std::env::var_os(otlp::ENDPOINT_ENV).is_none() {
        let started =
            otlp::start_if_configured(None, "tokentrail-correlator", |_| panic!("instruments registered")).unwrap();
        assert!(started.is_none());
    }
    // A blank flag (an empty value in a manifest) means off, not the variable.
    let blank =
        otlp::start_if_configured(Some(" "), "tokentrail-correlator", |_| panic!("instruments registered")).unwrap();
    assert!(blank.is_none());
}
