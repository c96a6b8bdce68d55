//! Every rule of the catalogue, each next to the benign lookalikes that must stay silent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::observation::Stage;
use tokentrail_correlator_core::{EngineConfig, IpNet, Severity};

fn api() -> PodSpec {
    pod("payments/api-7d9f8-xk2lq", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api")
}

fn with_cluster(
    mut extra: Vec<tokentrail_correlator_core::Observation>,
) -> Vec<tokentrail_correlator_core::Observation> {
    let mut all = cluster();
    all.append(&mut extra);
    all
}

// --- token-used-off-cluster -------------------------------------------------------------------

#[test]
fn token_used_from_the_internet_is_off_cluster_and_critical() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(5.0).listing_secrets("payments").obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.50"]);
    let f = &report.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.credential.as_ref().unwrap().id.as_deref(), Some("JTI=j1"));
    assert_eq!(f.pod.as_ref().unwrap().uid.as_deref(), Some("uid-api"));
    assert!(f.expected_ips.contains(&ip("10.244.1.12")) && f.expected_ips.contains(&ip("10.0.1.11")));
    assert_eq!(f.requests[0].resource.as_deref(), Some("secrets"));
}

#[test]
fn token_used_from_its_own_pod_address_is_silent() {
    let p = api();
    let report = run(with_cluster(
        [vec![p.observed()], use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").every_minute(0.0, 30)]
            .concat(),
    ));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
    assert_eq!(report.coverage.expected, 30);
    assert_eq!(report.usage[0].verdict.to_string(), "expected");
}

#[test]
fn host_network_pod_using_its_token_from_the_node_address_is_silent() {
    let p = pod("monitoring/node-exporter-abcde", "uid-ne").on_node("worker-2").with_ip("10.0.1.12").host_network();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("monitoring/node-exporter").bound_to(&p, "j1").from("10.0.1.12").at(1.0).obs(),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
    assert_eq!(report.usage[0].place, "node worker-2");
}

#[test]
fn pod_traffic_snat_to_its_own_node_address_is_silent() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-3").with_ip("10.244.3.8");
    let report =
        run(with_cluster(vec![p.observed(), use_of("shop/web").bound_to(&p, "j1").from("10.0.1.13").at(1.0).obs()]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn configured_egress_address_is_expected() {
    let p = api();
    let obs =
        with_cluster(vec![p.observed(), use_of("payments/api").bound_to(&p, "j1").from("52.1.2.3").at(1.0).obs()]);
    assert_eq!(fired(&run(obs.clone())), ["token-used-off-cluster@52.1.2.3"]);
    let config = EngineConfig { egress: vec!["52.1.2.3".parse::<IpNet>().unwrap()], ..EngineConfig::default() };
    assert!(run_with(config, obs).findings.is_empty());
}

#[test]
fn the_streams_report_makes_the_same_findings_and_no_incidents() {
    let p = api();
    let mut engine = tokentrail_correlator_core::Engine::new(EngineConfig::default());
    for o in with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(5.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.2.99").at(6.0).obs(),
    ]) {
        engine.observe(o);
    }
    let stream = engine.report_without_incidents();
    let analyze = engine.report();
    assert!(stream.incidents.is_empty());
    assert_eq!(analyze.incidents.len(), 1, "one credential: one incident");
    assert_eq!(analyze.incidents[0].findings.len(), analyze.findings.len());
    assert!(analyze.findings.len() >= 2);
    assert_eq!(stream.findings, analyze.findings);
}

#[test]
fn private_address_with_unknown_networks_is_unknown_not_off_cluster() {
    // No nodes.json, no --cluster-network: 10.9.9.9 could be anything of the cluster's.
    let p = api();
    let report = run(vec![p.observed(), use_of("payments/api").bound_to(&p, "j1").from("10.9.9.9").at(1.0).obs()]);
    assert!(only(&report, "token-used-off-cluster").is_empty());
    assert_eq!(report.coverage.verified, 0);
    assert!(report.coverage.unverified.keys().any(|k| k.contains("--cluster-network")));
}

// --- token-used-from-other-workload -----------------------------------------------------------

#[test]
fn token_used_from_another_pods_address_names_that_pod() {
    let p = api();
    let other = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let report = run(with_cluster(vec![
        p.observed(),
        other.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.2.7").at(3.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-from-other-workload@10.244.2.7"]);
    assert!(report.findings[0].explanation.contains("shop/web-1"), "{}", report.findings[0].explanation);
    assert_eq!(report.findings[0].severity, Severity::High);
}

#[test]
fn token_used_from_another_nodes_address_is_other_workload() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.0.1.13").at(3.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-from-other-workload@10.0.1.13"]);
    assert!(report.findings[0].explanation.contains("worker-3"));
}

