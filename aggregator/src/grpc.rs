//! The attestation server (driver): `tokentrail.agent.v1.Attestation` over tonic, with tower
//! layers (a global concurrency limit and a timeout on setting up requests), a maximum message
//! size, a bound on open streams, and `grpc.health.v1`. Connections are accepted, bounded and
//! timed out by [`crate::listen`] (TLS handshakes too); HTTP/2 pings keep agents' quiet streams
//! from being closed as idle.
//!
//! Authentication, before a stream is served: with `agent_token`, the agent's projected token
//! (`authorization: Bearer`) is verified ([`crate::authn`]) and its node claim is the node the
//! stream may attest for; the stream ends when the token expires (the agent reconnects with the
//! one the kubelet rotated in). With mTLS, rustls verifies the agent's certificate chain against
//! the agents' CA, and [`node_identity`] checks that the certificate is valid for the DNS name
//! configured for that node (`{node}.nodes.tokentrail` by default); without a token the node is
//! the one the first message names. Every later message must name the same node.
//!
//! Per message: the `agent_id` check ([`crate::agents`]: an id another node owns ends the
//! stream), the node check, the clock check (an event time beyond this host's clock plus
//! `max_clock_skew` refuses the message: acknowledged, counted, never delivered, so a node's
//! clock cannot move event time downstream) and conversion ([`crate::attest`]), the
//! observations delivered to the [`Sink`] (acknowledged by Kafka, in the aggregator), then an
//! [`Ack`] with the message's sequence number. Resends are acknowledged again without
//! producing anything.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokentrail_proto::wire::agent::v1::attestation_server::{Attestation, AttestationServer};
use tokentrail_proto::wire::agent::v1::{aggregator_message, Ack, AgentMessage, AggregatorMessage};
use tokentrail_proto::Observation;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use crate::agents::Agents;
use crate::attest::{attested_items, Refusal};
use crate::authn::Authenticator;
use crate::config::GrpcConfig;
use crate::error::AggregatorError;
use crate::listen::{self, Guarded, Listener};
use crate::sink::Sink;
use crate::telemetry::Metrics;
use crate::token::{AgentIdentity, TokenRefusal};

/// Agents remembered (highest sequence, held credentials) across reconnections; beyond this the
/// least recently used are forgotten (their resends are then processed again: at-least-once).
const MAX_AGENTS: usize = 100_000;

/// A bound, not yet serving, attestation server.
pub struct Server {
    listener: Listener,
    config: GrpcConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: Service,
}

