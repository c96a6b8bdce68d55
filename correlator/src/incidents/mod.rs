//! `tokentrail incidents`: the findings topic in, incidents out, exactly once (docs/incidents.md,
//! "In the stream").
//!
//! An incident can hold findings of every correlator partition and every cluster, so one process
//! reads every partition of the findings topic (assigned, not a group member: two would each
//! group half of the findings and send conflicting incidents under the same ids) and folds them
//! into one [`Feed`]. Every `commit_interval` one transaction carries what changed in the
//! incidents and the findings offsets consumed, as the correlator's does; its transactional id is
//! fixed, so a restarted process fences the one it replaces.
//!
//! The findings topic is the state: at start the process reads every partition from its
//! beginning up to the committed offsets, folds what it reads and sends nothing (the incidents it
//! makes are what the last commit sent), then goes on from those offsets. The topic's retention
//! must therefore cover the feed's horizon (docs/incidents.md).
//!
//! Layout: [`config`] (settings), [`telemetry`] ([`Metrics`] as instruments), this file (the
//! replay and the loop); the grouping and the difference are the pure
//! [`tokentrail_correlator_core::incident_feed`]. Flags, signals and the worker thread:
//! `tokentrail incidents` (`cli/src/component/incidents.rs`).

pub mod config;
pub mod telemetry;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokentrail_correlator_core::incident_feed::{Change, Feed};
use tokentrail_correlator_core::Finding;
use tokentrail_kafka::{LoginContext, Reports};

pub use config::IncidentsConfig;

use crate::stream::{
    clients, consumer_error, kafka, resuming, send, transaction, transactional_producer, CorrelatorError, Until,
    CONTROL_TIMEOUT, STOP_BUDGET,
};

/// Counters the run keeps (read by tests and exported as metrics).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Finding records folded in after the replay.
    pub findings: AtomicU64,
    /// Finding records read back at start-up.
    pub replayed: AtomicU64,
    /// Finding records that were not `tokentrail.finding/v1` JSON.
    pub undecodable: AtomicU64,
    /// Incident records produced.
    pub records: AtomicU64,
    /// Of which ids that no longer stand.
    pub closed: AtomicU64,
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Transactions aborted (the process then stops).
    pub transaction_aborts: AtomicU64,
    /// Findings forgotten past the horizon.
    pub forgotten_aged: AtomicU64,
    /// Findings forgotten at the cap.
    pub forgotten_capped: AtomicU64,
    /// Findings held (a gauge).
    pub held: AtomicU64,
    /// Incidents standing (a gauge).
    pub standing: AtomicU64,
    /// The replay is done and the loop reads live findings: the process's readiness.
    pub replayed_all: AtomicBool,
}

/// The findings topic's partitions with the offset to resume each from (none: never
/// committed, so from the beginning).
type Resume = BTreeMap<i32, Option<i64>>;

/// Runs until `shutdown` is set, then commits what it holds and returns.
pub fn run(config: &IncidentsConfig, metrics: &Metrics, shutdown: &AtomicBool) -> Result<(), CorrelatorError> {
    let (consumer, producer, mut feed) = match start(config, metrics) {
        Ok(started) => started,
        // A stop asked for while the brokers kept the start waiting (an outage): nothing was
        // read yet, so nothing is lost, and the failure it cut short is no error.
        Err(e) if shutdown.load(Ordering::Relaxed) => {
            tracing::warn!(error = %e, "stopped before the start was done");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let reports = Reports::default();
    while !shutdown.load(Ordering::Relaxed) {
        producer.poll(Duration::ZERO);
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                next.insert(message.partition(), message.offset() + 1);
                if let Some(finding) = decode(&message, metrics) {
                    metrics.findings.fetch_add(1, Ordering::Relaxed);
                    feed.fold(finding);
                }
            }
            Some(Err(e)) => consumer_error(&consumer, e, &reports)?,
            None => {}
        }
        if !next.is_empty() && last_commit.elapsed() >= config.commit_interval {
            commit(&consumer, &producer, config, metrics, &mut feed, &mut next, Until::RUNNING)?;
            last_commit = Instant::now();
        }
    }
    let started = Instant::now();
    if !next.is_empty() {
        // A quarter of the budget is left for the clients' close.
        let until = Until(Some(started + STOP_BUDGET * 3 / 4));
        match commit(&consumer, &producer, config, metrics, &mut feed, &mut next, until) {
            Ok(()) => tracing::info!(took_ms = started.elapsed().as_millis(), "last commit done"),
            Err(e) => tracing::warn!(
                error = %e,
                "last commit not done; the next start redoes the work since the previous one"
            ),
        }
    }
    drop(consumer);
    drop(producer);
    tracing::info!(took_ms = started.elapsed().as_millis(), "Kafka clients closed");
    Ok(())
}