#[test]
fn address_reused_by_a_new_pod_after_the_old_one_was_deleted_is_silent() {
    let old = pod("shop/worker-a", "uid-old").on_node("worker-2").with_ip("10.244.2.9").since(0.0);
    let new = pod("shop/worker-b", "uid-new").on_node("worker-2").with_ip("10.244.2.9").since(30.0);
    let report = run(with_cluster(vec![
        old.status_patched(),
        use_of("shop/worker").bound_to(&old, "j-old").from("10.244.2.9").at(5.0).obs(),
        old.deleted_at(20.0),
        new.status_patched(),
        use_of("shop/worker").bound_to(&new, "j-new").from("10.244.2.9").at(35.0).obs(),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn the_holder_named_is_the_one_holding_the_address_at_the_time() {
    let old = pod("shop/worker-a", "uid-old").on_node("worker-2").with_ip("10.244.2.9").since(0.0);
    let new = pod("shop/worker-b", "uid-new").on_node("worker-2").with_ip("10.244.2.9").since(30.0);
    let p = api();
    let report = run(with_cluster(vec![
        old.status_patched(),
        old.deleted_at(20.0),
        new.status_patched(),
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.2.9").at(40.0).obs(),
    ]));
    let f = &only(&report, "token-used-from-other-workload")[0];
    assert!(f.explanation.contains("shop/worker-b") && !f.explanation.contains("shop/worker-a"), "{}", f.explanation);
}

#[test]
fn statefulset_pod_recreated_under_the_same_name_is_silent() {
    let first = pod("shop/db-0", "uid-db-1").on_node("worker-1").with_ip("10.244.1.30").since(0.0);
    let second = pod("shop/db-0", "uid-db-2").on_node("worker-3").with_ip("10.244.3.40").since(62.0);
    let report = run(with_cluster(vec![
        first.status_patched(),
        use_of("shop/db").bound_to(&first, "j1").from("10.244.1.30").at(10.0).obs(),
        first.deleted_at(60.0),
        second.status_patched(),
        use_of("shop/db").bound_to(&second, "j2").from("10.244.3.40").at(65.0).obs(),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

// --- token-multi-origin -----------------------------------------------------------------------

#[test]
fn one_jti_from_two_unrelated_addresses_is_multi_origin_without_any_inventory() {
    let p = api();
    let report = run(vec![
        use_of("payments/api").bound_to(&p, "j1").from("10.1.1.1").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("10.2.2.2").at(2.0).obs(),
    ]);
    assert_eq!(fired(&report), ["token-multi-origin"]);
    assert_eq!(report.findings[0].source_ips, [ip("10.1.1.1"), ip("10.2.2.2")]);
    assert_eq!(report.findings[0].count, 2);
}

#[test]
fn pod_address_and_its_own_node_address_are_one_workload() {
    let p = api();
    let report = run(vec![
        kubelet_seen("worker-1", "10.0.1.11"),
        p.status_patched(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("10.0.1.11").at(2.0).obs(),
    ]);
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn multi_origin_stays_quiet_when_a_sharper_rule_already_explains_the_second_address() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(2.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.50"]);
}

// --- token-forged-mint and token-minted-by-user ------------------------------------------------

#[test]
fn pod_bound_token_minted_by_a_user_is_forged() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        bound(mint("j-forged", "payments/api", "alice", "198.51.100.23", 1.0), &p),
        use_of("payments/api").bound_to(&p, "j-forged").from("10.244.1.12").at(2.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-forged-mint@198.51.100.23"]);
    assert_eq!(report.findings[0].count, 2, "the mint and the use");
}

#[test]
fn kubelet_of_the_pods_node_minting_is_silent_and_another_kubelet_is_forged() {
    let p = api();
    let ok = run(with_cluster(vec![
        p.observed(),
        bound(mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &p),
    ]));
    assert!(ok.findings.is_empty(), "{:?}", fired(&ok));
    let bad = run(with_cluster(vec![
        p.observed(),
        bound(mint("j1", "payments/api", "system:node:worker-2", "10.0.1.12", 0.0), &p),
    ]));
    assert_eq!(fired(&bad), ["token-forged-mint@10.0.1.12"]);
}

#[test]
fn jti_minted_unbound_is_forged_once_a_use_shows_it_pod_bound() {
    // Metadata-level mint (no boundObjectRef logged), but the use carries pod extras.
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        tokentrail_correlator_core::Observation::TokenMint(mint("j9", "payments/api", "mallory", "198.51.100.9", 0.0)),
        use_of("payments/api").bound_to(&p, "j9").from("10.244.1.12").at(1.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-forged-mint@198.51.100.9"]);
}

#[test]
fn unbound_token_minted_by_a_person_is_minted_by_user() {
    let report = run(vec![
        tokentrail_correlator_core::Observation::TokenMint(mint("j1", "ci/deployer", "alice", "198.51.100.23", 0.0)),
        tokentrail_correlator_core::Observation::TokenMint(mint("j2", "ci/deployer", "alice", "198.51.100.23", 10.0)),
    ]);
    assert_eq!(fired(&report), ["token-minted-by-user@198.51.100.23"]);
    assert_eq!(report.findings[0].count, 2);
    assert_eq!(report.findings[0].severity, Severity::Medium);
}

#[test]
fn controllers_minting_and_using_unbound_tokens_are_silent() {
    let report = run(vec![
        tokentrail_correlator_core::Observation::TokenMint(mint(
            "j-ctrl",
            "kube-system/replicaset-controller",
            "system:kube-controller-manager",
            "10.0.1.10",
            0.0,
        )),
        use_of("kube-system/replicaset-controller").unbound("j-ctrl").from("10.0.1.10").at(1.0).obs(),
    ]);
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
    assert_eq!(report.coverage.expected, 1, "used from the address that minted it");
}

// --- token-superseded-use ---------------------------------------------------------------------

fn rotation(last_old_use: f64, from: &str) -> Vec<tokentrail_correlator_core::Observation> {
    let p = api();
    let mut obs = with_cluster(vec![
        p.observed(),
        bound(mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &p),
        bound(mint("j2", "payments/api", "system:node:worker-1", "10.0.1.11", 48.0), &p),
    ]);
    obs.extend(use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").every_minute(0.5, 48));
    obs.extend(use_of("payments/api").bound_to(&p, "j2").from("10.244.1.12").every_minute(48.2, 40));
    obs.push(use_of("payments/api").bound_to(&p, "j1").from(from).at(last_old_use).obs());
    obs
}

#[test]
fn the_one_minute_overlap_after_rotation_is_silent() {
    let report = run(rotation(49.0, "10.244.1.12"));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn an_old_jti_used_long_after_rotation_is_superseded() {
    let report = run(rotation(70.0, "10.244.1.12"));
    assert_eq!(fired(&report), ["token-superseded-use@10.244.1.12"]);
    assert!(report.findings[0].explanation.contains("JTI=j2"));
}

#[test]
fn stale_token_annotation_on_a_pod_bound_token_is_superseded() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(100.0).stale().obs(),
    ]));
    assert_eq!(fired(&report), ["token-superseded-use@10.244.1.12"]);
}

// --- exec-then-token-use ----------------------------------------------------------------------

#[test]
fn exec_then_use_from_the_exec_address() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        exec_into(&p, "alice", "198.51.100.23", 10.0),
        use_of("payments/api").bound_to(&p, "j1").from("198.51.100.23").at(14.0).obs(),
    ]));
    assert_eq!(fired(&report), ["exec-then-token-use@198.51.100.23", "token-used-off-cluster@198.51.100.23"]);
    let f = &only(&report, "exec-then-token-use")[0];
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.explanation.contains("alice"));
}

#[test]
fn exec_then_the_pods_own_use_is_silent_and_late_use_is_not_tied_to_the_exec() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        exec_into(&p, "alice", "198.51.100.23", 10.0),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(12.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.99").at(90.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.99"]);
}

// --- token-after-pod-deletion -----------------------------------------------------------------

#[test]
fn bearer_failures_from_a_replayer_after_the_pod_is_deleted() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.9").at(10.0).obs(),
        p.deleted_at(20.0),
        auth_failure("203.0.113.9", 25.0),
        auth_failure("203.0.113.9", 26.0),
    ]));
    assert_eq!(fired(&report), ["token-after-pod-deletion@203.0.113.9", "token-used-off-cluster@203.0.113.9"]);
    assert_eq!(only(&report, "token-after-pod-deletion")[0].count, 2);
}

