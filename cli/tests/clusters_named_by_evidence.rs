//! `tokentrail analyze` given cloud exports as plain paths (no `NAME=`), through the real binary:
//! each export's records name its cluster (GKE `resource.labels.cluster_name`, EKS `logGroup`),
//! and the evidence is analysed per cluster, as with `NAME=PATH`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// The address the stolen token is replayed from (in eks-prod only).
const ATTACKER: &str = "203.0.113.9";
/// The address both clusters' pods use (equal private ranges are common across clusters).
const POD_IP: &str = "10.0.1.5";

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokentrail-named-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One GKE Cloud Logging entry of a Kubernetes audit record, with the fields GKE writes
/// (docs/kubernetes.md §7.2): `shop/api` reading a ConfigMap from `caller_ip`.
fn gke_entry(cluster: &str, caller_ip: &str, second: u32) -> Value {
    json!({
        "insertId": format!("{cluster}-{second}"),
        "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Fdata_access",
        "operation": {"first": true, "id": format!("{cluster}-{second}"), "last": true, "producer": "k8s.io"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "system:serviceaccount:shop:api"},
            "authorizationInfo": [{"granted": true, "permission": "io.k8s.core.v1.configmaps.get", "resource": "core/v1/namespaces/shop/configmaps/api-config"}],
            "methodName": "io.k8s.core.v1.configmaps.get",
            "requestMetadata": {"callerIp": caller_ip, "callerSuppliedUserAgent": "api/1.0 (linux/amd64) kubernetes/$Format"},
            "resourceName": "core/v1/namespaces/shop/configmaps/api-config",
            "serviceName": "k8s.io",
            "status": {}
        },
        "receiveTimestamp": format!("2026-04-14T10:00:{second:02}.500Z"),
        "resource": {
            "type": "k8s_cluster",
            "labels": {"cluster_name": cluster, "location": "europe-west1", "project_id": "acme-prod"}
        },
        "severity": "INFO",
        "timestamp": format!("2026-04-14T10:00:{second:02}.100000Z")
    })
}

/// One `audit.k8s.io/v1` event: `shop/api`'s pod-bound token (pod `shop/api-7d9f6-abcde`)
/// reading a ConfigMap from `source`.
fn audit_event(source: &str, second: u32) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": format!("eks-{second}"), "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/configmaps/api-config", "verb": "get",
        "user": {
            "username": "system:serviceaccount:shop:api",
            "uid": "5a1f-api",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": ["JTI=7e1c0b52-8a57-4f7e-9c55-1f0b0d7c1a11"],
                "authentication.kubernetes.io/node-name": ["ip-10-0-1-20.eu-west-1.compute.internal"],
                "authentication.kubernetes.io/pod-name": ["api-7d9f6-abcde"],
                "authentication.kubernetes.io/pod-uid": ["0b7c7f1e-1111-4a4a-9b9b-222233334444"]
            }
        },
        "sourceIPs": [source], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "api-config", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": format!("2026-04-14T10:00:{second:02}.000000Z"),
        "stageTimestamp": format!("2026-04-14T10:00:{second:02}.010000Z")
    })
}

/// An EKS CloudWatch Logs subscription record (as delivered by Firehose), one per line: the
/// log group names the cluster, each `message` is an audit event as a JSON string.
fn eks_subscription(cluster: &str, events: &[Value]) -> String {
    let log_events: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"id": format!("{i}"), "timestamp": 1_776_160_800_000u64 + i as u64, "message": e.to_string()}))
        .collect();
    let record = json!({
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": format!("/aws/eks/{cluster}/cluster"),
        "logStream": "kube-apiserver-audit-97b4b99facd26b67cf22df9cfc72aa95",
        "subscriptionFilters": ["audit"],
        "logEvents": log_events
    });
    record.to_string() + "\n"
}

/// A GKE export as `gcloud logging read --format=json` prints it (an array), and an EKS
/// subscription export, with the same namespace, service account, pod and address; only
/// eks-prod's token is also used from [`ATTACKER`].
fn two_exports(dir: &Path) -> (PathBuf, PathBuf) {
    let gke = dir.join("gke-audit.json");
    let entries: Vec<Value> = (1..=3).map(|s| gke_entry("gke-prod", POD_IP, s)).collect();
    std::fs::write(&gke, serde_json::to_string_pretty(&entries).unwrap()).unwrap();
    let eks = dir.join("eks-audit.jsonl");
    let events =
        vec![audit_event(POD_IP, 1), audit_event(POD_IP, 2), audit_event(ATTACKER, 30), audit_event(ATTACKER, 31)];
    std::fs::write(&eks, eks_subscription("eks-prod", &events)).unwrap();
    (gke, eks)
}

