//! Kafka security, end to end with the real broker and the real `tokentrail` binary: the
//! pipeline's aggregator and correlator reach the broker only through one of its secure
//! listeners (`kafka/broker.sh`: SSL requiring a client certificate, SASL_SSL with a
//! SCRAM-SHA-512 user; certificates, keys and the user's random password made when the broker
//! started), while the test's own clients stay on PLAINTEXT. The aggregator reads its file's
//! `kafka.security`, the correlator the `--kafka-*` flags: both paths of the one section.
//!
//! A wrong password and an untrusted CA end each component at start-up with librdkafka's
//! reason and exit status 77 (`cli/src/startup/kafka.rs`), and `--check-config` names a missing
//! secret file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use correlator_support::binary;
use e2e_support::cluster::{Node, Pod};
use e2e_support::findings::Subject;
use e2e_support::{Layout, Pipeline, SecureKafka};
use serde_json::{json, Value};
use tokentrail_integration_tests::{kafka, OwnBroker, SecureListeners};

/// The exit status of a refused TLS handshake or login (`exit::KAFKA_REFUSED`).
const KAFKA_REFUSED: i32 = 77;

/// The shared broker's secure listeners; a broker of this test's own when the shared one was
/// named by `TOKENTRAIL_KAFKA_BOOTSTRAP` (its security unknown to the harness).
fn secure() -> &'static SecureListeners {
    static OWN: OnceLock<OwnBroker> = OnceLock::new();
    if let Some(s) = kafka().secure() {
        return s;
    }
    let own = OWN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kafka-security-broker");
        OwnBroker::start(&dir).expect("a broker of this test's own")
    });
    own.broker().secure().expect("broker.sh reports its secure listeners")
}

