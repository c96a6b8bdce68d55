//! Settings of the streaming correlator: [`CorrelatorConfig`], what the loop runs with, and
//! [`FileConfig`], the configuration file it is read from (the environment and flags on top:
//! `tokentrail correlator`).

use std::time::Duration;

use serde::Deserialize;
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_config::{duration, Problem};
use tokentrail_correlator_core::expiry::Retention;
use tokentrail_correlator_core::time::Micros;
use tokentrail_correlator_core::{EngineConfig, IpNet};

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
    /// TLS and SASL of every client (consumers and the producer).
    pub security: KafkaSecurity,
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
    /// How long the group waits for a silent replica before its partitions go to the others.
    /// The replica's `instance` is its static group membership (`group.instance.id`): a
    /// replica restarted within this time gets its partitions back without a rebalance.
    pub session_timeout: Duration,
    /// How long the broker lets a transaction stay open before aborting it: the longest a
    /// frozen replica's open transaction holds back read_committed readers of the findings
    /// partitions it wrote to (other replicas' findings there included).
    pub transaction_timeout: Duration,
    /// The most of a replica's time spent judging its state for findings due, in (0, 1]: a
    /// state large enough that judging it every `commit_interval` would take more is
    /// committed, and judged, less often, and its findings wait longer (`pacing`).
    pub judging_share: f64,
    /// Engine settings (the cluster label is set per cluster from the stream).
    pub engine: EngineConfig,
}

impl CorrelatorConfig {
    /// Settings with the default topic names (`tokentrail.` prefix) and the default commit interval.
    pub fn new(bootstrap: impl Into<String>, group: impl Into<String>, instance: impl Into<String>) -> Self {
        CorrelatorConfig {
            bootstrap: bootstrap.into(),
            security: KafkaSecurity::default(),
            group: group.into(),
            instance: instance.into(),
            observations_topic: String::from("tokentrail.observations"),
            findings_topic: String::from("tokentrail.findings"),
            changelog_topic: String::from("tokentrail.correlator-state"),
            format: FindingFormat::Json,
            commit_interval: default_commit_interval(),
            session_timeout: default_session_timeout(),
            transaction_timeout: default_transaction_timeout(),
            judging_share: default_judging_share(),
            engine: EngineConfig::default(),
        }
    }
}

/// Why a [`FileConfig`] that passed its checks still makes no [`CorrelatorConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the file nor the environment names this replica.
    #[error("instance (or --instance, or $POD_NAME) is required")]
    NoInstance,
}

