//! Restoring a partition's state: the last snapshot its changelog partition holds.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{kafka, CorrelatorConfig, CorrelatorError, PartitionState, CONTROL_TIMEOUT};

/// The committed state of input partition `partition`, or a fresh one when none was written.
pub fn restore(config: &CorrelatorConfig, partition: i32) -> Result<PartitionState, CorrelatorError> {
    let consumer: BaseConsumer = super::client_config(config)?
        // Not a group member: it reads one partition it assigns itself, and commits nothing.
        .set("group.id", format!("{}-restore", config.group))
        .set("enable.auto.commit", "false")
        // Only snapshots of committed transactions: an aborted one belongs to work redone.
        .set("isolation.level", "read_committed")
        .set("fetch.message.max.bytes", "67108864")
        .create()
        .map_err(kafka("creating the restore consumer"))?;
    let topic = config.changelog_topic.as_str();
    // Right after a broker restart its metadata can lag (an unknown partition, no leader yet):
    // ask again until the deadline rather than stop the replica over a passing state.
    let deadline = Instant::now() + CONTROL_TIMEOUT;
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(watermarks) => break watermarks,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, topic, partition, "changelog watermarks not available yet; asking again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(kafka("reading changelog watermarks")(e)),
        }
    };
    if high <= low {
        return Ok(PartitionState::default());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).map_err(kafka("assigning the changelog"))?;
    consumer.assign(&tpl).map_err(kafka("assigning the changelog"))?;
    let key = partition.to_string();
    let mut last: Option<Vec<u8>> = None;
    let deadline = Instant::now() + CONTROL_TIMEOUT;
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
        if Instant::now() > deadline {
            return Err(CorrelatorError::Restore {
                topic: topic.to_string(),
                partition,
                message: format!("not read to offset {high} within {CONTROL_TIMEOUT:?}"),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.key() == Some(key.as_bytes()) => last = m.payload().map(<[u8]>::to_vec),
            Some(Ok(_)) | None => {}
            // Errors while reading are the client's reports (a broker away): it retries, and
            // the deadline above bounds the wait.
            Some(Err(e)) => tracing::warn!(error = %e, topic, partition, "reading the changelog: the client retries"),
        }
    }
    match last {
        None => Ok(PartitionState::default()),
        Some(bytes) => PartitionState::restore(&bytes, &config.engine).map_err(|e| CorrelatorError::Restore {
            topic: topic.to_string(),
            partition,
            message: e.to_string(),
        }),
    }
}
