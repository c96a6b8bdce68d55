//! Every file of `tests/data/public-audit-samples/` (real events written by others), decoded
//! as a file driver would, with the counts each one must give.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use tokentrail_aggregator_core::{Decoded, Format};
use tokentrail_proto::observation::*;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/public-audit-samples")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e != "md") {
            out.push(path);
        }
    }
}

/// Decodes every sample file, keyed by its path under the samples folder.
fn decode_all() -> BTreeMap<String, Decoded> {
    let mut files = Vec::new();
    walk(&samples(), &mut files);
    files.sort();
    files.iter().map(|f| (f.strip_prefix(samples()).unwrap().display().to_string(), decode_file(f))).collect()
}

fn count<T>(sinks: &BTreeMap<String, Decoded>, prefix: &str, f: impl Fn(&Decoded) -> T) -> u64
where
    T: Into<u64>,
{
    sinks.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, s)| f(s).into()).sum()
}

#[test]
fn every_sample_decodes_with_the_expected_counts() {
    let all = decode_all();
    assert_eq!(all.len(), 52, "files: {:?}", all.keys().collect::<Vec<_>>());

    // Falco: 51 events plus the deliberately malformed `{"kind": 0}`.
    let falco = "falco-k8s-audit-traces/";
    assert_eq!(count(&all, falco, |s| s.stats.events), 51);
    assert_eq!(count(&all, falco, |s| s.stats.errors), 1);
    let malformed = &all["falco-k8s-audit-traces/fal_01_003.json"];
    assert_eq!(malformed.problems.len(), 1);
    assert!(malformed.problems[0].message.contains("invalid type"), "{}", malformed.problems[0].message);
    assert_eq!(count(&all, falco, |s| accesses(s).len() as u64), 2, "exec_pod and attach_pod");
    assert_eq!(accesses(&all["falco-k8s-audit-traces/exec_pod.json"])[0].kind, PodAccessKind::Exec);
    assert_eq!(accesses(&all["falco-k8s-audit-traces/attach_pod.json"])[0].kind, PodAccessKind::Attach);
    // Ten pod creates by the replicaset controller: a Created fact and a token use each.
    assert_eq!(count(&all, falco, |s| pods(s).len() as u64), 10);
    assert_eq!(count(&all, falco, |s| token_uses(s).len() as u64), 10);
    let hostnet = pods(&all["falco-k8s-audit-traces/create_nginx_pod_hostnetwork.json"])[0].clone();
    assert_eq!((hostnet.event, hostnet.host_network), (Some(PodEvent::Created), Some(true)));
    assert_eq!(hostnet.uid.as_deref(), Some("d7afa813-d8fe-11e8-a2e6-080027728ac4"));
    assert_eq!(hostnet.secret_volumes, vec!["default-token-g2sp7".to_string()]);
    // The minikube kubelet talks over loopback: no node address learned from it.
    assert!(nodes(&all["falco-k8s-audit-traces/create_nginx_pod_unsensitive_mount.json"]).is_empty());

    // audit2rbac: every event is impersonated by system:admin; sa1 never used its token.
    let demo = &all["audit2rbac/demo.log"];
    assert_eq!((demo.stats.events, demo.stats.impersonated, demo.stats.errors), (37, 37, 0));
    assert!(token_uses(demo).is_empty());
    assert!(!format!("{:?}", demo.observations).contains("sa1"));

    // AKS: the Event Hubs batch of 22 events, the single record, the bare pretty-printed event.
    let batch = &all["sysdig-aks-audit-log/event.json"];
    assert_eq!(batch.stats.by_format.get(&Format::AksDiagnostic), Some(&22));
    assert_eq!((batch.stats.events, batch.stats.errors), (22, 0));
    let uses = token_uses(batch);
    assert_eq!(uses.len(), 7);
    assert!(uses
        .iter()
        .all(|u| u.serviceaccount.name == "resourcequota-controller" && u.credential == Credential::Unknown));
    assert_eq!(
        all["sysdig-aks-audit-log/sample_EventHubs_event.json"].stats.by_format.get(&Format::AksDiagnostic),
        Some(&1)
    );
    let bare = &all["sysdig-aks-audit-log/sample_KubeAuditLog_event.json"];
    assert_eq!((bare.stats.by_format.get(&Format::AuditEvent), token_uses(bare).len()), (Some(&1), 1));

    // Panther EKS: 11 events; the 6 coredns ones are pod-bound token uses (renamed extra keys).
    let panther = &all["panther-eks/eks_audit_events_from_panther_rule_tests.jsonl"];
    assert_eq!((panther.stats.events, panther.stats.errors), (11, 0));
    let uses = token_uses(panther);
    assert_eq!(uses.len(), 6);
    for u in uses {
        assert_eq!(u.serviceaccount.name, "coredns");
        assert!(
            matches!(&u.credential, Credential::PodBound { pod_uid, .. } if pod_uid == "5b9488ae-5563-42aa-850b-b0d82edb3e22")
        );
    }

    let errors: u64 = all.values().map(|s| s.stats.errors).sum();
    assert_eq!(errors, 1, "only the deliberately malformed file");
}