fn analyze(args: &[String]) -> (Vec<Value>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["analyze", "--cluster-network", "10.0.0.0/16", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{stderr}");
    let findings = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (findings, stderr)
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Every address a finding cites, wherever it cites one.
fn addresses(f: &Value) -> String {
    [&f["source_ip"], &f["source_ips"], &f["expected_ips"], &f["title"], &f["explanation"]]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn exports_given_without_names_are_analysed_per_cluster_they_name() {
    let dir = tempdir("per-cluster");
    let (gke, eks) = two_exports(&dir);
    let (findings, stderr) = analyze(&[shown(&gke), shown(&eks)]);
    assert!(
        stderr.contains("cluster gke-prod: named by the evidence (GKE resource.labels.cluster_name in"),
        "{stderr}"
    );
    assert!(stderr.contains("cluster eks-prod: named by the evidence (EKS logGroup in"), "{stderr}");
    assert!(!findings.is_empty());
    for f in &findings {
        let cluster = f["cluster"].as_str().unwrap_or_else(|| panic!("a finding without its cluster: {f}"));
        assert!(["gke-prod", "eks-prod"].contains(&cluster), "{f}");
        if cluster == "gke-prod" {
            // gke-prod never saw the attacker: its findings must not cite eks-prod's address.
            assert!(!addresses(f).contains(ATTACKER), "eks-prod's address in a gke-prod finding: {f}");
        }
    }
    let off_cluster: Vec<&Value> = findings.iter().filter(|f| addresses(f).contains(ATTACKER)).collect();
    assert!(!off_cluster.is_empty(), "the replay from {ATTACKER} is found: {findings:#?}");
    assert!(off_cluster.iter().all(|f| f["cluster"] == "eks-prod"), "{off_cluster:#?}");

    // The same as naming them, finding for finding (ids include the cluster).
    let (named, _) = analyze(&[format!("gke-prod={}", shown(&gke)), format!("eks-prod={}", shown(&eks))]);
    let ids = |fs: &[Value]| fs.iter().map(|f| f["id"].to_string()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ids(&findings), ids(&named));

    // Coverage says which field named each cluster, per file.
    let out = tempdir("per-cluster-out");
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["analyze", "--cluster-network", "10.0.0.0/16", "--out-dir"])
        .arg(&out)
        .args([&gke, &eks])
        .output()
        .unwrap();
    assert!(o.status.success());
    let coverage: Value = serde_json::from_slice(&std::fs::read(out.join("coverage.json")).unwrap()).unwrap();
    let files = coverage["files"].as_array().unwrap();
    let file = |p: &Path| files.iter().find(|f| f["path"] == shown(p)).unwrap().clone();
    assert_eq!(file(&gke)["cluster"], "gke-prod");
    assert_eq!(file(&gke)["cluster_named_by"], "GKE resource.labels.cluster_name");
    assert_eq!(file(&eks)["cluster"], "eks-prod");
    assert_eq!(file(&eks)["cluster_named_by"], "EKS logGroup");
    let report = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(report.contains("named by        eks-prod: the evidence, EKS logGroup in"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn name_equals_path_wins_over_the_name_in_the_evidence() {
    let dir = tempdir("override");
    let (gke, eks) = two_exports(&dir);
    let (findings, stderr) = analyze(&[format!("renamed={}", shown(&eks)), shown(&gke)]);
    assert!(!stderr.contains("cluster eks-prod"), "{stderr}");
    let clusters: std::collections::BTreeSet<&str> = findings.iter().filter_map(|f| f["cluster"].as_str()).collect();
    assert!(clusters.contains("renamed") && !clusters.contains("eks-prod"), "{clusters:?}");
    let replay = findings.iter().find(|f| addresses(f).contains(ATTACKER)).unwrap();
    assert_eq!(replay["cluster"], "renamed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_naming_two_clusters_stays_unnamed_and_is_said() {
    let dir = tempdir("two-in-one");
    let both = dir.join("both.jsonl");
    let lines = [gke_entry("gke-prod", POD_IP, 1), gke_entry("gke-staging", POD_IP, 2)];
    std::fs::write(&both, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
    let (_, eks) = two_exports(&dir);
    let (findings, stderr) = analyze(&[shown(&both), shown(&eks)]);
    assert!(
        stderr.contains(&format!("{}: its records name several clusters (gke-prod, gke-staging)", shown(&both))),
        "{stderr}"
    );
    // Its findings carry no cluster; eks-prod's are still eks-prod's.
    for f in &findings {
        match f["cluster"].as_str() {
            None => assert!(!addresses(f).contains(ATTACKER), "{f}"),
            Some(c) => assert_eq!(c, "eks-prod", "{f}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
