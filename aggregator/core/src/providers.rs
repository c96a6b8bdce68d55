//! Managed-cluster envelopes (docs/kubernetes.md §7): EKS CloudWatch log events, AKS diagnostic
//! records, and GKE Cloud Logging `LogEntry`s.
//!
//! EKS and AKS carry the upstream audit event verbatim as a JSON string, which is decoded like
//! any other value. GKE rewrites the event into a Cloud Audit Log; it is mapped back onto the
//! upstream fields here. GKE has no `user.extra`, so its service-account uses come out as
//! `Credential::Unknown` (or `LegacySecret` when the legacy-token label is there): the report
//! counts them under [`Format::GkeLogEntry`] to say why they could not be bound to a pod.

use std::borrow::Cow;

use serde::Deserialize;
use tokentrail_proto::Timestamp;

use crate::audit_event::{AuditAnnotations, Event, ObjectRef, ResponseStatus, UserInfo};
use crate::decode::{embedded, Ctx};
use crate::decoded::{Decoded, Format, Place};
use crate::json::{self, raw_str, HttpCode, Raw, Str};
use crate::normalize::{self, Origin};

/// CloudWatch cuts log events at 256 KB and appends this marker; such an event is lost.
const CLOUDWATCH_TRUNCATED: &str = "[Truncated...]";

/// One CloudWatch log event (`{"timestamp":..,"message":"..",...}`), alone on a line or inside
/// `aws logs filter-log-events` output.
pub(crate) fn cloudwatch_event(ev: &Event<'_>, message: Raw<'_>, ctx: &Ctx<'_>, place: Place, out: &mut Decoded) {
    if let Some(stream) = ev.log_stream_name.and_then(raw_str) {
        // The same log group holds authenticator, scheduler and controller-manager streams.
        if !stream.starts_with("kube-apiserver-audit") {
            out.stats.ignored += 1;
            return;
        }
    }
    let Some(text) = raw_str(message) else {
        out.problem(place, "cloudwatch `message` is not a string: skipped");
        return;
    };
    let text = text.trim();
    if text.ends_with(CLOUDWATCH_TRUNCATED) {
        out.stats.truncated += 1;
        out.problem(place, "cloudwatch cut this audit event at its 256 kb limit: it cannot be read, skipped");
        return;
    }
    if !text.starts_with('{') {
        // A plain-text control-plane log line, not an audit event.
        out.stats.ignored += 1;
        return;
    }
    let fallback = ev.timestamp.and_then(|t| match json::parse::<f64>(t) {
        // CloudWatch event timestamps are milliseconds since the epoch.
        #[allow(clippy::cast_possible_truncation)]
        Ok(ms) if ms.is_finite() && ms.abs() < 1e17 => Some(Timestamp::from_millis(ms as i64)),
        _ => raw_str(t).and_then(|s| Timestamp::parse(&s)),
    });
    embedded(text, ctx, place, Format::EksCloudWatch, fallback, out);
}

/// The `properties` of an AKS diagnostic record.
#[derive(Deserialize)]
struct AksProperties<'a> {
    #[serde(borrow)]
    log: Option<Raw<'a>>,
}

/// One AKS diagnostic record (`properties.log`), or a Log Analytics AzureDiagnostics row
/// (`log_s`).
pub(crate) fn aks_record(ev: &Event<'_>, ctx: &Ctx<'_>, place: Place, out: &mut Decoded) {
    if let Some(category) = ev.category.and_then(raw_str) {
        // `kube-audit` and `kube-audit-admin`; other categories are control-plane logs.
        if !category.starts_with("kube-audit") {
            out.stats.ignored += 1;
            return;
        }
    }
    let log = match (ev.log_s, ev.properties) {
        (Some(log), _) => Some(log),
        (None, Some(props)) => match json::parse::<AksProperties<'_>>(props) {
            Ok(p) => p.log,
            Err(e) => {
                out.problem(place, format!("aks record `properties` is unreadable ({}): skipped", json::describe(&e)));
                return;
            }
        },
        (None, None) => None,
    };
    let Some(text) = log.and_then(raw_str) else {
        out.problem(place, "aks record without a `properties.log` (or `log_s`) string: skipped");
        return;
    };
    let text = text.trim();
    if !text.starts_with('{') {
        out.stats.ignored += 1;
        return;
    }
    let fallback = ev.time.and_then(raw_str).and_then(|s| Timestamp::parse(&s));
    embedded(text, ctx, place, Format::AksDiagnostic, fallback, out);
}

