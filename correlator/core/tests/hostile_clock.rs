//! A node's clock is the node's to set: an agent stamping the far future must not move event
//! time for anyone else. Before this held, one attestation dated 9999-12-31 moved the engine's
//! watermark there, and every later use was expired before it was reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::observation::{
    Credential, CredentialEvent, CredentialFact, FactSource, NodeFact, ServiceAccountRef,
};
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation, Timestamp};

const FAR_FUTURE: &str = "9999-12-31T23:59:59Z";

fn api() -> PodSpec {
    pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api")
}

/// What a compromised worker-2 sends: an attestation of its own pod's token and a heartbeat,
/// both stamped with the end of time.
fn hostile_node() -> Vec<Observation> {
    let at = Timestamp::parse(FAR_FUTURE).unwrap();
    let evil = pod("evil/x-1", "uid-evil").on_node("worker-2").with_ip("10.244.2.66").running_as("x");
    vec![
        Observation::Credential(CredentialFact {
            time: at,
            event: CredentialEvent::Held,
            node: evil.node.clone(),
            pod_uid: evil.uid.clone(),
            serviceaccount: ServiceAccountRef { namespace: "evil".into(), name: "x".into() },
            credential: Credential::PodBound {
                jti: Some("j-evil".into()),
                pod_name: evil.name.clone(),
                pod_uid: evil.uid.clone(),
                node: Some(evil.node.clone()),
            },
            details: Default::default(),
        }),
        Observation::Node(NodeFact {
            time: at,
            source: Some(FactSource::Attestation),
            name: "worker-2".into(),
            ..NodeFact::default()
        }),
    ]
}

/// Uses after the attack: the api's token replayed from the internet.
fn later_uses(p: &PodSpec) -> Vec<Observation> {
    vec![
        use_of("payments/api").bound_to(p, "j1").from("10.244.1.12").at(1.0).obs(),
        use_of("payments/api").bound_to(p, "j1").from("203.0.113.50").at(5.0).obs(),
    ]
}

/// Folds, then does what the stream does every batch: expire, report.
fn stream_batch(e: &mut Engine, observations: Vec<Observation>) -> Vec<String> {
    for o in observations {
        e.observe(o);
    }
    e.expire();
    fired(&e.report())
}

fn engine_with(observations: Vec<Observation>) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    for o in cluster().into_iter().chain(observations) {
        e.observe(o);
    }
    e
}

#[test]
fn a_far_future_attestation_leaves_every_later_finding_intact() {
    let p = api();
    let mut honest = engine_with(vec![p.observed()]);
    let expected = stream_batch(&mut honest, later_uses(&p));
    assert_eq!(expected, ["token-used-off-cluster@203.0.113.50"]);

    let mut attacked = engine_with([vec![p.observed()], hostile_node()].concat());
    assert_eq!(attacked.expire(), Default::default(), "nothing is past its retention by audit time");
    assert_eq!(stream_batch(&mut attacked, later_uses(&p)), expected);
    assert_eq!(attacked.state_size().use_groups, 2, "the uses are still held, not expired on arrival");
}

#[test]
fn a_far_future_attestation_in_saved_state_leaves_later_findings_intact() {
    let p = api();
    let attacked = engine_with([vec![p.observed()], hostile_node()].concat());
    let mut restored = Engine::restore(EngineConfig::default(), &attacked.snapshot().unwrap()).unwrap();
    assert_eq!(stream_batch(&mut restored, later_uses(&p)), ["token-used-off-cluster@203.0.113.50"]);
}

#[test]
fn an_agents_clock_moves_only_its_own_nodes_watermark() {
    let p = api();
    // worker-1's agent attested one token at 0 and has reported until then; a token it never
    // held is used at 5. worker-2 claims to have reported until the end of time.
    let mut e = engine_with([vec![p.observed(), attested(&p, "j-real", 0.0)], hostile_node()].concat());
    e.observe(use_of("payments/api").bound_to(&p, "j-ghost").from("10.244.1.12").at(5.0).obs());
    e.expire();
    assert!(only(&e.report(), "token-forged-mint").is_empty(), "worker-1's agent has not reported past the grace yet");
    assert_eq!(e.watermark_lag(), Some(5 * MINUTE), "event time is the audit log's (5), not worker-2's");

    // worker-1's own heartbeat, past the use and the 2-minute grace, settles it.
    e.observe(Observation::Node(NodeFact {
        time: t(8.0),
        source: Some(FactSource::Attestation),
        name: "worker-1".into(),
        ..NodeFact::default()
    }));
    assert_eq!(only(&e.report(), "token-forged-mint").len(), 1);
}
