//! A partition's state in its changelog partition: the records a commit writes, and the state
//! a restore rebuilds from the live ones.
//!
//! Records are keyed `<partition> TAB <entry key>` (see `tokentrail_correlator_core::changes`);
//! the topic is compacted, so it keeps the last value of each key, and a record without a value
//! (a tombstone) deletes its key. A record keyed by the partition number alone is a whole-state
//! snapshot written by versions before the per-key changelog: it is read when no entry is, and
//! deleted by the next commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokentrail_kafka::{LoginContext, Reports};

use super::{kafka, CorrelatorConfig, CorrelatorError, PartitionState, CONTROL_TIMEOUT};

/// A partition's state as restored.
pub struct Restored {
    /// The state.
    pub state: PartitionState,
    /// It came from a whole-state snapshot of an older version, which the next commit deletes.
    pub from_snapshot: bool,
}

/// The changelog key of entry `entry` of partition `partition`.
pub fn record_key(partition: i32, entry: &str) -> String {
    format!("{partition}\t{entry}")
}

/// The key under which versions before the per-key changelog wrote a partition's whole state.
pub fn snapshot_key(partition: i32) -> String {
    partition.to_string()
}

/// The committed state of input partition `partition`, or a fresh one when none was written;
/// `None` when `shutdown` is set first. A restore can wait a long time (a broker away, a frozen
/// replica's transaction), and a stop must not: the partition is left to its next owner.
pub fn restore(
    config: &CorrelatorConfig,
    partition: i32,
    shutdown: &AtomicBool,
) -> Result<Option<Restored>, CorrelatorError> {
    // Only entries of committed transactions: an aborted one belongs to work redone.
    let consumer = reader(config, "read_committed")?;
    let topic = config.changelog_topic.as_str();
    // Where to read to: the partition's end, as a reader of every record sees it, reached once
    // every transaction before it is resolved. A read_committed reader's own end (the last
    // stable offset) stops before a transaction still open: the previous owner's last one while
    // the broker writes its commit markers (the previous owner has committed and this replica
    // been given the partition before they are all written), or a frozen replica's. That
    // transaction's input offsets are where this replica resumes (the group's committed offsets
    // wait for it to be resolved), so a restore that stopped short would never fold its input
    // again: state lost for good (a missed attestation is a false token-forged-mint later).
    let Some((low, high)) = watermarks(&reader(config, "read_uncommitted")?, topic, partition, shutdown)? else {
        return Ok(None);
    };
    if high <= low {
        return Ok(Some(fresh()));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).map_err(kafka("assigning the changelog"))?;
    consumer.assign(&tpl).map_err(kafka("assigning the changelog"))?;
    let prefix = record_key(partition, "");
    let old_key = snapshot_key(partition);
    // The last value of each key: a compacted topic holds older ones until it is cleaned.
    let mut live: HashMap<String, Vec<u8>> = HashMap::new();
    let mut snapshot: Option<Vec<u8>> = None;
    // A frozen replica's open transaction is resolved when the broker aborts it.
    let deadline = Instant::now() + CONTROL_TIMEOUT + config.transaction_timeout;
    let reports = Reports::default();
    // The high watermark counts transaction markers too: read until the position reaches it.
    loop {
        let position = consumer
            .position()
            .ok()
            .and_then(|p| p.find_partition(topic, partition).and_then(|e| e.offset().to_raw()))
            .unwrap_or(low);
        if position >= high {
            break;
        }
        if shutdown.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(CorrelatorError::Restore {
                topic: topic.to_string(),
                partition,
                message: format!("not read to offset {high} within {CONTROL_TIMEOUT:?}"),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                if let Some(entry) = key.strip_prefix(&prefix) {
                    match m.payload() {
                        Some(value) => live.insert(entry.to_string(), value.to_vec()),
                        None => live.remove(entry),
                    };
                } else if key == old_key {
                    snapshot = m.payload().map(<[u8]>::to_vec);
                }
            }
            None => {}
            // Errors while reading are the client's reports (a broker away): it retries, and
            // the deadline above bounds the wait. Each poll returns the report at once, so
            // they are thinned out (one a kind every 10 s, with how many were held back).
            Some(Err(e)) => {
                if let Some(held_back) = reports.admit(&e.to_string()) {
                    tracing::warn!(error = %e, topic, partition, held_back, "reading the changelog: the client retries");
                }
            }
        }
    }
    let failed = |message: String| CorrelatorError::Restore { topic: topic.to_string(), partition, message };
    if !live.is_empty() {
        let entries = live.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let state = PartitionState::from_entries(entries, &config.engine).map_err(|e| failed(e.to_string()))?;
        return Ok(Some(Restored { state, from_snapshot: false }));
    }
    match snapshot {
        None => Ok(Some(fresh())),
        Some(bytes) => {
            let mut state = PartitionState::restore(&bytes, &config.engine).map_err(|e| failed(e.to_string()))?;
            state.track_changes();
            Ok(Some(Restored { state, from_snapshot: true }))
        }
    }
}

/// A client reading the changelog by itself: no group member, it assigns itself one partition
/// and commits nothing.
fn reader(config: &CorrelatorConfig, isolation: &str) -> Result<BaseConsumer<LoginContext>, CorrelatorError> {
    let (mut consumer_config, login) = super::client_config(config)?;
    consumer_config
        .set("group.id", format!("{}-restore", config.group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.message.max.bytes", "67108864")
        .create_with_context(LoginContext(login))
        .map_err(kafka("creating the restore consumer"))
}

/// The partition's low and high watermarks as `consumer` sees them (a read_committed consumer's
/// high is the last stable offset, a read_uncommitted one's the partition's end); `None` when
/// `shutdown` is set first.
fn watermarks(
    consumer: &BaseConsumer<LoginContext>,
    topic: &str,
    partition: i32,
    shutdown: &AtomicBool,
) -> Result<Option<(i64, i64)>, CorrelatorError> {
    // Right after a broker restart its metadata can lag (an unknown partition, no leader yet):
    // ask again until the deadline rather than stop the replica over a passing state.
    let deadline = Instant::now() + CONTROL_TIMEOUT;
    loop {
        // With OAUTHBEARER the consumer connects once it has a token, which librdkafka asks for
        // through a poll: fetching watermarks does not poll. Nothing is assigned yet, so the
        // poll returns no record; it serves events for 100 ms (a poll of 0 serves only one).
        let _ = consumer.poll(Duration::from_millis(100));
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(watermarks) => return Ok(Some(watermarks)),
            Err(_) if shutdown.load(Ordering::Relaxed) => return Ok(None),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, topic, partition, "changelog watermarks not available yet; asking again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(kafka("reading changelog watermarks")(e)),
        }
    }
}

fn fresh() -> Restored {
    let mut state = PartitionState::default();
    state.track_changes();
    Restored { state, from_snapshot: false }
}
