//! The whole pipeline as deployed, end to end: three nodes, each with a `tokentrail agent`
//! process watching its own kubelet directory and the (fake) API server, two `tokentrail
//! aggregator` processes, two `tokentrail correlator` replicas in one group, and the real broker.
//! The scenario is the cluster's day as its audit log tells it; the test asserts the findings
//! topic holds exactly the findings the specification (docs/design.md §3.4) calls for, each once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod e2e_support;

use std::collections::BTreeMap;

use e2e_support::audit::{mint_bound_to, mint_unbound_for, Token};
use e2e_support::cluster::{Node, Pod};
use e2e_support::findings::{Finding, Subject};
use e2e_support::{Layout, Pipeline};

/// The expectation `rule` about `token` used from `ip`.
fn finding(rule: &str, token: &Token, ip: &str) -> Subject {
    Subject { rule: rule.into(), credential: token.subject(), source_ip: ip.into() }
}

/// Asserts the findings are exactly `expected`, each created once.
fn assert_exactly(found: &BTreeMap<String, Finding>, expected: &[Subject]) {
    let mut got: Vec<&Subject> = found.values().map(|f| &f.subject).collect();
    got.sort();
    let mut want: Vec<&Subject> = expected.iter().collect();
    want.sort();
    let missing: Vec<String> = want.iter().filter(|s| !got.contains(s)).map(ToString::to_string).collect();
    let extra: Vec<String> = got.iter().filter(|s| !want.contains(s)).map(ToString::to_string).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "findings differ:\n missing: {missing:#?}\n unexpected: {extra:#?}\n all: {got:#?}"
    );
    assert_eq!(got.len(), want.len(), "one finding per subject: {got:#?}");
    for f in found.values() {
        assert_eq!(f.creates, 1, "{} ({}) was created {} times", f.subject, f.id, f.creates);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_reports_every_replay_once_and_nothing_benign() {
    let _serial = correlator_support::one_at_a_time().await;
    let (w1, w2, w3) = (Node::worker(1), Node::worker(2), Node::worker(3));
    let mut p = Pipeline::start("e2e", Layout::default()).await;

    // The cluster's workloads, scheduled and attested by their nodes' agents.
    let web_pod = Pod::new("shop", "web-0", "web", &w1, &w1.pod_ip(10));
    let cart_pod = Pod::new("shop", "cart-0", "cart", &w2, &w2.pod_ip(11));
    let exporter_pod = Pod::host_network("monitoring", "node-exporter-w3", "node-exporter", &w3);
    let api_pod = Pod::new("payments", "api-0", "api", &w3, &w3.pod_ip(12));
    let legacy_pod =
        Pod::new("ci", "deployer-0", "deployer", &w2, &w2.pod_ip(13)).mounting_legacy_secret("deployer-token");
    let cache_pod = Pod::new("batch", "cache-0", "cache", &w1, &w1.pod_ip(20));
    let web = p.schedule(&web_pod, "web-jti-1").await;
    let cart = p.schedule(&cart_pod, "cart-jti-1").await;
    let exporter = p.schedule(&exporter_pod, "exporter-jti-1").await;
    let api = p.schedule(&api_pod, "api-jti-1").await;
    p.schedule(&legacy_pod, "deployer-jti-1").await;
    let deployer_legacy = Token::legacy(&legacy_pod, "deployer-token");
    let cache = p.schedule(&cache_pod, "cache-jti-1").await;

    // A day of legitimate traffic: pods from their own addresses, a hostNetwork pod from its
    // node's, a pod whose traffic to the API server is SNAT'd to its node's address.
    p.audit(&[
        web.used().from(&web_pod.ip).event(),
        cart.used().from(&cart_pod.ip).event(),
        exporter.used().from(&w3.ip).event(),
        api.used().from(&api_pod.ip).event(),
        api.used().from(&w3.ip).event(),
        cache.used().from(&cache_pod.ip).event(),
        deployer_legacy.used().from(&legacy_pod.ip).event(),
    ])
    .await;

    // The kubelet rotates web-0's token: both are in use for a moment (benign), then the old
    // one is replayed after the rotation grace.
    let web2 = p.rotate(&web_pod, "web-jti-2").await;
    p.audit(&[web2.used().from(&web_pod.ip).event(), web.used().from(&web_pod.ip).event()]).await;
    p.audit(&[web.used().from(&web_pod.ip).later_by_secs(10).event()]).await;

    // cache-0 is deleted and its address goes to a new pod of another workload: its traffic
    // from that address is benign; web's token from there is a replay from another pod.
    p.delete(&cache_pod).await;
    let report_pod = Pod::new("batch", "report-0", "report", &w1, &cache_pod.ip);
    let report = p.schedule(&report_pod, "report-jti-1").await;
    p.audit(&[report.used().from(&report_pod.ip).event(), web2.used().from(&report_pod.ip).event()]).await;

    // The replays.
    let minted = Token::bound(&api_pod, "minted-by-alice");
    p.audit(&[
        // A pod's token from a laptop.
        cart.used().from("203.0.113.10").reading_secrets().event(),
        // A pod's token from another pod's address.
        api.used().from(&cart_pod.ip).event(),
        // From outside, claiming to be the pod with X-Forwarded-For.
        exporter.used().forwarded_for(&w3.ip).from("198.51.100.7").event(),
        // A user mints a token bound to api-0 and uses it from her machine.
        mint_bound_to(&api_pod, "alice@example.com", "192.0.2.50", "minted-by-alice"),
        minted.used().from("192.0.2.50").event(),
        // The same user mints an unbound token for cart's service account.
        mint_unbound_for(&cart_pod, "alice@example.com", "192.0.2.50", "unbound-by-alice"),
        // The legacy token from outside.
        deployer_legacy.used().from("203.0.113.77").event(),
    ])
    .await;

    let found = p.settled_findings().await;
    p.stop();
    assert_exactly(
        &found,
        &[
            finding("token-superseded-use", &web, &web_pod.ip),
            finding("token-used-from-other-workload", &web2, &report_pod.ip),
            finding("token-used-off-cluster", &cart, "203.0.113.10"),
            finding("token-used-from-other-workload", &api, &cart_pod.ip),
            finding("token-used-off-cluster", &exporter, "198.51.100.7"),
            finding("xff-spoofed-source", &exporter, "198.51.100.7"),
            // One finding about the pod-bound mint: it is a forged mint (the user-minted rule
            // leaves mints already flagged as forged to it).
            finding("token-forged-mint", &minted, "192.0.2.50"),
            Subject { rule: "token-minted-by-user".into(), credential: String::new(), source_ip: "192.0.2.50".into() },
            finding("token-used-off-cluster", &minted, "192.0.2.50"),
            // One inventory finding per legacy token, whatever the addresses it was used from.
            finding("legacy-token-use", &deployer_legacy, &legacy_pod.ip),
            finding("legacy-token-foreign-ip", &deployer_legacy, "203.0.113.77"),
        ],
    );
}