/// The process's clients, its transactions initialised, and its incidents rebuilt from the
/// findings topic up to the committed offsets, from which the consumer is assigned.
fn start(
    config: &IncidentsConfig,
    metrics: &Metrics,
) -> Result<(BaseConsumer<LoginContext>, BaseProducer<LoginContext>, Feed), CorrelatorError> {
    let (mut consumer_config, login) = clients(&config.bootstrap, &config.security)?;
    let consumer: BaseConsumer<LoginContext> = consumer_config
        // The group offsets are committed under; the process assigns itself every partition.
        .set("group.id", &config.group)
        // Offsets are committed only inside the transaction that carries their incidents.
        .set("enable.auto.commit", "false")
        // Findings of aborted correlator transactions never reach an incident.
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create_with_context(LoginContext(login))
        .map_err(kafka("creating the consumer"))?;
    // An incident lists every member (a spray of many tokens is one incident of many
    // findings); the incidents topic is created to accept large records. The instance is fixed:
    // a restart fences the process it replaces.
    let producer = transactional_producer(
        &config.bootstrap,
        &config.security,
        &config.instance,
        config.transaction_timeout,
        "16777216",
    )?;

    let resume = committed(&consumer, config)?;
    let mut feed = Feed::new(config.limits);
    replay(config, metrics, &resume, &mut feed)?;
    // What the last commit sent: made again, not sent again.
    let _ = feed.changes();
    note(metrics, &feed);
    let mut assignment = TopicPartitionList::new();
    for (&partition, offset) in &resume {
        let at = offset.map_or(Offset::Beginning, Offset::Offset);
        assignment.add_partition_offset(&config.findings_topic, partition, at).map_err(kafka("assigning"))?;
    }
    consumer.assign(&assignment).map_err(kafka("assigning the findings topic"))?;
    metrics.replayed_all.store(true, Ordering::Relaxed);
    tracing::info!(
        partitions = resume.len(),
        findings = feed.len(),
        incidents = feed.incidents(),
        "incidents rebuilt from the findings topic"
    );
    Ok((consumer, producer, feed))
}

/// A finding record's finding, or none (counted and logged) when it is not one: a topic of
/// OCSF findings, or a record of another schema. The log says so at the 1st, 2nd, 4th, 8th...
/// such record: a whole topic of them is one misconfiguration, not a line per record.
fn decode(message: &BorrowedMessage<'_>, metrics: &Metrics) -> Option<Finding> {
    match serde_json::from_slice::<Finding>(message.payload().unwrap_or_default()) {
        Ok(f) => Some(f),
        Err(e) => {
            let n = metrics.undecodable.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    error = %e,
                    undecodable = n,
                    "a record that is not a tokentrail.finding/v1 finding skipped (is the findings topic OCSF?)"
                );
            }
            None
        }
    }
}

/// Every partition of the findings topic, with its committed offset in the group.
fn committed(consumer: &BaseConsumer<LoginContext>, config: &IncidentsConfig) -> Result<Resume, CorrelatorError> {
    let topic = config.findings_topic.as_str();
    // Right after a broker's start its metadata can lag (no topic yet, no leader): ask again
    // until the deadline.
    let deadline = Instant::now() + CONTROL_TIMEOUT;
    let partitions: Vec<i32> = loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let found = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).map(|m| {
            m.topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect::<Vec<i32>>()
        });
        match found {
            Ok(list) if !list.is_empty() => break list,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Ok(_) => {
                return Err(CorrelatorError::Restore {
                    topic: topic.to_string(),
                    partition: -1,
                    message: String::from("the topic does not exist"),
                })
            }
            Err(e) => return Err(kafka("reading the findings topic's metadata")(e)),
        }
    };
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    // A group's coordinator is found on first use, and a broker just started has none yet
    // (`NotCoordinator`): ask again until the same deadline.
    let offsets = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(offsets) => break offsets,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "committed offsets not available yet; asking again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(kafka("reading committed offsets")(e)),
        }
    };
    Ok(partitions
        .into_iter()
        .map(|p| {
            let at = offsets.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            (p, at)
        })
        .collect())
}

