//! A real Kubernetes control plane for the tests: etcd, kube-apiserver and a controller-manager
//! that runs only the service-account controllers, started by `kube/cluster.sh` (its header
//! says what it builds, how, and what a cluster holds) on 127.0.0.1.
//!
//! A [`Cluster`] lives in a directory the test chooses (a temporary one) and stops when dropped;
//! the script's watchdog also stops it when the test process dies without dropping it. The
//! harness is the cluster's certificate authority: the admin, the user `alice`, and the nodes in
//! [`NODES`] each have a client certificate and a kubeconfig.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The nodes every cluster has certificates for (`system:node:<name>` in `system:nodes`).
pub const NODES: [&str; 2] = ["node-a", "node-b"];

/// The users every cluster has certificates for: a cluster admin (`system:masters`), a user
/// with no groups (RBAC decides what she may do), and the nodes.
pub const USERS: [&str; 4] = ["admin", "alice", NODES[0], NODES[1]];

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    server: String,
}

/// Why no cluster could be had.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// `cluster.sh` could not be run at all.
    #[error("could not run {script}")]
    Spawn {
        /// The script.
        script: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `cluster.sh start` failed; its standard error says why (the build, or a process's log).
    #[error("{script} start failed ({status}):\n{stderr}")]
    Start {
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said on standard error.
        stderr: String,
    },
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kube").join("cluster.sh")
}

impl Cluster {
    /// Starts a cluster whose files live in `dir`, building the binaries first if this machine
    /// has none cached (tens of minutes, once). With `audit_webhook`, the apiserver also POSTs
    /// its audit events to that URL. `outside` are addresses to add to `lo` for clients outside
    /// every cluster network (see [`Cluster::outside_addresses`]).
    pub fn start(dir: &Path, audit_webhook: Option<&str>, outside: &[Ipv4Addr]) -> Result<Cluster, KubeError> {
        let script = script();
        let mut command = Command::new("bash");
        command.arg(&script).arg("start").arg(dir).args(["--owner", &std::process::id().to_string()]);
        if let Some(url) = audit_webhook {
            command.args(["--audit-webhook", url]);
        }
        for address in outside {
            command.args(["--outside-address", &address.to_string()]);
        }
        // stdout carries only the server URL; stderr has progress and errors.
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|source| KubeError::Spawn { script: script.clone(), source })?;
        let server = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || !server.starts_with("https://") {
            return Err(KubeError::Start {
                script,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        // What it said on the way (a build, stale addresses removed, warnings such as an
        // outside address it could not add) belongs in the test's output.
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        Ok(Cluster { dir: dir.to_path_buf(), server })
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The apiserver's `host:port`.
    pub fn address(&self) -> std::net::SocketAddr {
        let authority = self.server.trim_start_matches("https://");
        authority
            .parse()
            .unwrap_or_else(|_| panic!("cluster.sh printed a server URL without an address: {}", self.server))
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (PEM) that signed the apiserver's and every client's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The client certificate (PEM) of one of [`USERS`].
    pub fn cert(&self, user: &str) -> PathBuf {
        self.dir.join(format!("pki/{user}.crt"))
    }

    /// The private key (PEM) of one of [`USERS`].
    pub fn key(&self, user: &str) -> PathBuf {
        self.dir.join(format!("pki/{user}.key"))
    }

    /// A kubeconfig file for one of [`USERS`].
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("kubeconfig-{user}"))
    }

    /// The outside addresses the harness could add to `lo` (all of those asked for when it runs
    /// as root; none without CAP_NET_ADMIN, and then it has said why on stderr). A client bound
    /// to one is outside every cluster network, as no 127.0.0.0/8 address can be.
    pub fn outside_addresses(&self) -> Vec<Ipv4Addr> {
        let listed = std::fs::read_to_string(self.dir.join("outside-addresses")).unwrap_or_default();
        listed.lines().filter_map(|line| line.trim().parse().ok()).collect()
    }

    /// The apiserver's audit log (JSON lines), written with `deploy/audit/policy.yaml`.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}