#[test]
fn failures_from_the_pods_own_address_or_before_deletion_are_silent() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(10.0).obs(),
        p.deleted_at(20.0),
        auth_failure("10.244.1.12", 21.0),
        auth_failure("203.0.113.9", 5.0),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

// --- pods only their tokens' uses show ----------------------------------------------------------

// Such pods stay in their use groups (a flood of credentials must not cost a pod each); the
// questions that name a pod by name or UID must still find them.

#[test]
fn an_exec_into_a_pod_known_only_from_its_token_uses_is_tied_to_them() {
    let p = api();
    let report = run(with_cluster(vec![
        exec_into(&p, "alice", "198.51.100.23", 10.0),
        use_of("payments/api").bound_to(&p, "j1").from("198.51.100.23").at(14.0).obs(),
    ]));
    assert!(fired(&report).contains(&"exec-then-token-use@198.51.100.23".to_string()), "{:?}", fired(&report));
}

#[test]
fn a_deletion_by_name_finds_a_pod_known_only_from_its_token_uses() {
    let p = api();
    let report = run(with_cluster(vec![
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.9").at(10.0).obs(),
        p.deleted_at(20.0),
        auth_failure("203.0.113.9", 25.0),
    ]));
    assert!(fired(&report).contains(&"token-after-pod-deletion@203.0.113.9".to_string()), "{:?}", fired(&report));
    assert_eq!(report.coverage.pods, 1, "the sighted pod, placed by its deletion, counts once");
}

