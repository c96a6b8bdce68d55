//! Order-independent answers with the real processes (issue 19): the generated incident
//! (bench/generate_incident.py) through `tokentrail standalone` (HTTPS webhook) and through the
//! Kafka pipeline (the aggregator into an observations topic of 1 or 24 partitions, the real
//! `tokentrail correlator` process), with the kubectl dumps before and after the log, must leave
//! a SIEM holding exactly the findings `tokentrail analyze` reports on the same files, compared
//! on (rule, service account, credential, client address). A SIEM holds each finding id's last
//! record, less the withdrawn ones (`"status": "withdrawn"`).
//!
//! The engine-level matrix (every order, shuffles within the allowed lateness, paced and
//! backlog, 1 and 24 partitions) is `correlator/tests/order_matrix.rs`; this file checks that the
//! processes keep its promise. Each cell prints its figure.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;
mod webhook_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aggregator_support::{create_topics, produce_raw, read_until, start, Out};
use correlator_support::{binary, correlator, outputs, stop};
use serde_json::Value;
use tokentrail_aggregator::config::{AuditTopic, Config, KafkaConfig};
use tokentrail_correlator::forensic::{analyze, AnalyzeOptions, Quiet};
use tokentrail_correlator_core::EngineConfig;
use tokentrail_integration_tests::{kafka, unique_name};
use webhook_support::{post, tls};

const CLUSTER: &str = "gen";
const WAIT: Duration = Duration::from_secs(120);
const DUMPS: [&str; 3] = ["sa_secrets.json", "pods.json", "nodes.json"];

/// What a finding is compared on: rule, service account, credential, client address.
type Key = (String, String, String, String);

fn key(v: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let sa = &v["serviceaccount"];
    let sa = if sa.is_null() { String::new() } else { format!("{}/{}", s(&sa["namespace"]), s(&sa["name"])) };
    let c = &v["credential"];
    let credential = if c["id"].is_string() { s(&c["id"]) } else { s(&c["secret"]) };
    (s(&v["rule"]), sa, credential, s(&v["source_ip"]))
}

/// The generated incident, written once per test binary.
fn incident() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique_name("tokentrail-incident"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/generate_incident.py");
        let status = Command::new("python3").arg(script).arg("--out").arg(&dir).status().unwrap();
        assert!(status.success(), "bench/generate_incident.py failed");
        dir
    })
}

fn analyzed(dir: &Path) -> BTreeSet<Key> {
    let engine = EngineConfig { cluster: Some(CLUSTER.into()), ..EngineConfig::default() };
    let options = AnalyzeOptions { engine, decoders: 2, ..AnalyzeOptions::default() };
    let files: Vec<PathBuf> = std::iter::once("audit.log").chain(DUMPS).map(|f| dir.join(f)).collect();
    let report = analyze(&files, &options, &Quiet, &mut |_| {}).report;
    report.findings.iter().map(|f| key(&serde_json::to_value(f).unwrap())).collect()
}

/// What a SIEM holds from JSON finding records in order: each id's last record, unless withdrawn.
fn held<'a>(records: impl IntoIterator<Item = (String, &'a [u8])>) -> BTreeSet<Key> {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for (id, value) in records {
        by_id.insert(id, serde_json::from_slice(value).unwrap());
    }
    by_id.values().filter(|v| v["status"] != "withdrawn").map(key).collect()
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log")).unwrap().lines().map(str::to_string).collect()
}

fn dumps(dir: &Path) -> Vec<Vec<u8>> {
    DUMPS.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect()
}

