//! The aggregator: attestations over gRPC and audit events from Kafka, merged into one stream
//! of observations keyed by `cluster/namespace/serviceaccount` (docs/design.md §1, §4).
//!
//! It decodes with `tokentrail-aggregator-core`, the decoders `tokentrail analyze` uses, so the
//! stream and the forensic mode cannot disagree about what an audit event means.
//!
//! Layout, pure parts first:
//! * [`config`]: [`Config`] (JSON file, flags on top), defaults and validation.
//! * [`route`]: the record key of each observation, and broadcasts (pure; read it to know what
//!   the correlator can rely on).
//! * [`attest`]: agent attestations → observations, and the node check (pure).
//!
//! Observations are the domain's (`tokentrail_proto::observation`) everywhere inside: decoded
//! audit events and attestations alike go to a [`sink::Sink`] with their cluster, and only the
//! Kafka sink encodes them to `tokentrail.observation.v1` (`tokentrail_proto::wire`).
//! * [`agents`]: which node owns each `agent_id`, and each agent's state (pure, bounded).
//! * [`source`]: the raw-topic consumer and what one raw record decodes into.
//! * [`sink`]: where the servers deliver; the producer: observations, broadcasts, dead letters,
//!   delivery futures.
//! * [`pipeline`]: the audit loop: batch, produce, wait for acknowledgements, commit.
//! * [`grpc`]: the attestation server (tonic, tower layers, tonic-health, mTLS).
//! * [`webhook`]: the apiserver's audit webhook backend (HTTPS, mTLS, allowed client names,
//!   413 beyond the body and decompression limits, 503 beyond the concurrent requests).
//! * [`listen`]: accepting connections for both servers: a cap, timeouts, back-off on errors.
//! * [`peer`]: the names a client certificate goes by, against an allow-list (pure).
//! * [`health`]: readiness and consumer lag, from the Kafka clients' statistics.
//! * [`probes`]: the plain-HTTP listener of `/healthz`, `/readyz` and `/metrics` (every
//!   component's: the `tokentrail` binary binds it for the others).
//! * [`inventory`]: the cluster inventory feed (kube-rs watchers of Pods, Nodes,
//!   ServiceAccounts and token Secrets, conversion by the dump decoder, leader election on a
//!   Lease; the conversion, what to send and the election's decision are pure).
//! * [`kube_client`]: the Kubernetes API client of both (kubeconfig or in-cluster).
//! * [`token`], [`authn`]: agents' projected tokens (pure checks; JWKS file or TokenReview).
//! * [`telemetry`]: counters the tests read; [`error`]: errors with retry hints.
//! * Flags, logging, the runtime, signals and metrics export: the `tokentrail` binary
//!   (`cli/src/component/aggregator.rs`).

pub mod agents;
pub mod attest;
pub mod authn;
pub mod config;
pub mod error;
pub mod grpc;
pub mod health;
pub mod inventory;
pub mod kube_client;
pub mod listen;
pub mod peer;
pub mod pipeline;
pub mod probes;
pub use tokentrail_aggregator_core::route;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod token;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

pub use config::Config;
pub use error::AggregatorError;
pub use telemetry::Metrics;

/// The addresses the servers listen on (tests listen on port 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Bound {
    /// The attestation server, when configured.
    pub grpc: Option<SocketAddr>,
    /// The audit webhook, when configured.
    pub webhook: Option<SocketAddr>,
    /// The probe listener (`/healthz`, `/readyz`, `/metrics`), when configured.
    pub health: Option<SocketAddr>,
}

