//! The whole pipeline as deployed, for `e2e*.rs`: a fake Kubernetes API server, one `tokentrail
//! agent` process per node (its own kubelet directory, its own relay to its aggregator),
//! `tokentrail aggregator` and `tokentrail correlator` processes, the real broker in between, and
//! a scenario driver that writes the cluster's audit events to the raw topic.
//!
//! Layout: `cluster` (nodes, pods, tokens, kubelet files), `kube_api` (the API server the agents
//! watch), `audit` (the audit events), `process` (starting and signalling the binary), `cable`
//! (a relay the test can cut), `findings` (what came out, and waiting until everything has).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

pub mod audit;
pub mod cable;
pub mod cluster;
pub mod drill;
pub mod findings;
pub mod kube_api;
pub mod process;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokentrail_integration_tests::{kafka, unique_name};

use self::audit::Token;
use self::cable::Cable;
use self::cluster::{legacy_token, pod_token, Kubelet, Node, Pod};
use self::findings::Observed;
use self::kube_api::KubeApi;
use self::process::{free_port, Process};

/// Longest wait for one condition; generous for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(120);

/// The cluster name the aggregators give the raw topic's events and the agents' attestations.
pub const CLUSTER: &str = "prod";

/// The aggregators' `max_record_bytes`: larger raw records are dead letters.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// How the pipeline is laid out.
pub struct Layout {
    /// Nodes the fake API server serves, each with a kubelet directory in the pipeline's own.
    pub nodes: Vec<Node>,
    /// Nodes of a real apiserver (`kube/cluster.sh`): the agent watches it with the node's own
    /// kubeconfig and reads the kubelet directory the test writes; the fake API never hears of
    /// them. The test registers them in the apiserver before the pipeline starts.
    pub real_nodes: Vec<RealNode>,
    /// A port on 127.0.0.1 where the first aggregator serves the audit webhook, in plain HTTP,
    /// for an apiserver's webhook backend.
    pub audit_webhook_port: Option<u16>,
    pub aggregators: usize,
    pub correlators: usize,
    /// Partitions of the observations topic (and so of the changelog).
    pub partitions: i32,
    /// Partitions of the findings topic: 1 unless a test is about their placement (deploy/
    /// creates as many as the observations, so a frozen replica holds back only its own).
    pub findings_partitions: i32,
    /// `--rotation-grace` of the correlators.
    pub rotation_grace: &'static str,
    /// `--commit-interval` of the correlators.
    pub commit_interval: &'static str,
    /// Restart a correlator that exited on a Kafka failure, as Kubernetes restarts a pod
    /// (`restartPolicy: Always`) instead of failing the test: a replica whose transaction a dead
    /// broker lost exits by design, and its restart redoes the work from the changelog. Other
    /// exits (a panic, a bad config) still fail the test.
    pub restart_on_kafka_failure: bool,
    /// `--session-timeout` and `--transaction-timeout` of the correlators; `None`: theirs.
    pub session_timeout: Option<&'static str>,
    pub transaction_timeout: Option<&'static str>,
    /// Replicas of every topic the pipeline creates; above 1 (a cluster: [`OwnCluster`]), with
    /// `min.insync.replicas` one less, and the test's own producer idempotent, as the
    /// pipeline's are, so a lost leader does not double a raw record.
    ///
    /// [`OwnCluster`]: tokentrail_integration_tests::OwnCluster
    pub replication: i32,
    /// The broker's bootstrap address; `None`: the broker the tests share ([`kafka()`]).
    pub bootstrap: Option<String>,
    /// An OTLP/gRPC collector the aggregators export their metrics to, every 500 ms, each as
    /// `service.instance.id` `aggregator-<i>`; `None`: no export.
    pub aggregator_metrics: Option<String>,
    /// How the aggregators and correlators reach the broker, when not as the test does (the
    /// broker's PLAINTEXT listener): a secure listener and its settings.
    pub secure: Option<SecureKafka>,
}

