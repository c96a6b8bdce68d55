//! `tokentrail standalone` end to end on loopback, with the real binary: the apiserver's audit
//! webhook (a real HTTPS POST of an `EventList`, with the apiserver's client certificate) and an
//! agent's attestation (gRPC over mTLS) in, findings out as JSON lines.
//!
//! The batch holds benign traffic (a pod using its own token from its own address, a
//! controller's token from its node) and two attacks: the pod's token replayed from an
//! off-cluster address, and a second token bound to the same pod that its node's agent never
//! saw (`token-forged-mint`, which only the attestation can prove). The agent's snapshot
//! attests the pod's real token, so that one stays silent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod webhook_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use aggregator_support::WAIT;
use correlator_support::{binary, stop};
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::wire::agent::v1::attestation_client::AttestationClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use webhook_support::{post, tls};

const T0: i64 = 1_773_136_800_000_000; // 2026-03-10T10:00:00Z
const MINUTE: i64 = 60_000_000;
const REPLAY_FROM: &str = "203.0.113.50";

fn rfc3339(minutes: i64) -> String {
    // 2026-03-10T10:MM:00Z; the scenario stays inside one hour.
    assert!((0..60).contains(&minutes));
    format!("2026-03-10T10:{minutes:02}:00.000000Z")
}

/// One audit event of a request authenticated with a service-account token.
fn token_use(audit_id: &str, minute: i64, source_ip: &str, sa: (&str, &str), extra: &str, verb: &str) -> String {
    let (ns, name) = sa;
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/secrets","verb":"{verb}","user":{{"username":"system:serviceaccount:{ns}:{name}","uid":"sa-uid-{name}","groups":["system:serviceaccounts","system:authenticated"],"extra":{{{extra}}}}},"sourceIPs":["{source_ip}"],"userAgent":"test/1.0","objectRef":{{"resource":"secrets","namespace":"{ns}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#,
        t = rfc3339(minute)
    )
}

/// `user.extra` of a token bound to pod `api-1` (uid `uid-api`) on `worker-1`.
fn bound_to_api_pod(jti: &str) -> String {
    format!(
        r#""authentication.kubernetes.io/credential-id":["JTI={jti}"],"authentication.kubernetes.io/node-name":["worker-1"],"authentication.kubernetes.io/pod-name":["api-1"],"authentication.kubernetes.io/pod-uid":["uid-api"]"#
    )
}

fn event_list() -> Vec<u8> {
    let api = ("payments", "api");
    let items = [
        // Benign: the pod's own token from the pod's address, and a controller's unbound token.
        token_use("a-1", 1, "10.244.1.12", api, &bound_to_api_pod("jti-api"), "get"),
        token_use(
            "a-2",
            2,
            "10.0.1.11",
            ("kube-system", "ctrl"),
            r#""authentication.kubernetes.io/credential-id":["JTI=jti-ctrl"]"#,
            "list",
        ),
        // The pod's token replayed from off the cluster, twice (and one duplicate stage).
        token_use("r-1", 4, REPLAY_FROM, api, &bound_to_api_pod("jti-api"), "list"),
        token_use("r-2", 5, REPLAY_FROM, api, &bound_to_api_pod("jti-api"), "list"),
        token_use("r-2", 5, REPLAY_FROM, api, &bound_to_api_pod("jti-api"), "list"),
        // A token bound to the same pod that the kubelet never wrote into it.
        token_use("f-1", 3, "10.244.1.12", api, &bound_to_api_pod("jti-forged"), "get"),
    ];
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, items.join(","))
        .into_bytes()
}

