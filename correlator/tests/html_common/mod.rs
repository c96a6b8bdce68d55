//! What the HTML report tests share: the example incident, an analysis of any evidence
//! directory, temporary directories, and evidence whose attacker-controlled fields carry markup.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses its own part; tests panic to fail

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokentrail_correlator::forensic::{analyze, Analysis, AnalyzeOptions, Quiet};
use tokentrail_correlator_core::EngineConfig;

/// The bundled example incident.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/incident")
}

/// `analyze` over one evidence path, as `--cluster shop-prod`.
pub fn analysis_of(evidence: &Path) -> Analysis {
    let options = AnalyzeOptions {
        engine: EngineConfig { cluster: Some("shop-prod".into()), ..EngineConfig::default() },
        ..AnalyzeOptions::default()
    };
    analyze(&[evidence.to_path_buf()], &options, &Quiet, &mut |_| {})
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tokentrail-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Audit events whose attacker-controlled fields (user agent, pod name, object name) carry
/// markup: a pod-bound token replayed off-cluster, so they reach a finding, the timeline and the
/// client-address table.
pub fn hostile_evidence(dir: &Path) {
    let ua = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";
    let pod = "api-<b>7f</b>\"onmouseover=\"alert(2)";
    let mut log = String::new();
    for (i, ip) in ["10.244.1.12", "203.0.113.66", "203.0.113.66"].iter().enumerate() {
        let event = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": format!("00000000-0000-4000-8000-00000000000{i}"), "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/payments/secrets", "verb": "get",
            "user": {"username": "system:serviceaccount:payments:api", "uid": "sa-uid",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/credential-id": ["JTI=11111111-2222-4333-8444-555555555555"],
                    "authentication.kubernetes.io/node-name": ["worker-1"],
                    "authentication.kubernetes.io/pod-name": [pod],
                    "authentication.kubernetes.io/pod-uid": ["pod-uid-1"]}},
            "sourceIPs": [ip], "userAgent": ua,
            "objectRef": {"resource": "secrets", "namespace": "payments", "name": "</td><script>alert(3)</script>", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": format!("2026-03-10T10:0{i}:00.000000Z"),
            "stageTimestamp": format!("2026-03-10T10:0{i}:00.100000Z"),
        });
        log.push_str(&event.to_string());
        log.push('\n');
    }
    std::fs::write(dir.join("audit.log"), log).unwrap();
    let nodes = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "worker-1", "uid": "node-uid-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.11"}]}}]});
    std::fs::write(dir.join("nodes.json"), nodes.to_string()).unwrap();
}
