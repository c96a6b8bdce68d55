//! What the pipeline produced, read back: the observations the agents' attestations became
//! (so the scenario waits for a fact before it depends on it), and the findings, read with
//! `isolation.level=read_committed` once the pipeline has consumed everything it was given.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers as _;
use rdkafka::{Message, Offset};
use tokentrail_integration_tests::unique_name;
use tokentrail_proto::wire::batch::record_observations;
use tokentrail_proto::wire::observation::v1 as pb;

use super::super::correlator_support::{answered, caught_up, Retrying};
use super::{client, Pipeline, WAIT};

/// The observations topic, read as it fills.
pub struct Observed {
    consumer: StreamConsumer,
    seen: Vec<pb::Observation>,
}

impl Observed {
    pub fn new(bootstrap: &str, topic: &str) -> Observed {
        let consumer: StreamConsumer = reader(bootstrap).create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Observed { consumer, seen: Vec::new() }
    }

    /// Reads on until `done` holds; panics after [`WAIT`] naming `what`.
    pub async fn wait_for(&mut self, what: &str, done: impl Fn(&Observed) -> bool) {
        let start = Instant::now();
        let mut retrying = Retrying::default();
        while !done(self) {
            assert!(start.elapsed() < WAIT, "timed out waiting for {what} in the observations topic");
            match tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let flag = |name: &str| {
                        m.headers().is_some_and(|h| h.iter().any(|h| h.key == name && h.value == Some(b"1".as_slice())))
                    };
                    let entries =
                        record_observations(m.key().unwrap_or_default(), m.payload().unwrap_or_default(), flag)
                            .expect("an observation or a batch of them");
                    self.seen.extend(entries.into_iter().filter_map(|e| e.observation));
                }
                // The broker is away (a drill stopped it): the consumer reconnects by itself, and
                // WAIT bounds how long that may take.
                Ok(Err(e)) => retrying.report("reading the observations topic", &e).await,
                Err(_) => {}
            }
        }
        // Shown with a failed test's output: where the time went.
        eprintln!("e2e: {what} after {:.1} s", start.elapsed().as_secs_f64());
    }

    fn kinds(&self) -> impl Iterator<Item = &pb::observation::Kind> {
        self.seen.iter().filter_map(|o| o.kind.as_ref())
    }

    /// An agent's report of `node` (its addresses and pod network) has arrived.
    pub fn node_reported(&self, node: &str) -> bool {
        self.kinds().any(|k| {
            matches!(k, pb::observation::Kind::Node(n) if n.name == node && n.source == pb::FactSource::Attestation as i32)
        })
    }

    /// An agent attested that a pod holds credential `jti`.
    pub fn credential_attested(&self, jti: &str) -> bool {
        self.kinds().any(|k| match k {
            pb::observation::Kind::Credential(c) => matches!(
                c.credential.as_ref().and_then(|c| c.kind.as_ref()),
                Some(pb::credential::Kind::PodBound(p)) if p.jti.as_deref() == Some(jti)
            ),
            _ => false,
        })
    }

    /// An agent reported the pod with this uid deleted.
    pub fn pod_deleted(&self, uid: &str) -> bool {
        self.kinds().any(|k| {
            matches!(k, pb::observation::Kind::Pod(p) if p.uid.as_deref() == Some(uid) && p.event == pb::PodEvent::Deleted as i32)
        })
    }
}

/// A consumer of the test's own, reading everything committed from the start.
pub fn reader(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = client(bootstrap);
    c.set("group.id", unique_name("e2e-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Findings are written in transactions: only committed ones count.
        .set("isolation.level", "read_committed");
    c
}

/// One finding, by what it is about: its rule, the credential (a JTI as `JTI=...`, or a legacy
/// token's Secret; empty for findings about a principal) and the client address (the lowest,
/// for a finding about several).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subject {
    pub rule: String,
    pub credential: String,
    pub source_ip: String,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} from {}", self.rule, self.credential, self.source_ip)
    }
}

