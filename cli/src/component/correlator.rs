//! `tokentrail correlator`: its flags, laid over its configuration file ([`FileConfig`]), around
//! [`tokentrail_correlator::stream::run`], whose loop is a blocking thread: on SIGTERM or ctrl-c
//! it commits the open batch and returns; a restart loses nothing, so every failure exits 1.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::engine_args::{EngineArgs, StreamEngineArgs};
use crate::kafka_args::KafkaSecurityArgs;
use serde::Serialize;
use tokentrail_config::duration;
use tokentrail_correlator::stream::config::FileConfig;
use tokentrail_correlator::stream::{self, telemetry, CorrelatorConfig, Metrics};

use crate::startup::config_file::WithFile;
use crate::startup::{Component, KafkaBrokers, Probes, Shutdown, Threads};

const CORRELATOR: Component = Component { name: "correlator", service: "tokentrail-correlator", threads: Threads::One };

/// Run a correlator replica: the observations topic in, findings out, exactly once.
pub type Args = WithFile<Settings>;

/// The flags that are settings of the configuration file, named as its keys.
#[derive(clap::Args, Debug, Serialize)]
pub struct Settings {
    /// Kafka `bootstrap.servers`.
    #[arg(
        long,
        // The name of 0.1's flag, kept working.
        alias = "bootstrap",
        env = "TOKENTRAIL_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT[,...]",
        required_unless_present_any = ["config", "check_config"]
    )]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the Kafka clients (`security`).
    #[command(flatten)]
    #[serde(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// Consumer group of all correlator replicas [default: tokentrail-correlator].
    #[arg(long)]
    #[serde(rename = "group_id")]
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
    /// How often findings, state and offsets are committed together [default: 250ms].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    commit_interval: Option<Duration>,
    /// How long the group waits for a silent replica before its partitions go to the others;
    /// a replica restarted sooner gets them back without a rebalance [default: 45s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    session_timeout: Option<Duration>,
    /// How long a transaction may stay open before the broker aborts it: the longest a frozen
    /// replica holds back readers of its findings, and the longest broker outage a replica
    /// rides out without a restart. Keep it, plus the broker's 10 s abort sweep, under
    /// --session-timeout [default: 25s].
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    #[serde(serialize_with = "duration::serialize_given")]
    transaction_timeout: Option<Duration>,
    /// The most of the replica's time spent judging its state for findings due, above 0 and at
    /// most 1. A state too large to judge every --commit-interval within it is committed, and
    /// judged, less often: its backlog is read faster (1.5 times at 0.25), its findings wait
    /// longer [default: 1, a commit every interval however long judging takes].
    #[arg(long, value_name = "SHARE", value_parser = share)]
    judging_share: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    #[serde(flatten)]
    stream: StreamEngineArgs,
}

/// A number for `--judging-share`: NaN would reach the file's settings as JSON's `null`, which
/// stands for a flag not given, and be silently ignored. The range is checked with the file's.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if share.is_finite() => Ok(share),
        _ => Err(format!("{text:?} is not a number between 0 and 1")),
    }
}

/// Runs until SIGTERM or ctrl-c, then commits the open batch and exits 0; exits 1 when the
/// correlator cannot run (state unreadable, Kafka lost): a restart loses nothing. At start-up,
/// brokers refusing the TLS handshake or the login exit 77 (brokers not answering are waited for).
pub fn main(args: Args) -> ExitCode {
    let file = match CORRELATOR.configure(&args, FileConfig::problems) {
        Ok(f) => f,
        Err(exit) => return exit,
    };
    // $POD_NAME is already in `instance` (the flag's environment variable).
    let config = match file.into_config(None) {
        Ok(c) => c,
        Err(e) => return CORRELATOR.bad_config(e),
    };
    let metrics = Arc::new(Metrics::default());
    let (exported, ready) = (Arc::clone(&metrics), Arc::clone(&metrics));
    let brokers = KafkaBrokers { bootstrap: config.bootstrap.clone(), security: config.security.clone() };
    CORRELATOR.serve(
        &args.process,
        Some(brokers),
        move |meter| telemetry::register(&exported, meter),
        Probes::ready_when(move || {
            if ready.assignment_restored.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("not yet joined the group and restored its partitions' state")
            }
        }),
        |shutdown, _| run(config, metrics, shutdown),
    )
}

