//! Bad input against the whole pipeline: malformed and oversized records on the raw topic,
//! garbage on the attestation port, an agent flooding attestations. Every bad record becomes a
//! dead letter naming where it came from; no process stops; the replays in the traffic around
//! the bad input are reported exactly as without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::collections::BTreeSet;
use std::time::Duration;

use aggregator_support::read_until;
use e2e_support::drill::{assert_exactly, Cluster};
use e2e_support::{Layout, Pipeline, MAX_RECORD_BYTES};
use tokentrail_proto::agent::v1 as agent;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_raw_records_become_dead_letters_and_the_stream_goes_on() {
    let _serial = correlator_support::one_at_a_time().await;
    let mut p = Pipeline::start("bad-raw", Layout::default()).await;
    let c = Cluster::schedule(&mut p).await;
    let (events, mut expected) = c.wave(1, 20);
    p.audit(&events).await;

    let oversized = {
        let mut e = c.tokens[0].used().from(&c.pods[0].ip).event();
        e["padding"] = serde_json::json!("x".repeat(MAX_RECORD_BYTES + 1));
        e.to_string().into_bytes()
    };
    let bad: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01, 0x80],
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"#.to_vec(),
        b"[1,2,3]".to_vec(),
        oversized,
    ];
    let bad_at: BTreeSet<(i32, i64)> = p.produce_raw(&bad, None).await.into_iter().collect();

    let (events, more) = c.wave(2, 20);
    p.audit(&events).await;
    expected.extend(more);
    assert_exactly(&mut p, &expected).await;

    // Every bad record, and only those, is a dead letter that says where it was and why.
    let dead =
        read_until(&p.topics.dead_letters, "the dead letters", Duration::from_secs(1), |d| d.len() >= bad.len()).await;
    let dead_at: BTreeSet<(i32, i64)> = dead
        .iter()
        .map(|d| {
            assert!(!d.headers["tokentrail-error"].is_empty(), "a dead letter says why: {:?}", d.headers);
            assert_eq!(d.headers["tokentrail-source-topic"], p.topics.raw);
            (
                d.headers["tokentrail-source-partition"].parse().unwrap(),
                d.headers["tokentrail-source-offset"].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(dead.len(), bad.len(), "one dead letter per bad record");
    assert_eq!(dead_at, bad_at, "the dead letters are the bad records");
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_grpc_port_and_a_flooding_agent_do_not_stop_the_pipeline() {
    let _serial = correlator_support::one_at_a_time().await;
    let mut p = Pipeline::start("bad-grpc", Layout::default()).await;
    let c = Cluster::schedule(&mut p).await;
    let port = p.aggregator_ports[0];

    // Garbage: random bytes, an HTTP/1 request, and the HTTP/2 preface followed by nonsense.
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = s.write_all(garbage).await;
        let _ = s.shutdown().await;
    }

    // A rogue agent floods attestations about a node of its own, as fast as the stream takes
    // them: thousands of deltas, each upserting a pod.
    let flood = tokio::spawn(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = agent::attestation_client::AttestationClient::new(channel);
        let messages = (1..=5_000u64).map(|sequence| agent::AgentMessage {
            agent_id: "flood".into(),
            sequence,
            node_name: "worker-9".into(),
            observed_at_micros: e2e_support::cluster::now(),
            body: Some(agent::agent_message::Body::Delta(agent::NodeDelta {
                pods_upserted: vec![agent::Pod {
                    uid: format!("flood-{sequence}"),
                    namespace: "flood".into(),
                    name: format!("flood-{sequence}"),
                    serviceaccount: "flood".into(),
                    ips: vec![format!("10.244.9.{}", sequence % 250)],
                    phase: "Running".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
        let acks = client.attest(tokio_stream::iter(messages)).await.map(|r| r.into_inner());
        let mut acked = 0;
        if let Ok(mut acks) = acks {
            while let Ok(Some(_)) = acks.message().await {
                acked += 1;
            }
        }
        acked
    });

    // The cluster's traffic, and the other agents' news, go on meanwhile.
    let (events, mut expected) = c.wave(1, 20);
    p.audit(&events).await;
    let late = e2e_support::cluster::Pod::new("shop", "late-0", "late", &c.nodes[0], &c.nodes[0].pod_ip(40));
    let late_token = p.schedule(&late, "late-jti-1").await;
    p.audit(&[late_token.used().from(&c.pods[2].ip).event()]).await;
    expected.push(e2e_support::drill::subject("token-used-from-other-workload", &late_token, &c.pods[2].ip));
    let acked = tokio::time::timeout(e2e_support::WAIT, flood).await.expect("the flood ends").unwrap();
    eprintln!("e2e: the flood's stream got {acked} acknowledgements");
    assert_exactly(&mut p, &expected).await;
    p.stop();
}
