//! The API server's audit events the scenarios write to the raw topic, built from the cluster's
//! data so each reads as what happened: `uses(&token).from(ip)`, `legacy(&pod).from(ip)`,
//! `mints_for(&pod).by("alice")`. Field names are those of docs/kubernetes.md.

use serde_json::{json, Map, Value};

use super::cluster::{fresh_uid, now, rfc3339, Pod};

/// A service-account token, as the audit log names it.
#[derive(Clone, Debug)]
pub enum Token {
    /// A projected token bound to a pod, with its JTI.
    PodBound { pod: Pod, jti: String },
    /// A legacy token from a Secret of the pod's service account.
    Legacy { pod: Pod, secret: String },
}

impl Token {
    pub fn bound(pod: &Pod, jti: &str) -> Token {
        Token::PodBound { pod: pod.clone(), jti: jti.into() }
    }

    pub fn legacy(pod: &Pod, secret: &str) -> Token {
        Token::Legacy { pod: pod.clone(), secret: secret.into() }
    }

    fn pod(&self) -> &Pod {
        match self {
            Token::PodBound { pod, .. } | Token::Legacy { pod, .. } => pod,
        }
    }

    /// What a finding about this token names as its credential: the JTI or the Secret.
    pub fn subject(&self) -> String {
        match self {
            Token::PodBound { jti, .. } => format!("JTI={jti}"),
            Token::Legacy { secret, .. } => secret.clone(),
        }
    }

    /// A request made with this token: `.from(ip)` says where it came from.
    pub fn used(&self) -> Use {
        Use { token: self.clone(), source_ips: Vec::new(), verb: "list", resource: "configmaps", delay: 0 }
    }
}

/// One request authenticated by a service-account token.
#[derive(Clone, Debug)]
pub struct Use {
    token: Token,
    source_ips: Vec<String>,
    verb: &'static str,
    resource: &'static str,
    /// How far after now the request happened, in µs.
    delay: i64,
}

impl Use {
    /// The TCP peer the API server saw.
    pub fn from(mut self, ip: &str) -> Use {
        self.source_ips.push(ip.into());
        self
    }

    /// An `X-Forwarded-For` header the client sent, before the TCP peer in `sourceIPs`.
    pub fn forwarded_for(mut self, claimed: &str) -> Use {
        self.source_ips.insert(0, claimed.into());
        self
    }

    /// Stamped `secs` after now: a later moment, without the test sleeping until then.
    pub fn later_by_secs(mut self, secs: i64) -> Use {
        self.delay = secs * 1_000_000;
        self
    }

    /// Stamped `secs` before now: an event the audit backend delivers late.
    pub fn earlier_by_secs(mut self, secs: i64) -> Use {
        self.delay = -secs * 1_000_000;
        self
    }

    pub fn reading_secrets(mut self) -> Use {
        (self.verb, self.resource) = ("list", "secrets");
        self
    }

    /// The audit event (stage ResponseComplete) of this request, stamped now.
    pub fn event(&self) -> Value {
        let pod = self.token.pod();
        let mut user = json!({
            "username": format!("system:serviceaccount:{}:{}", pod.namespace, pod.serviceaccount),
            "uid": format!("sa-uid-{}", pod.serviceaccount),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", pod.namespace), "system:authenticated"],
        });
        let mut annotations = Map::new();
        annotations.insert("authorization.k8s.io/decision".into(), json!("allow"));
        match &self.token {
            Token::PodBound { jti, .. } => {
                user["extra"] = json!({
                    "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
                    "authentication.kubernetes.io/node-name": [pod.node.name],
                    "authentication.kubernetes.io/node-uid": [format!("node-uid-{}", pod.node.name)],
                    "authentication.kubernetes.io/pod-name": [pod.name],
                    "authentication.kubernetes.io/pod-uid": [pod.uid],
                });
            }
            Token::Legacy { secret, .. } => {
                annotations.insert("authentication.k8s.io/legacy-token".into(), user["username"].clone());
                annotations.insert("authentication.k8s.io/legacy-token-manual-secret".into(), json!(secret));
            }
        }
        event(
            self.delay,
            json!({
                "level": "Metadata",
                "requestURI": format!("/api/v1/namespaces/{}/{}", pod.namespace, self.resource),
                "verb": self.verb,
                "user": user,
                "sourceIPs": self.source_ips,
                "userAgent": format!("{}/1.0 (linux/amd64)", pod.serviceaccount),
                "objectRef": {"resource": self.resource, "namespace": pod.namespace, "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
                "annotations": annotations,
            }),
        )
    }
}

/// A TokenRequest for `pod`'s service account bound to `pod` (audit level Request, so the
/// binding is visible), by `user` from `from`, issuing `jti`.
pub fn mint_bound_to(pod: &Pod, user: &str, from: &str, jti: &str) -> Value {
    let binding = json!({"kind": "Pod", "apiVersion": "v1", "name": pod.name, "uid": pod.uid});
    token_request(pod, user, from, jti, Some(binding))
}

/// A TokenRequest for `pod`'s service account bound to nothing (`kubectl create token`).
pub fn mint_unbound_for(pod: &Pod, user: &str, from: &str, jti: &str) -> Value {
    token_request(pod, user, from, jti, None)
}

fn token_request(pod: &Pod, user: &str, from: &str, jti: &str, binding: Option<Value>) -> Value {
    let mut spec = json!({"audiences": null, "expirationSeconds": 3600});
    if let Some(binding) = binding {
        spec["boundObjectRef"] = binding;
    }
    event(
        0,
        json!({
            "level": "Request",
            "requestURI": format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", pod.namespace, pod.serviceaccount),
            "verb": "create",
            "user": {"username": user, "groups": ["system:authenticated"]},
            "sourceIPs": [from],
            "userAgent": "kubectl/v1.33.0 (linux/amd64)",
            "objectRef": {"resource": "serviceaccounts", "namespace": pod.namespace, "name": pod.serviceaccount,
                          "apiVersion": "v1", "subresource": "token"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null}, "spec": spec, "status": {"token": "", "expirationTimestamp": null}},
            "annotations": {"authentication.kubernetes.io/issued-credential-id": format!("JTI={jti}"),
                            "authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        }),
    )
}

/// The fields every event has, around `body`: kind, apiVersion, a fresh auditID, the stage and
/// the times (now, plus `delay` µs).
fn event(delay: i64, body: Value) -> Value {
    let t = now() + delay;
    let mut e = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": fresh_uid("audit"), "stage": "ResponseComplete",
        "requestReceivedTimestamp": rfc3339(t), "stageTimestamp": rfc3339(t + 5_000),
    });
    e.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    e
}
