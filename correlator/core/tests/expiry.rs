//! Bounded state (`Engine::expire`): what is no longer seen leaves the engine by event time,
//! and leaving does not change a later verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation};

const HOUR: f64 = 60.0;

fn api() -> PodSpec {
    pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api")
}

/// Another pod on the same node, whose token rotations move the node agent's watermark on.
fn neighbour() -> PodSpec {
    pod("shop/web-9", "uid-neighbour").on_node("worker-1").with_ip("10.244.1.40").running_as("web")
}

fn engine(observations: impl IntoIterator<Item = Observation>) -> Engine {
    let mut e = Engine::new(EngineConfig::default());
    for o in cluster().into_iter().chain(observations) {
        e.observe(o);
    }
    e
}

#[test]
fn credentials_and_deleted_pods_leave_after_their_retention_and_the_rest_stays() {
    let p = api();
    let gone = pod("payments/api-0", "uid-gone").on_node("worker-2").with_ip("10.244.2.9").running_as("api");
    let mut e = engine([p.observed(), gone.observed(), gone.deleted_at(10.0)]);
    // A hundred short-lived unbound credentials in the first hour, one still used a day later.
    for i in 0..100 {
        e.observe(use_of("payments/api").unbound(&format!("j-{i}")).from("10.0.1.11").at(f64::from(i) * 0.5).obs());
    }
    e.observe(use_of("payments/api").bound_to(&p, "j-live").from("10.244.1.12").at(1.0).obs());
    let before = e.state_size();
    assert_eq!(before.use_groups, 101);
    assert_eq!(e.expire().use_groups, 0, "nothing is old yet");

    e.observe(use_of("payments/api").bound_to(&p, "j-live").from("10.244.1.12").at(26.0 * HOUR).obs());
    let expired = e.expire();
    assert_eq!(expired.use_groups, 100, "the credentials unseen for 25 h");
    assert_eq!(expired.pods, 1, "the pod deleted a day ago");
    let after = e.state_size();
    assert_eq!(after.use_groups, 1);
    assert_eq!(after.pods, before.pods - 1);
    assert!(after.total() < before.total());
}

#[test]
fn a_late_use_of_a_token_whose_uses_expired_is_not_forged() {
    let p = api();
    let n = neighbour();
    let mut e = engine([
        p.observed(),
        attested(&p, "j-real", 0.0),
        attested(&n, "j-n1", 0.0),
        use_of("payments/api").bound_to(&p, "j-real").from("10.244.1.12").at(5.0).obs(),
        attested(&n, "j-n2", 26.0 * HOUR),
        // Event time is the audit log's: the neighbour's use a day later moves it on.
        use_of("shop/web").bound_to(&n, "j-n2").from("10.244.1.40").at(26.0 * HOUR).obs(),
    ]);
    let expired = e.expire();
    assert_eq!((expired.use_groups, expired.attestations), (1, 2), "j-real and j-n1, unused for a day");
    assert_eq!(e.state_size().use_groups, 1, "only the neighbour's use is left");
    assert_eq!(e.state_size().attestations, 1, "j-n2, in use");

    // The same token used again (still valid: the apiserver extends pod tokens to a year, and
    // flags their uses stale past their first hour), and a token the agent never saw, both past
    // the grace by the node's watermark.
    e.observe(use_of("payments/api").bound_to(&p, "j-real").from("10.244.1.12").at(26.0 * HOUR + 1.0).stale().obs());
    e.observe(use_of("payments/api").bound_to(&p, "j-ghost").from("10.244.1.12").at(26.0 * HOUR + 1.0).obs());
    e.observe(attested(&n, "j-n3", 26.0 * HOUR + 10.0));
    let report = e.report();
    let forged: Vec<_> = only(&report, "token-forged-mint")
        .iter()
        .map(|f| f.credential.as_ref().and_then(|c| c.id.clone()).unwrap_or_default())
        .collect();
    assert_eq!(forged, ["JTI=j-ghost"], "expiry forgot j-real's attestation, not that the pod had old tokens");
}

#[test]
fn expiry_is_deterministic_and_survives_a_snapshot() {
    let p = api();
    let build = || {
        let mut e = engine([p.observed(), attested(&p, "j-1", 0.0)]);
        for i in 0..50 {
            e.observe(use_of("payments/api").unbound(&format!("u-{i}")).from("10.0.1.11").at(f64::from(i)).obs());
        }
        e.observe(use_of("payments/api").unbound("u-late").from("10.0.1.11").at(30.0 * HOUR).obs());
        e.expire();
        e
    };
    let (a, b) = (build(), build());
    let bytes = a.snapshot().unwrap();
    let restored = Engine::restore(EngineConfig::default(), &bytes).unwrap();
    assert_eq!(restored.state_size(), a.state_size());
    assert_eq!(a.state_size(), b.state_size());
    assert_eq!(a.state_size().use_groups, 1);
}

#[test]
fn a_partition_only_agents_write_to_expires_by_the_callers_clock() {
    let p = api();
    let mut agents_only = Engine::new(EngineConfig::default());
    agents_only.observe(attested(&p, "j-old", 0.0));
    assert_eq!(agents_only.expire().attestations, 0, "no audit event: no event time to expire by");
    assert_eq!(agents_only.expire_at(t(HOUR)).attestations, 0, "not yet past its retention");
    assert_eq!(agents_only.expire_at(t(26.0 * HOUR)).attestations, 1, "a day later by the caller's clock");
    assert_eq!(agents_only.state_size().attestations, 0);

    // Once audit events came, their time rules: a backlog replayed late keeps its evidence.
    let mut replayed = engine([attested(&p, "j-old", 0.0)]);
    replayed.observe(use_of("payments/api").bound_to(&p, "j-old").from("10.244.1.12").at(1.0).obs());
    assert_eq!(replayed.expire_at(t(1000.0 * HOUR)), Default::default());
}

