//! The agent's configuration file: the same settings as its flags, as JSON (JSON is YAML, so a
//! ConfigMap holds it as written); the environment and flags override it (`tokentrail agent`).
//! [`FileConfig::into_config`] turns it into the [`Config`] the pipeline runs with.
//!
//! Durations are strings like `500ms`, `30s`, `5m` ([`tokentrail_config::duration`]), as in the
//! flags.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokentrail_config::duration;
use tokentrail_config::Problem;

use crate::pipeline::Config;
use crate::readers::PodPattern;
use crate::sender::TlsFiles;

/// Why a [`FileConfig`] that passed its checks still makes no [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the file nor the environment names this node.
    #[error("node (or --node, or $NODE_NAME) is required")]
    NoNode,
}

/// Everything `tokentrail agent` can be told in its configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The kubelet pods directory, mounted read-only into the agent's pod.
    #[serde(default = "default_kubelet_dir")]
    pub kubelet_dir: PathBuf,
    /// This node's name; absent: `$NODE_NAME` (downward API `spec.nodeName`).
    #[serde(default)]
    pub node: Option<String>,
    /// The aggregator's attestation endpoint, e.g. `https://tokentrail-aggregator:7443`.
    pub aggregator: String,
    /// A file holding the agent's own token for the aggregator (a projected token with the
    /// aggregator's audience), sent as a bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS to an `https://` aggregator; with `cert` and `key`, mTLS.
    #[serde(default)]
    pub tls: Option<TlsFile>,
    /// Full rescan period, the safety net behind inotify.
    #[serde(default = "default_rescan_interval", deserialize_with = "duration::deserialize")]
    pub rescan_interval: Duration,
    /// Unacknowledged attestations kept for resending; the oldest are dropped beyond it.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Largest token file read, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_max_backoff", deserialize_with = "duration::deserialize")]
    pub max_backoff: Duration,
    /// Ask the Kubernetes API for this node's pods and Node (false: attest token files only).
    #[serde(default = "yes")]
    pub kube: bool,
    /// Use inotify (false: periodic rescans only).
    #[serde(default = "yes")]
    pub inotify: bool,
    /// Watch opens of token files with fanotify and attest every reader that is not the
    /// kubelet, the runtime, the token's own pod or allowed below (needs CAP_SYS_ADMIN).
    #[serde(default)]
    pub watch_token_reads: bool,
    /// Executables (exact paths, as the agent sees them) allowed to read every token file: a
    /// node agent that legitimately does.
    #[serde(default)]
    pub token_read_allow_exe: Vec<String>,
    /// Pods allowed to read every token file: `namespace/` (all its pods) or
    /// `namespace/name-prefix` (a DaemonSet's pods).
    #[serde(default)]
    pub token_read_allow_pod: Vec<String>,
    /// A reader's opens of one token file are attested at most once per this interval.
    #[serde(default = "default_read_report_interval", deserialize_with = "duration::deserialize")]
    pub token_read_report_interval: Duration,
}