/// The agent on worker-1, ten minutes in: its node, the pod, and the pod's real token.
fn snapshot() -> agent::AgentMessage {
    let object = |name: &str, uid: &str| agent::ObjectRef { name: name.into(), uid: uid.into() };
    let credential = agent::Credential {
        location: Some(agent::CredentialLocation {
            pod_uid: "uid-api".into(),
            volume_kind: agent::VolumeKind::Projected as i32,
            volume: "kube-api-access-x1".into(),
            file: "token".into(),
        }),
        kind: agent::CredentialKind::PodBound as i32,
        jti: Some("jti-api".into()),
        issuer: "https://kubernetes.default.svc".into(),
        subject: "system:serviceaccount:payments:api".into(),
        audiences: vec!["https://kubernetes.default.svc".into()],
        issued_at_micros: Some(T0),
        expires_at_micros: Some(T0 + 60 * MINUTE),
        namespace: "payments".into(),
        serviceaccount: Some(object("api", "sa-uid-api")),
        pod: Some(object("api-1", "uid-api")),
        node: Some(object("worker-1", "node-uid-1")),
        written_at_micros: Some(T0),
        ..Default::default()
    };
    let pod = agent::Pod {
        uid: "uid-api".into(),
        namespace: "payments".into(),
        name: "api-1".into(),
        serviceaccount: "api".into(),
        ips: vec!["10.244.1.12".into()],
        phase: "Running".into(),
        started_at_micros: Some(T0),
        ..Default::default()
    };
    let node = agent::Node {
        name: "worker-1".into(),
        uid: "node-uid-1".into(),
        addresses: vec![agent::NodeAddress { r#type: "InternalIP".into(), address: "10.0.1.11".into() }],
        pod_cidrs: vec!["10.244.1.0/24".into()],
    };
    agent::AgentMessage {
        agent_id: "agent-worker-1".into(),
        sequence: 1,
        node_name: "worker-1".into(),
        observed_at_micros: T0 + 10 * MINUTE,
        body: Some(agent::agent_message::Body::Snapshot(agent::NodeSnapshot {
            node: Some(node),
            pods: vec![pod],
            credentials: vec![credential],
            dropped_messages: 0,
        })),
    }
}

/// A running `tokentrail standalone` and the addresses it reported.
struct Standalone {
    child: Child,
    webhook: SocketAddr,
    grpc: SocketAddr,
    /// Its log lines after the start-up line (they are passed through to the test's stderr too).
    log: mpsc::Receiver<String>,
}

/// `tokentrail standalone` with its settings as flags.
fn start(findings: &str, emit_interval: &str, extra: &[&str]) -> Standalone {
    let path = |n: &str| tls(n).to_str().unwrap().to_string();
    let mut args: Vec<String> = ["--cluster", "onprem", "--cluster-network", "10.0.0.0/8"]
        .into_iter()
        .map(String::from)
        .chain(["--webhook-listen".into(), "127.0.0.1:0".into(), "--grpc-listen".into(), "127.0.0.1:0".into()])
        .chain(["--tls-cert".into(), path("server.pem"), "--tls-key".into(), path("server.key")])
        .chain(["--webhook-client-ca".into(), path("ca.pem"), "--agent-client-ca".into(), path("ca.pem")])
        // One CA and one client certificate here: its CN stands for the apiserver's.
        .chain(["--webhook-allowed-client".into(), "client".into()])
        .chain(["--agent-node-dns-name".into(), "agent.{node}.test".into()])
        .chain(["--findings".into(), findings.into(), "--emit-interval".into(), emit_interval.into()])
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    start_with(&args)
}

/// `tokentrail standalone ARGS`, once it reports its servers' addresses.
fn start_with(args: &[String]) -> Standalone {
    let mut child = Command::new(binary())
        .arg("standalone")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tokentrail standalone");
    // The addresses are in the start-up log line; the rest of the log is passed through.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("the start-up log line");
        if line.contains("standalone running") {
            break line;
        }
    };
    let addr = |name: &str| -> SocketAddr {
        let start =
            line.find(&format!("{name}=Some(")).unwrap_or_else(|| panic!("{name} in {line:?}")) + name.len() + 6;
        line[start..].split(')').next().unwrap().parse().unwrap()
    };
    Standalone { webhook: addr("webhook"), grpc: addr("grpc"), child, log: rx }
}

/// Sends the agent's snapshot over mTLS; the acknowledged sequence.
async fn attest(addr: SocketAddr) -> u64 {
    attest_message(addr, snapshot()).await
}

/// Sends one message over mTLS as worker-1's agent; the acknowledged sequence.
async fn attest_message(addr: SocketAddr, m: agent::AgentMessage) -> u64 {
    let read = |n: &str| std::fs::read(tls(n)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .domain_name("aggregator.test")
        .identity(Identity::from_pem(read("client.pem"), read("client.key")));
    let channel = Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap();
    let mut client = AttestationClient::new(channel.connect().await.unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(m).await.unwrap();
    let mut inbound = client.attest(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let answer = tokio::time::timeout(WAIT, inbound.message()).await.expect("an ack").unwrap();
    match answer.and_then(|a| a.body) {
        Some(agent::aggregator_message::Body::Ack(a)) => a.sequence,
        None => panic!("the stream ended without an ack"),
    }
}

/// The findings of JSON lines, each by its latest line (an update repeats its id).
fn findings(text: &str) -> Vec<serde_json::Value> {
    let mut by_id = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: serde_json::Value = serde_json::from_str(line).unwrap();
        by_id.insert(f["id"].as_str().unwrap().to_string(), f);
    }
    by_id.into_values().collect()
}

fn with_rule<'a>(all: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|f| f["rule"] == rule).collect()
}

/// What the scenario must and must not produce, whatever else the catalogue adds.
fn check_findings(all: &[serde_json::Value]) {
    let off = with_rule(all, "token-used-off-cluster");
    assert_eq!(off.len(), 1, "one off-cluster finding: {all:#?}");
    assert_eq!(off[0]["source_ip"], REPLAY_FROM);
    assert_eq!(off[0]["credential"]["id"], "JTI=jti-api");
    assert_eq!(off[0]["pod"]["name"], "api-1");
    assert_eq!(off[0]["cluster"], "onprem");
    assert_eq!(off[0]["count"], 2, "two replays, the duplicate stage folded");
    let forged = with_rule(all, "token-forged-mint");
    assert_eq!(forged.len(), 1, "the unattested token only: {all:#?}");
    assert_eq!(forged[0]["credential"]["id"], "JTI=jti-forged");
    for f in all {
        assert_ne!(f["serviceaccount"]["name"], "ctrl", "a controller's token from its node is benign: {f:#}");
        if f["credential"]["id"] == "JTI=jti-api" {
            assert_ne!(f["source_ip"], "10.244.1.12", "the pod's own address is expected: {f:#}");
        }
    }
}

fn wait_exit_after_sigterm(s: Standalone) -> String {
    let mut child = s.child;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    stop(child);
    reader.join().unwrap()
}

/// Findings to a file, written only at shutdown (the emit interval is an hour): SIGTERM drains
/// the queue into the engine and flushes the last findings before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_agent_in_findings_flushed_to_a_file_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("findings.jsonl");
    let s = start(file.to_str().unwrap(), "1h", &[]);
    assert_eq!(post(s.webhook, &event_list()).await, 200);
    assert_eq!(attest(s.grpc).await, 1);
    let stdout = wait_exit_after_sigterm(s);
    assert!(stdout.is_empty(), "findings go to the file only: {stdout:?}");
    let all = findings(&std::fs::read_to_string(&file).unwrap());
    check_findings(&all);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("BEGIN"), "no certificate or key material in findings");
}

