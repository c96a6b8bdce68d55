//! Failure drills on the whole pipeline (real processes, real signals, the real broker): while
//! a part fails, the cluster keeps producing benign traffic and replays; afterwards the findings
//! topic holds every expected finding, once, and nothing else. No finding lost, none duplicated,
//! no false finding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::audit::Token;
use e2e_support::cluster::Pod;
use e2e_support::drill::{assert_exactly, holding, subject, wait_until_assigned, Cluster};
use e2e_support::findings::Subject;
use e2e_support::{Layout, Pipeline, WAIT};
use tokentrail_integration_tests::{OwnBroker, Stop};

/// Also: restarted under its name (a StatefulSet pod's restart), the replica takes its own
/// partitions back without a rebalance (static membership): the other replica's partitions are
/// never revoked, so its findings do not wait for the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlator_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let _serial = correlator_support::one_at_a_time().await;
    // Commits every 2 s, so the kill lands with consumed, uncommitted work.
    let mut p = Pipeline::start("drill-kill", Layout { commit_interval: "2s", ..Layout::default() }).await;
    let c = Cluster::schedule(&mut p).await;
    let mut expected = Vec::new();
    let mut other_revoked = 0;
    for n in 1..=3 {
        let (events, findings) = c.wave(n, 100);
        p.audit(&events).await;
        expected.extend(findings);
        if n == 2 {
            // Both replicas hold partitions: the group has settled.
            wait_until_assigned(&p.correlators[1], 0).await;
            other_revoked = p.correlators[1].log().matches("partitions revoked").count();
            let killed = std::time::Instant::now();
            p.correlators[0].kill9();
            let before_restart = p.correlators[0].log().len();
            p.restart_correlator(0);
            wait_until_assigned(&p.correlators[0], before_restart).await;
            eprintln!(
                "drill: the restarted replica held partitions again {:.1} s after SIGKILL",
                killed.elapsed().as_secs_f64()
            );
        }
    }
    assert_exactly(&mut p, &expected).await;
    let log = p.correlators[1].log();
    assert_eq!(
        log.matches("partitions revoked").count(),
        other_revoked,
        "the other replica was rebalanced by a restart under the same name:\n{log}"
    );
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_restarted_while_agents_hold_unacknowledged_attestations_loses_none() {
    let _serial = correlator_support::one_at_a_time().await;
    let mut p = Pipeline::start("drill-agg", Layout::default()).await;
    let c = Cluster::schedule(&mut p).await;
    // Aggregator 0 serves worker-1's (and worker-3's) agent. It dies; meanwhile a pod is
    // scheduled on worker-1, whose agent can only queue the attestation, and the cluster's
    // traffic goes on through the surviving aggregator.
    p.aggregators[0].kill9();
    let late = Pod::new("shop", "late-0", "late", &c.nodes[0], &c.nodes[0].pod_ip(40));
    let (events, mut expected) = c.wave(1, 50);
    p.audit(&events).await;
    let late_token = {
        p.api.put_pod(late.api_object());
        p.agents[&late.node.name].kubelet.write_projected(&late, &e2e_support::cluster::pod_token(&late, "late-jti-1"));
        Token::bound(&late, "late-jti-1")
    };
    tokio::time::sleep(Duration::from_secs(2)).await; // the agent notices and queues it
    p.aggregators[0].restart();
    p.attested("late-jti-1").await;
    // Now the late pod's address is known: its own use is benign, its token from pod 2 is not.
    p.audit(&[late_token.used().from(&late.ip).event(), late_token.used().from(&c.pods[2].ip).event()]).await;
    expected.push(subject("token-used-from-other-workload", &late_token, &c.pods[2].ip));
    assert_exactly(&mut p, &expected).await;
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_and_reconnecting_delivers_what_it_saw_meanwhile() {
    let _serial = correlator_support::one_at_a_time().await;
    let mut p = Pipeline::start("drill-cut", Layout::default()).await;
    let c = Cluster::schedule(&mut p).await;
    let w2 = &c.nodes[1];
    p.cut(w2);
    // While worker-2's agent is cut off (the test's "minute": its reconnect back-off is capped at
    // 500 ms, so a few seconds are many attempts): pod 1's token rotates and a pod starts.
    let rotated = {
        let pod = &c.pods[1];
        p.agents[&w2.name].kubelet.write_projected(pod, &e2e_support::cluster::pod_token(pod, "svc1-jti-2"));
        Token::bound(pod, "svc1-jti-2")
    };
    let newcomer = Pod::new("shop", "new-0", "new", w2, &w2.pod_ip(50));
    p.api.put_pod(newcomer.api_object());
    p.agents[&w2.name].kubelet.write_projected(&newcomer, &e2e_support::cluster::pod_token(&newcomer, "new-jti-1"));
    let new_token = Token::bound(&newcomer, "new-jti-1");
    // Their use from their own pods before the agent could tell anyone: not a finding.
    p.audit(&[rotated.used().from(&c.pods[1].ip).event(), new_token.used().from(&newcomer.ip).event()]).await;
    let (events, mut expected) = c.wave(1, 20);
    p.audit(&events).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    p.mend(w2);
    p.attested("svc1-jti-2").await;
    p.attested("new-jti-1").await;
    // The attestations arrived: the newcomer's token from pod 0 is a replay.
    p.audit(&[new_token.used().from(&c.pods[0].ip).event()]).await;
    expected.push(subject("token-used-from-other-workload", &new_token, &c.pods[0].ip));
    assert_exactly(&mut p, &expected).await;
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_reassigned_while_a_finding_waits_out_the_attestation_grace_report_it_once() {
    let _serial = correlator_support::one_at_a_time().await;
    let mut p = Pipeline::start("drill-grace", Layout::default()).await;
    let c = Cluster::schedule(&mut p).await;
    // A pod-bound credential of pod 0 that worker-1's agent never attested, used from the pod
    // 90 s ago (the audit backend delivers late): `token-forged-mint` once the agent has
    // reported past that use plus the 2-minute attestation grace, so not for another 30 s.
    let ghost = Token::bound(&c.pods[0], "ghost-jti");
    let (mut events, expected) = c.wave(1, 10);
    events.push(ghost.used().from(&c.pods[0].ip).earlier_by_secs(90).event());
    let grace_ends = e2e_support::cluster::now() + 30_000_000;
    p.audit(&events).await;
    assert_exactly(&mut p, &expected).await;

    // Every partition changes hands while the verdict is pending: replica 0 leaves (replica 1
    // takes all), rejoins, then replica 1 leaves (replica 0 takes all).
    p.correlators[0].stop();
    let (events, more) = c.wave(2, 5);
    p.audit(&events).await;
    p.restart_correlator(0);
    p.correlators[1].stop();
    let mut expected = [expected, more].concat();
    assert!(
        e2e_support::cluster::now() < grace_ends,
        "the hand-overs took longer than the grace; the drill proves nothing"
    );
    // Past the grace, worker-1's agent reconnects and reports its node: its watermark passes.
    while e2e_support::cluster::now() < grace_ends + 1_000_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.cut(&c.nodes[0]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.mend(&c.nodes[0]);
    expected.push(subject("token-forged-mint", &ghost, &c.pods[0].ip));
    let deadline = std::time::Instant::now() + e2e_support::WAIT;
    while !p.findings().await.values().any(|f| f.subject.rule == "token-forged-mint") {
        assert!(std::time::Instant::now() < deadline, "the pending finding never came");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p.correlators[1].restart();
    assert_exactly(&mut p, &expected).await;
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_or_crashed_mid_stream_and_resumed_loses_and_doubles_nothing() {
    let _serial = correlator_support::one_at_a_time().await;
    // A broker of the drill's own (same ports and data across its restarts); the one the other
    // tests share is never touched. Dropped last: the pipeline stops first.
    let broker_dir = tempfile::Builder::new().prefix("tokentrail-own-broker-").tempdir().unwrap();
    let broker = OwnBroker::start(broker_dir.path()).expect("a broker of the drill's own");
    // A correlator whose static membership the restarted broker fences (its own
    // `group.instance.id`, its rejoin's answer lost: apache/kafka#23542) exits by design and is
    // restarted under its name, as Kubernetes restarts it; any other exit fails the drill.
    let layout = Layout {
        bootstrap: Some(broker.broker().bootstrap().to_owned()),
        restart_on_kafka_failure: true,
        ..Layout::default()
    };
    let mut p = Pipeline::start("drill-broker", layout).await;
    let c = Cluster::schedule(&mut p).await;
    let mut expected = Vec::new();
    // The broker goes twice: a clean shutdown (SIGTERM), then a crash (SIGKILL, its logs
    // recovered on start).
    for (round, how) in [(1u8, Stop::Term), (2, Stop::Kill)] {
        // A wave still being consumed, observed and judged when the broker goes.
        let (events, findings) = c.wave(2 * round - 1, 100);
        p.audit(&events).await;
        expected.extend(findings);
        broker.kill(how).unwrap();
        // While it is down, a pod starts: its agent's attestation cannot reach the observations
        // topic until the broker is back (the aggregator refuses it, the agent resends).
        let node = &c.nodes[usize::from(round) % 3];
        let pod =
            Pod::new("shop", &format!("outage-{round}"), &format!("outage{round}"), node, &node.pod_ip(40 + round));
        let jti = format!("outage-{round}-jti-1");
        p.api.put_pod(pod.api_object());
        p.agents[&node.name].kubelet.write_projected(&pod, &e2e_support::cluster::pod_token(&pod, &jti));
        let token = Token::bound(&pod, &jti);
        // Down long enough for every client to find out (librdkafka reports a lost broker
        // within seconds). Every process rides the outage out: the aggregators and correlators
        // keep retrying, the agents keep their attestations until an aggregator takes them.
        tokio::time::sleep(Duration::from_secs(12)).await;
        p.restart_failed_and_assert_running();
        if matches!(how, Stop::Kill) {
            // A replica stopped while the broker is away (a node drained during an outage)
            // ends within the chart's 60 s grace: what it cannot commit or close in its budget
            // is given up, and its successor redoes it.
            p.correlators[0].stop_within(Duration::from_secs(55));
            p.correlators[0].restart();
        }
        broker.resume().unwrap();
        eprintln!("e2e: broker resumed after {how:?}; every process rode the outage out");
        // Back on the same address with the same data: the traffic goes on, the attestation
        // arrives, and the new pod's token used from pod 2 is a replay.
        let (events, findings) = c.wave(2 * round, 100);
        p.audit(&events).await;
        expected.extend(findings);
        p.attested(&jti).await;
        p.audit(&[token.used().from(&pod.ip).event(), token.used().from(&c.pods[2].ip).event()]).await;
        expected.push(subject("token-used-from-other-workload", &token, &c.pods[2].ip));
    }
    assert_exactly(&mut p, &expected).await;
    // Every process came through both outages (a fenced correlator restarted, as above).
    eprintln!("e2e: {} correlator restart(s) after the broker's outages", p.restarts);
    p.restart_failed_and_assert_running();
    p.stop();
}

/// A replica frozen inside an open transaction (SIGSTOP: a paused VM, a stopped container). A
/// finding goes to the findings partition of the input partition it was raised from, so the
/// frozen replica's open transaction pins the last stable offset of its own partitions' findings
/// only, and the other replica's findings flow on, each within 10 s (issue 19's target), through
/// the whole freeze: the broker aborts the frozen transaction (the 25 s transaction timeout plus
/// its abort sweep, up to 10 s) before the group expires the replica (the session timeout,
/// 45 s), so when the other replica takes every partition over, their committed offsets are
/// settled and nothing waits (with a 60 s transaction timeout the pending offsets held the whole
/// new assignment back ~21 s: docs/streaming.md, "Restarts and frozen replicas"). Thawed, the
/// fenced replica exits and is restarted, as Kubernetes restarts it; every finding is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_inside_a_transaction_holds_back_only_its_own_findings() {
    let _serial = correlator_support::one_at_a_time().await;
    const PARTITIONS: i32 = 4;
    /// What issue 19 asks of the other replica's findings while one is frozen.
    const HELD_BACK_AT_MOST: Duration = Duration::from_secs(10);
    /// The correlators' default session timeout: the frozen replica is expired after it.
    const SESSION: Duration = Duration::from_secs(45);
    let layout = Layout {
        partitions: PARTITIONS,
        findings_partitions: PARTITIONS,
        // Frequent commits: more chances to freeze one inside its transaction.
        commit_interval: "100ms",
        restart_on_kafka_failure: true,
        ..Layout::default()
    };
    let mut p = Pipeline::start("drill-frozen", layout).await;
    // Eight service accounts over four partitions: both replicas judge some.
    let c = Cluster::schedule_pods(&mut p, 8).await;
    wait_until_assigned(&p.correlators[0], 0).await;
    wait_until_assigned(&p.correlators[1], 0).await;
    let mut arrivals = Arrivals::new(&p.bootstrap, &p.topics.findings);
    let mut expected = Vec::new();

    // Where each token's findings land (its input partition's), and so which replica judges it.
    let wave = c.replays(1);
    p.audit(&wave.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()).await;
    let subjects: Vec<Subject> = wave.into_iter().map(|(_, s)| s).collect();
    arrivals.wait_for(&subjects, WAIT).await;
    let frozen_partitions = holding(&p.correlators[0].log()).unwrap_or_default();
    let frozen_tokens: Vec<bool> =
        subjects.iter().map(|s| frozen_partitions.contains(&arrivals.partition(s))).collect();
    expected.extend(subjects);
    assert!(
        frozen_tokens.iter().any(|&f| f) && frozen_tokens.iter().any(|&f| !f),
        "both replicas must judge some token: replica 0 holds partitions {frozen_partitions:?}"
    );

    // Freeze replica 0 at moments spread over its commit cycle until one lands inside an open
    // transaction: its changelog partitions' last stable offset stays below their end.
    let watermarks = Watermarks::new(&p.bootstrap);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        assert!(attempt <= 300, "replica 0 was never frozen inside a transaction in {attempt} attempts");
        p.audit(&c.benign(4)).await;
        tokio::time::sleep(Duration::from_millis(attempt * 37 % 120)).await;
        p.correlators[0].freeze();
        // A commit already sent completes at the broker meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if watermarks.open_transaction(&p.topics.changelog, &frozen_partitions) {
            break;
        }
        p.correlators[0].thaw();
    }
    let frozen_at = Instant::now();
    eprintln!("drill: replica 0 frozen inside an open transaction at attempt {attempt}");

    // A wave every 5 s through the frozen replica's expiry, the transaction timeout and the
    // broker's abort sweep (10 s).
    let (mut before_expiry, mut after_expiry) = (Duration::ZERO, Duration::ZERO);
    let mut posted_at = Vec::new();
    for n in 2u8.. {
        let since_freeze = frozen_at.elapsed();
        if since_freeze > Duration::from_secs(85) {
            break;
        }
        let wave = c.replays(n);
        let posted = Instant::now();
        p.audit(&wave.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()).await;
        let others: Vec<Subject> =
            wave.iter().zip(&frozen_tokens).filter(|(_, &frozen)| !frozen).map(|((_, s), _)| s.clone()).collect();
        // Every wave is held to the target; the worst before and after the frozen replica can
        // have been expired are reported apart (the expiry's rebalance is where a wait would be).
        arrivals.wait_for(&others, HELD_BACK_AT_MOST).await;
        if since_freeze + HELD_BACK_AT_MOST < SESSION {
            before_expiry = before_expiry.max(posted.elapsed());
        } else {
            after_expiry = after_expiry.max(posted.elapsed());
        }
        posted_at.extend(wave.iter().zip(&frozen_tokens).filter(|(_, &f)| f).map(|((_, s), _)| (s.clone(), posted)));
        expected.extend(wave.into_iter().map(|(_, s)| s));
        arrivals.watch_until(posted + Duration::from_secs(5)).await;
    }
    eprintln!(
        "drill: replica 0 frozen for {:.0} s; the other replica's findings came within {:.1} s at worst before its \
         expiry, {:.1} s after it",
        frozen_at.elapsed().as_secs_f64(),
        before_expiry.as_secs_f64(),
        after_expiry.as_secs_f64()
    );
    p.correlators[0].thaw();
    assert_exactly(&mut p, &expected).await;
    let held: Vec<f64> = posted_at
        .iter()
        .map(|(s, posted)| arrivals.seen_at(s).map_or(f64::NAN, |at| at.duration_since(*posted).as_secs_f64()))
        .collect();
    eprintln!("drill: the frozen replica's own findings waited {held:.1?} s (in wave order)");
    p.restart_failed_and_assert_running();
    p.stop();
}

/// When (and on which partition) each finding first became readable, read committed.
struct Arrivals {
    consumer: rdkafka::consumer::StreamConsumer,
    seen: std::collections::BTreeMap<Subject, (i32, Instant)>,
}

impl Arrivals {
    fn new(bootstrap: &str, topic: &str) -> Arrivals {
        use rdkafka::consumer::Consumer as _;
        let consumer: rdkafka::consumer::StreamConsumer = e2e_support::findings::reader(bootstrap).create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Arrivals { consumer, seen: Default::default() }
    }

    /// Reads until every one of `subjects` has arrived; panics after `limit`, naming the missing.
    async fn wait_for(&mut self, subjects: &[Subject], limit: Duration) {
        let start = Instant::now();
        while let Some(missing) = subjects.iter().find(|s| !self.seen.contains_key(s)) {
            assert!(start.elapsed() < limit, "{missing} not readable within {limit:?}");
            self.read_for(Duration::from_millis(100)).await;
        }
    }

    /// Reads on until `until`.
    async fn watch_until(&mut self, until: Instant) {
        while Instant::now() < until {
            self.read_for(Duration::from_millis(100)).await;
        }
    }

    async fn read_for(&mut self, wait: Duration) {
        use rdkafka::Message as _;
        if let Ok(Ok(m)) = tokio::time::timeout(wait, self.consumer.recv()).await {
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            let at = (m.partition(), Instant::now());
            self.seen.entry(e2e_support::findings::subject_of(&value)).or_insert(at);
        }
    }

    fn partition(&self, subject: &Subject) -> i32 {
        self.seen[subject].0
    }

    fn seen_at(&self, subject: &Subject) -> Option<Instant> {
        self.seen.get(subject).map(|(_, at)| *at)
    }
}

/// A partition's end as a read_committed reader sees it (the last stable offset) against its
/// end: apart, a transaction is open there.
struct Watermarks {
    committed: rdkafka::consumer::BaseConsumer,
    uncommitted: rdkafka::consumer::BaseConsumer,
}

impl Watermarks {
    fn new(bootstrap: &str) -> Watermarks {
        let consumer = |isolation: &str| {
            e2e_support::client(bootstrap)
                .set("group.id", tokentrail_integration_tests::unique_name("drill-watermarks"))
                .set("isolation.level", isolation)
                .create()
                .unwrap()
        };
        Watermarks { committed: consumer("read_committed"), uncommitted: consumer("read_uncommitted") }
    }

    fn open_transaction(&self, topic: &str, partitions: &[i32]) -> bool {
        use rdkafka::consumer::Consumer as _;
        let timeout = Duration::from_secs(10);
        partitions.iter().any(|&p| {
            let (_, stable) = self.committed.fetch_watermarks(topic, p, timeout).unwrap();
            let (_, end) = self.uncommitted.fetch_watermarks(topic, p, timeout).unwrap();
            stable < end
        })
    }
}
