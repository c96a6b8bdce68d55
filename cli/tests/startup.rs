//! Start-up as an operator meets it, the same for every subcommand: one duration grammar on
//! every engine flag (`analyze --rotation-grace 500ms` as `correlator --rotation-grace 500ms`),
//! flags over the configuration file, exit 2 for unusable settings before anything starts, and
//! help text without rustdoc links. Nothing here needs a broker or an apiserver: every run stops
//! at its configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::PathBuf;
use std::process::{Command, Output};

fn tokentrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(args)
        // Settings the components read from the environment: a run must not depend on them.
        .env_remove("TOKENTRAIL_KAFKA_BOOTSTRAP")
        .env_remove("POD_NAME")
        .env_remove("NODE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("TOKENTRAIL_METRICS_LISTEN")
        .output()
        .expect("run tokentrail")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn example_log() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident/audit.log").display().to_string()
}

#[test]
fn analyze_takes_the_duration_grammar_every_engine_flag_takes() {
    let log = example_log();
    for grace in ["500ms", "90s", "5m30s", "1h", "1d"] {
        let out = tokentrail(&["analyze", "--format", "json", "--rotation-grace", grace, &log]);
        assert_eq!(out.status.code(), Some(0), "--rotation-grace {grace}: {}", stderr(&out));
    }
    for bad in ["5", "5x", "-1s", "1mo"] {
        // `=`: a value starting with `-` would be read as a flag.
        let out = tokentrail(&["analyze", &format!("--rotation-grace={bad}"), &log]);
        assert_eq!(out.status.code(), Some(2), "--rotation-grace {bad}");
        assert!(stderr(&out).contains("invalid duration"), "{}", stderr(&out));
    }
}

#[test]
fn the_streaming_components_refuse_what_analyze_refuses() {
    let correlator = ["correlator", "--bootstrap", "127.0.0.1:1", "--instance", "c-0"];
    let standalone =
        ["standalone", "--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--webhook-insecure-plaintext"];
    for flag in ["--rotation-grace", "--attestation-grace", "--credential-retention", "--pod-retention"] {
        for base in [&correlator[..], &standalone[..]] {
            let out = tokentrail(&[base, &[flag, "300"]].concat());
            assert_eq!(out.status.code(), Some(2), "{} {flag} 300", base[0]);
            assert!(stderr(&out).contains("invalid duration \"300\""), "{}", stderr(&out));
        }
    }
}

#[test]
fn settings_a_component_cannot_run_with_exit_2_before_it_starts() {
    let out =
        tokentrail(&["correlator", "--bootstrap", "127.0.0.1:1", "--instance", "c-0", "--credential-retention", "6h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("tokentrail correlator: engine.credential_retention: must be at least 24h"),
        "{}",
        stderr(&out)
    );
    let out = tokentrail(&["standalone", "--cluster", "c", "--credential-retention", "6h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to listen on"), "{}", stderr(&out));
    let out = tokentrail(&["agent", "--aggregator", "agg:7443", "--node", "n", "--no-kube"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("tokentrail agent: aggregator: must be an http:// or https:// URL"),
        "{}",
        stderr(&out)
    );
    let out =
        tokentrail(&["aggregator", "--bootstrap-servers", "k:9092", "--audit-topic", "a", "--observations-topic", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("kafka.observations_topic: \"a\" is also an audit topic"), "{}", stderr(&out));
}

#[test]
fn flags_override_the_file_and_a_problem_of_the_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("correlator.json");
    std::fs::write(
        &file,
        r#"{"bootstrap_servers": "k:9092", "instance": "c-0", "engine": {"credential_retention": "6h"}}"#,
    )
    .unwrap();
    let file = file.display().to_string();
    let out = tokentrail(&["correlator", "--config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{file}: engine.credential_retention: must be at least 24h")),
        "{}",
        stderr(&out)
    );
    // The file alone is fine; a flag makes it wrong, and the problem is the key's, not the file's.
    std::fs::write(&file, r#"{"bootstrap_servers": "k:9092", "instance": "c-0"}"#).unwrap();
    let out = tokentrail(&["correlator", "--config", &file, "--commit-interval", "1ms"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tokentrail correlator: commit_interval: must be at least 10ms"), "{}", stderr(&out));
}

#[test]
fn help_shows_no_rustdoc_links_and_every_component_exports_metrics_and_serves_probes() {
    for subcommand in ["analyze", "collect", "agent", "aggregator", "correlator", "incidents", "standalone"] {
        let out = tokentrail(&[subcommand, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{subcommand}");
        assert!(!help.contains("[`"), "{subcommand} --help shows a rustdoc link:\n{help}");
        if !["analyze", "collect"].contains(&subcommand) {
            assert!(help.contains("--otlp-endpoint") && help.contains("--verbose"), "{subcommand}:\n{help}");
            assert!(
                help.contains("--metrics-listen <ADDR>") && help.contains("TOKENTRAIL_METRICS_LISTEN"),
                "{subcommand}:\n{help}"
            );
        }
    }
}

#[test]
fn the_environment_overrides_the_file_and_a_flag_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("correlator.json");
    std::fs::write(&file, r#"{"bootstrap_servers": "k:9092", "instance": "c-0"}"#).unwrap();
    let run = |env: &str, flags: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokentrail"));
        command.args(["correlator", "--config"]).arg(&file).args(flags);
        command.env("TOKENTRAIL_KAFKA_BOOTSTRAP", env).env_remove("POD_NAME").output().unwrap()
    };
    // A blank value is refused: whichever source it comes from is the one that won.
    let out = run(" ", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bootstrap_servers: is empty"), "{}", stderr(&out));
    let out = run("k:9092", &["--bootstrap", " "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bootstrap_servers: is empty"), "{}", stderr(&out));
}

/// Kubernetes stops a pod whenever it likes, also while it starts against brokers that do not
/// answer (an outage, a wrong address): the correlator then exits 0 by its own handler, at the
/// latest when its transactions' initialisation gives up (30 s). Before, a SIGTERM in its first
/// moments killed it (the signal's default action), and one while it waited for its
/// transactions to initialise made it exit 1 when that gave up.
#[test]
fn a_correlator_stopped_while_its_brokers_do_not_answer_exits_cleanly() {
    stopped_while_the_brokers_do_not_answer("correlator");
}

/// The same for `tokentrail incidents`, whose start (its transactions, then rebuilding its
/// incidents from the findings topic) waits on the brokers the same way.
#[test]
fn incidents_stopped_while_its_brokers_do_not_answer_exits_cleanly() {
    stopped_while_the_brokers_do_not_answer("incidents");
}

fn stopped_while_the_brokers_do_not_answer(component: &str) {
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    // A loopback port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args([component, "--bootstrap-servers", &format!("127.0.0.1:{port}"), "--instance", "stopped-0"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("TOKENTRAIL_METRICS_LISTEN")
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let logged = || {
        let mut text = String::new();
        log.reopen().unwrap().read_to_string(&mut text).unwrap();
        text
    };
    let started = Instant::now();
    while !logged().contains(&format!("{component} starting")) {
        assert!(started.elapsed() < Duration::from_secs(30), "no start line: {}", logged());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Inside the start by now: its clients keep trying to reach the brokers.
    std::thread::sleep(Duration::from_secs(3));
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{component}: {status} after SIGTERM: {}", logged());
    assert!(logged().contains("stopped before the start was done"), "{component}: {}", logged());
}
