//! Kafka security, end to end with the real broker and the real `tokentrail` binary: the
//! pipeline's aggregator and correlator reach the broker only through one of its secure
//! listeners (`kafka/broker.sh`: SSL requiring a client certificate, SASL_SSL with a
//! SCRAM-SHA-512 user, SASL_SSL with OAUTHBEARER; certificates, keys and the user's random
//! password made when the broker started), while the test's own clients stay on PLAINTEXT. The
//! aggregator reads its file's `kafka.security`, the correlator the `--kafka-*` flags: both paths
//! of the one section.
//!
//! OAUTHBEARER tokens come from a token endpoint of the test's own on loopback
//! ([`TokenEndpoint`]: the client-credentials grant, Basic authentication checked against the
//! client id and secret the test wrote, unsigned JWTs that the broker's default validator
//! accepts; HTTPS with the broker's certificate and CA, or plain HTTP), which counts the tokens
//! it hands out.
//!
//! A wrong password, a wrong client secret and an untrusted CA end each component at start-up
//! with librdkafka's reason and exit status 77 (`cli/src/startup/kafka.rs`), and
//! `--check-config` names a missing secret file and a token endpoint that is not https.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_through_the_oauthbearer_listener_with_tokens_from_the_endpoint() {
    let s = secure();
    let bootstrap = oauth_listener(s);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "the-client-secret\n").unwrap();
    // HTTPS, its certificate checked against the token endpoint's own `ca_file`.
    let endpoint = TokenEndpoint::start("tokentrail-oauth", "the-client-secret", Some(s));
    assert!(endpoint.url.starts_with("https://"), "{}", endpoint.url);
    let issuer_ca = Some(s.ca_file());
    let listener = SecureKafka {
        bootstrap,
        aggregator_security: oauth(&s.ca_file(), &endpoint.url, &secret, issuer_ca.as_deref()),
        correlator_flags: oauth_flags(&s.ca_file(), &endpoint.url, &secret, issuer_ca.as_deref()),
    };
    one_replay_through("oauth", listener).await;
    // Each component's start-up check, consumer(s) and producer got a token of their own from
    // the endpoint, and the broker took them (it refuses a client without one).
    let (granted, refused) = endpoint.counts();
    assert!(granted >= 6, "tokens handed out: {granted}");
    assert_eq!(refused, 0);
}

#[test]
fn a_wrong_client_secret_ends_each_component_with_the_token_endpoints_refusal_and_exit_77() {
    let s = secure();
    let bootstrap = oauth_listener(s);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("client-secret");
    std::fs::write(&wrong, "not-the-client-secret\n").unwrap();
    // Plain HTTP, which loopback allows.
    let endpoint = TokenEndpoint::start("tokentrail-oauth", "the-client-secret", None);
    let refusal = format!("token endpoint {} answered 401 (invalid_client", endpoint.url);
    let aggregator = run_aggregator(dir.path(), &bootstrap, oauth(&s.ca_file(), &endpoint.url, &wrong, None));
    assert_refused(&aggregator, &refusal);
    let correlator = run_correlator(&bootstrap, oauth_flags(&s.ca_file(), &endpoint.url, &wrong, None));
    assert_refused(&correlator, &refusal);
    let (granted, refused) = endpoint.counts();
    assert_eq!(granted, 0);
    assert!(refused >= 2, "requests refused: {refused}");
    // Neither secret appears.
    for out in [&aggregator, &correlator] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("not-the-client-secret") && !stderr.contains("the-client-secret"), "{stderr}");
    }
}