#[test]
fn a_mint_for_a_pod_known_only_from_its_earlier_token_is_judged_by_that_pods_node() {
    let p = api();
    let earlier = use_of("payments/api").bound_to(&p, "j0").from("10.244.1.12").at(1.0).obs();
    let by_uid = run(with_cluster(vec![
        earlier.clone(),
        bound(mint("j1", "payments/api", "system:node:worker-2", "10.0.1.12", 5.0), &p),
    ]));
    assert_eq!(fired(&by_uid), ["token-forged-mint@10.0.1.12"]);
    let mut named = mint("j1", "payments/api", "system:node:worker-2", "10.0.1.12", 5.0);
    named.bound_pod = Some(tokentrail_correlator_core::observation::BoundPod { name: p.name.clone(), uid: None });
    named.bound_kind = Some("Pod".into());
    let by_name = run(with_cluster(vec![earlier, tokentrail_correlator_core::Observation::TokenMint(named)]));
    assert_eq!(fired(&by_name), ["token-forged-mint@10.0.1.12"]);
}

#[test]
fn pods_only_their_tokens_show_are_counted_and_timed_as_before() {
    let p = api();
    let report = run(vec![
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.9").at(10.0).obs(),
        use_of("payments/api").bound_to(&p, "j2").from("203.0.113.9").at(30.0).obs(),
    ]);
    assert_eq!(report.coverage.pods, 1);
    let pods = &report.timelines[0].pods;
    assert_eq!(pods.len(), 1);
    assert_eq!((pods[0].first_seen, pods[0].last_seen), (t(10.0), t(30.0)));
    assert_eq!(pods[0].node.as_deref(), Some("worker-1"));
}

