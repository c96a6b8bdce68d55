//! The apiserver's audit webhook backend (driver): `POST` of an `EventList` (any body the
//! decoders read) over HTTPS with client certificates, for self-managed clusters whose audit
//! log does not pass through Kafka.
//!
//! A body larger than `max_body_bytes` is refused with 413 before it is read in full, and so is
//! one that decompresses (gzip, zstd) to more than `max_decoded_bytes` or `max_inflation_ratio`
//! times its size, before it is decoded. At most `max_concurrent_requests` are served at once
//! (others are answered 503 at once, the apiserver retries), each within `request_timeout`;
//! connections are bounded and timed out by [`crate::listen`]. Otherwise a body
//! is decoded like a raw Kafka record; its observations (and, for a body with problems, the
//! body itself as a dead letter) are delivered to the [`Sink`], and the answer is 200 only once
//! it has them (the aggregator's: once the broker has acknowledged them): on 503 the apiserver's webhook backend retries the batch (at-least-once).
//!
//! TLS is rustls (ring, as everywhere else) with ALPN `h2` and `http/1.1`; with `client_ca`
//! every client must present a certificate that CA signed (the apiserver's
//! `--audit-webhook-config-file` kubeconfig names its client certificate), and with
//! `allowed_client_names` one of those names ([`crate::peer`]): other clients get 403 on every
//! request, their bodies unread. Refusals are counted per reason.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Extension;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

use crate::config::WebhookConfig;
use crate::error::AggregatorError;
use crate::listen::{self, Guarded, Listener, Throttle};
use crate::peer;
use crate::sink::{DeadLetter, Sink};
use crate::source;
use crate::telemetry::Metrics;

/// The `tokentrail-source-topic` header of a dead letter that came through the webhook.
pub const WEBHOOK_SOURCE: &str = "webhook";

struct Shared {
    cluster: String,
    max_body_bytes: usize,
    max_decoded_bytes: usize,
    max_inflation_ratio: usize,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    /// Warnings of refused requests (a refused client retries: one line per interval).
    refusals: Mutex<Throttle>,
}

/// A bound, not yet serving, webhook endpoint.
pub struct Server {
    listener: Listener,
    connections: Arc<Connections>,
    stop: watch::Receiver<bool>,
}

impl Server {
    /// Binds the socket and reads the TLS files.
    pub async fn bind(
        config: &WebhookConfig,
        sink: Arc<dyn Sink>,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Server, AggregatorError> {
        let limits = listen::Limits { max_connections: config.max_connections, idle_timeout: config.idle_timeout };
        let listener =
            Listener::bind(config.listen, "webhook", limits, metrics.clone(), |m| &m.webhook_connections).await?;
        let tls = config.tls.as_ref().map(|t| listen::acceptor(t, &[b"h2", b"http/1.1"])).transpose()?;
        let shared = Arc::new(Shared {
            cluster: config.cluster.clone(),
            max_body_bytes: config.max_body_bytes,
            max_decoded_bytes: config.max_decoded_bytes,
            max_inflation_ratio: config.max_inflation_ratio,
            sink,
            metrics,
            refusals: Mutex::new(Throttle::new(listen::WARN_INTERVAL)),
        });
        let router = axum::Router::new()
            .route("/", post(receive))
            .route("/audit", post(receive))
            // The limit is enforced while the body streams in: 413 without buffering it.
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(shared.clone());
        let forbidden = axum::Router::new().fallback(forbidden).with_state(shared.clone());
        let connections = Arc::new(Connections {
            tls,
            allowed_client_names: config.allowed_client_names.clone().into(),
            handshake_timeout: config.handshake_timeout,
            header_read_timeout: config.header_read_timeout,
            router,
            forbidden,
            requests: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            request_timeout: config.request_timeout,
            shared,
        });
        Ok(Server { listener, connections, stop })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until stopped.
    pub async fn serve(self) -> Result<(), AggregatorError> {
        let Server { mut listener, connections, mut stop } = self;
        tracing::info!(addr = ?listener.local_addr(), tls = connections.tls.is_some(), "audit webhook listening");
        loop {
            let tcp = tokio::select! {
                tcp = listener.accept() => tcp,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            tokio::spawn(connections.clone().serve(tcp));
        }
    }
}

/// What serving one connection needs.
struct Connections {
    tls: Option<tokio_rustls::TlsAcceptor>,
    allowed_client_names: Arc<[String]>,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
    /// Serves the allowed.
    router: axum::Router,
    /// Answers 403 to clients not in `allowed_client_names`.
    forbidden: axum::Router,
    /// Requests served at once, across connections.
    requests: Arc<Semaphore>,
    request_timeout: Duration,
    shared: Arc<Shared>,
}

impl Connections {
    async fn serve(self: Arc<Self>, tcp: Guarded<tokio::net::TcpStream>) {
        let peer = tcp.peer();
        let in_flight = tcp.in_flight();
        let result = match &self.tls {
            Some(acceptor) => {
                let Some(stream) = listen::handshake(acceptor, tcp, self.handshake_timeout).await else { return };
                let leaf = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
                let router = match leaf {
                    Some(leaf) if !self.allowed_client_names.is_empty() => {
                        if peer::allowed(leaf, &self.allowed_client_names) {
                            &self.router
                        } else {
                            self.shared.refused_warning(|suppressed| {
                                let names = peer::names(leaf);
                                tracing::warn!(%peer, ?names, suppressed, "webhook client certificate not in allowed_client_names: 403");
                            });
                            &self.forbidden
                        }
                    }
                    _ => &self.router,
                };
                self.serve_connection(stream, router.clone(), in_flight).await
            }
            None => self.serve_connection(tcp, self.router.clone(), in_flight).await,
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "webhook connection ended");
        }
    }

    /// HTTP/1.1 or HTTP/2 on `io`: requests beyond `max_concurrent_requests` across connections
    /// are answered 503 at once (load shedding), and each must be answered within
    /// `request_timeout`; requests under way are marked in `in_flight`.
    async fn serve_connection<I>(
        &self,
        io: I,
        router: axum::Router,
        in_flight: listen::InFlight,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = ServiceBuilder::new()
            .map_future(move |answer| {
                let request = in_flight.enter();
                async move {
                    let answer = answer.await;
                    drop(request);
                    answer
                }
            })
            .layer(axum::Extension(self.shared.metrics.clone()))
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.requests.clone()))
            .timeout(self.request_timeout)
            .service(router);
        http(self.header_read_timeout).serve_connection(TokioIo::new(io), TowerToHyperService::new(service)).await
    }
}

