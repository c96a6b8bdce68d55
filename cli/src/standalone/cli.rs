//! `tokentrail standalone`: flags, logging and signal handling around [`super::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokentrail_aggregator::config::{GrpcConfig, TlsConfig, WebhookConfig};
use tokentrail_correlator::stream::cli::{parse_net, stop_signal};
use tokentrail_correlator::stream::config::{micros, parse_interval};
use tokentrail_correlator::stream::FindingFormat;
use tokentrail_correlator_core::expiry::Retention;
use tokentrail_correlator_core::{EngineConfig, IpNet};

use super::output::Destination;
use super::{StandaloneConfig, StandaloneMetrics};

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
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    max_clock_skew: Duration,
    /// Where findings go: `-` (stdout), a file (appended to), or `kafka:TOPIC` (needs
    /// --bootstrap).
    #[arg(long, default_value = "-", value_name = "-|FILE|kafka:TOPIC")]
    findings: Destination,
    /// Kafka bootstrap servers, for `--findings kafka:TOPIC`.
    #[arg(long, env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap: Option<String>,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf`.
    #[arg(long, default_value = "json", value_parser = ["json", "ocsf"])]
    format: String,
    /// How often the findings now due are written.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    emit_interval: Duration,
    /// Observations queued between the servers and the engine before the servers wait.
    #[arg(long, default_value_t = 10_000)]
    queue_capacity: usize,
    /// A network of the cluster beyond node pod CIDRs. Repeatable.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    cluster_network: Vec<IpNet>,
    /// A trusted proxy in front of the apiservers. Repeatable.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    trusted_proxy: Vec<IpNet>,
    /// A NAT address pod traffic to the apiserver may come from. Repeatable.
    #[arg(long, value_name = "IP|CIDR", value_parser = parse_net)]
    egress_ip: Vec<IpNet>,
    /// How long a pod's old token may be used after its newer one.
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    rotation_grace: Duration,
    /// How long a node's agent has to attest a pod-bound credential after its first use (by the
    /// node's watermark) before it counts as minted behind the kubelet's back.
    #[arg(long, default_value = "2m", value_parser = parse_interval)]
    attestation_grace: Duration,
    /// How long a credential neither used nor attested is kept, by event time; at least 24h.
    #[arg(long, default_value = "25h", value_parser = parse_interval)]
    credential_retention: Duration,
    /// How long a deleted pod is kept, by event time.
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    pod_retention: Duration,
}

impl Args {
    fn engine(&self) -> EngineConfig {
        EngineConfig {
            cluster_networks: self.cluster_network.clone(),
            trusted_proxies: self.trusted_proxy.clone(),
            egress: self.egress_ip.clone(),
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

    fn config(&self) -> StandaloneConfig {
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
            Destination::Kafka { topic, .. } => {
                Destination::Kafka { bootstrap: self.bootstrap.clone().unwrap_or_default(), topic: topic.clone() }
            }
            other => other.clone(),
        };
        StandaloneConfig {
            grpc,
            webhook,
            engine: self.engine(),
            destination,
            format: if self.format == "ocsf" { FindingFormat::Ocsf } else { FindingFormat::Json },
            queue_capacity: self.queue_capacity,
            emit_interval: self.emit_interval,
            directory_capacity: 1_000_000,
        }
    }
}

/// Runs until SIGTERM or ctrl-c, then writes the last findings and exits 0; 2 for a bad
/// configuration, 1 when it cannot run.
pub fn main(args: &Args) -> ExitCode {
    let _ = tracing_subscriber::fmt().with_ansi(false).with_writer(std::io::stderr).try_init();
    let config = args.config();
    if let Err(e) = config.validate() {
        eprintln!("tokentrail standalone: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokentrail standalone: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = StandaloneMetrics::default();
    match runtime.block_on(super::run(config, &metrics, None, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "standalone stopped");
            eprintln!("tokentrail standalone: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokentrail_correlator_core::time::MINUTE;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn config(extra: &[&str]) -> StandaloneConfig {
        let base = ["standalone", "--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--webhook-insecure-plaintext"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args.config()
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
            Cli::try_parse_from(base.iter().chain(&tls).chain(extra)).unwrap().args.config()
        };
        let err = cli(&["ca.pem"]).validate().unwrap_err().to_string();
        assert!(err.contains("webhook.allowed_client_names: is required when webhook.tls.client_ca"), "{err}");
        cli(&["agents-ca.pem"]).validate().unwrap();
        let allowed = cli(&["ca.pem", "--webhook-allowed-client", "kube-apiserver"]);
        allowed.validate().unwrap();
        assert_eq!(allowed.webhook.unwrap().allowed_client_names, ["kube-apiserver"]);
    }
}
