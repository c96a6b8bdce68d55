//! `kubectl get -o json` dumps: Lists and single objects of Pods, Nodes, ServiceAccounts,
//! Secrets; other kinds are ignored.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use common::*;
use tokentrail_aggregator_core::Format;
use tokentrail_proto::observation::*;
use tokentrail_proto::{IpNet, Timestamp};

const PODS: &str = r#"{
    "apiVersion": "v1",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"creationTimestamp": "2026-03-01T09:00:00Z", "name": "api-7d9f8-xk2lq", "namespace": "shop", "uid": "0dd440a6-0000-4000-8000-000000000002",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"nodeName": "worker-1", "serviceAccountName": "api", "serviceAccount": "api",
                     "volumes": [{"name": "kube-api-access-pls9v", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                                 {"name": "legacy", "secret": {"secretName": "api-token-abcde", "defaultMode": 420}}],
                     "containers": [{"name": "api", "image": "api:1"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.12", "podIPs": [{"ip": "10.244.1.12"}], "startTime": "2026-03-01T09:00:02Z"}
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"creationTimestamp": "2026-03-01T08:00:00Z", "deletionTimestamp": "2026-03-01T10:30:00Z", "name": "node-exporter-x", "namespace": "mon", "uid": "11111111-0000-4000-8000-000000000003"},
            "spec": {"nodeName": "worker-1", "serviceAccount": "exporter", "hostNetwork": true},
            "status": {"phase": "Running", "podIP": "10.0.1.11", "startTime": "2026-03-01T08:00:01Z"}
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"creationTimestamp": "2026-03-01T07:00:00Z", "name": "job-done", "namespace": "batch", "uid": "22222222-0000-4000-8000-000000000004"},
            "spec": {"nodeName": "worker-2", "serviceAccountName": "default"},
            "status": {"phase": "Succeeded", "podIP": "10.244.2.7", "startTime": "2026-03-01T07:00:01Z"}
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": "shop"}, "data": {"ca.crt": "x"}}
    ],
    "kind": "List",
    "metadata": {"resourceVersion": ""}
}"#;

#[test]
fn pod_list() {
    let out = decode(PODS);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let p = pods(&out);
    assert_eq!(p.len(), 4, "three pods, one of them also deleted");
    let api = p[0];
    assert_eq!(api.event, Some(PodEvent::Observed));
    assert_eq!(api.source, Some(FactSource::Inventory));
    assert_eq!(api.time, Timestamp::parse("2026-03-01T09:00:02Z").unwrap(), "from status.startTime");
    assert_eq!(api.uid.as_deref(), Some("0dd440a6-0000-4000-8000-000000000002"));
    assert_eq!(
        (api.node.as_deref(), api.serviceaccount.as_deref(), api.host_network),
        (Some("worker-1"), Some("api"), Some(false))
    );
    assert_eq!(api.ips, vec![ip("10.244.1.12")]);
    assert_eq!(api.secret_volumes, vec!["api-token-abcde".to_string()]);

    let exporter = p[1];
    assert_eq!((exporter.serviceaccount.as_deref(), exporter.host_network), (Some("exporter"), Some(true)));
    let deleted = p[2];
    assert_eq!(
        (deleted.event, deleted.time),
        (Some(PodEvent::Deleted), Timestamp::parse("2026-03-01T10:30:00Z").unwrap())
    );
    assert_eq!(deleted.uid, exporter.uid);

    let done = p[3];
    assert_eq!(done.name, "job-done");
    assert!(done.ips.is_empty(), "a finished pod holds no address");

    assert_eq!(out.stats.by_format[&Format::KubectlList], 3);
    assert_eq!(out.stats.ignored, 1);
}

#[test]
fn typed_list_items_without_kind() {
    let list = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":{"name":"p","namespace":"n","uid":"u","creationTimestamp":"2026-03-01T09:00:00Z"},"spec":{},"status":{"podIP":"10.244.0.5"}}]}"#;
    let out = decode(list);
    assert_eq!(pods(&out).len(), 1);
    assert_eq!(
        pods(&out)[0].time,
        Timestamp::parse("2026-03-01T09:00:00Z").unwrap(),
        "creationTimestamp when never started"
    );
}

#[test]
fn nodes_with_addresses_and_pod_cidrs() {
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","uid":"n1","creationTimestamp":"2026-02-01T00:00:00Z"},
        "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]},
        "status":{"addresses":[{"type":"InternalIP","address":"10.0.1.11"},{"type":"ExternalIP","address":"198.51.100.11"},{"type":"Hostname","address":"worker-1"},{"type":"InternalDNS","address":"ip-10-0-1-11.ec2.internal"},{"type":"ExternalIP","address":"not-an-ip.example"}]}}"#;
    let out = decode(node);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let n = nodes(&out);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].addresses, vec![ip("10.0.1.11"), ip("198.51.100.11")]);
    assert_eq!(n[0].pod_cidrs, vec!["10.244.1.0/24".parse::<IpNet>().unwrap(), "fd00:10:244:1::/64".parse().unwrap()]);
    assert_eq!(n[0].source, Some(FactSource::Inventory));
    assert_eq!(out.stats.by_format[&Format::KubernetesObject], 1);
}

