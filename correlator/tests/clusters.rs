//! Evidence of several clusters in one run: each cluster's evidence in its own engine, so equal
//! namespaces, pod names and addresses in two clusters never meet, and one merged report.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tokentrail_correlator::clusters::ClusterEvidence;
use tokentrail_correlator::forensic::{analyze, analyze_clusters, Analysis, AnalyzeOptions, Quiet};
use tokentrail_correlator::output;
use tokentrail_correlator_core::EngineConfig;

fn incident() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident")
}

/// The example incident in full (audit log and dumps): every pod is known.
fn full() -> Vec<PathBuf> {
    ["audit.log", "nodes.json", "pods.json", "sa_secrets.json", "serviceaccounts.json"]
        .iter()
        .map(|f| incident().join(f))
        .collect()
}

/// A copy of the incident's audit log alone, under `dir`: the same namespaces, pods, service
/// accounts and addresses, and no dump that says where the pods are.
fn log_only(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let copy = dir.join("audit.log");
    std::fs::copy(incident().join("audit.log"), &copy).unwrap();
    vec![copy]
}

fn run(clusters: &[ClusterEvidence]) -> Analysis {
    analyze_clusters(clusters, &AnalyzeOptions::default(), &Quiet, &mut |p| panic!("unexpected problem: {p}"))
}

fn named(cluster: &str, paths: Vec<PathBuf>) -> ClusterEvidence {
    ClusterEvidence { cluster: Some(cluster.to_string()), paths, ..ClusterEvidence::default() }
}

/// What a finding is about, without its cluster.
fn about(a: &Analysis, cluster: &str) -> BTreeSet<String> {
    a.report
        .findings
        .iter()
        .filter(|f| f.cluster.as_deref() == Some(cluster))
        .map(|f| format!("{} {:?} {:?} {:?}", f.rule, f.serviceaccount, f.pod, f.source_ip))
        .collect()
}

#[test]
fn equal_names_and_addresses_in_two_clusters_stay_apart() {
    let dir = std::env::temp_dir().join(format!("tokentrail-clusters-apart-{}", std::process::id()));
    let us = log_only(&dir);
    let two = run(&[named("eu", full()), named("us", us.clone())]);
    // One engine for both would have placed us's uses on eu's pods; apart, us's are unverified.
    let alone = run(&[named("us", us.clone())]);
    let covered = |a: &Analysis, c: &str| a.report.coverage.clusters.get(c).map(|c| (c.token_uses, c.verified));
    let eu = analyze(&full(), &options("eu"), &Quiet, &mut |_| {});
    assert_eq!(covered(&two, "eu"), Some((eu.report.coverage.token_uses, eu.report.coverage.verified)));
    assert_eq!(covered(&two, "us"), Some((alone.report.coverage.token_uses, alone.report.coverage.verified)));
    assert!(alone.report.coverage.verified < eu.report.coverage.verified, "the log alone places fewer uses");
    // Each cluster's findings are those it has alone, under its own name.
    assert_eq!(about(&two, "eu"), about(&eu, "eu"));
    assert_eq!(about(&two, "us"), about(&alone, "us"));
    assert_eq!(two.report.findings.len(), eu.report.findings.len() + alone.report.findings.len());
    let ids: BTreeSet<&str> = two.report.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids.len(), two.report.findings.len(), "finding ids are unique across clusters");
    // The same attacker address replays tokens in both clusters the same hour: across clusters,
    // that is one incident, and it holds the address; every other incident stays in its cluster.
    for i in &two.report.incidents {
        if i.clusters.len() > 1 {
            assert_eq!(i.clusters, ["eu", "us"]);
            let own = |c: &str| -> BTreeSet<std::net::IpAddr> {
                let single = if c == "eu" { &eu } else { &alone };
                single.report.incidents.iter().flat_map(|i| i.attacker_ips.iter().copied()).collect()
            };
            let shared: BTreeSet<_> = own("eu").intersection(&own("us")).copied().collect();
            assert!(i.attacker_ips.iter().any(|ip| shared.contains(ip)), "joined without a shared attacker: {i:?}");
        }
    }
    assert!(two.report.incidents.iter().any(|i| i.clusters.len() > 1), "the shared attacker joins the clusters");
    for r in &two.report.usage {
        assert!(matches!(r.cluster.as_deref(), Some("eu" | "us")), "{r:?}");
    }
    for r in &two.report.legacy_tokens {
        assert!(matches!(r.cluster.as_deref(), Some("eu" | "us")), "{r:?}");
    }
    let clusters: BTreeSet<Option<&str>> = two.files.iter().map(|f| f.cluster.as_deref()).collect();
    assert_eq!(clusters, BTreeSet::from([Some("eu"), Some("us")]));

    // The same files under one cluster are one cluster's evidence: the log's uses meet the dumps.
    let one = run(&[named("eu", full().into_iter().chain(us).collect())]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(one.report.coverage.clusters.is_empty());
    assert_eq!(one.report.coverage.verified, eu.report.coverage.verified);
    assert_eq!(about(&one, "eu"), about(&eu, "eu"));
}

