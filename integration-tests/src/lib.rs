//! tokentrail's tests against real services, and the harness that gives them a real Apache Kafka
//! broker.
//!
//! Layout:
//! * this file: [`kafka()`], the one broker every test of a `cargo test` run shares, and
//!   [`unique_name`] for the topics, groups and transactional ids each test makes its own;
//! * `kafka/`: the Maven project that resolves the broker's jars and `broker.sh`, which starts
//!   and stops the broker (its header explains how a broker started for tests ends with them);
//!   `cluster.sh` starts a three-node cluster from the same jars;
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
//!
//! A test that stops the broker (a failure drill) takes an [`OwnBroker`] instead: a broker of its
//! own in a directory of its own, which it can kill and resume without disturbing the shared one.
//! A test of the pipeline on a distributed Kafka takes an [`OwnCluster`]: three nodes of its own
//! (`kafka/cluster.sh`), every topic replicated three times, any node of which it can kill.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rdkafka::ClientConfig;

pub mod kube;

/// The workspace's `tokentrail` binary (the CLI package's, of the profile these tests are built
/// with), built once per test binary: integration tests live in another package, so cargo does
/// not build it for them.
pub fn tokentrail_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "tokentrail"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status();
        assert!(matches!(&status, Ok(s) if s.success()), "cargo build -p tokentrail failed: {status:?}");
        // target/<profile>/deps/<test>-<hash> → target/<profile>/tokentrail
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("tokentrail")))
            .expect("the test binary lives in target/<profile>/deps")
    })
}

/// Names a running broker to use instead of starting one, as `host:port[,host:port...]`.
pub const BOOTSTRAP_ENV: &str = "TOKENTRAIL_KAFKA_BOOTSTRAP";

/// A Kafka broker the tests can reach.
#[derive(Debug)]
pub struct Broker {
    bootstrap: String,
    origin: Origin,
    secure: Option<SecureListeners>,
}

/// The secure listeners of a broker `kafka/broker.sh` started, beside its PLAINTEXT one: SSL
/// requiring a client certificate (mutual TLS), SASL_SSL with a SCRAM-SHA-512 user, and SASL_SSL
/// with OAUTHBEARER (unsigned JWTs). Their certificates and the user were made when the broker
/// started, in [`SecureListeners::dir`].
#[derive(Debug, Clone)]
pub struct SecureListeners {
    /// `bootstrap.servers` of the SSL listener.
    pub ssl: String,
    /// `bootstrap.servers` of the SASL_SSL listener.
    pub sasl_ssl: String,
    /// `bootstrap.servers` of the OAUTHBEARER (SASL_SSL) listener; `None` for a broker started
    /// by a `broker.sh` from before it had one (`broker.sh stop` starts afresh).
    pub oauth: Option<String>,
    /// The directory of the certificates and the SCRAM user's files.
    pub dir: PathBuf,
}

impl SecureListeners {
    /// The CA that signed the broker's and the client's certificates (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing the broker uses: a client trusting only it must refuse the
    /// broker.
    pub fn untrusted_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// A client certificate the SSL listener accepts, and its key.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The key of [`SecureListeners::client_cert_file`].
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The SCRAM-SHA-512 user's name.
    pub fn scram_username(&self) -> String {
        std::fs::read_to_string(self.dir.join("scram-username")).unwrap_or_default().trim().to_string()
    }

    /// A file holding the SCRAM user's password (random, made at the broker's start).
    pub fn scram_password_file(&self) -> PathBuf {
        self.dir.join("scram-password")
    }
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

