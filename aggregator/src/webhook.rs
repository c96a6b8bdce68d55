//! The apiserver's audit webhook backend (driver): `POST` of an `EventList` (any body the
//! decoders read) over HTTPS with client certificates, for self-managed clusters whose audit
//! log does not pass through Kafka.
//!
//! A body larger than `max_body_bytes` is refused with 413 before it is read in full. Otherwise
//! it is decoded like a raw Kafka record; its observations (and, for a body with problems, the
//! body itself as a dead letter) are delivered to the [`Sink`], and the answer is 200 only once
//! it has them (the aggregator's: once the broker has acknowledged them): on 503 the apiserver's webhook backend retries the batch (at-least-once).
//!
//! TLS is rustls (ring, as everywhere else) with ALPN `h2` and `http/1.1`; with `client_ca`
//! every client must present a certificate that CA signed (the apiserver's
//! `--audit-webhook-config-file` kubeconfig names its client certificate).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls;

use crate::config::{TlsConfig, WebhookConfig};
use crate::error::AggregatorError;
use crate::sink::{DeadLetter, Sink};
use crate::telemetry::Metrics;
use crate::{source, wire};

/// The `tokentrail-source-topic` header of a dead letter that came through the webhook.
pub const WEBHOOK_SOURCE: &str = "webhook";

struct Shared {
    cluster: String,
    max_body_bytes: usize,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
}

/// A bound, not yet serving, webhook endpoint.
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
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
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AggregatorError::Io { context: format!("listening on {}", config.listen), source })?;
        let tls = config.tls.as_ref().map(acceptor).transpose()?;
        let shared =
            Arc::new(Shared { cluster: config.cluster.clone(), max_body_bytes: config.max_body_bytes, sink, metrics });
        let router = axum::Router::new()
            .route("/", post(receive))
            .route("/audit", post(receive))
            // The limit is enforced while the body streams in: 413 without buffering it.
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(shared);
        Ok(Server { listener, tls, router, stop })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Accepts connections until stopped.
    pub async fn serve(self) -> Result<(), AggregatorError> {
        let Server { listener, tls, router, mut stop } = self;
        tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "audit webhook listening");
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(error = %e, "webhook accept failed");
                        continue;
                    }
                },
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let router = router.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => serve_connection(stream, router).await,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "webhook TLS handshake refused");
                            return;
                        }
                    },
                    None => serve_connection(tcp, router).await,
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "webhook connection ended");
                }
            });
        }
    }
}

pub(crate) async fn serve_connection<I>(
    io: I,
    router: axum::Router,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .await
}

fn acceptor(t: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, AggregatorError> {
    let bad = |what: String| AggregatorError::Io { context: what, source: std::io::Error::other("unusable") };
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
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `POST /audit`: decode, deliver, answer once delivered.
async fn receive(State(w): State<Arc<Shared>>, body: Bytes) -> (StatusCode, &'static str) {
    Metrics::inc(&w.metrics.records_in_total);
    let decoded = source::decode_record(&body, w.max_body_bytes);
    let stats = &decoded.sink.stats;
    Metrics::add(&w.metrics.events_decoded_total, stats.events);
    Metrics::add(&w.metrics.decode_errors_total, stats.errors.max(u64::from(decoded.error.is_some())));
    let observations: Vec<_> = decoded.sink.observations.iter().map(|o| wire::to_proto(&w.cluster, o)).collect();
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
    match w.sink.deliver(&observations, dead).await {
        Ok(out) => {
            Metrics::add(&w.metrics.observations_out_total, out);
            w.metrics.cluster(&w.cluster, 1, out);
            (StatusCode::OK, "")
        }
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &AggregatorError) -> (StatusCode, &'static str) {
    tracing::warn!(error = %e, "webhook batch not delivered; the apiserver will retry");
    (StatusCode::SERVICE_UNAVAILABLE, "observations could not be delivered; retry\n")
}
