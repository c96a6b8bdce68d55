//! The aggregator's attestation server over real sockets (mTLS on 127.0.0.1:0) with the real
//! broker behind it: the real agent's attestations become observations; an agent whose
//! certificate is for another node, a credential bound to another node, a client without a
//! certificate and an oversized message are refused, and none of it disturbs other agents; a
//! message stamped beyond the aggregator's clock plus the skew it tolerates is acknowledged,
//! counted and never delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod aggregator_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aggregator_support::*;
use tokentrail_aggregator::config::{GrpcConfig, TlsConfig};
use tokentrail_aggregator::Metrics;
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::wire::agent::v1::attestation_client::AttestationClient;
use tokentrail_proto::wire::observation::v1 as pb;
use tonic::transport::Channel;

async fn start_aggregator(t: &Topics, max_message_bytes: usize) -> Running {
    let mut config = t.config();
    config.kafka.audit_topics.clear();
    let mut g = GrpcConfig::new("127.0.0.1:0".parse().unwrap(), "prod");
    g.tls = Some(TlsConfig {
        cert: test_tls("server.pem"),
        key: test_tls("server.key"),
        client_ca: Some(test_tls("ca.pem")),
        node_dns_name: "agent.{node}.test".into(),
    });
    g.max_message_bytes = max_message_bytes;
    config.grpc = Some(g);
    start(config).await
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

/// A projected token's claims (the agent reads claims only; the signature is a placeholder).
fn pod_token(jti: &str, pod: &str, pod_uid: &str, node: &str) -> String {
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"], "exp": 1_900_000_000, "iat": 1_773_129_600,
        "iss": "https://kubernetes.default.svc.cluster.local", "jti": jti, "nbf": 1_773_129_600,
        "kubernetes.io": {"namespace": "shop", "node": {"name": node, "uid": "node-uid"},
            "pod": {"name": pod, "uid": pod_uid}, "serviceaccount": {"name": "web", "uid": "sa-uid"}},
        "sub": "system:serviceaccount:shop:web"
    });
    format!("{}.{}.c2ln", b64url(br#"{"alg":"RS256","kid":"k"}"#), b64url(claims.to_string().as_bytes()))
}

/// A projected volume the way the kubelet's atomic writer lays it out.
fn write_token(root: &Path, pod_uid: &str, token: &str) {
    let vol = root.join(pod_uid).join("volumes/kubernetes.io~projected/kube-api-access-abcde");
    let data = vol.join("..2026_03_10_08_00_00.0000000001");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), token).unwrap();
    std::os::unix::fs::symlink("..2026_03_10_08_00_00.0000000001", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", vol.join("token")).unwrap();
}

