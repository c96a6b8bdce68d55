//! Property: the report does not depend on the order evidence arrives in. Audit logs from
//! several apiservers interleave, files are read in any order, and decoder threads finish in any
//! order; the engine must give the same findings, counts and samples every time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::observation::{SecretRead, Stage};
use tokentrail_correlator_core::{Engine, EngineConfig, Observation, Report};

/// A scenario that exercises every rule family at once.
fn incident() -> Vec<Observation> {
    let api = pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let web = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let db_old = pod("shop/db-0", "uid-db-1").on_node("worker-3").with_ip("10.244.3.30").since(0.0);
    let db_new = pod("shop/db-0", "uid-db-2").on_node("worker-3").with_ip("10.244.3.31").since(62.0);
    let exporter =
        pod("monitoring/exp-0", "uid-exp").on_node("worker-2").with_ip("10.244.2.5").mounting("exp-token-abcde");
    let mut obs = cluster();
    obs.extend([api.observed(), web.observed(), exporter.observed(), db_old.status_patched(), db_new.status_patched()]);
    obs.push(db_old.deleted_at(60.0));
    obs.push(bound(mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &api));
    obs.push(bound(mint("j2", "payments/api", "system:node:worker-1", "10.0.1.11", 48.0), &api));
    obs.push(bound(mint("jx", "payments/api", "alice", "198.51.100.23", 20.0), &api));
    obs.extend(use_of("payments/api").bound_to(&api, "j1").from("10.244.1.12").every_minute(0.5, 48));
    obs.extend(use_of("payments/api").bound_to(&api, "j2").from("10.244.1.12").every_minute(48.3, 30));
    obs.push(exec_into(&api, "alice", "198.51.100.23", 30.0));
    obs.extend(
        use_of("payments/api")
            .bound_to(&api, "j1")
            .via(&["10.244.1.12", "203.0.113.50"])
            .listing_secrets("payments")
            .every_minute(33.0, 40),
    );
    obs.extend(use_of("payments/api").bound_to(&api, "j1").from("10.244.2.7").every_minute(40.0, 3));
    obs.extend(use_of("shop/db").bound_to(&db_old, "jd1").from("10.244.3.30").every_minute(1.0, 50));
    obs.extend(use_of("shop/db").bound_to(&db_new, "jd2").from("10.244.3.31").every_minute(63.0, 10));
    obs.extend(use_of("monitoring/exp").legacy("exp-token-abcde").from("10.244.2.5").every_minute(0.0, 20));
    obs.push(use_of("monitoring/exp").legacy("exp-token-abcde").from("198.51.100.77").at(50.0).obs());
    obs.push(token_secret("monitoring", "exp-token-abcde", "exp"));
    obs.push(secret_list("alice", "monitoring", "198.51.100.23", 31.0));
    obs.push(
        use_of("shop/web")
            .bound_to(&web, "jw")
            .from("10.244.2.7")
            .at(5.0)
            .audit_id("dup")
            .stage(Stage::RequestReceived)
            .obs(),
    );
    obs.push(
        use_of("shop/web")
            .bound_to(&web, "jw")
            .from("10.244.2.7")
            .at(5.0)
            .audit_id("dup")
            .stage(Stage::ResponseComplete)
            .obs(),
    );
    obs.push(auth_failure("203.0.113.50", 90.0));
    // An aggregated apiserver's copies of some requests: the same audit IDs with the
    // kube-apiserver's address appended to sourceIPs. Whichever comes first, the
    // kube-apiserver's own copy stands for the request.
    let own = use_of("shop/web").bound_to(&web, "jw").from("10.244.2.7").every_minute(20.0, 4);
    for o in &own {
        if let Observation::TokenUse(u) = o {
            let mut copy = u.clone();
            copy.source_ips.push(ip("10.0.1.10"));
            obs.push(Observation::TokenUse(copy));
        }
    }
    obs.extend(own);
    // A Secret read's stages: the code comes from the response, whichever is read first.
    if let Observation::SecretRead(r) = secret_list("bob", "monitoring", "198.51.100.24", 32.0) {
        obs.push(Observation::SecretRead(r.clone()));
        obs.push(Observation::SecretRead(SecretRead { code: None, ..r }));
    }
    obs
}

/// xorshift64*: a dependency-free, seeded shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

fn findings_json(obs: Vec<Observation>) -> String {
    report_json(&run(obs))
}

fn report_json(report: &Report) -> String {
    serde_json::to_string_pretty(&report.findings).unwrap()
        + &serde_json::to_string(&report.usage).unwrap()
        + &serde_json::to_string(&report.coverage).unwrap()
}

#[test]
fn shuffling_the_evidence_does_not_change_the_report() {
    // Built once: fixture audit IDs are numbered as they are made.
    let evidence = incident();
    let reference = findings_json(evidence.clone());
    let rules: Vec<String> = fired(&run(evidence.clone()));
    // The scenario is only a good test if it makes most rules fire.
    for rule in [
        "token-used-off-cluster",
        "token-used-from-other-workload",
        "token-forged-mint",
        "token-superseded-use",
        "exec-then-token-use",
        "xff-spoofed-source",
        "legacy-token-foreign-ip",
        "legacy-token-use",
        "legacy-token-present",
        "sa-token-secret-read",
    ] {
        assert!(rules.iter().any(|r| r.starts_with(rule)), "{rule} did not fire: {rules:?}");
    }
    for seed in 1..=60u64 {
        let mut obs = evidence.clone();
        shuffle(&mut obs, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert!(findings_json(obs) == reference, "seed {seed} changed the report");
    }
}

#[test]
fn reversing_the_evidence_does_not_change_the_report() {
    let evidence = incident();
    let mut reversed = evidence.clone();
    reversed.reverse();
    assert!(findings_json(reversed) == findings_json(evidence));
}

/// `analyze` folds token uses in several engines at once and gathers them into one before the
/// report: that must give the report one engine would. The split here is harsher than analyze's
/// (by audit ID, not by service account), so one credential's uses from one address land in
/// several engines and their groups must merge exactly.
#[test]
fn token_uses_folded_apart_and_absorbed_give_the_same_report() {
    let evidence = incident();
    let reference = findings_json(evidence.clone());
    for shards in [2u64, 3, 7] {
        let mut main = Engine::new(EngineConfig::default());
        let mut apart: Vec<Engine> = (0..shards).map(|_| Engine::new(EngineConfig::default())).collect();
        for obs in evidence.clone() {
            match &obs {
                Observation::TokenUse(u) => {
                    let shard = u.audit_id.bytes().fold(shards, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                    apart[(shard % shards) as usize].observe(obs);
                }
                _ => main.observe(obs),
            }
        }
        main.absorb_uses(apart);
        assert!(report_json(&main.report()) == reference, "{shards} engines changed the report");
    }
}
