//! The pipeline on a real distributed Kafka: a three-node KRaft cluster on loopback
//! ([`OwnCluster`]: every topic replicated three times, `min.insync.replicas` 2), two
//! aggregators and up to four correlators, all real processes. While the traffic flows, the
//! correlators are scaled from two to four, one of them is killed, and the broker that leads the
//! findings partition is killed; after each drill the findings topic, read committed, holds
//! exactly the findings the traffic carries (each wave's known replays, as the same events give
//! without faults): none lost, none created twice, nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::drill::{assert_exactly, wait_until_assigned, Cluster};
use e2e_support::{Layout, Pipeline};
use tokentrail_integration_tests::{OwnCluster, Stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_killing_a_correlator_and_killing_the_leaders_broker_lose_and_double_no_finding() {
    let _serial = correlator_support::one_at_a_time().await;
    let started = Instant::now();
    // Dropped last: the pipeline stops before its cluster.
    let cluster_dir = tempfile::Builder::new().prefix("tokentrail-cluster-").tempdir().unwrap();
    let kafka = OwnCluster::start(cluster_dir.path()).expect("a three-node cluster of the test's own");
    eprintln!("cluster: three nodes up in {:.1} s at {}", started.elapsed().as_secs_f64(), kafka.bootstrap());
    let layout = Layout {
        bootstrap: Some(kafka.bootstrap().to_owned()),
        replication: OwnCluster::REPLICATION,
        // Enough partitions for four replicas to hold two each.
        partitions: 8,
        correlators: 2,
        // A killed replica's partitions move after 6 s (the broker's minimum), and its open
        // transaction, which holds back the findings' read_committed readers and the committed
        // offsets of the partitions it held, is aborted after 10 s.
        session_timeout: Some("6s"),
        transaction_timeout: Some("10s"),
        // A replica whose transaction coordinator or changelog leader was the killed node loses
        // its transaction ("message(s) timed out") and exits by design; Kubernetes would
        // restart it, and so does the test.
        restart_on_kafka_failure: true,
        ..Layout::default()
    };
    let mut p = Pipeline::start("cluster", layout).await;
    let c = Cluster::schedule(&mut p).await;
    let mut expected = Vec::new();

    // Drill 1: two replicas become four while a wave is being judged.
    let phase = Instant::now();
    let (events, findings) = c.wave(1, 300);
    p.audit(&events).await;
    expected.extend(findings);
    p.add_correlator();
    p.add_correlator();
    let (events, findings) = c.wave(2, 300);
    p.audit(&events).await;
    expected.extend(findings);
    // The newcomers hold partitions: the group has rebalanced over four replicas.
    wait_until_assigned(&p.correlators[2], 0).await;
    wait_until_assigned(&p.correlators[3], 0).await;
    assert_exactly(&mut p, &expected).await;
    eprintln!("cluster: scaled from 2 to 4 correlators, findings exact, in {:.1} s", phase.elapsed().as_secs_f64());

    // Drill 2: a replica killed (SIGKILL) with consumed, uncommitted work, and not restarted:
    // the other three take its partitions once its session times out.
    let phase = Instant::now();
    let (events, findings) = c.wave(3, 300);
    p.audit(&events).await;
    expected.extend(findings);
    p.correlators[3].kill9();
    let (events, findings) = c.wave(4, 300);
    p.audit(&events).await;
    expected.extend(findings);
    assert_exactly(&mut p, &expected).await;
    eprintln!("cluster: a correlator killed, findings exact, in {:.1} s", phase.elapsed().as_secs_f64());

    // Drill 3: the node leading the findings partition (where every replica's transactions
    // write) crashes while a wave of 6,000 events is being produced, and stays down for the
    // next wave.
    let phase = Instant::now();
    let leader = kafka.leader(&p.topics.findings, 0).expect("the findings partition has a leader");
    let led: Vec<String> = [&p.topics.raw, &p.topics.observations]
        .into_iter()
        .flat_map(|topic| {
            (0..8).filter(|&i| kafka.leader(topic, i) == Some(leader)).map(move |i| format!("{topic}/{i}"))
        })
        .collect();
    eprintln!("cluster: node {leader} leads the findings partition and {}", led.join(" "));
    let (events, findings) = c.wave(5, 2000);
    expected.extend(findings);
    let crash = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::task::block_in_place(|| kafka.kill(leader, Stop::Kill)).expect("SIGKILL the leader's node");
        eprintln!("cluster: node {leader} killed under load");
    };
    tokio::join!(p.audit(&events), crash);
    let (events, findings) = c.wave(6, 300);
    p.audit(&events).await;
    expected.extend(findings);
    assert_exactly(&mut p, &expected).await;
    let new_leader = kafka.leader(&p.topics.findings, 0);
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "the findings partition's leadership did not move off the dead node {leader}: {new_leader:?}"
    );
    eprintln!(
        "cluster: node {leader} killed, node {} leads, findings exact, in {:.1} s",
        new_leader.unwrap_or_default(),
        phase.elapsed().as_secs_f64()
    );
    // The node comes back on its data and rejoins.
    tokio::task::block_in_place(|| kafka.resume(leader)).expect("resume the killed node");
    // A replica whose consumer was fenced by its own instance id (its rejoin's response lost
    // to the coordinator that moved) exits too, and is restarted under its name the same way.
    // (Correlator 3, killed in drill 2, is not running and stays down.)
    eprintln!("cluster: {} correlator restart(s) after Kafka failures so far", p.restarts);
    let (events, findings) = c.wave(7, 100);
    p.audit(&events).await;
    expected.extend(findings);
    assert_exactly(&mut p, &expected).await;
    p.assert_running();
    // After a broker was killed and came back, one CI run (2026-12-07) saw a correlator take
    // over 60 s to stop on SIGTERM (its log was lost with the run's directory; the cause is
    // not known yet). The drill is about findings, checked above: its stop is given longer and
    // a slow one is printed with its time (and the log, when it does not stop at all).
    p.stop_within(Duration::from_secs(180));
    eprintln!("cluster: the whole run took {:.1} s", started.elapsed().as_secs_f64());
}
