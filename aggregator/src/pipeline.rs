//! The audit path (driver): raw audit records in, observations and dead letters out, offsets
//! committed after the broker acknowledged what the records became.
//!
//! One `tokio::select!` loop collects a batch (up to `batch_records` records or `batch_linger`
//! after the first), decoding each record as it arrives and routing its observations into the
//! batch's outbox (one record per partition, sent when full or when the batch ends). While the next batch fills, a task waits for every delivery of the
//! previous one; then the loop commits the offset after that batch's last record of each
//! partition (batches in order, at most two uncommitted). A crash anywhere repeats at most the records since the
//! last commit (at-least-once); nothing read is lost, and an undecodable record is a dead
//! letter, never a gap.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::error::AggregatorError;
use crate::health::{ConsumerHealth, Health};
use crate::sink::{DeadLetter, KafkaSink, Outbox};
use crate::source::{self, CLUSTER_HEADER};
use crate::telemetry::Metrics;

/// Runs the audit path until `shutdown` resolves; the batch under way is finished and
/// committed first.
pub async fn run_audit(
    config: &KafkaConfig,
    sink: Arc<KafkaSink>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AggregatorError> {
    if config.audit_topics.is_empty() {
        shutdown.await;
        return Ok(());
    }
    let consumer = source::consumer(config, health, metrics.clone())?;
    let mapping: HashMap<String, Option<String>> =
        config.audit_topics.iter().map(|t| (t.topic.clone(), t.cluster.clone())).collect();
    tracing::info!(topics = ?mapping.keys().collect::<Vec<_>>(), group = %config.group_id, "audit path starting");
    tokio::pin!(shutdown);
    let mut stopping = false;
    // The previous batch, waiting for its acknowledgements while the next one fills: reading
    // never stalls on the broker's round trip, and at most two batches are uncommitted.
    let mut in_flight: Option<InFlight> = None;
    while !stopping {
        let mut batch = Batch { outbox: sink.outbox(), done: Done::default() };
        let mut deadline: Option<Instant> = None;
        while batch.done.records < config.batch_records {
            let event = tokio::select! {
                biased;
                () = &mut shutdown => Event::Stop,
                delivered = wait_in_flight(&mut in_flight) => Event::Delivered(delivered),
                () = sleep_until(deadline) => Event::Linger,
                received = consumer.recv() => Event::Record(received),
            };
            match event {
                Event::Stop => {
                    stopping = true;
                    break;
                }
                Event::Linger => break,
                Event::Delivered(result) => {
                    if let Some(f) = in_flight.take() {
                        f.done.commit(result, &consumer, &metrics, CommitMode::Async)?;
                    }
                }
                Event::Record(Err(e)) => {
                    // The consumer's errors are reports (a broker went away, a leader moved):
                    // the client reconnects by itself and the readiness probe shows the outage,
                    // so the audit path rides it out instead of exiting, like the correlator.
                    if let Some(held_back) = consumer.context().reports.admit(&e.to_string()) {
                        tracing::warn!(error = %e, held_back, "consumer error on the audit topics; the client retries");
                    }
                }
                Event::Record(Ok(message)) => {
                    deadline.get_or_insert_with(|| Instant::now() + config.batch_linger);
                    batch.record(&message, &mapping, config.max_record_bytes, &sink, &metrics).await?;
                }
            }
        }
        // Batches are committed in order: the previous one first.
        if let Some(f) = in_flight.take() {
            let result = f.wait.await;
            f.done.commit(result, &consumer, &metrics, CommitMode::Async)?;
        }
        let Batch { outbox, done } = batch;
        let pending = sink.finish(outbox).await?;
        if done.records > 0 {
            in_flight = Some(InFlight { wait: tokio::spawn(pending.wait()), done });
        }
    }
    if let Some(f) = in_flight.take() {
        let result = f.wait.await;
        // The last commit before stopping must have landed when `run` returns.
        f.done.commit(result, &consumer, &metrics, CommitMode::Sync)?;
    }
    tracing::info!("audit path stopped");
    Ok(())
}

enum Event<'c> {
    Stop,
    Linger,
    Delivered(Result<Result<(), AggregatorError>, tokio::task::JoinError>),
    Record(Result<rdkafka::message::BorrowedMessage<'c>, rdkafka::error::KafkaError>),
}

/// A batch handed to the producer, and what to commit once it is acknowledged.
struct InFlight {
    wait: tokio::task::JoinHandle<Result<(), AggregatorError>>,
    done: Done,
}

async fn wait_in_flight(f: &mut Option<InFlight>) -> Result<Result<(), AggregatorError>, tokio::task::JoinError> {
    match f {
        Some(f) => (&mut f.wait).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One batch: what was enqueued, and the offsets to commit once it is delivered.
struct Batch {
    outbox: Outbox,
    done: Done,
}

/// What a batch read and produced: committed and counted once it is acknowledged.
#[derive(Default)]
struct Done {
    /// (topic, partition) → offset of the last record read.
    last: BTreeMap<(String, i32), i64>,
    records: usize,
    observations: u64,
    per_cluster: BTreeMap<String, (u64, u64)>,
}

impl Batch {
    /// Decodes one record and enqueues what it became.
    async fn record(
        &mut self,
        m: &rdkafka::message::BorrowedMessage<'_>,
        mapping: &HashMap<String, Option<String>>,
        max_bytes: usize,
        sink: &KafkaSink,
        metrics: &Metrics,
    ) -> Result<(), AggregatorError> {
        self.done.records += 1;
        self.done.last.insert((m.topic().to_string(), m.partition()), m.offset());
        Metrics::inc(&metrics.records_in_total);
        let value = m.payload().unwrap_or_default();
        let header = m.headers().and_then(|h| h.iter().find(|h| h.key == CLUSTER_HEADER).and_then(|h| h.value));
        fn dead<'a>(
            m: &'a rdkafka::message::BorrowedMessage<'_>,
            error: &'a str,
            decoded_events: u64,
            cluster: Option<&'a str>,
        ) -> DeadLetter<'a> {
            let value = m.payload().unwrap_or_default();
            let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
            DeadLetter { key: m.key(), value, error, topic, partition, offset, decoded_events, cluster }
        }
        let cluster = match source::cluster_of(mapping, m.topic(), header) {
            Ok(c) => c.to_string(),
            Err(error) => {
                tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), %error, "dead letter");
                Metrics::inc(&metrics.dead_letters_total);
                return sink.enqueue_dead_letter(&dead(m, &error.to_string(), 0, None), &mut self.outbox).await;
            }
        };
        let record = source::decode_record(value, max_bytes);
        let stats = &record.content.stats;
        Metrics::add(&metrics.events_decoded_total, stats.events);
        Metrics::add(&metrics.decode_errors_total, stats.errors.max(u64::from(record.error.is_some())));
        let mut out = 0;
        for o in &record.content.observations {
            out += sink.enqueue_observation(&cluster, o, &mut self.outbox).await?;
        }
        self.done.observations += out;
        let c = self.done.per_cluster.entry(cluster.clone()).or_default();
        c.0 += 1;
        c.1 += out;
        if let Some(error) = &record.error {
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), %error, "dead letter");
            Metrics::inc(&metrics.dead_letters_total);
            sink.enqueue_dead_letter(&dead(m, error, stats.events, Some(&cluster)), &mut self.outbox).await?;
        }
        Ok(())
    }
}