// --- xff-spoofed-source -----------------------------------------------------------------------

#[test]
fn forwarded_for_claiming_the_pods_own_address_does_not_fool_us() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").via(&["10.244.1.12", "203.0.113.50"]).at(5.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.50", "xff-spoofed-source@203.0.113.50"]);
    let xff = only(&report, "xff-spoofed-source")[0];
    assert_eq!(xff.source_ips, [ip("10.244.1.12"), ip("203.0.113.50")]);
}

#[test]
fn forwarded_for_from_a_trusted_proxy_is_silent_and_the_client_behind_it_is_judged() {
    let p = api();
    let config = EngineConfig { trusted_proxies: vec!["10.0.0.0/24".parse().unwrap()], ..EngineConfig::default() };
    let report = run_with(
        config,
        with_cluster(vec![
            p.observed(),
            use_of("payments/api").bound_to(&p, "j1").via(&["10.244.1.12", "10.0.0.5"]).at(5.0).obs(),
        ]),
    );
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

// --- legacy tokens ----------------------------------------------------------------------------

fn exporter() -> PodSpec {
    pod("monitoring/legacy-exporter-0", "uid-le")
        .on_node("worker-2")
        .with_ip("10.244.2.5")
        .mounting("legacy-exporter-token-abcde")
}

#[test]
fn legacy_token_used_from_its_mounting_pod_is_only_reported_as_in_use() {
    let p = exporter();
    let report = run(with_cluster(vec![
        p.observed(),
        token_secret("monitoring", "legacy-exporter-token-abcde", "legacy-exporter"),
        use_of("monitoring/legacy-exporter").legacy("legacy-exporter-token-abcde").from("10.244.2.5").at(1.0).obs(),
    ]));
    assert_eq!(fired(&report), ["legacy-token-present", "legacy-token-use@10.244.2.5"]);
    let present = only(&report, "legacy-token-present")[0];
    assert_eq!(present.severity, Severity::Low);
    assert!(present.explanation.contains("monitoring/legacy-exporter-0"), "{}", present.explanation);
    assert_eq!(report.legacy_tokens[0].uses, 1);
}

#[test]
fn legacy_token_used_from_outside_is_critical_foreign_ip() {
    let p = exporter();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("monitoring/legacy-exporter").legacy("legacy-exporter-token-abcde").from("10.244.2.5").at(1.0).obs(),
        use_of("monitoring/legacy-exporter").legacy("legacy-exporter-token-abcde").from("198.51.100.77").at(2.0).obs(),
        use_of("monitoring/legacy-exporter").legacy("legacy-exporter-token-abcde").from("10.244.3.3").at(3.0).obs(),
    ]));
    assert_eq!(
        fired(&report),
        ["legacy-token-foreign-ip@10.244.3.3", "legacy-token-foreign-ip@198.51.100.77", "legacy-token-use"]
    );
    let sev = |ip_: &str| {
        only(&report, "legacy-token-foreign-ip").iter().find(|f| f.source_ip == Some(ip(ip_))).unwrap().severity
    };
    assert_eq!(sev("198.51.100.77"), Severity::Critical);
    assert_eq!(sev("10.244.3.3"), Severity::High);
}

