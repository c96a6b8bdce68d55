//! The plain-HTTP listener of every long-running component (driver): `GET /healthz`
//! (liveness), `GET /readyz` (readiness) and `GET /metrics` (Prometheus text exposition).
//!
//! One server for all of them: the aggregator binds it on its `health.listen`, the `tokentrail`
//! binary binds it for the agent, the correlator and standalone on `--metrics-listen`. What it
//! answers comes from outside: a [`Readiness`] (the component's own notion of "can do its
//! work") and, when metrics are exposed, a [`Scrape`] that renders the current values.
//!
//! Liveness is the runtime answering at all. Readiness answers 503 with a one-line reason while
//! not ready. The listener takes at most 64 connections and closes one idle for 10 s
//! ([`Listener`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use tokio::sync::watch;

use crate::error::AggregatorError;
use crate::listen::{Limits, Listener};
use crate::telemetry::Metrics;

/// The probe listener's connections: a kubelet opens one per probe and closes it, Prometheus
/// keeps one per scrape target.
const PROBE_LIMITS: Limits = Limits { max_connections: 64, idle_timeout: Duration::from_secs(10) };

/// The content type of the Prometheus text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a component can do its work.
pub trait Readiness: Send + Sync + 'static {
    /// Ready, or why not (one line).
    fn ready(&self) -> Result<(), &'static str>;
}

impl<F> Readiness for F
where
    F: Fn() -> Result<(), &'static str> + Send + Sync + 'static,
{
    fn ready(&self) -> Result<(), &'static str> {
        self()
    }
}

/// Renders the current metric values as Prometheus text exposition 0.0.4.
pub type Scrape = Arc<dyn Fn() -> String + Send + Sync>;

/// What the listener answers with.
#[derive(Clone)]
pub struct Answers {
    /// `/readyz`.
    pub readiness: Arc<dyn Readiness>,
    /// `/metrics`; `None`: 404 (no metrics exposed).
    pub scrape: Option<Scrape>,
}

/// The bound, not yet serving, probe listener.
pub struct Server {
    listener: Listener,
    answers: Answers,
    stop: watch::Receiver<bool>,
}

impl Server {
    /// Binds `addr`. The listener's connections are counted in `metrics` (`listener="health"`):
    /// exported by the aggregator and standalone, whose instruments those are; the agent and the
    /// correlator pass counts nobody reads.
    pub async fn bind(
        addr: SocketAddr,
        answers: Answers,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Server, AggregatorError> {
        let listener = Listener::bind(addr, "health", PROBE_LIMITS, metrics, |m| &m.health_connections).await?;
        Ok(Server { listener, answers, stop })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `GET /healthz`, `GET /readyz` and `GET /metrics` until stopped.
    pub async fn serve(self) -> Result<(), AggregatorError> {
        let Server { mut listener, answers, mut stop } = self;
        let paths = if answers.scrape.is_some() { "/healthz, /readyz, /metrics" } else { "/healthz, /readyz" };
        tracing::info!(addr = ?listener.local_addr(), paths, "probes listening");
        let router = axum::Router::new()
            .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(answers);
        loop {
            let tcp = tokio::select! {
                tcp = listener.accept() => tcp,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            tokio::spawn(crate::webhook::serve_connection(tcp, router.clone(), PROBE_LIMITS.idle_timeout));
        }
    }
}

async fn readyz(State(answers): State<Answers>) -> (StatusCode, String) {
    match answers.readiness.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics(
    State(answers): State<Answers>,
) -> Result<([(header::HeaderName, &'static str); 1], String), StatusCode> {
    let scrape = answers.scrape.ok_or(StatusCode::NOT_FOUND)?;
    // Collecting runs the instruments' callbacks (atomics, short-held locks): no need to leave
    // the runtime for it.
    Ok(([(header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE)], scrape()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `GET path` over a fresh connection: the whole response.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    }

    async fn serve(answers: Answers) -> (SocketAddr, watch::Sender<bool>) {
        let (stop, stopped) = watch::channel(false);
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), answers, Arc::default(), stopped).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve());
        (addr, stop)
    }

    #[tokio::test]
    async fn readyz_follows_the_readiness_with_its_reason_and_metrics_is_served_only_when_given() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let readiness = Arc::new(move || if flag.load(Ordering::Relaxed) { Ok(()) } else { Err("still starting") });
        let (addr, _stop) = serve(Answers { readiness: readiness.clone(), scrape: None }).await;
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
        let not_ready = get(addr, "/readyz").await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503") && not_ready.ends_with("\r\n\r\nnot ready: still starting\n"),
            "{not_ready}"
        );
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.ends_with("\r\n\r\nready\n"));
        assert!(get(addr, "/metrics").await.starts_with("HTTP/1.1 404"), "no scrape given: nothing to expose");

        let scrape: Scrape = Arc::new(|| "# TYPE x_total counter\nx_total 1\n".to_string());
        let (addr, _stop) = serve(Answers { readiness, scrape: Some(scrape) }).await;
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
        assert!(metrics.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{metrics}");
        assert!(metrics.ends_with("\r\n\r\n# TYPE x_total counter\nx_total 1\n"), "{metrics}");
    }
}
