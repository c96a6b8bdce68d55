//! Shared by `correlator*.rs`: the `tokentrail correlator` process and its output topics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
pub use tokentrail_integration_tests::tokentrail_binary as binary;
use tokentrail_integration_tests::{kafka, unique_name};

use super::aggregator_support::{create_topics, Out};

/// Held by each test of a binary for its whole run: a test starts aggregators, correlator
/// processes and a dozen topics, and two at once on a 2-core machine next to the broker's JVM
/// only make both slow enough to time out.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The topics one correlator run writes to.
pub struct Outputs {
    pub group: String,
    pub findings: String,
    pub changelog: String,
}

pub async fn outputs(prefix: &str, partitions: i32) -> Outputs {
    let o = Outputs {
        group: unique_name(&format!("{prefix}-group")),
        findings: unique_name(&format!("{prefix}-findings")),
        changelog: unique_name(&format!("{prefix}-state")),
    };
    // As deploy/ creates it: as many partitions as the observations (a finding goes to the
    // partition numbered as its input partition).
    create_topics(&[(&o.findings, partitions)]).await;
    // The changelog: one snapshot per input partition, compacted, large records allowed.
    let admin: AdminClient<DefaultClientContext> = kafka().client_config().create().unwrap();
    let changelog = NewTopic::new(&o.changelog, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("max.message.bytes", "67108864");
    for r in admin.create_topics([&changelog], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    o
}

pub fn correlator(observations: &str, out: &Outputs, instance: &str, commit_interval: &str) -> Child {
    correlator_with(observations, out, instance, commit_interval, &[])
}

/// [`correlator`] with more flags.
pub fn correlator_with(
    observations: &str,
    out: &Outputs,
    instance: &str,
    commit_interval: &str,
    more: &[&str],
) -> Child {
    let mut command = command(observations, out, instance, commit_interval, more);
    command.stderr(Stdio::inherit()).spawn().expect("start tokentrail correlator")
}

/// [`correlator`] with its log in `log`.
pub fn correlator_logging_to(observations: &str, out: &Outputs, instance: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    command(observations, out, instance, "300ms", &[]).stderr(log).spawn().expect("start tokentrail correlator")
}

fn command(observations: &str, out: &Outputs, instance: &str, commit_interval: &str, more: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["correlator", "--bootstrap", kafka().bootstrap(), "--group", &out.group, "--instance", instance])
        .args(["--observations-topic", observations, "--findings-topic", &out.findings])
        .args(["--changelog-topic", &out.changelog, "--commit-interval", commit_interval])
        .args(more)
        .stdout(Stdio::null());
    command
}

pub fn stop(mut child: Child) {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a SIGTERM'd correlator exits 0 after committing: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "correlator did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn kill9(mut child: Child) {
    Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    let _ = child.wait();
}

/// Findings by id: the number of records that created each, and its latest state.
pub fn by_id(out: &[Out]) -> BTreeMap<String, (usize, serde_json::Value)> {
    let mut m: BTreeMap<String, (usize, serde_json::Value)> = BTreeMap::new();
    for o in out {
        let v: serde_json::Value = serde_json::from_slice(&o.value).unwrap();
        let creates = usize::from(o.headers.get("activity").map(String::as_str) == Some("create"));
        let e = m.entry(o.key.clone()).or_insert((0, v.clone()));
        e.0 += creates;
        e.1 = v;
    }
    m
}

/// How long a test waits for the broker and the processes under test.
const WAIT: Duration = Duration::from_secs(120);

/// A client's reports while its broker is away, shown once a second: the client reports on
/// every call, and a flood of them would push a failed test's panic message out of its output.
#[derive(Default)]
pub struct Retrying {
    shown: Option<Instant>,
}

impl Retrying {
    pub async fn report(&mut self, what: &str, e: &KafkaError) {
        if self.shown.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
            eprintln!("e2e: {what}: {e}; retrying");
            self.shown = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer of a broker lookup, asked again until it comes (bounded by WAIT): a drill may
/// have a broker away, and a group's offsets stay unstable while a killed member's transaction
/// is open (the coordinator answers offset fetches with a retriable error until it is aborted).
pub async fn answered<T>(what: &str, mut ask: impl FnMut() -> Result<T, KafkaError>) -> T {
    let start = Instant::now();
    let mut retrying = Retrying::default();
    loop {
        match ask() {
            Ok(answer) => return answer,
            Err(e) => {
                assert!(start.elapsed() < WAIT, "no answer for {what} in {WAIT:?}: {e}");
                retrying.report(what, &e).await;
            }
        }
    }
}

/// Waits until `group` has committed offsets at the end of every partition of `topic`.
pub async fn caught_up(bootstrap: &str, group: &str, topic: &str, who: &str) {
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let timeout = Duration::from_secs(5);
    let partitions: Vec<i32> = answered(&format!("the metadata of {topic}"), || {
        consumer
            .fetch_metadata(Some(topic), timeout)
            .map(|m| m.topics()[0].partitions().iter().map(|p| p.id()).collect())
    })
    .await;
    let mut ends = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) =
            answered(&format!("the end of {topic}/{p}"), || consumer.fetch_watermarks(topic, p, timeout)).await;
        ends.add_partition_offset(topic, p, Offset::Offset(high)).unwrap();
    }
    let start = Instant::now();
    loop {
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition(topic, p);
        }
        let committed =
            answered(&format!("the offsets {who} committed"), || consumer.committed_offsets(wanted.clone(), timeout))
                .await;
        let behind: Vec<String> = ends
            .elements()
            .iter()
            .filter_map(|end| {
                let Offset::Offset(high) = end.offset() else { return None };
                let at = match committed.find_partition(topic, end.partition()).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                (at < high).then(|| format!("partition {} at {at} of {high}", end.partition()))
            })
            .collect();
        if behind.is_empty() {
            eprintln!("e2e: {who} caught up with {topic} after {:.1} s", start.elapsed().as_secs_f64());
            return;
        }
        assert!(start.elapsed() < WAIT, "{who} did not catch up with {topic}: {}", behind.join(", "));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The offsets `group` has committed on `topic`, by partition (none: not in the map).
pub async fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let timeout = Duration::from_secs(5);
    let partitions = answered(&format!("the metadata of {topic}"), || {
        consumer.fetch_metadata(Some(topic), timeout).map(|m| m.topics()[0].partitions().len())
    })
    .await;
    let mut wanted = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions).unwrap() {
        wanted.add_partition(topic, p);
    }
    let offsets =
        answered(&format!("the offsets {group} committed"), || consumer.committed_offsets(wanted.clone(), timeout))
            .await;
    offsets
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) => Some((e.partition(), at)),
            _ => None,
        })
        .collect()
}