// --- sa-token-secret-read ---------------------------------------------------------------------

#[test]
fn listing_secrets_where_token_secrets_live() {
    let report = run(vec![
        token_secret("monitoring", "legacy-exporter-token-abcde", "legacy-exporter"),
        secret_list("alice", "monitoring", "198.51.100.23", 1.0),
        secret_list("system:kube-controller-manager", "monitoring", "10.0.1.10", 1.0),
        secret_list("bob", "shop", "198.51.100.24", 1.0),
    ]);
    let reads = only(&report, "sa-token-secret-read");
    assert_eq!(reads.len(), 1);
    assert!(reads[0].title.contains("alice"));
}

// --- properties of the whole ------------------------------------------------------------------

#[test]
fn duplicate_stages_of_one_request_count_once() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api")
            .bound_to(&p, "j1")
            .from("203.0.113.50")
            .at(1.0)
            .audit_id("a-1")
            .stage(Stage::RequestReceived)
            .obs(),
        use_of("payments/api")
            .bound_to(&p, "j1")
            .from("203.0.113.50")
            .at(1.0)
            .audit_id("a-1")
            .stage(Stage::ResponseComplete)
            .obs(),
    ]));
    assert_eq!(report.findings[0].count, 1);
    assert_eq!(report.coverage.token_uses, 1);
    assert_eq!(report.coverage.engine.duplicate_stages, 1);
}

#[test]
fn ten_thousand_replays_are_one_finding_with_a_count() {
    let p = api();
    let mut obs = with_cluster(vec![p.observed()]);
    for i in 0..10_000 {
        obs.push(use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(1.0 + i as f64 / 100.0).obs());
    }
    let report = run(obs);
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.50"]);
    assert_eq!(report.findings[0].count, 10_000);
    assert_eq!(report.findings[0].audit_ids.len(), 5, "a bounded sample");
}

// --- lookalikes found in the benchmark's cluster ----------------------------------------------

