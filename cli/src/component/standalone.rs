//! `tokentrail standalone`: its flags ([`crate::standalone::cli::Args`]) around
//! [`crate::standalone::run`]. It has no configuration file: its settings are
//! the aggregator's listeners and the engine's, all flags.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::standalone::output::Destination;
use crate::standalone::{self, cli, StandaloneMetrics};

use crate::startup::{Component, KafkaBrokers, Probes, ProcessArgs, Threads};

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
    // Ready once the servers listen: what it does from then on needs nothing outside it.
    let bound = Arc::new(AtomicBool::new(false));
    let ready = Arc::clone(&bound);
    let probes = Probes::Listen {
        readiness: Arc::new(move || match ready.load(Ordering::Relaxed) {
            true => Ok(()),
            false => Err("the servers are not listening yet"),
        }),
        connections: Arc::clone(&metrics.servers),
    };
    STANDALONE.serve(&args.process, brokers, register, probes, |shutdown, _| async move {
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if bound_rx.await.is_ok() {
                bound.store(true, Ordering::Relaxed);
            }
        });
        standalone::run(config, &metrics, Some(bound_tx), shutdown).await
    })
}