/// `protoPayload` of a GKE Kubernetes audit `LogEntry`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLog<'a> {
    #[serde(borrow)]
    service_name: Option<Str<'a>>,
    #[serde(borrow)]
    method_name: Option<Str<'a>>,
    #[serde(borrow)]
    resource_name: Option<Str<'a>>,
    #[serde(borrow)]
    authentication_info: Option<AuthenticationInfo<'a>>,
    #[serde(borrow)]
    request_metadata: Option<RequestMetadata<'a>>,
    status: Option<RpcStatus>,
    #[serde(borrow)]
    request: Option<Raw<'a>>,
    #[serde(borrow)]
    response: Option<Raw<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationInfo<'a> {
    #[serde(borrow)]
    principal_email: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata<'a> {
    #[serde(borrow)]
    caller_ip: Option<Str<'a>>,
    #[serde(borrow)]
    caller_supplied_user_agent: Option<Str<'a>>,
}

/// `google.rpc.Status` (`protoPayload.status`) or a Kubernetes `Status` response: the code.
#[derive(Deserialize)]
struct RpcStatus {
    #[serde(default)]
    code: HttpCode,
}

#[derive(Deserialize)]
struct Operation<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
}

/// One GKE `LogEntry`, mapped onto an upstream audit event (docs/kubernetes.md §7.2).
pub(crate) fn gke_entry(ev: &Event<'_>, payload: Raw<'_>, place: Place, out: &mut Decoded) {
    let log: AuditLog<'_> = match json::parse(payload) {
        Ok(log) => log,
        Err(e) => {
            out.problem(place, format!("gke `protoPayload` is unreadable ({}): skipped", json::describe(&e)));
            return;
        }
    };
    if log.service_name.as_deref().is_some_and(|s| s != "k8s.io") {
        // Cluster-management audit logs (container.googleapis.com) and other services.
        out.stats.ignored += 1;
        return;
    }
    let method = log.method_name.as_deref().unwrap_or("");
    let Some(parsed) = parse_method(method) else {
        out.stats.ignored += 1;
        return;
    };
    let target = log.resource_name.as_deref().and_then(parse_resource_name);
    let object_ref = match (&target, parsed.resource) {
        (Some(Target::Object(o)), _) => Some(ObjectRef {
            resource: owned(Some(o.resource)),
            namespace: owned(o.namespace),
            name: owned(o.name),
            uid: None,
            api_group: owned(o.group),
            subresource: owned(o.subresource.or(parsed.subresource)),
        }),
        (_, Some(resource)) => Some(ObjectRef {
            resource: owned(Some(resource)),
            subresource: owned(parsed.subresource),
            api_group: owned(parsed.group),
            ..ObjectRef::default()
        }),
        _ => None,
    };
    let request_uri = match &target {
        Some(Target::Path(p)) => owned(Some(p)),
        _ => None,
    };
    // The HTTP code of a Status response when there is one, else the gRPC code mapped back.
    let response_code = log.response.and_then(|r| json::parse::<RpcStatus>(r).ok()).and_then(|s| s.code.0);
    let code = response_code.or_else(|| log.status.as_ref().and_then(|s| s.code.0).and_then(http_from_rpc));
    let metadata = log.request_metadata;
    let operation_id = ev.operation.and_then(|o| json::parse::<Operation<'_>>(o).ok()).and_then(|o| o.id);
    let upstream = Event {
        audit_id: operation_id.or_else(|| ev.insert_id.and_then(raw_str)),
        verb: owned(Some(parsed.verb)),
        request_uri,
        user: Some(UserInfo {
            username: log.authentication_info.and_then(|a| a.principal_email),
            uid: None,
            extra: None,
        }),
        source_ips: metadata.as_ref().and_then(|m| m.caller_ip.clone()).map(|ip| vec![ip]),
        user_agent: metadata.and_then(|m| m.caller_supplied_user_agent),
        object_ref,
        response_status: Some(ResponseStatus { code: HttpCode(code) }),
        request_object: log.request,
        response_object: log.response,
        request_received_timestamp: ev.timestamp.and_then(raw_str),
        annotations: ev.labels.and_then(|l| json::parse::<AuditAnnotations<'_>>(l).ok()),
        ..Event::default()
    };
    let origin = Origin { format: Format::GkeLogEntry, fallback_time: None, place };
    normalize::audit_event(&upstream, &origin, out);
}

fn owned(s: Option<&str>) -> Option<Str<'static>> {
    s.filter(|s| !s.is_empty()).map(|s| Str(Cow::Owned(s.to_string())))
}

/// `google.rpc.Code` to the HTTP status the apiserver answered with.
fn http_from_rpc(code: u16) -> Option<u16> {
    Some(match code {
        // OK: the exact 2xx is not kept; 200 marks success.
        0 => 200,
        3 | 9 | 11 => 400,
        16 => 401,
        7 => 403,
        5 => 404,
        6 | 10 => 409,
        8 => 429,
        13 | 15 => 500,
        12 => 501,
        14 => 503,
        4 => 504,
        _ => return None,
    })
}

