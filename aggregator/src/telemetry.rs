//! The aggregator's counters.
//!
//! A [`Metrics`] is created by the caller and passed into [`crate::run`], so tests read the same
//! numbers an exporter would. Names follow `tokentrail_aggregator_*` (the field name is the
//! metric's suffix). [`register`] makes them OpenTelemetry instruments on the meter start-up
//! hands in (exported over OTLP with `--otlp-endpoint`); `tracing` carries the same events as
//! structured logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

/// Whether an instrument only grows (`_total`) or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One instrument's points when collected: `(value, attributes)`.
type Points = Vec<(u64, Vec<KeyValue>)>;

/// Registers an observable counter or gauge on `meter`, read by `read` when the exporter
/// collects (the meter keeps it for its provider's lifetime).
fn observe(
    meter: &Meter,
    kind: Kind,
    name: &'static str,
    description: &'static str,
    read: impl Fn() -> Points + Send + Sync + 'static,
) {
    let callback = move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
        read().iter().for_each(|(v, attributes)| o.observe(*v, attributes));
    };
    match kind {
        Kind::Counter => {
            meter.u64_observable_counter(name).with_description(description).with_callback(callback).build();
        }
        Kind::Gauge => {
            meter.u64_observable_gauge(name).with_description(description).with_callback(callback).build();
        }
    }
}

/// Exported name, kind, description and field of every counter and gauge.
type Field = fn(&Metrics) -> &AtomicU64;
#[rustfmt::skip]
const EXPORTED: &[(&str, Kind, &str, Field)] = &[
    ("tokentrail_aggregator_records_in_total", Kind::Counter, "Raw audit records consumed.", |m| &m.records_in_total),
    ("tokentrail_aggregator_events_decoded_total", Kind::Counter, "Audit events decoded.", |m| &m.events_decoded_total),
    ("tokentrail_aggregator_observations_out_total", Kind::Counter, "Observations produced and acknowledged (each broadcast copy counted; several travel in one record).", |m| &m.observations_out_total),
    ("tokentrail_aggregator_observation_records_out_total", Kind::Counter, "Records handed to the producer for the observations topic: one per partition and delivery (a batch), or one per observation with kafka.batch_max_bytes 0.", |m| &m.observation_records_out_total),
    ("tokentrail_aggregator_node_repeats_total", Kind::Counter, "Node facts not broadcast because they repeated what every partition holds; their times went out as progress.", |m| &m.node_repeats_total),
    ("tokentrail_aggregator_progress_out_total", Kind::Counter, "Progress records produced (one per cluster and interval with repeats; broadcast copies counted once each).", |m| &m.progress_out_total),
    ("tokentrail_aggregator_dead_letters_total", Kind::Counter, "Raw records sent to the dead-letter topic.", |m| &m.dead_letters_total),
    ("tokentrail_aggregator_decode_errors_total", Kind::Counter, "Problems the decoders reported.", |m| &m.decode_errors_total),
    ("tokentrail_aggregator_commits_total", Kind::Counter, "Offset commits that succeeded.", |m| &m.commits_total),
    ("tokentrail_aggregator_attestations_accepted_total", Kind::Counter, "Attestation messages processed.", |m| &m.attestations_accepted_total),
    ("tokentrail_aggregator_attestations_resent_total", Kind::Counter, "Attestation resends acknowledged again.", |m| &m.attestations_resent_total),
    ("tokentrail_aggregator_attestations_refused_total", Kind::Counter, "Pods or credentials attested for another node.", |m| &m.attestations_refused_total),
    ("tokentrail_aggregator_attestations_future_total", Kind::Counter, "Attestation messages refused for a time beyond the aggregator's clock plus max_clock_skew.", |m| &m.attestations_future_total),
    ("tokentrail_aggregator_agent_ids_refused_total", Kind::Counter, "Attestation streams refused for using an agent_id another node owns.", |m| &m.agent_ids_refused_total),
    ("tokentrail_aggregator_streams_refused_total", Kind::Counter, "Attestation streams refused.", |m| &m.streams_refused_total),
    ("tokentrail_aggregator_streams_open", Kind::Gauge, "Attestation streams open.", |m| &m.streams_open),
];

