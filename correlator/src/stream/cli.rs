//! `tokentrail correlator`: flags, logging and signal handling around [`super::run`].

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use tokentrail_correlator_core::IpNet;
use tokentrail_proto::{config_file, otlp};

use super::config::{parse_interval, FileConfig, FileFormat};
use super::{CorrelatorConfig, Metrics};

/// Flags of `tokentrail correlator`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (JSON, the keys of [`FileConfig`]); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check this configuration file, report every problem in it, and exit (0: valid, 2: not)
    /// without starting anything.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap: Option<String>,
    /// Consumer group of all correlator replicas [default: tokentrail-correlator].
    #[arg(long)]
    group: Option<String>,
    /// This replica's stable name (its transactional id), e.g. the StatefulSet pod name.
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Input topic of observations [default: tokentrail.observations].
    #[arg(long)]
    observations_topic: Option<String>,
    /// Output topic of findings [default: tokentrail.findings].
    #[arg(long)]
    findings_topic: Option<String>,
    /// Compacted topic of per-partition state, partitioned like the input [default:
    /// tokentrail.correlator-state].
    #[arg(long)]
    changelog_topic: Option<String>,
    /// Findings as `json` (tokentrail.finding/v1) or `ocsf` [default: json].
    #[arg(long, value_parser = ["json", "ocsf"])]
    format: Option<String>,
    /// How often findings, state and offsets are committed together [default: 1s].
    #[arg(long, value_parser = parse_interval)]
    commit_interval: Option<Duration>,
    /// A network of the cluster(s) beyond node pod CIDRs. Repeatable; adds to the file's.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    cluster_network: Vec<IpNet>,
    /// A trusted proxy in front of the apiservers. Repeatable; adds to the file's.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    trusted_proxy: Vec<IpNet>,
    /// A NAT address pod traffic to the apiserver may come from. Repeatable; adds to the file's.
    #[arg(long, value_name = "IP|CIDR", value_parser = parse_net)]
    egress_ip: Vec<IpNet>,
    /// How long a pod's old token may be used after its newer one [default: 5m].
    #[arg(long, value_parser = parse_interval)]
    rotation_grace: Option<Duration>,
    /// How long (by the node's watermark) a node's agent has to attest a pod-bound credential
    /// after its first use before it counts as minted behind the kubelet's back [default: 2m].
    #[arg(long, value_parser = parse_interval)]
    attestation_grace: Option<Duration>,
    /// How long a credential neither used nor attested is kept, by event time; at least 24h
    /// [default: 25h].
    #[arg(long, value_parser = parse_interval)]
    credential_retention: Option<Duration>,
    /// How long a deleted pod is kept, by event time [default: 1h].
    #[arg(long, value_parser = parse_interval)]
    pod_retention: Option<Duration>,
    /// OpenTelemetry collector (OTLP/gRPC) to export metrics to, e.g. `http://localhost:4317`;
    /// no export without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

/// Parses a CIDR or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|e| e.to_string())
}

impl Args {
    /// The settings: the file (if any), then the flags and environment.
    fn config(&self) -> Result<CorrelatorConfig, String> {
        let mut f = match (&self.config, &self.bootstrap) {
            (Some(path), _) => config_file::check_file(path, FileConfig::problems)
                .map_err(|problems| format!("{}: {}", path.display(), config_file::one_line(&problems)))?,
            (None, Some(b)) => FileConfig::new(b.clone()),
            (None, None) => return Err("--bootstrap, $TOKENTRAIL_KAFKA_BOOTSTRAP or --config is required".into()),
        };
        let set = |flag: &Option<String>, field: &mut String| {
            if let Some(v) = flag {
                field.clone_from(v);
            }
        };
        set(&self.bootstrap, &mut f.bootstrap_servers);
        set(&self.group, &mut f.group_id);
        set(&self.observations_topic, &mut f.observations_topic);
        set(&self.findings_topic, &mut f.findings_topic);
        set(&self.changelog_topic, &mut f.changelog_topic);
        if self.instance.is_some() {
            f.instance.clone_from(&self.instance);
        }
        match self.format.as_deref() {
            Some("ocsf") => f.format = FileFormat::Ocsf,
            Some(_) => f.format = FileFormat::Json,
            None => {}
        }
        f.commit_interval = self.commit_interval.unwrap_or(f.commit_interval);
        f.rotation_grace = self.rotation_grace.unwrap_or(f.rotation_grace);
        f.attestation_grace = self.attestation_grace.unwrap_or(f.attestation_grace);
        f.credential_retention = self.credential_retention.unwrap_or(f.credential_retention);
        f.pod_retention = self.pod_retention.unwrap_or(f.pod_retention);
        f.cluster_networks.extend(self.cluster_network.iter().cloned());
        f.trusted_proxies.extend(self.trusted_proxy.iter().cloned());
        f.egress_ips.extend(self.egress_ip.iter().cloned());
        let problems = f.problems();
        if !problems.is_empty() {
            return Err(config_file::one_line(&problems));
        }
        f.into_config(None)
    }
}

/// Runs until SIGTERM or ctrl-c, then commits the open batch and exits 0; exits 1 when the
/// correlator cannot run (Kafka unreachable, state unreadable): a restart loses nothing.
pub fn main(args: &Args) -> ExitCode {
    if let Some(path) = &args.check_config {
        return config_file::check_config_command(path, FileConfig::problems);
    }
    let _ = tracing_subscriber::fmt().with_ansi(false).with_writer(std::io::stderr).try_init();
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokentrail correlator: {e}");
            return ExitCode::from(2);
        }
    };
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
pub async fn stop_signal() {
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
