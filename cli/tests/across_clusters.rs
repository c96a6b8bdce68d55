//! `tokentrail analyze` over several clusters' evidence, through the real binary: what only a
//! run over several clusters can see.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The SHA-256 `tokentrail collect` writes for a token (here of a made-up one).
const SHARED: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokentrail-across-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A token Secret as `collect` writes it: no data, the token's hash in its annotation.
fn secret(ns: &str, name: &str, sa: &str, hash: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{{"name":"{name}","namespace":"{ns}","creationTimestamp":"2025-01-10T08:00:00Z","annotations":{{"kubernetes.io/service-account.name":"{sa}","tokentrail.io/token-sha256":"{hash}"}}}}}}"#
    )
}

/// One audit event: a use of a service account's token (a cluster without audit events is
/// reported as having nothing to verify, which is not what these tests are about).
fn use_of(ns: &str, sa: &str, audit_id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{audit_id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/configmaps","verb":"list","user":{{"username":"system:serviceaccount:{ns}:{sa}","groups":["system:serviceaccounts"]}},"sourceIPs":["10.0.1.5"],"userAgent":"curl/8.5.0","objectRef":{{"resource":"configmaps","namespace":"{ns}","apiVersion":"v1"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.100000Z"}}"#
    )
}

/// A cluster's evidence directory: an audit log and a Secrets dump.
fn cluster(root: &Path, name: &str, secrets: &[String]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("audit.log"), use_of("monitoring", "exporter", &format!("{name}-1")) + "\n").unwrap();
    let list = format!("{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n{}\n]}}\n", secrets.join(",\n"));
    std::fs::write(dir.join("secrets.json"), list).unwrap();
    dir
}

fn analyze(args: &[String]) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail")).arg("analyze").args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
}

fn records(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn of_rule<'v>(findings: &'v [Value], rule: &str) -> Vec<&'v Value> {
    findings.iter().filter(|f| f["rule"] == rule).collect()
}

#[test]
fn one_legacy_token_in_two_clusters_secrets_is_one_finding_naming_both() {
    let root = tempdir("shared-token");
    let eu = cluster(
        &root,
        "eu",
        &[
            secret("monitoring", "exporter-token-abcde", "exporter", SHARED),
            secret("ci", "deployer-token", "deployer", OTHER),
        ],
    );
    // The copy in us has another name and namespace: only the hash tells it.
    let us = cluster(&root, "us", &[secret("ops", "scraper-token", "scraper", SHARED)]);
    let args = |format: &str| {
        vec!["-o".to_string(), format.to_string(), format!("eu={}", eu.display()), format!("us={}", us.display())]
    };
    let findings = records(&analyze(&args("json")).0);
    let shared = of_rule(&findings, "legacy-token-shared-across-clusters");
    assert_eq!(shared.len(), 1, "{findings:#?}");
    let f = shared[0];
    assert_eq!(f["severity"], "high");
    assert_eq!(
        f["copies"],
        serde_json::json!([
            {"cluster": "eu", "namespace": "monitoring", "secret": "exporter-token-abcde", "serviceaccount": "exporter"},
            {"cluster": "us", "namespace": "ops", "secret": "scraper-token", "serviceaccount": "scraper"},
        ])
    );
    assert!(f.get("cluster").is_none(), "a finding of two clusters is no one cluster's: {f}");
    for text in [&f["title"], &f["explanation"]] {
        let text = text.as_str().unwrap();
        assert!(text.contains("eu") && text.contains("us") && text.contains("ops/scraper-token"), "{text}");
    }
    // It is part of an incident, as every finding but an inventory item.
    let incidents = records(&analyze(&args("incidents")).0);
    let holding: Vec<&Value> =
        incidents.iter().filter(|i| i["findings"].as_array().unwrap().contains(&f["id"])).collect();
    assert_eq!(holding.len(), 1, "{incidents:#?}");
    assert_eq!(holding[0]["clusters"], serde_json::json!(["eu", "us"]));
    // The text report shows it, and OCSF names both clusters as affected resources.
    let text = analyze(&args("text")).0;
    assert!(text.contains("legacy-token-shared-across-clusters"), "{text}");
    assert!(text.contains("clusters eu, us"), "{text}");
    let html = analyze(&args("html")).0;
    assert!(html.contains("<code>us: ops/scraper-token</code>"), "the HTML report names every copy");
    let ocsf = records(&analyze(&args("ocsf")).0);
    let record = ocsf.iter().find(|r| r["finding_info"]["uid"] == f["id"]).unwrap();
    let clusters: Vec<&Value> =
        record["resources"].as_array().unwrap().iter().filter(|r| r["type"] == "Kubernetes Cluster").collect();
    assert_eq!(clusters.len(), 2, "{record}");
}

#[test]
fn the_same_token_twice_in_one_cluster_or_different_tokens_are_not_shared_across_clusters() {
    let root = tempdir("not-shared");
    let eu = cluster(
        &root,
        "eu",
        &[
            secret("monitoring", "exporter-token", "exporter", SHARED),
            secret("backup", "exporter-copy", "exporter", SHARED),
        ],
    );
    let us = cluster(&root, "us", &[secret("monitoring", "exporter-token", "exporter", OTHER)]);
    let findings = records(
        &analyze(&["-o".into(), "json".into(), format!("eu={}", eu.display()), format!("us={}", us.display())]).0,
    );
    assert!(of_rule(&findings, "legacy-token-shared-across-clusters").is_empty(), "{findings:#?}");
    assert_eq!(of_rule(&findings, "legacy-token-present").len(), 3, "the Secrets themselves are still reported");
}
