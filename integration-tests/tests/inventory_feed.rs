//! The aggregator's cluster inventory feed against a real kube-apiserver (`kube/cluster.sh`) and
//! a real Kafka broker, with real `tokentrail aggregator` processes.
//!
//! What must hold:
//! * objects that existed before the aggregator started (a ServiceAccount, its legacy token
//!   Secret, a running pod with its address and node) reach the observations topic as the
//!   inventory observations `analyze` makes of a dump, with the configured cluster;
//! * the legacy token itself appears nowhere in the topic;
//! * a pod created and deleted while the feed runs arrives, then its deletion;
//! * with two replicas on one Lease, only the holder watches; SIGKILL the holder and the other
//!   takes the Lease over within its duration and lists again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregator_support;
mod correlator_support;
mod e2e_support;
mod kube_support;

use std::time::{Duration, Instant};

use e2e_support::process::Process;
use kube_support::{field, Api, Who, HOST};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use serde_json::{json, Value};
use tokentrail_integration_tests::kube::Cluster;
use tokentrail_integration_tests::{kafka, unique_name};
use tokentrail_proto::observation::{PodEvent, PodFact};
use tokentrail_proto::wire::batch::record_observations;
use tokentrail_proto::wire::from_proto;
use tokentrail_proto::Observation;

const NS: &str = "inv";
const CLUSTER: &str = "inv-cluster";
const LEASE_SECONDS: u64 = 6;

/// Everything read from the observations topic so far: raw records and their observations.
struct Topic {
    consumer: StreamConsumer,
    raw: Vec<Vec<u8>>,
    observations: Vec<(String, Observation)>,
}

impl Topic {
    fn open(topic: &str) -> Topic {
        let consumer: StreamConsumer = kafka()
            .client_config()
            .set("group.id", unique_name("inventory-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Topic { consumer, raw: Vec::new(), observations: Vec::new() }
    }

    /// Reads what arrives for `window`.
    async fn drain(&mut self, window: Duration) {
        let until = Instant::now() + window;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left.min(Duration::from_millis(200)), self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let value = m.payload().unwrap_or_default().to_vec();
                    let header_values: Vec<u8> = m
                        .headers()
                        .map(|h| {
                            use rdkafka::message::Headers as _;
                            h.iter().flat_map(|h| h.value.unwrap_or_default().to_vec()).collect()
                        })
                        .unwrap_or_default();
                    let flag = |name: &str| {
                        use rdkafka::message::Headers as _;
                        m.headers().is_some_and(|h| h.iter().any(|h| h.key == name && h.value == Some(b"1".as_slice())))
                    };
                    let entries = record_observations(m.key().unwrap_or_default(), &value, flag)
                        .expect("a tokentrail.observation.v1 record or batch");
                    for entry in entries {
                        // Broadcast copies repeat an observation on other partitions: counted once.
                        if !entry.broadcast || entry.home {
                            let decoded = entry.observation.expect("an observation");
                            self.observations.push(from_proto(&decoded).expect("an observation the engine reads"));
                        }
                    }
                    self.raw.push(value);
                    self.raw.push(header_values);
                    self.raw.push(m.key().unwrap_or_default().to_vec());
                }
                Ok(Err(e)) => panic!("reading the observations topic: {e}"),
                Err(_) => {}
            }
        }
    }

    /// Reads until `done` holds of the observations (60 s at most).
    async fn wait_for(&mut self, what: &str, done: impl Fn(&[(String, Observation)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.observations) {
            assert!(
                Instant::now() < deadline,
                "no {what} on the observations topic within 60 s; read {} observations: {:#?}",
                self.observations.len(),
                self.observations
            );
            self.drain(Duration::from_millis(250)).await;
        }
    }

    fn count(&self, which: impl Fn(&Observation) -> bool) -> usize {
        self.observations.iter().filter(|(_, o)| which(o)).count()
    }
}

fn is_sa(o: &Observation, name: &str) -> bool {
    matches!(o, Observation::ServiceAccount(s) if s.serviceaccount.as_ref().is_some_and(|a| a.namespace == NS && a.name == name))
}

fn pod_fact<'o>(o: &'o Observation, name: &str) -> Option<&'o PodFact> {
    match o {
        Observation::Pod(p) if p.namespace == NS && p.name == name => Some(p),
        _ => None,
    }
}

/// A pod as a user creates it, bound as the scheduler would and reported running with `ip` by
/// its node (as its kubelet would). Returns its uid.
async fn run_pod(api: &Api, name: &str, serviceaccount: &str, ip: &str, secret: Option<&str>) -> String {
    let mut spec = json!({"serviceAccountName": serviceaccount, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]});
    if let Some(secret) = secret {
        spec["volumes"] = json!([{"name": "legacy", "secret": {"secretName": secret}}]);
    }
    let pod = api
        .admin(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods"),
            Some(&json!({"metadata": {"name": name}, "spec": spec})),
        )
        .await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"}});
    api.admin("POST", &format!("/api/v1/namespaces/{NS}/pods/{name}/binding"), Some(&binding)).await;
    let status = json!({"status": {"phase": "Running", "hostIP": "127.0.10.1", "hostIPs": [{"ip": "127.0.10.1"}],
                                   "podIP": ip, "podIPs": [{"ip": ip}],
                                   "startTime": field(&pod, "metadata.creationTimestamp")}});
    api.ok(HOST, Who::User("node-a"), "PATCH", &format!("/api/v1/namespaces/{NS}/pods/{name}/status"), Some(&status))
        .await;
    field(&pod, "metadata.uid").to_owned()
}