impl Server {
    /// Binds the listening socket and reads the TLS files. The server stops when `stop` turns
    /// true.
    pub async fn bind(
        config: &GrpcConfig,
        sink: Arc<dyn Sink>,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Server, AggregatorError> {
        let limits = listen::Limits { max_connections: config.max_connections, idle_timeout: config.idle_timeout };
        let listener = Listener::bind(config.listen, "grpc", limits, metrics.clone(), |m| &m.grpc_connections).await?;
        let (tls, node_dns_name) = match &config.tls {
            Some(t) => (Some(listen::acceptor(t, &[b"h2"])?), t.client_ca.as_ref().map(|_| t.node_dns_name.clone())),
            None => (None, None),
        };
        let auth = match &config.agent_token {
            Some(t) => Some(Arc::new(Authenticator::new(t).await?)),
            None => None,
        };
        let service = Service {
            cluster: config.cluster.clone(),
            node_dns_name,
            auth,
            sink,
            metrics,
            agents: Arc::new(Mutex::new(Agents::new(MAX_AGENTS))),
            max_clock_skew: i64::try_from(config.max_clock_skew.as_micros()).unwrap_or(i64::MAX),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            peers: listener.peers(),
            stop,
        };
        Ok(Server { listener, config: config.clone(), tls, service })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Serves until stopped, then closes every stream (agents resend what was not acknowledged
    /// to the next aggregator).
    pub async fn serve(self) -> Result<(), AggregatorError> {
        let shutdown = stopped(self.service.stop.clone());
        let addr = self.local_addr();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AttestationServer<Service>>().await;
        tracing::info!(%addr, tls = self.tls.is_some(), "attestation server listening");
        let attestation = AttestationServer::new(self.service).max_decoding_message_size(self.config.max_message_bytes);
        let router = tonic::transport::Server::builder()
            // Quiet streams stay open (a stream marks its connection busy), and these pings find
            // the agents that are gone.
            .http2_keepalive_interval(Some(self.config.idle_timeout / 2))
            // Streams live for hours; the limit and the timeout bound how many requests are
            // being set up at once and how long that may take (a slow-loris agent), not how
            // long a stream stays open. Open streams are bounded by `max_streams`.
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(self.config.concurrency_limit))
            .layer(tower::timeout::TimeoutLayer::new(self.config.request_timeout))
            .add_service(health_service)
            .add_service(attestation);
        let served = match self.tls {
            Some(tls) => {
                let handshake_timeout = self.config.handshake_timeout;
                let incoming = incoming(self.listener, move |tcp| {
                    let tls = tls.clone();
                    async move { listen::handshake(&tls, tcp, handshake_timeout).await }
                });
                router.serve_with_incoming_shutdown(incoming, shutdown).await
            }
            None => {
                let incoming = incoming(self.listener, |tcp| async move { Some(tcp) });
                router.serve_with_incoming_shutdown(incoming, shutdown).await
            }
        };
        served.map_err(AggregatorError::Grpc)
    }
}

/// The connections `listener` accepts, each made ready by `prepare` (the TLS handshake) in its
/// own task so that a stalled client holds up no other. Ends when the server drops it.
fn incoming<IO, F, Fut>(mut listener: Listener, prepare: F) -> ReceiverStream<Result<IO, std::convert::Infallible>>
where
    IO: Send + 'static,
    F: Fn(Guarded<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                tcp = listener.accept() => tcp,
                () = tx.closed() => return,
            };
            let ready = prepare(tcp);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(io) = ready.await {
                    let _ = tx.send(Ok(io)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// tonic reads the client's address (and, under TLS, its certificates) from this.
impl Connected for Guarded<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.get_ref().connect_info()
    }
}

/// The `Attestation` service.
#[derive(Clone)]
pub struct Service {
    cluster: String,
    /// With mTLS: the DNS name pattern a client certificate must match for its node.
    node_dns_name: Option<String>,
    /// With `agent_token`: verifies agents' tokens.
    auth: Option<Arc<Authenticator>>,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    agents: Arc<Mutex<Agents>>,
    /// How far ahead of this host's clock an agent's times may be, in microseconds.
    max_clock_skew: i64,
    streams: Arc<Semaphore>,
    /// The listener's connections, so a stream marks its own as busy while open.
    peers: listen::Peers,
    /// Turns true on shutdown: open streams end, or the server's graceful shutdown would wait
    /// for every agent to hang up.
    stop: watch::Receiver<bool>,
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// When a token expiring at `exp` (seconds since the epoch) stops being accepted.
fn token_deadline(exp: i64) -> tokio::time::Instant {
    let left = u64::try_from(exp.saturating_sub(crate::authn::unix_now())).unwrap_or(0);
    tokio::time::Instant::now() + std::time::Duration::from_secs(left)
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Microseconds since the epoch by this host's clock (the clock check: [`crate::attest::latest_time`]).
#[allow(clippy::disallowed_methods)] // a driver: the cores take time as an argument
fn unix_micros_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// At most one warning a minute about a stream's node clock; the messages refused in between
/// are counted into the next one (every one is in `attestations_future_total`).
#[derive(Default)]
struct ClockWarnings {
    last: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl ClockWarnings {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn warn(&mut self, node: &str, latest_micros: i64) {
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        let latest = tokentrail_proto::Timestamp(latest_micros);
        tracing::warn!(
            node,
            %latest,
            also_refused_since_last_warning = self.suppressed,
            "attestation refused: its time is ahead of this aggregator's clock by more than max_clock_skew (the node's clock is wrong)"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// The client certificate that authenticated the connection, if any.
type PeerCerts = Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>;

/// Whether the client certificate is valid for `node`'s DNS name (`pattern` with `{node}`
/// replaced). The chain itself was verified by rustls during the handshake.
pub fn node_identity(certs: &PeerCerts, pattern: &str, node: &str) -> bool {
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else { return false };
    if node.is_empty() || node.contains(['/', '*']) {
        return false;
    }
    let name = pattern.replace("{node}", node);
    let Ok(name) = rustls_pki_types::ServerName::try_from(name.as_str()) else { return false };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return false };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

#[tonic::async_trait]
impl Attestation for Service {
    type AttestStream = ReceiverStream<Result<AggregatorMessage, Status>>;

    async fn attest(&self, request: Request<Streaming<AgentMessage>>) -> Result<Response<Self::AttestStream>, Status> {
        let identity = match &self.auth {
            Some(auth) => Some(self.authenticate(auth, &request).await?),
            None => None,
        };
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Metrics::inc(&self.metrics.streams_refused_total);
            Status::resource_exhausted("too many attestation streams")
        })?;
        let certs = request.peer_certs();
        // The connection is busy while the stream is open, however quiet: only connections
        // without one are closed as idle.
        let busy = request.remote_addr().and_then(|peer| self.peers.in_flight(peer)).map(|f| f.enter());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            let (_permit, _busy) = (permit, busy);
            Metrics::inc(&service.metrics.streams_open);
            if let Err(status) = service.stream(inbound, &certs, identity, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
            Metrics::dec(&service.metrics.streams_open);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl Service {
    /// The identity the request's bearer token proves; a refusal is counted by reason.
    async fn authenticate<T>(&self, auth: &Authenticator, request: &Request<T>) -> Result<AgentIdentity, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let answer = match bearer {
            Some(token) => auth.check(token).await.map_err(|e| {
                tracing::warn!(error = %e, "agent token not checked");
                Status::unavailable("the agent's token could not be checked; retry")
            })?,
            None => Err(TokenRefusal::Missing),
        };
        answer.map_err(|refusal| {
            self.metrics.agent_token_refused(refusal.reason());
            Metrics::inc(&self.metrics.streams_refused_total);
            let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(%peer, reason = refusal.reason(), "attestation stream refused: {refusal}");
            Status::unauthenticated(refusal.to_string())
        })
    }

    async fn stream(
        &self,
        mut inbound: Streaming<AgentMessage>,
        certs: &PeerCerts,
        identity: Option<AgentIdentity>,
        tx: &mpsc::Sender<Result<AggregatorMessage, Status>>,
    ) -> Result<(), Status> {
        // The node this stream is authenticated for: the token's, else fixed by the first message.
        let mut node: Option<String> = identity.as_ref().map(|i| i.node.clone());
        if let (Some(n), Some(pattern)) = (&node, &self.node_dns_name) {
            if !node_identity(certs, pattern, n) {
                Metrics::inc(&self.metrics.streams_refused_total);
                tracing::warn!(node = %n, "attestation stream refused: certificate is not for the token's node");
                return Err(Status::permission_denied("the client certificate is not valid for the token's node"));
            }
        }
        let expiry = identity.as_ref().map(|i| token_deadline(i.expires_at));
        let mut clock_warnings = ClockWarnings::default();
        let mut stop = self.stop.clone();
        loop {
            let m = tokio::select! {
                m = inbound.message() => match m? {
                    Some(m) => m,
                    None => break,
                },
                _ = stop.wait_for(|s| *s) => return Err(Status::unavailable("aggregator shutting down; reconnect")),
                () = sleep_until_some(expiry) => {
                    return Err(Status::unauthenticated("the agent's token expired; reconnect with the current one"));
                }
            };
            let authenticated = match &node {
                Some(n) => n.clone(),
                None => {
                    if let Some(pattern) = &self.node_dns_name {
                        if !node_identity(certs, pattern, &m.node_name) {
                            Metrics::inc(&self.metrics.streams_refused_total);
                            tracing::warn!(node = %m.node_name, "attestation stream refused: certificate is not for this node");
                            return Err(Status::permission_denied("the client certificate is not valid for this node"));
                        }
                    }
                    node = Some(m.node_name.clone());
                    m.node_name.clone()
                }
            };
            let not_after = unix_micros_now().saturating_add(self.max_clock_skew);
            let applied = {
                let mut agents = self.agents.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match agents.state(&authenticated, &m.agent_id) {
                    Ok(state) => state.apply(&self.cluster, &authenticated, &m, &*self.sink, not_after),
                    Err(hijack) => {
                        Metrics::inc(&self.metrics.agent_ids_refused_total);
                        Metrics::inc(&self.metrics.streams_refused_total);
                        Metrics::add(&self.metrics.attestations_refused_total, attested_items(&m));
                        tracing::warn!(node = %authenticated, agent_id = %m.agent_id, "attestation stream refused: {hijack}");
                        return Err(Status::permission_denied(hijack.to_string()));
                    }
                }
            };
            let applied = match applied {
                Ok(a) => a,
                Err(refusal) => {
                    Metrics::inc(&self.metrics.streams_refused_total);
                    if matches!(refusal, Refusal::WrongNode { .. }) {
                        // Every pod and credential of it is about a node the agent is not on.
                        Metrics::add(&self.metrics.attestations_refused_total, attested_items(&m).max(1));
                    }
                    tracing::warn!(error = %refusal, "attestation stream refused");
                    return Err(match refusal {
                        Refusal::WrongNode { .. } => Status::permission_denied(refusal.to_string()),
                        Refusal::Empty => Status::invalid_argument(refusal.to_string()),
                    });
                }
            };
            if let Some(latest) = applied.future {
                // Acknowledged: resending it would not make it right, and an unacknowledged
                // message would hold the agent's heartbeats back.
                Metrics::inc(&self.metrics.attestations_future_total);
                Metrics::add(&self.metrics.attestations_refused_total, attested_items(&m));
                clock_warnings.warn(&authenticated, latest);
            } else if applied.resend {
                Metrics::inc(&self.metrics.attestations_resent_total);
            } else {
                Metrics::inc(&self.metrics.attestations_accepted_total);
                Metrics::add(&self.metrics.attestations_refused_total, applied.refused);
                if let Err(e) = self.produce(applied.observations).await {
                    // Not durable: forget what the agent sent so its resend is processed again.
                    self.agents
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .reset(&authenticated, &m.agent_id);
                    tracing::warn!(error = %e, "attestation not delivered");
                    return Err(Status::unavailable("observations could not be delivered; resend"));
                }
            }
            if !self.ack(tx, m.sequence).await {
                break;
            }
        }
        Ok(())
    }

    /// Acknowledges `sequence`; `false` when the agent went away.
    async fn ack(&self, tx: &mpsc::Sender<Result<AggregatorMessage, Status>>, sequence: u64) -> bool {
        let ack = AggregatorMessage { body: Some(aggregator_message::Body::Ack(Ack { sequence })) };
        tx.send(Ok(ack)).await.is_ok()
    }

    async fn produce(&self, observations: Vec<Observation>) -> Result<(), AggregatorError> {
        let out = self.sink.deliver(&self.cluster, observations, None).await?;
        Metrics::add(&self.metrics.observations_out_total, out);
        self.metrics.cluster(&self.cluster, 0, out);
        Ok(())
    }
}
