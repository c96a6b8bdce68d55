//! The serde shape of one top-level JSON object: an `audit.k8s.io` Event, with the keys that
//! tell the other supported shapes apart.
//!
//! A line of an audit log is parsed exactly once, into [`Event`], borrowing strings from the
//! input; the large parts (`requestObject`, `responseObject`, envelopes' payloads) stay raw
//! JSON slices that are only read when the event turns out to need them. The other shapes
//! (provider envelopes, lists, Kubernetes objects) share the struct for the same reason: one
//! pass decides what the object is. Secret `data`/`stringData` are not fields here, so serde
//! skips them without building a string.
//!
//! Field names are exactly those of `k8s.io/apiserver/pkg/apis/audit/v1/types.go`.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::json::{pick_keys, HttpCode, Raw, Str};

/// One top-level JSON object of any supported shape.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event<'a> {
    // ---- audit.k8s.io Event (also the TypeMeta of Kubernetes objects and lists) ----
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub api_version: Option<Str<'a>>,
    #[serde(borrow, rename = "auditID")]
    pub audit_id: Option<Str<'a>>,
    #[serde(borrow)]
    pub stage: Option<Str<'a>>,
    #[serde(borrow, rename = "requestURI")]
    pub request_uri: Option<Str<'a>>,
    #[serde(borrow)]
    pub verb: Option<Str<'a>>,
    #[serde(borrow)]
    pub user: Option<UserInfo<'a>>,
    /// Only its presence matters: identity is never taken from it.
    pub impersonated_user: Option<IgnoredAny>,
    #[serde(borrow, rename = "sourceIPs")]
    pub source_ips: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    pub user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    pub object_ref: Option<ObjectRef<'a>>,
    pub response_status: Option<ResponseStatus>,
    #[serde(borrow)]
    pub request_object: Option<Raw<'a>>,
    #[serde(borrow)]
    pub response_object: Option<Raw<'a>>,
    #[serde(borrow)]
    pub request_received_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub stage_timestamp: Option<Str<'a>>,
    /// v1beta1 events' `timestamp` (a string); CloudWatch's `timestamp` (milliseconds); GKE's.
    #[serde(borrow)]
    pub timestamp: Option<Raw<'a>>,
    /// v1beta1 events' `metadata.creationTimestamp`; a Kubernetes object's ObjectMeta.
    #[serde(borrow)]
    pub metadata: Option<Raw<'a>>,
    #[serde(borrow)]
    pub annotations: Option<AuditAnnotations<'a>>,

    // ---- lists: webhook EventList, kubectl List / PodList / ... ----
    #[serde(borrow)]
    pub items: Option<Raw<'a>>,

    // ---- provider envelopes ----
    /// AKS Event Hubs / storage export: `{"records":[...]}`.
    #[serde(borrow)]
    pub records: Option<Raw<'a>>,
    /// AKS diagnostic record: `properties.log` holds the event as a string.
    #[serde(borrow)]
    pub properties: Option<Raw<'a>>,
    /// AKS record `category` (`kube-audit`, `kube-audit-admin`, or other control-plane logs);
    /// `Category` in Log Analytics rows.
    #[serde(borrow, alias = "Category")]
    pub category: Option<Raw<'a>>,
    /// AKS record `time`; `TimeGenerated` in Log Analytics rows.
    #[serde(borrow, alias = "TimeGenerated")]
    pub time: Option<Raw<'a>>,
    /// AKS Log Analytics AzureDiagnostics row: the event as a string.
    #[serde(borrow, rename = "log_s")]
    pub log_s: Option<Raw<'a>>,
    /// `aws logs filter-log-events` output; `logEvents` in a CloudWatch subscription payload.
    #[serde(borrow, alias = "logEvents")]
    pub events: Option<Raw<'a>>,
    /// CloudWatch log event: the audit event as a string (`@message` in Logs Insights exports).
    #[serde(borrow, alias = "@message")]
    pub message: Option<Raw<'a>>,
    /// CloudWatch log stream (`kube-apiserver-audit-...` for audit events).
    #[serde(borrow, alias = "@logStream")]
    pub log_stream_name: Option<Raw<'a>>,
    /// GKE Cloud Logging LogEntry payload.
    #[serde(borrow)]
    pub proto_payload: Option<Raw<'a>>,
    #[serde(borrow)]
    pub insert_id: Option<Raw<'a>>,
    #[serde(borrow)]
    pub labels: Option<Raw<'a>>,
    #[serde(borrow)]
    pub operation: Option<Raw<'a>>,

    // ---- Kubernetes objects (Pod, Node, ServiceAccount, Secret) ----
    #[serde(borrow)]
    pub spec: Option<Raw<'a>>,
    #[serde(borrow)]
    pub status: Option<Raw<'a>>,
    /// Secret `type`.
    #[serde(borrow, rename = "type")]
    pub type_: Option<Raw<'a>>,
    /// ServiceAccount `secrets`.
    #[serde(borrow)]
    pub secrets: Option<Raw<'a>>,
}