fn options(cluster: &str) -> AnalyzeOptions {
    AnalyzeOptions {
        engine: EngineConfig { cluster: Some(cluster.to_string()), ..EngineConfig::default() },
        ..AnalyzeOptions::default()
    }
}

#[test]
fn one_cluster_gives_the_single_cluster_report_byte_for_byte() {
    let single = analyze(&full(), &options("prod"), &Quiet, &mut |_| {});
    let grouped = run(&[named("prod", full())]);
    assert_eq!(output::text(&grouped), output::text(&single));
    assert_eq!(output::html::render(&grouped), output::html::render(&single));
    assert!(!output::text(&single).contains("CLUSTER"));
}

#[test]
fn a_report_of_two_clusters_shows_each_rows_cluster() {
    let dir = std::env::temp_dir().join(format!("tokentrail-clusters-text-{}", std::process::id()));
    let two = run(&[named("eu", full()), named("us", log_only(&dir))]);
    let _ = std::fs::remove_dir_all(&dir);
    let text = output::text(&two);
    assert!(text.starts_with("tokentrail: ") && text.lines().next().unwrap().ends_with("in clusters eu, us"), "{text}");
    assert!(text.contains("  CLUSTER SERVICE ACCOUNT"), "usage table has a cluster column");
    assert!(text.contains("  CLUSTER SECRET"), "legacy table has a cluster column");
    // (Incidents name their cluster in any report; findings only in a report of several.)
    assert!(text.contains(" · cluster us · serviceaccount "), "findings name their cluster");
    assert!(text.contains("  cluster         us: "), "coverage per cluster");
    let html = output::html::render(&two);
    assert!(html.contains("<th>cluster</th><th>service account</th>"));
    assert!(html.contains("<dt>Cluster</dt><dd><code>us</code></dd>"));
}

/// examples/two-clusters: one cluster's evidence directory (written by its generate.py).
fn two_clusters(cluster: &str) -> ClusterEvidence {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/two-clusters").join(cluster);
    named(cluster, vec![dir])
}

#[test]
fn the_two_cluster_sample_is_one_incident_across_both_clusters() {
    let attacker: std::net::IpAddr = "203.0.113.77".parse().unwrap();
    let unrelated: std::net::IpAddr = "198.51.100.61".parse().unwrap();
    let a = run(&[two_clusters("eks-prod"), two_clusters("gke-prod")]);
    // Every finding is its cluster's: the pod token's replay in eks-prod, the legacy token's in
    // gke-prod.
    let from = |cluster: &str, ip: std::net::IpAddr| -> BTreeSet<String> {
        a.report
            .findings
            .iter()
            .filter(|f| f.cluster.as_deref() == Some(cluster) && f.source_ip == Some(ip))
            .map(|f| f.rule.to_string())
            .collect()
    };
    assert!(from("eks-prod", attacker).contains("token-used-off-cluster"), "{:?}", from("eks-prod", attacker));
    assert!(from("eks-prod", attacker).contains("exec-then-token-use"));
    assert!(from("gke-prod", attacker).contains("legacy-token-foreign-ip"), "{:?}", from("gke-prod", attacker));
    assert!(from("gke-prod", unrelated).contains("legacy-token-foreign-ip"));
    assert!(from("eks-prod", unrelated).is_empty(), "the unrelated address is gke-prod's only");
    for f in &a.report.findings {
        assert!(matches!(f.cluster.as_deref(), Some("eks-prod" | "gke-prod")), "{f:?}");
    }

    // Exactly one incident spans both clusters: the attacker's, holding every finding from its
    // address in either cluster.
    let across: Vec<_> = a.report.incidents.iter().filter(|i| i.clusters.len() > 1).collect();
    assert_eq!(across.len(), 1, "{:#?}", a.report.incidents);
    let joined = across[0];
    assert_eq!(joined.clusters, ["eks-prod", "gke-prod"]);
    assert_eq!(joined.attacker_ips, [attacker]);
    assert!(joined.title.starts_with("Across clusters eks-prod, gke-prod: "), "{}", joined.title);
    for f in a.report.findings.iter().filter(|f| f.source_ip == Some(attacker)) {
        assert!(
            joined.findings.contains(&f.id),
            "{} {:?} of the attacker is not in the joined incident",
            f.rule,
            f.cluster
        );
    }
    assert!(
        joined.story.iter().any(|s| s.text.starts_with("[eks-prod]"))
            && joined.story.iter().any(|s| s.text.starts_with("[gke-prod]"))
    );

    // The unrelated leak (another address, gke-prod only) is an incident of its own.
    let leak: Vec<_> = a.report.incidents.iter().filter(|i| i.attacker_ips.contains(&unrelated)).collect();
    assert_eq!(leak.len(), 1, "{:#?}", a.report.incidents);
    assert_eq!(leak[0].clusters, ["gke-prod"]);
    assert!(!leak[0].attacker_ips.contains(&attacker));
}