/// HTTP/1.1 or HTTP/2 on `io` (the probe listener's too): `router` answers.
pub(crate) async fn serve_connection<I>(
    io: I,
    router: axum::Router,
    header_read_timeout: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    http(header_read_timeout).serve_connection(TokioIo::new(io), TowerToHyperService::new(router)).await
}

/// The HTTP/1.1 and HTTP/2 server of a connection; an HTTP/1.1 client has
/// `header_read_timeout` to send each request's headers, counted from when the connection waits
/// for them (between requests too).
fn http(header_read_timeout: Duration) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder
}

impl Shared {
    /// Runs `warn` unless a refusal was logged less than [`listen::WARN_INTERVAL`] ago; it is
    /// given the number of refusals not logged since.
    fn refused_warning(&self, warn: impl FnOnce(u64)) {
        let passed = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).allow(Instant::now());
        if let Some(suppressed) = passed {
            warn(suppressed);
        }
    }

    fn refuse(&self, reason: &'static str, status: StatusCode, message: String) -> (StatusCode, String) {
        self.metrics.webhook_request_refused(reason);
        self.refused_warning(|suppressed| tracing::warn!(reason, suppressed, "webhook request refused: {message}"));
        (status, format!("{message}\n"))
    }
}

/// The answer to a request shed by the concurrency limit or cut by the request timeout.
async fn overloaded(
    Extension(metrics): Extension<Arc<Metrics>>,
    e: tower::BoxError,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let (reason, message) = if e.is::<tower::timeout::error::Elapsed>() {
        ("timeout", "the request was not answered within webhook.request_timeout; retry")
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        ("overloaded", "too many requests at once (webhook.max_concurrent_requests); retry")
    } else {
        ("error", "the request failed; retry")
    };
    metrics.webhook_request_refused(reason);
    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], format!("{message}\n"))
}

/// Every request of a client whose certificate is not in `allowed_client_names`.
async fn forbidden(State(w): State<Arc<Shared>>) -> (StatusCode, String) {
    w.metrics.webhook_request_refused("client_not_allowed");
    (StatusCode::FORBIDDEN, "this client certificate may not post audit events (webhook.allowed_client_names)\n".into())
}

/// `POST /audit`: decode, deliver, answer once delivered.
async fn receive(State(w): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> (StatusCode, String) {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body exceeds webhook.max_body_bytes ({} bytes)", w.max_body_bytes);
            return w.refuse("body_too_large", StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(rejection) => return (rejection.status(), rejection.body_text()),
    };
    // A compressed body is inflated within both limits before anything is decoded.
    let ratio_limit = body.len().saturating_mul(w.max_inflation_ratio);
    let limit = w.max_decoded_bytes.min(ratio_limit);
    let decoded = match source::inflate(&body, limit) {
        Ok(bytes) => source::decode_inflated(&bytes),
        Err(source::InflateError::Oversized { .. }) => {
            let message = format!("request body exceeds webhook.max_decoded_bytes ({limit} bytes)");
            return w.refuse("decoded_too_large", StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(source::InflateError::InflatesBeyond { .. }) => {
            let message = if limit < w.max_decoded_bytes {
                format!(
                    "request body inflates more than webhook.max_inflation_ratio ({} times its {} bytes)",
                    w.max_inflation_ratio,
                    body.len()
                )
            } else {
                format!("request body, decompressed, exceeds webhook.max_decoded_bytes ({limit} bytes)")
            };
            return w.refuse("decoded_too_large", StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(e) => source::DecodedRecord::failed(e.to_string()),
    };
    Metrics::inc(&w.metrics.records_in_total);
    let stats = &decoded.content.stats;
    Metrics::add(&w.metrics.events_decoded_total, stats.events);
    Metrics::add(&w.metrics.decode_errors_total, stats.errors.max(u64::from(decoded.error.is_some())));
    let dead = decoded.error.as_deref().map(|error| {
        tracing::warn!(%error, "webhook batch with problems: dead letter");
        Metrics::inc(&w.metrics.dead_letters_total);
        DeadLetter {
            key: None,
            value: &body,
            error,
            topic: WEBHOOK_SOURCE,
            partition: -1,
            offset: -1,
            decoded_events: stats.events,
            cluster: Some(&w.cluster),
        }
    });
    match w.sink.deliver(&w.cluster, decoded.content.observations, dead).await {
        Ok(out) => {
            Metrics::add(&w.metrics.observations_out_total, out);
            w.metrics.cluster(&w.cluster, 1, out);
            (StatusCode::OK, String::new())
        }
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &AggregatorError) -> (StatusCode, String) {
    tracing::warn!(error = %e, "webhook batch not delivered; the apiserver will retry");
    (StatusCode::SERVICE_UNAVAILABLE, "observations could not be delivered; retry\n".into())
}