/// Exported name, kind, description and field of the connection counts, per `listener`.
type ConnectionField = fn(&ConnectionCounts) -> &AtomicU64;
#[rustfmt::skip]
const CONNECTIONS: &[(&str, Kind, &str, ConnectionField)] = &[
    ("tokentrail_aggregator_connections_open", Kind::Gauge, "Connections open, per listener.", |c| &c.open),
    ("tokentrail_aggregator_connections_accepted_total", Kind::Counter, "Connections accepted, per listener.", |c| &c.accepted_total),
    ("tokentrail_aggregator_accept_errors_total", Kind::Counter, "Failed accepts (e.g. out of file descriptors), per listener.", |c| &c.accept_errors_total),
    ("tokentrail_aggregator_connections_at_limit_total", Kind::Counter, "Times a listener stopped accepting at max_connections, per listener.", |c| &c.at_limit_total),
    ("tokentrail_aggregator_handshakes_failed_total", Kind::Counter, "TLS handshakes failed or timed out, per listener.", |c| &c.handshakes_failed_total),
    ("tokentrail_aggregator_connections_idle_closed_total", Kind::Counter, "Connections closed after idle_timeout, per listener.", |c| &c.idle_closed_total),
];

/// Registers the aggregator's metrics on `meter`, reading `metrics`; the per-cluster counts carry
/// a `cluster` attribute (at most [`MAX_CLUSTERS`] values and `other`).
pub fn register(metrics: &Arc<Metrics>, meter: &Meter) {
    for &(name, kind, description, field) in EXPORTED {
        let m = Arc::clone(metrics);
        observe(meter, kind, name, description, move || vec![(Metrics::get(field(&m)), Vec::new())]);
    }
    let by = |key: &'static str, points: Vec<(String, u64)>| -> Points {
        points.into_iter().map(|(v, n)| (n, vec![KeyValue::new(key, v)])).collect()
    };
    let m = Arc::clone(metrics);
    observe(
        meter,
        Kind::Counter,
        "tokentrail_aggregator_cluster_records_in_total",
        "Raw audit records consumed, per cluster.",
        move || by("cluster", m.clusters().into_iter().map(|(c, n)| (c, n.records_in)).collect()),
    );
    let m = Arc::clone(metrics);
    observe(
        meter,
        Kind::Counter,
        "tokentrail_aggregator_cluster_observations_out_total",
        "Observation records produced, per cluster.",
        move || by("cluster", m.clusters().into_iter().map(|(c, n)| (c, n.observations_out)).collect()),
    );
    let m = Arc::clone(metrics);
    observe(
        meter,
        Kind::Counter,
        "tokentrail_aggregator_agent_tokens_refused_total",
        "Attestation streams refused for the agent's token, per reason.",
        move || by("reason", m.agent_tokens_refused().into_iter().map(|(r, n)| (r.to_string(), n)).collect()),
    );
    let m = Arc::clone(metrics);
    observe(
        meter,
        Kind::Counter,
        "tokentrail_aggregator_webhook_requests_refused_total",
        "Audit webhook requests refused, per reason (overloaded, timeout, body_too_large, decoded_too_large, client_not_allowed).",
        move || by("reason", m.webhook_requests_refused().into_iter().map(|(r, n)| (r.to_string(), n)).collect()),
    );
    for &(name, kind, description, field) in CONNECTIONS {
        let m = Arc::clone(metrics);
        observe(meter, kind, name, description, move || {
            let per = |listener: &'static str, c: &ConnectionCounts| {
                (Metrics::get(field(c)), vec![KeyValue::new("listener", listener)])
            };
            vec![
                per("grpc", &m.grpc_connections),
                per("webhook", &m.webhook_connections),
                per("health", &m.health_connections),
            ]
        });
    }
    let m = Arc::clone(metrics);
    observe(
        meter,
        Kind::Gauge,
        "tokentrail_aggregator_consumer_lag",
        "Raw audit records not yet committed, per assigned topic and partition (high watermark minus committed offset).",
        move || {
            let lag = m.consumer_lag().into_iter();
            lag.map(|((topic, partition), n)| {
                (n, vec![KeyValue::new("topic", topic), KeyValue::new("partition", partition.to_string())])
            })
            .collect()
        },
    );
}

/// Distinct `cluster` label values; more are counted as `other`.
pub const MAX_CLUSTERS: usize = 256;

