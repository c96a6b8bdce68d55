//! Shared by the tests that drive an audit webhook (`standalone.rs`, `order_pipeline.rs`): a POST
//! over HTTPS with the test client certificate, as the apiserver's webhook backend sends it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Longest wait for an answer.
const WAIT: Duration = Duration::from_secs(120);

/// Test-only certificates: a CA, `aggregator.test`/127.0.0.1 for the server, and a client
/// certificate for `agent.worker-1.test` (standing in for the apiserver's, too).
pub fn tls(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/data/tls").join(name)
}

/// POSTs `body` over HTTPS with the client certificate; the status code.
pub async fn post(addr: SocketAddr, body: &[u8]) -> u16 {
    use rustls_pki_types::pem::PemObject;
    let read = |n: &str| std::fs::read(tls(n)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(&read("ca.pem")).unwrap()).unwrap();
    let certs =
        rustls_pki_types::CertificateDer::pem_slice_iter(&read("client.pem")).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&read("client.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("aggregator.test").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: tokentrail\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await.expect("an answer");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}
