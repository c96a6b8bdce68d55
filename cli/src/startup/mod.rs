//! Process start-up, written once for every subcommand that runs a component (agent,
//! aggregator, correlator, standalone): logging, metrics export, the probe listener
//! (`/healthz`, `/readyz`, `/metrics`), the runtime, SIGTERM and ctrl-c as a shutdown future,
//! and the exit status. The components are libraries whose `run` takes a
//! configuration and that future; `cli/src/component/*.rs` turn flags (and a configuration file)
//! into that configuration.
//!
//! * [`config_file`]: `--config` and `--check-config`; the environment and flags laid over the
//!   file by one rule.
//! * [`telemetry`]: OTLP and Prometheus export of the instruments the components register.
//! * [`kafka`]: one connection to the Kafka brokers with the component's security settings,
//!   made beside the component as it starts ([`Component::serve`] with [`KafkaBrokers`]).
//!
//! Exit statuses: 0 after a clean shutdown; [`exit::BAD_CONFIG`] (2) for unusable flags or
//! configuration (clap's own status for bad flags, too); [`exit::FAILED`] (1) when the component
//! cannot run; [`exit::TEMPFAIL`] (75, `EX_TEMPFAIL`) when it stopped for a reason a restart may
//! clear ([`Failure::is_retryable`]); [`exit::KAFKA_REFUSED`] (77, `EX_NOPERM`) when the Kafka
//! brokers refused the connection's TLS handshake or SASL login at start-up.

pub mod config_file;
pub mod kafka;
pub mod telemetry;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use opentelemetry::metrics::Meter;
use tokentrail_aggregator::probes::{self, Readiness, Scrape};
use tokentrail_config::kafka::KafkaSecurity;

/// Exit statuses of the component subcommands.
pub mod exit {
    /// The component could not run, or stopped on an error a restart does not clear.
    pub const FAILED: u8 = 1;
    /// The flags or the configuration are unusable.
    pub const BAD_CONFIG: u8 = 2;
    /// The component stopped on an error a restart (with back-off) may clear (`EX_TEMPFAIL`).
    pub const TEMPFAIL: u8 = 75;
    /// The Kafka brokers refused the connection at start-up: the TLS handshake (a CA that does
    /// not sign the brokers' certificates, a client certificate they do not trust) or the SASL
    /// login (wrong user or password, a mechanism they do not offer). The certificates or the
    /// credentials must change; a restart alone does not help (`EX_NOPERM`).
    pub const KAFKA_REFUSED: u8 = 77;
}

/// The environment variable of `--metrics-listen`.
pub const METRICS_LISTEN_ENV: &str = "TOKENTRAIL_METRICS_LISTEN";

/// The flags of every long-running component: logging, metrics export and the probe listener.
#[derive(clap::Args, Debug)]
pub struct ProcessArgs {
    /// OpenTelemetry collector (OTLP/gRPC) to export metrics to, e.g. `http://localhost:4317`;
    /// no export without it.
    #[arg(long, env = telemetry::ENDPOINT_ENV, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Serve `GET /healthz` (liveness), `GET /readyz` (readiness) and `GET /metrics`
    /// (Prometheus text format) over plain HTTP on this address, e.g. `0.0.0.0:9090`; none
    /// without it. The aggregator's is its probe listener (`--health-listen`, `health.listen`).
    #[arg(long, env = METRICS_LISTEN_ENV, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log debug messages too.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Why a component stopped, as far as its exit status is concerned.
pub trait Failure: fmt::Display {
    /// Whether running again (a restart, with back-off) can succeed without operator action.
    fn is_retryable(&self) -> bool {
        false
    }
}

impl Failure for tokentrail_agent::AgentError {}

impl Failure for tokentrail_aggregator::AggregatorError {
    fn is_retryable(&self) -> bool {
        tokentrail_aggregator::AggregatorError::is_retryable(self)
    }
}

impl Failure for tokentrail_correlator::stream::CorrelatorError {}

impl Failure for crate::standalone::StandaloneError {}

impl Failure for anyhow::Error {}

/// Who serves a component's probes and `/metrics`.
pub enum Probes {
    /// [`Component::serve`], on `--metrics-listen` when given: `/readyz` asks `readiness`; the
    /// listener's connections are counted in `connections` (the aggregator's instruments,
    /// exported by standalone; a fresh, unexported set for the agent and the correlator).
    Listen {
        /// The component's readiness.
        readiness: Arc<dyn Readiness>,
        /// Where the listener's connections are counted.
        connections: Arc<tokentrail_aggregator::Metrics>,
    },
    /// The component itself (the aggregator, on its `health.listen`); `exposes`: it has a
    /// listener, so `run` is handed the `/metrics` renderer.
    Own {
        /// Whether the component serves `/metrics`.
        exposes: bool,
    },
}

impl Probes {
    /// Served on `--metrics-listen`, ready when `ready` says so.
    pub fn ready_when(ready: impl Fn() -> Result<(), &'static str> + Send + Sync + 'static) -> Probes {
        Probes::Listen { readiness: Arc::new(ready), connections: Arc::default() }
    }
}

/// The Kafka brokers a component's clients use, as [`Component::serve`] checks them.
#[derive(Clone, Debug)]
pub struct KafkaBrokers {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The component's security section.
    pub security: KafkaSecurity,
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or ctrl-c; what a component's `run` takes.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The runtime a component needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// One thread: the agent (a few hundred files and one stream on every node, where its CPU
    /// and memory footprint matter) and the correlator (whose loop is a blocking thread).
    One,
    /// A worker per core: servers and pipelines side by side.
    PerCore,
}

/// A long-running component as start-up sees it.
#[derive(Clone, Copy, Debug)]
pub struct Component {
    /// The subcommand, in messages: `tokentrail agent: ...`.
    pub name: &'static str,
    /// The OpenTelemetry `service.name`.
    pub service: &'static str,
    /// Its runtime.
    pub threads: Threads,
}

impl Component {
    /// Logs to stderr, without colours (the logs go to a collector); debug with `verbose`.
    pub fn init_logging(&self, verbose: bool) {
        let level = if verbose { tracing::Level::DEBUG } else { tracing::Level::INFO };
        let subscriber = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(std::io::stderr);
        // Already set (a test running several components in one process): keep the first.
        let _ = subscriber.try_init();
    }