    /// The broker's SSL, SASL_SSL and OAUTH listeners; `None` for a broker named by
    /// [`BOOTSTRAP_ENV`] (the harness does not know its security).
    pub fn secure(&self) -> Option<&SecureListeners> {
        self.secure.as_ref()
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
    /// `broker.sh` (start, kill, resume, stop) ran and failed; its standard error says why
    /// (Maven, Java, the broker's log).
    #[error("{script} failed ({status}):\n{stderr}")]
    Start {
        /// The script that was run.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said on standard error.
        stderr: String,
    },
    /// `broker.sh start` or `resume` succeeded but printed no usable bootstrap address.
    #[error("{script} printed no bootstrap address: {stdout:?}")]
    NoAddress {
        /// The script that was run.
        script: PathBuf,
        /// What it printed on standard output.
        stdout: String,
    },
    /// A cluster's nodes all answer, but the controller did not register all of them as
    /// brokers within 120 s.
    #[error("{registered} of {wanted} brokers registered within 120 s (logs: {}/node-N.log)", .dir.display())]
    Unregistered {
        /// Brokers the cluster's metadata named.
        registered: usize,
        /// Brokers it should have.
        wanted: usize,
        /// The cluster's directory.
        dir: PathBuf,
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
        return Ok(Broker { bootstrap: bootstrap.trim().to_owned(), origin: Origin::Environment, secure: None });
    }
    // This process is the owner: broker.sh's watchdog keeps the broker while this process (or
    // a later test binary that registers in turn) is alive, and stops it some seconds after the
    // last one has exited, so a broker started by `cargo test` does not outlive the run.
    let stdout = broker_sh(None, &["start", "--owner", &std::process::id().to_string()])?;
    Ok(Broker { bootstrap: bootstrap_in(&stdout)?, origin: Origin::Script, secure: secure_listeners(None) })
}

/// What `broker.sh listeners` says about the broker's secure listeners.
fn secure_listeners(build_dir: Option<&std::path::Path>) -> Option<SecureListeners> {
    let stdout = broker_sh(build_dir, &["listeners"]).ok()?;
    let field = |name: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::to_string))
    };
    Some(SecureListeners {
        ssl: field("ssl")?,
        sasl_ssl: field("sasl_ssl")?,
        oauth: field("oauth"),
        dir: PathBuf::from(field("tls")?),
    })
}

/// A broker of one test's own, for drills that stop it: `kafka/broker.sh` run with
/// `TOKENTRAIL_KAFKA_BUILD_DIR` set to a directory of the test's (so its own ports, data and
/// lock; the jars are copied from the shared build). The test process is its owner: if the test
/// dies, the broker's watchdog stops it. Dropping it stops the broker and deletes its data.
#[derive(Debug)]
pub struct OwnBroker {
    broker: Broker,
    build_dir: PathBuf,
}

/// How [`OwnBroker::kill`] stops the broker's JVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: Kafka's clean shutdown (logs flushed, leadership handed over, clients told).
    Term,
    /// SIGKILL: a crash; the next start recovers its logs.
    Kill,
}

impl OwnBroker {
    /// Starts a broker whose files live in `build_dir` (created if missing).
    pub fn start(build_dir: &std::path::Path) -> Result<OwnBroker, HarnessError> {
        let build_dir = build_dir.to_path_buf();
        let pid = std::process::id().to_string();
        let stdout = broker_sh(Some(&build_dir), &["start", "--owner", &pid])?;
        let bootstrap = bootstrap_in(&stdout)?;
        let secure = secure_listeners(Some(&build_dir));
        Ok(OwnBroker { broker: Broker { bootstrap, origin: Origin::Script, secure }, build_dir })
    }

    /// The broker, to reach it like the shared one.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Stops the broker's JVM with `how`, keeping its data and ports for [`OwnBroker::resume`];
    /// returns once the process has exited.
    pub fn kill(&self, how: Stop) -> Result<(), HarnessError> {
        let signal = match how {
            Stop::Term => "TERM",
            Stop::Kill => "KILL",
        };
        broker_sh(Some(&self.build_dir), &["kill", "--signal", signal]).map(drop)
    }

    /// Starts the killed broker again on the same address with the same data; returns once it
    /// answers Kafka requests.
    pub fn resume(&self) -> Result<(), HarnessError> {
        let stdout = broker_sh(Some(&self.build_dir), &["resume"])?;
        let bootstrap = bootstrap_in(&stdout)?;
        assert_eq!(bootstrap, self.broker.bootstrap, "broker.sh resume moved the broker");
        Ok(())
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Err(error) = broker_sh(Some(&self.build_dir), &["stop"]) {
            eprintln!("stopping the broker in {}: {error}", self.build_dir.display());
        }
    }
}

/// A three-node Kafka cluster of one test's own (`kafka/cluster.sh`, in `dir`): each node both
/// broker and KRaft controller, every topic replicated three times with `min.insync.replicas`
/// 2, so a test can kill any one node under load. The test process is its owner: if the test
/// dies, the cluster's watchdog stops it. Dropping it stops the cluster and deletes its data.
#[derive(Debug)]
pub struct OwnCluster {
    bootstrap: String,
    dir: PathBuf,
}

