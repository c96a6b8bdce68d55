//! `tokentrail replay` into a raw audit topic of the real broker, with the real binary: every
//! line of a log arrives once, in order, in records under the size limit with the `cluster`
//! header; a document that cannot be cut small enough is reported with its file and the rest is
//! still sent. (Into the webhook: `standalone.rs`, where the replayed incident's findings are
//! checked.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use correlator_support::binary;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;
use tokentrail_integration_tests::{kafka, unique_name};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_log_replayed_into_a_raw_topic_arrives_whole_in_order_in_small_records() {
    let broker = kafka();
    let topic = unique_name("replay-raw");
    let admin: AdminClient<DefaultClientContext> = broker.client_config().create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    for r in admin.create_topics(&[new], &AdminOptions::new().operation_timeout(Some(WAIT))).await.unwrap() {
        r.unwrap();
    }
    let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident/audit.log");
    let dir = tempfile::tempdir().unwrap();
    // One event too large for any record, and no list to cut it at.
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, format!("{{\n  \"message\": \"{}\"\n}}\n", "x".repeat(20_000))).unwrap();
    let out = Command::new(binary())
        .args(["replay", "--to-kafka", &topic, "--bootstrap-servers", broker.bootstrap()])
        .args(["--cluster", "shop-prod", "--max-record-bytes", "16384"])
        .arg(&huge)
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a record not sent is exit 1: {stderr}");
    assert!(
        stderr.contains(&format!("{}: not sent: ", huge.display())) && stderr.contains("with no list to cut it"),
        "{stderr}"
    );

    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_name("replay-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received: Vec<String> = Vec::new();
    while received.len() < lines.len() {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {} lines after {WAIT:?}", received.len(), lines.len()))
            .unwrap();
        let payload = message.payload().unwrap();
        assert!(payload.len() <= 16384, "a record of {} bytes", payload.len());
        let headers = message.headers().expect("headers");
        let cluster = headers.iter().find(|h| h.key == "cluster").and_then(|h| h.value);
        assert_eq!(cluster, Some(&b"shop-prod"[..]));
        received.extend(String::from_utf8(payload.to_vec()).unwrap().lines().map(String::from));
    }
    assert_eq!(received, lines, "every line once, in order");
    assert!(stderr.contains(&format!("{} events in", lines.len())), "{stderr}");
}