fn aggregator(dir: &std::path::Path, cluster: &Cluster, topic: &str, dead: &str, identity: &str) -> Process {
    let config = json!({
        "kafka": {"bootstrap_servers": kafka().bootstrap(), "observations_topic": topic, "dead_letter_topic": dead},
        "inventory": {"cluster": CLUSTER, "kubeconfig": cluster.kubeconfig("admin"),
                      "lease": {"namespace": NS, "duration": format!("{LEASE_SECONDS}s"), "identity": identity}}
    });
    let path = dir.join(format!("{identity}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    Process::start(dir, identity, vec!["aggregator".into(), "--config".into(), path.display().to_string()], Vec::new())
}

async fn lease_holder(api: &Api) -> Option<String> {
    let reply = api
        .call(
            HOST,
            Who::User("admin"),
            "GET",
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/tokentrail-inventory"),
            None,
        )
        .await;
    (reply.status == 200)
        .then(|| reply.body.pointer("/spec/holderIdentity").and_then(Value::as_str).map(str::to_owned))
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_feed_streams_what_existed_before_and_what_changes_with_one_watcher_per_lease() {
    // The binary first (a build, minutes on a loaded machine).
    correlator_support::binary();
    let started = Instant::now();
    let phase = |name: &str| eprintln!("inventory_feed: {name} after {:.1} s", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), None, &[]).unwrap_or_else(|e| panic!("no kube-apiserver: {e}"));
    let api = Api::new(&cluster);
    phase("cluster up");

    // Before the pipeline: a namespace, a ServiceAccount with a legacy token Secret, a node and
    // a running pod mounting the Secret.
    api.admin("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": NS}}))).await;
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
        Some(&json!({"metadata": {"name": "legacy"}})),
    )
    .await;
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{NS}/secrets"),
        Some(&json!({"metadata": {"name": "legacy-token", "annotations": {"kubernetes.io/service-account.name": "legacy"}},
                     "type": "kubernetes.io/service-account-token"})),
    )
    .await;
    // An Opaque Secret: not a token Secret, never watched.
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{NS}/secrets"),
        Some(&json!({"metadata": {"name": "opaque"}, "type": "Opaque", "data": {"k": "dmFsdWU="}})),
    )
    .await;
    api.ok(
        HOST,
        Who::User("node-a"),
        "POST",
        "/api/v1/nodes",
        Some(&json!({"metadata": {"name": "node-a"}, "spec": {"podCIDR": "127.0.12.0/24"}})),
    )
    .await;
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.10.1"}]}});
    api.ok(HOST, Who::User("node-a"), "PATCH", "/api/v1/nodes/node-a/status", Some(&status)).await;
    let early_uid = run_pod(&api, "early-0", "legacy", "127.0.12.9", Some("legacy-token")).await;
    let secret = api
        .wait_for(
            &format!("/api/v1/namespaces/{NS}/secrets/legacy-token"),
            "the token controller fills the Secret",
            |s| s.pointer("/data/token").is_some(),
        )
        .await;
    let token = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(field(&secret, "data.token")).unwrap();
        String::from_utf8(bytes).unwrap()
    };
    assert!(token.len() > 100, "a signed JWT");
    phase("cluster set up");

    let topic = unique_name("inventory-obs");
    let dead = unique_name("inventory-dlq");
    aggregator_support::create_topics(&[(&topic, 3), (&dead, 1)]).await;
    let mut reader = Topic::open(&topic);
    let mut a = aggregator(dir.path(), &cluster, &topic, &dead, "replica-a");

    // What existed before: the ServiceAccount, its token Secret, the pod with address and node.
    reader
        .wait_for("pre-existing ServiceAccount, token Secret, pod and node", |obs| {
            let has = |f: &dyn Fn(&Observation) -> bool| obs.iter().any(|(_, o)| f(o));
            has(&|o| is_sa(o, "legacy"))
                && has(&|o| matches!(o, Observation::TokenSecret(s) if s.namespace == NS && s.name == "legacy-token"))
                && has(&|o| pod_fact(o, "early-0").is_some_and(|p| !p.ips.is_empty()))
                && has(&|o| matches!(o, Observation::Node(n) if n.name == "node-a" && !n.pod_cidrs.is_empty()))
        })
        .await;
    phase("pre-existing inventory observed");
    assert!(reader.observations.iter().all(|(c, _)| c == CLUSTER), "every observation is of the configured cluster");
    let sa = reader.observations.iter().find(|(_, o)| is_sa(o, "legacy")).unwrap();
    let Observation::ServiceAccount(sa) = &sa.1 else { unreachable!() };
    assert!(sa.uid.is_some());
    let secret_fact = reader
        .observations
        .iter()
        .find_map(|(_, o)| match o {
            Observation::TokenSecret(s) if s.name == "legacy-token" => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(secret_fact.serviceaccount.as_deref(), Some("legacy"));
    let early = reader.observations.iter().find_map(|(_, o)| pod_fact(o, "early-0").cloned()).unwrap();
    assert_eq!(early.uid.as_deref(), Some(early_uid.as_str()));
    assert_eq!(early.node.as_deref(), Some("node-a"));
    assert_eq!(early.serviceaccount.as_deref(), Some("legacy"));
    assert_eq!(early.ips, vec!["127.0.12.9".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(early.secret_volumes, vec!["legacy-token".to_string()]);
    assert_eq!(reader.count(|o| matches!(o, Observation::TokenSecret(s) if s.name == "opaque")), 0);
    assert_eq!(lease_holder(&api).await.as_deref(), Some("replica-a"));

    // The correlator, reading the topic, raises the legacy-token rule that needs the inventory
    // alone: the Secret made before the pipeline is reported.
    let outputs = correlator_support::outputs("inventory", 3).await;
    let correlator = correlator_support::correlator(&topic, &outputs, "inventory-0", "500ms");
    let findings = aggregator_support::read_until(&outputs.findings, "legacy-token-present", Duration::ZERO, |out| {
        out.iter().any(|f| {
            let text = String::from_utf8_lossy(&f.value);
            text.contains("legacy-token-present") && text.contains("legacy-token\"")
        })
    })
    .await;
    correlator_support::stop(correlator);
    phase("legacy-token-present found by the streaming correlator");
    assert!(!findings.is_empty());

    // A pod created and deleted while the feed runs: it, then its deletion.
    let late_uid = run_pod(&api, "late-0", "legacy", "127.0.12.10", None).await;
    reader
        .wait_for("the pod created while running, with its address", |obs| {
            obs.iter().any(|(_, o)| pod_fact(o, "late-0").is_some_and(|p| p.ips.len() == 1 && p.node.is_some()))
        })
        .await;
    api.admin("DELETE", &format!("/api/v1/namespaces/{NS}/pods/late-0?gracePeriodSeconds=0"), None).await;
    reader
        .wait_for("the deletion of the pod deleted while running", |obs| {
            obs.iter().any(|(_, o)| {
                pod_fact(o, "late-0")
                    .is_some_and(|p| p.event == Some(PodEvent::Deleted) && p.uid.as_deref() == Some(&*late_uid))
            })
        })
        .await;
    phase("live pod and its deletion observed");

    // A second replica on the same Lease: it does not watch while the first holds it (had it
    // listed, the ServiceAccount would have been sent a second time).
    let mut b = aggregator(dir.path(), &cluster, &topic, &dead, "replica-b");
    reader.drain(Duration::from_secs(LEASE_SECONDS + 2)).await;
    b.assert_running();
    assert_eq!(lease_holder(&api).await.as_deref(), Some("replica-a"));
    assert_eq!(reader.count(|o| is_sa(o, "legacy")), 1, "only the Lease's holder lists");

    // The holder dies without releasing: the other takes over within the Lease's duration (plus
    // its polling interval, a third of it) and lists again.
    a.kill9();
    let killed = Instant::now();
    let holder = loop {
        let holder = lease_holder(&api).await;
        if holder.as_deref() == Some("replica-b") {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "replica-b never took the Lease over: {holder:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    reader.wait_for("the new holder's list", |obs| obs.iter().filter(|(_, o)| is_sa(o, "legacy")).count() == 2).await;
    let listed = killed.elapsed();
    eprintln!(
        "inventory_feed: replica-b held the Lease {:.1} s after replica-a's SIGKILL, its list arrived after {:.1} s",
        holder.as_secs_f64(),
        listed.as_secs_f64()
    );
    let bound = Duration::from_secs(LEASE_SECONDS + LEASE_SECONDS / 3 + 1);
    assert!(
        holder <= bound,
        "takeover took {holder:?}, more than the Lease's duration and a renewal period ({bound:?})"
    );

    // Nothing of the token anywhere: values, keys, headers.
    reader.drain(Duration::from_secs(1)).await;
    let needle = token.as_bytes();
    for record in &reader.raw {
        assert!(!record.windows(needle.len()).any(|w| w == needle), "the legacy token was written to the topic");
    }
    let signature = token.rsplit('.').next().unwrap().as_bytes();
    for record in &reader.raw {
        assert!(
            !record.windows(signature.len()).any(|w| w == signature),
            "the token's signature was written to the topic"
        );
    }
    b.stop();
    phase("done");
}
