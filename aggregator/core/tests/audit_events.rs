//! Upstream audit events, one shape at a time: token uses of each credential kind, failures,
//! mints, exec, Secret reads, pod lifecycle, token Secrets, kubelet addresses, times.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use common::*;
use tokentrail_aggregator_core::Format;
use tokentrail_proto::observation::*;
use tokentrail_proto::Timestamp;

/// A v1.30+ event with pod-bound extras (docs/kubernetes.md §5), with `user` and `extra` spliced in.
fn event(verb: &str, object_ref: &str, user: &str, code: u16, rest: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"9a2e0c4d-1111-4a6b-8c9d-0e1f2a3b4c5d","stage":"ResponseComplete","requestURI":"/api/v1/x","verb":"{verb}",{object_ref}"user":{user},"sourceIPs":["10.0.1.57"],"userAgent":"api/v1.4.2 (linux/amd64) kubernetes/$Format","responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z","stageTimestamp":"2026-03-01T10:05:00.004000Z"{rest}}}"#
    )
}

const POD_BOUND_USER: &str = r#"{"username":"system:serviceaccount:shop:api","uid":"c26ad760-0000-4000-8000-000000000001","groups":["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=3f0c2b1e-0000-4000-8000-00000000000a"],"authentication.kubernetes.io/node-name":["ip-10-0-1-23.ec2.internal"],"authentication.kubernetes.io/node-uid":["5b1e0000-0000-4000-8000-000000000000"],"authentication.kubernetes.io/pod-name":["api-7d9f8-xk2lq"],"authentication.kubernetes.io/pod-uid":["0dd440a6-0000-4000-8000-000000000002"]}}"#;
const KUBELET: &str =
    r#"{"username":"system:node:ip-10-0-1-23.ec2.internal","groups":["system:nodes","system:authenticated"]}"#;
const ADMIN: &str = r#"{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]}"#;
const CONFIGMAP_REF: &str =
    r#""objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},"#;

#[test]
fn pod_bound_token_use() {
    let out = decode(&event("get", CONFIGMAP_REF, POD_BOUND_USER, 200, ""));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let uses = token_uses(&out);
    assert_eq!(uses.len(), 1);
    let u = uses[0];
    assert_eq!(u.serviceaccount, ServiceAccountRef { namespace: "shop".into(), name: "api".into() });
    assert_eq!(u.serviceaccount_uid.as_deref(), Some("c26ad760-0000-4000-8000-000000000001"));
    assert_eq!(
        u.credential,
        Credential::PodBound {
            jti: Some("3f0c2b1e-0000-4000-8000-00000000000a".into()),
            pod_name: "api-7d9f8-xk2lq".into(),
            pod_uid: "0dd440a6-0000-4000-8000-000000000002".into(),
            node: Some("ip-10-0-1-23.ec2.internal".into()),
        }
    );
    assert_eq!(u.time, Timestamp::parse("2026-03-01T10:05:00Z").unwrap());
    assert_eq!(u.stage, Stage::ResponseComplete);
    assert_eq!(u.source_ips, vec![ip("10.0.1.57")]);
    assert_eq!(u.request.resource.as_deref(), Some("configmaps"));
    assert_eq!((u.request.verb.as_str(), u.request.code), ("get", Some(200)));
    assert!(!u.stale_token);
    assert_eq!(out.stats.events, 1);
    assert_eq!(out.stats.by_format[&Format::AuditEvent], 1);
    assert_eq!(out.stats.token_uses_by_format[&Format::AuditEvent], 1);
}