/// Counters (`_total`) and gauges of one aggregator.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Raw audit records consumed.
    pub records_in_total: AtomicU64,
    /// Audit events decoded (several per EventList record).
    pub events_decoded_total: AtomicU64,
    /// Observations produced and acknowledged (each broadcast copy counted; several travel in
    /// one record).
    pub observations_out_total: AtomicU64,
    /// Records handed to the producer for the observations topic (batches of observations).
    pub observation_records_out_total: AtomicU64,
    /// Node facts not broadcast: they repeated what every partition holds (their times went out
    /// as progress).
    pub node_repeats_total: AtomicU64,
    /// Progress records produced (broadcast copies counted once each).
    pub progress_out_total: AtomicU64,
    /// Raw records sent to the dead-letter topic.
    pub dead_letters_total: AtomicU64,
    /// Problems the decoders reported (a record can have several).
    pub decode_errors_total: AtomicU64,
    /// Offset commits that succeeded.
    pub commits_total: AtomicU64,
    /// Attestation messages processed (resends not counted).
    pub attestations_accepted_total: AtomicU64,
    /// Attestation messages acknowledged again without processing (resends).
    pub attestations_resent_total: AtomicU64,
    /// Pods or credentials refused: attested by an agent for another node than its own.
    pub attestations_refused_total: AtomicU64,
    /// Attestation messages refused (acknowledged, not delivered) because a time in them lies
    /// beyond the aggregator's clock plus `max_clock_skew`.
    pub attestations_future_total: AtomicU64,
    /// Attestation streams refused because their message used an `agent_id` another node owns.
    pub agent_ids_refused_total: AtomicU64,
    /// Attestation streams refused: no or wrong node identity, too many streams.
    pub streams_refused_total: AtomicU64,
    /// Gauge: attestation streams open.
    pub streams_open: AtomicU64,
    /// The attestation server's connections.
    pub grpc_connections: ConnectionCounts,
    /// The audit webhook's connections.
    pub webhook_connections: ConnectionCounts,
    /// The probe listener's connections.
    pub health_connections: ConnectionCounts,
    /// Webhook requests refused, by reason.
    webhook_requests_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Records in and out per cluster.
    per_cluster: Mutex<BTreeMap<String, ClusterCounts>>,
    /// Streams refused for the agent's token, by [`crate::token::TokenRefusal::reason`].
    agent_tokens_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Gauge: lag of each assigned audit partition, from the consumer's statistics.
    consumer_lag: Mutex<BTreeMap<(String, i32), u64>>,
}

/// Counts of one listener's connections (the `listener` label).
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// Gauge: connections open.
    pub open: AtomicU64,
    /// Connections accepted.
    pub accepted_total: AtomicU64,
    /// Accepts that failed (out of file descriptors, ...); the listener backed off after each.
    pub accept_errors_total: AtomicU64,
    /// Times the listener reached `max_connections` and waited for one to close.
    pub at_limit_total: AtomicU64,
    /// TLS handshakes that failed or did not finish within `handshake_timeout`.
    pub handshakes_failed_total: AtomicU64,
    /// Connections closed because nothing was read from them for `idle_timeout`.
    pub idle_closed_total: AtomicU64,
}

/// Per-cluster counts (the `cluster` label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Raw records consumed for the cluster.
    pub records_in: u64,
    /// Observation records produced for the cluster.
    pub observations_out: u64,
}

impl Metrics {
    /// Reads a counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Per-cluster counts so far.
    pub fn clusters(&self) -> BTreeMap<String, ClusterCounts> {
        lock(&self.per_cluster).clone()
    }

    /// Streams refused per token refusal reason.
    pub fn agent_tokens_refused(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.agent_tokens_refused).clone()
    }

    /// The consumer lag last reported, per `(topic, partition)` assigned to this aggregator.
    pub fn consumer_lag(&self) -> BTreeMap<(String, i32), u64> {
        lock(&self.consumer_lag).clone()
    }

    /// Webhook requests refused per reason.
    pub fn webhook_requests_refused(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.webhook_requests_refused).clone()
    }

    pub(crate) fn webhook_request_refused(&self, reason: &'static str) {
        *lock(&self.webhook_requests_refused).entry(reason).or_default() += 1;
    }

    pub(crate) fn agent_token_refused(&self, reason: &'static str) {
        *lock(&self.agent_tokens_refused).entry(reason).or_default() += 1;
    }

    /// Replaces the lag of every partition: partitions no longer assigned disappear.
    pub(crate) fn set_consumer_lag(&self, lag: BTreeMap<(String, i32), u64>) {
        *lock(&self.consumer_lag) = lag;
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn cluster(&self, cluster: &str, records_in: u64, observations_out: u64) {
        let mut m = lock(&self.per_cluster);
        // Cluster names may come from record headers: bound the label's cardinality.
        let cluster = if m.len() >= MAX_CLUSTERS && !m.contains_key(cluster) { "other" } else { cluster };
        let c = m.entry(cluster.to_string()).or_default();
        c.records_in += records_in;
        c.observations_out += observations_out;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
