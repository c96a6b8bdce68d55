//! Containers and provider envelopes: EventList, JSON arrays, several values in one text,
//! EKS CloudWatch, AKS diagnostic records and Log Analytics rows, GKE LogEntry.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use common::*;
use tokentrail_aggregator_core::{detect_layout, Format, Layout};
use tokentrail_proto::observation::*;
use tokentrail_proto::Timestamp;

const USE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9a2e0c4d-1111-4a6b-8c9d-0e1f2a3b4c5d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"get","user":{"username":"system:serviceaccount:shop:api","extra":{"authentication.kubernetes.io/credential-id":["JTI=3f0c2b1e-0000-4000-8000-00000000000a"],"authentication.kubernetes.io/pod-name":["api-7d9f8-xk2lq"],"authentication.kubernetes.io/pod-uid":["0dd440a6-0000-4000-8000-000000000002"]}},"sourceIPs":["10.0.1.57"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z"}"#;

fn escaped(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn webhook_event_list_pretty_printed_with_a_bad_item() {
    // Webhook EventList items carry no kind/apiVersion of their own.
    let doc = r#"{
  "kind": "EventList",
  "apiVersion": "audit.k8s.io/v1",
  "metadata": {},
  "items": [
    {
      "level": "Metadata",
      "auditID": "a1",
      "stage": "ResponseComplete",
      "requestURI": "/api/v1/namespaces/shop/pods",
      "verb": "list",
      "user": {"username": "system:serviceaccount:shop:api"},
      "sourceIPs": ["10.0.1.57"],
      "requestReceivedTimestamp": "2026-03-01T10:05:00.000000Z"
    },
    {
      "auditID": "a2",
      "stage": "ResponseComplete",
      "verb": "get",
      "user": {"username": 7}
    },
    {
      "auditID": "a3",
      "stage": "ResponseComplete",
      "verb": "get",
      "user": {"username": "system:serviceaccount:shop:api"},
      "requestReceivedTimestamp": "2026-03-01T10:06:00.000000Z"
    }
  ]
}"#;
    assert_eq!(detect_layout(doc.lines().next().unwrap().as_bytes()), Layout::Document);
    let out = decode(doc);
    assert_eq!(token_uses(&out).len(), 2);
    assert_eq!(out.stats.by_format[&Format::EventList], 2);
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    let p = &out.problems[0];
    assert_eq!(p.record_index, Some(1));
    assert_eq!(p.line_in_value, Some(20), "{p:?}");
    assert!(p.message.contains("invalid type"), "{}", p.message);
}

#[test]
fn json_array_and_several_values_in_one_text() {
    let array = format!("[{USE},\n{USE}]");
    assert_eq!(token_uses(&decode(&array)).len(), 2);
    let lines = format!("{USE}\n\n{USE}\n");
    let out = decode(&lines);
    assert_eq!(token_uses(&out).len(), 2);
    assert_eq!(out.stats.by_format[&Format::AuditEvent], 2);
    // A truncated array keeps what came before the break.
    let broken = format!("[{USE},\n{USE},\n{{\"kind\":");
    let out = decode(&broken);
    assert_eq!(token_uses(&out).len(), 2);
    assert_eq!(out.problems.len(), 1);
    assert_eq!(out.problems[0].line_in_value, Some(3));
}

#[test]
fn eks_cloudwatch_message_per_line_and_filter_log_events_output() {
    let line = format!(
        r#"{{"timestamp":1772359500004,"logStreamName":"kube-apiserver-audit-1234567890abcdef01234567890abcde","message":{}}}"#,
        escaped(USE)
    );
    let out = decode(&line);
    assert_eq!(token_uses(&out).len(), 1);
    assert_eq!(out.stats.by_format[&Format::EksCloudWatch], 1);
    assert_eq!(out.stats.token_uses_by_format[&Format::EksCloudWatch], 1);

    let no_time = USE.replace(r#","requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z""#, "");
    let output = format!(
        r#"{{
    "events": [
        {{"logStreamName": "kube-apiserver-audit-1", "timestamp": 1772359500004, "message": {}, "ingestionTime": 1772359501000, "eventId": "1"}},
        {{"logStreamName": "authenticator-1", "timestamp": 1772359500005, "message": "time=\"2026-03-01T10:05:00Z\" level=info msg=\"access granted\""}},
        {{"logStreamName": "kube-apiserver-audit-1", "timestamp": 1772359500006, "message": "{{\"kind\":\"Event\",\"auditID\":\"cut [Truncated...]"}}
    ],
    "searchedLogStreams": []
}}"#,
        escaped(&no_time)
    );
    let out = decode(&output);
    let uses = token_uses(&out);
    assert_eq!(uses.len(), 1);
    // The event had no time of its own: CloudWatch's (milliseconds) is used.
    assert_eq!(uses[0].time, Timestamp::from_millis(1772359500004));
    assert_eq!((out.stats.ignored, out.stats.truncated), (1, 1));
    assert_eq!(out.problems.len(), 1);
    assert_eq!((out.problems[0].record_index, out.problems[0].line_in_value), (Some(2), Some(5)));
}

