//! `--metrics-listen` on the real `tokentrail` processes: one plain-HTTP listener serving
//! `/healthz` (200 at once), `/readyz` (503 with its reason until the component can work, then
//! 200) and `/metrics` (every instrument the component registers, typed, values that move as
//! it works):
//! * the agent is ready once the aggregator accepted its attestation stream; `tokentrail
//!   standalone` (no broker needed) plays the aggregator, and is ready once its servers listen;
//! * the correlator is ready once it has joined its group and restored its partitions, and its
//!   observations counter moves as the real aggregator's observations arrive through Kafka.
//!
//! The aggregator's own listener is tested in `aggregator_health.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod probe_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aggregator_support::{incident_lines, produce_raw, read_until, Topics};
use correlator_support::{binary, outputs};
use probe_support::{free_port, get, registered, wait_for, Scrape, WAIT};
use tokentrail_integration_tests::unique_name;

/// Polls `/metrics` until `name` reaches at least `at_least`; the scrape.
async fn wait_for_value(addr: SocketAddr, name: &str, at_least: f64) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = Scrape::of(addr).await;
        if scrape.value(name).is_some_and(|v| v >= at_least) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "{name} never reached {at_least}:\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process of the test, killed when dropped: a failed assertion leaves nothing running.
struct Process(Option<Child>);

impl Process {
    /// SIGTERM, then the exit status must be 0.
    fn stop(mut self, what: &str) {
        let mut child = self.0.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{what} exits 0 on SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "{what} did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(command: &mut Command, what: &str) -> Process {
    Process(Some(
        command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("start {what}: {e}")),
    ))
}

fn agent(kubelet: &std::path::Path, aggregator: SocketAddr, metrics: SocketAddr) -> Process {
    let mut command = Command::new(binary());
    command
        .args(["agent", "--no-kube", "--no-inotify", "--node", "worker-1", "--max-backoff", "1s"])
        .args(["--aggregator", &format!("http://{aggregator}")])
        .arg("--kubelet-dir")
        .arg(kubelet)
        .args(["--metrics-listen", &metrics.to_string()]);
    spawn(&mut command, "tokentrail agent")
}