/// What `methodName` says: `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`, or
/// `io.k8s.<verb>` for non-resource requests.
#[derive(Debug, PartialEq, Eq)]
struct Method<'m> {
    verb: &'m str,
    group: Option<&'m str>,
    resource: Option<&'m str>,
    subresource: Option<&'m str>,
}

fn parse_method(method: &str) -> Option<Method<'_>> {
    let rest = method.strip_prefix("io.k8s.")?;
    let (path, verb) = match rest.rsplit_once('.') {
        Some((path, verb)) => (Some(path), verb),
        None => (None, rest),
    };
    if verb.is_empty() {
        return None;
    }
    let mut m = Method { verb, group: None, resource: None, subresource: None };
    if let Some(path) = path {
        let parts: Vec<&str> = path.split('.').collect();
        // The group may itself contain dots (`rbac.authorization`): find the version.
        let v = parts.iter().position(|p| is_version(p))?;
        let group = parts[..v].join(".");
        m.group = (group != "core" && !group.is_empty()).then(|| &path[..group.len()]);
        m.resource = parts.get(v + 1).copied();
        m.subresource = parts.get(v + 2).copied();
    }
    Some(m)
}

/// `v1`, `v1beta1`, `v2alpha3`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"]
            .iter()
            .any(|w| tail.strip_prefix(w).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// What `resourceName` names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'r> {
    /// `<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]]`.
    Object(ObjectPath<'r>),
    /// A non-resource path (`/healthz`).
    Path(&'r str),
}

#[derive(Debug, PartialEq, Eq)]
struct ObjectPath<'r> {
    group: Option<&'r str>,
    namespace: Option<&'r str>,
    resource: &'r str,
    name: Option<&'r str>,
    subresource: Option<&'r str>,
}

fn parse_resource_name(name: &str) -> Option<Target<'_>> {
    if name.starts_with('/') {
        return Some(Target::Path(name));
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    let v = parts.iter().take(2).position(|p| is_version(p))?;
    let group = if v == 1 { Some(parts[0]).filter(|g| *g != "core") } else { None };
    let rest = &parts[v + 1..];
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] => (Some(*ns), (resource, tail)),
        [resource, tail @ ..] => (None, (resource, tail)),
        [] => return None,
    };
    Some(Target::Object(ObjectPath {
        group,
        namespace,
        resource: rest.0,
        name: rest.1.first().copied(),
        subresource: rest.1.get(1).copied(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        let m = parse_method("io.k8s.core.v1.pods.exec.create").unwrap();
        assert_eq!(m, Method { verb: "create", group: None, resource: Some("pods"), subresource: Some("exec") });
        let m = parse_method("io.k8s.authorization.rbac.v1.clusterroles.create").unwrap();
        assert_eq!((m.group, m.resource, m.verb), (Some("authorization.rbac"), Some("clusterroles"), "create"));
        assert_eq!(parse_method("io.k8s.get").unwrap().verb, "get");
        assert!(parse_method("google.container.v1.ClusterManager.CreateCluster").is_none());
        assert!(parse_method("io.k8s.").is_none());
    }

    #[test]
    fn resource_names() {
        let t = parse_resource_name("core/v1/namespaces/shop/serviceaccounts/api/token").unwrap();
        assert_eq!(
            t,
            Target::Object(ObjectPath {
                group: None,
                namespace: Some("shop"),
                resource: "serviceaccounts",
                name: Some("api"),
                subresource: Some("token")
            })
        );
        let t = parse_resource_name("rbac.authorization.k8s.io/v1/clusterroles/admin").unwrap();
        assert_eq!(
            t,
            Target::Object(ObjectPath {
                group: Some("rbac.authorization.k8s.io"),
                namespace: None,
                resource: "clusterroles",
                name: Some("admin"),
                subresource: None
            })
        );
        let t = parse_resource_name("core/v1/namespaces/foo").unwrap();
        assert!(matches!(
            t,
            Target::Object(ObjectPath { resource: "namespaces", name: Some("foo"), namespace: None, .. })
        ));
        assert_eq!(parse_resource_name("/healthz"), Some(Target::Path("/healthz")));
        assert_eq!(parse_resource_name("nonsense"), None);
    }

    #[test]
    fn versions() {
        for v in ["v1", "v1beta1", "v2alpha3", "v10"] {
            assert!(is_version(v), "{v}");
        }
        for v in ["v", "vbeta", "v1beta", "version", "1", "v1gamma1"] {
            assert!(!is_version(v), "{v}");
        }
    }
}