#[test]
fn unbound_legacy_and_unknown_credentials() {
    let unbound = r#"{"username":"system:serviceaccount:ci:deployer","extra":{"authentication.kubernetes.io/credential-id":["JTI=11111111-2222-4333-8444-555555555555"]}}"#;
    let u = decode(&event("get", CONFIGMAP_REF, unbound, 200, ""));
    assert_eq!(
        token_uses(&u)[0].credential,
        Credential::Unbound { jti: "11111111-2222-4333-8444-555555555555".into() }
    );

    let legacy = r#"{"username":"system:serviceaccount:ci:old"}"#;
    let annotations = r#","annotations":{"authentication.k8s.io/legacy-token":"system:serviceaccount:ci:old","authentication.k8s.io/legacy-token-manual-secret":"old-token"}"#;
    let l = decode(&event("get", CONFIGMAP_REF, legacy, 200, annotations));
    assert_eq!(token_uses(&l)[0].credential, Credential::LegacySecret { secret: Some("old-token".into()) });

    // An x509 credential id is not a token's JTI.
    let x509 = r#"{"username":"system:serviceaccount:ci:odd","extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=abcd"]}}"#;
    let x = decode(&event("get", CONFIGMAP_REF, x509, 200, ""));
    assert_eq!(token_uses(&x)[0].credential, Credential::Unknown);

    let stale = r#","annotations":{"authentication.k8s.io/stale-token":"subject: system:serviceaccount:shop:api, seconds after warning threshold: 4185802"}"#;
    let s = decode(&event("get", CONFIGMAP_REF, POD_BOUND_USER, 200, stale));
    assert!(token_uses(&s)[0].stale_token);
}

#[test]
fn forbidden_is_still_a_use_but_unauthenticated_is_a_failure() {
    assert_eq!(token_uses(&decode(&event("get", CONFIGMAP_REF, POD_BOUND_USER, 403, ""))).len(), 1);
    let out = decode(&event(
        "list",
        r#""objectRef":{"resource":"secrets","namespace":"shop","apiVersion":"v1"},"#,
        "{}",
        401,
        "",
    ));
    assert!(token_uses(&out).is_empty());
    assert!(secret_reads(&out).is_empty());
    let f = failures(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].source_ips, vec![ip("10.0.1.57")]);
    assert_eq!(f[0].request.resource.as_deref(), Some("secrets"));
    assert_eq!(f[0].request.code, Some(401));
}

#[test]
fn impersonated_service_account_is_not_a_token_use() {
    let rest = r#","impersonatedUser":{"username":"system:serviceaccount:shop:api","extra":{"authentication.kubernetes.io/pod-name":["forged"],"authentication.kubernetes.io/pod-uid":["forged"]}}"#;
    let out = decode(&event("get", CONFIGMAP_REF, ADMIN, 200, rest));
    assert!(token_uses(&out).is_empty());
    assert_eq!(out.stats.impersonated, 1);
    assert!(!format!("{:?}", out.observations).contains("forged"));
}

#[test]
fn kubelet_mint_with_bound_pod() {
    let sa_token_ref = r#""objectRef":{"resource":"serviceaccounts","namespace":"shop","name":"api","apiVersion":"v1","subresource":"token"},"#;
    let rest = r#","requestObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":null,"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"api-7d9f8-xk2lq","uid":"0dd440a6-0000-4000-8000-000000000002"}},"status":{"token":"","expirationTimestamp":null}},"annotations":{"authentication.kubernetes.io/issued-credential-id":"JTI=3f0c2b1e-0000-4000-8000-00000000000a","authorization.k8s.io/decision":"allow"}"#;
    let out = decode(&event("create", sa_token_ref, KUBELET, 201, rest));
    let m = mints(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].minter, "system:node:ip-10-0-1-23.ec2.internal");
    assert_eq!(m[0].serviceaccount.name, "api");
    assert_eq!(m[0].jti.as_deref(), Some("3f0c2b1e-0000-4000-8000-00000000000a"));
    assert_eq!(m[0].bound_kind.as_deref(), Some("Pod"));
    assert_eq!(
        m[0].bound_pod,
        Some(BoundPod { name: "api-7d9f8-xk2lq".into(), uid: Some("0dd440a6-0000-4000-8000-000000000002".into()) })
    );
    assert_eq!(m[0].code, Some(201));
    // The kubelet's request also tells us its node's address.
    let n = nodes(&out);
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].name.as_str(), n[0].addresses.clone()), ("ip-10-0-1-23.ec2.internal", vec![ip("10.0.1.57")]));
    assert_eq!(n[0].source, Some(FactSource::AuditLog));
    assert!(token_uses(&out).is_empty());
}

