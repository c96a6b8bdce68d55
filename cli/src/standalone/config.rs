//! `tokentrail standalone`'s configuration file ([`FileConfig`]): the aggregator's `grpc` and
//! `webhook` sections as the aggregator's file writes them, where findings go, and the
//! correlator's `engine` section. A deployment moving from standalone to the Kafka pipeline
//! copies its sections unchanged. Flags are laid over it (`cli.rs`).

use std::time::Duration;

use serde::Deserialize;
use tokentrail_aggregator::config::{GrpcConfig, WebhookConfig};
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_config::{duration, Problem};
use tokentrail_correlator::stream::config::{EngineSection, FileFormat};

use super::output::Destination;
use super::StandaloneConfig;

/// The configuration file of `tokentrail standalone` (JSON; YAML-compatible).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The attestation server for node agents (the aggregator's section); absent: none.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// The apiserver's audit webhook endpoint (the aggregator's section); absent: none.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Where findings go: `-` (stdout), a file (appended to) or `kafka:TOPIC`.
    #[serde(default = "stdout", deserialize_with = "destination")]
    pub findings: Destination,
    /// The brokers of `kafka:TOPIC` findings and their TLS and SASL.
    #[serde(default)]
    pub kafka: Option<FindingsKafka>,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf`.
    #[serde(default)]
    pub format: FileFormat,
    /// How often the findings now due are written.
    #[serde(default = "one_second", deserialize_with = "duration::deserialize")]
    pub emit_interval: Duration,
    /// Observations queued between the servers and the engine before the servers wait.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// The engine's settings, as in the correlator's file.
    #[serde(default)]
    pub engine: EngineSection,
}

/// The Kafka brokers findings are produced to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingsKafka {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// TLS and SASL of the producer; absent: plaintext.
    #[serde(default)]
    pub security: KafkaSecurity,
}

fn stdout() -> Destination {
    Destination::Stdout
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn default_queue_capacity() -> usize {
    10_000
}

fn destination<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Destination, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

impl FileConfig {
    /// Every problem serde cannot see, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.grpc.is_none() && self.webhook.is_none() {
            problems.push(Problem::new("", "nothing to listen on: configure the webhook, the gRPC server, or both"));
        }
        if let Some(g) = &self.grpc {
            g.check(&mut problems);
        }
        if let Some(w) = &self.webhook {
            w.check(&mut problems);
            w.check_against(self.grpc.as_ref(), &mut problems);
        }
        match (&self.findings, &self.kafka) {
            (Destination::Kafka { .. }, None) => {
                problems.push(Problem::new("kafka", "is required for findings to kafka:TOPIC"));
            }
            (Destination::Kafka { .. }, Some(kafka)) => {
                if kafka.bootstrap_servers.trim().is_empty() {
                    problems.push(Problem::new("kafka.bootstrap_servers", "is empty"));
                }
                problems.extend(kafka.security.problems("kafka.security"));
            }
            // Brokers with nowhere to send to are a mistake worth naming: findings would not
            // go where the reader of this file expects.
            (_, Some(_)) => problems.push(Problem::new("kafka", "is set, but findings do not go to kafka:TOPIC")),
            (_, None) => {}
        }
        if self.queue_capacity == 0 {
            problems.push(Problem::new("queue_capacity", "must be at least 1"));
        }
        if self.emit_interval < Duration::from_millis(10) {
            problems.push(Problem::new("emit_interval", "must be at least 10ms"));
        }
        problems.extend(self.engine.problems("engine"));
        problems
    }

    /// The settings standalone runs with.
    pub fn into_config(self) -> StandaloneConfig {
        let destination = match (self.findings, self.kafka) {
            (Destination::Kafka { topic, .. }, Some(kafka)) => {
                Destination::Kafka { bootstrap: kafka.bootstrap_servers, security: Box::new(kafka.security), topic }
            }
            (other, _) => other,
        };
        StandaloneConfig {
            grpc: self.grpc,
            webhook: self.webhook,
            engine: self.engine.into_engine(),
            destination,
            format: self.format.into(),
            queue_capacity: self.queue_capacity,
            emit_interval: self.emit_interval,
            directory_capacity: 1_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokentrail_correlator_core::time::MINUTE;

    fn check(text: &str) -> Result<FileConfig, Vec<String>> {
        tokentrail_config::check(text, FileConfig::problems).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_aggregator_s_sections_and_the_correlator_s_engine_section_are_read_as_theirs() {
        let c = check(
            r#"{"webhook": {"listen": "127.0.0.1:8443", "cluster": "prod", "insecure_plaintext": true,
                            "max_body_bytes": 1048576},
                "grpc": {"listen": "127.0.0.1:7443", "cluster": "prod", "trust_agent_node_name": true},
                "findings": "kafka:tokentrail.findings",
                "kafka": {"bootstrap_servers": "k:9093", "security": {"protocol": "ssl"}},
                "format": "ocsf", "emit_interval": "250ms",
                "engine": {"egress_ips": ["198.51.100.7"], "pod_retention": "10m"}}"#,
        )
        .unwrap()
        .into_config();
        assert_eq!(c.webhook.unwrap().max_body_bytes, 1 << 20);
        assert!(c.grpc.unwrap().trust_agent_node_name);
        let Destination::Kafka { bootstrap, security, topic } = c.destination else { panic!("not kafka") };
        assert_eq!((bootstrap.as_str(), topic.as_str()), ("k:9093", "tokentrail.findings"));
        assert_eq!(security.protocol, tokentrail_config::kafka::Protocol::Ssl);
        assert_eq!(c.format, tokentrail_correlator::stream::FindingFormat::Ocsf);
        assert_eq!(c.emit_interval, Duration::from_millis(250));
        assert_eq!(c.engine.egress.len(), 1);
        assert_eq!(c.engine.retention.pods, 10 * MINUTE);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let err = check(
            r#"{"findings": "kafka:", "queue_capacity": 0, "engine": {"credential_retention": "1h", "colour": 1}}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|e| e.split(": ").next().unwrap_or("")).collect();
        assert_eq!(
            paths,
            ["engine.colour", "findings", "nothing to listen on", "queue_capacity", "engine.credential_retention"],
            "{err:?}"
        );
        let err =
            check(r#"{"webhook": {"cluster": "c", "insecure_plaintext": true}, "findings": "kafka:t"}"#).unwrap_err();
        assert_eq!(err, ["kafka: is required for findings to kafka:TOPIC"]);
        let err = check(
            r#"{"webhook": {"cluster": "c", "insecure_plaintext": true}, "kafka": {"bootstrap_servers": "k:1"}}"#,
        )
        .unwrap_err();
        assert_eq!(err, ["kafka: is set, but findings do not go to kafka:TOPIC"]);
        let err = check(r#"{"grpc": {"cluster": "c"}, "engine": {"credential_retention": "6h"}}"#).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[1].starts_with("engine.credential_retention: must be at least 24h"), "{err:?}");
    }
}
