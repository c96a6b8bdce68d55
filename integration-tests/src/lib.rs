//! tokentrail's tests against real services, and the harness that gives them a real Apache Kafka
//! broker.
//!
//! Layout:
//! * this file: [`kafka()`], the one broker every test of a `cargo test` run shares, and
//!   [`unique_name`] for the topics, groups and transactional ids each test makes its own;
//! * `kafka/`: the Maven project that resolves the broker's jars and `broker.sh`, which starts
//!   and stops the broker (its header explains how a broker started for tests ends with them);
//!   `kafka/README.md` is the user's guide;
//! * [`kube`]: a real kube-apiserver (with etcd and the service-account controllers), built and
//!   started by `kube/cluster.sh`, for `tests/kube_apiserver.rs`;
//! * `tests/`: the tests, one file per area; `kafka_smoke.rs` checks the broker and the Kafka
//!   features the pipeline relies on (consumer groups, transactions) through rdkafka.
//!
//! Where the broker comes from: `TOKENTRAIL_KAFKA_BOOTSTRAP`, if set, names one that is already
//! running (a developer's, to skip start-up); otherwise `kafka/broker.sh start --owner <this
//! process>` starts one, or reuses the one that an earlier test binary of the same run started.
//! Tests never assume a fresh broker: every name they create is unique, so leftovers of earlier
//! runs on a reused broker cannot meet them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rdkafka::ClientConfig;

pub mod kube;

/// Names a running broker to use instead of starting one, as `host:port[,host:port...]`.
pub const BOOTSTRAP_ENV: &str = "TOKENTRAIL_KAFKA_BOOTSTRAP";

/// A Kafka broker the tests can reach.
#[derive(Debug)]
pub struct Broker {
    bootstrap: String,
    origin: Origin,
}

/// Where a [`Broker`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Named by [`BOOTSTRAP_ENV`]; the harness neither started it nor will stop it.
    Environment,
    /// Started (or reused) through `kafka/broker.sh`, which stops it once no test process has
    /// used it for a while.
    Script,
}

impl Broker {
    /// The `bootstrap.servers` value that reaches this broker.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Where this broker came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// A client configuration that reaches this broker, to which a test adds its own settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }
}

/// Why no broker could be had.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `broker.sh` could not be run at all (no bash, or the file is missing).
    #[error("could not run {script}")]
    Spawn {
        /// The script that was run.
        script: PathBuf,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
    /// `broker.sh start` ran and failed; its standard error says why (Maven, Java, the broker's
    /// log).
    #[error("{script} start failed ({status}):\n{stderr}")]
    Start {
        /// The script that was run.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said on standard error.
        stderr: String,
    },
    /// `broker.sh start` succeeded but printed no usable bootstrap address.
    #[error("{script} start printed no bootstrap address: {stdout:?}")]
    NoAddress {
        /// The script that was run.
        script: PathBuf,
        /// What it printed on standard output.
        stdout: String,
    },
}

/// The broker shared by every test of this process, started on first use.
///
/// # Panics
///
/// If no broker can be had; the message says why (and where the broker's log is). Tests that
/// want to handle that themselves call [`try_kafka`].
pub fn kafka() -> &'static Broker {
    match try_kafka() {
        Ok(broker) => broker,
        Err(error) => panic!("no Kafka broker for the integration tests: {error}"),
    }
}

/// The broker shared by every test of this process, or why there is none. The first call
/// decides, for the whole process; later calls return the same answer at once.
pub fn try_kafka() -> Result<&'static Broker, &'static HarnessError> {
    static BROKER: OnceLock<Result<Broker, HarnessError>> = OnceLock::new();
    BROKER.get_or_init(find_or_start).as_ref()
}

fn find_or_start() -> Result<Broker, HarnessError> {
    if let Some(bootstrap) = std::env::var(BOOTSTRAP_ENV).ok().filter(|b| !b.trim().is_empty()) {
        return Ok(Broker { bootstrap: bootstrap.trim().to_owned(), origin: Origin::Environment });
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka").join("broker.sh");
    // This process is the owner: broker.sh's watchdog keeps the broker while this process (or
    // a later test binary that registers in turn) is alive, and stops it some seconds after the
    // last one has exited, so a broker started by `cargo test` does not outlive the run.
    // stdout carries only the bootstrap address; stderr has the progress and error messages.
    let output = Command::new("bash")
        .arg(&script)
        .args(["start", "--owner", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn { script: script.clone(), source })?;
    if !output.status.success() {
        return Err(HarnessError::Start {
            script,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().map(str::trim) {
        Some(bootstrap) if bootstrap.contains(':') => {
            Ok(Broker { bootstrap: bootstrap.to_owned(), origin: Origin::Script })
        }
        _ => Err(HarnessError::NoAddress { script, stdout: stdout.into_owned() }),
    }
}

/// A name no other test, in this run or any earlier one on the same broker, has used:
/// `{prefix}-{16 hex digits, random per process}-{counter}`. For topics, group ids and
/// transactional ids, so tests can share a broker and its leftovers.
pub fn unique_name(prefix: &str) -> String {
    static RUN: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the operating system's randomness: a random number without a
    // dependency on a random-number crate, and without reading the clock.
    let run = *RUN.get_or_init(|| RandomState::new().build_hasher().finish());
    format!("{prefix}-{run:016x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_within_a_process_and_keep_the_prefix() {
        let a = unique_name("orders");
        let b = unique_name("orders");
        assert_ne!(a, b);
        assert!(a.starts_with("orders-") && b.starts_with("orders-"));
    }
}
