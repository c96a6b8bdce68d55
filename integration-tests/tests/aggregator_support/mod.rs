//! Shared by `aggregator*.rs`: topics, a running aggregator, raw records in, observations and
//! dead letters out. Every wait is bounded and says what it waited for.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokentrail_aggregator::config::{AuditTopic, Config, KafkaConfig};
use tokentrail_aggregator::{AggregatorError, Metrics};
use tokentrail_integration_tests::{kafka, unique_name};
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::wire::batch::{record_observations, BATCH_HEADER};
use tokentrail_proto::wire::observation::v1 as pb;
use tokentrail_proto::wire::{BROADCAST_HEADER, HOME_HEADER};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest single wait; generous for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// The example incident's audit log, one event per line.
pub fn incident_lines() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/incident/audit.log");
    std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

pub async fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = kafka().client_config().create().unwrap();
    let new: Vec<NewTopic<'_>> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(WAIT))).await.unwrap() {
        r.unwrap();
    }
}

/// Topics of one test: raw (mapped to `prod`), raw without mapping, observations, dead letters.
pub struct Topics {
    pub raw: String,
    pub unmapped: String,
    pub observations: String,
    pub dead: String,
    pub group: String,
}

impl Topics {
    pub async fn create(prefix: &str) -> Topics {
        let t = Topics {
            raw: unique_name(&format!("{prefix}-raw")),
            unmapped: unique_name(&format!("{prefix}-raw-unmapped")),
            observations: unique_name(&format!("{prefix}-obs")),
            dead: unique_name(&format!("{prefix}-dlq")),
            group: unique_name(&format!("{prefix}-group")),
        };
        create_topics(&[(&t.raw, 2), (&t.unmapped, 1), (&t.observations, 3), (&t.dead, 1)]).await;
        t
    }

    pub fn config(&self) -> Config {
        let mut k = KafkaConfig::new(kafka().bootstrap());
        k.group_id = self.group.clone();
        k.audit_topics = vec![
            AuditTopic { topic: self.raw.clone(), cluster: Some("prod".into()) },
            AuditTopic { topic: self.unmapped.clone(), cluster: None },
        ];
        k.observations_topic = self.observations.clone();
        k.dead_letter_topic = self.dead.clone();
        k.batch_linger = Duration::from_millis(20);
        Config::new(k)
    }
}

/// An aggregator running in this process.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub addr: Option<SocketAddr>,
    pub webhook: Option<SocketAddr>,
    pub health: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AggregatorError>>,
}

pub async fn start(config: Config) -> Running {
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(tokentrail_aggregator::run(config, metrics.clone(), None, Some(bound_tx), async {
        let _ = stopped.await;
    }));
    let bound = tokio::time::timeout(WAIT, bound_rx).await.expect("servers bound").unwrap();
    Running { metrics, addr: bound.grpc, webhook: bound.webhook, health: bound.health, stop: Some(stop), task }
}

impl Running {
    /// Graceful: the batch under way is committed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task).await.expect("aggregator stopped").unwrap().unwrap();
    }

    /// A crash: the task is dropped wherever it is, nothing more is committed.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Produces raw records to partition 0 (in order), with an optional `cluster` header.