/// The correlator's loop on a thread of its own ([`super::on_thread`]).
async fn run(config: CorrelatorConfig, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let given_up = "the partitions' next owner resumes from the last commit";
    super::on_thread("correlator", given_up, shutdown, move |stop| stream::run(&config, &metrics, stop)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::startup::config_file::load_for_test;
    use tokentrail_correlator_core::time::{MINUTE, SECOND};

    fn load(file: &str, flags: &[&str]) -> Result<CorrelatorConfig, String> {
        let flags = [&["--instance", "c-0"], flags].concat();
        let file = load_for_test::<Settings, FileConfig>(Some(file), &flags, FileConfig::problems)?;
        file.into_config(None).map_err(|e| e.to_string())
    }

    #[test]
    fn engine_flags_over_the_file_networks_added_durations_replaced() {
        let file = r#"{"bootstrap_servers": "k:9092", "commit_interval": "2s",
                       "engine": {"cluster_networks": ["10.0.0.0/8"], "rotation_grace": "1m", "attestation_grace": "15s"}}"#;
        let c =
            load(file, &["--cluster-network", "192.168.0.0/16", "--rotation-grace", "500ms", "--pod-retention", "10m"])
                .unwrap();
        assert_eq!(c.engine.cluster_networks.len(), 2);
        assert_eq!(c.engine.rotation_grace, 500_000);
        assert_eq!(c.engine.attestation_grace, 15 * SECOND);
        assert_eq!(c.engine.retention.pods, 10 * MINUTE);
        assert_eq!(c.commit_interval, Duration::from_secs(2));
        assert_eq!(c.instance, "c-0");
    }

    #[test]
    fn the_kafka_flags_have_the_aggregator_s_names_and_the_old_bootstrap_flag_still_works() {
        let c = load(r#"{"bootstrap_servers": "file:9092"}"#, &["--bootstrap-servers", "flag:9093"]).unwrap();
        assert_eq!(c.bootstrap, "flag:9093");
        let c = load(r#"{"bootstrap_servers": "file:9092"}"#, &["--bootstrap", "old:9093"]).unwrap();
        assert_eq!(c.bootstrap, "old:9093");
        let err = load(
            r#"{"bootstrap_servers": "k:9093", "security": {"protocol": "ssl"}}"#,
            &["--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "u"],
        )
        .unwrap_err();
        assert!(err.starts_with("security.sasl: needs protocol sasl_ssl or sasl_plaintext, not ssl"), "{err}");
    }

    #[test]
    fn a_credential_retention_flag_under_a_day_is_refused_like_the_file_s() {
        let err = load(r#"{"bootstrap_servers": "k:9092"}"#, &["--credential-retention", "6h"]).unwrap_err();
        assert!(err.starts_with("engine.credential_retention: must be at least 24h"), "{err}");
    }

    #[test]
    fn the_judging_share_is_read_from_the_file_or_flag_and_must_be_a_share() {
        let c = load(r#"{"bootstrap_servers": "k:9092"}"#, &[]).unwrap();
        assert_eq!(c.judging_share, 1.0);
        let c = load(r#"{"bootstrap_servers": "k:9092", "judging_share": 0.5}"#, &["--judging-share", "0.1"]).unwrap();
        assert_eq!(c.judging_share, 0.1);
        for refused in ["0", "1.5", "-0.2"] {
            let flag = format!("--judging-share={refused}");
            let err = load(r#"{"bootstrap_servers": "k:9092"}"#, &[&flag]).unwrap_err();
            assert!(err.starts_with("judging_share: must be above 0 and at most 1"), "{refused}: {err}");
        }
        for refused in ["NaN", "inf", "a quarter"] {
            let err = load(r#"{"bootstrap_servers": "k:9092"}"#, &["--judging-share", refused]).unwrap_err();
            assert!(err.contains("is not a number between 0 and 1"), "{refused}: {err}");
        }
    }
}