/// A pod on one node, its token used from its own address and from off-cluster: the one
/// finding must come out, through the secure listener both ways.
async fn one_replay_through(prefix: &str, listener: SecureKafka) {
    let _serial = correlator_support::one_at_a_time().await;
    let node = Node::worker(1);
    let layout = Layout {
        nodes: vec![node.clone()],
        aggregators: 1,
        correlators: 1,
        partitions: 2,
        secure: Some(listener),
        ..Layout::default()
    };
    let mut p = Pipeline::start(prefix, layout).await;
    let pod = Pod::new("shop", "web-0", "web", &node, &node.pod_ip(10));
    // The attestation goes agent → aggregator → (secure) observations topic.
    let token = p.schedule(&pod, &format!("{prefix}-jti-1")).await;
    p.audit(&[token.used().from(&pod.ip).event(), token.used().from("203.0.113.10").event()]).await;
    let found = p.settled_findings().await;
    p.stop();
    let subjects: Vec<&Subject> = found.values().map(|f| &f.subject).collect();
    let want = Subject {
        rule: "token-used-off-cluster".into(),
        credential: token.subject(),
        source_ip: "203.0.113.10".into(),
    };
    assert_eq!(subjects, [&want], "the one replay, through the {prefix} listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_through_the_mutual_tls_listener() {
    let s = secure();
    let (ca, cert, key) = (s.ca_file(), s.client_cert_file(), s.client_key_file());
    let listener = SecureKafka {
        bootstrap: s.ssl.clone(),
        aggregator_security: json!({"protocol": "ssl", "tls": {"ca_file": ca, "cert_file": cert, "key_file": key}}),
        correlator_flags: flags(&[
            ("--kafka-security-protocol", "ssl"),
            ("--kafka-ca-file", &path(&ca)),
            ("--kafka-cert-file", &path(&cert)),
            ("--kafka-key-file", &path(&key)),
        ]),
    };
    one_replay_through("ssl", listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_through_the_sasl_ssl_scram_listener() {
    let s = secure();
    let (ca, user, password) = (s.ca_file(), s.scram_username(), s.scram_password_file());
    let listener = SecureKafka {
        bootstrap: s.sasl_ssl.clone(),
        aggregator_security: scram(&ca, &user, &password),
        correlator_flags: scram_flags(&ca, &user, &password),
    };
    one_replay_through("sasl-ssl", listener).await;
}

#[test]
fn a_wrong_password_ends_each_component_with_the_brokers_reason_and_exit_77() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let security = scram(&s.ca_file(), &s.scram_username(), &wrong);
    let aggregator = run_aggregator(dir.path(), &s.sasl_ssl, security);
    assert_refused(&aggregator, "SASL authentication error");
    let correlator = run_correlator(&s.sasl_ssl, scram_flags(&s.ca_file(), &s.scram_username(), &wrong));
    assert_refused(&correlator, "SASL authentication error");
    // The password itself never appears.
    for out in [&aggregator, &correlator] {
        assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-password"));
    }
}

#[test]
fn an_untrusted_ca_ends_each_component_with_the_handshake_failure_and_exit_77() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let security = json!({"protocol": "ssl", "tls": {"ca_file": s.untrusted_ca_file(),
        "cert_file": s.client_cert_file(), "key_file": s.client_key_file()}});
    let aggregator = run_aggregator(dir.path(), &s.ssl, security);
    assert_refused(&aggregator, "certificate verify failed");
    let flags = scram_flags(&s.untrusted_ca_file(), &s.scram_username(), &s.scram_password_file());
    let correlator = run_correlator(&s.sasl_ssl, flags);
    assert_refused(&correlator, "certificate verify failed");
}

#[test]
fn check_config_names_a_missing_secret_file_and_a_section_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-password");
    let config = dir.path().join("aggregator.json");
    let file = json!({"kafka": {"bootstrap_servers": "k:9093", "security": {"protocol": "ssl",
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password_file": missing}}}});
    std::fs::write(&config, file.to_string()).unwrap();
    let out = Command::new(binary()).args(["aggregator", "--check-config", &path(&config)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kafka.security.sasl: needs protocol sasl_ssl or sasl_plaintext, not ssl"), "{stderr}");
    assert!(
        stderr.contains(&format!("kafka.security.sasl.password_file: cannot read {}", missing.display())),
        "{stderr}"
    );
}

/// The aggregator's `kafka.security` for the SCRAM user.
fn scram(ca: &Path, user: &str, password_file: &Path) -> Value {
    json!({"protocol": "sasl_ssl", "tls": {"ca_file": ca},
           "sasl": {"mechanism": "SCRAM-SHA-512", "username": user, "password_file": password_file}})
}

/// The same settings as the correlator's `--kafka-*` flags.
fn scram_flags(ca: &Path, user: &str, password_file: &Path) -> Vec<String> {
    flags(&[
        ("--kafka-security-protocol", "sasl_ssl"),
        ("--kafka-ca-file", &path(ca)),
        ("--kafka-sasl-mechanism", "SCRAM-SHA-512"),
        ("--kafka-sasl-username", user),
        ("--kafka-sasl-password-file", &path(password_file)),
    ])
}

fn run_aggregator(dir: &Path, bootstrap: &str, security: Value) -> Output {
    let config = dir.join("aggregator.json");
    let file = json!({"kafka": {"bootstrap_servers": bootstrap, "security": security,
        "audit_topics": [{"topic": "tokentrail.audit.never-read", "cluster": "prod"}]}});
    std::fs::write(&config, file.to_string()).unwrap();
    run(Command::new(binary()).args(["aggregator", "--config", &path(&config)]))
}

fn run_correlator(bootstrap: &str, security_flags: Vec<String>) -> Output {
    let mut command = Command::new(binary());
    command.args(["correlator", "--instance", "never-started", "--bootstrap-servers", bootstrap]);
    run(command.args(security_flags))
}

/// Runs a component that is expected to stop by itself, well before the connection check's
/// 30 s.
fn run(command: &mut Command) -> Output {
    let started = Instant::now();
    let out = command
        .env_remove("TOKENTRAIL_KAFKA_BOOTSTRAP")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a refused connection ends at once, not at the timeout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn assert_refused(out: &Output, cause: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(KAFKA_REFUSED), "{stderr}");
    assert!(stderr.contains("failed the TLS handshake or the login") && stderr.contains(cause), "{stderr}");
}

fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [k.to_string(), v.to_string()]).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
