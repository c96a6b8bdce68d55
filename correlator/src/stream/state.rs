//! What one input partition's correlator holds: an engine per cluster and what it has sent.
//!
//! The whole of it is one record in the changelog topic, written in the same transaction as the
//! findings it led to and the input offsets it has consumed, so the three never disagree.

use std::collections::BTreeMap;

use tokentrail_correlator_core::emit::Emitter;
use tokentrail_correlator_core::expiry::Expired;
use tokentrail_correlator_core::ocsf::Activity;
use tokentrail_correlator_core::time::Micros;
use tokentrail_correlator_core::{Engine, EngineConfig, Finding, Observation};

/// State of one input partition.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    /// One engine per cluster: clusters share partitions, never pods or addresses.
    engines: BTreeMap<String, Engine>,
    /// Findings already sent from this partition.
    emitter: Emitter,
}

impl PartitionState {
    /// Restores persisted state under the given settings.
    pub fn restore(bytes: &[u8], config: &EngineConfig) -> Result<PartitionState, serde_json::Error> {
        let mut state: PartitionState = serde_json::from_slice(bytes)?;
        for (cluster, engine) in &mut state.engines {
            engine.reconfigure(for_cluster(config, cluster));
        }
        Ok(state)
    }

    /// The bytes to persist.
    pub fn snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Folds one observation about `cluster` in.
    pub fn observe(&mut self, cluster: &str, observation: Observation, config: &EngineConfig) {
        self.engines
            .entry(cluster.to_string())
            .or_insert_with(|| Engine::new(for_cluster(config, cluster)))
            .observe(observation);
    }

    /// The findings due downstream now (new ones, and material updates), after expiring what
    /// the engines no longer need (bounded state, by event time: `tokentrail_correlator_core::expiry`).
    pub fn due(&mut self) -> Vec<(Finding, Activity)> {
        let mut expired = false;
        let mut findings = Vec::new();
        for engine in self.engines.values_mut() {
            expired |= engine.expire() != Expired::default();
            findings.extend(engine.report().findings);
        }
        if expired {
            self.emitter.forget_absent(&findings);
        }
        self.emitter.due(&findings).into_iter().map(|(f, a)| (f.clone(), a)).collect()
    }

    /// How far the slowest node's agent trails the latest event, over every cluster's engine.
    pub fn watermark_lag(&self) -> Option<Micros> {
        self.engines.values().filter_map(Engine::watermark_lag).max()
    }

    /// How much the engines hold: use groups, attested credentials and pods.
    pub fn size(&self) -> usize {
        self.engines.values().map(|e| e.state_size().total()).sum()
    }
}

fn for_cluster(config: &EngineConfig, cluster: &str) -> EngineConfig {
    let mut c = config.clone();
    if !cluster.is_empty() {
        c.cluster = Some(cluster.to_string());
    }
    c
}
