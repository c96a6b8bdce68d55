//! Settings of `tokentrail incidents`: [`IncidentsConfig`], what the loop runs with, and
//! [`FileConfig`], the configuration file it is read from (flags on top: `tokentrail incidents`).

use std::time::Duration;

use serde::Deserialize;
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_config::{duration, Problem};
use tokentrail_correlator_core::incident::SPAN;
use tokentrail_correlator_core::incident_feed::Limits;

use crate::stream::config::{
    commit_problems, default_findings_topic, default_transaction_timeout, micros, micros_to_duration,
};

/// Settings of the incidents process.
#[derive(Clone, Debug)]
pub struct IncidentsConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap: String,
    /// TLS and SASL of every client.
    pub security: KafkaSecurity,
    /// The consumer group its offsets are committed under (it reads every partition itself:
    /// no group membership).
    pub group: String,
    /// Its transactional id: stable, so a restarted process fences the one it replaces.
    pub instance: String,
    /// Where findings are read (`tokentrail.finding/v1` JSON, key = finding id).
    pub findings_topic: String,
    /// Where incidents go (key = incident id).
    pub incidents_topic: String,
    /// How often incidents and offsets are committed together.
    pub commit_interval: Duration,
    /// How long a transaction may stay open before the broker aborts it.
    pub transaction_timeout: Duration,
    /// What the feed holds.
    pub limits: Limits,
}

impl IncidentsConfig {
    /// Settings with the defaults of the configuration file.
    pub fn new(bootstrap: impl Into<String>) -> IncidentsConfig {
        FileConfig::new(bootstrap).into_config()
    }
}

/// The configuration file: the settings of its flags as JSON (a ConfigMap holds it as
/// written); flags override it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// TLS and SASL of every Kafka client; absent: plaintext.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// The consumer group its offsets are committed under.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Its transactional id. One process runs (it needs every finding), so the name is fixed
    /// rather than the pod's: a Deployment's replacement pod has another name, and only the same
    /// transactional id fences the process it replaces.
    #[serde(default = "default_group")]
    pub instance: String,
    /// Input topic of findings.
    #[serde(default = "default_findings_topic")]
    pub findings_topic: String,
    /// Output topic of incidents.
    #[serde(default = "default_incidents_topic")]
    pub incidents_topic: String,
    /// How often incidents and offsets are committed together.
    #[serde(default = "default_commit_interval", deserialize_with = "duration::deserialize")]
    pub commit_interval: Duration,
    /// How long a transaction may stay open before the broker aborts it (the broker's default,
    /// as the correlator's).
    #[serde(default = "default_transaction_timeout", deserialize_with = "duration::deserialize")]
    pub transaction_timeout: Duration,
    /// An incident is forgotten once the latest finding is this far past its end (event time).
    #[serde(default = "default_horizon", deserialize_with = "duration::deserialize")]
    pub horizon: Duration,
    /// The most findings held; past it the incidents that ended earliest are forgotten.
    #[serde(default = "default_max_findings")]
    pub max_findings: usize,
}

fn default_group() -> String {
    String::from("tokentrail-incidents")
}
fn default_incidents_topic() -> String {
    String::from("tokentrail.incidents")
}
/// Incidents follow findings, which the correlators commit every 250 ms: a second more is
/// nothing to a responder, and every commit regroups what the feed holds.
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_horizon() -> Duration {
    micros_to_duration(Limits::default().horizon)
}
fn default_max_findings() -> usize {
    Limits::default().max_findings
}

impl FileConfig {
    /// Defaults for everything but the brokers.
    pub fn new(bootstrap_servers: impl Into<String>) -> FileConfig {
        FileConfig {
            bootstrap_servers: bootstrap_servers.into(),
            security: KafkaSecurity::default(),
            group_id: default_group(),
            instance: default_group(),
            findings_topic: default_findings_topic(),
            incidents_topic: default_incidents_topic(),
            commit_interval: default_commit_interval(),
            transaction_timeout: default_transaction_timeout(),
            horizon: default_horizon(),
            max_findings: default_max_findings(),
        }
    }

    /// Every problem serde cannot see, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            problems.push(Problem::new("bootstrap_servers", "is empty"));
        }
        for (key, value) in [("group_id", &self.group_id), ("instance", &self.instance)] {
            if value.is_empty() {
                problems.push(Problem::new(key, "is empty"));
            }
        }
        if self.findings_topic.is_empty() {
            problems.push(Problem::new("findings_topic", "is empty"));
        }
        if self.incidents_topic.is_empty() {
            problems.push(Problem::new("incidents_topic", "is empty"));
        } else if self.incidents_topic == self.findings_topic {
            problems.push(Problem::new("incidents_topic", format!("{:?} is also findings_topic", self.findings_topic)));
        }
        problems.extend(commit_problems(self.commit_interval, self.transaction_timeout));
        if micros(self.horizon) < SPAN {
            problems.push(Problem::new(
                "horizon",
                "must be at least 24h: findings a day apart still join, and an incident forgotten sooner would \
                 come back split",
            ));
        }
        if self.max_findings == 0 {
            problems.push(Problem::new("max_findings", "must be at least 1"));
        }
        problems.extend(self.security.problems("security"));
        problems
    }

    /// The process's settings.
    pub fn into_config(self) -> IncidentsConfig {
        IncidentsConfig {
            bootstrap: self.bootstrap_servers,
            security: self.security,
            group: self.group_id,
            instance: self.instance,
            findings_topic: self.findings_topic,
            incidents_topic: self.incidents_topic,
            commit_interval: self.commit_interval,
            transaction_timeout: self.transaction_timeout,
            limits: Limits { horizon: micros(self.horizon), max_findings: self.max_findings },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<FileConfig, Vec<String>> {
        tokentrail_config::check(text, FileConfig::problems).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = check(r#"{"bootstrap_servers": "k:9092"}"#).unwrap().into_config();
        assert_eq!((c.group.as_str(), c.instance.as_str()), ("tokentrail-incidents", "tokentrail-incidents"));
        assert_eq!(
            (c.findings_topic.as_str(), c.incidents_topic.as_str()),
            ("tokentrail.findings", "tokentrail.incidents")
        );
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.commit_interval, Duration::from_secs(1));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let err = check(
            r#"{"bootstrap_servers": "", "incidents_topic": "tokentrail.findings", "horizon": "6h",
                "max_findings": 0, "commit_interval": "1s", "transaction_timeout": "1s", "colour": 1}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|e| e.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            ["colour", "bootstrap_servers", "incidents_topic", "transaction_timeout", "horizon", "max_findings"],
            "{err:?}"
        );
    }

    #[test]
    fn limits_are_read() {
        let c = check(r#"{"bootstrap_servers": "k:9092", "horizon": "72h", "max_findings": 5}"#).unwrap().into_config();
        assert_eq!(c.limits, Limits { horizon: 3 * SPAN, max_findings: 5 });
    }
}