#[test]
fn aks_records_with_bom_log_analytics_rows_and_other_categories() {
    let doc = format!(
        "\u{feff}{{\"records\": [\n{{\"operationName\":\"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read\",\"category\":\"kube-audit\",\"time\":\"2026-03-01T10:05:00.0040000Z\",\"properties\":{{\"log\":{},\"stream\":\"stdout\",\"pod\":\"kube-apiserver-6d4f\"}}}},\n{{\"category\":\"kube-apiserver\",\"properties\":{{\"log\":\"I0301 10:05:00 plain text\"}}}},\n{{\"category\":\"kube-audit\",\"properties\":{{\"stream\":\"stdout\"}}}}\n]}}",
        escaped(&format!("{USE}\n"))
    );
    let out = decode(&doc);
    assert_eq!(token_uses(&out).len(), 1);
    assert_eq!(out.stats.by_format[&Format::AksDiagnostic], 1);
    assert_eq!(out.stats.ignored, 1);
    assert_eq!(out.problems.len(), 1);
    assert_eq!((out.problems[0].record_index, out.problems[0].line_in_value), (Some(2), Some(4)));

    let row = format!(r#"{{"TimeGenerated":"2026-03-01T10:05:01Z","Category":"kube-audit","log_s":{}}}"#, escaped(USE));
    let out = decode(&row);
    assert_eq!(token_uses(&out).len(), 1);
    assert_eq!(out.stats.by_format[&Format::AksDiagnostic], 1);
}

fn gke(method: &str, resource: &str, principal: &str, extra: &str) -> String {
    format!(
        r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{{"principalEmail":"{principal}"}},"authorizationInfo":[{{"granted":true}}],"methodName":"{method}","requestMetadata":{{"callerIp":"10.8.0.14","callerSuppliedUserAgent":"kubectl/v1.28.9"}},"resourceName":"{resource}","serviceName":"k8s.io","status":{{"code":0}}{extra}}},"insertId":"5a3a3498-e69a-47f5-a02d-67bcc8f9efae","resource":{{"type":"k8s_cluster","labels":{{"cluster_name":"c1"}}}},"timestamp":"2024-05-12T05:13:08.760303Z","labels":{{"authorization.k8s.io/decision":"allow"}},"logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","operation":{{"id":"op-1","producer":"k8s.io","first":true,"last":true}},"receiveTimestamp":"2024-05-12T05:13:17.693033521Z"}}"#
    )
}