/// A secure listener of the broker, for the pipeline's processes (the test's own clients stay
/// on the PLAINTEXT listener).
#[derive(Clone, Debug)]
pub struct SecureKafka {
    /// The listener's `bootstrap.servers`.
    pub bootstrap: String,
    /// The aggregators' `kafka.security` section.
    pub aggregator_security: Value,
    /// The correlators' security flags (`--kafka-security-protocol ...`).
    pub correlator_flags: Vec<String>,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            nodes: vec![Node::worker(1), Node::worker(2), Node::worker(3)],
            real_nodes: Vec::new(),
            audit_webhook_port: None,
            aggregators: 2,
            correlators: 2,
            partitions: 4,
            findings_partitions: 1,
            rotation_grace: "2s",
            commit_interval: "300ms",
            restart_on_kafka_failure: false,
            session_timeout: None,
            transaction_timeout: None,
            replication: 1,
            bootstrap: None,
            aggregator_metrics: None,
            secure: None,
        }
    }
}

/// A node of a real apiserver, as its agent sees it.
#[derive(Clone, Debug)]
pub struct RealNode {
    pub node: Node,
    /// The node's own kubeconfig, so the Node authorizer limits what its agent may see.
    pub kubeconfig: std::path::PathBuf,
    /// The node's `/var/lib/kubelet/pods`.
    pub kubelet_dir: std::path::PathBuf,
}

/// The topics and consumer groups of one pipeline.
pub struct Topics {
    pub raw: String,
    pub observations: String,
    pub dead_letters: String,
    pub findings: String,
    pub changelog: String,
    pub aggregator_group: String,
    pub correlator_group: String,
}

/// One node's agent and what it reads.
pub struct NodeAgent {
    pub node: Node,
    pub kubelet: Kubelet,
    pub cable: Cable,
    pub process: Process,
}

/// A running pipeline.
pub struct Pipeline {
    /// The broker everything reaches.
    pub bootstrap: String,
    pub api: KubeApi,
    pub topics: Topics,
    pub aggregators: Vec<Process>,
    pub aggregator_ports: Vec<u16>,
    pub agents: BTreeMap<String, NodeAgent>,
    pub correlators: Vec<Process>,
    pub observed: Observed,
    correlator_args: Vec<Vec<String>>,
    /// [`Layout::restart_on_kafka_failure`].
    restart_on_kafka_failure: bool,
    /// Correlators restarted after a Kafka failure.
    pub restarts: usize,
    producer: FutureProducer,
    /// The processes' files and logs. Last, so it is dropped last: a failed test's processes
    /// print their logs' tails when dropped, which needs the logs still there.
    pub dir: tempfile::TempDir,
}

