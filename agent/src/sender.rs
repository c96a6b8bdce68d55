//! The gRPC client (driver): one `Attest` stream at a time to the aggregator.
//!
//! On every connection: queue a fresh snapshot of the node behind whatever is still
//! unacknowledged, then stream the whole unacknowledged queue in sequence order, then each new
//! message as the pipeline queues it. Cumulative acks release messages from the [`Outbox`]. When
//! the stream breaks (aggregator restart, network), reconnect after an exponential, jittered
//! delay and start over from the oldest unacknowledged message: nothing is lost unless the
//! bounded queue overflowed, and then the snapshot says so.
//!
//! Back-pressure: at most `window` messages wait in the stream's channel; HTTP/2 flow control
//! stops pulling from it when the aggregator is slow, and the queue (bounded, drop-oldest) is the
//! only buffer that grows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokentrail_proto::wire::agent::v1::{self as pb, aggregator_message, attestation_client::AttestationClient};
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::backoff::{Backoff, Jitter};
use crate::error::SendError;
use crate::outbox::Outbox;
use crate::state::NodeState;
use crate::telemetry::Metrics;
use crate::wire;

/// How the sender connects.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// `http://host:port` of the aggregator's attestation service.
    pub endpoint: String,
    /// Time allowed for the TCP (and HTTP/2) handshake.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Messages handed to the stream ahead of HTTP/2 flow control.
    pub window: usize,
    /// A file holding the agent's own token for the aggregator (a projected token with the
    /// aggregator's audience), re-read on every connection and sent as `authorization: Bearer`.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS to the aggregator (`https://` endpoints); files are re-read on every connection so
    /// rotated certificates are picked up.
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS and mTLS to the aggregator.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// CA certificate(s) that sign the aggregator's certificate.
    pub ca: PathBuf,
    /// The agent's client certificate chain (mTLS), with `key`.
    pub cert: Option<PathBuf>,
    /// The agent's private key (mTLS).
    pub key: Option<PathBuf>,
    /// Name to verify in the aggregator's certificate, when not the endpoint's host.
    pub server_name: Option<String>,
}

/// What the pipeline and the sender share: the node state (for snapshots) and the queue.
pub struct Shared {
    /// Current state of the node.
    pub state: NodeState,
    /// Unacknowledged messages.
    pub outbox: Outbox<pb::AgentMessage>,
    /// Agent identity stamped on every message.
    pub sender: wire::Sender,
}

/// The shared state behind a lock held only for short, non-async sections.
pub type SharedRef = Arc<Mutex<Shared>>;

/// Locks the shared state; a poisoned lock (a panic elsewhere) still holds consistent data,
/// since every critical section only swaps whole values.
pub fn lock(shared: &SharedRef) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connects, streams and reconnects forever; the pipeline aborts the task at shutdown, once the
/// queue is empty or the grace period is over.
pub async fn run(
    config: SenderConfig,
    shared: SharedRef,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    now_micros: fn() -> i64,
    seed: u64,
) {
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_max);
    let mut jitter = Jitter::new(seed);
    loop {
        match connection(&config, &shared, &wake, &metrics, now_micros, &mut backoff).await {
            Ok(()) => tracing::info!("aggregator closed the attestation stream"),
            Err(e) => {
                Metrics::add(&metrics.send_failures_total, 1);
                tracing::warn!(error = %Chain(&e), retryable = e.is_retryable(), "attestation stream failed");
            }
        }
        let delay = backoff.next_delay(jitter.unit());
        tracing::debug!(delay_ms = delay.as_millis() as u64, "reconnecting after back-off");
        tokio::time::sleep(delay).await;
    }
}

/// Displays an error with its causes (`transport error: connection refused`).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        write!(f, "{last}")?;
        let mut source = self.0.source();
        while let Some(s) = source {
            // Transport errors wrap themselves ("transport error: transport error: ..."): skip repeats.
            let text = s.to_string();
            if text != last {
                write!(f, ": {text}")?;
            }
            last = text;
            source = s.source();
        }
        Ok(())
    }
}

