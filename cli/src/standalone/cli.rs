//! `tokentrail standalone`'s flags and the [`StandaloneConfig`] they make. Logging, the runtime,
//! signals, metrics export and exit codes are the `tokentrail` binary's start-up
//! (`cli/src/startup`), as for every component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokentrail_aggregator::config::{GrpcConfig, TlsConfig, WebhookConfig};
use tokentrail_config::duration;
use tokentrail_correlator_core::EngineConfig;

use super::output::Destination;
use super::{StandaloneConfig, StandaloneError};
use crate::engine_args::{EngineArgs, StreamEngineArgs};
use crate::kafka_args::KafkaSecurityArgs;
use tokentrail_correlator::stream::FindingFormat;

/// Flags of `tokentrail standalone`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster's name, put on every finding.
    #[arg(long, value_name = "NAME")]
    cluster: String,
    /// Serve the apiserver's audit webhook (POST of an `EventList`) on this address, e.g.
    /// `0.0.0.0:8443`.
    #[arg(long, value_name = "ADDR")]
    webhook_listen: Option<SocketAddr>,
    /// Serve node agents' attestations (gRPC) on this address, e.g. `0.0.0.0:7443`.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM) of both endpoints.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) of the apiserver's client certificate: the webhook requires one it signed.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    webhook_client_ca: Option<PathBuf>,
    /// CA (PEM) of the agents' client certificates: mTLS, node identity from the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    agent_client_ca: Option<PathBuf>,
    /// A client certificate name (subject CN or DNS name) allowed to post to the webhook, e.g.
    /// the apiserver's audit client certificate's CN; others are refused with 403. Repeatable;
    /// required when --webhook-client-ca is also --agent-client-ca.
    #[arg(long, value_name = "NAME", requires = "webhook_client_ca")]
    webhook_allowed_client: Vec<String>,
    /// The DNS name an agent's client certificate must carry, `{node}` standing for its node.
    #[arg(long, default_value = "{node}.nodes.tokentrail", value_name = "PATTERN")]
    agent_node_dns_name: String,
    /// Serve the webhook over plain HTTP without client authentication (trials only).
    #[arg(long)]
    webhook_insecure_plaintext: bool,
    /// Believe the node an agent names without a certificate proving it (trials only).
    #[arg(long)]
    trust_agent_node_name: bool,
    /// How far ahead of this host's clock an agent's times may be; later ones are refused and
    /// counted (a node's clock must not move event time).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = duration::parse)]
    max_clock_skew: Duration,
    /// Where findings go: `-` (stdout), a file (appended to), or `kafka:TOPIC` (needs
    /// --bootstrap-servers).
    #[arg(long, default_value = "-", value_name = "-|FILE|kafka:TOPIC")]
    findings: Destination,
    /// Kafka `bootstrap.servers`, for `--findings kafka:TOPIC`.
    // `alias`: the name of 0.1's flag, kept working.
    #[arg(long, alias = "bootstrap", env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the findings producer.
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf`.
    #[arg(long, default_value = "json", value_parser = ["json", "ocsf"])]
    format: String,
    /// How often the findings now due are written.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = duration::parse)]
    emit_interval: Duration,
    /// Observations queued between the servers and the engine before the servers wait.
    #[arg(long, default_value_t = 10_000)]
    queue_capacity: usize,
    /// The engine's settings.
    #[command(flatten)]
    engine: EngineArgs,
    /// The streaming engine's deadlines and retention.
    #[command(flatten)]
    stream: StreamEngineArgs,
}

impl Args {
    fn engine(&self) -> EngineConfig {
        let mut engine = EngineConfig::default();
        self.engine.apply(&mut engine);
        self.stream.apply(&mut engine);
        engine
    }

    /// The settings the flags make; [`StandaloneConfig::validate`] says what is wrong with them
    /// (`Err`: the Kafka security flags do not make a section).
    pub fn config(&self) -> Result<StandaloneConfig, StandaloneError> {
        let tls = |client_ca: &Option<PathBuf>| match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsConfig { client_ca: client_ca.clone(), ..TlsConfig::new(cert.clone(), key.clone()) })
            }
            _ => None,
        };
        let grpc = self.grpc_listen.map(|listen| GrpcConfig {
            tls: tls(&self.agent_client_ca).map(|t| TlsConfig { node_dns_name: self.agent_node_dns_name.clone(), ..t }),
            trust_agent_node_name: self.trust_agent_node_name,
            max_clock_skew: self.max_clock_skew,
            ..GrpcConfig::new(listen, self.cluster.clone())
        });
        let webhook = self.webhook_listen.map(|listen| WebhookConfig {
            tls: if self.webhook_insecure_plaintext { None } else { tls(&self.webhook_client_ca) },
            insecure_plaintext: self.webhook_insecure_plaintext,
            allowed_client_names: self.webhook_allowed_client.clone(),
            ..WebhookConfig::new(listen, self.cluster.clone())
        });
        let destination = match &self.findings {
            Destination::Kafka { topic, .. } => Destination::Kafka {
                bootstrap: self.bootstrap_servers.clone().unwrap_or_default(),
                security: Box::new(self.kafka_security.security().map_err(StandaloneError::Config)?),
                topic: topic.clone(),
            },
            other => other.clone(),
        };
        Ok(StandaloneConfig {
            grpc,
            webhook,
            engine: self.engine(),
            destination,
            format: if self.format == "ocsf" { FindingFormat::Ocsf } else { FindingFormat::Json },
            queue_capacity: self.queue_capacity,
            emit_interval: self.emit_interval,
            directory_capacity: 1_000_000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokentrail_correlator_core::expiry::Retention;
    use tokentrail_correlator_core::time::MINUTE;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn config(extra: &[&str]) -> StandaloneConfig {
        let base = ["standalone", "--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--webhook-insecure-plaintext"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args.config().unwrap()
    }

    #[test]
    fn graces_and_retention_reach_the_engine() {
        let c = config(&["--attestation-grace", "15s", "--credential-retention", "48h", "--pod-retention", "10m"]);
        c.validate().unwrap();
        assert_eq!(c.engine.attestation_grace, 15 * tokentrail_correlator_core::time::SECOND);
        assert_eq!(c.engine.retention.credentials, 48 * 60 * MINUTE);
        assert_eq!(c.engine.retention.pods, 10 * MINUTE);
        assert_eq!(config(&[]).engine.retention, Retention::default());
    }

    #[test]
    fn a_credential_retention_under_a_day_is_refused() {
        let err = config(&["--credential-retention", "6h"]).validate().unwrap_err().to_string();
        assert!(err.contains("credential_retention: must be at least 24h"), "{err}");
    }

    #[test]
    fn one_ca_for_agents_and_the_webhook_needs_an_allowed_client_name() {
        let cli = |extra: &[&str]| {
            let base =
                ["standalone", "--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"];
            let tls =
                ["--tls-cert", "s.pem", "--tls-key", "s.key", "--webhook-client-ca", "ca.pem", "--agent-client-ca"];
            Cli::try_parse_from(base.iter().chain(&tls).chain(extra)).unwrap().args.config().unwrap()
        };
        let err = cli(&["ca.pem"]).validate().unwrap_err().to_string();
        assert!(err.contains("webhook.allowed_client_names: is required when webhook.tls.client_ca"), "{err}");
        cli(&["agents-ca.pem"]).validate().unwrap();
        let allowed = cli(&["ca.pem", "--webhook-allowed-client", "kube-apiserver"]);
        allowed.validate().unwrap();
        assert_eq!(allowed.webhook.unwrap().allowed_client_names, ["kube-apiserver"]);
    }
}