impl Event<'_> {
    /// Whether this object is an audit event: `kind: Event` of `audit.k8s.io` (or of no
    /// apiVersion, as in Falco's traces), or an object with no kind that carries audit fields
    /// (webhook `EventList` items have no TypeMeta).
    pub fn is_audit_event(&self) -> bool {
        match self.kind.as_deref() {
            Some("Event") => self.api_version.as_deref().is_none_or(|v| v.starts_with("audit.k8s.io/")),
            Some(_) => false,
            None => self.audit_id.is_some() || self.stage.is_some() || self.request_uri.is_some(),
        }
    }

    /// `user.username`, when not empty.
    pub fn username(&self) -> Option<&str> {
        self.user.as_ref()?.username.as_deref().filter(|u| !u.is_empty())
    }
}

/// `authentication/v1 UserInfo`; `groups` are not read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserInfo<'a> {
    #[serde(borrow)]
    pub username: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub extra: Option<UserExtra<'a>>,
}

pick_keys!(
    /// The `user.extra` keys that bind a service-account token to a pod, a node and a JTI.
    ///
    /// Panther-normalised EKS logs rename `/` in keys to `_slash_` and `.` to `_`
    /// (`authentication_kubernetes_io_slash_pod-name`); those spellings are accepted as
    /// aliases so such exports keep their pod binding.
    UserExtra {
        pod_name: ["authentication.kubernetes.io/pod-name", "authentication_kubernetes_io_slash_pod-name"],
        pod_uid: ["authentication.kubernetes.io/pod-uid", "authentication_kubernetes_io_slash_pod-uid"],
        node_name: ["authentication.kubernetes.io/node-name", "authentication_kubernetes_io_slash_node-name"],
        credential_id: ["authentication.kubernetes.io/credential-id", "authentication_kubernetes_io_slash_credential-id"],
    }
);

pick_keys!(
    /// The audit annotations that say how a token was issued, and what a mint issued.
    AuditAnnotations {
        legacy_token: ["authentication.k8s.io/legacy-token"],
        legacy_token_autogenerated_secret: ["authentication.k8s.io/legacy-token-autogenerated-secret"],
        legacy_token_manual_secret: ["authentication.k8s.io/legacy-token-manual-secret"],
        stale_token: ["authentication.k8s.io/stale-token"],
        /// On a TokenRequest, v1.30+.
        issued_credential_id: ["authentication.kubernetes.io/issued-credential-id"],
        /// On a TokenRequest in v1.29 (the key was renamed in v1.30).
        credential_id: ["authentication.kubernetes.io/credential-id"],
    }
);

/// `objectRef`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectRef<'a> {
    #[serde(borrow)]
    pub resource: Option<Str<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub api_group: Option<Str<'a>>,
    #[serde(borrow)]
    pub subresource: Option<Str<'a>>,
}

/// `responseStatus` (a `metav1.Status`); only the code is read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponseStatus {
    #[serde(default)]
    pub code: HttpCode,
}

/// `metadata` of a v1beta1 audit event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LegacyEventMeta<'a> {
    #[serde(borrow)]
    pub creation_timestamp: Option<Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_event_borrowing_and_skipping_what_is_not_needed() {
        let line = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",
            "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"get",
            "user":{"username":"system:serviceaccount:shop:api","uid":"u","groups":["g"],
              "extra":{"authentication.kubernetes.io/credential-id":["JTI=j"],"authentication.kubernetes.io/pod-name":["p"],"authentication.kubernetes.io/pod-uid":["pu"],"other":["x"]}},
            "sourceIPs":["10.0.1.57"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},
            "responseStatus":{"metadata":{},"code":200},"requestObject":{"huge":[1,2,3]},
            "requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z","annotations":{"authorization.k8s.io/decision":"allow","authentication.k8s.io/stale-token":"subject: x"}}"#;
        let ev: Event<'_> = serde_json::from_str(line).unwrap();
        assert!(ev.is_audit_event());
        assert_eq!(ev.username(), Some("system:serviceaccount:shop:api"));
        let extra = ev.user.as_ref().unwrap().extra.as_ref().unwrap();
        assert_eq!(extra.pod_uid.as_deref(), Some("pu"));
        assert_eq!(extra.credential_id.as_deref(), Some("JTI=j"));
        assert_eq!(ev.response_status.unwrap().code.0, Some(200));
        assert_eq!(ev.request_object.unwrap().get(), r#"{"huge":[1,2,3]}"#);
        assert!(ev.annotations.unwrap().stale_token.is_some());
    }

    #[test]
    fn tells_audit_events_from_core_events() {
        let core: Event<'_> = serde_json::from_str(r#"{"kind":"Event","apiVersion":"v1","reason":"Pulled"}"#).unwrap();
        assert!(!core.is_audit_event());
        let item: Event<'_> = serde_json::from_str(r#"{"auditID":"x","stage":"ResponseComplete"}"#).unwrap();
        assert!(item.is_audit_event());
        let falco: Event<'_> = serde_json::from_str(r#"{"kind":"Event","auditID":"x"}"#).unwrap();
        assert!(falco.is_audit_event());
    }

    #[test]
    fn a_kind_that_is_not_a_string_is_an_error() {
        assert!(serde_json::from_str::<Event<'_>>(r#"{"kind": 0}"#).is_err());
    }
}
