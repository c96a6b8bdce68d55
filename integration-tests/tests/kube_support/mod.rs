//! Talking to the real kube-apiserver the way pods, kubelets and people do: HTTPS from a chosen
//! loopback address, authenticated by a client certificate or a bearer token.
//!
//! Written by hand over tokio-rustls rather than with kube-rs because the point of these tests
//! is the client address the apiserver records: every request binds its socket to the address
//! of the pod (or attacker) it plays, 127.0.0.x, which Linux routes on `lo` without any setup.
//! HTTP/1.0 with no keep-alive keeps the exchange one request per connection, with the body
//! ending at the close (no chunked decoding needed).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokentrail_integration_tests::kube::{Cluster, USERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Who makes a request.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    /// One of the harness's users, by client certificate.
    User(&'a str),
    /// A bearer token.
    Token(&'a str),
}

/// An apiserver's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A client of one cluster's apiserver.
pub struct Api {
    addr: SocketAddr,
    anonymous: TlsConnector,
    users: BTreeMap<String, TlsConnector>,
}

/// The address the admin, the user and the kubelets talk from (the control plane's host).
pub const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

impl Api {
    pub fn new(cluster: &Cluster) -> Api {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&std::fs::read(cluster.ca()).unwrap()).unwrap()).unwrap();
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
        };
        let users = USERS
            .iter()
            .map(|user| {
                let certs = CertificateDer::pem_slice_iter(&std::fs::read(cluster.cert(user)).unwrap())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(&std::fs::read(cluster.key(user)).unwrap()).unwrap();
                let config = builder().with_client_auth_cert(certs, key).unwrap();
                (user.to_string(), TlsConnector::from(Arc::new(config)))
            })
            .collect();
        Api { addr: cluster.address(), anonymous: TlsConnector::from(Arc::new(builder().with_no_client_auth())), users }
    }

    /// One request from `from`. PATCH bodies are JSON merge patches.
    pub async fn call(&self, from: IpAddr, who: Who<'_>, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let connector = match who {
            Who::User(user) => &self.users[user],
            Who::Token(_) => &self.anonymous,
        };
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let tcp = socket.connect(self.addr).await.unwrap();
        let mut tls = connector.connect(ServerName::IpAddress(self.addr.ip().into()), tcp).await.unwrap();
        let body = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
        let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: tokentrail-kube-test\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Who::Token(token) = who {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body).await.unwrap();
        tls.flush().await.unwrap();
        let mut response = Vec::new();
        // Go's TLS server ends a connection without close_notify now and then: what arrived counts.
        let _ = tls.read_to_end(&mut response).await;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response head");
        let status_line = String::from_utf8_lossy(&response[..split]);
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let body = serde_json::from_slice(&response[split + 4..]).unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// A request that must succeed (2xx); returns the response object.
    pub async fn ok(&self, from: IpAddr, who: Who<'_>, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = self.call(from, who, method, path, body).await;
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path} as {who:?} from {from}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    /// A request as the cluster admin from the control plane's host.
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.ok(HOST, Who::User("admin"), method, path, body).await
    }

    /// Polls `path` as the admin until `done` holds for the object (at most a minute).
    pub async fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.call(HOST, Who::User("admin"), "GET", path, None).await;
            if reply.status == 200 && done(&reply.body) {
                return reply.body;
            }
            assert!(Instant::now() < deadline, "{what}: still not so after 60 s: {} {}", reply.status, reply.body);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A string field of a JSON object by path (`a.b.c`); panics with the object when absent.
pub fn field<'v>(object: &'v Value, path: &str) -> &'v str {
    path.split('.')
        .try_fold(object, |v, key| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {path} in {object}"))
}

/// A receiver for the apiserver's audit webhook backend: each POSTed `EventList` batch is saved
/// as it came, `batch-<n>.json` in a directory, and answered 200. Plain HTTP on loopback.
///
/// With a forward address it is also a tee in front of that webhook (the aggregator's): it
/// passes every batch on, in the order received, retrying until it is accepted with 200, and
/// counts the events so accepted. That count is what tells the test the aggregator has all the
/// events the audit log holds; storing first also means no batch is lost while the aggregator
/// is not yet listening (the apiserver's own backend drops a batch after a few failed tries).
pub struct WebhookSink {
    pub url: String,
    pub dir: std::path::PathBuf,
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
}

impl WebhookSink {
    pub async fn start(dir: std::path::PathBuf, forward_to: Option<SocketAddr>) -> WebhookSink {
        std::fs::create_dir_all(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit", listener.local_addr().unwrap());
        let forwarded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (to_forward, batches_to_forward) = tokio::sync::mpsc::unbounded_channel();
        if let Some(target) = forward_to {
            tokio::spawn(forward(target, batches_to_forward, forwarded.clone()));
        }
        let batches = dir.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                // One request per connection: we answer `Connection: close`.
                let Some(body) = read_request(&mut stream).await else { continue };
                n += 1;
                std::fs::write(batches.join(format!("batch-{n:05}.json")), &body).unwrap();
                if forward_to.is_some() {
                    to_forward.send(body).unwrap();
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            }
        });
        WebhookSink { url, dir, forwarded }
    }

    /// The audit events received so far.
    pub fn events(&self) -> usize {
        let mut count = 0;
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            count += events_in(&std::fs::read(entry.unwrap().path()).unwrap());
        }
        count
    }

    /// The audit events the forward address has accepted so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The events of one batch, which must be an `EventList`.
fn events_in(batch: &[u8]) -> usize {
    let batch: Value = serde_json::from_slice(batch).unwrap();
    assert_eq!(batch["kind"], "EventList", "the webhook backend posts EventLists");
    batch["items"].as_array().map_or(0, Vec::len)
}

/// Passes each batch on to `target` in order, each until it is answered 200.
async fn forward(
    target: SocketAddr,
    mut batches: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    forwarded: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some(body) = batches.recv().await {
        let mut refused = 0u32;
        while post(target, &body).await != Some(200) {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if refused > 0 {
            // Expected while the pipeline starts after the cluster; shown, in case it is not that.
            eprintln!("kube_apiserver: the webhook at {target} accepted a batch after {refused} refusals");
        }
        forwarded.fetch_add(events_in(&body), std::sync::atomic::Ordering::SeqCst);
    }
}

/// One HTTP/1.1 POST of a JSON body; the response's status, or None if the exchange failed.
async fn post(target: SocketAddr, body: &[u8]) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(target).await.ok()?;
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let status_line = response.split(|&b| b == b'\r').next()?;
    String::from_utf8_lossy(status_line).split_whitespace().nth(1)?.parse().ok()
}

/// The body of one HTTP/1.1 request with a Content-Length (what Go's client sends for the
/// webhook's byte bodies).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("the webhook request has a Content-Length");
            while data.len() < end + 4 + length {
                let n = stream.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                data.extend_from_slice(&buf[..n]);
            }
            return Some(data[end + 4..end + 4 + length].to_vec());
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
}