/// Runs the aggregator until `shutdown` resolves: the audit path and, when configured, the
/// gRPC server, the audit webhook and the probe listener (which serves `/metrics` with
/// `scrape`). `bound`, if given, receives their addresses once they listen. On shutdown the audit batch under way is committed and attestation
/// streams are closed; agents resend what was not acknowledged.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    scrape: Option<probes::Scrape>,
    bound: Option<oneshot::Sender<Bound>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AggregatorError> {
    config.validate()?;
    let health = Arc::new(health::Health::new(!config.kafka.audit_topics.is_empty()));
    let (stop_tx, stop_rx) = watch::channel(false);
    // First, so that a probe can tell "starting" from "dead" while Kafka is being reached.
    let probes = match &config.health {
        Some(h) => {
            let answers = probes::Answers { readiness: health.clone(), scrape };
            Some(probes::Server::bind(h.listen, answers, metrics.clone(), stop_rx.clone()).await?)
        }
        None => None,
    };
    let probes_addr = probes.as_ref().and_then(probes::Server::local_addr);
    let probes = probes.map(|p| tokio::spawn(p.serve()));
    // Before Kafka: an unusable kubeconfig is a configuration error, reported at once.
    let feed = match &config.inventory {
        Some(i) => Some(inventory::Feed::connect(i).await?),
        None => None,
    };
    let sink = Arc::new(
        sink::KafkaSink::connect(&config.kafka, config.directory_capacity, health.clone(), metrics.clone()).await?,
    );
    let mut servers =
        Servers::start(config.grpc.as_ref(), config.webhook.as_ref(), sink.clone(), metrics.clone(), stop_rx.clone())
            .await?;
    servers.tasks.push(tokio::spawn(send_progress(
        sink.clone(),
        config.kafka.progress_interval,
        metrics.clone(),
        stop_rx.clone(),
    )));
    if let Some(feed) = feed {
        servers.tasks.push(tokio::spawn(feed.run(sink.clone(), stop_rx)));
    }
    servers.bound.health = probes_addr;
    servers.tasks.extend(probes);
    if let Some(tx) = bound {
        let _ = tx.send(servers.bound);
    }
    let audit = pipeline::run_audit(&config.kafka, sink.clone(), metrics, health, async {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let result = audit.await;
    // The audit path ends on shutdown or on an error: either way the servers stop too.
    let _ = stop_tx.send(true);
    let stopped = servers.finish().await;
    sink.flush(Duration::from_secs(10));
    result.and(stopped)
}

/// Sends the progress of repeated node facts every `interval` ([`sink::KafkaSink::send_progress`]),
/// and once more on stop. A failed delivery is logged and retried with the next: the audit
/// pipeline stops on Kafka failures of its own, and a later progress carries later times.
async fn send_progress(
    sink: Arc<sink::KafkaSink>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), AggregatorError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        match sink.send_progress().await {
            Ok(out) => {
                for (cluster, copies) in out {
                    Metrics::add(&metrics.observations_out_total, copies);
                    metrics.cluster(&cluster, 0, copies);
                }
            }
            Err(e) => tracing::warn!(error = %e, "progress not delivered; the next one carries later times"),
        }
        if stopping {
            return Ok(());
        }
    }
}

/// The attestation server and the audit webhook, serving into one [`sink::Sink`]: the
/// aggregator's Kafka producer, or `tokentrail standalone`'s in-process queue.
pub struct Servers {
    /// Where they listen.
    pub bound: Bound,
    tasks: Vec<tokio::task::JoinHandle<Result<(), AggregatorError>>>,
}

impl Servers {
    /// Binds and starts the configured servers; they stop when `stop` turns true.
    pub async fn start(
        grpc: Option<&config::GrpcConfig>,
        webhook: Option<&config::WebhookConfig>,
        sink: Arc<dyn sink::Sink>,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Result<Servers, AggregatorError> {
        let mut servers = Servers { bound: Bound::default(), tasks: Vec::new() };
        if let Some(g) = grpc {
            let server = grpc::Server::bind(g, sink.clone(), metrics.clone(), stop.clone()).await?;
            servers.bound.grpc = Some(server.local_addr());
            servers.tasks.push(tokio::spawn(server.serve()));
        }
        if let Some(w) = webhook {
            let server = webhook::Server::bind(w, sink, metrics, stop).await?;
            servers.bound.webhook = server.local_addr();
            servers.tasks.push(tokio::spawn(server.serve()));
        }
        Ok(servers)
    }

    /// Waits for the servers to stop (after `stop` turned true): the first error, if any.
    pub async fn finish(self) -> Result<(), AggregatorError> {
        let mut result = Ok(());
        for mut task in self.tasks {
            // Streams end at once on shutdown; a connection that does not close is not waited for.
            match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
                Ok(Ok(Err(e))) if result.is_ok() => result = Err(e),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("connections still open after 10 s: closing them");
                    task.abort();
                }
            }
        }
        result
    }
}
