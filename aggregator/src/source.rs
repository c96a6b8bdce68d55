//! The Kafka consumer of raw audit topics (driver setup) and what one raw record becomes (pure).
//!
//! [`consumer`] creates the group member; [`cluster_of`] and [`decode_record`] are the per-record
//! steps the [`crate::pipeline`] loop runs, kept pure so they are tested without a broker.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use tokentrail_aggregator_core::{decode_value, decompress, detect_compression, Compression, Decoded};

use crate::config::KafkaConfig;
use crate::error::AggregatorError;
use tokentrail_kafka::{Login, Reports};

use crate::health::{ConsumerHealth, Health, STATISTICS_INTERVAL_MS};
use crate::telemetry::Metrics;

/// The record header naming a record's cluster, for topics the configuration does not map.
pub const CLUSTER_HEADER: &str = "cluster";

/// Creates the consumer and subscribes it to every configured audit topic; it reports to
/// `health` and `metrics`.
pub fn consumer(
    config: &KafkaConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> Result<StreamConsumer<ConsumerHealth>, AggregatorError> {
    let (mut c, login) = client_config(config)?;
    let context = ConsumerHealth { health, metrics, login, reports: Reports::default() };
    c.set("group.id", &config.group_id)
        // Offsets are committed by the pipeline, after the observations and dead letters of
        // a batch are acknowledged by the broker: at-least-once, never "committed but lost".
        .set("enable.auto.commit", "false")
        // Nothing is stored implicitly either: what is committed is exactly what the pipeline
        // passes to `commit`.
        .set("enable.auto.offset.store", "false")
        // A new group starts at the oldest retained audit event: missing token uses is worse
        // than reading a few days of audit log once.
        .set("auto.offset.reset", "earliest")
        // Larger fetches for a high-volume log: 1 MiB per partition (librdkafka's default) makes
        // too many round trips when one aggregator reads a busy cluster's topic.
        .set("max.partition.fetch.bytes", "8388608");
    let consumer: StreamConsumer<ConsumerHealth> =
        c.create_with_context(context).map_err(AggregatorError::kafka("creating the consumer"))?;
    let topics: Vec<&str> = config.audit_topics.iter().map(|t| t.topic.as_str()).collect();
    consumer.subscribe(&topics).map_err(AggregatorError::kafka("subscribing to the audit topics"))?;
    Ok(consumer)
}

/// What every client of the aggregator is configured with: statistics for readiness
/// (`crate::health`; `kafka.client` may change the period), the extra properties of
/// `kafka.client`, the brokers, and `kafka.security` (its secrets read from their files now);
/// and the OAUTHBEARER login its context holds.
pub fn client_config(config: &KafkaConfig) -> Result<(ClientConfig, Login), AggregatorError> {
    let mut c = ClientConfig::new();
    c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &config.bootstrap_servers);
    let login = tokentrail_kafka::secure(&mut c, &config.security)?;
    Ok((c, login))
}

/// Why a record's cluster is unknown (the record goes to the dead-letter topic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The `cluster` header is not a cluster name.
    #[error("the cluster header is not a cluster name (1-253 characters, no '/')")]
    BadHeader,
    /// The topic is not mapped to a cluster and the record has no `cluster` header.
    #[error("no cluster: map the topic to a cluster in the configuration or set a `cluster` header")]
    Unknown,
}

/// The cluster of a record: the topic's configured cluster, else its `cluster` header.
pub fn cluster_of<'a>(
    mapping: &'a HashMap<String, Option<String>>,
    topic: &str,
    header: Option<&'a [u8]>,
) -> Result<&'a str, ClusterError> {
    if let Some(Some(cluster)) = mapping.get(topic) {
        return Ok(cluster);
    }
    match header.map(std::str::from_utf8) {
        Some(Ok(c)) if valid_cluster(c) => Ok(c),
        Some(_) => Err(ClusterError::BadHeader),
        None => Err(ClusterError::Unknown),
    }
}

fn valid_cluster(c: &str) -> bool {
    !c.is_empty() && c.len() <= 253 && !c.contains('/') && !c.chars().any(char::is_control)
}

/// What one raw record decoded into.
#[derive(Debug)]
pub struct DecodedRecord {
    /// Observations, problems and counts.
    pub content: Decoded,
    /// Why the record (or part of it) could not be used; `None` when all of it was.
    pub error: Option<String>,
}

/// Why a raw value was not inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// The value itself is over the limit.
    #[error("record of {len} bytes exceeds the limit of {limit}")]
    Oversized {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// It decompresses to more than the limit (it was not decompressed further).
    #[error("decompressed record exceeds the limit of {limit} bytes")]
    InflatesBeyond {
        /// The limit.
        limit: usize,
    },
    /// It is not valid gzip or zstd.
    #[error("{compression} value does not decompress: {source}")]
    Corrupt {
        /// `gzip` or `zstd`.
        compression: &'static str,
        /// What the decompressor said.
        source: std::io::Error,
    },
}