/// The same settings as [`start`]'s flags, written as a configuration file (the aggregator's
/// server sections, the correlator's engine section): the same findings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_runs_it_as_the_flags_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("findings.jsonl");
    let tls_section = |client_ca: &str| {
        serde_json::json!({"cert": tls("server.pem"), "key": tls("server.key"), "client_ca": tls(client_ca),
                           "node_dns_name": "agent.{node}.test"})
    };
    let config = serde_json::json!({
        "webhook": {"listen": "127.0.0.1:0", "cluster": "onprem", "tls": tls_section("ca.pem"),
                    "allowed_client_names": ["client"]},
        "grpc": {"listen": "127.0.0.1:0", "cluster": "onprem", "tls": tls_section("ca.pem")},
        "engine": {"cluster_networks": ["10.0.0.0/8"]},
        "findings": file,
        "emit_interval": "1h",
    });
    let config_file = dir.path().join("standalone.json");
    std::fs::write(&config_file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let check = Command::new(binary()).args(["standalone", "--check-config"]).arg(&config_file).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let s = start_with(&["--config".to_string(), config_file.to_str().unwrap().to_string()]);
    assert_eq!(post(s.webhook, &event_list()).await, 200);
    assert_eq!(attest(s.grpc).await, 1);
    let stdout = wait_exit_after_sigterm(s);
    assert!(stdout.is_empty(), "findings go to the file only: {stdout:?}");
    check_findings(&findings(&std::fs::read_to_string(&file).unwrap()));
}