#[test]
fn service_accounts_and_token_secrets() {
    let dump = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"old","namespace":"ci","uid":"sa-1","creationTimestamp":"2020-01-01T00:00:00Z"},"secrets":[{"name":"old-token-x1"}]},
        {"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
         "metadata":{"name":"old-token-x1","namespace":"ci","creationTimestamp":"2020-01-01T00:00:01Z",
                     "annotations":{"kubernetes.io/service-account.name":"old","kubernetes.io/service-account.uid":"sa-1"},
                     "labels":{"kubernetes.io/legacy-token-last-used":"2026-02-27","kubernetes.io/legacy-token-invalid-since":"2026-03-01"}},
         "data":{"ca.crt":"Y2E=","namespace":"Y2k=","token":"ZXlKaGJHY2lPaUpTVXpJMU5pSjkuZXlKemRXSWlPaUp6ZVhOMFpXMDZjMlZ5ZG1salpXRmpZMjkxYm5RNlkyazZiMnhrSW4w"}},
        {"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db","namespace":"ci","creationTimestamp":"2020-01-01T00:00:00Z"},"data":{"password":"aHVudGVyMg=="}}
    ]}"#;
    let out = decode(dump);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let sa = serviceaccounts(&out);
    assert_eq!(sa.len(), 1);
    assert_eq!(sa[0].serviceaccount, Some(ServiceAccountRef { namespace: "ci".into(), name: "old".into() }));
    assert_eq!((sa[0].uid.as_deref(), sa[0].secrets.clone()), (Some("sa-1"), vec!["old-token-x1".to_string()]));
    let s = token_secrets(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].name.as_str(), s[0].serviceaccount.as_deref(), s[0].last_used.as_deref(), s[0].invalid_since.as_deref()),
        ("old-token-x1", Some("old"), Some("2026-02-27"), Some("2026-03-01"))
    );
    assert_eq!(s[0].time, Timestamp::parse("2020-01-01T00:00:01Z").unwrap());
    assert_eq!(out.stats.ignored, 1, "the Opaque secret");
}

#[test]
fn core_events_crds_and_broken_objects() {
    // `kubectl get events -o json` holds core/v1 Events, not audit events.
    let events = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Event","metadata":{"name":"x.1","namespace":"shop"},"reason":"Pulled","message":"{\"looks\":\"like json\"}"}]}"#;
    let out = decode(events);
    assert!(out.observations.is_empty() && out.problems.is_empty());
    assert_eq!(out.stats.ignored, 1);

    let crd = r#"{"apiVersion":"example.com/v1","kind":"Pod","metadata":{"name":"x","namespace":"y"}}"#;
    assert_eq!(decode(crd).stats.ignored, 1);

    let no_name =
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"y","creationTimestamp":"2026-03-01T09:00:00Z"}}"#;
    let out = decode(no_name);
    assert!(out.observations.is_empty());
    assert!(out.problems[0].message.contains("without metadata.name"), "{}", out.problems[0].message);

    let bad_spec = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"y","creationTimestamp":"2026-03-01T09:00:00Z"},"spec":{"hostNetwork":"yes"}}"#;
    let out = decode(bad_spec);
    assert!(out.observations.is_empty());
    assert_eq!(out.problems.len(), 1);

    let no_time = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"x","namespace":"y"}}"#;
    assert!(decode(no_time).problems[0].message.contains("creationTimestamp"));
}

#[test]
fn a_token_secrets_hash_from_collect_is_kept_and_a_bad_one_is_a_problem() {
    let secret = |name: &str, annotation: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token","metadata":{{"name":"{name}","namespace":"ci","creationTimestamp":"2020-01-01T00:00:01Z","annotations":{{"kubernetes.io/service-account.name":"old"{annotation}}}}}}}"#
        )
    };
    let hash = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let annotation = |v: &str| format!(r#","{}":"{v}""#, tokentrail_aggregator_core::TOKEN_SHA256_ANNOTATION);
    let dump = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n{},\n{},\n{},\n{}\n]}}",
        secret("good", &annotation(hash)),
        secret("none", ""),
        // The token itself where the hash belongs: refused, and never repeated.
        secret("token-instead", &annotation("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2ln")),
        secret("short", &annotation(&hash[..63])),
    );
    let out = decode(&dump);
    let s = token_secrets(&out);
    let hashes: Vec<(&str, Option<&str>)> = s.iter().map(|s| (s.name.as_str(), s.token_sha256.as_deref())).collect();
    assert_eq!(
        hashes,
        [("good", Some(hash.to_ascii_lowercase().as_str())), ("none", None), ("token-instead", None), ("short", None)]
    );
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    assert_eq!(out.stats.errors, 2);
    let lines: Vec<Option<usize>> = out.problems.iter().map(|p| p.line_in_value).collect();
    assert_eq!(lines, [Some(4), Some(5)], "each problem at its Secret's line");
    for p in &out.problems {
        assert!(p.message.contains("tokentrail.io/token-sha256") && p.message.contains("is not a SHA-256"), "{p:?}");
        assert!(!p.message.contains("eyJ") && !p.message.contains("9f86d0"), "the value is never repeated: {p:?}");
    }
}
