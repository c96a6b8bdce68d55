//! `tokentrail standalone`: the aggregator's servers and the correlator's engine in one
//! process, an in-memory queue in place of Kafka (docs/design.md §1, "standalone").
//!
//! ```text
//! apiserver ──audit webhook (HTTPS)──┐                                  ┌──▶ stdout
//!                                    ├─▶ QueueSink ─(bounded queue)─▶ engine loop ──▶ a file
//! agents ────attestations (gRPC)─────┘                                  └──▶ a Kafka topic
//! ```
//!
//! It lives in the cli crate because it composes both halves, above the aggregator and the
//! correlator, neither of which depends on the other.
//!
//! The servers are the aggregator's own ([`tokentrail_aggregator::Servers`]: same decoding, same
//! node check, same limits), delivering domain observations into a [`queue::QueueSink`] instead
//! of Kafka (nothing is encoded on the way). The engine loop folds what arrives into the
//! correlator's [`PartitionState`] (one engine per cluster and the emitter that decides what is
//! new or a material update) and every `emit_interval` writes the findings now due ([`output`]).
//!
//! Shutdown (SIGTERM): the servers stop accepting and close their streams, the queue is closed
//! and drained into the engine, the last findings are written and flushed, then `run` returns.
//! State lives in memory only: a restarted process starts afresh.
//!
//! Layout: [`queue`] (the sink and its queue), [`output`] (destinations), [`config`] (the
//! configuration file), [`cli`] (the flags over it), this file (the loop).

pub mod cli;
pub mod config;
pub mod output;
pub mod queue;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokentrail_aggregator::config::{GrpcConfig, WebhookConfig};
use tokentrail_aggregator::{AggregatorError, Bound, Servers};
use tokentrail_correlator::stream::{FindingFormat, Metrics, PartitionState};
use tokentrail_correlator_core::EngineConfig;
use tokio::sync::{mpsc, oneshot, watch};

use output::{Destination, Output};
use queue::{QueueSink, Queued};

/// Settings of `tokentrail standalone`.
#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// The attestation server for node agents; absent: none.
    pub grpc: Option<GrpcConfig>,
    /// The apiserver's audit webhook endpoint; absent: none.
    pub webhook: Option<WebhookConfig>,
    /// The engine's settings.
    pub engine: EngineConfig,
    /// Where findings go.
    pub destination: Destination,
    /// Findings as JSON or OCSF.
    pub format: FindingFormat,
    /// Observations the queue holds before the servers wait for the engine.
    pub queue_capacity: usize,
    /// How often the findings now due are written.
    pub emit_interval: Duration,
    /// Pods remembered for the attestation node check.
    pub directory_capacity: usize,
}

/// Why `tokentrail standalone` could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// A server could not start or failed.
    #[error(transparent)]
    Server(#[from] AggregatorError),
    /// A secret file of the Kafka security flags gave no secret.
    #[error("kafka security: {0}")]
    Secret(#[from] tokentrail_config::kafka::SecretError),
    /// Findings could not be written.
    #[error("writing findings to {path}: {source}", path = path.display())]
    Output {
        /// The file (or `stdout`).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The findings producer failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A finding could not be serialised.
    #[error("serialising a finding: {0}")]
    Serialise(#[from] serde_json::Error),
    /// The engine loop ended abnormally.
    #[error("the engine loop panicked")]
    Panicked,
}

/// The counters of both halves: the servers' (as in the aggregator) and the engine's (as in
/// the correlator; `transactions` counts written batches, `restores` stays 0).
#[derive(Debug, Default)]
pub struct StandaloneMetrics {
    /// Webhook and attestation counters.
    pub servers: Arc<tokentrail_aggregator::Metrics>,
    /// Observations folded, findings written.
    pub engine: Arc<Metrics>,
}

/// Runs until `shutdown` resolves (or the engine loop fails), then drains the queue, writes the
/// last findings and returns. `bound`, if given, receives the servers' addresses.
pub async fn run(
    config: StandaloneConfig,
    metrics: &StandaloneMetrics,
    bound: Option<oneshot::Sender<Bound>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StandaloneError> {
    let output = Output::open(&config.destination, config.format)?;
    let (sink, queue) = QueueSink::new(config.queue_capacity, config.directory_capacity);
    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = Servers::start(
        config.grpc.as_ref(),
        config.webhook.as_ref(),
        Arc::new(sink),
        Arc::clone(&metrics.servers),
        stop_rx,
    )
    .await?;
    if let Some(tx) = bound {
        let _ = tx.send(servers.bound);
    }
    tracing::info!(webhook = ?servers.bound.webhook, grpc = ?servers.bound.grpc, "standalone running");
    let (drain_tx, drain_rx) = oneshot::channel();
    let mut engine = tokio::spawn(correlate(
        queue,
        output,
        config.engine.clone(),
        config.emit_interval,
        Arc::clone(&metrics.engine),
        drain_rx,
    ));
    // The engine loop only ends early on an error (a destination that cannot be written).
    let early = tokio::select! {
        () = shutdown => None,
        ended = &mut engine => Some(ended),
    };
    let _ = stop_tx.send(true);
    let served = servers.finish().await;
    let correlated = match early {
        Some(ended) => ended,
        None => {
            // Nothing new is accepted now: the queue is drained into the engine and flushed.
            let _ = drain_tx.send(());
            engine.await
        }
    };
    correlated.map_err(|_| StandaloneError::Panicked)??;
    served?;
    Ok(())
}

/// The engine loop: folds queued observations in, writes due findings every `interval`, and on
/// `drain` closes the queue, folds what it still holds and writes the last findings.
async fn correlate(
    mut queue: mpsc::Receiver<Queued>,
    mut output: Output,
    engine: EngineConfig,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut drain: oneshot::Receiver<()>,
) -> Result<(), StandaloneError> {
    let mut state = PartitionState::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut moved = false;
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut drain, if !draining => {
                // Senders now fail (their clients retry later); what is queued is still read.
                queue.close();
                draining = true;
            }
            // Before the queue: a busy queue must not hold findings back.
            _ = tick.tick() => if std::mem::take(&mut moved) {
                emit(&mut state, &mut output, &metrics).await?;
            },
            item = queue.recv() => match item {
                Some((cluster, observation)) => {
                    state.observe(&cluster, observation, &engine);
                    metrics.observations.fetch_add(1, Ordering::Relaxed);
                    moved = true;
                }
                // Closed and drained (or every sender gone).
                None => break,
            },
        }
    }
    emit(&mut state, &mut output, &metrics).await?;
    tracing::info!(observations = metrics.observations.load(Ordering::Relaxed), "engine loop drained and flushed");
    Ok(())
}

async fn emit(state: &mut PartitionState, output: &mut Output, metrics: &Metrics) -> Result<(), StandaloneError> {
    let due = state.due(tokentrail_correlator::stream::now());
    if due.is_empty() {
        return Ok(());
    }
    output.write(&due).await?;
    metrics.findings.fetch_add(due.len() as u64, Ordering::Relaxed);
    metrics.transactions.fetch_add(1, Ordering::Relaxed);
    metrics.state_entries.store(state.size() as u64, Ordering::Relaxed);
    Ok(())
}
