//! The aggregator's probes and consumer lag against the real broker:
//! * the real `tokentrail aggregator` process answers `/healthz` at once and `/readyz` with 503
//!   while it has no broker, 200 once its producer is up and its consumer has joined the group;
//!   it exits 0 on SIGTERM;
//! * the same listener serves `/metrics`: every unlabelled instrument typed, and the records
//!   counter moving once raw records are consumed; `--metrics-listen` names that listener, and
//!   a second address is refused with exit 2;
//! * the lag gauge shows a batch's records as lag while they are uncommitted, and 0 once the
//!   batch is committed, per topic and partition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod aggregator_support;
mod correlator_support;
mod probe_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aggregator_support::*;
use probe_support::{free_port, get, registered, wait_for, Scrape};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokentrail_aggregator::Metrics;
use tokentrail_integration_tests::kafka;

fn aggregator_process(bootstrap: &str, t: &Topics, health: SocketAddr) -> std::process::Child {
    aggregator_command(bootstrap, t)
        .args(["--health-listen", &health.to_string()])
        .spawn()
        .expect("start tokentrail aggregator")
}

fn aggregator_command(bootstrap: &str, t: &Topics) -> Command {
    let mut command = Command::new(correlator_support::binary());
    command
        .args(["aggregator", "--bootstrap-servers", bootstrap, "--audit-topic", &format!("{}=prod", t.raw)])
        .args(["--observations-topic", &t.observations, "--dead-letter-topic", &t.dead])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_process_is_live_at_once_and_ready_once_kafka_is_reached() {
    let t = Topics::create("agg-probes").await;

    // No broker behind this one: alive, never ready.
    let nowhere = free_port();
    let probe = free_port();
    let stranded = aggregator_process(&nowhere.to_string(), &t, probe);
    assert_eq!(wait_for(probe, "/healthz", 200).await, "ok\n");
    let (status, body) = get(probe, "/readyz").await.unwrap();
    assert_eq!((status, body.as_str()), (503, "not ready: the producer has no broker connection\n"));
    correlator_support::kill9(stranded);

    let probe = free_port();
    let aggregator = aggregator_process(kafka().bootstrap(), &t, probe);
    wait_for(probe, "/healthz", 200).await;
    assert_eq!(wait_for(probe, "/readyz", 200).await, "ready\n");
    correlator_support::stop(aggregator);
}

/// Instruments with attributes, which have no point until something happened.
const ONLY_ONCE_OBSERVED: &[&str] = &[
    "tokentrail_aggregator_cluster_records_in_total",
    "tokentrail_aggregator_cluster_observations_out_total",
    "tokentrail_aggregator_agent_tokens_refused_total",
    "tokentrail_aggregator_webhook_requests_refused_total",
    "tokentrail_aggregator_consumer_lag",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_serves_metrics_which_move_as_records_are_consumed() {
    let t = Topics::create("agg-metrics").await;
    let probe = free_port();
    // --metrics-listen names the probe listener: given alone, it enables it.
    let aggregator = aggregator_command(kafka().bootstrap(), &t)
        .args(["--metrics-listen", &probe.to_string()])
        .spawn()
        .expect("start tokentrail aggregator");
    wait_for(probe, "/readyz", 200).await;
    let before = Scrape::of(probe).await;
    before.assert_exposes(&registered("aggregator/src/telemetry.rs", "tokentrail_aggregator_", ONLY_ONCE_OBSERVED));
    assert_eq!(before.value("tokentrail_aggregator_records_in_total"), Some(0.0));
    assert!(before.text.contains(r#"tokentrail_aggregator_connections_accepted_total{listener="health"}"#));
    assert!(before.text.contains(r#"service_name="tokentrail-aggregator""#), "target_info: {}", before.text);

    let lines: Vec<Vec<u8>> = incident_lines().into_iter().take(3).map(String::into_bytes).collect();
    produce_raw(&t.raw, &lines, None).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now = Scrape::of(probe).await;
        // The total counts a record when it is consumed, the per-cluster count when its batch
        // is done (produced and committed): a scrape in between sees only the first.
        if now.value("tokentrail_aggregator_records_in_total") == Some(3.0)
            && now.value("tokentrail_aggregator_cluster_records_in_total").is_some()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records_in_total never reached 3 with a per-cluster count beside it:\n{}",
            now.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    correlator_support::stop(aggregator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_and_health_listen_on_two_addresses_are_refused() {
    let t = Topics::create("agg-two-listeners").await;
    let output = aggregator_command(kafka().bootstrap(), &t)
        .args(["--health-listen", &free_port().to_string(), "--metrics-listen", &free_port().to_string()])
        .stderr(Stdio::piped())
        .output()
        .expect("run tokentrail aggregator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("are two addresses for one listener"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_counts_uncommitted_records_per_partition() {
    let t = Topics::create("agg-lag").await;
    // The group's committed offsets start at 0: lag is defined from the first statistics on.
    let committer: BaseConsumer = kafka().client_config().set("group.id", &t.group).create().unwrap();
    let mut from_zero = TopicPartitionList::new();
    for (topic, partition) in [(&t.raw, 0), (&t.raw, 1), (&t.unmapped, 0)] {
        from_zero.add_partition_offset(topic, partition, Offset::Offset(0)).unwrap();
    }
    committer.commit(&from_zero, CommitMode::Sync).unwrap();
    let lines: Vec<Vec<u8>> = incident_lines().into_iter().take(5).map(String::into_bytes).collect();
    produce_raw(&t.raw, &lines, None).await;

    let mut config = t.config();
    // One batch, held for 5 s after its first record: the lag is visible meanwhile.
    config.kafka.batch_linger = Duration::from_secs(5);
    config.kafka.client.insert("statistics.interval.ms".into(), "200".into());
    let aggregator = start(config).await;
    let metrics = aggregator.metrics.clone();
    let lag_of = |partition: i32| metrics.consumer_lag().get(&(t.raw.clone(), partition)).copied();
    let deadline = Instant::now() + WAIT;
    while lag_of(0) != Some(5) {
        assert!(Instant::now() < deadline, "no lag of 5 seen: {:?}", metrics.consumer_lag());
        assert_eq!(Metrics::get(&metrics.commits_total), 0, "committed before the lag was seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lag_of(1), Some(0), "nothing produced to partition 1");
    while lag_of(0) != Some(0) {
        assert!(Instant::now() < deadline, "lag not back to 0: {:?}", metrics.consumer_lag());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Metrics::get(&metrics.commits_total) >= 1);
    aggregator.stop().await;
}
