//! `deploy/observability/`: the Grafana dashboard and the Prometheus alerting rules use only
//! metrics the components register. The registered names are read from the source text of the
//! three `instruments()` tables, so renaming or removing a metric there breaks this test until
//! the dashboard and the rules follow. Needs no broker: plain file checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The `telemetry.rs` files whose string literals name every exported metric.
const TELEMETRY: &[&str] =
    &["agent/src/telemetry.rs", "aggregator/src/telemetry.rs", "correlator/src/stream/telemetry.rs"];
const DASHBOARD: &str = "deploy/observability/tokentrail-dashboard.json";
const RULES: &str = "deploy/observability/tokentrail-alerts.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every `tokentrail_...` metric name in `text` (a name is `[a-z0-9_]` after the prefix).
fn metric_names(text: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tokentrail_") {
        let preceded_by_name = rest[..at].chars().next_back().is_some_and(is_name);
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        if !preceded_by_name {
            names.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    names
}

/// Names registered by the components: the `"tokentrail_..."` string literals of their tables.
fn registered() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in TELEMETRY {
        let source = read(file);
        let literals: Vec<String> =
            source.split('"').skip(1).step_by(2).filter(|s| s.starts_with("tokentrail_")).map(str::to_string).collect();
        assert!(!literals.is_empty(), "{file}: no \"tokentrail_...\" metric names found");
        names.extend(literals);
    }
    names
}

/// Every metric name used in `expr` must be registered, and an expression must use one.
fn check_expr(registered: &BTreeSet<String>, expr: &str, context: &str) -> usize {
    let used = metric_names(expr);
    assert!(!used.is_empty(), "{context}: no tokentrail metric in `{expr}`");
    for name in &used {
        assert!(registered.contains(name), "{context}: `{name}` is not registered by any component (in `{expr}`)");
    }
    used.len()
}

/// Every `expr` string anywhere in the dashboard (panel targets, nested rows included).
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn names_are_extracted_from_the_telemetry_tables() {
    let names = registered();
    // A few known names from each component, including the per-cluster counters outside the
    // tables and the gauges: guards the extraction itself.
    for name in [
        "tokentrail_agent_send_failures_total",
        "tokentrail_agent_queue_depth",
        "tokentrail_aggregator_streams_open",
        "tokentrail_aggregator_cluster_records_in_total",
        "tokentrail_correlator_transactions_total",
    ] {
        assert!(names.contains(name), "{name} not extracted from {TELEMETRY:?}");
    }
    assert_eq!(
        metric_names("rate(tokentrail_a_total[5m]) / x_tokentrail_b + tokentrail_c"),
        ["tokentrail_a_total", "tokentrail_c"]
    );
}

#[test]
fn dashboard_uses_only_registered_metrics() {
    let registered = registered();
    let text = read(DASHBOARD);
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "schemaVersion");
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");

    let mut ids = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id in {title}");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {title}: datasource");
            assert!(panel["targets"].as_array().is_some_and(|t| !t.is_empty()), "panel {title}: no targets");
        }
    }

    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 10, "dashboard expressions: {}", all.len());
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    for expr in &all {
        check_expr(&registered, expr, DASHBOARD);
    }
    // Every exported metric is on the dashboard: a new one needs a panel (or a decision here).
    let missing: Vec<&String> = registered.difference(&used).collect();
    assert!(missing.is_empty(), "metrics on no dashboard panel: {missing:?}");
}

#[test]
fn alert_rules_use_only_registered_metrics() {
    let registered = registered();
    let text = read(RULES);
    assert!(text.lines().any(|l| l.trim_end() == "groups:"), "{RULES}: no top-level `groups:`");
    let mut alerts = BTreeSet::new();
    let mut exprs = 0;
    let rule_fields = |field: &str| text.lines().filter(|l| l.trim_start().starts_with(field)).count();
    let (fors, severities, summaries) = (rule_fields("for: "), rule_fields("severity: "), rule_fields("summary: "));
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        let context = format!("{RULES}:{}", n + 1);
        if let Some(name) = line.strip_prefix("- alert: ") {
            assert!(alerts.insert(name.trim().to_string()), "{context}: duplicate alert {name}");
        } else if let Some(expr) = line.strip_prefix("expr: ") {
            assert!(!expr.trim().is_empty() && !expr.trim().starts_with(['|', '>']), "{context}: expr on one line");
            check_expr(&registered, expr, &context);
            exprs += 1;
        } else if !line.starts_with('#') {
            // Metric names appear in expressions only (descriptions refer to them in words).
            assert!(metric_names(line).is_empty(), "{context}: metric name outside an expr: {line}");
        }
    }
    assert!(alerts.len() >= 8, "alerts: {alerts:?}");
    for (what, count) in [("expr", exprs), ("for", fors), ("severity", severities), ("summary", summaries)] {
        assert_eq!(count, alerts.len(), "{RULES}: every alert has one `{what}`");
    }
}
