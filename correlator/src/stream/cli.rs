//! `tokentrail correlator`: flags, logging and signal handling around [`super::run`].

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokentrail_correlator_core::time::{parse_duration, MINUTE};
use tokentrail_correlator_core::{EngineConfig, IpNet};
use tokentrail_proto::otlp;

use super::{CorrelatorConfig, FindingFormat, Metrics};

/// Flags of `tokentrail correlator`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap: String,
    /// Consumer group of all correlator replicas.
    #[arg(long, default_value = "tokentrail-correlator")]
    group: String,
    /// This replica's stable name (its transactional id), e.g. the StatefulSet pod name.
    #[arg(long, env = "POD_NAME")]
    instance: String,
    /// Input topic of observations.
    #[arg(long, default_value = "tokentrail.observations")]
    observations_topic: String,
    /// Output topic of findings.
    #[arg(long, default_value = "tokentrail.findings")]
    findings_topic: String,
    /// Compacted topic of per-partition state, partitioned like the input.
    #[arg(long, default_value = "tokentrail.correlator-state")]
    changelog_topic: String,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf`.
    #[arg(long, default_value = "json", value_parser = ["json", "ocsf"])]
    format: String,
    /// How often findings, state and offsets are committed together.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    commit_interval: Duration,
    /// A network of the cluster(s) beyond node pod CIDRs. Repeatable.
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
    /// OpenTelemetry collector (OTLP/gRPC) to export metrics to, e.g. `http://localhost:4317`;
    /// no export without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|e| e.to_string())
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms").and_then(|n| n.parse::<u64>().ok()) {
        return Ok(Duration::from_millis(ms));
    }
    let micros = parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration: write e.g. 500ms, 1s, 5m"))?;
    Ok(Duration::from_micros(u64::try_from(micros).map_err(|_| format!("{s:?} is negative"))?))
}

impl Args {
    fn config(&self) -> CorrelatorConfig {
        let mut c = CorrelatorConfig::new(&self.bootstrap, &self.group, &self.instance);
        c.observations_topic.clone_from(&self.observations_topic);
        c.findings_topic.clone_from(&self.findings_topic);
        c.changelog_topic.clone_from(&self.changelog_topic);
        c.format = if self.format == "ocsf" { FindingFormat::Ocsf } else { FindingFormat::Json };
        c.commit_interval = self.commit_interval;
        c.engine = EngineConfig {
            cluster_networks: self.cluster_network.clone(),
            trusted_proxies: self.trusted_proxy.clone(),
            egress: self.egress_ip.clone(),
            rotation_grace: i64::try_from(self.rotation_grace.as_micros()).unwrap_or(5 * MINUTE),
            ..EngineConfig::default()
        };
        c
    }
}

/// Runs until SIGTERM or ctrl-c, then commits the open batch and exits 0; exits 1 when the
/// correlator cannot run (Kafka unreachable, state unreadable): a restart loses nothing.
pub fn main(args: &Args) -> ExitCode {
    let _ = tracing_subscriber::fmt().with_ansi(false).with_writer(std::io::stderr).try_init();
    let config = args.config();
    let shutdown = super::shutdown_flag();
    let metrics = Arc::new(Metrics::default());
    let otlp = match otlp::start_if_configured(args.otlp_endpoint.as_deref(), "tokentrail-correlator", || {
        super::telemetry::instruments(&metrics)
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tokentrail correlator: {e}");
            return ExitCode::from(2);
        }
    };
    let worker = {
        let (shutdown, metrics) = (Arc::clone(&shutdown), Arc::clone(&metrics));
        std::thread::spawn(move || super::run(&config, &metrics, &shutdown))
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokentrail correlator: cannot start the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Also wake when the worker stops by itself (an error), so the process exits with it.
        loop {
            tokio::select! {
                () = stop_signal() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => if worker.is_finished() { break },
            }
        }
    });
    shutdown.store(true, Ordering::Relaxed);
    let result = worker.join();
    // After the last commit: the final values are exported before exit.
    otlp::shutdown(otlp);
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "correlator stopped");
            eprintln!("tokentrail correlator: {e}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or ctrl-c.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
