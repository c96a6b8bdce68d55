//! Accepting connections on a listener that may be under attack (driver), for both servers:
//!
//! * at most `max_connections` open at once: at the limit nothing more is accepted until one
//!   closes, so the process's file descriptors stay bounded (waiting clients queue in the kernel);
//! * a failed accept (out of file descriptors, ...) backs off, 10 ms doubling to 1 s, instead of
//!   retrying at once; its warnings, and those of the limit, are logged at most once per
//!   [`WARN_INTERVAL`] with the count of those suppressed;
//! * the TLS handshake must finish within `handshake_timeout`;
//! * a connection is closed once no request on it has been under way for `idle_timeout`
//!   ([`Guarded`]), whatever else it sends: an HTTP/2 client answering the server's pings, or
//!   sending pings of its own, holds its place only while it has a request open.
//!
//! The servers mark their requests: the webhook each request, the attestation server each
//! stream for as long as it is open (it finds its connection by peer address in [`Peers`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;
use crate::error::AggregatorError;
use crate::telemetry::{ConnectionCounts, Metrics};

/// Warnings of one kind are logged at most this often.
pub const WARN_INTERVAL: Duration = Duration::from_secs(5);
/// First pause after a failed accept.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts in a row.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How many connections a listener keeps and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// A connection on which no request has been under way for this long is closed.
    pub idle_timeout: Duration,
}

/// Which of [`Metrics`]' connection counts a listener adds to.
pub type Counts = fn(&Metrics) -> &ConnectionCounts;

/// A bound TCP listener with [`Limits`].
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
    limits: Limits,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    counts: Counts,
    backoff: Backoff,
    accept_warnings: Throttle,
    limit_warnings: Throttle,
    peers: Peers,
}

impl Listener {
    /// Binds `addr`; `name` (`grpc`, `webhook`) labels its logs.
    pub async fn bind(
        addr: SocketAddr,
        name: &'static str,
        limits: Limits,
        metrics: Arc<Metrics>,
        counts: Counts,
    ) -> Result<Listener, AggregatorError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| AggregatorError::Io { context: format!("listening on {addr}"), source })?;
        Ok(Listener {
            tcp,
            name,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            metrics,
            counts,
            backoff: Backoff::default(),
            accept_warnings: Throttle::new(WARN_INTERVAL),
            limit_warnings: Throttle::new(WARN_INTERVAL),
            peers: Peers::default(),
        })
    }

    /// The open connections by peer address, for a server that marks its requests by the
    /// request's remote address (tonic gives a handler the address, not the connection).
    pub fn peers(&self) -> Peers {
        self.peers.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }

    /// The next connection. Waits while `max_connections` are open; never fails (a failed
    /// accept is counted, logged and retried after a pause).
    pub async fn accept(&mut self) -> Guarded<TcpStream> {
        loop {
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    Metrics::inc(&self.counts().at_limit_total);
                    if let Some(suppressed) = self.limit_warnings.allow(Instant::now()) {
                        tracing::warn!(
                            listener = self.name,
                            max_connections = self.limits.max_connections,
                            suppressed,
                            "connection limit reached: new connections wait until one closes"
                        );
                    }
                    match self.permits.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => continue, // never closed
                    }
                }
            };
            match self.tcp.accept().await {
                Ok((tcp, peer)) => {
                    self.backoff.reset();
                    Metrics::inc(&self.counts().accepted_total);
                    Metrics::inc(&self.counts().open);
                    let guarded = Guarded::new(tcp, peer, permit, self.limits.idle_timeout, &self.metrics, self.counts);
                    self.peers.insert(peer, &guarded.in_flight);
                    return guarded;
                }
                // The peer gave up before it was accepted: nothing wrong here.
                Err(e) if peer_gone(&e) => {}
                Err(e) => {
                    Metrics::inc(&self.counts().accept_errors_total);
                    let pause = self.backoff.next();
                    if let Some(suppressed) = self.accept_warnings.allow(Instant::now()) {
                        tracing::warn!(listener = self.name, error = %e, ?pause, suppressed, "accept failed");
                    }
                    drop(permit);
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn counts(&self) -> &ConnectionCounts {
        (self.counts)(&self.metrics)
    }
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

/// The TLS handshake on `io`, bounded by `timeout`; a failure is counted in `counts` and
/// logged at debug level (scanners and stalled clients are not worth a warning each).
pub async fn handshake<IO>(
    acceptor: &tokio_rustls::TlsAcceptor,
    io: Guarded<IO>,
    timeout: Duration,
) -> Option<TlsStream<Guarded<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let peer = io.peer();
    let metrics = io.metrics.clone();
    let counts = io.counts;
    let failed = |error: String| {
        Metrics::inc(&counts(&metrics).handshakes_failed_total);
        tracing::debug!(%peer, %error, "TLS handshake failed");
        None
    };
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => failed(format!("not finished within {timeout:?}")),
    }
}

