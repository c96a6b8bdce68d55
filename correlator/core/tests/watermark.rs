//! The watermark lag the streaming correlator exports: how far the slowest node's agent trails
//! the latest event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::observation::{FactSource, NodeFact};
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation};

fn agent_report(node: &str, minutes: f64) -> Observation {
    Observation::Node(NodeFact {
        time: t(minutes),
        source: Some(FactSource::Attestation),
        name: node.to_string(),
        ..NodeFact::default()
    })
}

#[test]
fn lag_is_the_slowest_agent_behind_the_latest_event() {
    let mut engine = Engine::new(EngineConfig::default());
    assert_eq!(engine.watermark_lag(), None, "no agent has reported");
    engine.observe(agent_report("worker-1", 10.0));
    engine.observe(agent_report("worker-2", 4.0));
    engine.observe(use_of("shop/web").from("10.244.1.7").at(12.0).obs());
    assert_eq!(engine.watermark_lag(), Some(8 * MINUTE), "worker-2 trails the use at 12 by 8 minutes");
    // worker-2's heartbeat catches up; worker-1 is now the slowest.
    engine.observe(agent_report("worker-2", 12.0));
    assert_eq!(engine.watermark_lag(), Some(2 * MINUTE));
}

#[test]
fn agents_reporting_before_any_audit_event_leave_nothing_waiting() {
    // Agents' own times never move event time: before the first audit event there is none, and
    // the lag is not a subtraction from the beginning of time (a streaming correlator crashed on it).
    let mut engine = Engine::new(EngineConfig::default());
    engine.observe(agent_report("worker-1", 10.0));
    assert_eq!(engine.watermark_lag(), None);
}

#[test]
fn a_progress_moves_the_clocks_its_repeated_node_facts_would_have() {
    use tokentrail_correlator_core::observation::{NodeProgress, Progress};
    let start = |engine: &mut Engine| {
        engine.observe(agent_report("worker-1", 10.0));
        engine.observe(agent_report("worker-2", 4.0));
        engine.observe(use_of("shop/web").from("10.244.1.7").at(12.0).obs());
    };
    // Heartbeats and a kubelet's request, as the aggregator received them.
    let mut repeats = Engine::new(EngineConfig::default());
    start(&mut repeats);
    repeats.observe(agent_report("worker-2", 12.0));
    repeats.observe(agent_report("worker-1", 13.0));
    repeats.observe(Observation::Node(NodeFact {
        time: t(14.0),
        source: Some(FactSource::AuditLog),
        name: "worker-1".into(),
        ..NodeFact::default()
    }));
    // The same repeats, as the aggregator broadcasts them: one progress.
    let mut progress = Engine::new(EngineConfig::default());
    start(&mut progress);
    progress.observe(Observation::Progress(Progress {
        logged: Some(t(14.0)),
        nodes: vec![
            NodeProgress { name: "worker-1".into(), reported_until: t(13.0) },
            NodeProgress { name: "worker-2".into(), reported_until: t(12.0) },
        ],
    }));
    assert_eq!(repeats.watermark_lag(), Some(2 * MINUTE), "the log at 14, worker-2 at 12");
    assert_eq!(progress.watermark_lag(), repeats.watermark_lag());
    // Agents alone move no event time, in a progress as in their heartbeats.
    let mut agents_only = Engine::new(EngineConfig::default());
    start(&mut agents_only);
    agents_only.observe(Observation::Progress(Progress {
        logged: None,
        nodes: vec![NodeProgress { name: "worker-2".into(), reported_until: t(600.0) }],
    }));
    assert_eq!(agents_only.watermark_lag(), Some(2 * MINUTE), "worker-1 at 10 trails the use at 12");
}
