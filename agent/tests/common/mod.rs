//! Test support: real JWTs, a kubelet pods directory with the atomic-writer layout, a recording
//! attestation server on loopback, and log capture.
#![allow(dead_code, clippy::unwrap_used)] // test support: a failed setup step should panic

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokentrail_agent::pods::PodUpdate;
use tokentrail_agent::{Config, Metrics};
use tokentrail_proto::wire::agent::v1::agent_message::Body;
use tokentrail_proto::wire::agent::v1::attestation_server::{Attestation, AttestationServer};
use tokentrail_proto::wire::agent::v1::{aggregator_message, Ack, AgentMessage, AggregatorMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

// ---------------------------------------------------------------- tokens

pub fn b64url(data: &[u8]) -> String {
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

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let ih = Sha256::new().chain_update(&inner).chain_update(msg).finalize();
    Sha256::new().chain_update(&outer).chain_update(ih).finalize().to_vec()
}

/// A compact JWT signed with a test key (HS256: the agent ignores signatures, so any real
/// signature proves the point that only the payload is read).
pub fn sign(payload: &serde_json::Value) -> String {
    let header = b64url(br#"{"alg":"HS256","kid":"test-key","typ":"JWT"}"#);
    let body = b64url(payload.to_string().as_bytes());
    let input = format!("{header}.{body}");
    let sig = b64url(&hmac_sha256(b"tokentrail-test-signing-key", input.as_bytes()));
    format!("{input}.{sig}")
}

/// The claims of a kubelet-minted projected token (Kubernetes 1.30+ layout, extended expiry).
pub fn pod_token(jti: &str, ns: &str, sa: &str, pod: &str, pod_uid: &str, node: &str, iat: i64) -> String {
    sign(&serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": iat + 31_536_000,
        "iat": iat,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": jti,
        "kubernetes.io": {
            "namespace": ns,
            "node": {"name": node, "uid": format!("{node}-uid")},
            "pod": {"name": pod, "uid": pod_uid},
            "serviceaccount": {"name": sa, "uid": format!("{sa}-uid")},
            "warnafter": iat + 3607
        },
        "nbf": iat,
        "sub": format!("system:serviceaccount:{ns}:{sa}")
    }))
}

/// The claims of a legacy Secret-based token.
pub fn legacy_token(ns: &str, sa: &str, secret: &str) -> String {
    sign(&serde_json::json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": format!("{sa}-uid"),
        "sub": format!("system:serviceaccount:{ns}:{sa}")
    }))
}

// ---------------------------------------------------------------- kubelet directory

/// A temporary kubelet pods directory.
pub struct Kubelet {
    pub dir: tempfile::TempDir,
    counter: Mutex<u64>,
}

