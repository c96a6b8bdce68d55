//! `tokentrail aggregator`: the configuration file, flags on top, logging, the runtime and
//! signal handling around [`crate::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokentrail_proto::{config_file, otlp};

use crate::config::{AuditTopic, Config, GrpcConfig, HealthConfig, KafkaConfig, TlsConfig};
use crate::telemetry::Metrics;

/// Run the aggregator: attestations over gRPC and raw audit events from Kafka, merged into the
/// observations topic.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (JSON); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check this configuration file, report every problem in it, and exit (0: valid, 2: not)
    /// without starting anything.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
    /// Kafka `bootstrap.servers`.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub bootstrap_servers: Option<String>,
    /// A raw audit topic, as `TOPIC=CLUSTER`, or `TOPIC` for records with a `cluster` header.
    #[arg(long, value_name = "TOPIC[=CLUSTER]")]
    pub audit_topic: Vec<String>,
    /// The observations topic.
    #[arg(long, value_name = "TOPIC")]
    pub observations_topic: Option<String>,
    /// The dead-letter topic.
    #[arg(long, value_name = "TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Serve attestations on this address (e.g. `0.0.0.0:7443`); needs --cluster.
    #[arg(long, value_name = "ADDR", requires = "cluster")]
    pub grpc_listen: Option<SocketAddr>,
    /// The cluster the agents run in.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Server certificate chain (PEM) of the attestation server; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of the agents' client certificates: mTLS, node identity from the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// How far ahead of this aggregator's clock an agent's times may be (e.g. `5m`); later
    /// ones are refused and counted. Overrides `grpc.max_clock_skew`.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub max_clock_skew: Option<std::time::Duration>,
    /// Serve the probes `/healthz` and `/readyz` over plain HTTP on this address (e.g.
    /// `0.0.0.0:8080`).
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<SocketAddr>,
    /// OpenTelemetry collector (OTLP/gRPC) to export metrics to, e.g. `http://localhost:4317`;
    /// no export without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Log debug messages too.
    #[arg(long, short)]
    pub verbose: bool,
}

impl Args {
    /// The configuration: the file, then the flags.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Config::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::new(KafkaConfig::new(
                self.bootstrap_servers.clone().ok_or("--bootstrap-servers or --config is required")?,
            )),
        };
        let k = &mut config.kafka;
        if let Some(b) = &self.bootstrap_servers {
            k.bootstrap_servers.clone_from(b);
        }
        for t in &self.audit_topic {
            let (topic, cluster) = match t.split_once('=') {
                Some((t, c)) => (t.to_string(), Some(c.to_string())),
                None => (t.clone(), None),
            };
            k.audit_topics.push(AuditTopic { topic, cluster });
        }
        if let Some(t) = &self.observations_topic {
            k.observations_topic.clone_from(t);
        }
        if let Some(t) = &self.dead_letter_topic {
            k.dead_letter_topic.clone_from(t);
        }
        if let Some(listen) = self.health_listen {
            config.health = Some(HealthConfig { listen });
        }
        if let (Some(listen), Some(cluster)) = (self.grpc_listen, &self.cluster) {
            let g = config.grpc.get_or_insert_with(|| GrpcConfig::new(listen, cluster.clone()));
            g.listen = listen;
            g.cluster.clone_from(cluster);
        }
        if let (Some(g), Some(skew)) = (config.grpc.as_mut(), self.max_clock_skew) {
            g.max_clock_skew = skew;
        }
        if let (Some(g), Some(cert), Some(key)) = (config.grpc.as_mut(), &self.tls_cert, &self.tls_key) {
            let tls = g.tls.get_or_insert_with(|| TlsConfig::new(cert.clone(), key.clone()));
            tls.cert.clone_from(cert);
            tls.key.clone_from(key);
            if let Some(ca) = &self.client_ca {
                tls.client_ca = Some(ca.clone());
            }
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Runs `tokentrail aggregator` until SIGTERM or ctrl-c. Exit 0 after a clean shutdown, 2 for a
/// bad configuration, 1 when it cannot run (75, EX_TEMPFAIL, when a restart may help).
pub fn main(args: Args) -> ExitCode {
    if let Some(path) = &args.check_config {
        return config_file::check_config_command(path, Config::problems);
    }
    let level = if args.verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let _ = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(std::io::stderr).try_init();
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokentrail aggregator: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Arc::new(Metrics::default());
    let otlp = match otlp::start_if_configured(args.otlp_endpoint.as_deref(), "tokentrail-aggregator", || {
        crate::telemetry::instruments(&metrics)
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tokentrail aggregator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokentrail aggregator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(crate::run(config, metrics, None, shutdown_signal()));
    // After the run, outside its runtime: the final values are exported before exit.
    otlp::shutdown(otlp);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, retryable = e.is_retryable(), "aggregator stopped");
            eprintln!("tokentrail aggregator: {e}");
            if e.is_retryable() {
                ExitCode::from(75)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or ctrl-c.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
