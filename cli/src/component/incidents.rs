//! `tokentrail incidents`: its flags, laid over its configuration file ([`FileConfig`]), around
//! [`tokentrail_correlator::incidents::run`], a blocking loop on a thread of its own as the
//! correlator's: on SIGTERM or ctrl-c it commits the open batch and returns; a restart rebuilds
//! everything from the findings topic, so every failure exits 1.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokentrail_config::duration;
use tokentrail_correlator::incidents::config::FileConfig;
use tokentrail_correlator::incidents::{self, telemetry, IncidentsConfig, Metrics};

use crate::kafka_args::KafkaSecurityArgs;
use crate::startup::config_file::WithFile;
use crate::startup::{Component, KafkaBrokers, Probes, Shutdown, Threads};

const INCIDENTS: Component = Component { name: "incidents", service: "tokentrail-incidents", threads: Threads::One };

/// Run the incidents process: the findings topic in, incidents out, exactly once (one replica).
pub type Args = WithFile<Settings>;

/// The flags that are settings of the configuration file, named as its keys.
#[derive(clap::Args, Debug, Serialize)]
pub struct Settings {
    /// Kafka `bootstrap.servers`.
    #[arg(
        long,
        env = "TOKENTRAIL_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT[,...]",
        required_unless_present_any = ["config", "check_config"]
    )]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the Kafka clients (`security`).
    #[command(flatten)]
    #[serde(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Consumer group its offsets are committed under [default: tokentrail-incidents].
    #[arg(long)]
    #[serde(rename = "group_id")]
    group: Option<String>,
    /// Its transactional id, the same across restarts [default: tokentrail-incidents].
    #[arg(long)]
    instance: Option<String>,
    /// Input topic of findings (tokentrail.finding/v1 JSON) [default: tokentrail.findings].
    #[arg(long)]
    findings_topic: Option<String>,
    /// Output topic of incidents [default: tokentrail.incidents].
    #[arg(long)]
    incidents_topic: Option<String>,
    /// How often incidents and offsets are committed together [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    commit_interval: Option<Duration>,
    /// How long a transaction may stay open before the broker aborts it [default: 25s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    transaction_timeout: Option<Duration>,
    /// An incident is forgotten once the latest finding is this far past its end, by event
    /// time; at least 24h [default: 48h].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    horizon: Option<Duration>,
    /// The most findings held; past it the incidents that ended earliest are forgotten
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    max_findings: Option<usize>,
}

/// Runs until SIGTERM or ctrl-c, then commits the open batch and exits 0; exits 1 when it
/// cannot run (Kafka lost): a restart loses nothing.
pub fn main(args: Args) -> ExitCode {
    let file = match INCIDENTS.configure(&args, FileConfig::problems) {
        Ok(f) => f,
        Err(exit) => return exit,
    };
    let config = file.into_config();
    let metrics = Arc::new(Metrics::default());
    let (exported, ready) = (Arc::clone(&metrics), Arc::clone(&metrics));
    let brokers = KafkaBrokers { bootstrap: config.bootstrap.clone(), security: config.security.clone() };
    INCIDENTS.serve(
        &args.process,
        Some(brokers),
        move |meter| telemetry::register(&exported, meter),
        Probes::ready_when(move || {
            if ready.replayed_all.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("still rebuilding the incidents from the findings topic")
            }
        }),
        |shutdown, _| run(config, metrics, shutdown),
    )
}

/// The loop on a thread of its own ([`super::on_thread`]).
async fn run(config: IncidentsConfig, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let given_up = "the next start resumes from the last commit";
    super::on_thread("incidents", given_up, shutdown, move |stop| incidents::run(&config, &metrics, stop)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::startup::config_file::load_for_test;

    #[test]
    fn flags_override_the_file() {
        let file = r#"{"bootstrap_servers": "k:9092", "incidents_topic": "file.incidents", "max_findings": 10}"#;
        let flags = ["--incidents-topic", "flag.incidents", "--horizon", "72h"];
        let c = load_for_test::<Settings, FileConfig>(Some(file), &flags, FileConfig::problems).unwrap().into_config();
        assert_eq!(c.incidents_topic, "flag.incidents");
        assert_eq!(c.limits.max_findings, 10);
        assert_eq!(c.limits.horizon, 72 * 3600 * 1_000_000);
        let err =
            load_for_test::<Settings, FileConfig>(Some(file), &["--horizon", "1h"], FileConfig::problems).unwrap_err();
        assert!(err.starts_with("horizon: must be at least 24h"), "{err}");
    }
}
