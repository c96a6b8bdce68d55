//! `tokentrail incidents` against the real broker, as a real process: findings on the findings
//! topic become incidents on the incidents topic, updated as findings join them, with the ids a
//! join replaces closed as merged; a SIGKILL and restart lose nothing; and behind the real
//! aggregator and correlator, the incidents are those of the findings the correlator wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aggregator_support::{
    create_topics, incident_lines, produce_raw, read_committed_from, read_committed_until, start, Out, Topics,
};
use correlator_support::{binary, correlator, kill9, outputs, stop};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tokentrail_correlator_core::incident::incident_id;
use tokentrail_correlator_core::incident_feed::group;
use tokentrail_correlator_core::Finding;
use tokentrail_integration_tests::{kafka, unique_name, OwnBroker, Stop};

fn incidents_process(findings: &str, incidents: &str, group: &str, commit_interval: &str) -> Child {
    incidents_on(kafka().bootstrap(), findings, incidents, group, commit_interval)
}

fn incidents_on(bootstrap: &str, findings: &str, incidents: &str, group: &str, commit_interval: &str) -> Child {
    Command::new(binary())
        .args(["incidents", "--bootstrap-servers", bootstrap, "--group", group, "--instance", group])
        .args(["--findings-topic", findings, "--incidents-topic", incidents, "--commit-interval", commit_interval])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tokentrail incidents")
}

/// A finding record as the correlator writes it: a legacy token of Secret `shop/<secret>` used
/// from outside, or (with `reads`) token Secrets read by name by someone.
fn finding(id: &str, rule: &str, secret: Option<&str>, reads: &[&str], minute: u32) -> Value {
    let requests: Vec<Value> = reads
        .iter()
        .map(|s| json!({"verb": "get", "resource": "secrets", "namespace": "shop", "name": s, "code": 200}))
        .collect();
    let mut f = json!({
        "schema": "tokentrail.finding/v1", "id": id, "rule": rule, "severity": "high",
        "title": format!("{rule} {id}"), "cluster": "prod",
        "serviceaccount": {"namespace": "shop", "name": if secret.is_some() { "legacy" } else { "reader" }},
        "source_ip": "203.0.113.50",
        "first_seen": format!("2026-03-10T10:{minute:02}:00Z"), "last_seen": format!("2026-03-10T10:{minute:02}:30Z"),
        "count": 3, "requests": requests, "attack": [], "explanation": "test"
    });
    if let Some(secret) = secret {
        f["credential"] = json!({"kind": "legacy-secret", "secret": secret});
    }
    f
}

async fn produce(topic: &str, findings: &[&Value]) {
    produce_on(kafka().bootstrap(), topic, findings).await;
}

async fn produce_on(bootstrap: &str, topic: &str, findings: &[&Value]) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for f in findings {
        let id = f["id"].as_str().unwrap();
        let value = serde_json::to_vec(f).unwrap();
        producer.send(FutureRecord::to(topic).key(id).payload(&value), Duration::from_secs(10)).await.unwrap();
    }
}

/// Each incident id's last record, and how many records said it stood (`status` header `open`).
fn latest(out: &[Out]) -> BTreeMap<String, (usize, Value)> {
    let mut m: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    for o in out {
        let v: Value = serde_json::from_slice(&o.value).unwrap();
        let open = usize::from(o.headers.get("status").map(String::as_str) == Some("open"));
        let e = m.entry(o.key.clone()).or_insert((0, Value::Null));
        e.0 += open;
        e.1 = v;
    }
    m
}

/// The standing incidents: each id's last record, less those closed.
fn standing(out: &[Out]) -> BTreeMap<String, Value> {
    latest(out).into_iter().filter(|(_, (_, v))| v.get("status").is_none()).map(|(k, (_, v))| (k, v)).collect()
}

/// What grouping these finding records gives, as records.
fn expected(findings: &[Value]) -> BTreeMap<String, Value> {
    let parsed: Vec<Finding> = findings.iter().map(|f| serde_json::from_value(f.clone()).unwrap()).collect();
    group(&parsed).into_iter().map(|i| (i.id.clone(), serde_json::to_value(&i).unwrap())).collect()
}

