//! `tokentrail standalone`: its flags ([`crate::standalone::cli::Args`]) around
//! [`crate::standalone::run`]. It has no configuration file: its settings are
//! the aggregator's listeners and the engine's, all flags.

use std::process::ExitCode;
use std::sync::Arc;

use crate::standalone::output::Destination;
use crate::standalone::{self, cli, StandaloneMetrics};

use crate::startup::{Component, KafkaBrokers, ProcessArgs, Threads};

const STANDALONE: Component =
    Component { name: "standalone", service: "tokentrail-standalone", threads: Threads::PerCore };

/// Run aggregator and correlator in one process, without Kafka: the audit webhook and agents
/// in, findings to stdout, a file or a Kafka topic.
#[derive(clap::Args, Debug)]
// No argument group of its own: the flags' struct is also named `Args`, and group names are ids.
#[group(skip)]
pub struct Args {
    #[command(flatten)]
    settings: cli::Args,
    #[command(flatten)]
    process: ProcessArgs,
}

/// Runs until SIGTERM or ctrl-c, then writes the last findings and exits 0.
pub fn main(args: Args) -> ExitCode {
    STANDALONE.init_logging(args.process.verbose);
    let config = match args.settings.config() {
        Ok(c) => c,
        Err(e) => return STANDALONE.bad_config(e),
    };
    if let Err(e) = config.validate() {
        return STANDALONE.bad_config(e);
    }
    let brokers = match &config.destination {
        Destination::Kafka { bootstrap, security, .. } => {
            Some(KafkaBrokers { bootstrap: bootstrap.clone(), security: (**security).clone() })
        }
        _ => None,
    };
    let metrics = StandaloneMetrics::default();
    let (servers, engine) = (Arc::clone(&metrics.servers), Arc::clone(&metrics.engine));
    let register = move |meter: &_| {
        tokentrail_aggregator::telemetry::register(&servers, meter);
        tokentrail_correlator::stream::telemetry::register(&engine, meter);
    };
    STANDALONE.serve(&args.process, brokers, register, |shutdown| async move {
        standalone::run(config, &metrics, None, shutdown).await
    })
}
