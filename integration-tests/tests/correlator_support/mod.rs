//! Shared by `correlator*.rs`: the `tokentrail correlator` process and its output topics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
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
    Command::new(binary())
        .args(["correlator", "--bootstrap", kafka().bootstrap(), "--group", &out.group, "--instance", instance])
        .args(["--observations-topic", observations, "--findings-topic", &out.findings])
        .args(["--changelog-topic", &out.changelog, "--commit-interval", commit_interval])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tokentrail correlator")
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
