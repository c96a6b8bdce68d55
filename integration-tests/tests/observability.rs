//! `deploy/observability/`: the Grafana dashboard and the Prometheus alerting rules use only
//! metrics the components register. The registered names are read from the source text of the
//! `telemetry.rs` tables of the components, so renaming or removing a metric there breaks this test until
//! the dashboard and the rules follow. Every dashboard expression is filtered by the `$cluster`
//! and `$namespace` variables, and every alert links a runbook section of docs/runbooks.md.
//!
//! The rules are also checked by promtool (`promtool check rules`) and unit-tested with it
//! (`promtool test rules` on `tokentrail-alerts.test.yaml`). promtool comes from
//! `.ci/promtool-setup.sh` (called by `.ci/setup.sh`) into `~/.cache/tokentrail/promtool`, or
//! `$TOKENTRAIL_PROMTOOL`; those tests fail, saying so, when it is missing. Needs no broker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `telemetry.rs` files whose string literals name every exported metric.
const TELEMETRY: &[&str] = &[
    "agent/src/telemetry.rs",
    "aggregator/src/telemetry.rs",
    "correlator/src/stream/telemetry.rs",
    "correlator/src/incidents/telemetry.rs",
];
const DASHBOARD: &str = "deploy/observability/tokentrail-dashboard.json";
const RULES: &str = "deploy/observability/tokentrail-alerts.yaml";
const RULE_TESTS: &str = "deploy/observability/tokentrail-alerts.test.yaml";
const RUNBOOKS: &str = "docs/runbooks.md";
/// What every dashboard expression selects on each metric: the dashboard's template variables.
const DASHBOARD_FILTER: &str = r#"{cluster=~"$cluster", namespace=~"$namespace"}"#;

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
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}: datasource");
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

/// Every `expr:` of the rule file, in order (one line each, see the file's header).
fn rule_exprs(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.trim_start().strip_prefix("expr: ")).map(str::to_string).collect()
}

#[test]
fn dashboard_filters_every_expression_by_cluster_and_namespace() {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("{DASHBOARD}: no `{name}` variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    // The import input still picks the default data source.
    assert_eq!(variable("datasource")["current"]["value"], "${DS_PROMETHEUS}");
    for name in ["cluster", "namespace"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}: data source");
        // `.*` also matches series without the label (a single cluster's own Prometheus).
        assert!(v["includeAll"] == true && v["allValue"] == ".*", "{name}: All must match a missing label");
        let query = v["query"]["query"].as_str().unwrap_or_default();
        assert!(query.starts_with("label_values(") && query.ends_with(&format!(", {name})")), "{name}: {query}");
        check_expr(&registered(), query, &format!("{DASHBOARD}: variable {name}"));
    }
    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(!all.is_empty());
    for expr in &all {
        // Every metric in the expression, not just one, carries the filter.
        for name in metric_names(expr) {
            assert!(
                expr.contains(&format!("{name}{DASHBOARD_FILTER}")),
                "{DASHBOARD}: `{name}` is not filtered by $cluster and $namespace in `{expr}`"
            );
        }
    }
}

