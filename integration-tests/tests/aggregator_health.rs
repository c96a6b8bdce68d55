//! The aggregator's probes and consumer lag against the real broker:
//! * the real `tokentrail aggregator` process answers `/healthz` at once and `/readyz` with 503
//!   while it has no broker, 200 once its producer is up and its consumer has joined the group;
//!   it exits 0 on SIGTERM;
//! * the lag gauge shows a batch's records as lag while they are uncommitted, and 0 once the
//!   batch is committed, per topic and partition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod aggregator_support;
mod correlator_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aggregator_support::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokentrail_aggregator::Metrics;
use tokentrail_integration_tests::kafka;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`: the status code and body, or the connection error.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `path` until it answers `status`; the body.
async fn wait_for(addr: SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get(addr, path).await;
        if let Ok((s, body)) = &answer {
            if *s == status {
                return body.clone();
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}: last {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free port on 127.0.0.1 for a process to listen on.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn aggregator_process(bootstrap: &str, t: &Topics, health: SocketAddr) -> std::process::Child {
    Command::new(correlator_support::binary())
        .args(["aggregator", "--bootstrap-servers", bootstrap, "--audit-topic", &format!("{}=prod", t.raw)])
        .args(["--observations-topic", &t.observations, "--dead-letter-topic", &t.dead])
        .args(["--health-listen", &health.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tokentrail aggregator")
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