#[test]
fn mint_by_a_service_account_is_also_a_use_and_1_29_key_is_read() {
    let sa_token_ref = r#""objectRef":{"resource":"serviceaccounts","namespace":"shop","name":"other","apiVersion":"v1","subresource":"token"},"#;
    let rest =
        r#","annotations":{"authentication.kubernetes.io/credential-id":"JTI=99999999-0000-4000-8000-000000000000"}"#;
    let out = decode(&event("create", sa_token_ref, POD_BOUND_USER, 201, rest));
    assert_eq!(mints(&out)[0].jti.as_deref(), Some("99999999-0000-4000-8000-000000000000"));
    assert_eq!(mints(&out)[0].minter, "system:serviceaccount:shop:api");
    assert_eq!(token_uses(&out).len(), 1);
}

#[test]
fn exec_attach_portforward() {
    for (sub, kind) in
        [("exec", PodAccessKind::Exec), ("attach", PodAccessKind::Attach), ("portforward", PodAccessKind::PortForward)]
    {
        let r = format!(
            r#""objectRef":{{"resource":"pods","namespace":"shop","name":"api-7d9f8-xk2lq","apiVersion":"v1","subresource":"{sub}"}},"#
        );
        let out = decode(&event("create", &r, ADMIN, 101, ""));
        let a = accesses(&out);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].kind, a[0].principal.as_str(), a[0].pod_name.as_str(), a[0].code),
            (kind, "kubernetes-admin", "api-7d9f8-xk2lq", Some(101))
        );
        let by_sa = decode(&event("create", &r, POD_BOUND_USER, 101, ""));
        assert_eq!((accesses(&by_sa).len(), token_uses(&by_sa).len()), (1, 1));
    }
    // kubectl 1.30+ execs over WebSocket, an HTTP GET: logged as `get pods/exec`, still an exec.
    let r = r#""objectRef":{"resource":"pods","namespace":"shop","name":"p","apiVersion":"v1","subresource":"exec"},"#;
    assert_eq!(accesses(&decode(&event("get", r, ADMIN, 101, ""))).len(), 1);
    // Neither a list nor a delete is.
    assert!(accesses(&decode(&event("delete", r, ADMIN, 200, ""))).is_empty());
}

#[test]
fn secret_reads_by_anyone() {
    for verb in ["get", "list", "watch"] {
        let r = r#""objectRef":{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"},"#;
        let out = decode(&event(verb, r, ADMIN, 200, ""));
        let s = secret_reads(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].verb.as_str(), s[0].namespace.as_deref(), s[0].name.as_deref()),
            (verb, Some("shop"), Some("db"))
        );
    }
    let create = r#""objectRef":{"resource":"secrets","namespace":"shop","apiVersion":"v1"},"#;
    assert!(secret_reads(&decode(&event("create", create, ADMIN, 201, ""))).is_empty());
    // A `secrets` resource of another API group is not a core Secret.
    let other =
        r#""objectRef":{"resource":"secrets","apiGroup":"external-secrets.io","namespace":"shop","apiVersion":"v1"},"#;
    assert!(secret_reads(&decode(&event("list", other, ADMIN, 200, ""))).is_empty());
}

const PODS_REF: &str = r#""objectRef":{"resource":"pods","namespace":"shop","apiVersion":"v1"},"#;

#[test]
fn pod_created_from_response_object() {
    let rest = r#","requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"generateName":"api-7d9f8-"},"spec":{"containers":[{"name":"api","image":"api"}]}},"responseObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"api-7d9f8-xk2lq","generateName":"api-7d9f8-","namespace":"shop","uid":"0dd440a6-0000-4000-8000-000000000002","creationTimestamp":"2026-03-01T10:00:00Z"},"spec":{"volumes":[{"name":"kube-api-access-pls9v","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}]}},{"name":"legacy","secret":{"secretName":"api-token-abcde"}}],"serviceAccountName":"api","serviceAccount":"api","hostNetwork":true},"status":{"phase":"Pending"}}"#;
    let out = decode(&event("create", PODS_REF, ADMIN, 201, rest));
    let p = pods(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].event, Some(PodEvent::Created));
    assert_eq!(p[0].source, Some(FactSource::AuditLog));
    assert_eq!(p[0].uid.as_deref(), Some("0dd440a6-0000-4000-8000-000000000002"));
    assert_eq!((p[0].namespace.as_str(), p[0].name.as_str()), ("shop", "api-7d9f8-xk2lq"));
    assert_eq!(p[0].serviceaccount.as_deref(), Some("api"));
    assert_eq!(p[0].host_network, Some(true));
    assert_eq!(p[0].secret_volumes, vec!["api-token-abcde".to_string()]);

    // Refused by admission: no pod came to be.
    assert!(pods(&decode(&event("create", PODS_REF, ADMIN, 403, rest))).is_empty());
    // No code (RequestReceived): the outcome is unknown.
    let received =
        event("create", PODS_REF, ADMIN, 201, rest).replace(r#""responseStatus":{"metadata":{},"code":201},"#, "");
    assert!(pods(&decode(&received)).is_empty());
}