pub async fn produce_raw(topic: &str, values: &[Vec<u8>], cluster_header: Option<&str>) {
    // Idempotent: a retried batch neither repeats nor overtakes another.
    let producer: FutureProducer = kafka().client_config().set("enable.idempotence", "true").create().unwrap();
    // All enqueued, then every delivery awaited: one at a time, a record costs a linger and a
    // round trip (thousands took minutes). One partition keeps their order.
    let mut deliveries = Vec::with_capacity(values.len());
    for v in values {
        let mut record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(&v[..]).partition(0);
        if let Some(c) = cluster_header {
            record = record.headers(OwnedHeaders::new().insert(Header { key: "cluster", value: Some(c) }));
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    for delivery in deliveries {
        delivery.await.expect("the producer is alive").map_err(|(e, _)| e).unwrap();
    }
}

/// One record read back.
#[derive(Clone, Debug)]
pub struct Out {
    pub partition: i32,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub value: Vec<u8>,
}

impl Out {
    pub fn observation(&self) -> pb::Observation {
        pb::Observation::decode(&self.value[..]).unwrap()
    }

    /// A broadcast copy other than the home one.
    pub fn is_extra_copy(&self) -> bool {
        self.headers.contains_key("tokentrail-broadcast") && !self.headers.contains_key("tokentrail-home")
    }
}

/// Reads `topic` from the start until `done` says so, then `quiet` more time (to catch extras).
pub async fn read_until(topic: &str, what: &str, quiet: Duration, done: impl Fn(&[Out]) -> bool) -> Vec<Out> {
    read_records(kafka().bootstrap(), topic, "read_uncommitted", what, quiet, done).await
}

/// [`read_until`] as a reader that sees only committed transactions does.
pub async fn read_committed_until(topic: &str, what: &str, quiet: Duration, done: impl Fn(&[Out]) -> bool) -> Vec<Out> {
    read_records(kafka().bootstrap(), topic, "read_committed", what, quiet, done).await
}

/// [`read_committed_until`] on the brokers at `bootstrap` (a drill's own).
pub async fn read_committed_from(
    bootstrap: &str,
    topic: &str,
    what: &str,
    quiet: Duration,
    done: impl Fn(&[Out]) -> bool,
) -> Vec<Out> {
    read_records(bootstrap, topic, "read_committed", what, quiet, done).await
}

async fn read_records(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    what: &str,
    quiet: Duration,
    done: impl Fn(&[Out]) -> bool,
) -> Vec<Out> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut done_at: Option<Instant> = None;
    loop {
        if let Some(t) = done_at {
            if t.elapsed() >= quiet {
                return out;
            }
        } else if start.elapsed() > WAIT {
            panic!("timed out waiting for {what} on {topic}: have {} records", out.len());
        }
        match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.extend(records(
                    m.partition(),
                    m.key().unwrap_or_default(),
                    headers,
                    m.payload().unwrap_or_default(),
                ));
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => {}
        }
        if done_at.is_none() && done(&out) {
            done_at = Some(Instant::now());
        }
    }
}

/// A record read back, as one [`Out`] per observation: a batch of observations
/// (`tokentrail_proto::wire::batch`) as the single records it stands for, with the key and
/// headers each would have had; any other record as it is.
fn records(partition: i32, key: &[u8], headers: BTreeMap<String, String>, value: &[u8]) -> Vec<Out> {
    let flag = |name: &str| headers.get(name).is_some_and(|v| v == "1");
    if !flag(BATCH_HEADER) {
        return vec![Out { partition, key: String::from_utf8_lossy(key).into_owned(), headers, value: value.to_vec() }];
    }
    let entries = record_observations(key, value, flag).expect("a batch of observations");
    entries
        .into_iter()
        .map(|e| {
            let mut headers = BTreeMap::new();
            for (name, on) in [(BROADCAST_HEADER, e.broadcast), (HOME_HEADER, e.home)] {
                if on {
                    headers.insert(name.to_string(), "1".to_string());
                }
            }
            let value = e.observation.expect("an observation").encode_to_vec();
            Out { partition, key: e.key, headers, value }
        })
        .collect()
}

/// What the decoders make of `values` for `cluster`, as protobuf bytes, sorted (a multiset),
/// node facts left out: the aggregator broadcasts only those that add to what the partitions
/// hold, which depends on the order records are processed in ([`node_knowledge`] compares what
/// they add up to).
pub fn expected(values: &[Vec<u8>], cluster: &str) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for v in values {
        let mut decoded = tokentrail_aggregator_core::Decoded::new();
        tokentrail_aggregator_core::decode_value(v, &mut decoded);
        all.extend(
            decoded
                .observations
                .iter()
                .filter(|o| !matches!(o, tokentrail_proto::Observation::Node(_)))
                .map(|o| tokentrail_proto::wire::to_proto(cluster, o).encode_to_vec()),
        );
    }
    all.sort();
    all
}

/// Whether a record is a node fact or a progress (see [`expected`]), by its broadcast key
/// (`aggregator_core::route`): cheap enough for a `read_until` condition over every record.
fn about_nodes(o: &Out) -> bool {
    o.key.ends_with("/~broadcast/node") || o.key.ends_with("/~broadcast/progress")
}

/// The observations read, one per observation (broadcast extra copies, node facts and
/// progress left out), sorted.
pub fn observed(out: &[Out]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> =
        out.iter().filter(|o| !o.is_extra_copy() && !about_nodes(o)).map(|o| o.value.clone()).collect();
    v.sort();
    v
}

pub fn count_observations(out: &[Out]) -> usize {
    out.iter().filter(|o| !o.is_extra_copy() && !about_nodes(o)).count()
}

/// What node facts add up to, per `(cluster, node)`: addresses, pod CIDRs and OS, as text.
pub type NodeKnowledge = BTreeMap<(String, String), std::collections::BTreeSet<String>>;

