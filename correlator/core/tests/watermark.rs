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