/// Sends one message on a new stream; the first answer (an ack's sequence, or the refusal).
async fn attest_once(channel: Channel, m: agent::AgentMessage) -> Result<u64, tonic::Status> {
    let mut client = AttestationClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(m).await.unwrap();
    let mut inbound = client.attest(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
    let answer = tokio::time::timeout(WAIT, inbound.message()).await.expect("an answer")?;
    drop(tx);
    match answer.and_then(|a| a.body) {
        Some(agent::aggregator_message::Body::Ack(a)) => Ok(a.sequence),
        None => Err(tonic::Status::unknown("stream ended without an answer")),
    }
}

fn credential_jtis(out: &[Out]) -> Vec<(String, String, String)> {
    out.iter()
        .filter_map(|o| match o.observation().kind {
            Some(pb::observation::Kind::Credential(c)) => match c.credential.and_then(|c| c.kind) {
                Some(pb::credential::Kind::PodBound(p)) => Some((o.key.clone(), c.node, p.jti.unwrap_or_default())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_agent_over_mtls_credentials_become_observations_and_a_foreign_credential_is_refused() {
    let t = Topics::create("agg-grpc-agent").await;
    let aggregator = start_aggregator(&t, 4 * 1024 * 1024).await;
    let kubelet = tempfile::tempdir().unwrap();
    write_token(kubelet.path(), "uid-web-1", &pod_token("jti-web-1", "web-1", "uid-web-1", "worker-1"));
    // A token file claiming a pod of another node: a compromised worker-1 vouching for worker-2.
    write_token(kubelet.path(), "uid-db-1", &pod_token("jti-db-1", "db-1", "uid-db-1", "worker-2"));

    let agent = RealAgent::start(kubelet.path(), aggregator.addr.unwrap(), None);
    let out = read_until(&t.observations, "the attested credential", Duration::from_millis(500), |o| {
        credential_jtis(o).iter().any(|(_, _, j)| j == "jti-web-1")
    })
    .await;
    agent.wait_for_ack().await;
    agent.stop().await;
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;

    let creds = credential_jtis(&out);
    assert_eq!(creds, vec![("prod/shop/web".to_string(), "worker-1".to_string(), "jti-web-1".to_string())]);
    assert_eq!(Metrics::get(&metrics.attestations_refused_total), 1, "the worker-2 credential");
    assert!(Metrics::get(&metrics.attestations_accepted_total) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_wrong_node_no_certificate_oversized_do_not_disturb_other_agents() {
    let t = Topics::create("agg-grpc-refusals").await;
    let aggregator = start_aggregator(&t, 64 * 1024).await;
    let addr = aggregator.addr.unwrap();

    // A healthy agent keeps its stream open through everything below.
    let mut healthy = AttestationClient::new(mtls_channel(addr, true).await.unwrap());
    let (healthy_tx, rx) = tokio::sync::mpsc::channel(4);
    healthy_tx.send(snapshot("healthy", "worker-1", vec![attested_pod("web-1")])).await.unwrap();
    let mut acks = healthy.attest(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = tokio::time::timeout(WAIT, acks.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first.body, Some(agent::aggregator_message::Body::Ack(agent::Ack { sequence: 1 }))));

    // The worker-1 certificate attesting for worker-2.
    let wrong =
        attest_once(mtls_channel(addr, true).await.unwrap(), snapshot("liar", "worker-2", vec![attested_pod("db-1")]))
            .await;
    assert_eq!(wrong.unwrap_err().code(), tonic::Code::PermissionDenied);

    // No client certificate: the TLS handshake or the first call fails.
    let anonymous = match mtls_channel(addr, false).await {
        Ok(ch) => attest_once(ch, snapshot("anon", "worker-1", vec![])).await.is_err(),
        Err(_) => true,
    };
    assert!(anonymous, "a client without a certificate must not be served");

    // A message over the 64 KiB limit.
    let mut big = attested_pod("big");
    big.ips = (0..10_000).map(|i| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)).collect();
    let oversized = attest_once(mtls_channel(addr, true).await.unwrap(), snapshot("big", "worker-1", vec![big])).await;
    assert_eq!(oversized.unwrap_err().code(), tonic::Code::OutOfRange);

    // The healthy agent's next message is still acknowledged on the same stream.
    let mut delta = snapshot("healthy", "worker-1", vec![]);
    delta.sequence = 2;
    delta.body = Some(agent::agent_message::Body::Delta(agent::NodeDelta {
        pods_upserted: vec![attested_pod("web-2")],
        ..Default::default()
    }));
    healthy_tx.send(delta).await.unwrap();
    let second = tokio::time::timeout(WAIT, acks.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(second.body, Some(agent::aggregator_message::Body::Ack(agent::Ack { sequence: 2 }))));
    drop(healthy_tx);

    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;
    assert!(Metrics::get(&metrics.streams_refused_total) >= 1);
    assert_eq!(Metrics::get(&metrics.attestations_accepted_total), 2, "the healthy agent's two messages");
}

#[allow(clippy::disallowed_methods)] // the aggregator checks against the real clock
fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_from_beyond_the_clock_is_acknowledged_counted_and_not_delivered() {
    let t = Topics::create("agg-grpc-clock").await;
    let aggregator = start_aggregator(&t, 4 * 1024 * 1024).await;
    let addr = aggregator.addr.unwrap();
    const HOUR: i64 = 3_600_000_000;

    // A heartbeat-carrying snapshot stamped 9999-12-31, and one whose pod started an hour
    // ahead: the node's clock, refused. An agent's ack lets it carry on.
    let mut far = snapshot("a-far", "worker-1", vec![attested_pod("far-1")]);
    far.observed_at_micros = 253_402_300_799_000_000;
    let mut ahead = attested_pod("ahead-1");
    ahead.started_at_micros = Some(now_micros() + HOUR);
    let mut started_ahead = snapshot("a-ahead", "worker-1", vec![ahead]);
    started_ahead.observed_at_micros = now_micros();
    // Within the 5-minute skew: accepted.
    let mut near = snapshot("a-near", "worker-1", vec![attested_pod("near-1")]);
    near.observed_at_micros = now_micros() + 60_000_000;
    for m in [far, started_ahead, near] {
        assert_eq!(attest_once(mtls_channel(addr, true).await.unwrap(), m).await.unwrap(), 1);
    }
    let out = read_until(&t.observations, "near-1", Duration::from_millis(500), |o| {
        o.iter().any(|r| matches!(r.observation().kind, Some(pb::observation::Kind::Pod(p)) if p.name == "near-1"))
    })
    .await;
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;

    let pods: Vec<String> = out
        .iter()
        .filter_map(|r| match r.observation().kind {
            Some(pb::observation::Kind::Pod(p)) => Some(p.name),
            _ => None,
        })
        .collect();
    // Pod facts go to every partition (the rules that need them are judged in all of them):
    // one copy per partition, of the accepted pod only.
    assert!(!pods.is_empty() && pods.iter().all(|p| p == "near-1"), "{pods:?}");
    assert!(out.iter().all(|r| r.observation().kind.is_some_and(|k| match k {
        pb::observation::Kind::Node(n) => n.time_micros < now_micros() + HOUR,
        _ => true,
    })));
    assert_eq!(Metrics::get(&metrics.attestations_future_total), 2);
    assert_eq!(Metrics::get(&metrics.attestations_refused_total), 2, "their pods");
    assert_eq!(Metrics::get(&metrics.attestations_accepted_total), 1);
}

/// One node report as an agent sends it: a snapshot first, then heartbeats (deltas with the
/// node only).
fn node_report(node: &str, sequence: u64, at_micros: i64) -> agent::AgentMessage {
    let n = agent::Node {
        name: node.into(),
        addresses: vec![agent::NodeAddress { r#type: "InternalIP".into(), address: "10.0.0.7".into() }],
        ..Default::default()
    };
    let body = if sequence == 1 {
        agent::agent_message::Body::Snapshot(agent::NodeSnapshot { node: Some(n), ..Default::default() })
    } else {
        agent::agent_message::Body::Delta(agent::NodeDelta { node: Some(n), ..Default::default() })
    };
    agent::AgentMessage {
        agent_id: format!("agent-{node}"),
        sequence,
        node_name: node.into(),
        observed_at_micros: at_micros,
        body: Some(body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_many_agents_travel_as_a_progress_per_interval_not_as_copies_on_every_partition() {
    const AGENTS: usize = 20;
    const HEARTBEATS: u64 = 10;
    const T0: i64 = 1_773_129_600_000_000;
    const BEAT: i64 = 30_000_000;
    let t = Topics::create("agg-grpc-progress").await;
    let mut config = t.config();
    config.kafka.audit_topics.clear();
    config.kafka.progress_interval = Duration::from_millis(300);
    let mut g = GrpcConfig::new("127.0.0.1:0".parse().unwrap(), "prod");
    // Plain gRPC, the node taken from the first message: this test is about what is produced.
    g.trust_agent_node_name = true;
    config.grpc = Some(g);
    let aggregator = start(config).await;
    let addr = aggregator.addr.unwrap();

    // Every agent on its own stream, all at once: a snapshot, then a heartbeat every 30 s of
    // their clocks, each acknowledged before the next.
    let agents = (0..AGENTS).map(|i| {
        tokio::spawn(async move {
            let node = format!("worker-{i}");
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = AttestationClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut inbound =
                client.attest(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
            for sequence in 1..=HEARTBEATS + 1 {
                let at = T0 + BEAT * i64::try_from(sequence - 1).unwrap();
                tx.send(node_report(&node, sequence, at)).await.unwrap();
                let ack = tokio::time::timeout(WAIT, inbound.message()).await.expect("an ack").unwrap();
                assert!(matches!(ack.and_then(|a| a.body), Some(agent::aggregator_message::Body::Ack(a)) if a.sequence == sequence));
            }
        })
    });
    for a in agents {
        a.await.unwrap();
    }
    let last = T0 + BEAT * i64::try_from(HEARTBEATS).unwrap();
    let reported_until = |out: &[Out]| {
        let mut until: BTreeMap<String, i64> = BTreeMap::new();
        for o in out.iter().filter(|o| !o.is_extra_copy()) {
            if let Some(pb::observation::Kind::Progress(p)) = o.observation().kind {
                assert_eq!(p.logged_micros, None, "agents' times are not the log's");
                for n in p.nodes {
                    let t = until.entry(n.name).or_default();
                    *t = (*t).max(n.reported_until_micros);
                }
            }
        }
        until
    };
    let out = read_until(&t.observations, "every agent's last heartbeat as progress", Duration::from_secs(1), |o| {
        let until = reported_until(o);
        until.len() == AGENTS && until.values().all(|&t| t == last)
    })
    .await;
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;

    // Each node's fact went out once (its first report), on every partition; its ten
    // heartbeats did not: they are in the progress records, a few per second of the test.
    let node_facts: Vec<&Out> =
        out.iter().filter(|o| matches!(o.observation().kind, Some(pb::observation::Kind::Node(_)))).collect();
    assert_eq!(node_facts.iter().filter(|o| !o.is_extra_copy()).count(), AGENTS);
    assert_eq!(node_facts.len(), AGENTS * 3, "a copy on each of the 3 partitions");
    let progress: Vec<&Out> =
        out.iter().filter(|o| matches!(o.observation().kind, Some(pb::observation::Kind::Progress(_)))).collect();
    assert_eq!(progress.len() % 3, 0, "progress is broadcast");
    assert!(progress.iter().all(|o| o.key == "prod/~broadcast/progress"));
    let per_copy = progress.len() / 3;
    assert!(per_copy >= 1 && per_copy < AGENTS * usize::try_from(HEARTBEATS).unwrap(), "{per_copy} progress records");
    assert_eq!(Metrics::get(&metrics.node_repeats_total), AGENTS as u64 * HEARTBEATS);
    assert_eq!(reported_until(&out).values().copied().collect::<Vec<_>>(), vec![last; AGENTS]);
}