fn standalone(grpc: SocketAddr, metrics: SocketAddr) -> Process {
    let mut command = Command::new(binary());
    command
        .args(["standalone", "--cluster", "onprem", "--grpc-listen", &grpc.to_string(), "--trust-agent-node-name"])
        .env("TOKENTRAIL_METRICS_LISTEN", metrics.to_string());
    spawn(&mut command, "tokentrail standalone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_ready_once_its_stream_is_accepted_and_both_processes_expose_their_instruments() {
    let kubelet = tempfile::tempdir().unwrap();
    let grpc = free_port();
    let (agent_probe, standalone_probe) = (free_port(), free_port());

    // No aggregator yet: alive, not ready, its instruments exposed already.
    let agent = agent(kubelet.path(), grpc, agent_probe);
    assert_eq!(wait_for(agent_probe, "/healthz", 200).await, "ok\n");
    let (status, body) = get(agent_probe, "/readyz").await.unwrap();
    assert_eq!((status, body.as_str()), (503, "not ready: no attestation stream to the aggregator yet\n"));
    let before = Scrape::of(agent_probe).await;
    before.assert_exposes(&registered("agent/src/telemetry.rs", "tokentrail_agent_", &[]));
    assert_eq!(before.value("tokentrail_agent_connections_total"), Some(0.0));
    assert!(before.text.contains(r#"service_name="tokentrail-agent""#), "target_info: {}", before.text);

    let standalone = standalone(grpc, standalone_probe);
    assert_eq!(wait_for(standalone_probe, "/healthz", 200).await, "ok\n");
    assert_eq!(wait_for(standalone_probe, "/readyz", 200).await, "ready\n");
    assert_eq!(wait_for(agent_probe, "/readyz", 200).await, "ready\n");
    let acked = wait_for_value(agent_probe, "tokentrail_agent_messages_acked_total", 1.0).await;
    assert!(acked.value("tokentrail_agent_connections_total") >= Some(1.0), "{}", acked.text);

    // standalone: the aggregator's and the correlator's instruments on one listener.
    let accepted = wait_for_value(standalone_probe, "tokentrail_aggregator_attestations_accepted_total", 1.0).await;
    let labelled = [
        "tokentrail_aggregator_cluster_records_in_total",
        "tokentrail_aggregator_cluster_observations_out_total",
        "tokentrail_aggregator_agent_tokens_refused_total",
        "tokentrail_aggregator_webhook_requests_refused_total",
        "tokentrail_aggregator_consumer_lag",
    ];
    accepted.assert_exposes(&registered("aggregator/src/telemetry.rs", "tokentrail_aggregator_", &labelled));
    let by_rule = ["tokentrail_correlator_findings_by_rule_total"];
    accepted.assert_exposes(&registered("correlator/src/stream/telemetry.rs", "tokentrail_correlator_", &by_rule));
    assert_eq!(accepted.value("tokentrail_aggregator_streams_open"), Some(1.0), "{}", accepted.text);

    agent.stop("the agent");
    standalone.stop("standalone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correlator_is_ready_once_its_partitions_are_restored_and_counts_what_it_consumes() {
    let _serial = correlator_support::one_at_a_time().await;
    let t = Topics::create("metrics-corr").await;
    let out = outputs("metrics-corr", 3).await;
    let probe = free_port();
    let mut command = Command::new(binary());
    command
        .args(["correlator", "--bootstrap", tokentrail_integration_tests::kafka().bootstrap()])
        .args(["--group", &out.group, "--instance", &unique_name("metrics-corr")])
        .args(["--observations-topic", &t.observations, "--findings-topic", &out.findings])
        .args(["--changelog-topic", &out.changelog, "--commit-interval", "300ms"])
        .args(["--metrics-listen", &probe.to_string()]);
    let correlator = spawn(&mut command, "tokentrail correlator");
    assert_eq!(wait_for(probe, "/healthz", 200).await, "ok\n");
    assert_eq!(wait_for(probe, "/readyz", 200).await, "ready\n");
    let ready = Scrape::of(probe).await;
    let by_rule = ["tokentrail_correlator_findings_by_rule_total"];
    ready.assert_exposes(&registered("correlator/src/stream/telemetry.rs", "tokentrail_correlator_", &by_rule));
    // Ready means its partitions' state was restored: all three of the observations topic's.
    assert_eq!(ready.value("tokentrail_correlator_restores_total"), Some(3.0), "{}", ready.text);
    assert_eq!(ready.value("tokentrail_correlator_observations_total"), Some(0.0));

    // The example incident through the real aggregator into the observations topic.
    let lines: Vec<Vec<u8>> = incident_lines().into_iter().map(String::into_bytes).collect();
    produce_raw(&t.raw, &lines, None).await;
    let aggregator = aggregator_support::start(t.config()).await;
    let want = aggregator_support::expected(&lines, "prod").len();
    read_until(&t.observations, "the aggregator's observations", Duration::from_millis(300), |o| {
        aggregator_support::count_observations(o) >= want
    })
    .await;
    aggregator.stop().await;
    let moved = wait_for_value(probe, "tokentrail_correlator_observations_total", 1.0).await;
    assert!(moved.value("tokentrail_correlator_transactions_total") >= Some(1.0), "{}", moved.text);
    correlator.stop("the correlator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlator_without_brokers_is_alive_and_says_why_it_is_not_ready() {
    let probe = free_port();
    let nowhere = free_port();
    let mut command = Command::new(binary());
    command
        .args(["correlator", "--bootstrap", &nowhere.to_string(), "--group", "g", "--instance", "c-0"])
        .args(["--observations-topic", "o", "--findings-topic", "f", "--changelog-topic", "c"])
        .args(["--metrics-listen", &probe.to_string()]);
    // Killed when dropped, at the end.
    let _correlator = spawn(&mut command, "tokentrail correlator");
    assert_eq!(wait_for(probe, "/healthz", 200).await, "ok\n");
    let (status, body) = get(probe, "/readyz").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: not yet joined the group and restored its partitions' state\n")
    );
}