/// Compares a cell with analyze, printing its figure; returns the cell's name if it differs.
fn compare(cell: &str, expected: &BTreeSet<Key>, got: &BTreeSet<Key>) -> Option<String> {
    let missing: Vec<_> = expected.difference(got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    println!("  {cell}: {}/{} missing {missing:?} extra {extra:?}", expected.len() - missing.len(), expected.len());
    (!missing.is_empty() || !extra.is_empty()).then(|| cell.to_string())
}

// ---- standalone -------------------------------------------------------------------------

fn event_list(lines: &[String]) -> Vec<u8> {
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#, lines.join(",")).into_bytes()
}

/// The generated incident through `tokentrail standalone`: the log in EventLists of `batch`
/// events (each followed by a pause longer than the emit interval when paced), the dumps before
/// or after it; what its findings file holds after SIGTERM.
async fn through_standalone(dir: &Path, dumps_after: bool, batch: usize, pause: Duration) -> BTreeSet<Key> {
    let out = tempfile::tempdir().unwrap();
    let findings = out.path().join("findings.jsonl");
    let path = |n: &str| tls(n).to_str().unwrap().to_string();
    // TOKENTRAIL_ORDER_STANDALONE: another build of tokentrail to measure (a before/after figure).
    let program = std::env::var_os("TOKENTRAIL_ORDER_STANDALONE").map_or_else(|| binary().clone(), PathBuf::from);
    let mut child = Command::new(program)
        .args(["standalone", "--cluster", CLUSTER, "--webhook-listen", "127.0.0.1:0"])
        .args(["--tls-cert", &path("server.pem"), "--tls-key", &path("server.key")])
        .args(["--webhook-client-ca", &path("ca.pem"), "--webhook-allowed-client", "client"])
        .args(["--findings", findings.to_str().unwrap(), "--emit-interval", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tokentrail standalone");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = loop {
        let line = rx.recv_timeout(WAIT).expect("the start-up log line");
        if line.contains("standalone running") {
            break line;
        }
    };
    let at = line.find("webhook=Some(").expect("the webhook's address") + "webhook=Some(".len();
    let webhook: SocketAddr = line[at..].split(')').next().unwrap().parse().unwrap();
    let mut bodies: Vec<Vec<u8>> = log_lines(dir).chunks(batch).map(event_list).collect();
    if dumps_after {
        bodies.extend(dumps(dir));
    } else {
        bodies.splice(0..0, dumps(dir));
    }
    for body in bodies {
        assert_eq!(post(webhook, &body).await, 200);
        tokio::time::sleep(pause).await;
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "standalone did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&findings).unwrap_or_default();
    let records: Vec<(String, Vec<u8>)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), l.as_bytes().to_vec())
        })
        .collect();
    held(records.iter().map(|(id, v)| (id.clone(), v.as_slice())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_leaves_what_analyze_reports_paced_or_at_once_dumps_before_or_after() {
    let _serial = correlator_support::one_at_a_time().await;
    let dir = incident();
    let expected = analyzed(dir);
    println!("standalone: analyze reports {} findings", expected.len());
    let mut failures = Vec::new();
    for dumps_after in [false, true] {
        for (delivery, batch, pause) in
            [("paced", 100, Duration::from_millis(150)), ("at once", usize::MAX, Duration::ZERO)]
        {
            let got = through_standalone(dir, dumps_after, batch, pause).await;
            let cell = format!("standalone, dumps {}, {delivery}", if dumps_after { "after" } else { "before" });
            failures.extend(compare(&cell, &expected, &got));
        }
    }
    assert!(failures.is_empty(), "cells that differ from analyze: {failures:?}");
}

// ---- the Kafka pipeline -------------------------------------------------------------------

/// The generated incident through the aggregator into an observations topic of `partitions`,
/// the dumps before or after the log, all of it in the topic before the correlator starts (a
/// backlog, a replay, a new consumer group); what the findings topic holds once it caught up.
async fn through_kafka(dir: &Path, dumps_after: bool, partitions: i32) -> BTreeSet<Key> {
    let prefix = format!("order-{partitions}-{}", if dumps_after { "after" } else { "before" });
    let raw = unique_name(&format!("{prefix}-raw"));
    let observations = unique_name(&format!("{prefix}-obs"));
    let dead = unique_name(&format!("{prefix}-dlq"));
    create_topics(&[(&raw, 1), (&observations, partitions), (&dead, 1)]).await;
    let mut values: Vec<Vec<u8>> = log_lines(dir).into_iter().map(String::into_bytes).collect();
    if dumps_after {
        values.extend(dumps(dir));
    } else {
        values.splice(0..0, dumps(dir));
    }
    let want = aggregator_support::expected(&values, CLUSTER).len();
    produce_raw(&raw, &values, None).await;
    let mut k = KafkaConfig::new(kafka().bootstrap());
    k.group_id = unique_name(&format!("{prefix}-agg"));
    k.audit_topics = vec![AuditTopic { topic: raw.clone(), cluster: Some(CLUSTER.into()) }];
    k.observations_topic = observations.clone();
    k.dead_letter_topic = dead;
    k.batch_linger = Duration::from_millis(20);
    let aggregator = start(Config::new(k)).await;
    read_until(&observations, "the aggregator's observations", Duration::from_millis(300), |o| {
        aggregator_support::count_observations(o) >= want
    })
    .await;
    aggregator.stop().await;
    let out = outputs(&prefix, partitions).await;
    let child = correlator(&observations, &out, &unique_name(&prefix), "300ms");
    correlator_support::caught_up(kafka().bootstrap(), &out.group, &observations, "the correlator").await;
    let findings: Vec<Out> = read_until(&out.findings, "the findings", Duration::from_secs(1), |_| true).await;
    stop(child);
    held(findings.iter().map(|o| (o.key.clone(), o.value.as_slice())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_pipeline_leaves_what_analyze_reports_on_1_and_24_partitions_dumps_before_or_after() {
    let _serial = correlator_support::one_at_a_time().await;
    let dir = incident();
    let expected = analyzed(dir);
    println!("kafka: analyze reports {} findings", expected.len());
    let mut failures = Vec::new();
    for dumps_after in [false, true] {
        for partitions in [1, 24] {
            let got = through_kafka(dir, dumps_after, partitions).await;
            let cell = format!(
                "kafka, {partitions} partitions, dumps {}, backlog at once",
                if dumps_after { "after" } else { "before" }
            );
            failures.extend(compare(&cell, &expected, &got));
        }
    }
    assert!(failures.is_empty(), "cells that differ from analyze: {failures:?}");
}