impl Pipeline {
    pub async fn start(prefix: &str, layout: Layout) -> Pipeline {
        let started = std::time::Instant::now();
        let dir = tempfile::Builder::new().prefix(&format!("tokentrail-{prefix}-")).tempdir().unwrap();
        let bootstrap = layout.bootstrap.clone().unwrap_or_else(|| kafka().bootstrap().to_owned());
        let topics = create_topics(&bootstrap, prefix, &layout).await;
        let api = KubeApi::start().await;
        let kubeconfig = api.kubeconfig(dir.path());

        let mut aggregators = Vec::new();
        let mut aggregator_ports = Vec::new();
        for i in 0..layout.aggregators {
            let port = free_port();
            let config = dir.path().join(format!("aggregator-{i}.json"));
            let webhook = layout.audit_webhook_port.filter(|_| i == 0);
            let mut json = aggregator_config(&bootstrap, &topics, port, webhook);
            if let Some(secure) = &layout.secure {
                json["kafka"]["bootstrap_servers"] = Value::from(secure.bootstrap.clone());
                json["kafka"]["security"] = secure.aggregator_security.clone();
            }
            std::fs::write(&config, json.to_string()).unwrap();
            let name = format!("aggregator-{i}");
            let mut args = vec!["aggregator".into(), "--config".into(), config.display().to_string()];
            let mut env = vec![];
            if let Some(collector) = &layout.aggregator_metrics {
                args.extend(["--otlp-endpoint".into(), collector.clone()]);
                env.push(("OTEL_METRIC_EXPORT_INTERVAL".into(), "500".into()));
                env.push(("OTEL_RESOURCE_ATTRIBUTES".into(), format!("service.instance.id={name}")));
            }
            aggregators.push(Process::start(dir.path(), &name, args, env));
            aggregator_ports.push(port);
        }

        let mut agents = BTreeMap::new();
        let fake = layout.nodes.iter().map(|node| {
            api.put_node(node.api_object());
            (node, dir.path().join("kubelet").join(&node.name), &kubeconfig)
        });
        let real = layout.real_nodes.iter().map(|r| (&r.node, r.kubelet_dir.clone(), &r.kubeconfig));
        for (i, (node, kubelet_dir, kubeconfig)) in fake.chain(real).enumerate() {
            let kubelet = Kubelet::new(&kubelet_dir);
            let cable = Cable::lay(aggregator_ports[i % aggregator_ports.len()]).await;
            let args = agent_args(node, &kubelet, &cable);
            let env = vec![("KUBECONFIG".to_string(), kubeconfig.display().to_string())];
            let process = Process::start(dir.path(), &format!("agent-{}", node.name), args, env);
            agents.insert(node.name.clone(), NodeAgent { node: node.clone(), kubelet, cable, process });
        }

        let mut correlators = Vec::new();
        let mut correlator_args = Vec::new();
        for i in 0..layout.correlators {
            let instance = unique_name(&format!("{prefix}-corr-{i}"));
            let mut args = match &layout.secure {
                Some(secure) => correlator_args_for(&secure.bootstrap, &topics, &instance, &layout),
                None => correlator_args_for(&bootstrap, &topics, &instance, &layout),
            };
            args.extend(layout.secure.iter().flat_map(|s| s.correlator_flags.clone()));
            correlators.push(Process::start(dir.path(), &format!("correlator-{i}"), args.clone(), vec![]));
            correlator_args.push(args);
        }

        let observed = Observed::new(&bootstrap, &topics.observations);
        let mut producer = client(&bootstrap);
        producer.set("linger.ms", "5");
        if layout.replication > 1 {
            producer.set("enable.idempotence", "true");
        }
        let producer = producer.create().unwrap();
        let mut pipeline = Pipeline {
            dir,
            bootstrap,
            api,
            topics,
            aggregators,
            aggregator_ports,
            agents,
            correlators,
            observed,
            correlator_args,
            restart_on_kafka_failure: layout.restart_on_kafka_failure,
            restarts: 0,
            producer,
        };
        // Every agent has connected and reported its node before the scenario starts.
        let names: Vec<String> = pipeline.agents.keys().cloned().collect();
        for name in names {
            pipeline
                .observed
                .wait_for(&format!("the agent of {name} reporting its node"), |o| o.node_reported(&name))
                .await;
        }
        eprintln!("e2e: pipeline started in {:.1} s", started.elapsed().as_secs_f64());
        pipeline
    }

    /// A pod appears: the API server lists it, the kubelet writes its projected token (and its
    /// legacy Secret token, if it mounts one). Returns once its node's agent has attested it.
    pub async fn schedule(&mut self, pod: &Pod, jti: &str) -> Token {
        self.api.put_pod(pod.api_object());
        let agent = &self.agents[&pod.node.name];
        agent.kubelet.write_projected(pod, &pod_token(pod, jti));
        if let Some(secret) = &pod.legacy_secret {
            agent.kubelet.write_secret(pod, &legacy_token(pod, secret));
        }
        self.attested(jti).await;
        Token::bound(pod, jti)
    }

    /// The kubelet rotates the pod's projected token. Returns once the agent has attested it.
    pub async fn rotate(&mut self, pod: &Pod, jti: &str) -> Token {
        self.agents[&pod.node.name].kubelet.write_projected(pod, &pod_token(pod, jti));
        self.attested(jti).await;
        Token::bound(pod, jti)
    }

    /// The pod is deleted: gone from the API server and from its node's kubelet directory.
    /// Returns once its agent has reported the deletion.
    pub async fn delete(&mut self, pod: &Pod) {
        self.api.delete_pod(pod.api_object());
        self.agents[&pod.node.name].kubelet.remove(pod);
        let uid = pod.uid.clone();
        self.observed.wait_for(&format!("the deletion of {}", pod.name), |o| o.pod_deleted(&uid)).await;
    }

    /// Waits until an agent's attestation of `jti` is in the observations topic.
    pub async fn attested(&mut self, jti: &str) {
        self.observed.wait_for(&format!("the attestation of {jti}"), |o| o.credential_attested(jti)).await;
    }