/// `tokentrail replay` of the sample incident (dumps first, then the audit log) into the webhook
/// with the apiserver's client certificate, cut into records small enough that the pods dump
/// becomes several: the findings need every part, the legacy-token ones the dumps (nothing else
/// tells standalone about token Secrets), the replay's the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_replayed_into_the_webhook_gives_its_findings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("findings.jsonl");
    let path = |n: &str| tls(n).to_str().unwrap().to_string();
    let args: Vec<String> = [
        "--cluster",
        "shop-prod",
        "--webhook-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server.key"),
        "--webhook-client-ca",
        &path("ca.pem"),
        "--agent-client-ca",
        &path("ca.pem"),
        "--webhook-allowed-client",
        "client",
        "--findings",
        file.to_str().unwrap(),
        "--emit-interval",
        "1h",
    ]
    .map(String::from)
    .to_vec();
    let s = start_with(&args);
    let incident = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident");
    let evidence = ["serviceaccounts.json", "sa_secrets.json", "nodes.json", "pods.json", "audit.log"];
    let replay = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .arg("replay")
            .args(evidence.map(|f| incident.join(f)))
            .args(["--to-webhook", &format!("https://{}/", s.webhook)])
            .args(["--webhook-ca", &path("ca.pem"), "--webhook-cert", &path("client.pem")])
            .args(["--webhook-key", &path("client.key"), "--webhook-server-name", "aggregator.test"])
            .args(["--max-record-bytes", "32768"])
            .output()
            .unwrap()
    });
    let (out, s) = (replay.await.unwrap(), s);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // 2,000-odd log lines and every dump's items, in more records than files.
    let summary = stderr.lines().last().unwrap();
    let numbers: Vec<u64> = summary.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 4, "{summary}");
    let (records, files, not_sent) = (numbers[1], numbers[2], numbers[3]);
    assert_eq!((files, not_sent), (5, 0), "{summary}");
    assert!(records > 20, "the 32 KiB limit cuts the 500 KB log and the 87 KB pods dump: {summary}");
    wait_exit_after_sigterm(s);
    let all = findings(&std::fs::read_to_string(&file).unwrap());
    let subjects: Vec<(String, String)> = all
        .iter()
        .map(|f| {
            (f["rule"].as_str().unwrap().to_string(), f["serviceaccount"]["name"].as_str().unwrap_or("").to_string())
        })
        .collect();
    for want in [
        ("legacy-token-present", "ci-deployer"),
        ("legacy-token-foreign-ip", "legacy-exporter"),
        ("token-used-off-cluster", "api"),
        ("exec-then-token-use", "api"),
    ] {
        assert!(
            subjects.iter().any(|(r, n)| r == want.0 && n == want.1),
            "{want:?} missing from the replayed incident's findings: {subjects:?}"
        );
    }
}

/// Lines of the child's stdout, as they come.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Heartbeats alone move a node's watermark: the real agent (library) on worker-1, with no token
/// file and no changes at all, only reports its clock every second; a token bound to a pod on
/// worker-1 that its agent never attested becomes `token-forged-mint` once those heartbeats
/// pass its first use by the (2 s) grace. Event times are the wall clock here, as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_alone_carry_an_unattested_token_past_the_grace() {
    let mut s = start("-", "200ms", &["--attestation-grace", "2s"]);
    let lines = stdout_lines(&mut s.child);
    let kubelet = tempfile::tempdir().unwrap();
    let mut config =
        tokentrail_agent::Config::new(kubelet.path().to_path_buf(), "worker-1".into(), format!("https://{}", s.grpc));
    config.inotify = false;
    config.heartbeat_interval = Duration::from_secs(1);
    config.sender.tls = Some(tokentrail_agent::sender::TlsFiles {
        ca: tls("ca.pem"),
        cert: Some(tls("client.pem")),
        key: Some(tls("client.key")),
        server_name: Some("aggregator.test".into()),
    });
    let agent_metrics = Arc::new(tokentrail_agent::Metrics::default());
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(tokentrail_agent::run(config, None, agent_metrics.clone(), async {
        let _ = stopped.await;
    }));
    // The first heartbeat starts the node's watermark; a use after it (by more than the grace)
    // is one the agent would have seen.
    let deadline = Instant::now() + WAIT;
    while tokentrail_agent::Metrics::get(&agent_metrics.heartbeats_total) < 2 {
        assert!(Instant::now() < deadline, "no heartbeats");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The agent's own clock: the one its heartbeats carry.
    let now = u64::try_from(tokentrail_agent::pipeline::now_micros() / 1_000_000).unwrap();
    let use_at = wall_clock_rfc3339(now);
    let event = token_use("g-1", 0, "10.244.1.12", ("payments", "api"), &bound_to_api_pod("jti-ghost"), "get")
        .replace(&rfc3339(0), &use_at);
    let body = format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{event}]}}"#);
    assert_eq!(post(s.webhook, body.as_bytes()).await, 200);

    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !with_rule(&findings(&seen.join("\n")), "token-forged-mint")
        .iter()
        .any(|f| f["credential"]["id"] == "JTI=jti-ghost")
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no token-forged-mint from heartbeats: {seen:#?}");
        if let Ok(line) = lines.recv_timeout(left.min(Duration::from_millis(500))) {
            seen.push(line);
        }
    }
    let _ = stop_agent.send(());
    agent.await.unwrap().unwrap();
    stop(s.child);
    assert!(tokentrail_agent::Metrics::get(&agent_metrics.heartbeats_total) >= 3);
}