#[test]
fn pod_binding_status_and_delete() {
    let binding_ref = r#""objectRef":{"resource":"pods","namespace":"shop","name":"api-7d9f8-xk2lq","apiVersion":"v1","subresource":"binding"},"#;
    let binding = r#","requestObject":{"kind":"Binding","apiVersion":"v1","metadata":{"name":"api-7d9f8-xk2lq","namespace":"shop","uid":"0dd440a6-0000-4000-8000-000000000002"},"target":{"kind":"Node","name":"worker-1"}}"#;
    let out = decode(&event("create", binding_ref, r#"{"username":"system:kube-scheduler"}"#, 201, binding));
    let p = pods(&out);
    assert_eq!(
        (p[0].event, p[0].node.as_deref(), p[0].uid.as_deref()),
        (Some(PodEvent::Scheduled), Some("worker-1"), Some("0dd440a6-0000-4000-8000-000000000002"))
    );

    let status_ref = r#""objectRef":{"resource":"pods","namespace":"shop","name":"api-7d9f8-xk2lq","apiVersion":"v1","subresource":"status"},"#;
    let patch = r#","requestObject":{"metadata":{"uid":"0dd440a6-0000-4000-8000-000000000002"},"status":{"$setElementOrder/conditions":[{"type":"Ready"}],"podIP":"10.244.1.12","podIPs":[{"ip":"10.244.1.12"},{"ip":"fd00:10:244:1::c"}]}}"#;
    let out = decode(&event("patch", status_ref, KUBELET, 200, patch));
    let p = pods(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].event, Some(PodEvent::Status));
    assert_eq!(p[0].uid.as_deref(), Some("0dd440a6-0000-4000-8000-000000000002"));
    assert_eq!(p[0].ips, vec![ip("10.244.1.12"), ip("fd00:10:244:1::c")]);
    assert_eq!(nodes(&out).len(), 1, "one node fact per kubelet request");
    // A status patch with conditions only says nothing about addresses.
    let conditions =
        r#","requestObject":{"metadata":{"uid":"u"},"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
    assert!(pods(&decode(&event("patch", status_ref, KUBELET, 200, conditions))).is_empty());

    let delete_ref =
        r#""objectRef":{"resource":"pods","namespace":"shop","name":"api-7d9f8-xk2lq","apiVersion":"v1"},"#;
    let options = r#","requestObject":{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/__internal","gracePeriodSeconds":0,"preconditions":{"uid":"0dd440a6-0000-4000-8000-000000000002"}}"#;
    let out = decode(&event("delete", delete_ref, KUBELET, 200, options));
    let p = pods(&out);
    assert_eq!(
        (p[0].event, p[0].uid.as_deref(), p[0].name.as_str()),
        (Some(PodEvent::Deleted), Some("0dd440a6-0000-4000-8000-000000000002"), "api-7d9f8-xk2lq")
    );
    let at_metadata = decode(&event("delete", delete_ref, ADMIN, 200, ""));
    assert_eq!((pods(&at_metadata)[0].event, pods(&at_metadata)[0].uid.clone()), (Some(PodEvent::Deleted), None));
    assert!(pods(&decode(&event("delete", delete_ref, ADMIN, 404, ""))).is_empty());
}

#[test]
fn token_secret_created_without_its_data() {
    let secrets_ref = r#""objectRef":{"resource":"secrets","namespace":"ci","name":"old-token","apiVersion":"v1"},"#;
    let rest = r#","requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"old-token","namespace":"ci","annotations":{"kubernetes.io/service-account.name":"old"}},"type":"kubernetes.io/service-account-token","data":{"token":"ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklp"}}"#;
    let out = decode(&event("create", secrets_ref, ADMIN, 201, rest));
    let s = token_secrets(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].namespace.as_str(), s[0].name.as_str(), s[0].serviceaccount.as_deref()),
        ("ci", "old-token", Some("old"))
    );
    assert!(!format!("{:?}{:?}", out.observations, out.problems).contains("ZXlKaGJH"));
    let opaque = rest.replace("kubernetes.io/service-account-token", "Opaque");
    assert!(token_secrets(&decode(&event("create", secrets_ref, ADMIN, 201, &opaque))).is_empty());
}

