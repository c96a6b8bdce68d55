//! `tokentrail agent`: its flags, laid over its configuration file ([`FileConfig`]), and the
//! Kubernetes pod source, around [`tokentrail_agent::run`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokentrail_agent::config::FileConfig;
use tokentrail_agent::telemetry::{self, Metrics};
use tokentrail_config::duration;

use crate::startup::config_file::WithFile;
use crate::startup::{Component, Probes, Threads};

const AGENT: Component = Component { name: "agent", service: "tokentrail-agent", threads: Threads::One };

/// Run the node agent: attest the service-account tokens on this node to the aggregator.
pub type Args = WithFile<Settings>;

/// The flags that are settings of the configuration file, named as its keys.
#[derive(clap::Args, Debug, Serialize)]
pub struct Settings {
    /// The kubelet pods directory (mounted read-only into the agent's pod) [default:
    /// /var/lib/kubelet/pods].
    #[arg(long, value_name = "DIR")]
    kubelet_dir: Option<PathBuf>,
    /// This node's name (downward API `spec.nodeName`).
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    node: Option<String>,
    /// The aggregator's attestation endpoint, e.g. `http://tokentrail-aggregator:7443`.
    #[arg(long, value_name = "URL", required_unless_present_any = ["config", "check_config"])]
    aggregator: Option<String>,
    /// A file holding the agent's own token for the aggregator, sent as a bearer token.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) for an `https://` aggregator.
    #[arg(long, value_name = "FILE")]
    #[serde(rename = "tls.ca")]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    #[serde(rename = "tls.cert")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    #[serde(rename = "tls.key")]
    tls_key: Option<PathBuf>,
    /// Name to verify in the aggregator's certificate, when not the URL's host.
    #[arg(long, value_name = "NAME")]
    #[serde(rename = "tls.server_name")]
    tls_server_name: Option<String>,
    /// Full rescan period, the safety net behind inotify [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    rescan_interval: Option<Duration>,
    /// Unacknowledged attestations kept for resending; the oldest are dropped beyond it
    /// [default: 4096].
    #[arg(long, value_name = "N")]
    queue_capacity: Option<usize>,
    /// Largest token file read, in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_token_bytes: Option<u64>,
    /// Longest reconnect delay [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    max_backoff: Option<Duration>,
    /// Do not ask the Kubernetes API for pods and the node: attest token files only.
    #[arg(long)]
    #[serde(rename = "kube", serialize_with = "off_if_given")]
    no_kube: bool,
    /// Do not use inotify; rely on periodic rescans.
    #[arg(long)]
    #[serde(rename = "inotify", serialize_with = "off_if_given")]
    no_inotify: bool,
    /// Watch opens of token files (fanotify, needs CAP_SYS_ADMIN) and attest every reader that
    /// is not the kubelet, the container runtime or the token's own pod (docs/rules.md).
    #[arg(long)]
    #[serde(serialize_with = "on_if_given")]
    watch_token_reads: bool,
    /// An executable (exact path) allowed to read every token file, e.g. a node agent that
    /// legitimately does; repeatable.
    #[arg(long, value_name = "PATH")]
    token_read_allow_exe: Vec<String>,
    /// Pods allowed to read every token file: `NAMESPACE/` or `NAMESPACE/NAME_PREFIX`;
    /// repeatable.
    #[arg(long, value_name = "PATTERN")]
    token_read_allow_pod: Vec<String>,
    /// A reader's opens of one token file are attested at most once per this interval
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    token_read_report_interval: Option<Duration>,
}

/// A `--flag` that turns a setting on: `true` when given, nothing (null) otherwise.
fn on_if_given<S: serde::Serializer>(given: &bool, s: S) -> Result<S::Ok, S::Error> {
    if *given {
        s.serialize_bool(true)
    } else {
        s.serialize_none()
    }
}

/// A `--no-...` flag: `false` for its setting when given, nothing (null) otherwise.
fn off_if_given<S: serde::Serializer>(given: &bool, s: S) -> Result<S::Ok, S::Error> {
    if *given {
        s.serialize_bool(false)
    } else {
        s.serialize_none()
    }
}