#[test]
fn gke_service_account_use_has_no_pod_binding() {
    let out = decode(&gke(
        "io.k8s.core.v1.configmaps.get",
        "core/v1/namespaces/shop/configmaps/app",
        "system:serviceaccount:shop:api",
        "",
    ));
    let u = token_uses(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].credential, Credential::Unknown);
    assert_eq!(u[0].audit_id, "op-1");
    assert_eq!(u[0].stage, Stage::Unknown);
    assert_eq!(u[0].source_ips, vec![ip("10.8.0.14")]);
    assert_eq!(u[0].time, Timestamp::parse("2024-05-12T05:13:08.760303Z").unwrap());
    assert_eq!(
        (
            u[0].request.verb.as_str(),
            u[0].request.resource.as_deref(),
            u[0].request.namespace.as_deref(),
            u[0].request.name.as_deref(),
            u[0].request.code
        ),
        ("get", Some("configmaps"), Some("shop"), Some("app"), Some(200))
    );
    assert_eq!(out.stats.token_uses_by_format[&Format::GkeLogEntry], 1);

    let legacy = gke("io.k8s.core.v1.pods.list", "core/v1/namespaces/shop/pods", "system:serviceaccount:ci:old", "")
        .replace(r#""labels":{"#, r#""labels":{"authentication.k8s.io/legacy-token":"system:serviceaccount:ci:old","#);
    assert_eq!(token_uses(&decode(&legacy))[0].credential, Credential::LegacySecret { secret: None });
}

#[test]
fn gke_exec_mint_denied_and_other_services() {
    let out = decode(&gke(
        "io.k8s.core.v1.pods.exec.create",
        "core/v1/namespaces/shop/pods/api-1/exec",
        "alice@example.com",
        "",
    ));
    let a = accesses(&out);
    assert_eq!((a.len(), a[0].kind, a[0].pod_name.as_str()), (1, PodAccessKind::Exec, "api-1"));

    let request = r#","request":{"@type":"authentication.k8s.io/v1.TokenRequest","spec":{"boundObjectRef":{"kind":"Pod","name":"api-1","uid":"u-1"}}}"#;
    let out = decode(&gke(
        "io.k8s.core.v1.serviceaccounts.token.create",
        "core/v1/namespaces/shop/serviceaccounts/api/token",
        "alice@example.com",
        request,
    ));
    let m = mints(&out);
    assert_eq!(
        (m[0].serviceaccount.name.as_str(), m[0].bound_pod.as_ref().map(|b| b.name.as_str())),
        ("api", Some("api-1"))
    );

    let denied =
        gke("io.k8s.core.v1.secrets.list", "core/v1/namespaces/shop/secrets", "system:serviceaccount:shop:api", "")
            .replace(r#""status":{"code":0}"#, r#""status":{"code":7,"message":"forbidden"}"#);
    let out = decode(&denied);
    assert_eq!(secret_reads(&out)[0].code, Some(403));
    assert_eq!(token_uses(&out).len(), 1);

    let cluster_op = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"container.googleapis.com","methodName":"google.container.v1.ClusterManager.CreateCluster"},"timestamp":"2024-05-12T05:13:08Z"}"#;
    let out = decode(cluster_op);
    assert!(out.observations.is_empty() && out.problems.is_empty());
    assert_eq!(out.stats.ignored, 1);

    // `gcloud logging read --format=json` prints an array.
    let array = format!(
        "[\n{},\n{}\n]",
        gke("io.k8s.core.v1.pods.list", "core/v1/namespaces/shop/pods", "system:serviceaccount:shop:api", ""),
        cluster_op
    );
    let out = decode(&array);
    assert_eq!((token_uses(&out).len(), out.stats.ignored), (1, 1));
}

#[test]
fn events_nested_past_the_depth_limit_are_refused() {
    let mut value = USE.to_string();
    for _ in 0..12 {
        value = format!(r#"{{"message":{}}}"#, escaped(&value));
    }
    let out = decode(&value);
    assert!(out.observations.is_empty());
    assert_eq!(out.problems.len(), 1);
    assert!(out.problems[0].message.contains("nested"), "{}", out.problems[0].message);
}

#[test]
fn unknown_shapes_and_non_json_are_problems() {
    for bad in ["{\"hello\":\"world\"}", "hello", "42", "[1, 2]", "{\"kind\": 0}"] {
        let out = decode(bad);
        assert!(out.observations.is_empty(), "{bad}");
        assert!(!out.problems.is_empty(), "{bad}");
        assert_eq!(out.stats.errors, out.problems.len() as u64);
    }
    for empty in ["", "   ", "\u{feff}", "\n\n"] {
        let out = decode(empty);
        assert!(out.problems.is_empty() && out.observations.is_empty());
    }
}
