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

/// A new raw audit topic of one partition.
async fn raw_topic(prefix: &str) -> String {
    let topic = unique_name(prefix);
    let admin: AdminClient<DefaultClientContext> = kafka().client_config().create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    for r in admin.create_topics(&[new], &AdminOptions::new().operation_timeout(Some(WAIT))).await.unwrap() {
        r.unwrap();
    }
    topic
}

/// A consumer of `topic` from its beginning.
fn reader(topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = kafka()
        .client_config()
        .set("group.id", unique_name("replay-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

#[tokio::test]
async fn a_log_replayed_into_a_raw_topic_arrives_whole_in_order_in_small_records() {
    let broker = kafka();
    let topic = raw_topic("replay-raw").await;
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
    let consumer = reader(&topic);
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

/// A one-document export cut short (a copy that stopped): the events before the cut arrive, as
/// `analyze` would read them, and the loss is reported with the file and line, exit 1.
#[tokio::test]
async fn a_cut_document_is_salvaged_up_to_its_last_whole_event_and_the_loss_reported() {
    let broker = kafka();
    let topic = raw_topic("replay-cut").await;
    let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident/audit.log");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(10)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Pretty-printed as `kubectl get --raw` or a SIEM export would write it, then cut in the
    // middle of the eighth event.
    let whole = serde_json::to_string_pretty(
        &serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events}),
    )
    .unwrap();
    let eighth = whole.find(events[7]["auditID"].as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.json");
    std::fs::write(&cut, &whole[..eighth]).unwrap();

    let out = Command::new(binary())
        .args(["replay", "--to-kafka", &topic, "--bootstrap-servers", broker.bootstrap(), "--cluster", "shop-prod"])
        .arg(&cut)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a loss is exit 1: {stderr}");
    assert!(
        stderr.contains(&format!("{}: cut short", cut.display())) && stderr.contains("the 7 entries up to line"),
        "{stderr}"
    );

    let consumer = reader(&topic);
    let message = tokio::time::timeout(WAIT, consumer.recv()).await.expect("the salvaged record").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    // Its keys written in order, as kubectl writes them: `kind` came after the list and was cut.
    assert_eq!(doc["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(doc["items"].as_array().unwrap()[..], events[..7], "the seven whole events, as they were");
}
