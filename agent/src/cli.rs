//! `tokentrail agent`: flags, logging, the runtime and signal handling around [`crate::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokentrail_proto::{config_file, otlp};

use crate::config::{FileConfig, TlsFile};
use crate::pipeline::Config;
use crate::telemetry::Metrics;

/// Run the node agent: attest the service-account tokens on this node to the aggregator.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (JSON, the keys of [`FileConfig`]); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check this configuration file, report every problem in it, and exit (0: valid, 2: not)
    /// without starting anything.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
    /// The kubelet pods directory (mounted read-only into the agent's pod) [default:
    /// /var/lib/kubelet/pods].
    #[arg(long, value_name = "DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// This node's name (downward API `spec.nodeName`); defaults to $NODE_NAME.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The aggregator's attestation endpoint, e.g. `http://tokentrail-aggregator:7443`.
    #[arg(long, value_name = "URL", required_unless_present_any = ["config", "check_config"])]
    pub aggregator: Option<String>,
    /// A file holding the agent's own token for the aggregator, sent as a bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) for an `https://` aggregator.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name to verify in the aggregator's certificate, when not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Full rescan period, the safety net behind inotify [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rescan_interval: Option<Duration>,
    /// Unacknowledged attestations kept for resending; the oldest are dropped beyond it
    /// [default: 4096].
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Largest token file read, in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_token_bytes: Option<u64>,
    /// Longest reconnect delay [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_backoff: Option<Duration>,
    /// Do not ask the Kubernetes API for pods and the node: attest token files only.
    #[arg(long)]
    pub no_kube: bool,
    /// Do not use inotify; rely on periodic rescans.
    #[arg(long)]
    pub no_inotify: bool,
    /// OpenTelemetry collector (OTLP/gRPC) to export metrics to, e.g. `http://localhost:4317`;
    /// no export without it.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Log debug messages too.
    #[arg(long, short)]
    pub verbose: bool,
}

impl Args {
    /// The settings: the file (if any), then the flags.
    pub fn file_config(&self) -> Result<FileConfig, String> {
        let mut f = match (&self.config, &self.aggregator) {
            (Some(path), _) => config_file::check_file(path, FileConfig::problems)
                .map_err(|problems| format!("{}: {}", path.display(), config_file::one_line(&problems)))?,
            (None, Some(aggregator)) => FileConfig::new(aggregator.clone()),
            (None, None) => return Err("--aggregator or --config is required".into()),
        };
        let or = |flag: &Option<PathBuf>, file: &mut Option<PathBuf>| {
            if flag.is_some() {
                file.clone_from(flag);
            }
        };
        if let Some(a) = &self.aggregator {
            f.aggregator.clone_from(a);
        }
        if let Some(d) = &self.kubelet_dir {
            f.kubelet_dir.clone_from(d);
        }
        if self.node.is_some() {
            f.node.clone_from(&self.node);
        }
        or(&self.token_file, &mut f.token_file);
        match (&self.tls_ca, &mut f.tls) {
            (Some(ca), tls) => {
                let t = tls.get_or_insert_with(|| TlsFile { ca: ca.clone(), cert: None, key: None, server_name: None });
                t.ca.clone_from(ca);
            }
            (None, None) if self.tls_cert.is_some() => return Err("--tls-cert needs --tls-ca".into()),
            _ => {}
        }
        if let Some(t) = &mut f.tls {
            or(&self.tls_cert, &mut t.cert);
            or(&self.tls_key, &mut t.key);
            if self.tls_server_name.is_some() {
                t.server_name.clone_from(&self.tls_server_name);
            }
        }
        f.rescan_interval = self.rescan_interval.unwrap_or(f.rescan_interval);
        f.queue_capacity = self.queue_capacity.unwrap_or(f.queue_capacity);
        f.max_token_bytes = self.max_token_bytes.unwrap_or(f.max_token_bytes);
        f.max_backoff = self.max_backoff.unwrap_or(f.max_backoff);
        f.kube &= !self.no_kube;
        f.inotify &= !self.no_inotify;
        let problems = f.problems();
        if !problems.is_empty() {
            return Err(config_file::one_line(&problems));
        }
        Ok(f)
    }

    /// The agent's configuration from the file, the flags and $NODE_NAME.
    pub fn config(&self) -> Result<Config, String> {
        self.file_config()?.into_config(std::env::var("NODE_NAME").ok())
    }
}

/// Parses `200ms`, `90s`, `5m`, `2h`, `1d` or combinations (`1m30s`), as `analyze` does, plus `ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 500ms, 30s, 5m, 1h)");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.as_bytes()[0] {
                b's' => (Duration::from_secs(1), 1),
                b'm' => (Duration::from_secs(60), 1),
                b'h' => (Duration::from_secs(3600), 1),
                b'd' => (Duration::from_secs(86_400), 1),
                _ => return Err(bad()),
            }
        };
        let n = u32::try_from(n).map_err(|_| bad())?;
        total = total.checked_add(unit.checked_mul(n).ok_or_else(bad)?).ok_or_else(bad)?;
        rest = &rest[len..];
    }
    Ok(total)
}

/// Runs `tokentrail agent` until SIGTERM or ctrl-c. Exit 0 after a clean shutdown, 2 for bad
/// flags, 1 when the agent cannot run.
pub fn main(args: Args) -> ExitCode {
    if let Some(path) = &args.check_config {
        return config_file::check_config_command(path, FileConfig::problems);
    }
    let level = if args.verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let _ = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(std::io::stderr).try_init();
    let (config, kube) = match args.file_config().and_then(|f| {
        let kube = f.kube;
        f.into_config(std::env::var("NODE_NAME").ok()).map(|c| (c, kube))
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokentrail agent: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Arc::new(Metrics::default());
    let otlp = match otlp::start_if_configured(args.otlp_endpoint.as_deref(), "tokentrail-agent", || {
        crate::telemetry::instruments(&metrics)
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tokentrail agent: {e}");
            return ExitCode::from(2);
        }
    };
    // One thread is plenty for a few hundred files and one stream, and keeps the agent's CPU
    // and memory footprint small on every node.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokentrail agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let pods = if !kube {
            None
        } else {
            // In-cluster service account (or $KUBECONFIG when run by hand).
            let client = kube::Client::try_default()
                .await
                .map_err(|e| crate::AgentError::Config(format!("kubernetes client: {e}")))?;
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(crate::kube_source::run(client, config.node_name.clone(), tx));
            Some(rx)
        };
        crate::run(config, pods, metrics, shutdown_signal()).await
    });
    // After the run, outside its runtime: the final values are exported before exit.
    otlp::shutdown(otlp);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent stopped");
            eprintln!("tokentrail agent: {e}");
            ExitCode::FAILURE
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_analyze_plus_milliseconds() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "10", "s", "5x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