/// A raw record value, decompressed when it is gzip or zstd, at most `max_bytes` either way:
/// a larger one is neither read further nor kept.
pub fn inflate(value: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, InflateError> {
    if value.len() > max_bytes {
        return Err(InflateError::Oversized { len: value.len(), limit: max_bytes });
    }
    let compression = detect_compression(value);
    if compression == Compression::None {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
    let read = decompress(compression, value).and_then(|r| r.take(limit).read_to_end(&mut out));
    match read {
        Err(source) => {
            let compression = if compression == Compression::Gzip { "gzip" } else { "zstd" };
            Err(InflateError::Corrupt { compression, source })
        }
        Ok(n) if n > max_bytes => Err(InflateError::InflatesBeyond { limit: max_bytes }),
        Ok(_) => Ok(Cow::Owned(out)),
    }
}

/// Decodes one raw record value: optionally gzip or zstd, then one event, an `EventList`, a
/// provider envelope, or JSON lines of any of them. Bounded by `max_bytes` after decompression.
pub fn decode_record(value: &[u8], max_bytes: usize) -> DecodedRecord {
    match inflate(value, max_bytes) {
        Ok(bytes) => decode_inflated(&bytes),
        Err(e) => DecodedRecord::failed(e.to_string()),
    }
}

/// Problems of one body kept in detail; the rest are counted.
const PROBLEMS_KEPT: usize = 3;

/// Decodes an [`inflate`]d value.
pub fn decode_inflated(bytes: &[u8]) -> DecodedRecord {
    // A few problems say enough, and a body of nothing but bad records must not cost a message
    // each (46 bytes of memory per byte of body): the rest are only counted.
    let mut content = Decoded { problem_limit: Some(PROBLEMS_KEPT), ..Decoded::new() };
    decode_value(bytes, &mut content);
    let error = if content.stats.errors == 0 {
        None
    } else {
        // Their messages never quote long input strings.
        let mut text: String = content.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let more = content.stats.errors.saturating_sub(content.problems.len() as u64);
        if more > 0 {
            text.push_str(&format!("; and {more} more"));
        }
        Some(text)
    };
    DecodedRecord { content, error }
}

impl DecodedRecord {
    /// Nothing decoded, for `error`.
    pub fn failed(error: String) -> DecodedRecord {
        DecodedRecord { content: Decoded::new(), error: Some(error) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_cluster_wins_over_the_header() {
        let mapping = HashMap::from([("a".to_string(), Some("prod".to_string())), ("b".to_string(), None)]);
        assert_eq!(cluster_of(&mapping, "a", Some(b"evil")), Ok("prod"));
        assert_eq!(cluster_of(&mapping, "b", Some(b"dev")), Ok("dev"));
        assert_eq!(cluster_of(&mapping, "b", None), Err(ClusterError::Unknown));
        assert_eq!(cluster_of(&mapping, "b", Some(b"a/b")), Err(ClusterError::BadHeader));
    }

    #[test]
    fn a_body_of_bad_records_keeps_a_few_messages_and_counts_every_one() {
        let body = "{}\n".repeat(10_000);
        let d = decode_inflated(body.as_bytes());
        assert_eq!((d.content.problems.len(), d.content.stats.errors), (PROBLEMS_KEPT, 10_000));
        assert!(d.error.as_deref().unwrap().ends_with("; and 9997 more"), "{:?}", d.error);
    }

    #[test]
    fn garbage_is_an_error_and_gzip_is_read() {
        let d = decode_record(b"{not json", 1024);
        assert!(d.error.is_some() && d.content.observations.is_empty());
        let d = decode_record(&[0x1f, 0x8b, 0, 1, 2], 1024);
        assert!(d.error.as_deref().unwrap().contains("gzip"), "{:?}", d.error);
        assert!(decode_record(&[b' '; 10], 5).error.unwrap().contains("exceeds"));
    }

    #[test]
    fn inflate_stops_at_the_limit_and_tells_size_from_corruption() {
        let gzip = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, data).unwrap();
            e.finish().unwrap()
        };
        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(matches!(inflate(&bomb, 1 << 20), Err(InflateError::InflatesBeyond { limit }) if limit == 1 << 20));
        assert_eq!(inflate(&bomb, 8 << 20).unwrap().len(), 8 << 20);
        assert!(matches!(inflate(b"{}\n{}\n", 5), Err(InflateError::Oversized { len: 6, limit: 5 })));
        assert!(matches!(inflate(b"{}", 5), Ok(Cow::Borrowed(b"{}"))));
        let corrupt = inflate(&bomb[..bomb.len() / 2], 16 << 20).unwrap_err();
        assert!(corrupt.to_string().starts_with("gzip value does not decompress"), "{corrupt}");
    }
}
