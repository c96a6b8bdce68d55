//! The Kafka producer (driver): observations to the observations topic, routed by
//! [`crate::route`], and undecodable raw records to the dead-letter topic.
//!
//! Observations arrive as domain values and are encoded to `tokentrail.observation.v1` here,
//! and only here: the servers, the router and `tokentrail standalone`'s queue never see protobuf.
//!
//! Writes are three steps so callers can batch: `enqueue_*` routes observations into an
//! [`Outbox`] (one batch per partition: the stream's cost is per record, see
//! `tokentrail_proto::wire::batch`) and hands dead letters and full batches to librdkafka;
//! [`KafkaSink::finish`] sends the rest and gives the delivery futures as a [`Pending`];
//! [`Pending::wait`] resolves when the broker has acknowledged every one of them (or says which
//! failed). The audit pipeline commits its input offsets, and the gRPC server sends its acks,
//! only after that. Records are placed on their partitions here ([`key_partition`]), as
//! librdkafka would place them by key.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokentrail_proto::wire::batch::{BatchWriter, BATCH_HEADER};
use tokentrail_proto::wire::{to_proto, BROADCAST_HEADER, HOME_HEADER};
use tokentrail_proto::Observation;

use crate::attest::PodNodes;
use crate::config::KafkaConfig;
use crate::error::AggregatorError;
use crate::health::{Health, ProducerHealth};
use crate::route::{home_partition, key_partition, Directory, Route};
use crate::telemetry::Metrics;
use tokentrail_aggregator_core::node_reports::{NodeReports, Repeat};

/// Headers of a dead-letter record.
pub mod dead_letter_headers {
    /// Why the record could not be used (lowercase; never holds long strings from the input).
    pub const ERROR: &str = "tokentrail-error";
    /// Topic the record was read from.
    pub const SOURCE_TOPIC: &str = "tokentrail-source-topic";
    /// Partition it was read from (decimal).
    pub const SOURCE_PARTITION: &str = "tokentrail-source-partition";
    /// Offset it was read at (decimal).
    pub const SOURCE_OFFSET: &str = "tokentrail-source-offset";
    /// Events of the record that did decode and were produced (decimal): a replay of the
    /// dead letter would repeat them.
    pub const DECODED_EVENTS: &str = "tokentrail-decoded-events";
    /// The cluster, when it was known.
    pub const CLUSTER: &str = "tokentrail-cluster";
}

/// Where one raw record that could not be used came from, and why.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// The raw record's key.
    pub key: Option<&'a [u8]>,
    /// The raw record's value, unchanged (as sensitive as the raw topic it came from).
    pub value: &'a [u8],
    /// Why.
    pub error: &'a str,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Events of it that were produced.
    pub decoded_events: u64,
    /// Cluster, if known.
    pub cluster: Option<&'a str>,
}

/// A delivery under way; resolves to the number of records it became.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<u64, AggregatorError>> + Send + 'a>>;

/// Where the servers ([`crate::grpc`], [`crate::webhook`]) deliver what they decoded: the
/// [`KafkaSink`] in the aggregator, an in-process queue in `tokentrail standalone`. It also knows
/// where the audit log placed pods ([`PodNodes`]), for the attestation node check.
pub trait Sink: PodNodes + Send + Sync {
    /// Delivers `observations` about `cluster` and, for a request with problems, its
    /// `dead_letter`; resolves once they may be acknowledged to the sender (for Kafka: once the
    /// broker has them).
    fn deliver<'a>(
        &'a self,
        cluster: &'a str,
        observations: Vec<Observation>,
        dead_letter: Option<DeadLetter<'a>>,
    ) -> Delivery<'a>;
}

/// Delivery futures of enqueued records.
#[derive(Default)]
pub struct Pending {
    futures: Vec<(&'static str, DeliveryFuture)>,
}

impl Pending {
    /// Records waiting.
    pub fn len(&self) -> usize {
        self.futures.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// Waits until the broker acknowledged every record; the first failure otherwise.
    pub async fn wait(self) -> Result<(), AggregatorError> {
        for (what, future) in self.futures {
            match future.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _message))) => return Err(AggregatorError::Delivery { topic: what.into(), source }),
                // The producer was dropped with the record still queued.
                Err(_canceled) => {
                    return Err(AggregatorError::Delivery { topic: what.into(), source: KafkaError::Canceled })
                }
            }
        }
        Ok(())
    }
}

