//! `tokentrail standalone`'s flags ([`Settings`]), laid over its configuration file
//! ([`super::config::FileConfig`]) as every component's are (`cli/src/startup/config_file.rs`).
//! Logging, the runtime, signals, metrics export and exit codes are the `tokentrail` binary's
//! start-up (`cli/src/startup`), as for every component.
//!
//! Most flags set one key. Three set a key of each server the settings have (the file's
//! sections, or the one a `--*-listen` flag starts): `--cluster`, `--tls-cert` and `--tls-key`,
//! since standalone serves one cluster with one server certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokentrail_config::duration;

use crate::engine_args::{EngineArgs, StreamEngineArgs};
use crate::kafka_args::KafkaSecurityArgs;
use crate::startup::config_file::Flags;

/// Flags of `tokentrail standalone`; each one given overrides the configuration file.
#[derive(clap::Args, Debug)]
pub struct Settings {
    /// The cluster's name, put on every finding (`grpc.cluster` and `webhook.cluster`).
    #[arg(long, value_name = "NAME", required_unless_present_any = ["config", "check_config"])]
    cluster: Option<String>,
    /// Serve the apiserver's audit webhook (POST of an `EventList`) on this address, e.g.
    /// `0.0.0.0:8443` (`webhook.listen`).
    #[arg(long, value_name = "ADDR")]
    webhook_listen: Option<SocketAddr>,
    /// Serve node agents' attestations (gRPC) on this address, e.g. `0.0.0.0:7443`
    /// (`grpc.listen`).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM) of both endpoints.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) of the apiserver's client certificate: the webhook requires one it signed
    /// (`webhook.tls.client_ca`).
    #[arg(long, value_name = "FILE")]
    webhook_client_ca: Option<PathBuf>,
    /// CA (PEM) of the agents' client certificates: mTLS, node identity from the certificate
    /// (`grpc.tls.client_ca`).
    #[arg(long, value_name = "FILE")]
    agent_client_ca: Option<PathBuf>,
    /// A client certificate name (subject CN or DNS name) allowed to post to the webhook, e.g.
    /// the apiserver's audit client certificate's CN; others are refused with 403. Repeatable;
    /// required when --webhook-client-ca is also --agent-client-ca.
    #[arg(long, value_name = "NAME")]
    webhook_allowed_client: Vec<String>,
    /// The DNS name an agent's client certificate must carry, `{node}` standing for its node
    /// [default: {node}.nodes.tokentrail].
    #[arg(long, value_name = "PATTERN")]
    agent_node_dns_name: Option<String>,
    /// Serve the webhook over plain HTTP without client authentication (trials only).
    #[arg(long)]
    webhook_insecure_plaintext: bool,
    /// Believe the node an agent names without a certificate proving it (trials only).
    #[arg(long)]
    trust_agent_node_name: bool,
    /// How far ahead of this host's clock an agent's times may be; later ones are refused and
    /// counted (a node's clock must not move event time) [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    max_clock_skew: Option<Duration>,
    /// Where findings go: `-` (stdout), a file (appended to), or `kafka:TOPIC` (needs
    /// --bootstrap-servers) [default: -].
    #[arg(long, value_name = "-|FILE|kafka:TOPIC")]
    findings: Option<String>,
    /// Kafka `bootstrap.servers`, for `--findings kafka:TOPIC` (`kafka.bootstrap_servers`).
    // `alias`: the name of 0.1's flag, kept working.
    #[arg(long, alias = "bootstrap", env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the findings producer (`kafka.security`).
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf` [default: json].
    #[arg(long, value_parser = ["json", "ocsf"])]
    format: Option<String>,
    /// How often the findings now due are written [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    emit_interval: Option<Duration>,
    /// Observations queued between the servers and the engine before the servers wait
    /// [default: 10000].
    #[arg(long)]
    queue_capacity: Option<usize>,
    /// The engine's settings.
    #[command(flatten)]
    engine: EngineArgs,
    /// The streaming engine's deadlines and retention.
    #[command(flatten)]
    stream: StreamEngineArgs,
}

/// The keys flags set, each a dotted path (`grpc.tls.cert`) or a section of them.
#[derive(Default)]
struct Keys(Map<String, Value>);

impl Keys {
    /// Sets `key` when the flag was given (null and empty lists are "not given" to `layer`).
    fn set(&mut self, key: &str, value: impl Serialize) -> Result<(), serde_json::Error> {
        self.0.insert(key.to_string(), serde_json::to_value(value)?);
        Ok(())
    }
}

impl Flags for Settings {
    fn keys(&self, file: &Value) -> Result<Value, serde_json::Error> {
        let in_file = |section: &str| file.get(section).is_some_and(|v| !v.is_null());
        let grpc = self.grpc_listen.is_some() || in_file("grpc");
        let webhook = self.webhook_listen.is_some() || in_file("webhook");
        let given = |on: bool| on.then_some(true);
        let mut k = Keys::default();
        k.set("grpc.listen", self.grpc_listen)?;
        k.set("webhook.listen", self.webhook_listen)?;
        for (server, serves, tls) in [("grpc", grpc, true), ("webhook", webhook, !self.webhook_insecure_plaintext)] {
            if serves {
                k.set(&format!("{server}.cluster"), &self.cluster)?;
            }
            if serves && tls {
                k.set(&format!("{server}.tls.cert"), &self.tls_cert)?;
                k.set(&format!("{server}.tls.key"), &self.tls_key)?;
            }
        }
        k.set("webhook.tls.client_ca", &self.webhook_client_ca)?;
        k.set("webhook.allowed_client_names", &self.webhook_allowed_client)?;
        k.set("webhook.insecure_plaintext", given(self.webhook_insecure_plaintext))?;
        k.set("grpc.tls.client_ca", &self.agent_client_ca)?;
        k.set("grpc.tls.node_dns_name", &self.agent_node_dns_name)?;
        k.set("grpc.trust_agent_node_name", given(self.trust_agent_node_name))?;
        k.set("grpc.max_clock_skew", self.max_clock_skew.map(duration::format))?;
        k.set("findings", &self.findings)?;
        k.set("kafka.bootstrap_servers", &self.bootstrap_servers)?;
        k.set("kafka", &self.kafka_security)?;
        k.set("format", &self.format)?;
        k.set("emit_interval", self.emit_interval.map(duration::format))?;
        k.set("queue_capacity", self.queue_capacity)?;
        let mut keys = Value::Object(k.0);
        for engine in [serde_json::to_value(&self.engine)?, serde_json::to_value(&self.stream)?] {
            crate::startup::config_file::layer(&mut keys, engine);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::config::FileConfig;
    use crate::standalone::output::Destination;
    use crate::standalone::StandaloneConfig;
    use crate::startup::config_file::load_for_test;
    use tokentrail_correlator_core::expiry::Retention;
    use tokentrail_correlator_core::time::{MINUTE, SECOND};

    fn load(file: Option<&str>, flags: &[&str]) -> Result<StandaloneConfig, String> {
        load_for_test::<Settings, FileConfig>(file, flags, FileConfig::problems).map(FileConfig::into_config)
    }

    fn flags(extra: &[&str]) -> Result<StandaloneConfig, String> {
        let base = ["--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--webhook-insecure-plaintext"];
        load(None, &[&base[..], extra].concat())
    }

    #[test]
    fn graces_and_retention_reach_the_engine() {
        let c =
            flags(&["--attestation-grace", "15s", "--credential-retention", "48h", "--pod-retention", "10m"]).unwrap();
        assert_eq!(c.engine.attestation_grace, 15 * SECOND);
        assert_eq!(c.engine.retention.credentials, 48 * 60 * MINUTE);
        assert_eq!(c.engine.retention.pods, 10 * MINUTE);
        assert_eq!(flags(&[]).unwrap().engine.retention, Retention::default());
    }

    #[test]
    fn a_credential_retention_under_a_day_is_refused() {
        let err = flags(&["--credential-retention", "6h"]).unwrap_err();
        assert!(err.contains("engine.credential_retention: must be at least 24h"), "{err}");
    }

    #[test]
    fn one_ca_for_agents_and_the_webhook_needs_an_allowed_client_name() {
        let cli = |extra: &[&str]| {
            let base = ["--cluster", "c", "--webhook-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"];
            let tls =
                ["--tls-cert", "s.pem", "--tls-key", "s.key", "--webhook-client-ca", "ca.pem", "--agent-client-ca"];
            load(None, &[&base[..], &tls, extra].concat())
        };
        let err = cli(&["ca.pem"]).unwrap_err();
        assert!(err.contains("webhook.allowed_client_names: is required when webhook.tls.client_ca"), "{err}");
        let separate = cli(&["agents-ca.pem"]).unwrap();
        assert_eq!(separate.grpc.unwrap().tls.unwrap().node_dns_name, "{node}.nodes.tokentrail");
        let allowed = cli(&["ca.pem", "--webhook-allowed-client", "kube-apiserver"]).unwrap();
        assert_eq!(allowed.webhook.unwrap().allowed_client_names, ["kube-apiserver"]);
    }

    #[test]
    fn cluster_and_certificate_flags_reach_the_file_s_servers_and_start_none() {
        let file = r#"{"webhook": {"listen": "127.0.0.1:8443", "cluster": "file", "allowed_client_names": ["apiserver"],
                                   "tls": {"cert": "f.pem", "key": "f.key", "client_ca": "apiserver-ca.pem"}},
                       "engine": {"cluster_networks": ["10.0.0.0/8"]}}"#;
        let c = load(Some(file), &["--cluster", "flag", "--tls-cert", "s.pem", "--tls-key", "s.key"]).unwrap();
        let webhook = c.webhook.unwrap();
        assert_eq!(webhook.cluster, "flag");
        assert_eq!(webhook.tls.unwrap().cert.to_str(), Some("s.pem"));
        // The file has no gRPC server and no flag starts one: --cluster does not.
        assert!(c.grpc.is_none());
        let c = load(Some(file), &["--grpc-listen", "127.0.0.1:7443", "--trust-agent-node-name", "--cluster", "x"])
            .unwrap();
        assert_eq!((c.grpc.unwrap().cluster.as_str(), c.webhook.unwrap().cluster.as_str()), ("x", "x"));
        let c = load(Some(file), &["--cluster-network", "192.168.0.0/16", "--allowed-client-name-is-not-a-flag"]);
        assert!(c.is_err());
        let c =
            load(Some(file), &["--cluster-network", "192.168.0.0/16", "--webhook-allowed-client", "audit"]).unwrap();
        assert_eq!(c.engine.cluster_networks.len(), 2);
        assert_eq!(c.webhook.unwrap().allowed_client_names, ["apiserver", "audit"]);
    }

    #[test]
    fn findings_to_kafka_take_the_brokers_and_security_from_flags_or_file() {
        let c =
            flags(&["--findings", "kafka:out", "--bootstrap-servers", "k:9092", "--kafka-security-protocol", "ssl"])
                .unwrap();
        let Destination::Kafka { bootstrap, security, topic } = c.destination else { panic!("not kafka") };
        assert_eq!((bootstrap.as_str(), topic.as_str()), ("k:9092", "out"));
        assert_eq!(security.protocol, tokentrail_config::kafka::Protocol::Ssl);
        let err = flags(&["--findings", "kafka:out"]).unwrap_err();
        assert!(err.contains("kafka: is required for findings to kafka:TOPIC"), "{err}");
        let file = r#"{"webhook": {"cluster": "c", "insecure_plaintext": true}, "findings": "kafka:file-topic",
                       "kafka": {"bootstrap_servers": "file:9092"}}"#;
        let c = load(Some(file), &["--bootstrap-servers", "flag:9092"]).unwrap();
        let Destination::Kafka { bootstrap, topic, .. } = c.destination else { panic!("not kafka") };
        assert_eq!((bootstrap.as_str(), topic.as_str()), ("flag:9092", "file-topic"));
    }
}
