//! `tokentrail aggregator`: its flags, laid over its configuration file ([`Config`]), around
//! [`tokentrail_aggregator::run`]. Exit 75 (`EX_TEMPFAIL`) when it stopped for a reason a restart
//! may clear ([`tokentrail_aggregator::AggregatorError::is_retryable`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokentrail_aggregator::config::{Config, HealthConfig};
use tokentrail_aggregator::telemetry::{self, Metrics};
use tokentrail_config::duration;

use crate::kafka_args::KafkaSecurityArgs;
use crate::startup::config_file::WithFile;
use crate::startup::{Component, KafkaBrokers, Probes, Threads};

const AGGREGATOR: Component =
    Component { name: "aggregator", service: "tokentrail-aggregator", threads: Threads::PerCore };

/// Run the aggregator: attestations over gRPC and raw audit events from Kafka, merged into the
/// observations topic.
pub type Args = WithFile<Settings>;

/// The flags that are settings of the configuration file, named as its keys.
#[derive(clap::Args, Debug, Serialize)]
pub struct Settings {
    /// Kafka `bootstrap.servers`.
    #[arg(
        long,
        env = "TOKENTRAIL_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT[,...]",
        required_unless_present_any = ["config", "check_config"]
    )]
    #[serde(rename = "kafka.bootstrap_servers")]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the Kafka clients (`kafka.security`).
    #[command(flatten)]
    #[serde(rename = "kafka")]
    kafka_security: KafkaSecurityArgs,
    /// A raw audit topic, as `TOPIC=CLUSTER`, or `TOPIC` for records with a `cluster` header.
    /// Repeatable; adds to the configuration file's.
    #[arg(long, value_name = "TOPIC[=CLUSTER]", value_parser = parse_audit_topic)]
    #[serde(rename = "kafka.audit_topics")]
    audit_topic: Vec<AuditTopic>,
    /// The observations topic.
    #[arg(long, value_name = "TOPIC")]
    #[serde(rename = "kafka.observations_topic")]
    observations_topic: Option<String>,
    /// The dead-letter topic.
    #[arg(long, value_name = "TOPIC")]
    #[serde(rename = "kafka.dead_letter_topic")]
    dead_letter_topic: Option<String>,
    /// Serve attestations on this address (e.g. `0.0.0.0:7443`); needs --cluster.
    #[arg(long, value_name = "ADDR", requires = "cluster")]
    #[serde(rename = "grpc.listen")]
    grpc_listen: Option<SocketAddr>,
    /// The cluster the agents run in.
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "grpc.cluster")]
    cluster: Option<String>,
    /// Server certificate chain (PEM) of the attestation server; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    #[serde(rename = "grpc.tls.cert")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    #[serde(rename = "grpc.tls.key")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) of the agents' client certificates: mTLS, node identity from the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    #[serde(rename = "grpc.tls.client_ca")]
    client_ca: Option<PathBuf>,
    /// How far ahead of this aggregator's clock an agent's times may be (e.g. `5m`); later
    /// ones are refused and counted. Overrides `grpc.max_clock_skew`.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(rename = "grpc.max_clock_skew", serialize_with = "duration::serialize_given")]
    max_clock_skew: Option<Duration>,
    /// Serve the probes `/healthz` and `/readyz`, and `/metrics` (Prometheus), over plain HTTP
    /// on this address (e.g. `0.0.0.0:8080`); `--metrics-listen` names the same listener.
    #[arg(long, value_name = "ADDR")]
    #[serde(rename = "health.listen")]
    health_listen: Option<SocketAddr>,
    /// Watch this cluster's Pods, Nodes, ServiceAccounts and token Secrets (the inventory feed,
    /// `inventory.cluster`); the kubeconfig is --inventory-kubeconfig, else the in-cluster
    /// account or $KUBECONFIG.
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "inventory.cluster")]
    inventory_cluster: Option<String>,
    /// The kubeconfig of the inventory feed (`inventory.kubeconfig`).
    #[arg(long, value_name = "FILE")]
    #[serde(rename = "inventory.kubeconfig")]
    inventory_kubeconfig: Option<PathBuf>,
}

