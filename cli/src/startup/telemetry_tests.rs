//! Metrics export end to end:
//! * OTLP: the correlator's `Metrics`, registered by the same code
//!   `tokentrail correlator --otlp-endpoint` runs, reach a fake collector (the OTLP
//!   `MetricsService` over tonic on 127.0.0.1:0, shared with the integration tests)
//!   periodically and once more on shutdown;
//! * Prometheus: the same instruments rendered as text exposition, names unchanged, counters
//!   and gauges typed, attributes as escaped labels, beside OTLP on one provider.

#![allow(clippy::unwrap_used)]

#[path = "../../../integration-tests/tests/otlp_support/mod.rs"]
mod otlp_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otlp_support::Collector;
use tokentrail_correlator::stream::Metrics;

use crate::startup::telemetry::{self, Exports};

#[test]
fn correlator_counters_reach_an_otlp_collector_periodically_and_on_shutdown() {
    let collector = Collector::start();
    let started = Instant::now();

    let metrics = Arc::new(Metrics::default());
    metrics.observations.store(42, Ordering::Relaxed);
    metrics.findings.store(3, Ordering::Relaxed);
    metrics.findings_by_rule.lock().unwrap().extend([("token-used-off-cluster", 2), ("legacy-token-use", 1)]);
    metrics.watermark_lag_seconds.store(12, Ordering::Relaxed);
    let exports = Exports {
        otlp: Some(collector.endpoint()),
        otlp_interval: Some(Duration::from_millis(200)),
        prometheus: false,
    };
    let exporter = telemetry::start(exports, "tokentrail-correlator", |meter| {
        tokentrail_correlator::stream::telemetry::register(&metrics, meter)
    })
    .unwrap()
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
            "tokentrail_correlator_changelog_bytes_total",
            "tokentrail_correlator_changelog_records_total",
            "tokentrail_correlator_findings_by_rule_total",
            "tokentrail_correlator_findings_total",
            "tokentrail_correlator_judgements_total",
            "tokentrail_correlator_judging_milliseconds_total",
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
fn nothing_starts_without_an_endpoint_or_a_metrics_listener() {
    // With no flag, export follows only $OTEL_EXPORTER_OTLP_ENDPOINT, which tests do not set.
    if std::env::var_os(telemetry::ENDPOINT_ENV).is_none() {
        assert_eq!(telemetry::endpoint(None), None);
    }
    // A blank flag (an empty value in a manifest) means off, not the variable.
    assert_eq!(telemetry::endpoint(Some(" ")), None);
    let started = telemetry::start(Exports::default(), "tokentrail-correlator", |_| panic!("instruments registered"));
    assert!(started.unwrap().is_none());
}

#[test]
fn the_instance_is_the_pod_else_the_host() {
    assert_eq!(telemetry::instance_id(Some("correlator-1".into())), "correlator-1");
    let host = telemetry::instance_id(None);
    assert!(!host.is_empty() && host != "correlator-1");
    assert_eq!(telemetry::instance_id(Some(" ".into())), host, "a blank $POD_NAME is not a name");
}

/// The exposition's lines that are not comments, by metric name.
fn samples(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .map(str::to_string)
        .collect()
}

#[test]
fn prometheus_exposition_keeps_the_names_types_help_and_labels_of_the_instruments() {
    let metrics = Arc::new(Metrics::default());
    metrics.observations.store(42, Ordering::Relaxed);
    metrics.watermark_lag_seconds.store(12, Ordering::Relaxed);
    // A rule name with what the text format must escape: a quote, a backslash, a newline.
    metrics.findings_by_rule.lock().unwrap().extend([("token-used-off-cluster", 2), ("odd\"rule\\\n", 1)]);
    let exports = Exports { prometheus: true, ..Exports::default() };
    let started = telemetry::start(exports, "tokentrail-correlator", |meter| {
        tokentrail_correlator::stream::telemetry::register(&metrics, meter)
    })
    .unwrap()
    .unwrap();
    let scrape = started.scrape().expect("a /metrics renderer");
    let text = scrape();

    // Names as registered: no second `_total`, no unit suffix, no scope labels.
    assert!(text.contains("# TYPE tokentrail_correlator_observations_total counter\n"), "{text}");
    assert!(text.contains("# HELP tokentrail_correlator_observations_total Input records folded into an engine.\n"));
    assert_eq!(
        samples(&text, "tokentrail_correlator_observations_total"),
        ["tokentrail_correlator_observations_total 42"]
    );
    assert!(text.contains("# TYPE tokentrail_correlator_watermark_lag_seconds gauge\n"), "{text}");
    assert_eq!(
        samples(&text, "tokentrail_correlator_watermark_lag_seconds"),
        ["tokentrail_correlator_watermark_lag_seconds 12"]
    );
    assert!(!text.contains("_total_total") && !text.contains("otel_scope"), "{text}");
    let mut by_rule = samples(&text, "tokentrail_correlator_findings_by_rule_total");
    by_rule.sort();
    assert_eq!(
        by_rule,
        [
            r#"tokentrail_correlator_findings_by_rule_total{rule="odd\"rule\\\n"} 1"#,
            r#"tokentrail_correlator_findings_by_rule_total{rule="token-used-off-cluster"} 2"#,
        ]
    );
    // The resource, once, on `target_info`.
    let target = samples(&text, "target_info");
    assert_eq!(target.len(), 1, "{text}");
    assert!(
        target[0].contains(r#"service_name="tokentrail-correlator""#) && target[0].contains("service_instance_id=")
    );

    // Collected on each scrape: a change shows at once.
    metrics.observations.store(43, Ordering::Relaxed);
    assert_eq!(
        samples(&scrape(), "tokentrail_correlator_observations_total"),
        ["tokentrail_correlator_observations_total 43"]
    );
}

#[test]
fn otlp_and_prometheus_export_the_same_instruments_side_by_side() {
    let collector = Collector::start();
    let started = Instant::now();
    let metrics = Arc::new(Metrics::default());
    metrics.findings.store(5, Ordering::Relaxed);
    let exports =
        Exports { otlp: Some(collector.endpoint()), otlp_interval: Some(Duration::from_millis(200)), prometheus: true };
    let both = telemetry::start(exports, "tokentrail-correlator", |meter| {
        tokentrail_correlator::stream::telemetry::register(&metrics, meter)
    })
    .unwrap()
    .unwrap();
    collector.wait_for("findings = 5", started, Duration::from_secs(20), |e| {
        e.value("tokentrail_correlator_findings_total") == Some(5)
    });
    let text = both.scrape().expect("a /metrics renderer")();
    assert_eq!(samples(&text, "tokentrail_correlator_findings_total"), ["tokentrail_correlator_findings_total 5"]);
    both.shutdown().unwrap();
}