/// [`NodeKnowledge`] of the node facts the decoders make of `values` for `cluster`.
pub fn expected_node_knowledge(values: &[Vec<u8>], cluster: &str, into: &mut NodeKnowledge) {
    for v in values {
        let mut decoded = tokentrail_aggregator_core::Decoded::new();
        tokentrail_aggregator_core::decode_value(v, &mut decoded);
        for o in &decoded.observations {
            if let tokentrail_proto::Observation::Node(n) = o {
                let known = into.entry((cluster.to_string(), n.name.clone())).or_default();
                known.extend(n.addresses.iter().map(|a| format!("address {a}")));
                known.extend(n.pod_cidrs.iter().map(|c| format!("cidr {c}")));
                known.extend(n.os.iter().map(|os| format!("os {os}")));
            }
        }
    }
}

/// [`NodeKnowledge`] of the node facts read (home copies).
pub fn node_knowledge(out: &[Out]) -> NodeKnowledge {
    let mut into = NodeKnowledge::new();
    for o in out.iter().filter(|o| !o.is_extra_copy()) {
        let observation = o.observation();
        if let Some(pb::observation::Kind::Node(_)) = observation.kind {
            let Some((cluster, tokentrail_proto::Observation::Node(n))) =
                tokentrail_proto::wire::from_proto(&observation)
            else {
                panic!("an undecodable node fact")
            };
            let known = into.entry((cluster, n.name.clone())).or_default();
            known.extend(n.addresses.iter().map(|a| format!("address {a}")));
            known.extend(n.pod_cidrs.iter().map(|c| format!("cidr {c}")));
            known.extend(n.os.iter().map(|os| format!("os {os}")));
        }
    }
    into
}

pub fn test_tls(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/data/tls").join(name)
}

/// The real agent of node `worker-1`, in this process, sending to the aggregator at `addr`
/// over mTLS with the worker-1 client certificate.
pub struct RealAgent {
    pub metrics: Arc<tokentrail_agent::Metrics>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tokentrail_agent::AgentError>>,
}

impl RealAgent {
    /// Starts it on the kubelet directory `kubelet`, with its own token from `bearer_token_file`.
    pub fn start(
        kubelet: &std::path::Path,
        addr: SocketAddr,
        bearer_token_file: Option<std::path::PathBuf>,
    ) -> RealAgent {
        let mut config =
            tokentrail_agent::Config::new(kubelet.to_path_buf(), "worker-1".into(), format!("https://{addr}"));
        config.inotify = false;
        config.sender.bearer_token_file = bearer_token_file;
        config.sender.tls = Some(tokentrail_agent::sender::TlsFiles {
            ca: test_tls("ca.pem"),
            cert: Some(test_tls("client.pem")),
            key: Some(test_tls("client.key")),
            server_name: Some("aggregator.test".into()),
        });
        let metrics = Arc::new(tokentrail_agent::Metrics::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tokentrail_agent::run(config, None, metrics.clone(), async {
            let _ = stopped.await;
        }));
        RealAgent { metrics, stop, task }
    }

    /// Waits until the aggregator acknowledged a message.
    pub async fn wait_for_ack(&self) {
        let deadline = Instant::now() + WAIT;
        while tokentrail_agent::Metrics::get(&self.metrics.messages_acked_total) == 0 {
            assert!(Instant::now() < deadline, "the agent got no ack");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A channel to the attestation server at `addr` over TLS, with the worker-1 client
/// certificate when `with_identity`.
pub async fn mtls_channel(
    addr: SocketAddr,
    with_identity: bool,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |n: &str| std::fs::read(test_tls(n)).unwrap();
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem"))).domain_name("aggregator.test");
    if with_identity {
        tls = tls.identity(Identity::from_pem(read("client.pem"), read("client.key")));
    }
    Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await
}

/// A pod of account `shop/web` as an agent attests it.
pub fn attested_pod(name: &str) -> agent::Pod {
    agent::Pod {
        uid: format!("uid-{name}"),
        namespace: "shop".into(),
        name: name.into(),
        serviceaccount: "web".into(),
        ips: vec!["10.244.1.19".into()],
        ..Default::default()
    }
}

/// An agent's first message: a snapshot of `node` with `pods`.
pub fn snapshot(agent_id: &str, node: &str, pods: Vec<agent::Pod>) -> agent::AgentMessage {
    agent::AgentMessage {
        agent_id: agent_id.into(),
        sequence: 1,
        node_name: node.into(),
        observed_at_micros: 1_773_129_600_000_000,
        body: Some(agent::agent_message::Body::Snapshot(agent::NodeSnapshot { pods, ..Default::default() })),
    }
}
