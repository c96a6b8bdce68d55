//! TLS and mTLS to the aggregator (rustls): the agent verifies the server against the configured
//! CA and presents its client certificate; a server requiring mTLS refuses an agent without one.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{config, is_snapshot, start, Kubelet, TestServer};
use tokentrail_agent::sender::TlsFiles;
use tokentrail_agent::Metrics;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls").join(name)
}

fn server_tls() -> ServerTlsConfig {
    let read = |n: &str| std::fs::read(data(n)).expect("test certificate");
    ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem"), read("server.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")))
}

fn client_tls(with_identity: bool) -> TlsFiles {
    TlsFiles {
        ca: data("ca.pem"),
        cert: with_identity.then(|| data("client.pem")),
        key: with_identity.then(|| data("client.key")),
        server_name: Some("aggregator.test".into()),
    }
}

#[tokio::test]
async fn attestations_flow_over_mutual_tls() {
    let k = Kubelet::new();
    let server = TestServer::start_with(Some(server_tls())).await;
    let mut c = config(&k, &server);
    c.sender.tls = Some(client_tls(true));
    let agent = start(c);
    server.wait_for("snapshot over mTLS", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;
    agent.shutdown().await;
}

#[tokio::test]
async fn an_agent_without_a_client_certificate_is_refused() {
    let k = Kubelet::new();
    let server = TestServer::start_with(Some(server_tls())).await;
    let mut c = config(&k, &server);
    c.sender.tls = Some(client_tls(false));
    let agent = start(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.messages().is_empty());
    assert!(Metrics::get(&agent.metrics.send_failures_total) >= 1);
    agent.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let k = Kubelet::new();
    let server = TestServer::start_with(Some(server_tls())).await;
    let mut c = config(&k, &server);
    c.sender.tls = Some(TlsFiles { server_name: Some("someone-else.test".into()), ..client_tls(true) });
    let agent = start(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.messages().is_empty());
    assert!(Metrics::get(&agent.metrics.send_failures_total) >= 1);
    agent.shutdown().await;
}