#[test]
fn non_resource_request_names_the_path() {
    let out = decode(&event("get", "", POD_BOUND_USER, 200, "").replace("/api/v1/x", "/healthz?verbose=1"));
    assert_eq!(token_uses(&out)[0].request.resource.as_deref(), Some("/healthz"));
}

#[test]
fn times_fall_back_and_missing_time_is_a_problem() {
    // v1beta1 / Falco style: only `timestamp`.
    let old = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","timestamp":"2018-10-26T13:38:34Z","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/api","user":{"username":"system:serviceaccount:kube-system:x"},"sourceIPs":["::1"]}"#;
    assert_eq!(token_uses(&decode(old))[0].time, Timestamp::parse("2018-10-26T13:38:34Z").unwrap());
    let meta_only = r#"{"kind":"Event","metadata":{"creationTimestamp":"2017-09-11T19:55:05Z"},"auditID":"a","verb":"get","user":{"username":"system:serviceaccount:a:b"}}"#;
    assert_eq!(token_uses(&decode(meta_only))[0].time, Timestamp::parse("2017-09-11T19:55:05Z").unwrap());
    let none = r#"{"kind":"Event","auditID":"a","verb":"get","requestReceivedTimestamp":"yesterday","user":{"username":"system:serviceaccount:a:b"}}"#;
    let out = decode(none);
    assert!(out.observations.is_empty());
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].message.contains("no readable time"), "{}", out.problems[0].message);
    assert_eq!(out.stats.errors, 1);
}

#[test]
fn times_outside_the_audit_era_are_problems_and_the_event_is_skipped() {
    for (time, shown) in [("9999-12-31T23:59:59.000000Z", "9999-12-31T23:59:59Z"), ("2013-12-31T23:59:59Z", "2013")] {
        let out = decode(
            &event("get", CONFIGMAP_REF, POD_BOUND_USER, 200, "")
                .replace("2026-03-01T10:05:00.000000Z", time)
                .replace("2026-03-01T10:05:00.004000Z", time),
        );
        assert!(out.observations.is_empty(), "{time}");
        assert_eq!(out.problems.len(), 1, "{time}");
        assert!(out.problems[0].message.contains("impossible time"), "{}", out.problems[0].message);
        assert!(out.problems[0].message.contains(shown), "{}", out.problems[0].message);
        assert_eq!(out.stats.errors, 1);
    }
}

#[test]
fn bad_source_ip_is_dropped_with_a_problem() {
    let out = decode(
        &event("get", CONFIGMAP_REF, POD_BOUND_USER, 200, "")
            .replace(r#"["10.0.1.57"]"#, r#"["unknown","10.0.1.57:443"]"#),
    );
    assert_eq!(token_uses(&out)[0].source_ips, vec![ip("10.0.1.57")]);
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].message.contains("\"unknown\""), "{}", out.problems[0].message);
}

#[test]
fn panther_renamed_extra_keys_keep_the_binding() {
    let user = r#"{"username":"system:serviceaccount:kube-system:coredns","extra":{"authentication_kubernetes_io_slash_pod-name":["coredns-57ff979f67-bl27n"],"authentication_kubernetes_io_slash_pod-uid":["5b9488ae-5563-42aa-850b-b0d82edb3e22"]}}"#;
    let out = decode(&event("watch", CONFIGMAP_REF, user, 200, ""));
    assert!(
        matches!(&token_uses(&out)[0].credential, Credential::PodBound { pod_name, .. } if pod_name == "coredns-57ff979f67-bl27n")
    );
}