#[test]
fn check_config_refuses_a_token_endpoint_that_is_not_https() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "s\n").unwrap();
    let config = dir.path().join("aggregator.json");
    let security = oauth(&dir.path().join("ca.crt"), "http://idp.example/token", &secret, None);
    let file = json!({"kafka": {"bootstrap_servers": "k:9093", "security": security}});
    std::fs::write(&config, file.to_string()).unwrap();
    let out = Command::new(binary()).args(["aggregator", "--check-config", &path(&config)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("kafka.security.sasl.token_endpoint: http://idp.example/token: the token endpoint must be https"),
        "{stderr}"
    );
    assert!(stderr.contains("kafka.security.tls.ca_file: cannot read"), "{stderr}");
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

/// The OAUTHBEARER listener's `bootstrap.servers`.
fn oauth_listener(s: &SecureListeners) -> String {
    s.oauth.clone().expect("broker.sh reports its OAUTH listener (a broker started before it had one: broker.sh stop)")
}

/// The aggregator's `kafka.security` for OAUTHBEARER with tokens from `endpoint`, whose
/// certificate chains to `issuer_ca` (an https endpoint).
fn oauth(ca: &Path, endpoint: &str, secret_file: &Path, issuer_ca: Option<&Path>) -> Value {
    let mut sasl = json!({"mechanism": "OAUTHBEARER", "token_endpoint": endpoint, "client_id": "tokentrail-oauth",
                          "client_secret_file": secret_file, "scope": "kafka"});
    if let Some(issuer_ca) = issuer_ca {
        sasl["ca_file"] = json!(issuer_ca);
    }
    json!({"protocol": "sasl_ssl", "tls": {"ca_file": ca}, "sasl": sasl})
}

/// The same settings as the correlator's `--kafka-*` flags.
fn oauth_flags(ca: &Path, endpoint: &str, secret_file: &Path, issuer_ca: Option<&Path>) -> Vec<String> {
    let mut flags = flags(&[
        ("--kafka-security-protocol", "sasl_ssl"),
        ("--kafka-ca-file", &path(ca)),
        ("--kafka-sasl-mechanism", "OAUTHBEARER"),
        ("--kafka-oauth-token-endpoint", endpoint),
        ("--kafka-oauth-client-id", "tokentrail-oauth"),
        ("--kafka-oauth-client-secret-file", &path(secret_file)),
        ("--kafka-oauth-scope", "kafka"),
    ]);
    if let Some(issuer_ca) = issuer_ca {
        flags.extend(["--kafka-oauth-ca-file".to_string(), path(issuer_ca)]);
    }
    flags
}

/// An OAuth 2.0 token endpoint on loopback, HTTPS with the broker's certificate (for 127.0.0.1,
/// signed by the harness's CA) or plain HTTP (which the components allow on loopback only):
/// the client-credentials grant with the client id and secret as Basic authentication; it hands
/// out unsigned JWTs (`"alg": "none"`, `sub` the client id, an hour's `exp`), which the broker's
/// default validator accepts, and answers 401 `invalid_client` to anything else. It counts both.
struct TokenEndpoint {
    url: String,
    granted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    address: std::net::SocketAddr,
}

impl TokenEndpoint {
    fn start(client_id: &str, secret: &str, tls: Option<&SecureListeners>) -> TokenEndpoint {
        let tls = tls.map(|s| {
            let read = |name: &str| std::fs::read(s.dir.join(name)).unwrap();
            let certs = CertificateDer::pem_slice_iter(&read("broker.crt")).collect::<Result<Vec<_>, _>>().unwrap();
            let key = PrivateKeyDer::from_pem_slice(&read("broker.key")).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
            Arc::new(config)
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (granted, refused, stop) = (Arc::default(), Arc::default(), Arc::<AtomicBool>::default());
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")));
        let (g, r, st, sub) = (Arc::clone(&granted), Arc::clone(&refused), Arc::clone(&stop), client_id.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (g, r, expected, sub, tls) =
                    (Arc::clone(&g), Arc::clone(&r), expected.clone(), sub.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config) else { return };
                        answer(rustls::StreamOwned::new(connection, stream), &expected, &sub, &g, &r);
                    }
                    None => answer(stream, &expected, &sub, &g, &r),
                });
            }
        });
        TokenEndpoint { url: format!("{scheme}://{address}/oauth2/token"), granted, refused, stop, address }
    }

    /// Tokens handed out, and requests refused.
    fn counts(&self) -> (usize, usize) {
        (self.granted.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.address);
    }
}

/// Reads one request and answers it.
#[allow(clippy::disallowed_methods)] // the broker checks the token's exp against the real clock
fn answer(stream: impl Read + Write, expected: &str, sub: &str, granted: &AtomicUsize, refused: &AtomicUsize) {
    let mut reader = BufReader::new(stream);
    let (mut request_line, mut authorization, mut length) = (String::new(), None, 0usize);
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => authorization = Some(value.trim().to_string()),
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let form = String::from_utf8_lossy(&body);
    let grant = request_line.starts_with("POST /oauth2/token ")
        && form == "grant_type=client_credentials&scope=kafka"
        && authorization.as_deref() == Some(expected);
    let (status, json) = if grant {
        granted.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token =
            format!("{}.{}.", b64(json!({"alg": "none"})), b64(json!({"sub": sub, "iat": now, "exp": now + 3600})));
        ("200 OK", json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
    } else {
        refused.fetch_add(1, Ordering::Relaxed);
        ("401 Unauthorized", json!({"error": "invalid_client", "error_description": "client authentication failed"}))
    };
    let json = json.to_string();
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = stream.flush();
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