/// TLS files for the connection to the aggregator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// CA certificate (PEM) of the aggregator's server certificate.
    pub ca: PathBuf,
    /// Client certificate chain (PEM) for mTLS; needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS; needs `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name to verify in the aggregator's certificate, when not the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_kubelet_dir() -> PathBuf {
    PathBuf::from("/var/lib/kubelet/pods")
}
fn default_rescan_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_queue_capacity() -> usize {
    4096
}
fn default_max_token_bytes() -> u64 {
    64 * 1024
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_read_report_interval() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

impl FileConfig {
    /// Defaults for everything but the aggregator.
    pub fn new(aggregator: impl Into<String>) -> FileConfig {
        FileConfig {
            kubelet_dir: default_kubelet_dir(),
            node: None,
            aggregator: aggregator.into(),
            token_file: None,
            tls: None,
            rescan_interval: default_rescan_interval(),
            queue_capacity: default_queue_capacity(),
            max_token_bytes: default_max_token_bytes(),
            max_backoff: default_max_backoff(),
            kube: true,
            inotify: true,
            watch_token_reads: false,
            token_read_allow_exe: Vec::new(),
            token_read_allow_pod: Vec::new(),
            token_read_report_interval: default_read_report_interval(),
        }
    }

    /// Every problem serde cannot see, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let scheme = self.aggregator.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("http" | "https") => {}
            _ => problems.push(Problem::new("aggregator", "must be an http:// or https:// URL")),
        }
        if self.node.as_deref().is_some_and(str::is_empty) {
            problems.push(Problem::new("node", "is empty (leave it out to use $NODE_NAME)"));
        }
        if !self.kubelet_dir.is_absolute() {
            problems.push(Problem::new("kubelet_dir", "must be an absolute path"));
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                problems.push(Problem::new("tls", "cert and key go together (mTLS needs both)"));
            }
            if scheme == Some("http") {
                problems.push(Problem::new("tls", "is set but the aggregator URL is http://"));
            }
        }
        if self.rescan_interval < Duration::from_secs(1) {
            problems.push(Problem::new("rescan_interval", "must be at least 1s"));
        }
        if self.queue_capacity == 0 {
            problems.push(Problem::new("queue_capacity", "must be at least 1"));
        }
        if self.max_token_bytes < 1024 {
            problems.push(Problem::new("max_token_bytes", "must be at least 1024 (tokens are 1-2 KiB)"));
        }
        if self.max_backoff.is_zero() {
            problems.push(Problem::new("max_backoff", "must be more than zero"));
        }
        for (i, exe) in self.token_read_allow_exe.iter().enumerate() {
            if !exe.starts_with('/') {
                problems.push(Problem::new(format!("token_read_allow_exe[{i}]"), "must be an absolute path"));
            }
        }
        for (i, pod) in self.token_read_allow_pod.iter().enumerate() {
            if let Err(e) = pod.parse::<PodPattern>() {
                problems.push(Problem::new(format!("token_read_allow_pod[{i}]"), e.to_string()));
            }
        }
        problems
    }

    /// The pipeline's configuration; `node_from_env` is `$NODE_NAME`, used when `node` is absent.
    pub fn into_config(self, node_from_env: Option<String>) -> Result<Config, ConfigError> {
        let node = self.node.or(node_from_env).ok_or(ConfigError::NoNode)?;
        let mut c = Config::new(self.kubelet_dir, node, self.aggregator);
        c.rescan_interval = self.rescan_interval;
        c.queue_capacity = self.queue_capacity;
        c.limits.max_token_bytes = self.max_token_bytes;
        c.sender.backoff_max = self.max_backoff;
        c.sender.bearer_token_file = self.token_file;
        c.inotify = self.inotify;
        c.watch_token_reads = self.watch_token_reads;
        c.read_report_interval = self.token_read_report_interval;
        c.read_policy.executables.extend(self.token_read_allow_exe);
        // Checked by `problems`; a pattern that does not parse allows nothing.
        c.read_policy.pods.extend(self.token_read_allow_pod.iter().filter_map(|p| p.parse().ok()));
        c.sender.tls = self.tls.map(|t| TlsFiles { ca: t.ca, cert: t.cert, key: t.key, server_name: t.server_name });
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn check(text: &str) -> Result<FileConfig, Vec<String>> {
        tokentrail_config::check(text, FileConfig::problems).map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_minimal_file_gets_the_flag_defaults() {
        let c = check(r#"{"aggregator": "https://agg:7443", "tls": {"ca": "/ca.pem"}}"#).unwrap();
        assert_eq!(c.kubelet_dir, PathBuf::from("/var/lib/kubelet/pods"));
        assert_eq!(c.rescan_interval, Duration::from_secs(60));
        assert!(c.kube && c.inotify);
        let config = c.into_config(Some("node-1".into())).unwrap();
        assert_eq!(config.node_name, "node-1");
        assert_eq!(config.sender.tls.unwrap().ca, PathBuf::from("/ca.pem"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let err = check(
            r#"{"aggregator": "agg:7443", "kubelet_dir": "pods", "node": "", "queue_capacity": 0,
                "rescan_interval": "often", "max_token_bytes": -5, "inotfy": false,
                "tls": {"ca": "/ca.pem", "cert": "/c.pem"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                "inotfy: unknown field `inotfy`, expected one of `kubelet_dir`, `node`, `aggregator`, `token_file`, \
                 `tls`, `rescan_interval`, `queue_capacity`, `max_token_bytes`, `max_backoff`, `kube`, `inotify`, \
                 `watch_token_reads`, `token_read_allow_exe`, `token_read_allow_pod`, `token_read_report_interval`",
                "max_token_bytes: invalid value: integer `-5`, expected u64",
                "rescan_interval: invalid duration \"often\" (use e.g. 500ms, 30s, 5m, 1h)",
                "aggregator: must be an http:// or https:// URL",
                "node: is empty (leave it out to use $NODE_NAME)",
                "kubelet_dir: must be an absolute path",
                "tls: cert and key go together (mTLS needs both)",
                "queue_capacity: must be at least 1",
            ]
        );
    }

    #[test]
    fn the_token_read_watch_is_off_by_default_and_its_allow_list_is_checked() {
        let c = check(r#"{"aggregator": "http://agg:7443"}"#).unwrap();
        assert!(!c.into_config(Some("n".into())).unwrap().watch_token_reads);
        let err = check(
            r#"{"aggregator": "http://agg:7443", "watch_token_reads": true,
                "token_read_allow_exe": ["/usr/bin/vector", "vector"], "token_read_allow_pod": ["monitoring/", "bad"]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                "token_read_allow_exe[1]: must be an absolute path",
                "token_read_allow_pod[1]: \"bad\" is not NAMESPACE/ or NAMESPACE/NAME_PREFIX",
            ]
        );
        let c = check(
            r#"{"aggregator": "http://agg:7443", "watch_token_reads": true, "token_read_report_interval": "5m",
                "token_read_allow_exe": ["/usr/bin/vector"], "token_read_allow_pod": ["monitoring/node-exporter-"]}"#,
        )
        .unwrap()
        .into_config(Some("n".into()))
        .unwrap();
        assert!(c.watch_token_reads);
        assert_eq!(c.read_report_interval, Duration::from_secs(300));
        assert!(c.read_policy.executables.contains("/usr/bin/vector"));
        assert!(c.read_policy.pods[0].matches("monitoring", "node-exporter-x1"));
        assert!(c.read_policy.services.contains("kubelet.service"));
    }

    #[test]
    fn the_aggregator_is_required() {
        assert_eq!(check(r#"{"kube": false}"#).unwrap_err(), ["aggregator: is required"]);
    }
}
