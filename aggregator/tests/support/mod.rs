//! What the network drills share: the servers over a sink in memory, the test CA's files, TLS
//! clients, and a hand-written HTTP/1.1 POST.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // helpers outside #[test] fns

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokentrail_aggregator::attest::PodNodes;
use tokentrail_aggregator::config::{GrpcConfig, TlsConfig, WebhookConfig};
use tokentrail_aggregator::sink::{DeadLetter, Delivery, Sink};
use tokentrail_aggregator::{Metrics, Servers};
use tokentrail_proto::Observation;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls;

/// The test CA's files (one CA for agents and the apiserver, see `data/tls/README.md`).
pub fn tls(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls").join(name)
}

/// The apiserver's audit client certificate's CN.
pub const APISERVER: &str = "kube-apiserver-audit";

/// Permits of [`MemorySink::gate`]: a test holding them all holds every delivery.
pub const GATE: u32 = 1 << 20;

/// Observations and dead letters delivered; a delivery waits for a permit of `gate`.
pub struct MemorySink {
    pub observations: AtomicU64,
    pub dead_letters: AtomicU64,
    pub gate: Arc<Semaphore>,
}

impl MemorySink {
    pub fn open() -> Arc<MemorySink> {
        Arc::new(MemorySink {
            observations: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            gate: Arc::new(Semaphore::new(GATE as usize)),
        })
    }

    pub fn observations(&self) -> u64 {
        self.observations.load(Ordering::Relaxed)
    }
}

impl PodNodes for MemorySink {
    fn node_of(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

impl Sink for MemorySink {
    fn deliver<'a>(
        &'a self,
        _cluster: &'a str,
        observations: Vec<Observation>,
        dead_letter: Option<DeadLetter<'a>>,
    ) -> Delivery<'a> {
        Box::pin(async move {
            let _permit = self.gate.acquire().await.unwrap();
            self.observations.fetch_add(observations.len() as u64, Ordering::Relaxed);
            self.dead_letters.fetch_add(u64::from(dead_letter.is_some()), Ordering::Relaxed);
            Ok(observations.len() as u64)
        })
    }
}

fn server_tls() -> TlsConfig {
    TlsConfig {
        client_ca: Some(tls("ca.pem")),
        node_dns_name: "agent.{node}.test".into(),
        ..TlsConfig::new(tls("server.pem"), tls("server.key"))
    }
}

/// The webhook over mTLS, the apiserver's certificate allowed, short timeouts.
pub fn webhook_config() -> WebhookConfig {
    WebhookConfig {
        tls: Some(server_tls()),
        allowed_client_names: vec![APISERVER.into()],
        max_connections: 100,
        handshake_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..WebhookConfig::new("127.0.0.1:0".parse().unwrap(), "onprem")
    }
}

/// The attestation server over mTLS, short timeouts.
pub fn grpc_config() -> GrpcConfig {
    GrpcConfig {
        tls: Some(server_tls()),
        max_connections: 100,
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..GrpcConfig::new("127.0.0.1:0".parse().unwrap(), "onprem")
    }
}

/// Running servers; they stop when dropped.
pub struct Running {
    pub servers: Servers,
    pub metrics: Arc<Metrics>,
    pub sink: Arc<MemorySink>,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub async fn start(grpc: Option<GrpcConfig>, webhook: Option<WebhookConfig>) -> Running {
    let sink = MemorySink::open();
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = watch::channel(false);
    let servers =
        Servers::start(grpc.as_ref(), webhook.as_ref(), sink.clone(), metrics.clone(), stopped).await.unwrap();
    Running { servers, metrics, sink, stop }
}

/// A TLS client trusting the test CA, presenting `identity` (`apiserver`, `node`) if given.
pub fn connector(identity: Option<&str>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(tls("ca.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(name) => {
            let certs =
                CertificateDer::pem_file_iter(tls(&format!("{name}.pem"))).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(tls(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("aggregator.test").unwrap()
}

/// One HTTP/1.1 POST over mTLS as `identity`: the status and the answer's body.
pub async fn post_tls(addr: std::net::SocketAddr, identity: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let stream = connector(Some(identity), &[b"http/1.1"]).connect(server_name(), tcp).await?;
    post(stream, body).await
}

/// One HTTP/1.1 POST, written by hand: the status and the answer's body.
pub async fn post<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, body: &[u8]) -> std::io::Result<(u16, String)> {
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: tokentrail\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// An audit `EventList` of `n` token uses by a pod's service account.
pub fn event_list(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete",
                "requestURI":"/api/v1/namespaces/shop/secrets","verb":"list",
                "user":{{"username":"system:serviceaccount:shop:web","groups":["system:serviceaccounts"],
                  "extra":{{"authentication.kubernetes.io/credential-id":["JTI=jti-{i}"],
                            "authentication.kubernetes.io/node-name":["worker-1"],
                            "authentication.kubernetes.io/pod-name":["web-0"],
                            "authentication.kubernetes.io/pod-uid":["uid-web-0"]}}}},
                "sourceIPs":["10.1.2.3"],"userAgent":"curl/8",
                "objectRef":{{"resource":"secrets","namespace":"shop","apiVersion":"v1"}},
                "responseStatus":{{"metadata":{{}},"code":200}},
                "requestReceivedTimestamp":"2026-03-10T08:00:0{d}.000000Z","stageTimestamp":"2026-03-10T08:00:0{d}.000100Z"}}"#,
                d = i % 10
            )
        })
        .collect();
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, items.join(","))
        .into_bytes()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}