impl Kubelet {
    pub fn new() -> Kubelet {
        Kubelet { dir: tempfile::tempdir().unwrap(), counter: Mutex::new(0) }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/<uid>/volumes/<plugin>/<volume>`.
    pub fn volume_dir(&self, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
        self.root().join(pod_uid).join("volumes").join(plugin).join(volume)
    }

    /// Writes `files` into a volume the way the kubelet's atomic writer does: a new timestamped
    /// directory, a `..data_tmp` symlink to it renamed over `..data`, user-visible symlinks, and
    /// the old directory removed.
    pub fn write_volume(&self, pod_uid: &str, plugin: &str, volume: &str, files: &[(&str, &str)], stamp: &str) {
        let vol = self.volume_dir(pod_uid, plugin, volume);
        std::fs::create_dir_all(&vol).unwrap();
        let n = {
            let mut c = self.counter.lock().unwrap();
            *c += 1;
            *c
        };
        let data_name = format!("..{stamp}.{n:010}");
        let data_dir = vol.join(&data_name);
        std::fs::create_dir(&data_dir).unwrap();
        for (name, content) in files {
            std::fs::write(data_dir.join(name), content).unwrap();
        }
        let old = std::fs::read_link(vol.join("..data")).ok();
        let tmp = vol.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&data_name, &tmp).unwrap();
        std::fs::rename(&tmp, vol.join("..data")).unwrap();
        for (name, _) in files {
            let link = vol.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(vol.join(old)).unwrap();
        }
    }

    /// The injected `kube-api-access-*` projected volume with a token, ca.crt and namespace.
    pub fn projected_token(&self, pod_uid: &str, volume: &str, token: &str, stamp: &str) {
        self.write_volume(
            pod_uid,
            "kubernetes.io~projected",
            volume,
            &[("token", token), ("ca.crt", "CA"), ("namespace", "ns")],
            stamp,
        );
    }

    /// A legacy token Secret mounted as a secret volume.
    pub fn secret_token(&self, pod_uid: &str, volume: &str, token: &str, stamp: &str) {
        self.write_volume(
            pod_uid,
            "kubernetes.io~secret",
            volume,
            &[("token", token), ("ca.crt", "CA"), ("namespace", "ns")],
            stamp,
        );
    }

    pub fn remove_pod(&self, pod_uid: &str) {
        std::fs::remove_dir_all(self.root().join(pod_uid)).unwrap();
    }
}

// ---------------------------------------------------------------- attestation server

/// What a recording server received, shared across restarts (a durable aggregator).
#[derive(Default)]
pub struct Received {
    /// Every message with the time it arrived and the server instance (generation).
    pub messages: Vec<(Instant, u32, AgentMessage)>,
    /// `authorization` header values seen.
    pub authorization: Vec<String>,
}

pub type Log = Arc<Mutex<Received>>;

#[derive(Clone)]
struct Recorder {
    log: Log,
    generation: u32,
    acks: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
}

type AckStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<AggregatorMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Attestation for Recorder {
    type AttestStream = AckStream;

    async fn attest(
        &self,
        req: tonic::Request<tonic::Streaming<AgentMessage>>,
    ) -> Result<tonic::Response<AckStream>, tonic::Status> {
        if let Some(v) = req.metadata().get("authorization") {
            self.log.lock().unwrap().authorization.push(v.to_str().unwrap_or("").to_string());
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let me = self.clone();
        tokio::spawn(async move {
            let mut kill = me.kill.clone();
            let mut highest = 0;
            loop {
                tokio::select! {
                    _ = async { let _ = kill.wait_for(|k| *k).await; } => {
                        let _ = tx.send(Err(tonic::Status::unavailable("server going away"))).await;
                        return;
                    }
                    m = inbound.message() => match m {
                        Ok(Some(m)) => {
                            let seq = m.sequence;
                            me.log.lock().unwrap().messages.push((Instant::now(), me.generation, m));
                            highest = highest.max(seq);
                            let ack_now = *me.acks.borrow();
                            if ack_now {
                                let ack = AggregatorMessage { body: Some(aggregator_message::Body::Ack(Ack { sequence: highest })) };
                                if tx.send(Ok(ack)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => return,
                    }
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A recording attestation server on a loopback port that can be killed and restarted there.
pub struct TestServer {
    pub addr: SocketAddr,
    pub log: Log,
    pub acks: watch::Sender<bool>,
    kill: Option<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
    generation: u32,
    tls: Option<tonic::transport::ServerTlsConfig>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(None).await
    }

    /// A server with TLS (and mTLS when the config names a client CA).
    pub async fn start_with(tls: Option<tonic::transport::ServerTlsConfig>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (acks, _) = watch::channel(true);
        let mut s = TestServer { addr, log: Log::default(), acks, kill: None, task: None, generation: 0, tls };
        s.serve(listener);
        s
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        self.generation += 1;
        let (kill_tx, kill_rx) = watch::channel(false);
        let rec = Recorder {
            log: self.log.clone(),
            generation: self.generation,
            acks: self.acks.subscribe(),
            kill: kill_rx.clone(),
        };
        let mut stop = kill_rx;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls.clone() {
            builder = builder.tls_config(tls).unwrap();
        }
        self.task = Some(tokio::spawn(async move {
            let _ = builder
                .serve_with_incoming_shutdown(
                    AttestationServer::new(rec),
                    TcpListenerStream::new(listener),
                    async move {
                        let _ = stop.wait_for(|k| *k).await;
                    },
                )
                .await;
        }));
        self.kill = Some(kill_tx);
    }

    /// Stops the server: open streams fail with UNAVAILABLE, the port closes.
    pub async fn stop(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(true);
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// Starts again on the same port, keeping the log (what a durable aggregator processed).
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn messages(&self) -> Vec<AgentMessage> {
        self.log.lock().unwrap().messages.iter().map(|(_, _, m)| m.clone()).collect()
    }

    /// Waits until `pred` holds on the received messages.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[(Instant, u32, AgentMessage)]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.log.lock().unwrap().messages) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:#?}",
                self.messages().iter().map(summary).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A one-line summary of a message for assertion failures.
pub fn summary(m: &AgentMessage) -> String {
    use tokentrail_proto::wire::agent::v1::agent_message::Body;
    match &m.body {
        Some(Body::Snapshot(s)) => format!(
            "#{} snapshot creds={:?}",
            m.sequence,
            s.credentials.iter().map(|c| c.jti.clone().unwrap_or_default()).collect::<Vec<_>>()
        ),
        Some(Body::Delta(d)) => format!(
            "#{} delta +{:?} -{:?} pods+{} pods-{}",
            m.sequence,
            d.credentials_upserted.iter().map(|c| c.jti.clone().unwrap_or_default()).collect::<Vec<_>>(),
            d.credentials_removed.iter().map(|c| c.jti.clone().unwrap_or_default()).collect::<Vec<_>>(),
            d.pods_upserted.len(),
            d.pods_removed.len()
        ),
        None => format!("#{} empty", m.sequence),
    }
}

// ---------------------------------------------------------------- running agents

pub const POD_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
pub const POD_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
pub const VOL: &str = "kube-api-access-x1y2z";

pub fn token_a(jti: &str) -> String {
    pod_token(jti, "payments", "api", "api-0", POD_A, "worker-1", 1_750_000_000)
}

pub fn config(k: &Kubelet, server: &TestServer) -> Config {
    let mut c = Config::new(k.root().to_path_buf(), "worker-1".into(), server.url());
    c.sender.backoff_base = Duration::from_millis(20);
    c.sender.backoff_max = Duration::from_millis(200);
    c.sender.connect_timeout = Duration::from_secs(1);
    c.debounce = Duration::from_millis(10);
    c.follow_up = Duration::from_millis(300);
    // Long enough that every delta below comes from inotify, not from the safety-net rescan.
    c.rescan_interval = Duration::from_secs(3600);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tokentrail_agent::AgentError>>,
    pub metrics: Arc<Metrics>,
    pub pods: mpsc::Sender<PodUpdate>,
}

pub fn start(config: Config) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (pods, pod_rx) = mpsc::channel(16);
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(tokentrail_agent::run(config, Some(pod_rx), metrics.clone(), async move {
        let _ = stopped.await;
    }));
    Running { stop: Some(stop), task, metrics, pods }
}

impl Running {
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("agent stops").unwrap().unwrap();
    }
}

pub fn jtis_in(m: &AgentMessage) -> Vec<String> {
    match &m.body {
        Some(Body::Snapshot(s)) => s.credentials.iter().filter_map(|c| c.jti.clone()).collect(),
        Some(Body::Delta(d)) => d.credentials_upserted.iter().filter_map(|c| c.jti.clone()).collect(),
        None => vec![],
    }
}

pub fn is_snapshot(m: &AgentMessage) -> bool {
    matches!(m.body, Some(Body::Snapshot(_)))
}

// ---------------------------------------------------------------- log capture

/// Everything written by a `tracing` subscriber, for asserting what logs contain.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a TRACE-level global subscriber writing into the returned capture. Global, not
/// per-thread: `tracing` caches per-callsite interest process-wide, so a thread-local subscriber
/// misses events when other tests run in parallel.
pub fn capture_logs_globally() -> Captured {
    let cap = Captured::default();
    let writer = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(sub).expect("only this test binary sets it");
    cap
}