impl Done {
    /// After the batch's deliveries: counts it and commits the offsets after its last records.
    /// A failed delivery stops the pipeline without committing.
    fn commit(
        self,
        delivered: Result<Result<(), AggregatorError>, tokio::task::JoinError>,
        consumer: &StreamConsumer<ConsumerHealth>,
        metrics: &Metrics,
        mode: CommitMode,
    ) -> Result<(), AggregatorError> {
        match delivered {
            Ok(result) => result?,
            Err(_) => {
                let source = rdkafka::error::KafkaError::Canceled;
                return Err(AggregatorError::Delivery { topic: "observations".into(), source });
            }
        }
        Metrics::add(&metrics.observations_out_total, self.observations);
        for (cluster, (records, observations)) in &self.per_cluster {
            metrics.cluster(cluster, *records, *observations);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.last {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(offset + 1))
                .map_err(AggregatorError::kafka("building the offsets to commit"))?;
        }
        // A commit refused because the partitions moved to another member (a rebalance) is
        // harmless: the new owner reads these records again. Anything else is only logged: a
        // later commit of the same partition covers these offsets.
        match consumer.commit(&offsets, mode) {
            Ok(()) => Metrics::inc(&metrics.commits_total),
            Err(e) => {
                tracing::warn!(error = %e, records = self.records, "offset commit failed; records will be read again")
            }
        }
        tracing::debug!(records = self.records, observations = self.observations, "batch committed");
        Ok(())
    }
}