/// The correlator's configuration file: the settings of its flags as JSON (JSON is YAML, so a
/// ConfigMap holds it as written); the environment and flags override it (`tokentrail
/// correlator`). Durations are strings like `500ms`, `1s`, `5m` ([`tokentrail_config::duration`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// TLS and SASL of every Kafka client; absent: plaintext.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Consumer group of all correlator replicas.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// This replica's stable name (its transactional id); absent: `$POD_NAME`, e.g. the
    /// StatefulSet pod name.
    #[serde(default)]
    pub instance: Option<String>,
    /// Input topic of observations.
    #[serde(default = "default_observations_topic")]
    pub observations_topic: String,
    /// Output topic of findings.
    #[serde(default = "default_findings_topic")]
    pub findings_topic: String,
    /// Compacted topic of per-partition state, partitioned like the input.
    #[serde(default = "default_changelog_topic")]
    pub changelog_topic: String,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf`.
    #[serde(default)]
    pub format: FileFormat,
    /// How often findings, state and offsets are committed together.
    #[serde(default = "default_commit_interval", deserialize_with = "duration::deserialize")]
    pub commit_interval: Duration,
    /// How long the group waits for a silent replica (static membership: a replica restarted
    /// sooner gets its partitions back without a rebalance); 6s to 30m.
    #[serde(default = "default_session_timeout", deserialize_with = "duration::deserialize")]
    pub session_timeout: Duration,
    /// How long a transaction may stay open before the broker aborts it; at least twice the
    /// commit interval.
    #[serde(default = "default_transaction_timeout", deserialize_with = "duration::deserialize")]
    pub transaction_timeout: Duration,
    /// The most of a replica's time spent judging its state for findings due, above 0 and at
    /// most 1: a larger state is committed, and judged, less often.
    #[serde(default = "default_judging_share")]
    pub judging_share: f64,
    /// The engine's settings.
    #[serde(default)]
    pub engine: EngineSection,
}

/// The engine's section of the correlator's and standalone's configuration files (`engine`):
/// one declaration of the keys both read, with the engine's defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Networks of the cluster(s) beyond node pod CIDRs.
    #[serde(default, deserialize_with = "networks")]
    pub cluster_networks: Vec<IpNet>,
    /// Trusted proxies in front of the apiservers.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    /// NAT addresses pod traffic to the apiserver may come from.
    #[serde(default, deserialize_with = "networks")]
    pub egress_ips: Vec<IpNet>,
    /// How long a pod's old token may be used after its newer one.
    #[serde(default = "default_rotation_grace", deserialize_with = "duration::deserialize")]
    pub rotation_grace: Duration,
    /// How long (by the node's watermark) a node's agent has to attest a pod-bound credential
    /// after its first use before it counts as minted behind the kubelet's back.
    #[serde(default = "default_attestation_grace", deserialize_with = "duration::deserialize")]
    pub attestation_grace: Duration,
    /// How long a credential neither used nor attested is kept (by event time).
    #[serde(default = "default_credential_retention", deserialize_with = "duration::deserialize")]
    pub credential_retention: Duration,
    /// How long a deleted pod is kept (by event time).
    #[serde(default = "default_pod_retention", deserialize_with = "duration::deserialize")]
    pub pod_retention: Duration,
}

impl Default for EngineSection {
    fn default() -> EngineSection {
        EngineSection {
            cluster_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            egress_ips: Vec::new(),
            rotation_grace: default_rotation_grace(),
            attestation_grace: default_attestation_grace(),
            credential_retention: default_credential_retention(),
            pod_retention: default_pod_retention(),
        }
    }
}

impl EngineSection {
    /// Every problem serde cannot see, under `path` (the section's key).
    pub fn problems(&self, path: &str) -> Vec<Problem> {
        credential_retention_problem(&format!("{path}.credential_retention"), micros(self.credential_retention))
            .into_iter()
            .collect()
    }

    /// The engine's settings (the cluster label is set per cluster from the stream).
    pub fn into_engine(self) -> EngineConfig {
        EngineConfig {
            cluster_networks: self.cluster_networks,
            trusted_proxies: self.trusted_proxies,
            egress: self.egress_ips,
            rotation_grace: micros(self.rotation_grace),
            attestation_grace: micros(self.attestation_grace),
            retention: Retention {
                credentials: micros(self.credential_retention),
                pods: micros(self.pod_retention),
                ..Retention::default()
            },
            ..EngineConfig::default()
        }
    }
}

/// [`FindingFormat`] as written in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// `tokentrail.finding/v1` JSON.
    #[default]
    Json,
    /// OCSF Detection Finding JSON.
    Ocsf,
}

impl From<FileFormat> for FindingFormat {
    fn from(format: FileFormat) -> FindingFormat {
        match format {
            FileFormat::Json => FindingFormat::Json,
            FileFormat::Ocsf => FindingFormat::Ocsf,
        }
    }
}

fn default_group() -> String {
    String::from("tokentrail-correlator")
}
fn default_observations_topic() -> String {
    String::from("tokentrail.observations")
}
pub(crate) fn default_findings_topic() -> String {
    String::from("tokentrail.findings")
}
fn default_changelog_topic() -> String {
    String::from("tokentrail.correlator-state")
}
/// A finding is visible when the transaction that carries it commits: p99 latency is about one
/// interval plus the time to observe and judge. Commits start every interval (counted from the
/// last one's start) and a commit costs what changed (the per-key changelog), so 250 ms, four
/// transactions a second per replica, keeps p99 near 400 ms at 10,000 events/s
/// (docs/benchmarks.md, "Commits every interval from the last one's start").
fn default_commit_interval() -> Duration {
    Duration::from_millis(250)
}
/// librdkafka's and Kafka's default: long enough for a pod's restart, which static membership
/// turns into no rebalance at all.
fn default_session_timeout() -> Duration {
    Duration::from_secs(45)
}
/// Short enough that the broker aborts a frozen replica's open transaction (this, plus up to its
/// 10 s abort sweep) before the group expires the replica (`session_timeout`, 45 s): the replica
/// taking its partitions over then finds their committed offsets settled at once, and the other
/// replicas' findings are never held back (the frozen-replica drill in `e2e_drills.rs`; with the
/// broker's own default of 60 s they waited ~21 s after the expiry). Long enough for any commit,
/// and for a broker outage of that long without a restart; a longer one aborts the open
/// transaction and the replica exits to be restarted, losing nothing (the broker drill). Kafka
/// Streams uses 10 s under exactly-once.
pub(crate) fn default_transaction_timeout() -> Duration {
    Duration::from_secs(25)
}
/// All of it: a commit whenever the interval allows, however long judging takes, as before the
/// share existed. Measured side by side on a large state (docs/benchmarks.md, "A large state:
/// commits paced by judging"), a quarter caught up with a held backlog 1.5 times as fast but
/// doubled p99 latency at 1,000 and 5,000 events/s, where the replica had time to spare:
/// findings matter more than a backlog's pace, so pacing is for when a backlog is expected.
fn default_judging_share() -> f64 {
    1.0
}
fn default_rotation_grace() -> Duration {
    Duration::from_secs(300)
}
fn default_attestation_grace() -> Duration {
    micros_to_duration(EngineConfig::default().attestation_grace)
}
fn default_credential_retention() -> Duration {
    micros_to_duration(Retention::default().credentials)
}
fn default_pod_retention() -> Duration {
    micros_to_duration(Retention::default().pods)
}
pub(crate) fn micros_to_duration(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// A duration in the engine's microseconds (saturating: no setting is near 292,000 years).
pub fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The problems of a transactional loop's `commit_interval` and `transaction_timeout` (the
/// correlator's, `tokentrail incidents`').
pub(crate) fn commit_problems(commit_interval: Duration, transaction_timeout: Duration) -> Vec<Problem> {
    let mut problems = Vec::new();
    if commit_interval < Duration::from_millis(10) {
        problems.push(Problem::new("commit_interval", "must be at least 10ms"));
    }
    if transaction_timeout < (commit_interval * 2).max(Duration::from_secs(1)) {
        problems.push(Problem::new(
            "transaction_timeout",
            "must be at least 1s and twice commit_interval: a commit must fit in it with room to spare",
        ));
    }
    problems
}

/// The problem with a credential retention shorter than [`Retention::MIN_CREDENTIALS`], if any.
pub fn credential_retention_problem(key: &str, retention: Micros) -> Option<Problem> {
    (retention < Retention::MIN_CREDENTIALS)
        .then(|| Problem::new(key, "must be at least 24h: the kubelet keeps a token in its pod for up to a day"))
}

fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse::<IpNet>().map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))))
        .collect()
}

impl FileConfig {
    /// Defaults for everything but the brokers.
    pub fn new(bootstrap_servers: impl Into<String>) -> FileConfig {
        FileConfig {
            bootstrap_servers: bootstrap_servers.into(),
            security: KafkaSecurity::default(),
            group_id: default_group(),
            instance: None,
            observations_topic: default_observations_topic(),
            findings_topic: default_findings_topic(),
            changelog_topic: default_changelog_topic(),
            format: FileFormat::default(),
            commit_interval: default_commit_interval(),
            session_timeout: default_session_timeout(),
            transaction_timeout: default_transaction_timeout(),
            judging_share: default_judging_share(),
            engine: EngineSection::default(),
        }
    }

    /// Every problem serde cannot see, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            problems.push(Problem::new("bootstrap_servers", "is empty"));
        }
        if self.group_id.is_empty() {
            problems.push(Problem::new("group_id", "is empty"));
        }
        if self.instance.as_deref().is_some_and(str::is_empty) {
            problems.push(Problem::new("instance", "is empty (leave it out to use $POD_NAME)"));
        }
        let topics = [
            ("observations_topic", &self.observations_topic),
            ("findings_topic", &self.findings_topic),
            ("changelog_topic", &self.changelog_topic),
        ];
        for (i, (name, topic)) in topics.iter().enumerate() {
            if topic.is_empty() {
                problems.push(Problem::new(*name, "is empty"));
            } else if let Some((other, _)) = topics[..i].iter().find(|(_, t)| t == topic) {
                problems.push(Problem::new(*name, format!("{topic:?} is also {other}")));
            }
        }
        // The brokers' own bounds (group.min.session.timeout.ms, group.max.session.timeout.ms
        // by default): outside them joining fails with an error that names neither setting.
        if !(Duration::from_secs(6)..=Duration::from_secs(1800)).contains(&self.session_timeout) {
            problems.push(Problem::new("session_timeout", "must be between 6s and 30m (the brokers' default bounds)"));
        }
        problems.extend(commit_problems(self.commit_interval, self.transaction_timeout));
        if !(self.judging_share > 0.0 && self.judging_share <= 1.0) {
            problems.push(Problem::new("judging_share", "must be above 0 and at most 1 (1: judge at every commit)"));
        }
        problems.extend(self.engine.problems("engine"));
        problems.extend(self.security.problems("security"));
        problems
    }

    /// The correlator's settings; `instance_from_env` is `$POD_NAME`, used when `instance` is
    /// absent.
    pub fn into_config(self, instance_from_env: Option<String>) -> Result<CorrelatorConfig, ConfigError> {
        let instance = self.instance.or(instance_from_env).ok_or(ConfigError::NoInstance)?;
        let mut c = CorrelatorConfig::new(self.bootstrap_servers, self.group_id, instance);
        c.security = self.security;
        c.observations_topic = self.observations_topic;
        c.findings_topic = self.findings_topic;
        c.changelog_topic = self.changelog_topic;
        c.format = self.format.into();
        c.commit_interval = self.commit_interval;
        c.session_timeout = self.session_timeout;
        c.transaction_timeout = self.transaction_timeout;
        c.judging_share = self.judging_share;
        c.engine = self.engine.into_engine();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokentrail_correlator_core::time::{MINUTE, SECOND};
    fn check(text: &str) -> Result<FileConfig, Vec<String>> {
        tokentrail_config::check(text, FileConfig::problems).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_minimal_file_gets_the_flag_defaults() {
        let c = check(r#"{"bootstrap_servers": "k:9092", "engine": {"egress_ips": ["198.51.100.7"]}, "commit_interval": "250ms"}"#)
            .unwrap()
            .into_config(Some("correlator-0".into()))
            .unwrap();
        assert_eq!(c.instance, "correlator-0");
        assert_eq!(c.changelog_topic, "tokentrail.correlator-state");
        assert_eq!(c.commit_interval, Duration::from_millis(250));
        assert_eq!(c.engine.egress.len(), 1);
        assert_eq!(c.format, FindingFormat::Json);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let err = check(
            r#"{"bootstrap_servers": "", "format": "xml", "engine": {"cluster_networks": ["10.0.0.0/8", "ten"],
                "rotation_grace": "a while"}, "findings_topic": "tokentrail.observations", "colour": 1}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|e| e.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "engine.cluster_networks",
                "engine.rotation_grace",
                "format",
                "bootstrap_servers",
                "findings_topic"
            ],
            "{err:?}"
        );
        assert!(err[3].contains("unknown variant `xml`"), "{err:?}");
        assert!(err[5].ends_with("\"tokentrail.observations\" is also observations_topic"), "{err:?}");
    }

    #[test]
    fn graces_and_retention_reach_the_engine() {
        let c = check(
            r#"{"bootstrap_servers": "k:9092", "engine": {"attestation_grace": "15s", "credential_retention": "48h",
                "pod_retention": "10m", "rotation_grace": "1m"}}"#,
        )
        .unwrap()
        .into_config(Some("correlator-0".into()))
        .unwrap();
        assert_eq!(c.engine.attestation_grace, 15 * SECOND);
        assert_eq!(c.engine.rotation_grace, MINUTE);
        assert_eq!(c.engine.retention.credentials, 48 * 60 * MINUTE);
        assert_eq!(c.engine.retention.pods, 10 * MINUTE);
        assert_eq!(c.engine.retention.retired, Retention::default().retired);
        let defaults = FileConfig::new("k:9092").into_config(Some("c".into())).unwrap();
        assert_eq!(defaults.engine.attestation_grace, EngineConfig::default().attestation_grace);
        assert_eq!(defaults.engine.retention, Retention::default());
    }

    #[test]
    fn a_credential_retention_under_a_day_is_refused() {
        let err = check(r#"{"bootstrap_servers": "k:9092", "engine": {"credential_retention": "6h"}}"#).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].starts_with("engine.credential_retention: must be at least 24h"), "{err:?}");
    }

    #[test]
    fn the_security_section_is_read_checked_and_handed_to_the_clients() {
        let err = check(r#"{"bootstrap_servers": "k:9093", "security": {"protocol": "ssl", "tls": {"ca_file": "/nonexistent/ca.crt"}}}"#)
            .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].starts_with("security.tls.ca_file: cannot read /nonexistent/ca.crt"), "{err:?}");
        let c = check(r#"{"bootstrap_servers": "k:9093", "security": {"protocol": "ssl"}}"#)
            .unwrap()
            .into_config(Some("c-0".into()))
            .unwrap();
        assert_eq!(c.security.protocol, tokentrail_config::kafka::Protocol::Ssl);
    }

    #[test]
    fn group_and_transaction_timeouts_are_read_and_bounded() {
        let c = check(r#"{"bootstrap_servers": "k:9092", "session_timeout": "20s", "transaction_timeout": "5s"}"#)
            .unwrap()
            .into_config(Some("c-0".into()))
            .unwrap();
        assert_eq!((c.session_timeout, c.transaction_timeout), (Duration::from_secs(20), Duration::from_secs(5)));
        let err = check(
            r#"{"bootstrap_servers": "k:9092", "session_timeout": "2s", "commit_interval": "6s",
                      "transaction_timeout": "10s"}"#,
        )
        .unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].starts_with("session_timeout: must be between 6s and 30m"), "{err:?}");
        assert!(err[1].starts_with("transaction_timeout: must be at least 1s and twice commit_interval"), "{err:?}");
    }

    #[test]
    fn without_instance_or_pod_name_there_is_no_config() {
        assert!(FileConfig::new("k:9092").into_config(None).is_err());
    }
}
