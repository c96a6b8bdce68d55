//! The agent end to end against a real gRPC server on loopback: snapshot on connect, deltas
//! after token rotation, resend after the server restarts, nothing lost, pod identity updates,
//! graceful shutdown, a bounded queue. (No token in output: `no_token_leak.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{config, is_snapshot, jtis_in, pod_token, start, token_a, Kubelet, TestServer, POD_A, POD_B, VOL};
use tokentrail_agent::pods::PodUpdate;
use tokentrail_agent::state::PodInfo;
use tokentrail_agent::Metrics;
use tokentrail_proto::wire::agent::v1::agent_message::Body;
use tokentrail_proto::wire::agent::v1::AgentMessage;

#[tokio::test]
async fn snapshot_on_connect_then_a_delta_for_each_rotation() {
    let k = Kubelet::new();
    k.projected_token(POD_A, VOL, &token_a("jti-1"), "2025_06_28_09_00_00");
    let server = TestServer::start().await;
    let agent = start(config(&k, &server));

    server.wait_for("snapshot", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;
    let first = server.messages().remove(0);
    assert!(is_snapshot(&first), "the first message is the snapshot");
    assert_eq!(first.sequence, 1);
    assert_eq!(first.node_name, "worker-1");
    assert_eq!(jtis_in(&first), ["jti-1"]);

    // Rotations: the kubelet's atomic swap; measure rename → delta received.
    let mut latencies = Vec::new();
    for i in 2..=11 {
        let jti = format!("jti-{i}");
        let t0 = Instant::now();
        k.projected_token(POD_A, VOL, &token_a(&jti), &format!("2025_06_28_{:02}_00_00", 9 + i));
        server.wait_for(&jti, Duration::from_secs(5), |m| m.iter().any(|(_, _, m)| jtis_in(m).contains(&jti))).await;
        let log = server.log.lock().unwrap();
        let (at, _, m) = log.messages.iter().find(|(_, _, m)| jtis_in(m).contains(&jti)).unwrap();
        assert!(!is_snapshot(m), "a rotation arrives as a delta");
        latencies.push(at.duration_since(t0));
    }
    latencies.sort();
    println!(
        "rotation → delta received: median {:?}, max {:?} over {} rotations",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert!(latencies[latencies.len() - 1] < Duration::from_secs(2), "{latencies:?}");

    // The sequence is dense and every message was acknowledged.
    let seqs: Vec<u64> = server.messages().iter().map(|m| m.sequence).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    assert_eq!(Metrics::get(&agent.metrics.rotations_total), 10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(Metrics::get(&agent.metrics.queue_depth), 0);
    agent.shutdown().await;
}

#[tokio::test]
async fn new_pods_and_torn_down_pods_become_deltas() {
    let k = Kubelet::new();
    let server = TestServer::start().await;
    let agent = start(config(&k, &server));
    server.wait_for("empty snapshot", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;

    k.projected_token(
        POD_B,
        VOL,
        &pod_token("b-1", "shop", "web", "web-0", POD_B, "worker-1", 1),
        "2025_06_28_09_00_00",
    );
    server
        .wait_for("pod B's token", Duration::from_secs(5), |m| {
            m.iter().any(|(_, _, m)| jtis_in(m).contains(&"b-1".to_string()))
        })
        .await;
    k.remove_pod(POD_B);
    server
        .wait_for("pod B's token gone", Duration::from_secs(5), |m| {
            m.iter().any(|(_, _, m)| matches!(&m.body, Some(Body::Delta(d)) if d.credentials_removed.iter().any(|r| r.jti.as_deref() == Some("b-1"))))
        })
        .await;
    agent.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_attestations_are_resent_after_the_server_restarts_and_nothing_is_lost() {
    let k = Kubelet::new();
    k.projected_token(POD_A, VOL, &token_a("r-1"), "2025_06_28_09_00_00");
    let mut server = TestServer::start().await;
    let agent = start(config(&k, &server));
    server.wait_for("snapshot", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;

    // The aggregator receives but stops acknowledging (say it cannot write to Kafka), then dies.
    server.acks.send_replace(false);
    k.projected_token(POD_A, VOL, &token_a("r-2"), "2025_06_28_10_00_00");
    server
        .wait_for("r-2", Duration::from_secs(5), |m| m.iter().any(|(_, _, m)| jtis_in(m).contains(&"r-2".to_string())))
        .await;
    server.stop().await;

    // While it is down the token rotates twice more.
    k.projected_token(POD_A, VOL, &token_a("r-3"), "2025_06_28_11_00_00");
    tokio::time::sleep(Duration::from_millis(100)).await;
    k.projected_token(POD_A, VOL, &token_a("r-4"), "2025_06_28_12_00_00");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(Metrics::get(&agent.metrics.send_failures_total) >= 1);

    server.acks.send_replace(true);
    server.restart().await;
    let generation = server.generation();
    server
        .wait_for("second snapshot", Duration::from_secs(10), |m| {
            m.iter().any(|(_, g, m)| *g == generation && is_snapshot(m))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let log: Vec<(u32, AgentMessage)> =
        server.log.lock().unwrap().messages.iter().map(|(_, g, m)| (*g, m.clone())).collect();
    let second: Vec<&AgentMessage> = log.iter().filter(|(g, _)| *g == generation).map(|(_, m)| m).collect();
    let summary: Vec<String> = second.iter().map(|m| common::summary(m)).collect();
    // Resent first, oldest first, with their original numbers: the unacked delta r-2 and the
    // deltas r-3 and r-4 queued while the server was down; then a fresh snapshot.
    let deltas: Vec<Vec<String>> = second.iter().filter(|m| !is_snapshot(m)).map(|m| jtis_in(m)).collect();
    assert_eq!(deltas, [vec!["r-2"], vec!["r-3"], vec!["r-4"]], "{summary:?}");
    let snap = second.iter().find(|m| is_snapshot(m)).unwrap();
    assert_eq!(jtis_in(snap), ["r-4"], "the snapshot holds the current token");
    assert!(second.windows(2).all(|w| w[0].sequence < w[1].sequence), "in order: {summary:?}");
    assert_eq!(second[0].sequence, 2, "resend starts at the first unacknowledged message: {summary:?}");

    // Across both server lives every sequence number arrived: nothing lost.
    let mut all: Vec<u64> = log.iter().map(|(_, m)| m.sequence).collect();
    all.sort();
    all.dedup();
    let max = *all.last().unwrap();
    assert_eq!(all, (1..=max).collect::<Vec<_>>());
    agent.shutdown().await;
}

#[tokio::test]
async fn pod_identity_updates_are_attested_and_in_the_next_snapshot() {
    let k = Kubelet::new();
    let server = TestServer::start().await;
    let agent = start(config(&k, &server));
    server.wait_for("snapshot", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;
    let pod = PodInfo {
        uid: POD_A.into(),
        namespace: "payments".into(),
        name: "api-0".into(),
        serviceaccount: "api".into(),
        ips: vec!["10.244.1.12".parse().unwrap(), "fd00::12".parse().unwrap()],
        phase: "Running".into(),
        secret_volumes: vec![("legacy".into(), "api-token-abcde".into())],
        ..Default::default()
    };
    agent.pods.send(PodUpdate::Upsert(pod)).await.unwrap();
    server
        .wait_for("pod delta", Duration::from_secs(5), |m| {
            m.iter().any(|(_, _, m)| matches!(&m.body, Some(Body::Delta(d)) if d.pods_upserted.iter().any(|p| p.ips == ["10.244.1.12", "fd00::12"] && p.secret_volumes[0].secret == "api-token-abcde")))
        })
        .await;
    agent.pods.send(PodUpdate::Remove(POD_A.into())).await.unwrap();
    server
        .wait_for("pod removed", Duration::from_secs(5), |m| {
            m.iter().any(
                |(_, _, m)| matches!(&m.body, Some(Body::Delta(d)) if d.pods_removed.iter().any(|p| p.uid == POD_A)),
            )
        })
        .await;
    agent.shutdown().await;
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued_within_the_grace_period() {
    let k = Kubelet::new();
    let mut server = TestServer::start().await;
    server.stop().await;
    let agent = start(config(&k, &server));
    // Queue a change while the aggregator is down, then bring it back and stop the agent at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    k.projected_token(POD_A, VOL, &token_a("late"), "2025_06_28_09_00_00");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.restart().await;
    let t0 = Instant::now();
    agent.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        server.messages().iter().any(|m| jtis_in(m).contains(&"late".to_string())),
        "{:?}",
        server.messages().iter().map(common::summary).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_unreachable_aggregator_does_not_stop_the_agent_and_the_queue_stays_bounded() {
    let k = Kubelet::new();
    let mut server = TestServer::start().await;
    server.stop().await;
    let mut c = config(&k, &server);
    c.queue_capacity = 3;
    let agent = start(c);
    // Let the initial scan of the empty directory happen first: six writes, six deltas.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..6 {
        k.projected_token(POD_A, VOL, &token_a(&format!("q-{i}")), &format!("2025_06_28_{:02}_00_00", 10 + i));
        // Each write is its own delta: wait until the agent has attested it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Metrics::get(&agent.metrics.rotations_total) < i && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(Metrics::get(&agent.metrics.queue_depth) <= 3);
    assert!(
        Metrics::get(&agent.metrics.messages_dropped_total) >= 3,
        "dropped {} rotations {} scans {}",
        Metrics::get(&agent.metrics.messages_dropped_total),
        Metrics::get(&agent.metrics.rotations_total),
        Metrics::get(&agent.metrics.scans_total)
    );
    server.restart().await;
    let generation = server.generation();
    server
        .wait_for("snapshot after the gap", Duration::from_secs(10), |m| {
            m.iter().any(|(_, g, m)| *g == generation && is_snapshot(m))
        })
        .await;
    let snap = server.messages().into_iter().find(is_snapshot).unwrap();
    let Some(Body::Snapshot(s)) = &snap.body else { unreachable!() };
    assert!(s.dropped_messages >= 3, "the snapshot reports the gap");
    assert_eq!(jtis_in(&snap), ["q-5"], "and holds the current state");
    agent.shutdown().await;
}