    /// Writes audit events to the raw topic, as the API server's audit backend would.
    pub async fn audit(&self, events: &[Value]) {
        let values: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
        self.produce_raw(&values, None).await;
    }

    /// Writes raw records (anything, valid or not) to the raw topic; returns where each landed
    /// (partition, offset).
    pub async fn produce_raw(&self, values: &[Vec<u8>], cluster_header: Option<&str>) -> Vec<(i32, i64)> {
        let sends = values.iter().map(|v| {
            let mut record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&self.topics.raw).payload(&v[..]);
            if let Some(c) = cluster_header {
                record = record.headers(OwnedHeaders::new().insert(Header { key: "cluster", value: Some(c) }));
            }
            self.producer.send(record, WAIT)
        });
        futures_join(sends)
            .await
            .into_iter()
            .map(|sent| {
                let delivery = sent.map_err(|(e, _)| e).expect("produce to the raw topic");
                (delivery.partition, delivery.offset)
            })
            .collect()
    }

    /// Cuts the network between `node`'s agent and its aggregator.
    pub fn cut(&self, node: &Node) {
        self.agents[&node.name].cable.cut();
    }

    pub fn mend(&self, node: &Node) {
        self.agents[&node.name].cable.mend();
    }

    /// Restarts correlator `i` after [`Process::kill9`] or [`Process::stop`].
    pub fn restart_correlator(&mut self, i: usize) {
        self.correlators[i].restart();
    }

    /// Starts one more correlator replica (a scale-up): the first one's arguments under an
    /// instance name of its own; it joins the group, which rebalances.
    pub fn add_correlator(&mut self) {
        let mut args = self.correlator_args[0].clone();
        let at = args.iter().position(|a| a == "--instance").expect("correlators have --instance") + 1;
        let i = self.correlators.len();
        args[at] = unique_name(&format!("{}-{i}", args[at]));
        self.correlators.push(Process::start(self.dir.path(), &format!("correlator-{i}"), args.clone(), vec![]));
        self.correlator_args.push(args);
    }

    /// Every process is still up (none crashed on what the test fed it).
    /// Restarts, under its name, each correlator that exited on a Kafka failure (status 1 or 75,
    /// the `kafka:` error it exits with last in its log) when the layout asks for it; then panics
    /// if any process is not running.
    pub fn restart_failed_and_assert_running(&mut self) {
        if self.restart_on_kafka_failure {
            for (i, replica) in self.correlators.iter_mut().enumerate() {
                let Some(status) = replica.exited() else { continue };
                let log = replica.log();
                let exit_line = log.lines().rev().find(|l| l.starts_with("tokentrail correlator: "));
                assert!(
                    matches!(status.code(), Some(1 | 75))
                        && exit_line.is_some_and(|l| l.starts_with("tokentrail correlator: kafka: ")),
                    "correlator-{i} exited with {status}, not on a Kafka failure:\n{}",
                    replica.tail()
                );
                eprintln!("pipeline: correlator-{i} exited on a Kafka failure ({status}); restarted");
                replica.restart();
                self.restarts += 1;
            }
        }
        self.assert_running();
    }

    pub fn assert_running(&mut self) {
        for p in self.aggregators.iter_mut().chain(self.correlators.iter_mut()) {
            p.assert_running();
        }
        for a in self.agents.values_mut() {
            a.process.assert_running();
        }
    }

    /// Stops everything with SIGTERM, each process exiting cleanly.
    pub fn stop(&mut self) {
        self.stop_within(Duration::from_secs(60));
    }

    /// [`Pipeline::stop`], each process given up to `limit` to exit after its SIGTERM.
    pub fn stop_within(&mut self, limit: Duration) {
        let started = std::time::Instant::now();
        for a in self.agents.values_mut() {
            a.process.stop_within(limit);
        }
        for p in self.correlators.iter_mut().chain(self.aggregators.iter_mut()) {
            p.stop_within(limit);
        }
        eprintln!("e2e: pipeline stopped in {:.1} s", started.elapsed().as_secs_f64());
    }
}

/// Awaits the futures one after the other (they run concurrently inside the producer anyway).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let pending: Vec<F> = futures.collect();
    let mut out = Vec::with_capacity(pending.len());
    for f in pending {
        out.push(f.await);
    }
    out
}