    /// The start of every component with a configuration file: `--check-config` (which ends
    /// the process: `Err` with its exit status), logging, then the file with the environment and
    /// flags laid over it ([`config_file::load`]; `Err(2)` when unusable).
    pub fn configure<S, T>(
        &self,
        args: &config_file::WithFile<S>,
        validate: impl Fn(&T) -> Vec<tokentrail_config::Problem>,
    ) -> Result<T, ExitCode>
    where
        S: clap::Args + config_file::Flags,
        T: serde::de::DeserializeOwned,
    {
        if let Some(path) = &args.files.check_config {
            return Err(config_file::check_command(path, validate));
        }
        self.init_logging(args.process.verbose);
        config_file::load(args.files.config.as_deref(), &args.settings, validate).map_err(|e| self.bad_config(e))
    }

    /// Reports an unusable configuration; exit 2.
    pub fn bad_config(&self, error: impl fmt::Display) -> ExitCode {
        eprintln!("tokentrail {}: {error}", self.name);
        ExitCode::from(exit::BAD_CONFIG)
    }

    /// Starts metrics export (OTLP when an endpoint is configured, Prometheus when a listener
    /// serves `/metrics`; `register` adds the component's instruments), builds the runtime,
    /// binds the probe listener (`probes`), runs `run` until it returns (it is handed the
    /// shutdown future, and the `/metrics` renderer when the component serves its own
    /// probes), exports the last metrics and maps the result to the exit status.
    ///
    /// With `kafka`, one connection checks the brokers on a thread of its own while the
    /// component starts ([`kafka::check_connection`]). Beside it rather than before it, so that
    /// the probes answer at once: a pod whose brokers are slow to answer is alive and not
    /// ready, not restarted. Brokers that refuse the TLS handshake or the login stop the
    /// component with their reason and [`exit::KAFKA_REFUSED`], as an unusable secret file
    /// stops it with 2; brokers that do not answer are only reported, and the component's own
    /// clients keep trying.
    pub fn serve<F, E>(
        &self,
        process: &ProcessArgs,
        kafka: Option<KafkaBrokers>,
        register: impl FnOnce(&Meter),
        probes: Probes,
        run: impl FnOnce(Shutdown, Option<Scrape>) -> F,
    ) -> ExitCode
    where
        F: Future<Output = Result<(), E>>,
        E: Failure,
    {
        let runtime = match self.threads {
            Threads::One => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            Threads::PerCore => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        };
        let runtime = match runtime {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tokentrail {}: cannot start the runtime: {e}", self.name);
                return ExitCode::from(exit::FAILED);
            }
        };
        // The stop signals are taken over before anything that takes time: a SIGTERM during
        // start-up (a pod deleted as it starts) then stops the component cleanly instead of
        // killing it. The line below says from when that holds.
        let shutdown = {
            let _runtime = runtime.enter();
            shutdown_signal()
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "{} starting", self.name);
        let listen = match &probes {
            Probes::Listen { .. } => process.metrics_listen,
            Probes::Own { .. } => None,
        };
        let exports = telemetry::Exports {
            otlp: telemetry::endpoint(process.otlp_endpoint.as_deref()),
            otlp_interval: None,
            prometheus: listen.is_some() || matches!(probes, Probes::Own { exposes: true }),
        };
        let exporter = match telemetry::start(exports, self.service, register) {
            Ok(e) => e,
            Err(e) => return self.bad_config(e),
        };
        let scrape = exporter.as_ref().and_then(telemetry::Telemetry::scrape);
        let checked = kafka.map(|brokers| self.check_kafka(brokers));
        let (stop_probes, stopped) = tokio::sync::watch::channel(false);
        let outcome = runtime.block_on(async {
            let own_scrape = match (probes, listen) {
                (Probes::Listen { readiness, connections }, Some(addr)) => {
                    let answers = probes::Answers { readiness, scrape: scrape.clone() };
                    match probes::Server::bind(addr, answers, connections, stopped).await {
                        Ok(server) => drop(tokio::spawn(server.serve())),
                        Err(e) => {
                            eprintln!("tokentrail {}: probe listener: {e}", self.name);
                            return Err(exit::FAILED);
                        }
                    }
                    None
                }
                (Probes::Listen { .. }, None) => None,
                (Probes::Own { .. }, _) => scrape,
            };
            let run = run(Box::pin(shutdown), own_scrape);
            let Some(checked) = checked else { return Ok(run.await) };
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => Ok(result),
                refused = checked => match refused {
                    Ok(status) => Err(status),
                    // Checked and usable, or only unanswered: the component goes on.
                    Err(_) => Ok(run.await),
                },
            }
        });
        let _ = stop_probes.send(true);
        match outcome {
            Ok(_) => drop(runtime),
            // The component's clients may be blocked in a request to the same brokers for as
            // long again: not waited for.
            Err(_) => runtime.shutdown_background(),
        }
        // After the run, outside its runtime: the final values are exported before exit.
        telemetry::shutdown(exporter);
        match outcome {
            Ok(result) => self.exit(result),
            Err(status) => ExitCode::from(status),
        }
    }

    /// Starts [`kafka::check_connection`] on a thread (it blocks for up to
    /// [`kafka::CONNECT_TIMEOUT`]); resolves to the exit status when the settings or the
    /// brokers refuse the connection. A thread rather than the runtime's blocking pool, which
    /// would hold the shutdown of a component that stops sooner.
    fn check_kafka(&self, brokers: KafkaBrokers) -> tokio::sync::oneshot::Receiver<u8> {
        use kafka::ConnectError as E;
        let (refused, verdict) = tokio::sync::oneshot::channel();
        let name = self.name;
        std::thread::spawn(move || {
            let Err(e) = kafka::check_connection(&brokers.bootstrap, &brokers.security, kafka::CONNECT_TIMEOUT) else {
                tracing::info!(bootstrap = %brokers.bootstrap, "kafka: connected");
                return;
            };
            let status = match &e {
                E::Secret(_) | E::Client(_) => exit::BAD_CONFIG,
                E::Refused { .. } => exit::KAFKA_REFUSED,
                E::Unreachable { .. } => {
                    tracing::warn!(error = %e, "{name} keeps trying to reach Kafka");
                    return;
                }
            };
            tracing::error!(error = %e, "{name} cannot use Kafka");
            eprintln!("tokentrail {name}: {e}");
            let _ = refused.send(status);
        });
        verdict
    }

    /// The exit status of a run's result, the error logged and printed.
    pub fn exit<E: Failure>(&self, result: Result<(), E>) -> ExitCode {
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let retryable = e.is_retryable();
                tracing::error!(error = %e, retryable, "{} stopped", self.name);
                eprintln!("tokentrail {}: {e}", self.name);
                ExitCode::from(if retryable { exit::TEMPFAIL } else { exit::FAILED })
            }
        }
    }
}

