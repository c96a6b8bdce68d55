//! Bad input against the whole pipeline: malformed and oversized records on the raw topic,
//! garbage on the attestation port, an agent claiming another node, an agent flooding
//! attestations. Every bad record becomes a dead letter naming where it came from, and is counted
//! by the aggregator's own metrics (read as it exports them, over OTLP); no process stops; memory
//! does not grow with the flood; the replays in the traffic around the bad input are reported
//! exactly as without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;
mod otlp_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aggregator_support::read_until;
use e2e_support::drill::{assert_exactly, Cluster};
use e2e_support::process::Memory;
use e2e_support::{Layout, Pipeline, MAX_RECORD_BYTES};
use otlp_support::{Collector, Export};
use tokentrail_proto::wire::agent::v1 as agent;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_raw_records_become_dead_letters_and_the_stream_goes_on() {
    let _serial = correlator_support::one_at_a_time().await;
    let collector = Collector::start();
    let layout = Layout { aggregator_metrics: Some(collector.endpoint()), ..Layout::default() };
    let mut p = Pipeline::start("bad-raw", layout).await;
    let c = Cluster::schedule(&mut p).await;
    let (events, mut expected) = c.wave(1, 20);
    let mut raw_records = events.len();
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
    raw_records += bad.len() + events.len();
    p.audit(&events).await;
    expected.extend(more);
    assert_exactly(&mut p, &expected).await;

    // The aggregators counted them too: every raw record in, each bad one a dead letter and a
    // decode error. Summed over both aggregators (either may own a raw partition), from their
    // first exports after everything was consumed.
    let settled = Instant::now();
    let counters = ["records_in", "dead_letters", "decode_errors"]
        .map(|c| aggregators_total(&collector, settled, &format!("tokentrail_aggregator_{c}_total")));
    eprintln!("e2e: the aggregators counted (records in, dead letters, decode errors) = {counters:?}");
    let [records_in, dead_letters, decode_errors] = counters;
    assert_eq!((records_in, dead_letters), (raw_records as i64, bad.len() as i64), "records in, dead letters");
    // A record can carry several problems (each counted), and is one dead letter.
    assert!(decode_errors >= dead_letters, "decode errors {decode_errors} < dead letters {dead_letters}");

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

/// A flood: [`FLOODERS`] rogue agents at once, each streaming [`FLOOD`] attestation messages
/// as fast as the aggregator takes them (one stream is bounded by the produce acknowledgement
/// each message waits for; several streams are processed side by side). Each message moves one
/// of its agent's [`FLOOD_PODS`] pods to a new address, so the state a flood leaves behind is
/// the same after one flood or two.
const FLOODERS: u64 = 4;
const FLOOD: u64 = 2_500;
const FLOOD_PODS: u64 = 64;
/// How much more memory a second flood, just like the first, may leave a process using at its
/// peak. The first flood grows each process by its share of the flood's state (256 pods and
/// their addresses) and by buffers sized to the burst; the second finds all of that in place.
/// Memory kept per message (10,000 of them) would show as a second growth like the first: 16
/// MiB is 1.6 KiB per message, less than one attestation, its observations and their Kafka
/// records take. Measured: at most 3.3 MiB (a correlator), most processes well under 1 MiB.
const SECOND_FLOOD_GROWTH_KIB: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_grpc_port_and_a_flooding_agent_neither_stop_the_pipeline_nor_grow_its_memory() {
    let _serial = correlator_support::one_at_a_time().await;
    let collector = Collector::start();
    let layout = Layout { aggregator_metrics: Some(collector.endpoint()), ..Layout::default() };
    let mut p = Pipeline::start("bad-grpc", layout).await;
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

    // An agent that names worker-8, then claims a pod on worker-7: refused whole, its stream
    // ended.
    let claim = |sequence, node: &str| attestation("rogue", sequence, node, &format!("rogue-{sequence}"), "10.244.8.1");
    let refusal = attest(port, vec![claim(1, "worker-8"), claim(2, "worker-7")]).await.expect_err("the claim refused");
    assert_eq!(refusal.code(), tonic::Code::PermissionDenied, "{refusal}");

    let memory = |p: &Pipeline| -> Vec<(String, Memory)> {
        let watched = p.aggregators.iter().take(1).chain(&p.correlators);
        watched.map(|process| (process.name.clone(), process.memory())).collect()
    };
    let before = memory(&p);
    // Rogue agents flood attestations about nodes of their own, while the cluster's traffic,
    // and the real agents' news, go on.
    let flooding = Instant::now();
    let first = tokio::spawn(flood(port, 1));
    let (events, mut expected) = c.wave(1, 20);
    p.audit(&events).await;
    let late = e2e_support::cluster::Pod::new("shop", "late-0", "late", &c.nodes[0], &c.nodes[0].pod_ip(40));
    let late_token = p.schedule(&late, "late-jti-1").await;
    p.audit(&[late_token.used().from(&c.pods[2].ip).event()]).await;
    expected.push(e2e_support::drill::subject("token-used-from-other-workload", &late_token, &c.pods[2].ip));
    assert_eq!(
        tokio::time::timeout(e2e_support::WAIT, first).await.expect("the flood ends").unwrap(),
        FLOODERS * FLOOD
    );
    p.settled_findings().await;
    eprintln!("e2e: the first flood was taken in {:.1} s", flooding.elapsed().as_secs_f64());
    let after_first = memory(&p);
    let flooding = Instant::now();
    // The same flood again: whatever it needs is in place; what it kept per message is not.
    let second = flood(port, FLOOD + 1);
    assert_eq!(tokio::time::timeout(e2e_support::WAIT, second).await.expect("the flood ends"), FLOODERS * FLOOD);
    assert_exactly(&mut p, &expected).await;
    eprintln!("e2e: the second flood was taken in {:.1} s", flooding.elapsed().as_secs_f64());
    let after_second = memory(&p);

    for (((name, before), (_, first)), (_, second)) in before.iter().zip(&after_first).zip(&after_second) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        eprintln!(
            "e2e: {name} memory in MiB: before {:.1}, peak in flood 1 {:.1}, after {:.1}, peak in flood 2 {:.1}, after {:.1}",
            mib(before.rss_kib),
            mib(first.peak_rss_kib),
            mib(first.rss_kib),
            mib(second.peak_rss_kib),
            mib(second.rss_kib),
        );
        assert!(
            second.peak_rss_kib <= first.peak_rss_kib + SECOND_FLOOD_GROWTH_KIB,
            "{name}: the second flood grew the peak from {} to {} KiB",
            first.peak_rss_kib,
            second.peak_rss_kib
        );
    }

    // The aggregator's own counters: the two refused (one stream, its one pod), every flood
    // message accepted (the real agents' messages come on top, heartbeats included, so this one
    // is a lower bound). The garbage never became a
    // stream: no counter for it, and none of the refusals.
    let settled = Instant::now();
    let counters =
        collector.wait_for("aggregator-0's counters", settled, e2e_support::WAIT, |e| from(e, "aggregator-0"));
    let counter = |name: &str| counters.value(&format!("tokentrail_aggregator_{name}_total")).unwrap();
    eprintln!(
        "e2e: aggregator-0 counted streams refused {}, attestations refused {}, accepted {}",
        counter("streams_refused"),
        counter("attestations_refused"),
        counter("attestations_accepted")
    );
    assert_eq!((counter("streams_refused"), counter("attestations_refused")), (1, 1));
    assert!(counter("attestations_accepted") > (2 * FLOODERS * FLOOD) as i64);
    p.stop();
}