/// A client configuration reaching `bootstrap`, to which the caller adds its settings.
pub fn client(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

async fn create_topics(bootstrap: &str, prefix: &str, layout: &Layout) -> Topics {
    let (partitions, replication) = (layout.partitions, layout.replication);
    let t = Topics {
        raw: unique_name(&format!("{prefix}-raw")),
        observations: unique_name(&format!("{prefix}-obs")),
        dead_letters: unique_name(&format!("{prefix}-dlq")),
        findings: unique_name(&format!("{prefix}-findings")),
        changelog: unique_name(&format!("{prefix}-state")),
        aggregator_group: unique_name(&format!("{prefix}-agg")),
        correlator_group: unique_name(&format!("{prefix}-corr")),
    };
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let min_insync = (replication - 1).max(1).to_string();
    let plain = |name, n| {
        let topic = NewTopic::new(name, n, TopicReplication::Fixed(replication));
        if replication > 1 {
            topic.set("min.insync.replicas", &min_insync)
        } else {
            topic
        }
    };
    // The changelog as deploy/ defines it: compacted, partitioned like the observations, large
    // records allowed.
    let changelog =
        plain(&t.changelog, partitions).set("cleanup.policy", "compact").set("max.message.bytes", "67108864");
    let new = [
        plain(&t.raw, 2),
        plain(&t.observations, partitions),
        plain(&t.dead_letters, 1),
        plain(&t.findings, layout.findings_partitions),
        changelog,
    ];
    for r in admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(WAIT))).await.unwrap() {
        r.unwrap();
    }
    t
}

/// An aggregator consuming the raw topic (in the pipeline's group) and serving attestations on
/// `port`, in plaintext: agents are trusted to name their node (no TLS in these tests; mTLS is
/// tested in aggregator_grpc.rs). With `webhook`, it also serves the audit webhook there in
/// plaintext (TLS is tested in aggregator_webhook.rs).
fn aggregator_config(bootstrap: &str, t: &Topics, port: u16, webhook: Option<u16>) -> Value {
    let mut config = serde_json::json!({
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": t.aggregator_group,
            "audit_topics": [{"topic": t.raw, "cluster": CLUSTER}],
            "observations_topic": t.observations,
            "dead_letter_topic": t.dead_letters,
            "batch_linger": "20ms",
            // Small, so the bad-input drill's oversized record fits the broker's 1 MB limit.
            "max_record_bytes": MAX_RECORD_BYTES,
        },
        "grpc": {"listen": format!("127.0.0.1:{port}"), "cluster": CLUSTER, "trust_agent_node_name": true},
    });
    if let Some(webhook) = webhook {
        config["webhook"] = serde_json::json!({"listen": format!("127.0.0.1:{webhook}"), "cluster": CLUSTER, "insecure_plaintext": true});
    }
    config
}

fn agent_args(node: &Node, kubelet: &Kubelet, cable: &Cable) -> Vec<String> {
    [
        "agent",
        "--node",
        &node.name,
        "--kubelet-dir",
        &kubelet.root.display().to_string(),
        "--aggregator",
        &format!("http://{}", cable.addr),
        // Short, so a cut-off or restarted aggregator is found again within a second.
        "--max-backoff",
        "500ms",
        // The safety net behind inotify, short so nothing waits long on a missed event.
        "--rescan-interval",
        "2s",
    ]
    .map(String::from)
    .to_vec()
}

fn correlator_args_for(bootstrap: &str, t: &Topics, instance: &str, layout: &Layout) -> Vec<String> {
    [
        "correlator",
        "--bootstrap-servers",
        bootstrap,
        "--group",
        &t.correlator_group,
        "--instance",
        instance,
        "--observations-topic",
        &t.observations,
        "--findings-topic",
        &t.findings,
        "--changelog-topic",
        &t.changelog,
        "--commit-interval",
        layout.commit_interval,
        "--rotation-grace",
        layout.rotation_grace,
    ]
    .map(String::from)
    .into_iter()
    .chain(layout.session_timeout.into_iter().flat_map(|t| ["--session-timeout".into(), t.into()]))
    .chain(layout.transaction_timeout.into_iter().flat_map(|t| ["--transaction-timeout".into(), t.into()]))
    .collect()
}