#[test]
fn a_kubelet_request_names_its_node_address_and_os() {
    let out =
        decode(&event("get", CONFIGMAP_REF, KUBELET, 200, "").replace(
            "api/v1.4.2 (linux/amd64) kubernetes/$Format",
            "kubelet/v1.33.2 (windows/amd64) kubernetes/a1b2c3d",
        ));
    let n = nodes(&out);
    assert_eq!(n.len(), 1, "{:?}", out.problems);
    assert_eq!((n[0].name.as_str(), n[0].addresses.as_slice()), ("ip-10-0-1-23.ec2.internal", &[ip("10.0.1.57")][..]));
    assert_eq!(n[0].os.as_deref(), Some("windows"));
}

#[test]
fn a_node_status_written_at_request_level_names_addresses_cidrs_and_os() {
    let node_ref = r#""objectRef":{"resource":"nodes","name":"ip-10-0-1-23.ec2.internal","apiVersion":"v1","subresource":"status"},"#;
    let body = r#","requestObject":{"status":{"addresses":[{"type":"InternalIP","address":"10.0.1.23"},{"type":"ExternalIP","address":"198.51.100.23"},{"type":"Hostname","address":"ip-10-0-1-23"}],"nodeInfo":{"operatingSystem":"linux"}}},"responseObject":{"kind":"Node","metadata":{"name":"ip-10-0-1-23.ec2.internal"},"spec":{"podCIDR":"10.244.7.0/24"}}"#;
    let out = decode(&event("patch", node_ref, KUBELET, 200, body));
    let written: Vec<_> = nodes(&out).into_iter().filter(|n| !n.pod_cidrs.is_empty()).collect();
    assert_eq!(written.len(), 1, "{:?}", nodes(&out));
    assert_eq!(written[0].addresses, [ip("10.0.1.23"), ip("198.51.100.23")]);
    assert_eq!(written[0].pod_cidrs, ["10.244.7.0/24".parse().unwrap()]);
    assert_eq!(written[0].os.as_deref(), Some("linux"));
}

#[test]
fn a_pod_status_patch_names_the_pods_node_address() {
    let pod_ref = r#""objectRef":{"resource":"pods","namespace":"shop","name":"api-7d9f8-xk2lq","uid":"0dd440a6-0000-4000-8000-000000000002","apiVersion":"v1","subresource":"status"},"#;
    let body = r#","requestObject":{"metadata":{"uid":"0dd440a6-0000-4000-8000-000000000002"},"status":{"hostIP":"10.0.1.23","hostIPs":[{"ip":"10.0.1.23"}],"podIP":"10.244.7.12","podIPs":[{"ip":"10.244.7.12"}]}}"#;
    let out = decode(&event("patch", pod_ref, KUBELET, 200, body));
    let hosts: Vec<_> = nodes(&out).into_iter().filter(|n| n.addresses == [ip("10.0.1.23")]).collect();
    assert_eq!(hosts.len(), 1, "{:?}", nodes(&out));
    assert_eq!(hosts[0].name, "ip-10-0-1-23.ec2.internal");
}

#[test]
fn a_node_body_with_a_pod_cidr_that_is_no_network_is_reported_not_dropped_silently() {
    let node_ref = r#""objectRef":{"resource":"nodes","name":"n1","apiVersion":"v1"},"#;
    let body = r#","responseObject":{"kind":"Node","metadata":{"name":"n1"},"spec":{"podCIDRs":["10.244.9.0/33","10.244.9.0/24"]}}"#;
    let out = decode(&event("patch", node_ref, KUBELET, 200, body));
    let written: Vec<_> = nodes(&out).into_iter().filter(|n| !n.pod_cidrs.is_empty()).collect();
    assert_eq!(written.len(), 1, "{:?}", nodes(&out));
    assert_eq!(written[0].pod_cidrs, ["10.244.9.0/24".parse().unwrap()]);
    assert!(
        out.problems.iter().any(|p| p.message.contains("\"10.244.9.0/33\" is not a network")),
        "{:?}",
        out.problems
    );
}