/// Folds every finding below the committed offsets into `feed`, sending nothing.
fn replay(
    config: &IncidentsConfig,
    metrics: &Metrics,
    resume: &Resume,
    feed: &mut Feed,
) -> Result<(), CorrelatorError> {
    let topic = config.findings_topic.as_str();
    let targets: BTreeMap<i32, i64> =
        resume.iter().filter_map(|(&p, o)| Some((p, (*o)?))).filter(|(_, o)| *o > 0).collect();
    if targets.is_empty() {
        return Ok(());
    }
    let (mut consumer_config, login) = clients(&config.bootstrap, &config.security)?;
    let consumer: BaseConsumer<LoginContext> = consumer_config
        // Reads partitions it assigns itself and commits nothing.
        .set("group.id", format!("{}-replay", config.group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create_with_context(LoginContext(login))
        .map_err(kafka("creating the replay consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for &p in targets.keys() {
        tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(kafka("assigning"))?;
    }
    consumer.assign(&tpl).map_err(kafka("assigning the findings topic for the replay"))?;
    let started = Instant::now();
    let mut last_note = started;
    let mut read_since_grouping = 0usize;
    // Transaction markers take offsets too: each partition is read until its position reaches
    // the committed offset. The replay takes as long as the topic is long: no deadline (a
    // broker away shows in the client's warnings, progress in a line every 30 s).
    let mut left: BTreeMap<i32, i64> = targets;
    while !left.is_empty() {
        if let Ok(positions) = consumer.position() {
            left.retain(|&p, &mut target| {
                let at = positions.find_partition(topic, p).and_then(|e| e.offset().to_raw()).unwrap_or(0);
                at < target
            });
            if left.is_empty() {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                // Past the committed offset is the loop's to read (and send).
                if left.get(&m.partition()).is_some_and(|&target| m.offset() < target) {
                    metrics.replayed.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = decode(&m, metrics) {
                        feed.fold(f);
                        read_since_grouping += 1;
                    }
                }
                if read_since_grouping >= REPLAY_GROUPING {
                    // The feed's bounds apply while it is rebuilt, not only after.
                    let _ = feed.changes();
                    read_since_grouping = 0;
                }
            }
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, topic, "replaying the findings topic: the client retries"),
        }
        if last_note.elapsed() >= CONTROL_TIMEOUT {
            tracing::info!(replayed = metrics.replayed.load(Ordering::Relaxed), "still replaying the findings topic");
            last_note = Instant::now();
        }
    }
    tracing::info!(
        replayed = metrics.replayed.load(Ordering::Relaxed),
        took_ms = started.elapsed().as_millis(),
        "findings topic replayed"
    );
    Ok(())
}

/// Findings folded between two groupings during the replay: a bound on what the feed holds
/// beyond its cap while it is rebuilt.
const REPLAY_GROUPING: usize = 10_000;

/// One transaction: what changed in the incidents, and the findings offsets consumed.
fn commit(
    consumer: &BaseConsumer<LoginContext>,
    producer: &BaseProducer<LoginContext>,
    config: &IncidentsConfig,
    metrics: &Metrics,
    feed: &mut Feed,
    next: &mut BTreeMap<i32, i64>,
    until: Until,
) -> Result<(), CorrelatorError> {
    let changes = feed.changes();
    let body = || -> Result<(), CorrelatorError> {
        for change in &changes {
            let value = change.to_json()?;
            let status = match change {
                Change::Incident(_) => "open",
                Change::Closed(c) => c.status.as_str(),
            };
            let headers = OwnedHeaders::new().insert(Header { key: "status", value: Some(status) });
            let id = change.id().to_string();
            send(producer, BaseRecord::to(&config.incidents_topic).key(&id).payload(&value).headers(headers))?;
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &offset) in next.iter() {
            offsets
                .add_partition_offset(&config.findings_topic, partition, Offset::Offset(offset))
                .map_err(kafka("listing offsets"))?;
        }
        let group = consumer.group_metadata().ok_or(CorrelatorError::NotInGroup)?;
        resuming("adding offsets", until, |t| producer.send_offsets_to_transaction(&offsets, &group, t))?;
        resuming("committing", until, |t| producer.commit_transaction(t))
    };
    transaction(producer, until, || metrics.transaction_aborts.fetch_add(1, Ordering::Relaxed), body)?;
    metrics.transactions.fetch_add(1, Ordering::Relaxed);
    let closed = changes.iter().filter(|c| matches!(c, Change::Closed(_))).count();
    metrics.records.fetch_add(changes.len() as u64, Ordering::Relaxed);
    metrics.closed.fetch_add(closed as u64, Ordering::Relaxed);
    note(metrics, feed);
    next.clear();
    Ok(())
}

/// The gauges and what the feed forgot.
fn note(metrics: &Metrics, feed: &Feed) {
    metrics.held.store(feed.len() as u64, Ordering::Relaxed);
    metrics.standing.store(feed.incidents() as u64, Ordering::Relaxed);
    let forgotten = feed.forgotten();
    metrics.forgotten_aged.store(forgotten.aged, Ordering::Relaxed);
    metrics.forgotten_capped.store(forgotten.capped, Ordering::Relaxed);
}