/// Runs `tokentrail agent` until SIGTERM or ctrl-c.
pub fn main(args: Args) -> ExitCode {
    let file = match AGENT.configure(&args, FileConfig::problems) {
        Ok(f) => f,
        Err(exit) => return exit,
    };
    let kube = file.kube;
    // $NODE_NAME is already in `node` (the flag's environment variable).
    let config = match file.into_config(None) {
        Ok(c) => c,
        Err(e) => return AGENT.bad_config(e),
    };
    let metrics = Arc::new(Metrics::default());
    let (exported, ready) = (Arc::clone(&metrics), Arc::clone(&metrics));
    AGENT.serve(
        &args.process,
        None,
        move |meter| telemetry::register(&exported, meter),
        // Once the aggregator has accepted a stream: from then on the agent has what it needs
        // (its queue keeps what a later outage holds back), and a reconnect is its own business.
        Probes::ready_when(move || match Metrics::get(&ready.connections_total) {
            0 => Err("no attestation stream to the aggregator yet"),
            _ => Ok(()),
        }),
        |shutdown, _| async move {
            let pods = if kube {
                // In-cluster service account (or $KUBECONFIG when run by hand).
                let client =
                    kube::Client::try_default().await.map_err(|e| anyhow::anyhow!("kubernetes client: {e}"))?;
                let (tx, rx) = tokio::sync::mpsc::channel(256);
                tokio::spawn(tokentrail_agent::kube_source::run(client, config.node_name.clone(), tx));
                Some(rx)
            } else {
                None
            };
            Ok::<(), anyhow::Error>(tokentrail_agent::run(config, pods, metrics, shutdown).await?)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::startup::config_file::load_for_test;

    fn load(file: Option<&str>, flags: &[&str]) -> Result<FileConfig, String> {
        load_for_test::<Settings, _>(file, flags, FileConfig::problems)
    }

    #[test]
    fn flags_override_the_file_and_what_they_do_not_say_is_the_file_s() {
        let file = r#"{"aggregator": "https://file:7443", "rescan_interval": "2m", "queue_capacity": 10,
                       "tls": {"ca": "/file-ca.pem", "server_name": "agg"}, "inotify": false}"#;
        let c = load(Some(file), &["--rescan-interval", "90s", "--tls-ca", "/flag-ca.pem", "--no-kube"]).unwrap();
        assert_eq!(c.aggregator, "https://file:7443");
        assert_eq!(c.rescan_interval, Duration::from_secs(90));
        assert_eq!(c.queue_capacity, 10);
        let tls = c.tls.unwrap();
        assert_eq!((tls.ca, tls.server_name.as_deref()), (PathBuf::from("/flag-ca.pem"), Some("agg")));
        assert!(!c.kube && !c.inotify);
    }

    #[test]
    fn without_a_file_the_flags_and_defaults_make_the_settings() {
        let c = load(None, &["--aggregator", "http://agg:7443", "--max-backoff", "500ms"]).unwrap();
        assert_eq!((c.max_backoff, c.rescan_interval), (Duration::from_millis(500), Duration::from_secs(60)));
        assert!(c.kube && c.inotify);
    }

    #[test]
    fn problems_of_the_file_name_it_and_problems_the_flags_make_are_reported_with_their_keys() {
        let err = load(Some(r#"{"aggregator": "agg"}"#), &[]).unwrap_err();
        assert!(err.ends_with("component.json: aggregator: must be an http:// or https:// URL"), "{err}");
        let err = load(Some(r#"{"aggregator": "http://agg"}"#), &["--rescan-interval", "10ms"]).unwrap_err();
        assert_eq!(err, "rescan_interval: must be at least 1s");
        let err = load(None, &["--aggregator", "http://agg", "--rescan-interval", "10"]).unwrap_err();
        assert!(err.contains("invalid duration \"10\""), "{err}");
    }

    #[test]
    fn the_token_read_watch_flags_reach_their_settings_and_it_is_off_without_them() {
        let c = load(None, &["--aggregator", "http://agg:7443"]).unwrap();
        assert!(!c.watch_token_reads && c.token_read_allow_exe.is_empty());
        let file = r#"{"aggregator": "http://agg:7443", "token_read_allow_exe": ["/usr/bin/vector"]}"#;
        let flags = [
            "--watch-token-reads",
            "--token-read-allow-exe",
            "/opt/agent/bin/agent",
            "--token-read-allow-pod",
            "monitoring/node-exporter-",
            "--token-read-report-interval",
            "5m",
        ];
        let c = load(Some(file), &flags).unwrap();
        assert!(c.watch_token_reads);
        assert_eq!(c.token_read_allow_exe, ["/usr/bin/vector", "/opt/agent/bin/agent"], "the file's and the flags'");
        assert_eq!(c.token_read_allow_pod, ["monitoring/node-exporter-"]);
        assert_eq!(c.token_read_report_interval, Duration::from_secs(300));
    }
}
