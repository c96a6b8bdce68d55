//! `tokentrail standalone`: its flags ([`crate::standalone::cli::Settings`]), laid over its
//! configuration file ([`FileConfig`]: the aggregator's server sections and the correlator's
//! engine section), around [`crate::standalone::run`].

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::standalone::config::FileConfig;
use crate::standalone::output::Destination;
use crate::standalone::{self, cli, StandaloneMetrics};

use crate::startup::config_file::WithFile;
use crate::startup::{Component, KafkaBrokers, Probes, Threads};

const STANDALONE: Component =
    Component { name: "standalone", service: "tokentrail-standalone", threads: Threads::PerCore };

/// Run aggregator and correlator in one process, without Kafka: the audit webhook and agents
/// in, findings to stdout, a file or a Kafka topic.
pub type Args = WithFile<cli::Settings>;

/// Runs until SIGTERM or ctrl-c, then writes the last findings and exits 0.
pub fn main(args: Args) -> ExitCode {
    let config = match STANDALONE.configure(&args, FileConfig::problems) {
        Ok(file) => file.into_config(),
        Err(exit) => return exit,
    };
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