/// `--audit-topic`, as the file writes it.
#[derive(Clone, Debug, Serialize)]
struct AuditTopic {
    topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
}

fn parse_audit_topic(s: &str) -> Result<AuditTopic, std::convert::Infallible> {
    Ok(match s.split_once('=') {
        Some((topic, cluster)) => AuditTopic { topic: topic.to_string(), cluster: Some(cluster.to_string()) },
        None => AuditTopic { topic: s.to_string(), cluster: None },
    })
}

/// Runs `tokentrail aggregator` until SIGTERM or ctrl-c.
pub fn main(args: Args) -> ExitCode {
    let mut config: Config = match AGGREGATOR.configure(&args, Config::problems) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    if let Err(e) = metrics_on_the_probe_listener(&mut config, args.process.metrics_listen) {
        return AGGREGATOR.bad_config(e);
    }
    let metrics = Arc::new(Metrics::default());
    let exported = Arc::clone(&metrics);
    let brokers =
        KafkaBrokers { bootstrap: config.kafka.bootstrap_servers.clone(), security: config.kafka.security.clone() };
    let exposes = config.health.is_some();
    AGGREGATOR.serve(
        &args.process,
        Some(brokers),
        move |meter| telemetry::register(&exported, meter),
        Probes::Own { exposes },
        |shutdown, scrape| tokentrail_aggregator::run(config, metrics, scrape, None, shutdown),
    )
}

/// `--metrics-listen` and `health.listen` (`--health-listen`) name different addresses.
#[derive(Debug, thiserror::Error)]
#[error(
    "--metrics-listen {metrics} and health.listen {health} are two addresses for one listener: the aggregator \
     serves /metrics beside its probes; give one of them, or the same address"
)]
struct TwoListeners {
    metrics: SocketAddr,
    health: SocketAddr,
}