/// The TLS acceptor of a server: its certificate and, with `client_ca`, client certificates
/// required and verified against that CA; `alpn` is offered in that order.
pub fn acceptor(t: &TlsConfig, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, AggregatorError> {
    let bad = |what: String| AggregatorError::Io { context: what, source: io::Error::other("unusable") };
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|source| AggregatorError::Io { context: format!("reading {}", p.display()), source })
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&t.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("{}: {e}", t.cert.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&t.key)?).map_err(|e| bad(format!("{}: {e}", t.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls: {e}")))?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                roots
                    .add(c.map_err(|e| bad(format!("{}: {e}", ca.display())))?)
                    .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| bad(format!("tls: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Requests under way on one connection, and when the last one ended: a connection is idle
/// from then, or from when it was accepted.
#[derive(Clone, Debug)]
pub struct InFlight(Arc<Requests>);

#[derive(Debug)]
struct Requests {
    open: AtomicUsize,
    last_ended: Mutex<Instant>,
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight(Arc::new(Requests { open: AtomicUsize::new(0), last_ended: Mutex::new(Instant::now()) }))
    }
}

impl InFlight {
    /// Marks a request under way until the returned guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.open.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.open.load(Ordering::Relaxed) > 0
    }

    fn last_ended(&self) -> Instant {
        *self.0.last_ended.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A request under way (see [`InFlight::enter`]).
#[derive(Debug)]
pub struct InFlightGuard(Arc<Requests>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        *self.0.last_ended.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections of a listener by peer address (a TCP peer address names one
/// connection while it is open). Holds them weakly: a closed connection's entry is dead and is
/// swept as the table grows.
#[derive(Clone, Debug, Default)]
pub struct Peers(Arc<Mutex<HashMap<SocketAddr, Weak<Requests>>>>);

impl Peers {
    fn insert(&self, peer: SocketAddr, in_flight: &InFlight) {
        let mut peers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if peers.len() >= 64 && peers.len().is_power_of_two() {
            peers.retain(|_, requests| requests.strong_count() > 0);
        }
        peers.insert(peer, Arc::downgrade(&in_flight.0));
    }

    /// The requests of the open connection from `peer`.
    pub fn in_flight(&self, peer: SocketAddr) -> Option<InFlight> {
        let peers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.get(&peer).and_then(Weak::upgrade).map(InFlight)
    }
}

/// An accepted connection: holds its place under `max_connections` until dropped, and fails
/// its reads and writes with `TimedOut` once no request has been under way for `idle_timeout`
/// ([`InFlight`]). Bytes read do not count: HTTP/2 pings are bytes too.
pub struct Guarded<IO> {
    io: IO,
    peer: SocketAddr,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    in_flight: InFlight,
    timed_out: bool,
    metrics: Arc<Metrics>,
    counts: Counts,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Guarded<IO> {
    fn new(
        io: IO,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        metrics: &Arc<Metrics>,
        counts: Counts,
    ) -> Guarded<IO> {
        Guarded {
            io,
            peer,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            in_flight: InFlight::default(),
            timed_out: false,
            metrics: metrics.clone(),
            counts,
            _permit: permit,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The requests under way on this connection (a server marks them, see [`InFlight`]).
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Ready with an error once the connection has been idle too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let idle_until = if self.in_flight.busy() { now } else { self.in_flight.last_ended() } + self.idle_timeout;
            if idle_until > now {
                self.timer.as_mut().reset(idle_until);
                continue;
            }
            if !self.timed_out {
                self.timed_out = true;
                Metrics::inc(&(self.counts)(&self.metrics).idle_closed_total);
                tracing::debug!(peer = %self.peer, "connection idle: closed");
            }
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
        }
    }
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        Metrics::dec(&(self.counts)(&self.metrics).open);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            // A client that reads nothing stalls writes: idle all the same.
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Pauses after failed accepts in a row: [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(BACKOFF_MAX);
        pause
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// At most one event per interval passes; the others are counted.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// A throttle letting one event pass per `interval`.
    pub fn new(interval: Duration) -> Throttle {
        Throttle { interval, last: None, suppressed: 0 }
    }

    /// For an event at `now`: `Some(events suppressed since the last one that passed)` when
    /// this one passes, `None` when it is suppressed.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10ms_to_1s_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let pauses: Vec<u128> = (0..9).map(|_| b.next().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
    }

    #[test]
    fn throttle_passes_one_event_per_interval_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(t.allow(start), Some(0));
        for ms in [1, 100, 4_999] {
            assert_eq!(t.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.allow(start + Duration::from_secs(5)), Some(3));
        assert_eq!(t.allow(start + Duration::from_secs(6)), None);
        assert_eq!(t.allow(start + Duration::from_secs(11)), Some(1));
    }
}