/// One connection: connect, snapshot, stream until it breaks.
async fn connection(
    config: &SenderConfig,
    shared: &SharedRef,
    wake: &Arc<Notify>,
    metrics: &Arc<Metrics>,
    now_micros: fn() -> i64,
    backoff: &mut Backoff,
) -> Result<(), SendError> {
    let channel = connect(config).await?;
    let mut request = {
        let (tx, rx) = mpsc::channel(config.window.max(1));
        let first = {
            let mut g = lock(shared);
            let now = now_micros();
            let dropped = g.outbox.dropped_since_snapshot();
            let body = wire::snapshot(&g.state, dropped);
            let Shared { outbox, sender, .. } = &mut *g;
            outbox.push_with(true, |seq| sender.message(seq, now, body));
            Metrics::set(&metrics.queue_depth, outbox.len() as u64);
            outbox.acked() + 1
        };
        tokio::spawn(feed(shared.clone(), wake.clone(), tx, first, metrics.clone()));
        tonic::Request::new(ReceiverStream::new(rx))
    };
    if let Some(path) = &config.bearer_token_file {
        request.metadata_mut().insert("authorization", bearer(path)?);
    }
    let mut client = AttestationClient::new(channel);
    let mut inbound = client.attest(request).await.map_err(SendError::Rpc)?.into_inner();
    Metrics::add(&metrics.connections_total, 1);
    tracing::info!(endpoint = %config.endpoint, "attestation stream open");
    while let Some(msg) = inbound.message().await.map_err(SendError::Rpc)? {
        if let Some(aggregator_message::Body::Ack(ack)) = msg.body {
            let mut g = lock(shared);
            let released = g.outbox.ack(ack.sequence);
            Metrics::add(&metrics.messages_acked_total, released as u64);
            Metrics::set(&metrics.queue_depth, g.outbox.len() as u64);
            drop(g);
            // The aggregator is processing: the next failure starts the back-off from scratch.
            backoff.reset();
        }
    }
    Ok(())
    // Dropping `inbound` and the client closes the stream; the feeder ends when its send fails.
}

async fn connect(config: &SenderConfig) -> Result<Channel, SendError> {
    let mut endpoint =
        Endpoint::from_shared(config.endpoint.clone()).map_err(|e| SendError::BadEndpoint(e.to_string()))?;
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls_config(tls)?).map_err(|e| SendError::Tls(e.to_string()))?;
    }
    endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // A silently dead aggregator (host gone, no RST) must not hold the stream forever.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(SendError::Connect)
}

fn tls_config(files: &TlsFiles) -> Result<ClientTlsConfig, SendError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| SendError::Tls(format!("{}: {e}", p.display())));
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&files.ca)?));
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => {}
        _ => return Err(SendError::Tls("a client certificate needs its key, and a key its certificate".into())),
    }
    if let Some(name) = &files.server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}

/// Reads the agent's own token for the `authorization` header, marked sensitive so tonic and
/// hyper never print it.
fn bearer(path: &PathBuf) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, SendError> {
    let bad = || SendError::BearerToken(path.display().to_string());
    let mut raw = std::fs::read(path).map_err(|_| bad())?;
    let token = std::str::from_utf8(raw.trim_ascii()).map_err(|_| bad())?;
    let value = format!("Bearer {token}").parse::<tonic::metadata::MetadataValue<_>>().map_err(|_| bad());
    raw.fill(0);
    let mut value = value?;
    value.set_sensitive(true);
    Ok(value)
}

/// Moves queued messages into the stream, oldest first, from sequence `next` on.
async fn feed(
    shared: SharedRef,
    wake: Arc<Notify>,
    tx: mpsc::Sender<pb::AgentMessage>,
    mut next: u64,
    metrics: Arc<Metrics>,
) {
    loop {
        let batch: Vec<pb::AgentMessage> =
            lock(&shared).outbox.from_seq(next).take(64).map(|e| e.message.clone()).collect();
        if batch.is_empty() {
            tokio::select! {
                () = wake.notified() => continue,
                () = tx.closed() => return,
            }
        }
        for msg in batch {
            next = msg.sequence + 1;
            if tx.send(msg).await.is_err() {
                return;
            }
            Metrics::add(&metrics.messages_sent_total, 1);
        }
    }
}