#[test]
fn alerts_aggregate_by_cluster_and_namespace() {
    let text = read(RULES);
    for expr in rule_exprs(&text) {
        // One alert per installation, and no label that differs between OTLP and a scrape.
        assert!(expr.contains("(cluster, namespace)"), "{RULES}: `{expr}` is not aggregated by (cluster, namespace)");
        for label in ["job", "instance", "pod"] {
            assert!(!expr.contains(label), "{RULES}: `{expr}` uses `{label}`, which depends on how metrics arrive");
        }
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_its_runbook_section() {
    let rules = read(RULES);
    let runbooks = read(RUNBOOKS);
    let anchors: BTreeSet<String> = runbooks.lines().filter_map(|l| l.strip_prefix("## ")).map(anchor).collect();
    // The link form a Git forge renders: the workspace's `repository`, branch main.
    let manifest = read("Cargo.toml");
    let repository = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .map(|v| v.trim().trim_matches('"'))
        .expect("Cargo.toml: repository");
    let base = format!("{repository}/blob/main/{RUNBOOKS}#");

    let mut alert: Option<String> = None;
    let mut linked = BTreeSet::new();
    for (n, line) in rules.lines().enumerate() {
        let line = line.trim_start();
        if let Some(name) = line.strip_prefix("- alert: ") {
            alert = Some(name.trim().to_string());
        } else if let Some(url) = line.strip_prefix("runbook_url: ") {
            let name = alert.as_deref().unwrap_or_else(|| panic!("{RULES}:{}: runbook_url before any alert", n + 1));
            let fragment = url.trim().strip_prefix(&base).unwrap_or_else(|| {
                panic!("{RULES}:{}: {name}'s runbook_url `{url}` does not start with `{base}`", n + 1)
            });
            assert_eq!(fragment, name.to_lowercase(), "{RULES}:{}: {name}'s anchor", n + 1);
            assert!(anchors.contains(fragment), "{RULES}:{}: {name}: no `## {name}` section in {RUNBOOKS}", n + 1);
            assert!(linked.insert(name.to_string()), "{RULES}:{}: {name} has two runbook_urls", n + 1);
        }
    }
    let alerts: BTreeSet<String> =
        rules.lines().filter_map(|l| l.trim_start().strip_prefix("- alert: ")).map(|n| n.trim().to_string()).collect();
    let unlinked: Vec<&String> = alerts.difference(&linked).collect();
    assert!(unlinked.is_empty(), "{RULES}: alerts without a runbook_url: {unlinked:?}");
    for field in ["summary: ", "description: "] {
        let count = rules.lines().filter(|l| l.trim_start().starts_with(field)).count();
        assert_eq!(count, alerts.len(), "{RULES}: every alert has one `{field}`");
    }
    // Every runbook belongs to an alert (a renamed alert leaves no stale section behind).
    let sections: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| h.starts_with("Tokentrail"))
        .map(|h| h.trim().to_string())
        .collect();
    assert_eq!(sections, alerts, "{RUNBOOKS} sections vs {RULES} alerts");
    assert_eq!(anchor("TokentrailDeadLetters"), "tokentraildeadletters");
    assert_eq!(anchor("Before you start"), "before-you-start");
}

/// promtool from `.ci/promtool-setup.sh` (or `$TOKENTRAIL_PROMTOOL`); a clear failure without it.
fn promtool() -> PathBuf {
    let path = std::env::var_os("TOKENTRAIL_PROMTOOL").map(PathBuf::from).unwrap_or_else(|| {
        let dir = std::env::var_os("TOKENTRAIL_PROMTOOL_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("$HOME")).join(".cache/tokentrail/promtool")
        });
        dir.join("promtool")
    });
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/setup.sh` (or just `bash .ci/promtool-setup.sh`, which extracts \
         promtool from Debian's prometheus package; set $TOKENTRAIL_PROMTOOL to use another promtool)",
        path.display()
    );
    path
}

/// Runs promtool in `dir` with `args`; its output when it fails.
fn run_promtool(dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let text = run_promtool(&root(), &["check", "rules", RULES])
        .unwrap_or_else(|out| panic!("promtool check rules {RULES} failed:\n{out}"));
    let alerts = read(RULES).lines().filter(|l| l.trim_start().starts_with("- alert: ")).count();
    assert!(text.contains(&format!("SUCCESS: {alerts} rules found")), "promtool check rules: {text}");
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let tests = read(RULE_TESTS);
    // At least three alerts are expected to fire with their labels and annotations (each chunk
    // after `alertname: ` is one evaluation), and some evaluations expect silence.
    let firing: BTreeSet<&str> = tests
        .split("alertname: ")
        .skip(1)
        .filter(|t| t.contains("exp_labels:"))
        .filter_map(|t| t.lines().next())
        .collect();
    assert!(firing.len() >= 3, "{RULE_TESTS}: alerts expected to fire: {firing:?}");
    assert!(tests.contains("exp_alerts: []"), "{RULE_TESTS}: no evaluation expects silence");
    assert!(tests.contains("runbook_url: "), "{RULE_TESTS}: annotations not checked");
    let dir = root().join("deploy/observability");
    run_promtool(&dir, &["test", "rules", "tokentrail-alerts.test.yaml"])
        .unwrap_or_else(|out| panic!("promtool test rules {RULE_TESTS} failed:\n{out}"));
}

#[test]
fn promtool_unit_tests_catch_a_broken_alert() {
    // Guards the test above: the same unit tests against a copy of the rules whose
    // correlator-commit alert compares with the wrong threshold must fail.
    let rules = read(RULES);
    let broken = rules.replacen("[10m])) == 0 and on", "[10m])) > 0 and on", 1);
    assert_ne!(broken, rules, "{RULES}: the mutated expression is not there any more");
    let dir = std::env::temp_dir().join(format!("tokentrail-alerts-mutant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("tokentrail-alerts.yaml"), broken).expect("write rules");
    std::fs::write(dir.join("tokentrail-alerts.test.yaml"), read(RULE_TESTS)).expect("write tests");
    let result = run_promtool(&dir, &["test", "rules", "tokentrail-alerts.test.yaml"]);
    std::fs::remove_dir_all(&dir).ok();
    let out = result.expect_err("promtool test rules passed against a broken TokentrailCorrelatorNotCommitting");
    assert!(out.contains("TokentrailCorrelatorNotCommitting"), "{out}");
}