#[test]
fn a_deleted_pods_attestations_leave_with_it_and_the_others_stay_for_a_year() {
    let p = api();
    let gone = pod("payments/api-0", "uid-gone").on_node("worker-2").with_ip("10.244.2.9").running_as("api");
    let mut e = engine([
        p.observed(),
        gone.observed(),
        attested(&p, "j-live", 0.0),
        attested(&gone, "j-gone-1", 0.0),
        attested(&gone, "j-gone-2", 48.0),
        gone.deleted_at(60.0),
        use_of("payments/api").bound_to(&p, "j-live").from("10.244.1.12").at(3.0 * HOUR).obs(),
    ]);
    assert_eq!(e.state_size().attestations, 3);
    let expired = e.expire();
    assert_eq!((expired.pods, expired.attestations), (1, 2), "the pod's two tokens are refused with it");
    assert_eq!(e.state_size().attestations, 1, "the living pod's token is still vouched for");
}

/// A kubelet's mints for pods of its own node are kept as their time alone: the stream (which
/// expires) finds what analyze (which never does) finds, superseded tokens and forged mints
/// included, and holds the legitimate mints compacted.
#[test]
fn kubelets_mints_for_their_own_pods_are_compacted_and_every_verdict_stays() {
    let p = api();
    let n = neighbour();
    let mut obs = vec![
        p.observed(),
        n.observed(),
        Observation::TokenMint(mint("j-user", "payments/api", "alice", "198.51.100.23", 1.0)),
        bound(mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &p),
        bound(mint("j2", "payments/api", "system:node:worker-1", "10.0.1.11", 48.0), &p),
        // Another node's kubelet minting for this pod: forged, and never compacted.
        bound(mint("j-forged", "shop/web", "system:node:worker-2", "10.0.1.12", 50.0), &n),
    ];
    obs.extend(use_of("payments/api").bound_to(&p, "j2").from("10.244.1.12").every_minute(49.0, 90));
    // j1 first used long after j2 took over: a copy. Only the mints say j1 is the older (by
    // first use it would look the newer, and the pod's own j2 superseded).
    obs.extend(use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").every_minute(100.0, 5));
    obs.extend(use_of("shop/web").bound_to(&n, "j-forged").from("10.244.1.40").every_minute(60.0, 5));

    let findings = |e: &mut Engine| {
        let mut v: Vec<(String, String)> = e
            .report()
            .findings
            .iter()
            .map(|f| (f.rule.id().to_string(), f.credential.as_ref().and_then(|c| c.id.clone()).unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    let mut analyze = engine(obs.clone());
    let expected = findings(&mut analyze);
    assert!(expected.contains(&("token-superseded-use".into(), "JTI=j1".into())), "{expected:?}");
    assert!(expected.contains(&("token-forged-mint".into(), "JTI=j-forged".into())), "{expected:?}");

    let mut stream = Engine::new(EngineConfig::default());
    let mut compacted = 0;
    for (i, o) in cluster().into_iter().chain(obs).enumerate() {
        stream.observe(o);
        if i % 10 == 0 {
            stream.report();
            compacted += stream.expire().compacted_mints;
        }
    }
    compacted += stream.expire().compacted_mints;
    assert_eq!(findings(&mut stream), expected);
    assert_eq!(compacted, 2, "j1 and j2 as their times; alice's and the forged mint whole");
    assert_eq!(stream.state_size().mints, 4);
}

/// An attestation stays while its credential is in use, and a late use of a forgotten one is
/// judged by its staleness: the pod's own old token (every use stale) is not forged; a token
/// whose uses are fresh is.
#[test]
fn attestations_in_use_stay_and_a_forgotten_ones_late_fresh_use_is_still_forged() {
    let p = api();
    let n = neighbour();
    let mut e =
        engine([p.observed(), attested(&p, "j-old", 0.0), attested(&p, "j-busy", 0.0), attested(&n, "j-n1", 0.0)]);
    for hour in 0..27 {
        e.observe(use_of("payments/api").bound_to(&p, "j-busy").from("10.244.1.12").at(f64::from(hour) * HOUR).obs());
    }
    let expired = e.expire();
    assert_eq!(expired.attestations, 2, "j-old and j-n1, never used; j-busy is in use");
    assert_eq!(e.state_size().attestations, 1);

    // j-old comes back with fresh (not stale) uses: a token that young was never this pod's.
    e.observe(use_of("payments/api").bound_to(&p, "j-old").from("10.244.1.12").at(27.0 * HOUR).obs());
    e.observe(attested(&n, "j-n2", 28.0 * HOUR));
    let report = e.report();
    let forged: Vec<_> = only(&report, "token-forged-mint")
        .iter()
        .map(|f| f.credential.as_ref().and_then(|c| c.id.clone()).unwrap_or_default())
        .collect();
    assert_eq!(forged, ["JTI=j-old"]);
    assert!(only(&report, "token-forged-mint")
        .iter()
        .all(|f| f.credential.as_ref().and_then(|c| c.id.as_deref()) != Some("JTI=j-busy")));
}
