//! Settings of the streaming correlator.

use std::time::Duration;

use tokentrail_correlator_core::EngineConfig;

/// What the findings topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingFormat {
    /// `tokentrail.finding/v1` JSON.
    Json,
    /// OCSF 1.3 Detection Finding JSON.
    Ocsf,
}

/// Settings of one correlator process.
#[derive(Clone, Debug)]
pub struct CorrelatorConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap: String,
    /// Consumer group shared by all correlator replicas.
    pub group: String,
    /// This replica's stable name. It is the transactional id, so a restarted replica fences its
    /// dead predecessor and aborts the transaction it left open at once (instead of readers
    /// waiting for the transaction timeout).
    pub instance: String,
    /// The merged stream of observations (protobuf, key `cluster/namespace/serviceaccount`).
    pub observations_topic: String,
    /// Where findings go (key = finding id).
    pub findings_topic: String,
    /// Compacted topic with one state snapshot per input partition, partitioned like the input.
    pub changelog_topic: String,
    /// Findings as JSON or OCSF.
    pub format: FindingFormat,
    /// How often work is committed: findings, state and input offsets in one transaction.
    pub commit_interval: Duration,
    /// Engine settings (the cluster label is set per cluster from the stream).
    pub engine: EngineConfig,
}

impl CorrelatorConfig {
    /// Settings with the default topic names (`tokentrail.` prefix) and a one-second commit.
    pub fn new(bootstrap: impl Into<String>, group: impl Into<String>, instance: impl Into<String>) -> Self {
        CorrelatorConfig {
            bootstrap: bootstrap.into(),
            group: group.into(),
            instance: instance.into(),
            observations_topic: String::from("tokentrail.observations"),
            findings_topic: String::from("tokentrail.findings"),
            changelog_topic: String::from("tokentrail.correlator-state"),
            format: FindingFormat::Json,
            commit_interval: Duration::from_secs(1),
            engine: EngineConfig::default(),
        }
    }
}