#[test]
fn an_address_is_not_pinned_on_the_pod_that_gets_it_minutes_after_the_token_was_used() {
    // The bound pod's own address is not in the evidence (it started before the log and was
    // deleted before the dump); the address went to a new pod two minutes later.
    let gone = pod("team/profile-1-a", "uid-gone").on_node("worker-1");
    let newcomer = pod("team/profile-2-b", "uid-new").on_node("worker-1").with_ip("10.244.1.53").since(32.0);
    let report = run(with_cluster(vec![
        use_of("team/profile-1").bound_to(&gone, "j1").from("10.244.1.53").at(30.5).obs(),
        gone.deleted_at(31.0),
        newcomer.status_patched(),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn an_off_cluster_replay_leaves_the_pods_unknown_own_address_as_no_second_origin() {
    // No inventory: the pod's own address is unknown; the replay is already off-cluster.
    let p = api();
    let report = run(vec![
        node("worker-1", "10.0.1.11", "10.244.1.0/24"),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(2.0).obs(),
    ]);
    assert_eq!(fired(&report), ["token-used-off-cluster@203.0.113.50"]);
}

#[test]
fn a_forged_credential_does_not_make_the_pods_own_token_look_superseded() {
    let p = api();
    let mut obs = with_cluster(vec![
        p.observed(),
        bound(mint("j-pod", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &p),
        bound(mint("j-forged", "payments/api", "mallory", "198.51.100.9", 10.0), &p),
        use_of("payments/api").bound_to(&p, "j-forged").from("198.51.100.9").at(11.0).obs(),
    ]);
    obs.extend(use_of("payments/api").bound_to(&p, "j-pod").from("10.244.1.12").every_minute(1.0, 40));
    let report = run(obs);
    assert_eq!(fired(&report), ["token-forged-mint@198.51.100.9", "token-used-off-cluster@198.51.100.9"]);
}

// --- token-forged-mint, streaming variant (attestations) -------------------------------------

/// Another pod on the same node, whose token rotations move the node agent's watermark on.
fn neighbour() -> PodSpec {
    pod("shop/web-9", "uid-neighbour").on_node("worker-1").with_ip("10.244.1.40").running_as("web")
}

#[test]
fn unattested_pod_bound_credential_is_forged_only_once_the_agent_reported_past_the_grace() {
    let p = api();
    let n = neighbour();
    let mut obs = with_cluster(vec![
        p.observed(),
        attested(&p, "j-real", 0.0),
        use_of("payments/api").bound_to(&p, "j-real").from("10.244.1.12").at(5.0).obs(),
        use_of("payments/api").bound_to(&p, "j-ghost").from("10.244.1.12").at(10.0).obs(),
    ]);
    // The agent has reported up to minute 11: inside the 2-minute grace of the use at 10.
    obs.push(attested(&n, "j-n1", 11.0));
    assert!(run(obs.clone()).findings.is_empty(), "no verdict inside the grace");
    // Reported up to minute 13: past the grace, and j-ghost was never on the node.
    obs.push(attested(&n, "j-n2", 13.0));
    let report = run(obs);
    assert_eq!(fired(&report), ["token-forged-mint"]);
    assert!(report.findings[0].explanation.contains("never saw it"), "{}", report.findings[0].explanation);
}

#[test]
fn a_late_attestation_inside_the_grace_keeps_it_silent() {
    let p = api();
    let n = neighbour();
    let report = run(with_cluster(vec![
        p.observed(),
        attested(&n, "j-n1", 0.0),
        use_of("payments/api").bound_to(&p, "j-late").from("10.244.1.12").at(10.0).obs(),
        // The kubelet wrote j-late at 9.9; the attestation arrives later, as this test sends it
        // after the use, but inside the grace.
        attested(&p, "j-late", 9.9),
        attested(&n, "j-n2", 30.0),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn without_an_agent_on_the_pods_node_silence_proves_nothing() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let n = neighbour(); // an agent on worker-1 only
    let report = run(with_cluster(vec![
        p.observed(),
        attested(&n, "j-n1", 0.0),
        use_of("shop/web").bound_to(&p, "j-x").from("10.244.2.7").at(10.0).obs(),
        attested(&n, "j-n2", 60.0),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn uses_from_before_the_agent_watched_are_not_judged() {
    let p = api();
    let n = neighbour();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j-old").from("10.244.1.12").at(1.0).obs(),
        attested(&n, "j-n1", 30.0),
        attested(&n, "j-n2", 60.0),
    ]));
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn an_agents_node_report_is_its_heartbeat() {
    let p = api();
    let heartbeat = |minutes: f64| {
        let tokentrail_correlator_core::Observation::Node(mut n) = node("worker-1", "10.0.1.11", "10.244.1.0/24")
        else {
            unreachable!()
        };
        n.time = t(minutes);
        n.source = Some(tokentrail_correlator_core::observation::FactSource::Attestation);
        tokentrail_correlator_core::Observation::Node(n)
    };
    let mut obs = with_cluster(vec![
        p.observed(),
        attested(&p, "j-real", 0.0),
        use_of("payments/api").bound_to(&p, "j-ghost").from("10.244.1.12").at(10.0).obs(),
    ]);
    obs.push(heartbeat(11.0));
    assert!(run(obs.clone()).findings.is_empty(), "inside the grace");
    obs.push(heartbeat(13.0));
    assert_eq!(fired(&run(obs)), ["token-forged-mint"]);
}

// --- token-file-read-by-other-pod, token-file-read-on-host, token-harvested-then-used -----------

#[test]
fn another_pod_reading_a_token_file_is_critical_and_names_the_reader() {
    let p = api();
    let thief = pod("default/debug-shell", "uid-thief").on_node("worker-1").with_ip("10.244.1.40");
    let report = run(with_cluster(vec![
        p.observed(),
        thief.observed(),
        token_read(&p, "j1", Some(&thief), "/bin/cat", 3.0),
        token_read(&p, "j1", Some(&thief), "/bin/cat", 5.0),
    ]));
    assert_eq!(fired(&report), ["token-file-read-by-other-pod"]);
    let f = &report.findings[0];
    assert_eq!((f.severity, f.count), (Severity::Critical, 2));
    assert_eq!(f.credential.as_ref().unwrap().id.as_deref(), Some("JTI=j1"));
    assert_eq!(f.pod.as_ref().unwrap().uid.as_deref(), Some("uid-api"));
    assert!(f.title.contains("pod default/debug-shell"), "{}", f.title);
    assert!(f.attack.iter().any(|t| t.id == "T1552.001"));
}

#[test]
fn a_host_process_reading_a_token_file_is_high() {
    let p = api();
    let report = run(with_cluster(vec![p.observed(), token_read(&p, "j1", None, "/usr/bin/python3", 3.0)]));
    assert_eq!(fired(&report), ["token-file-read-on-host"]);
    assert_eq!(report.findings[0].severity, Severity::High);
    assert!(report.findings[0].title.contains("host process /usr/bin/python3"));
}

#[test]
fn a_harvested_token_used_away_from_its_pod_is_a_chain_and_its_own_use_is_not() {
    let p = api();
    let thief = pod("default/debug-shell", "uid-thief").on_node("worker-1").with_ip("10.244.1.40");
    let report = run(with_cluster(vec![
        p.observed(),
        thief.observed(),
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(1.0).obs(),
        token_read(&p, "j1", Some(&thief), "/bin/cat", 3.0),
        // The pod's own use after the read: no chain.
        use_of("payments/api").bound_to(&p, "j1").from("10.244.1.12").at(4.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(6.0).listing_secrets("payments").obs(),
    ]));
    assert_eq!(
        fired(&report),
        [
            "token-file-read-by-other-pod",
            "token-harvested-then-used@203.0.113.50",
            "token-used-off-cluster@203.0.113.50"
        ]
    );
    let chain = &only(&report, "token-harvested-then-used")[0];
    assert_eq!(chain.severity, Severity::Critical);
    assert!(chain.explanation.contains("pod default/debug-shell"), "{}", chain.explanation);
}

#[test]
fn a_token_file_read_and_the_harvested_tokens_use_are_one_incident_that_opens_on_the_read() {
    let p = api();
    let thief = pod("default/debug-shell", "uid-thief").on_node("worker-1").with_ip("10.244.1.40");
    let report = run(with_cluster(vec![
        p.observed(),
        thief.observed(),
        token_read(&p, "j1", Some(&thief), "/bin/cat", 3.0),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(6.0).listing_secrets("payments").obs(),
    ]));
    assert_eq!(report.incidents.len(), 1, "one stolen credential: {:?}", fired(&report));
    let incident = &report.incidents[0];
    assert_eq!(incident.findings.len(), report.findings.len());
    let kinds: Vec<&str> = incident.story.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"token-file-read"), "the theft comes first: {kinds:?}");
    assert!(kinds.contains(&"foreign-use"), "{kinds:?}");
}

#[test]
fn a_use_before_the_read_or_of_another_credential_is_no_chain() {
    let p = api();
    let report = run(with_cluster(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j0").from("203.0.113.50").at(1.0).obs(),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.51").at(2.0).obs(),
        token_read(&p, "j1", None, "/usr/bin/cat", 3.0),
        use_of("payments/api").bound_to(&p, "j0").from("203.0.113.52").at(5.0).obs(),
    ]));
    assert!(only(&report, "token-harvested-then-used").is_empty(), "{:?}", fired(&report));
    assert_eq!(only(&report, "token-file-read-on-host").len(), 1);
}
