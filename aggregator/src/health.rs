//! Readiness and consumer lag (driver): what the Kafka clients report through their contexts.
//! The probe listener that answers `/readyz` with it is [`crate::probes`].
//!
//! Readiness means "can do its work": the producer has a broker connection, and (with audit
//! topics) the consumer has joined its group and received its assignment. An empty assignment
//! is ready: more aggregators than partitions is not a fault, and such a replica still serves
//! attestations and the webhook.
//!
//! Both clients report librdkafka statistics every `statistics.interval.ms` (5 s here): the
//! consumer's carry each assigned partition's lag (high watermark minus committed offset),
//! exported as `tokentrail_aggregator_consumer_lag`; the producer's say whether a broker
//! connection is up.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use tokentrail_kafka::{Login, Reports};

use crate::telemetry::Metrics;

/// How often librdkafka reports statistics (lag, broker states), unless `kafka.client` sets
/// `statistics.interval.ms`.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// What readiness is made of.
#[derive(Debug)]
pub struct Health {
    /// No audit topics: the consumer is not part of readiness.
    consumes: bool,
    consumer_joined: AtomicBool,
    producer_up: AtomicBool,
}

impl Health {
    /// Readiness state of an aggregator that `consumes` audit topics (or not).
    pub fn new(consumes: bool) -> Health {
        Health { consumes, consumer_joined: AtomicBool::new(false), producer_up: AtomicBool::new(false) }
    }

    /// Ready, or why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.producer_up.load(Ordering::Relaxed) {
            return Err("the producer has no broker connection");
        }
        if self.consumes && !self.consumer_joined.load(Ordering::Relaxed) {
            return Err("the consumer has not joined its group yet (no assignment)");
        }
        Ok(())
    }

    /// The producer reached a broker (at start: the observations topic's metadata was read).
    pub(crate) fn set_producer_up(&self, up: bool) {
        self.producer_up.store(up, Ordering::Relaxed);
    }
}

impl crate::probes::Readiness for Health {
    fn ready(&self) -> Result<(), &'static str> {
        Health::ready(self)
    }
}

/// The audit consumer's context: assignments and lag (and OAUTHBEARER tokens).
pub struct ConsumerHealth {
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) login: Login,
    /// Its repeated reports, logged once a while (a broker away is reported on every attempt).
    pub(crate) reports: Reports,
}

impl ClientContext for ConsumerHealth {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.login.token()
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            // Partition -1 is librdkafka's "unassigned" bucket; a lag of -1 is unknown (not
            // assigned to this member, or nothing committed yet).
            for (&partition, p) in t.partitions.iter().filter(|(&id, _)| id >= 0) {
                if let Ok(n) = u64::try_from(p.consumer_lag) {
                    lag.insert((topic.clone(), partition), n);
                }
            }
        }
        self.metrics.set_consumer_lag(lag);
    }

    /// librdkafka's reports (a broker unreachable, a failed TLS handshake or login): the
    /// client retries by itself, the log says why it has to.
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(held_back) = self.reports.admit(&error.to_string()) {
            tracing::warn!(%error, reason, held_back, "consumer");
        }
    }
}

impl ConsumerContext for ConsumerHealth {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(partitions = partitions.count(), "audit partitions assigned");
            self.health.consumer_joined.store(true, Ordering::Relaxed);
        }
    }
}

/// The producer's context: broker connections (and OAUTHBEARER tokens).
pub struct ProducerHealth {
    pub(crate) health: Arc<Health>,
    pub(crate) login: Login,
    pub(crate) reports: Reports,
}

impl ClientContext for ProducerHealth {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.login.token()
    }

    fn stats(&self, statistics: Statistics) {
        self.health.set_producer_up(statistics.brokers.values().any(|b| b.state == "UP"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.set_producer_up(false);
        }
        if let Some(held_back) = self.reports.admit(&error.to_string()) {
            tracing::warn!(%error, reason, held_back, "producer");
        }
    }
}