/// The producer and where it writes.
pub struct KafkaSink {
    producer: FutureProducer<ProducerHealth>,
    topic: String,
    dead_letter_topic: String,
    partitions: i32,
    directory: Mutex<Directory>,
    /// Which node facts repeat what every partition holds: their times go out as progress.
    node_reports: Mutex<NodeReports>,
    /// `kafka.batch_max_bytes`: 0 sends one record per observation.
    batch_max_bytes: usize,
    metrics: Arc<Metrics>,
}

/// What one delivery (a batch of the audit path, an agent's message, a webhook request) hands
/// to the producer: its observations, routed into one batch per partition of the observations
/// topic until [`KafkaSink::finish`], and the deliveries of the records already sent.
pub struct Outbox {
    batches: Vec<BatchWriter>,
    pending: Pending,
    /// Node facts that repeated what every partition holds, noted for the progress by
    /// [`KafkaSink::finish`].
    repeats: Vec<Repeat>,
}

/// Which copy of an observation a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CopyKind {
    /// The only one: the observation has a key of its own.
    Only,
    /// A broadcast's copy that may raise findings.
    Home,
    /// Another broadcast copy.
    Elsewhere,
}

impl KafkaSink {
    /// Creates the producer and reads the observations topic's partition count (broadcasts go
    /// to each partition). The topics must exist: deploy/ defines them, and a typo must not
    /// create a one-partition topic.
    pub async fn connect(
        config: &KafkaConfig,
        directory_capacity: usize,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Result<KafkaSink, AggregatorError> {
        // Broker states for readiness (`crate::health`).
        let (mut c, login) = crate::source::client_config(config)?;
        // Retries inside librdkafka neither duplicate nor reorder records of a partition:
        // the broker drops a resent batch it already has. Implies acks=all.
        c.set("enable.idempotence", "true")
            // Observations are small and repetitive protobuf: lz4 is built into librdkafka
            // here (no zlib/zstd features) and cuts network and disk several-fold.
            .set("compression.type", "lz4")
            // Wait up to 5 ms to fill batches: at audit rates this is throughput for free; the
            // end-to-end latency budget is seconds.
            .set("linger.ms", "5")
            // Fail a record after 2 minutes instead of librdkafka's 5: the caller then stops
            // without committing, and a restart retries from the last commit.
            .set("message.timeout.ms", "120000");
        let producer: FutureProducer<ProducerHealth> = c
            .create_with_context(ProducerHealth {
                health: health.clone(),
                login,
                reports: tokentrail_kafka::Reports::default(),
            })
            .map_err(AggregatorError::kafka("creating the producer"))?;
        let topic = config.observations_topic.clone();
        let probe = producer.clone();
        let t = topic.clone();
        // Metadata requests block the calling thread.
        let partitions = tokio::task::spawn_blocking(move || {
            // A topic created moments ago may not be in this broker's metadata yet, or have no
            // leader yet: ask again for a few seconds before calling it missing.
            let give_up = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let metadata = probe.client().fetch_metadata(Some(&t), Duration::from_secs(30))?;
                let found = metadata.topics().first().map(|m| (m.error(), m.partitions().len()));
                match found {
                    Some((None, n)) if n > 0 => return Ok(n),
                    _ if std::time::Instant::now() < give_up => std::thread::sleep(Duration::from_millis(200)),
                    _ => return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)),
                }
            }
        })
        .await
        .map_err(|_| AggregatorError::kafka("reading the observations topic")(KafkaError::Canceled))?
        .map_err(AggregatorError::kafka(format!("reading metadata of topic {topic}")))?;
        tracing::info!(topic, partitions, "observations topic");
        health.set_producer_up(true);
        Ok(KafkaSink {
            producer,
            topic,
            dead_letter_topic: config.dead_letter_topic.clone(),
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            directory: Mutex::new(Directory::new(directory_capacity)),
            node_reports: Mutex::new(NodeReports::default()),
            batch_max_bytes: config.batch_max_bytes,
            metrics,
        })
    }

    /// The node the audit log last placed a pod on (for the attestation node check).
    pub fn pod_node(&self, cluster: &str, pod_uid: &str) -> Option<String> {
        self.directory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .node_of(cluster, pod_uid)
            .map(str::to_string)
    }

    /// Partitions of the observations topic (read at start).
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// An empty outbox for one delivery.
    pub fn outbox(&self) -> Outbox {
        let partitions = usize::try_from(self.partitions).unwrap_or(0);
        Outbox {
            batches: (0..partitions).map(|_| BatchWriter::default()).collect(),
            pending: Pending::default(),
            repeats: Vec::new(),
        }
    }

    /// Routes one observation about `cluster` into `outbox` (once, or on every partition for a
    /// broadcast; not at all for a node fact that repeats what every partition holds, whose
    /// time goes out with the next [`KafkaSink::send_progress`]); returns how many copies that
    /// was. A partition's batch that reaches `batch_max_bytes` is sent at once.
    pub async fn enqueue_observation(
        &self,
        cluster: &str,
        o: &Observation,
        outbox: &mut Outbox,
    ) -> Result<u64, AggregatorError> {
        if let Observation::Node(fact) = o {
            let repeat =
                self.node_reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).repeat(cluster, fact);
            if let Some(repeat) = repeat {
                // Its time goes out with a progress only once what was routed before it is sent.
                outbox.repeats.push(repeat);
                Metrics::inc(&self.metrics.node_repeats_total);
                return Ok(0);
            }
        }
        let route = self.directory.lock().unwrap_or_else(std::sync::PoisonError::into_inner).route(cluster, o);
        let payload = to_proto(cluster, o).encode_to_vec();
        match &route {
            Route::Key(key) => {
                let p = key_partition(key, self.partitions);
                self.place(outbox, p, key, CopyKind::Only, &payload).await?;
                Ok(1)
            }
            Route::Broadcast(key) => {
                let home = home_partition(key, self.partitions);
                for p in 0..self.partitions {
                    let copy = if p == home { CopyKind::Home } else { CopyKind::Elsewhere };
                    self.place(outbox, p, key, copy, &payload).await?;
                }
                Ok(u64::try_from(self.partitions).unwrap_or(0))
            }
        }
    }

    /// Adds one copy of an observation to partition `p`'s batch, sending the batch first when
    /// the copy would take it over `batch_max_bytes` (or sending the copy alone when batches
    /// are off).
    async fn place(
        &self,
        outbox: &mut Outbox,
        p: i32,
        key: &str,
        copy: CopyKind,
        payload: &[u8],
    ) -> Result<(), AggregatorError> {
        let (broadcast, home) = (copy != CopyKind::Only, copy == CopyKind::Home);
        if self.batch_max_bytes == 0 {
            let mut headers = OwnedHeaders::new();
            if broadcast {
                headers = headers.insert(Header { key: BROADCAST_HEADER, value: Some("1") });
            }
            if home {
                headers = headers.insert(Header { key: HOME_HEADER, value: Some("1") });
            }
            let record = FutureRecord::to(&self.topic).key(key).payload(payload).partition(p).headers(headers);
            Metrics::inc(&self.metrics.observation_records_out_total);
            return self.send(record, "observations", &mut outbox.pending).await;
        }
        let i = usize::try_from(p).unwrap_or(0);
        let full = outbox.batches[i].encoded_len() + key.len() + payload.len() > self.batch_max_bytes;
        if full && !outbox.batches[i].is_empty() {
            self.send_batch(outbox, i).await?;
        }
        outbox.batches[i].push(key, broadcast, home, payload);
        Ok(())
    }

    /// Sends partition `i`'s batch as one record.
    async fn send_batch(&self, outbox: &mut Outbox, i: usize) -> Result<(), AggregatorError> {
        let bytes = outbox.batches[i].take();
        let headers = OwnedHeaders::new().insert(Header { key: BATCH_HEADER, value: Some("1") });
        let p = i32::try_from(i).unwrap_or(0);
        let record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).payload(&bytes[..]).partition(p).headers(headers);
        Metrics::inc(&self.metrics.observation_records_out_total);
        self.send(record, "observations", &mut outbox.pending).await
    }

    /// Sends what `outbox` still holds; the returned deliveries resolve once the broker has
    /// everything the outbox was given.
    pub async fn finish(&self, mut outbox: Outbox) -> Result<Pending, AggregatorError> {
        for i in 0..outbox.batches.len() {
            if !outbox.batches[i].is_empty() {
                self.send_batch(&mut outbox, i).await?;
            }
        }
        // Every record routed before the repeats is now in librdkafka's queues, which keep each
        // partition's order: a progress that carries their times can only follow them.
        let mut reports = self.node_reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for repeat in outbox.repeats.drain(..) {
            reports.note(repeat);
        }
        Ok(outbox.pending)
    }

    /// Broadcasts the times of the node facts that repeated since the last call, one progress
    /// per cluster, and waits until the broker has them; returns how many copies that was for
    /// each cluster. Lost (the aggregator stopped first), a progress only delays the watermarks
    /// until the next one: every later repeat carries a later time.
    pub async fn send_progress(&self) -> Result<Vec<(String, u64)>, AggregatorError> {
        let progress = self.node_reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take_progress();
        let mut outbox = self.outbox();
        let mut out = Vec::new();
        for (cluster, p) in progress {
            let copies = self.enqueue_observation(&cluster, &Observation::Progress(p), &mut outbox).await?;
            Metrics::inc(&self.metrics.progress_out_total);
            out.push((cluster, copies));
        }
        self.finish(outbox).await?.wait().await?;
        Ok(out)
    }

    /// Enqueues a raw record for the dead-letter topic.
    pub async fn enqueue_dead_letter(&self, d: &DeadLetter<'_>, outbox: &mut Outbox) -> Result<(), AggregatorError> {
        use dead_letter_headers as h;
        let (partition, offset, decoded) =
            (d.partition.to_string(), d.offset.to_string(), d.decoded_events.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: h::ERROR, value: Some(d.error) })
            .insert(Header { key: h::SOURCE_TOPIC, value: Some(d.topic) })
            .insert(Header { key: h::SOURCE_PARTITION, value: Some(&partition) })
            .insert(Header { key: h::SOURCE_OFFSET, value: Some(&offset) })
            .insert(Header { key: h::DECODED_EVENTS, value: Some(&decoded) });
        if let Some(cluster) = d.cluster {
            headers = headers.insert(Header { key: h::CLUSTER, value: Some(cluster) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.dead_letter_topic).payload(d.value).headers(headers);
        if let Some(key) = d.key {
            record = record.key(key);
        }
        self.send(record, "dead-letter", &mut outbox.pending).await
    }

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure).
    async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        what: &'static str,
        pending: &mut Pending,
    ) -> Result<(), AggregatorError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => {
                    pending.futures.push((what, future));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((source, _)) => return Err(AggregatorError::Delivery { topic: what.into(), source }),
            }
        }
    }

    /// Waits up to `timeout` for everything enqueued to be delivered (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

impl PodNodes for KafkaSink {
    fn node_of(&self, cluster: &str, pod_uid: &str) -> Option<String> {
        self.pod_node(cluster, pod_uid)
    }
}

impl Sink for KafkaSink {
    fn deliver<'a>(
        &'a self,
        cluster: &'a str,
        observations: Vec<Observation>,
        dead_letter: Option<DeadLetter<'a>>,
    ) -> Delivery<'a> {
        Box::pin(async move {
            let mut outbox = self.outbox();
            let mut out = 0;
            for o in &observations {
                out += self.enqueue_observation(cluster, o, &mut outbox).await?;
            }
            if let Some(dead) = &dead_letter {
                self.enqueue_dead_letter(dead, &mut outbox).await?;
            }
            self.finish(outbox).await?.wait().await?;
            Ok(out)
        })
    }
}