/// A finding as read back: how many records created it (exactly one is right), and its latest
/// state.
#[derive(Clone, Debug)]
pub struct Finding {
    pub id: String,
    pub subject: Subject,
    pub creates: usize,
    pub value: serde_json::Value,
}

impl Pipeline {
    /// Waits until the aggregators have consumed the raw topic to its end and the correlators
    /// the observations topic, all of it committed; then returns the findings topic's committed
    /// content, by finding id.
    pub async fn settled_findings(&mut self) -> BTreeMap<String, Finding> {
        self.restart_failed_and_assert_running();
        caught_up(&self.bootstrap, &self.topics.aggregator_group, &self.topics.raw, "the aggregators").await;
        caught_up(&self.bootstrap, &self.topics.correlator_group, &self.topics.observations, "the correlators").await;
        // A replica that exited while the others caught up left its last transaction aborted:
        // the group is caught up only once its restart has redone that work.
        let restarts = self.restarts;
        self.restart_failed_and_assert_running();
        if self.restarts > restarts {
            caught_up(&self.bootstrap, &self.topics.correlator_group, &self.topics.observations, "the correlators")
                .await;
        }
        self.findings().await
    }

    /// The findings topic's committed content now.
    pub async fn findings(&self) -> BTreeMap<String, Finding> {
        let consumer: StreamConsumer = reader(&self.bootstrap).set("enable.partition.eof", "true").create().unwrap();
        consumer.subscribe(&[&self.topics.findings]).unwrap();
        let topic = &self.topics.findings;
        let partitions = answered(&format!("the metadata of {topic}"), || {
            consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).map(|m| m.topics()[0].partitions().len())
        })
        .await;
        // The partitions read to their end; each reports its end again after every later record.
        let mut ended = std::collections::BTreeSet::new();
        let mut records = Vec::new();
        let mut retrying = Retrying::default();
        let start = Instant::now();
        while ended.len() < partitions {
            assert!(start.elapsed() < WAIT, "timed out reading the findings topic to its end");
            match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
                Ok(Ok(m)) => {
                    ended.remove(&m.partition());
                    records.push(super::super::aggregator_support::Out {
                        partition: m.partition(),
                        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                        headers: headers(&m),
                        value: m.payload().unwrap_or_default().to_vec(),
                    })
                }
                // The end of what is committed; the end of the partition only once the last
                // transaction's commit marker is written, which follows its offsets' commit.
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    let (_, high) = answered(&format!("the end of {topic}/{p}"), || {
                        consumer.fetch_watermarks(topic, p, Duration::from_secs(5))
                    })
                    .await;
                    let position = consumer.position().unwrap();
                    if let Some(Offset::Offset(at)) =
                        position.find_partition(&self.topics.findings, p).map(|e| e.offset())
                    {
                        if at >= high {
                            ended.insert(p);
                            continue;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // A report, not the end: a broker of a cluster went away (a drill killed it)
                // and the client moves to the partition's new leader by itself; WAIT bounds it.
                Ok(Err(e)) => retrying.report("reading the findings", &e).await,
                Err(_) => {}
            }
        }
        super::super::correlator_support::by_id(&records)
            .into_iter()
            .map(|(id, (creates, value))| (id.clone(), Finding { id, subject: subject_of(&value), creates, value }))
            .collect()
    }
}

/// What a finding record is about: its rule, credential and address.
pub fn subject_of(value: &serde_json::Value) -> Subject {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let credential = &value["credential"];
    Subject {
        rule: text(&value["rule"]),
        credential: if credential["id"].is_string() { text(&credential["id"]) } else { text(&credential["secret"]) },
        // A finding about several addresses lists them instead (in address order); how many it
        // lists depends on whether a later use was material enough for an update, so the first
        // one names it.
        source_ip: match value["source_ip"].as_str() {
            Some(ip) => ip.to_string(),
            None => value["source_ips"].get(0).map(text).unwrap_or_default(),
        },
    }
}

fn headers(m: &rdkafka::message::BorrowedMessage<'_>) -> BTreeMap<String, String> {
    use rdkafka::message::Headers as _;
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