impl OwnCluster {
    /// The replication factor every topic of the cluster gets.
    pub const REPLICATION: i32 = 3;

    /// Starts the cluster, its files in `dir` (created if missing); returns once all three
    /// nodes are registered brokers (so a topic with three replicas can be created).
    pub fn start(dir: &std::path::Path) -> Result<OwnCluster, HarnessError> {
        let pid = std::process::id().to_string();
        let stdout =
            kafka_script("cluster.sh", Some(("TOKENTRAIL_KAFKA_CLUSTER_DIR", dir)), &["start", "--owner", &pid])?;
        let cluster = OwnCluster { bootstrap: bootstrap_in(&stdout)?, dir: dir.to_path_buf() };
        cluster.await_brokers(3)?;
        Ok(cluster)
    }

    /// The `bootstrap.servers` value that reaches the cluster (all three nodes).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The node id (1, 2 or 3) of the leader of `topic`'s `partition` now, if it has one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let metadata = self.metadata(Some(topic))?;
        let t = metadata.topics().iter().find(|t| t.name() == topic)?;
        t.partitions().iter().find(|p| p.id() == partition).map(|p| p.leader()).filter(|&l| l >= 0)
    }

    /// Stops node `node`'s JVM with `how`, keeping its data and ports for
    /// [`OwnCluster::resume`]; returns once the process has exited.
    pub fn kill(&self, node: i32, how: Stop) -> Result<(), HarnessError> {
        let signal = match how {
            Stop::Term => "TERM",
            Stop::Kill => "KILL",
        };
        self.script(&["kill", &node.to_string(), "--signal", signal]).map(drop)
    }

    /// Starts node `node` again on its ports and data; returns once the cluster has all three
    /// brokers registered again.
    pub fn resume(&self, node: i32) -> Result<(), HarnessError> {
        self.script(&["resume", &node.to_string()])?;
        self.await_brokers(3)
    }

    fn script(&self, args: &[&str]) -> Result<String, HarnessError> {
        kafka_script("cluster.sh", Some(("TOKENTRAIL_KAFKA_CLUSTER_DIR", &self.dir)), args)
    }

    fn metadata(&self, topic: Option<&str>) -> Option<rdkafka::metadata::Metadata> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().ok()?;
        consumer.fetch_metadata(topic, std::time::Duration::from_secs(5)).ok()
    }

    /// Waits until the cluster's metadata names `n` brokers: a node answers requests before
    /// the controller has registered (unfenced) it.
    fn await_brokers(&self, n: usize) -> Result<(), HarnessError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let seen = self.metadata(None).map_or(0, |m| m.brokers().len());
            if seen >= n {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(HarnessError::Unregistered { registered: seen, wanted: n, dir: self.dir.clone() });
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Err(error) = self.script(&["stop"]) {
            eprintln!("stopping the cluster in {}: {error}", self.dir.display());
        }
    }
}

/// Runs `broker.sh ARGS` (for the broker in `build_dir`, else the shared one); its standard
/// output, which carries only addresses (progress and errors go to standard error).
fn broker_sh(build_dir: Option<&std::path::Path>, args: &[&str]) -> Result<String, HarnessError> {
    kafka_script("broker.sh", build_dir.map(|dir| ("TOKENTRAIL_KAFKA_BUILD_DIR", dir)), args)
}

/// Runs `kafka/SCRIPT ARGS` with `env` set; its standard output (addresses only).
fn kafka_script(script: &str, env: Option<(&str, &std::path::Path)>, args: &[&str]) -> Result<String, HarnessError> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka").join(script);
    let mut command = Command::new("bash");
    command.arg(&script).args(args).stdin(Stdio::null());
    if let Some((name, dir)) = env {
        command.env(name, dir);
    }
    let output = command.output().map_err(|source| HarnessError::Spawn { script: script.clone(), source })?;
    if !output.status.success() {
        return Err(HarnessError::Start {
            script,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The bootstrap address `broker.sh start` or `resume` printed last.
fn bootstrap_in(stdout: &str) -> Result<String, HarnessError> {
    match stdout.lines().last().map(str::trim) {
        Some(bootstrap) if bootstrap.contains(':') => Ok(bootstrap.to_owned()),
        _ => Err(HarnessError::NoAddress {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka").join("broker.sh"),
            stdout: stdout.to_owned(),
        }),
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