/// One attestation message of agent `agent_id`: a delta upserting one running pod on `node`.
fn attestation(agent_id: &str, sequence: u64, node: &str, pod: &str, ip: &str) -> agent::AgentMessage {
    agent::AgentMessage {
        agent_id: agent_id.into(),
        sequence,
        node_name: node.into(),
        observed_at_micros: e2e_support::cluster::now(),
        body: Some(agent::agent_message::Body::Delta(agent::NodeDelta {
            pods_upserted: vec![agent::Pod {
                uid: pod.into(),
                namespace: "flood".into(),
                name: pod.into(),
                serviceaccount: "flood".into(),
                ips: vec![ip.into()],
                phase: "Running".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

/// Streams `messages` to the aggregator on `port`; how many it acknowledged, or how it ended
/// the stream.
async fn attest(port: u16, messages: Vec<agent::AgentMessage>) -> Result<u64, tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut client = agent::attestation_client::AttestationClient::new(channel);
    let mut acks = client.attest(tokio_stream::iter(messages)).await?.into_inner();
    let mut acked = 0;
    while acks.message().await?.is_some() {
        acked += 1;
    }
    Ok(acked)
}

/// A flood: [`FLOODERS`] agents `flood-<a>` on nodes `flood-<a>`, each streaming [`FLOOD`]
/// messages from `first_sequence` on, each moving one of its [`FLOOD_PODS`] pods to a new
/// address; how many were acknowledged in all.
async fn flood(port: u16, first_sequence: u64) -> u64 {
    let streams = (0..FLOODERS).map(|a| {
        let messages = (first_sequence..first_sequence + FLOOD)
            .map(|sequence| {
                let (pod, moves) = (sequence % FLOOD_PODS, sequence / FLOOD_PODS);
                let ip = format!("10.245.{a}.{}", 1 + (pod + moves) % 250);
                let agent = format!("flood-{a}");
                attestation(&agent, sequence, &agent, &format!("{agent}-{pod}"), &ip)
            })
            .collect();
        tokio::spawn(attest(port, messages))
    });
    let mut acked = 0;
    for stream in streams.collect::<Vec<_>>() {
        acked += stream.await.unwrap().expect("a flood's stream");
    }
    acked
}

/// Whether `export` is from the aggregator named `instance` (its `service.instance.id`).
fn from(export: &Export, instance: &str) -> bool {
    export.resource.get("service.instance.id").map(String::as_str) == Some(instance)
}

/// Counter `name` summed over both aggregators, from each one's first export received after
/// `since`.
fn aggregators_total(collector: &Collector, since: Instant, name: &str) -> i64 {
    ["aggregator-0", "aggregator-1"]
        .map(|a| collector.wait_for(&format!("{a}'s {name}"), since, e2e_support::WAIT, |e| from(e, a)))
        .iter()
        .map(|e| e.value(name).unwrap_or_else(|| panic!("{name} not exported")))
        .sum()
}
