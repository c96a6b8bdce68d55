//! The subcommands that run a long-running component: each turns its flags (and, but for
//! standalone, its configuration file) into the component's configuration and hands it to the
//! shared start-up ([`crate::startup`]).

pub mod agent;
pub mod aggregator;
pub mod correlator;
pub mod incidents;
pub mod standalone;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::startup::Shutdown;

/// A Kafka loop (the correlator's, `incidents`') on a thread of its own, told to stop through
/// its flag when `shutdown` resolves, and waited for at most
/// [`tokentrail_correlator::stream::STOP_BUDGET`] after that: with the broker away, librdkafka's
/// last commit and close can outlast the pod's grace period. An unfinished stop is given up
/// (the process exits without the thread; `given_up` says who resumes from the last commit).
/// Not tokio's blocking pool: the runtime's shutdown would wait for it.
pub(crate) async fn on_thread<E>(
    name: &'static str,
    given_up: &'static str,
    shutdown: Shutdown,
    work: impl FnOnce(&AtomicBool) -> Result<(), E> + Send + 'static,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name(name.into()).spawn({
        let stop = Arc::clone(&stop);
        move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&stop)));
            let _ = done_tx.send(result);
        }
    })?;
    let finished = tokio::select! {
        // The loop stopped by itself (an error): the process exits with it.
        finished = &mut done => finished,
        () = shutdown => {
            stop.store(true, Ordering::Relaxed);
            let asked = std::time::Instant::now();
            match tokio::time::timeout(tokentrail_correlator::stream::STOP_BUDGET, done).await {
                Ok(finished) => finished,
                Err(_) => {
                    tracing::warn!(
                        waited_s = asked.elapsed().as_secs(),
                        "the {name} loop did not stop in time (Kafka unreachable?); exiting without it: {given_up}"
                    );
                    return Ok(());
                }
            }
        }
    };
    match finished {
        Ok(Ok(result)) => Ok(result?),
        _ => Err(anyhow::anyhow!("the {name} loop panicked")),
    }
}
