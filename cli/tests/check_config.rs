//! `tokentrail agent|aggregator|correlator|incidents|standalone --check-config FILE` as an operator runs it: every
//! problem of the file at once, each with its key path, exit 2; exit 0 for a valid file; nothing
//! started either way (no broker, aggregator or kubelet directory exists for these runs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::process::{Command, Output};

fn check(component: &str, json: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{component}.json"));
    std::fs::write(&file, json).unwrap();
    Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args([component, "--check-config"])
        .arg(&file)
        // The correlator reads these from the environment: a check must not depend on them.
        .env_remove("TOKENTRAIL_KAFKA_BOOTSTRAP")
        .env_remove("POD_NAME")
        .env_remove("NODE_NAME")
        .output()
        .expect("run tokentrail")
}

/// Asserts exit 2 and that stderr has exactly one line per expected key path, in order.
fn assert_problems(out: &Output, paths: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let reported: Vec<&str> = stderr
        .lines()
        .map(|l| l.split(": ").nth(1).unwrap_or_else(|| panic!("not FILE: PATH: MESSAGE: {l}")))
        .collect();
    assert_eq!(reported, paths, "{stderr}");
}

fn assert_valid(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": valid\n"));
}

#[test]
fn agent_files_are_checked_whole() {
    assert_valid(&check("agent", r#"{"aggregator": "https://agg:7443", "tls": {"ca": "/etc/ca.pem"}}"#));
    let out = check(
        "agent",
        r#"{"aggregator": "agg", "queue_capacity": -1, "rescan_intervall": "1m", "tls": {"ca": "/ca", "key": "/k"}}"#,
    );
    assert_problems(&out, &["queue_capacity", "rescan_intervall", "aggregator", "tls"]);
}

#[test]
fn aggregator_files_are_checked_whole() {
    assert_valid(&check(
        "aggregator",
        r#"{"kafka": {"bootstrap_servers": "k:9092", "audit_topics": [{"topic": "audit", "cluster": "prod"}]}}"#,
    ));
    let out = check(
        "aggregator",
        r#"{"kafka": {"bootstrap_servers": " ", "batch_linger": "in a minute"},
            "grpc": {"cluster": "prod", "max_streams": "lots"}, "webhook": {"listen": "0.0.0.0:8443"}}"#,
    );
    assert_problems(
        &out,
        &["grpc.max_streams", "kafka.batch_linger", "webhook.cluster", "kafka.bootstrap_servers", "grpc.tls.client_ca"],
    );
}

#[test]
fn correlator_files_are_checked_whole() {
    assert_valid(&check("correlator", r#"{"bootstrap_servers": "k:9092", "format": "ocsf"}"#));
    let out = check("correlator", r#"{"group_id": "", "engine": {"egress_ips": ["nat"]}, "format": "csv"}"#);
    assert_problems(&out, &["engine.egress_ips", "format", "bootstrap_servers"]);
}

#[test]
fn incidents_files_are_checked_whole() {
    assert_valid(&check("incidents", r#"{"bootstrap_servers": "k:9092", "horizon": "72h", "max_findings": 1000}"#));
    let out = check(
        "incidents",
        r#"{"bootstrap_servers": "k:9092", "horizon": "soon", "incidents_topic": "tokentrail.findings",
            "max_findings": 0}"#,
    );
    assert_problems(&out, &["horizon", "incidents_topic", "max_findings"]);
}

#[test]
fn standalone_files_are_checked_whole() {
    assert_valid(&check(
        "standalone",
        r#"{"webhook": {"listen": "0.0.0.0:8443", "cluster": "prod", "insecure_plaintext": true},
            "engine": {"egress_ips": ["198.51.100.7"]}, "format": "ocsf"}"#,
    ));
    let out = check(
        "standalone",
        r#"{"grpc": {"cluster": "prod", "trust_agent_node_name": true, "max_streams": "many"},
            "findings": "kafka:tokentrail.findings", "engine": {"rotation_grace": "soon"}, "emit_interval": "1ms"}"#,
    );
    assert_problems(&out, &["engine.rotation_grace", "grpc.max_streams", "kafka", "emit_interval"]);
}

#[test]
fn an_unreadable_or_malformed_file_is_one_problem_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["aggregator", "--check-config", "/nonexistent/tokentrail.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/tokentrail.json"));
    let out = check("correlator", "{\"bootstrap_servers\": \"k\",\n  \"format\": json}");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2 column"), "{out:?}");
}
