//! Connection-flood drill over real sockets on 127.0.0.1 (mTLS, a sink in memory): thousands of
//! idle TCP connections and stalled TLS handshakes to both the webhook and the attestation
//! server; the apiserver's POST and an agent's stream still get through, the flood is closed
//! after the (short, for the test) timeouts, and an agent's quiet stream outlives them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokentrail_aggregator::telemetry::ConnectionCounts;
use tokentrail_aggregator::Metrics;
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::wire::agent::v1::attestation_client::AttestationClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Idle connections opened to each port. With [`STALLED`] it stays within what the server
/// holds (`max_connections`, 100 here) plus its accept queue (1024): a connection the kernel
/// could not queue is forgotten by the server's kernel without a word to an idle client, so the
/// test could not see it closed.
const IDLE: usize = 900;
/// Connections to each port that start a TLS handshake and stall.
const STALLED: usize = 100;
/// The longest the drill waits for anything.
const DEADLINE: Duration = Duration::from_secs(60);

/// Opens `n` connections to `addr` one after the other (a burst of thousands at once overflows
/// the kernel's queues, see [`IDLE`]), writing `first` on each.
async fn flood(addr: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await.unwrap().unwrap();
        tcp.write_all(first).await.unwrap();
        open.push(tcp);
    }
    open
}

/// How many of `streams` the server closed (EOF or reset) within [`DEADLINE`].
async fn closed_by_the_server(streams: Vec<TcpStream>) -> usize {
    let mut tasks = JoinSet::new();
    for mut s in streams {
        tasks.spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
                    Err(_) => return false,
                    Ok(Ok(0) | Err(_)) => return true,
                    Ok(Ok(_)) => {} // a TLS alert or an HTTP answer: read on to the end
                }
            }
        });
    }
    let mut closed = 0;
    while let Some(done) = tasks.join_next().await {
        closed += usize::from(done.unwrap());
    }
    closed
}

async fn agent_channel(addr: SocketAddr) -> Channel {
    let read = |n: &str| std::fs::read(tls(n)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")))
        .identity(Identity::from_pem(read("node.pem"), read("node.key")))
        .domain_name("aggregator.test");
    Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap()
}

fn snapshot(sequence: u64) -> agent::AgentMessage {
    agent::AgentMessage {
        agent_id: "drill-agent".into(),
        sequence,
        node_name: "worker-1".into(),
        observed_at_micros: 1_773_129_600_000_000,
        body: Some(agent::agent_message::Body::Snapshot(agent::NodeSnapshot {
            node: Some(agent::Node { name: "worker-1".into(), uid: "node-uid".into(), ..Default::default() }),
            ..Default::default()
        })),
    }
}

/// The webhook POST, retried (the apiserver retries too) until answered or [`DEADLINE`].
async fn apiserver_post(addr: SocketAddr) -> u16 {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(10), post_tls(addr, "apiserver", &event_list(3))).await;
        match attempt {
            Ok(Ok((status, _))) => return status,
            _ if tokio::time::Instant::now() > give_up => panic!("the apiserver's POST never got through"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn counts(c: &ConnectionCounts) -> String {
    format!(
        "accepted {}, handshakes failed {}, idle closed {}, at limit {}, accept errors {}, open {}",
        Metrics::get(&c.accepted_total),
        Metrics::get(&c.handshakes_failed_total),
        Metrics::get(&c.idle_closed_total),
        Metrics::get(&c.at_limit_total),
        Metrics::get(&c.accept_errors_total),
        Metrics::get(&c.open),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_stalled_connections_is_closed_and_real_clients_still_get_through() {
    let running = start(Some(grpc_config()), Some(webhook_config())).await;
    let (webhook, grpc) = (running.servers.bound.webhook.unwrap(), running.servers.bound.grpc.unwrap());
    let started = std::time::Instant::now();

    // A TLS record header announcing a ClientHello that never comes.
    const STALL: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let mut attackers = Vec::new();
    for addr in [webhook, grpc] {
        attackers.extend(flood(addr, IDLE, b"").await);
        attackers.extend(flood(addr, STALLED, STALL).await);
    }
    let opened = attackers.len();
    eprintln!("{opened} attacking connections open after {:?}", started.elapsed());
    assert_eq!(opened, 2 * (IDLE + STALLED));

    // An agent's stream and the apiserver's POST, while the attackers hold what they got.
    let agent = tokio::spawn(async move {
        let mut client = AttestationClient::new(agent_channel(grpc).await);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(snapshot(1)).await.unwrap();
        let mut acks = client.attest(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        let first = acks.message().await.unwrap().unwrap();
        // Quiet for three idle timeouts: the server's pings and the agent's answers keep it open.
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(snapshot(2)).await.unwrap();
        let second = acks.message().await.unwrap().unwrap();
        [first, second].map(|m| match m.body {
            Some(agent::aggregator_message::Body::Ack(a)) => a.sequence,
            None => 0,
        })
    });
    assert_eq!(apiserver_post(webhook).await, 200);
    let acked = tokio::time::timeout(DEADLINE, agent).await.expect("the agent's stream got through").unwrap();
    assert_eq!(acked, [1, 2]);
    eprintln!("the apiserver and the agent got through after {:?}", started.elapsed());

    let closed = closed_by_the_server(attackers).await;
    eprintln!("{closed} of {opened} closed by the server after {:?}", started.elapsed());
    let m = &running.metrics;
    eprintln!("webhook: {}\ngrpc: {}", counts(&m.webhook_connections), counts(&m.grpc_connections));
    assert_eq!(closed, opened, "every idle or stalled connection is closed");
    for c in [&m.webhook_connections, &m.grpc_connections] {
        assert!(Metrics::get(&c.at_limit_total) > 0, "the limit was reached: {}", counts(c));
        assert!(Metrics::get(&c.handshakes_failed_total) >= STALLED as u64, "{}", counts(c));
        assert_eq!(Metrics::get(&c.accept_errors_total), 0);
    }
    assert!(running.sink.observations() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_without_a_stream_is_closed_however_busily_it_pings() {
    let running = start(Some(grpc_config()), None).await;
    let grpc = running.servers.bound.grpc.unwrap();
    let started = std::time::Instant::now();
    let tcp = TcpStream::connect(grpc).await.unwrap();
    let tls = connector(Some("node"), &[b"h2"]).connect(server_name(), tcp).await.unwrap();
    // A real HTTP/2 client: it answers the server's pings, and sends its own every 100 ms, but
    // opens no stream. Before, every byte read kept a connection from being idle.
    let (_requests, mut connection) = h2::client::handshake(tls).await.unwrap();
    let mut pings = connection.ping_pong().unwrap();
    let mut connection = tokio::spawn(connection);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                ended = &mut connection => return ended.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = pings.ping(h2::Ping::opaque()).await;
                }
            }
        }
    })
    .await;
    let m = &running.metrics;
    assert!(closed.is_ok(), "still open after 10 s of pings: {}", counts(&m.grpc_connections));
    assert!(started.elapsed() >= Duration::from_secs(1), "closed before its idle timeout: {closed:?}");
    assert_eq!(Metrics::get(&m.grpc_connections.idle_closed_total), 1);
}