/// `--metrics-listen` on the aggregator is its probe listener, which serves `/metrics` too:
/// it enables the listener when the configuration has none.
fn metrics_on_the_probe_listener(config: &mut Config, metrics: Option<SocketAddr>) -> Result<(), TwoListeners> {
    match (&config.health, metrics) {
        (Some(h), Some(metrics)) if h.listen != metrics => Err(TwoListeners { metrics, health: h.listen }),
        (None, Some(listen)) => {
            config.health = Some(HealthConfig { listen });
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::startup::config_file::load_for_test;

    fn load(file: &str, flags: &[&str]) -> Result<Config, String> {
        load_for_test::<Settings, _>(Some(file), flags, Config::problems)
    }

    #[test]
    fn flags_over_the_file_nested_keys_and_topics_added() {
        let file = r#"{"kafka": {"bootstrap_servers": "file:9092", "audit_topics": [{"topic": "a", "cluster": "prod"}]},
                       "grpc": {"cluster": "prod", "trust_agent_node_name": true}}"#;
        let c =
            load(file, &["--bootstrap-servers", "flag:9092", "--audit-topic", "b", "--max-clock-skew", "30s"]).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "flag:9092");
        let topics: Vec<_> = c.kafka.audit_topics.iter().map(|t| (t.topic.as_str(), t.cluster.as_deref())).collect();
        assert_eq!(topics, [("a", Some("prod")), ("b", None)]);
        let grpc = c.grpc.unwrap();
        assert_eq!((grpc.cluster.as_str(), grpc.max_clock_skew), ("prod", Duration::from_secs(30)));
        assert!(grpc.trust_agent_node_name);
    }

    #[test]
    fn kafka_security_flags_are_laid_over_the_file_s_section() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "pw").unwrap();
        let file = format!(
            r#"{{"kafka": {{"bootstrap_servers": "k:9093", "security": {{"protocol": "sasl_ssl",
                "sasl": {{"mechanism": "PLAIN", "username": "file-user", "password_file": "{}"}}}}}}}}"#,
            password.display()
        );
        let c =
            load(&file, &["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "flag-user"]).unwrap();
        let sasl = c.kafka.security.sasl.unwrap();
        assert_eq!(sasl.mechanism, tokentrail_config::kafka::Mechanism::ScramSha512);
        assert_eq!(
            (sasl.username.as_deref(), sasl.password_file.as_deref()),
            (Some("flag-user"), Some(password.as_path()))
        );
        let err = load(r#"{"kafka": {"bootstrap_servers": "k:9093"}}"#, &["--kafka-security-protocol", "sasl_ssl"])
            .unwrap_err();
        assert_eq!(err, "kafka.security.sasl: is required with protocol sasl_ssl");
    }

    #[test]
    fn metrics_listen_enables_the_probe_listener_and_refuses_a_second_address() {
        let file = r#"{"kafka": {"bootstrap_servers": "k:9092"}}"#;
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut c = load(file, &[]).unwrap();
        metrics_on_the_probe_listener(&mut c, Some(addr("127.0.0.1:9090"))).unwrap();
        assert_eq!(c.health.map(|h| h.listen), Some(addr("127.0.0.1:9090")));

        let mut c = load(file, &["--health-listen", "0.0.0.0:8080"]).unwrap();
        metrics_on_the_probe_listener(&mut c, Some(addr("0.0.0.0:8080"))).unwrap();
        metrics_on_the_probe_listener(&mut c, None).unwrap();
        assert_eq!(c.health.as_ref().map(|h| h.listen), Some(addr("0.0.0.0:8080")));
        let err = metrics_on_the_probe_listener(&mut c, Some(addr("0.0.0.0:9090"))).unwrap_err().to_string();
        assert!(
            err.starts_with("--metrics-listen 0.0.0.0:9090 and health.listen 0.0.0.0:8080 are two addresses"),
            "{err}"
        );

        let mut c = load(file, &[]).unwrap();
        metrics_on_the_probe_listener(&mut c, None).unwrap();
        assert!(c.health.is_none());
    }

    #[test]
    fn inventory_flags_start_the_feed_over_the_file_s_section() {
        use tokentrail_aggregator::config::Kind;
        let c = load(r#"{"kafka": {"bootstrap_servers": "k:9092"}}"#, &["--inventory-cluster", "prod"]).unwrap();
        let i = c.inventory.unwrap();
        assert_eq!((i.cluster.as_str(), i.kinds.len(), i.lease.is_none()), ("prod", 4, true));
        let file = r#"{"kafka": {"bootstrap_servers": "k:9092"},
                       "inventory": {"cluster": "file", "kinds": ["pods", "serviceaccounts"],
                                     "lease": {"namespace": "tokentrail", "duration": "30s"}}}"#;
        let c = load(file, &["--inventory-kubeconfig", "/k"]).unwrap();
        let i = c.inventory.unwrap();
        assert_eq!(i.kinds, [Kind::Pods, Kind::Serviceaccounts]);
        assert_eq!(i.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
        let lease = i.lease.unwrap();
        assert_eq!((lease.name.as_str(), lease.duration), ("tokentrail-inventory", Duration::from_secs(30)));
        let err = load(
            r#"{"kafka": {"bootstrap_servers": "k:9092"}, "inventory": {"cluster": "a", "kinds": [],
                          "lease": {"namespace": "", "duration": "1s"}}}"#,
            &[],
        )
        .unwrap_err();
        for key in ["inventory.kinds", "inventory.lease.namespace", "inventory.lease.duration"] {
            assert!(err.contains(key), "{key} in {err}");
        }
        let err = load(
            r#"{"kafka": {"bootstrap_servers": "k:9092"}, "inventory": {"cluster": "a", "kinds": ["configmaps"]}}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.contains("inventory.kinds"), "{err}");
    }

    #[test]
    fn a_flag_that_makes_the_settings_wrong_is_reported_with_its_key() {
        let err = load(
            r#"{"kafka": {"bootstrap_servers": "k:9092", "audit_topics": [{"topic": "a"}]}}"#,
            &["--observations-topic", "a"],
        )
        .unwrap_err();
        assert_eq!(err, "kafka.observations_topic: \"a\" is also an audit topic");
    }
}