/// Whether these incidents stand with these members.
fn wait(want: Vec<(String, Vec<&'static str>)>) -> impl Fn(&[Out]) -> bool {
    move |out: &[Out]| {
        let now = standing(out);
        want.iter().all(|(id, m)| now.get(id).is_some_and(|v| members(v) == *m))
    }
}

fn members(v: &Value) -> Vec<String> {
    let mut m: Vec<String> = v["findings"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().into()).collect();
    m.sort();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_follow_joining_findings_and_a_sigkill_loses_nothing() {
    let _serial = correlator_support::one_at_a_time().await;
    let findings_topic = unique_name("inc-findings");
    let incidents_topic = unique_name("inc-incidents");
    create_topics(&[(&findings_topic, 3), (&incidents_topic, 2)]).await;
    let group_id = unique_name("inc-group");
    // Commits every 3 s: the kill below comes a second after a commit, with the last finding
    // read and not committed.
    let child = incidents_process(&findings_topic, &incidents_topic, &group_id, "3s");

    let b = finding("f-b", "legacy-token-foreign-ip", Some("x-token"), &[], 10);
    let c = finding("f-c", "legacy-token-foreign-ip", Some("y-token"), &[], 12);
    let d = finding("f-d", "legacy-token-use", Some("x-token"), &[], 14);
    let a = finding("f-a", "sa-token-secret-read", None, &["x-token", "y-token"], 5);
    let e = finding("f-e", "legacy-token-use", Some("y-token"), &[], 20);
    let (ib, ic, ia) = (incident_id("f-b"), incident_id("f-c"), incident_id("f-a"));

    // A first finding: an incident of one.
    produce(&findings_topic, &[&b]).await;
    read_committed_until(&incidents_topic, "the first incident", Duration::ZERO, wait(vec![(ib.clone(), vec!["f-b"])]))
        .await;
    // A second finding on the same Secret joins it (the same id, updated); another Secret's is
    // an incident of its own.
    produce(&findings_topic, &[&d, &c]).await;
    read_committed_until(
        &incidents_topic,
        "the incident updated, and a second one",
        Duration::ZERO,
        wait(vec![(ib.clone(), vec!["f-b", "f-d"]), (ic.clone(), vec!["f-c"])]),
    )
    .await;
    // A read of both Secrets ties them, under its own (smallest) id; the process is killed
    // with it read and not committed: its restart must redo that work.
    produce(&findings_topic, &[&a]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = read_committed_until(&incidents_topic, "the records before the kill", Duration::ZERO, |_| true).await;
    assert!(!standing(&before).contains_key(&ia), "the kill comes before the merge is committed");
    kill9(child);
    let child = incidents_process(&findings_topic, &incidents_topic, &group_id, "300ms");
    // After the restart, a finding that joins the merged incident: the rebuilt feed must still
    // hold every earlier finding for it to be whole.
    produce(&findings_topic, &[&e]).await;
    let all = [b.clone(), c.clone(), d.clone(), a.clone(), e.clone()];
    let want = expected(&all);
    assert_eq!(want.keys().collect::<Vec<_>>(), [&ia], "the library groups them into one incident");
    let out = read_committed_until(&incidents_topic, "the merged incident", Duration::from_secs(2), |out| {
        standing(out).get(&ia).is_some_and(|v| members(v).len() == all.len())
    })
    .await;
    stop(child);

    assert_eq!(standing(&out), want, "the topic's standing incidents are the grouping of every finding");
    let last = latest(&out);
    for old in [&ib, &ic] {
        let (opened, v) = &last[old];
        assert_eq!(v["status"], "merged", "{old}: {v}");
        assert_eq!(v["superseded_by"], json!([ia]), "{old}: {v}");
        assert!(*opened >= 1, "{old} was sent open first");
    }
    assert_eq!(last[&ic].0, 1, "f-c's incident did not change before the merge: sent open once, even across the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_aggregator_and_correlator_the_incidents_are_those_of_the_findings() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines: Vec<Vec<u8>> = incident_lines().into_iter().map(String::into_bytes).collect();
    let t = Topics::create("inc-pipe").await;
    produce_raw(&t.raw, &lines, None).await;
    let running = start(t.config()).await;
    let out = outputs("inc-pipe", 3).await;
    let correlator = correlator(&t.observations, &out, &unique_name("inc-pipe"), "300ms");
    let incidents_topic = unique_name("inc-pipe-incidents");
    create_topics(&[(&incidents_topic, 1)]).await;
    let incidents = incidents_process(&out.findings, &incidents_topic, &unique_name("inc-pipe-group"), "300ms");

    // The correlator writes the replay's findings; stopped, it has committed all it will.
    let has_replay = |o: &[Out]| {
        o.iter().any(|r| serde_json::from_slice::<Value>(&r.value).is_ok_and(|v| v["rule"] == "token-used-off-cluster"))
    };
    read_committed_until(&out.findings, "the correlator's findings", Duration::from_secs(3), has_replay).await;
    stop(correlator);
    running.stop().await;
    let records = read_committed_until(&out.findings, "every finding", Duration::from_secs(1), has_replay).await;
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for r in &records {
        last.insert(r.key.clone(), serde_json::from_slice(&r.value).unwrap());
    }
    let findings: Vec<Value> = last.into_values().collect();
    let want = expected(&findings);
    assert!(!want.is_empty(), "the example incident's findings make incidents");
    let got = read_committed_until(&incidents_topic, "the pipeline's incidents", Duration::from_secs(2), |o| {
        let now = standing(o);
        want.keys().all(|id| now.contains_key(id))
    })
    .await;
    stop(incidents);

    assert_eq!(standing(&got), want, "incidents of the findings the correlator wrote");
    // Every finding but inventory items is in exactly one standing incident.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for v in standing(&got).values() {
        for m in members(v) {
            *seen.entry(m).or_default() += 1;
        }
    }
    for f in &findings {
        let id = f["id"].as_str().unwrap();
        let inventory = f["rule"] == "legacy-token-present" || f["status"] == "withdrawn";
        assert_eq!(seen.get(id).copied().unwrap_or(0), usize::from(!inventory), "finding {id} ({})", f["rule"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_while_the_broker_is_down_it_exits_in_time_and_its_restart_loses_nothing() {
    let _serial = correlator_support::one_at_a_time().await;
    // A broker of the drill's own: the one the other tests share is never stopped.
    let broker_dir = tempfile::Builder::new().prefix("tokentrail-own-broker-").tempdir().unwrap();
    let broker = OwnBroker::start(broker_dir.path()).expect("a broker of the drill's own");
    let bootstrap = broker.broker().bootstrap().to_owned();
    let (findings_topic, incidents_topic) = (unique_name("drill-findings"), unique_name("drill-incidents"));
    let admin: AdminClient<DefaultClientContext> = broker.broker().client_config().create().unwrap();
    let topics = [
        NewTopic::new(&findings_topic, 3, TopicReplication::Fixed(1)),
        NewTopic::new(&incidents_topic, 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    let group_id = unique_name("drill-group");
    let start = |every| incidents_on(&bootstrap, &findings_topic, &incidents_topic, &group_id, every);
    let b = finding("f-b", "legacy-token-foreign-ip", Some("x-token"), &[], 10);
    let c = finding("f-c", "legacy-token-foreign-ip", Some("y-token"), &[], 12);
    let a = finding("f-a", "sa-token-secret-read", None, &["x-token", "y-token"], 5);

    // Commits every 3 s: the broker goes half a second after a commit, with a finding read
    // and not committed, which the stop's last commit then cannot commit.
    let mut child = start("3s");
    produce_on(&bootstrap, &findings_topic, &[&b]).await;
    let first = wait(vec![(incident_id("f-b"), vec!["f-b"])]);
    read_committed_from(&bootstrap, &incidents_topic, "the first incident", Duration::ZERO, first).await;
    // A finding read and not committed, the broker killed, then a stop: the process must exit
    // cleanly within the chart's 60 s grace, giving up the commit it cannot make.
    produce_on(&bootstrap, &findings_topic, &[&c]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.kill(Stop::Kill).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let asked = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(55), "a stop with the broker away took over 55 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "a stop with the broker away exits 0: {status}");
    eprintln!("incidents: stopped with the broker away in {:.1} s", asked.elapsed().as_secs_f64());

    // Back, and started again: it rebuilds from what was committed and reads the rest.
    broker.resume().unwrap();
    let child = start("300ms");
    produce_on(&bootstrap, &findings_topic, &[&a]).await;
    let want = expected(&[b.clone(), c.clone(), a.clone()]);
    let out = read_committed_from(&bootstrap, &incidents_topic, "the merged incident", Duration::from_secs(2), |o| {
        standing(o) == want
    })
    .await;
    stop(child);
    assert_eq!(standing(&out), want);
}
