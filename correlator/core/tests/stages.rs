//! Copies of one request (its stages, and an aggregated apiserver's own entries with the same
//! audit ID) count once, and the copy that stands for the request is the same whatever order
//! they come in: the fewest `sourceIPs` hops, then the stage that carries the response.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::observation::{SecretRead, Stage};
use tokentrail_correlator_core::{Engine, EngineConfig, Observation, Report};

fn secret_get(audit_id: &str, code: Option<u16>) -> Observation {
    Observation::SecretRead(SecretRead {
        time: t(1.0),
        audit_id: audit_id.into(),
        principal: "alice".into(),
        source_ips: vec![ip("198.51.100.23")],
        verb: "get".into(),
        namespace: Some("monitoring".into()),
        name: Some("exp-token-abcde".into()),
        code,
        user_agent: Some("kubectl/v1.32.0".into()),
    })
}

fn both_orders(copies: Vec<Observation>, check: impl Fn(&Report)) {
    let mut reversed = copies.clone();
    reversed.reverse();
    for obs in [copies, reversed] {
        let mut all = vec![token_secret("monitoring", "exp-token-abcde", "exp")];
        all.extend(cluster());
        all.extend(obs);
        check(&run(all));
    }
}

#[test]
fn a_secret_read_takes_its_code_from_the_response_whichever_stage_comes_first() {
    both_orders(vec![secret_get("r-1", None), secret_get("r-1", Some(200))], |report| {
        let reads = only(report, "sa-token-secret-read");
        assert_eq!(reads.len(), 1, "{:?}", fired(report));
        let codes: Vec<Option<u16>> = reads[0].requests.iter().map(|r| r.code).collect();
        assert_eq!(codes, [Some(200)]);
    });
    both_orders(vec![secret_get("r-2", None), secret_get("r-2", Some(403))], |report| {
        assert!(only(report, "sa-token-secret-read").is_empty(), "a refused read disclosed nothing");
    });
}

#[test]
fn a_request_received_stage_alone_is_counted_when_the_engine_settles() {
    let report = run(vec![secret_get("r-3", None)]);
    assert_eq!(report.coverage.engine.duplicate_stages, 0);
    let p = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let only_received =
        use_of("shop/web").bound_to(&p, "jw").from("10.244.2.7").audit_id("u-1").stage(Stage::RequestReceived).obs();
    let report = run(vec![only_received]);
    assert_eq!(report.coverage.token_uses, 1, "held for a better copy that never came, then counted");
}

#[test]
fn an_aggregated_apiservers_copy_folds_into_the_kube_apiservers_own() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let own = use_of("shop/web").bound_to(&p, "jw").from("203.0.113.50").audit_id("a-1");
    // The aggregated apiserver logs the request with the kube-apiserver appended to sourceIPs,
    // and its own stages.
    let aggregated = own.clone().via(&["203.0.113.50", "10.0.1.10"]);
    let copies = vec![
        aggregated.clone().stage(Stage::RequestReceived).obs(),
        aggregated.stage(Stage::ResponseComplete).obs(),
        own.clone().stage(Stage::RequestReceived).obs(),
        own.stage(Stage::ResponseComplete).obs(),
    ];
    for seed in 0..24u64 {
        let mut obs = copies.clone();
        // Every order of four copies, and more.
        let mut s = seed;
        for i in (1..obs.len()).rev() {
            obs.swap(i, (s % (i as u64 + 1)) as usize);
            s /= i as u64 + 1;
        }
        let mut all = cluster();
        all.push(p.observed());
        all.extend(obs);
        let report = run(all);
        let clients: Vec<String> = report.usage.iter().map(|r| format!("{:?}", r.source_ip)).collect();
        assert_eq!(clients, ["Some(203.0.113.50)"], "seed {seed}");
        assert_eq!(report.coverage.token_uses, 1, "seed {seed}");
        assert_eq!(report.coverage.engine.duplicate_stages, 3, "seed {seed}");
    }
}

#[test]
fn a_copy_held_across_a_snapshot_is_still_replaced_by_the_better_one() {
    let mut engine = Engine::new(EngineConfig::default());
    engine.observe(secret_get("r-4", None));
    let mut restored = Engine::restore(EngineConfig::default(), &engine.snapshot().unwrap()).unwrap();
    restored.observe(token_secret("monitoring", "exp-token-abcde", "exp"));
    restored.observe(secret_get("r-4", Some(200)));
    let report = restored.report();
    let reads = only(&report, "sa-token-secret-read");
    assert_eq!(reads[0].requests.iter().map(|r| r.code).collect::<Vec<_>>(), [Some(200)]);
}