/// `secs` since the epoch as RFC 3339 (UTC), by civil-from-days (no date crate in the tests).
fn wall_clock_rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap();
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Findings to stdout as they become due (emit interval 200 ms), while the process runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_stream_to_stdout_while_running() {
    let mut s = start("-", "200ms", &[]);
    let rx = stdout_lines(&mut s.child);
    assert_eq!(attest(s.grpc).await, 1);
    assert_eq!(post(s.webhook, &event_list()).await, 200);
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    let both = |lines: &[String]| {
        let all = findings(&lines.join("\n"));
        !with_rule(&all, "token-used-off-cluster").is_empty() && !with_rule(&all, "token-forged-mint").is_empty()
    };
    while !both(&lines) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "findings did not arrive on stdout: {lines:#?}");
        if let Ok(line) = rx.recv_timeout(left.min(Duration::from_millis(500))) {
            lines.push(line);
        }
    }
    stop(s.child);
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    check_findings(&findings(&lines.join("\n")));
}

/// What a compromised worker-1 sends: its snapshot, every time in it 9999-12-31.
fn from_the_end_of_time() -> agent::AgentMessage {
    const END: i64 = 253_402_300_799_000_000; // 9999-12-31T23:59:59Z
    let mut m = snapshot();
    m.agent_id = "agent-worker-1-hostile".into();
    m.observed_at_micros = END;
    if let Some(agent::agent_message::Body::Snapshot(s)) = &mut m.body {
        for c in &mut s.credentials {
            c.jti = Some("jti-hostile".into());
            c.written_at_micros = Some(END);
            c.issued_at_micros = Some(END);
        }
    }
    m
}

/// A node stamping 9999-12-31 used to move the engine's event time there, and every later use
/// was expired before it was reported (one finding before, none after). Two layers stop it:
/// * by default the message is beyond the clock plus `--max-clock-skew` and refused, with a
///   warning naming the node;
/// * with the check out of the way (a skew of 3,000,000 days), the correlator still reports
///   every finding: event time stays the audit log's, and a batch is reported before anything
///   is expired (either alone saves this one-batch scenario; `correlator_attestation.rs` and
///   `correlator/core/tests/hostile_clock.rs` show the event-time rule on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_attestation_leaves_every_later_finding_intact() {
    for skew in [None, Some("3000000d")] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("findings.jsonl");
        let extra: Vec<&str> = skew.map(|s| vec!["--max-clock-skew", s]).unwrap_or_default();
        let s = start(file.to_str().unwrap(), "1h", &extra);
        assert_eq!(attest_message(s.grpc, from_the_end_of_time()).await, 1, "acknowledged either way");
        if skew.is_none() {
            let deadline = Instant::now() + WAIT;
            let warning = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = s.log.recv_timeout(left).expect("a warning about the node's clock");
                if line.contains("attestation refused") {
                    break line;
                }
            };
            assert!(warning.contains("worker-1") && warning.contains("9999-12-31"), "{warning}");
        }
        assert_eq!(attest(s.grpc).await, 1);
        assert_eq!(post(s.webhook, &event_list()).await, 200);
        let stdout = wait_exit_after_sigterm(s);
        assert!(stdout.is_empty(), "{stdout:?}");
        check_findings(&findings(&std::fs::read_to_string(&file).unwrap()));
    }
}