/// Takes over SIGTERM (Kubernetes stopping the pod) and SIGINT (ctrl-c) now, inside a runtime;
/// the future resolves on the first of them.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    // Registration fails only without a signal driver (never on Linux): that signal then keeps
    // its default action.
    let term = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let received = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => drop(s.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = received(term) => {}
            () = received(interrupt) => {}
        }
        tracing::info!("shutdown requested");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Stopped(bool);

    impl fmt::Display for Stopped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stopped")
        }
    }

    impl Failure for Stopped {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    const TEST: Component = Component { name: "test", service: "tokentrail-test", threads: Threads::One };

    #[test]
    fn exit_statuses_say_clean_fatal_retryable_or_misconfigured() {
        let status = |code: u8| format!("{:?}", ExitCode::from(code));
        assert_eq!(format!("{:?}", TEST.exit::<Stopped>(Ok(()))), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(format!("{:?}", TEST.exit(Err(Stopped(false)))), status(1));
        assert_eq!(format!("{:?}", TEST.exit(Err(Stopped(true)))), status(75));
        assert_eq!(format!("{:?}", TEST.bad_config("no")), status(2));
    }

    #[test]
    fn the_aggregator_keeps_its_retryable_distinction() {
        use tokentrail_aggregator::error::ConfigError;
        use tokentrail_aggregator::AggregatorError;
        let config = AggregatorError::Config(ConfigError(vec!["kafka.bootstrap_servers: is empty".into()]));
        assert!(!Failure::is_retryable(&config));
        assert!(Failure::is_retryable(&AggregatorError::Closed("the queue")));
        let process = ProcessArgs { otlp_endpoint: Some(String::new()), metrics_listen: None, verbose: false };
        let aggregator = Component { name: "aggregator", service: "tokentrail-aggregator", threads: Threads::One };
        let own = Probes::Own { exposes: false };
        let status =
            aggregator.serve(&process, None, |_| {}, own, |_, _| async { Err(AggregatorError::Closed("the queue")) });
        assert_eq!(format!("{status:?}"), format!("{:?}", ExitCode::from(75)));
    }
}
