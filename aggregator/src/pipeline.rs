//! The audit path (driver): raw audit records in, observations and dead letters out, offsets
//! committed after the broker acknowledged what the records became.
//!
//! One `tokio::select!` loop collects a batch (up to `batch_records` records or `batch_linger`
//! after the first), decoding each record as it arrives and handing its observations to the
//! producer at once; then it waits for every delivery of the batch and commits the offset after
//! the last record of each partition. A crash anywhere repeats at most the records since the
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
use crate::sink::{DeadLetter, KafkaSink, Pending};
use crate::source::{self, CLUSTER_HEADER};
use crate::telemetry::Metrics;
use crate::wire;

/// Runs the audit path until `shutdown` resolves; the batch under way is finished and
/// committed first.
pub async fn run_audit(
    config: &KafkaConfig,
    sink: Arc<KafkaSink>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AggregatorError> {
    if config.audit_topics.is_empty() {
        shutdown.await;
        return Ok(());
    }
    let consumer = source::consumer(config)?;
    let mapping: HashMap<String, Option<String>> =
        config.audit_topics.iter().map(|t| (t.topic.clone(), t.cluster.clone())).collect();
    tracing::info!(topics = ?mapping.keys().collect::<Vec<_>>(), group = %config.group_id, "audit path starting");
    tokio::pin!(shutdown);
    let mut stopping = false;
    while !stopping {
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        while batch.records < config.batch_records {
            tokio::select! {
                biased;
                () = &mut shutdown => { stopping = true; break; }
                () = sleep_until(deadline) => break,
                received = consumer.recv() => {
                    let message = received.map_err(AggregatorError::kafka("reading the audit topics"))?;
                    deadline.get_or_insert_with(|| Instant::now() + config.batch_linger);
                    batch.record(&message, &mapping, config.max_record_bytes, &sink, &metrics).await?;
                }
            }
        }
        batch.finish(&consumer, &metrics).await?;
    }
    tracing::info!("audit path stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One batch: what was enqueued, and the offsets to commit once it is delivered.
#[derive(Default)]
struct Batch {
    pending: Pending,
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
        self.records += 1;
        self.last.insert((m.topic().to_string(), m.partition()), m.offset());
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
                return sink.enqueue_dead_letter(&dead(m, &error, 0, None), &mut self.pending).await;
            }
        };
        let decoded = source::decode_record(value, max_bytes);
        let stats = &decoded.sink.stats;
        Metrics::add(&metrics.events_decoded_total, stats.events);
        Metrics::add(&metrics.decode_errors_total, stats.errors.max(u64::from(decoded.error.is_some())));
        let mut out = 0;
        for o in &decoded.sink.observations {
            out += sink.enqueue_observation(&wire::to_proto(&cluster, o), &mut self.pending).await?;
        }
        self.observations += out;
        let c = self.per_cluster.entry(cluster.clone()).or_default();
        c.0 += 1;
        c.1 += out;
        if let Some(error) = &decoded.error {
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), %error, "dead letter");
            Metrics::inc(&metrics.dead_letters_total);
            sink.enqueue_dead_letter(&dead(m, error, stats.events, Some(&cluster)), &mut self.pending).await?;
        }
        Ok(())
    }

    /// Waits for every delivery, then commits the offsets after the batch's last records.
    async fn finish(self, consumer: &StreamConsumer, metrics: &Metrics) -> Result<(), AggregatorError> {
        if self.records == 0 {
            return Ok(());
        }
        self.pending.wait().await?;
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
        // harmless: the new owner reads these records again. Anything else is only
        // logged: a later commit of the same partition covers these offsets.
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => Metrics::inc(&metrics.commits_total),
            Err(e) => {
                tracing::warn!(error = %e, records = self.records, "offset commit failed; records will be read again")
            }
        }
        tracing::debug!(records = self.records, observations = self.observations, "batch committed");
        Ok(())
    }
}
