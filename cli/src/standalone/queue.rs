//! The in-process queue that takes the place of the observations topic: the servers deliver
//! into it (it is their [`Sink`]), the engine loop reads from it.
//!
//! Bounded: when the engine falls behind, `deliver` waits for room, so the webhook answers the
//! apiserver later and agents get their acks later (back-pressure instead of unbounded memory).
//! A delivery is acknowledged once queued: the queue, like the engine's state, lives in memory
//! only, so a crash loses what it held (docs/design.md §1: standalone mode is for small clusters and
//! trials; the distributed pipeline is the durable one).
//!
//! Observations stay domain values from the servers to the engine: nothing is encoded.

use std::sync::Mutex;

use tokentrail_aggregator::attest::PodNodes;
use tokentrail_aggregator::route::Directory;
use tokentrail_aggregator::sink::{DeadLetter, Delivery, Sink};
use tokentrail_aggregator::AggregatorError;
use tokentrail_correlator_core::Observation;
use tokio::sync::mpsc;

/// One queued observation and the cluster it is about.
pub type Queued = (String, Observation);

/// The servers' end of the queue.
pub struct QueueSink {
    tx: mpsc::Sender<Queued>,
    /// Where the audit log placed pods (the attestation node check), learned as the
    /// aggregator's router learns it.
    directory: Mutex<Directory>,
}

impl QueueSink {
    /// A queue of `capacity` observations; the receiver goes to the engine loop.
    pub fn new(capacity: usize, directory_capacity: usize) -> (QueueSink, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (QueueSink { tx, directory: Mutex::new(Directory::new(directory_capacity)) }, rx)
    }
}

impl PodNodes for QueueSink {
    fn node_of(&self, cluster: &str, pod_uid: &str) -> Option<String> {
        let directory = self.directory.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        directory.node_of(cluster, pod_uid).map(str::to_string)
    }
}

impl Sink for QueueSink {
    fn deliver<'a>(
        &'a self,
        cluster: &'a str,
        observations: Vec<Observation>,
        dead_letter: Option<DeadLetter<'a>>,
    ) -> Delivery<'a> {
        Box::pin(async move {
            if let Some(d) = dead_letter {
                // No dead-letter topic here: the problem is logged (never the body, which may
                // hold anything the apiserver logged) and counted by the server.
                tracing::warn!(source = d.topic, cluster = ?d.cluster, decoded_events = d.decoded_events, error = d.error,
                    "input with problems; its undecodable part is dropped (no dead-letter topic in standalone mode)");
            }
            let mut queued = 0;
            for o in observations {
                // Only to learn pod placements: there is one engine per cluster, no partitions.
                let _ = self.directory.lock().unwrap_or_else(std::sync::PoisonError::into_inner).route(cluster, &o);
                self.tx
                    .send((cluster.to_string(), o))
                    .await
                    .map_err(|_| AggregatorError::Closed("the correlator's queue"))?;
                queued += 1;
            }
            Ok(queued)
        })
    }
}
