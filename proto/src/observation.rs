//! What the engine is told: compact, normalised facts distilled from evidence.
//!
//! Decoders (`tokentrail-aggregator-core`) turn audit events and inventory dumps into these
//! values, the aggregator turns agent attestations into [`CredentialFact`]s and agent-sourced
//! pod and node facts; the engine never sees raw JSON. Every observation carries the
//! event time it is about, so the engine can be fed in any order. Nothing here may hold token
//! material: a credential is named by its JTI or by its Secret's name, never by its value.

use std::net::IpAddr;

use crate::net::IpNet;
use crate::time::Timestamp;

/// One fact about the cluster, at a point in event time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Observation {
    /// A request authenticated with a service-account token.
    TokenUse(TokenUse),
    /// A TokenRequest (`create serviceaccounts/token`).
    TokenMint(TokenMint),
    /// A request that failed bearer authentication (HTTP 401, `user: {}`).
    AuthFailure(AuthFailure),
    /// `create pods/exec`, `pods/attach` (or `pods/portforward`) on a pod.
    PodAccess(PodAccess),
    /// get/list/watch of Secrets.
    SecretRead(SecretRead),
    /// Something learned about one pod: its spec, its addresses, its deletion.
    Pod(PodFact),
    /// Something learned about one node: its addresses and pod CIDRs.
    Node(NodeFact),
    /// A ServiceAccount object (from an inventory dump).
    ServiceAccount(ServiceAccountFact),
    /// A Secret of type `kubernetes.io/service-account-token` (from a dump or an audit event).
    TokenSecret(TokenSecretFact),
    /// A node agent's attestation that a pod holds (or no longer holds) a credential.
    Credential(CredentialFact),
    /// A node agent saw a process that may not read a pod's token file open it.
    TokenFileRead(TokenFileRead),
    /// How far the cluster's evidence has come: what repeated node facts carried, batched by
    /// the aggregator (never made by a decoder).
    Progress(Progress),
}

impl Observation {
    /// The event time the observation is about.
    pub fn time(&self) -> Timestamp {
        match self {
            Observation::TokenUse(o) => o.time,
            Observation::TokenMint(o) => o.time,
            Observation::AuthFailure(o) => o.time,
            Observation::PodAccess(o) => o.time,
            Observation::SecretRead(o) => o.time,
            Observation::Pod(o) => o.time,
            Observation::Node(o) => o.time,
            Observation::ServiceAccount(o) => o.time,
            Observation::TokenSecret(o) => o.time,
            Observation::Credential(o) => o.time,
            Observation::TokenFileRead(o) => o.time,
            Observation::Progress(o) => o.time(),
        }
    }

    /// Whether a node agent reported it: its time is that node's clock, which the node
    /// controls, rather than the apiserver's or an inventory's.
    pub fn from_agent(&self) -> bool {
        match self {
            Observation::Credential(_) | Observation::TokenFileRead(_) => true,
            Observation::Progress(p) => p.logged.is_none(),
            Observation::Pod(PodFact { source, .. }) | Observation::Node(NodeFact { source, .. }) => {
                *source == Some(FactSource::Attestation)
            }
            _ => false,
        }
    }
}

/// A service account, as `system:serviceaccount:<namespace>:<name>` names it.
///
/// `S` is `String` in observations and `&str` in a [`UseView`]: both hash, compare and order
/// alike, which lets a view look up what the engine keeps without building an owned key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ServiceAccountRef<S = String> {
    /// Namespace of the ServiceAccount.
    pub namespace: S,
    /// Name of the ServiceAccount.
    pub name: S,
}

impl ServiceAccountRef {
    /// Parses `system:serviceaccount:<ns>:<name>`; `None` for any other username.
    pub fn from_username(username: &str) -> Option<ServiceAccountRef> {
        ServiceAccountRef::parse(username).map(ServiceAccountRef::into_owned)
    }

    /// Borrows the names.
    pub fn view(&self) -> ServiceAccountRef<&str> {
        ServiceAccountRef { namespace: &self.namespace, name: &self.name }
    }
}

impl<'a> ServiceAccountRef<&'a str> {
    /// [`ServiceAccountRef::from_username`], borrowing from the username.
    pub fn parse(username: &'a str) -> Option<ServiceAccountRef<&'a str>> {
        let rest = username.strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = rest.split_once(':')?;
        if namespace.is_empty() || name.is_empty() || name.contains(':') {
            return None;
        }
        Some(ServiceAccountRef { namespace, name })
    }

    /// An owned copy.
    pub fn into_owned(self) -> ServiceAccountRef {
        ServiceAccountRef { namespace: self.namespace.to_owned(), name: self.name.to_owned() }
    }
}

/// How the token that authenticated a request was issued (`S` as in [`ServiceAccountRef`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Credential<S = String> {
    /// A projected token bound to a pod (`user.extra` pod-name and pod-uid).
    PodBound {
        /// `JTI=<uuid>` without the prefix; absent before Kubernetes 1.30.
        jti: Option<S>,
        /// Name of the bound pod.
        pod_name: S,
        /// UID of the bound pod: the key, since StatefulSets reuse names.
        pod_uid: S,
        /// `node-name` extra: the node at mint time.
        node: Option<S>,
    },
    /// A TokenRequest token with no pod binding (`kubectl create token`, controllers).
    Unbound {
        /// The JTI, without the `JTI=` prefix.
        jti: S,
    },
    /// A Secret-based, non-expiring token (`authentication.k8s.io/legacy-token` annotation).
    LegacySecret {
        /// From `legacy-token-{autogenerated,manual}-secret` (Kubernetes 1.29+).
        secret: Option<S>,
    },
    /// A service-account token whose kind the evidence does not say (old clusters, GKE).
    Unknown,
}

impl Credential {
    /// Borrows the names.
    pub fn view(&self) -> Credential<&str> {
        match self {
            Credential::PodBound { jti, pod_name, pod_uid, node } => {
                Credential::PodBound { jti: jti.as_deref(), pod_name, pod_uid, node: node.as_deref() }
            }
            Credential::Unbound { jti } => Credential::Unbound { jti },
            Credential::LegacySecret { secret } => Credential::LegacySecret { secret: secret.as_deref() },
            Credential::Unknown => Credential::Unknown,
        }
    }
}

impl Credential<&str> {
    /// An owned copy.
    pub fn into_owned(self) -> Credential {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        match self {
            Credential::PodBound { jti, pod_name, pod_uid, node } => Credential::PodBound {
                jti: owned(jti),
                pod_name: pod_name.to_owned(),
                pod_uid: pod_uid.to_owned(),
                node: owned(node),
            },
            Credential::Unbound { jti } => Credential::Unbound { jti: jti.to_owned() },
            Credential::LegacySecret { secret } => Credential::LegacySecret { secret: owned(secret) },
            Credential::Unknown => Credential::Unknown,
        }
    }
}

/// The part of a request a responder needs to see: what was done to what, and the outcome
/// (`S` as in [`ServiceAccountRef`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Request<S = String> {
    /// Kubernetes verb (`get`, `list`, `create`, ...); lowercased HTTP method for non-resource URLs.
    pub verb: S,
    /// `objectRef.resource`, or the request URI's path for non-resource requests.
    pub resource: Option<S>,
    /// `objectRef.subresource`.
    pub subresource: Option<S>,
    /// `objectRef.namespace`.
    pub namespace: Option<S>,
    /// `objectRef.name`.
    pub name: Option<S>,
    /// `responseStatus.code`, when the stage carries one.
    pub code: Option<u16>,
}

impl Request {
    /// Borrows the names.
    pub fn view(&self) -> Request<&str> {
        Request {
            verb: &self.verb,
            resource: self.resource.as_deref(),
            subresource: self.subresource.as_deref(),
            namespace: self.namespace.as_deref(),
            name: self.name.as_deref(),
            code: self.code,
        }
    }
}

impl Request<&str> {
    /// An owned copy.
    pub fn into_owned(self) -> Request {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Request {
            verb: self.verb.to_owned(),
            resource: owned(self.resource),
            subresource: owned(self.subresource),
            namespace: owned(self.namespace),
            name: owned(self.name),
            code: self.code,
        }
    }
}

/// A request authenticated by a service-account token: the unit the engine verifies.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenUse {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`: all stages of one request share it.
    pub audit_id: String,
    /// `stage`, so the engine can prefer the most complete copy of a request.
    pub stage: Stage,
    /// The authenticated service account (from `user`, never `impersonatedUser`).
    pub serviceaccount: ServiceAccountRef,
    /// `user.uid`: the ServiceAccount's UID.
    pub serviceaccount_uid: Option<String>,
    /// How the token was issued.
    pub credential: Credential,
    /// `sourceIPs` as logged (X-Forwarded-For, X-Real-Ip, then the TCP peer).
    pub source_ips: Vec<IpAddr>,
    /// `userAgent` (client-supplied, untrusted).
    pub user_agent: Option<String>,
    /// What was requested and the response code.
    pub request: Request,
    /// The `authentication.k8s.io/stale-token` annotation was present.
    pub stale_token: bool,
}

impl TokenUse {
    /// The use as the engine folds it.
    pub fn view(&self) -> UseView<'_> {
        UseView {
            time: self.time,
            audit_id: &self.audit_id,
            stage: self.stage,
            serviceaccount: self.serviceaccount.view(),
            serviceaccount_uid: self.serviceaccount_uid.as_deref(),
            credential: self.credential.view(),
            source_ips: &self.source_ips,
            user_agent: self.user_agent.as_deref(),
            request: self.request.view(),
            stale_token: self.stale_token,
        }
    }
}

/// A [`TokenUse`] whose strings are borrowed, from the evidence or from an owned use.
///
/// Token uses are nearly every line of an audit log, and the engine keeps almost nothing of
/// each one (a count, a time bucket, a few samples). Folding a view where the decoder parsed
/// it spares the dozen strings an owned use would allocate and free per line; the owned form
/// is what travels between processes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UseView<'a> {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`.
    pub audit_id: &'a str,
    /// `stage`.
    pub stage: Stage,
    /// The authenticated service account.
    pub serviceaccount: ServiceAccountRef<&'a str>,
    /// `user.uid`.
    pub serviceaccount_uid: Option<&'a str>,
    /// How the token was issued.
    pub credential: Credential<&'a str>,
    /// `sourceIPs` as logged.
    pub source_ips: &'a [IpAddr],
    /// `userAgent`.
    pub user_agent: Option<&'a str>,
    /// What was requested and the response code.
    pub request: Request<&'a str>,
    /// The `authentication.k8s.io/stale-token` annotation was present.
    pub stale_token: bool,
}

impl UseView<'_> {
    /// An owned copy.
    pub fn into_owned(self) -> TokenUse {
        TokenUse {
            time: self.time,
            audit_id: self.audit_id.to_owned(),
            stage: self.stage,
            serviceaccount: self.serviceaccount.into_owned(),
            serviceaccount_uid: self.serviceaccount_uid.map(str::to_owned),
            credential: self.credential.into_owned(),
            source_ips: self.source_ips.to_vec(),
            user_agent: self.user_agent.map(str::to_owned),
            request: self.request.into_owned(),
            stale_token: self.stale_token,
        }
    }
}

/// Audit stage of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    /// `RequestReceived`.
    RequestReceived,
    /// `ResponseStarted` (long-running requests, failed authentication).
    ResponseStarted,
    /// `ResponseComplete`.
    ResponseComplete,
    /// `Panic`.
    Panic,
    /// Not said (GKE entries, inventory).
    Unknown,
}

impl Stage {
    /// Parses the audit `stage` field.
    pub fn parse(s: &str) -> Stage {
        match s {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => Stage::Unknown,
        }
    }
}

/// A TokenRequest: who minted a token for which service account, bound to what.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenMint {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`.
    pub audit_id: String,
    /// `user.username` of the minter (`system:node:<node>` for a kubelet).
    pub minter: String,
    /// `sourceIPs` of the mint request.
    pub source_ips: Vec<IpAddr>,
    /// The service account the token is for (`objectRef.namespace` / `objectRef.name`).
    pub serviceaccount: ServiceAccountRef,
    /// `issued-credential-id` annotation (`credential-id` in 1.29), without `JTI=`.
    pub jti: Option<String>,
    /// `requestObject.spec.boundObjectRef` when its kind is Pod (Request level and above).
    pub bound_pod: Option<BoundPod>,
    /// `requestObject.spec.boundObjectRef.kind` of any kind (Pod, Secret, Node).
    pub bound_kind: Option<String>,
    /// `responseStatus.code`; a mint that failed (403, 422) issued nothing.
    pub code: Option<u16>,
    /// `userAgent`.
    pub user_agent: Option<String>,
}

/// The pod a minted token is bound to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct BoundPod {
    /// Pod name.
    pub name: String,
    /// Pod UID, when the request named it.
    pub uid: Option<String>,
}

/// A request that failed bearer authentication: the only trace a revoked token leaves.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthFailure {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`.
    pub audit_id: String,
    /// `sourceIPs`.
    pub source_ips: Vec<IpAddr>,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// What was attempted.
    pub request: Request,
}

/// Which interactive access to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum PodAccessKind {
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
}

/// `create pods/exec` (or attach, port-forward) by a principal on a pod.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodAccess {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`.
    pub audit_id: String,
    /// Which subresource.
    pub kind: PodAccessKind,
    /// `user.username` of whoever ran it.
    pub principal: String,
    /// `sourceIPs`.
    pub source_ips: Vec<IpAddr>,
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod (the audit event names it; the engine resolves the UID by time).
    pub pod_name: String,
    /// `responseStatus.code` (101 when the stream was upgraded, 403 when refused).
    pub code: Option<u16>,
}

/// get/list/watch on Secrets.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecretRead {
    /// `requestReceivedTimestamp`.
    pub time: Timestamp,
    /// `auditID`.
    pub audit_id: String,
    /// `user.username`.
    pub principal: String,
    /// `sourceIPs`.
    pub source_ips: Vec<IpAddr>,
    /// `get`, `list` or `watch`.
    pub verb: String,
    /// Namespace, absent for a cluster-wide list.
    pub namespace: Option<String>,
    /// Secret name, for a `get`.
    pub name: Option<String>,
    /// `responseStatus.code`.
    pub code: Option<u16>,
    /// `userAgent`.
    pub user_agent: Option<String>,
}

/// Where a pod or node fact came from, most trusted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum FactSource {
    /// A node agent's attestation.
    Attestation,
    /// An audit event (pod create, binding, kubelet status patch, delete; kubelet requests).
    AuditLog,
    /// A collected `kubectl get -o json` dump.
    Inventory,
}

/// What happened to a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum PodEvent {
    /// Created (spec known; uid known only from a response object).
    Created,
    /// Bound to a node (`pods/binding`).
    Scheduled,
    /// Status reported (addresses), typically the kubelet's `pods/status` patch.
    Status,
    /// Deleted: `time` is when the deletion was requested.
    Deleted,
    /// Seen alive in an inventory dump or attestation: `time` is its start, and it was alive
    /// at collection.
    Observed,
}

/// A fact about one pod. Fields the source does not say are `None` or empty and leave what the
/// engine already knows untouched.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodFact {
    /// When this became true.
    pub time: Timestamp,
    /// What happened.
    pub event: Option<PodEvent>,
    /// Where the fact came from.
    pub source: Option<FactSource>,
    /// Pod UID (absent on some audit events: the engine resolves the name by time).
    pub uid: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `spec.serviceAccountName`.
    pub serviceaccount: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: Option<bool>,
    /// `status.podIPs` / `status.podIP`.
    pub ips: Vec<IpAddr>,
    /// Names of Secrets the pod mounts as volumes (legacy tokens among them).
    pub secret_volumes: Vec<String>,
}

/// A fact about one node.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeFact {
    /// When this became true.
    pub time: Timestamp,
    /// Where the fact came from.
    pub source: Option<FactSource>,
    /// Node name.
    pub name: String,
    /// Addresses (`status.addresses` of type InternalIP/ExternalIP, or the peer address of the
    /// node's own kubelet requests).
    pub addresses: Vec<IpAddr>,
    /// `spec.podCIDRs` / `spec.podCIDR`.
    pub pod_cidrs: Vec<IpNet>,
    /// The operating system: `status.nodeInfo.operatingSystem`, or as the node's kubelet names
    /// it in its user agent (`linux`, `windows`).
    #[serde(default)]
    pub os: Option<String>,
}

/// How far a cluster's evidence has come. The aggregator broadcasts node facts to every
/// partition, and nearly all of them repeat what every partition already holds: each request of
/// a kubelet names its node's address again, each agent heartbeat its node again. Such repeats
/// carry only time, so the aggregator keeps their latest times and sends them as one of these
/// every few seconds (docs/streaming.md, "Broadcasts").
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The latest time of the audit events among the repeats (the audit log's progress);
    /// `None` when only agents reported.
    pub logged: Option<Timestamp>,
    /// Each node whose agent reported, with the latest time it reported (that node's clock).
    pub nodes: Vec<NodeProgress>,
}

/// How far one node's agent has reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeProgress {
    /// Node name.
    pub name: String,
    /// The latest time its agent reported.
    pub reported_until: Timestamp,
}

impl Progress {
    /// The audit log's time when it has one, else the latest agent's.
    pub fn time(&self) -> Timestamp {
        self.logged.or_else(|| self.nodes.iter().map(|n| n.reported_until).max()).unwrap_or(Timestamp::MIN)
    }
}

/// A ServiceAccount object.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceAccountFact {
    /// `metadata.creationTimestamp`.
    pub time: Timestamp,
    /// The account.
    pub serviceaccount: Option<ServiceAccountRef>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `.secrets[].name`: autogenerated token Secrets.
    pub secrets: Vec<String>,
}

/// A Secret of type `kubernetes.io/service-account-token`. Its token is never copied here.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenSecretFact {
    /// `metadata.creationTimestamp`.
    pub time: Timestamp,
    /// Namespace.
    pub namespace: String,
    /// Secret name.
    pub name: String,
    /// `kubernetes.io/service-account.name` annotation.
    pub serviceaccount: Option<String>,
    /// `kubernetes.io/legacy-token-last-used` label (a date).
    pub last_used: Option<String>,
    /// `kubernetes.io/legacy-token-invalid-since` label (a date).
    pub invalid_since: Option<String>,
    /// The SHA-256 of its token, 64 lowercase hex digits, from the `tokentrail.io/token-sha256`
    /// annotation `tokentrail collect` writes in place of the data: the same token in two
    /// clusters' Secrets is told by it, and the token itself is never read. Absent from older
    /// records (a persisted state from before the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// Whether a pod holds a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum CredentialEvent {
    /// The token file appeared on the pod's node (`time`: when the kubelet wrote it).
    Held,
    /// The token file is gone: rotated away or the pod torn down (`time`: when the agent noticed).
    Released,
}

/// A node agent's attestation: on node `node`, pod `pod_uid` holds `credential`. The ground
/// truth that tells a token used by its pod from the same token minted behind the kubelet's back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CredentialFact {
    /// When it became true.
    pub time: Timestamp,
    /// Held or released.
    pub event: CredentialEvent,
    /// The node whose agent attested it (authenticated by the aggregator).
    pub node: String,
    /// The pod whose volume holds the token file.
    pub pod_uid: String,
    /// The token's service account.
    pub serviceaccount: ServiceAccountRef,
    /// The credential (pod-bound with its JTI, or legacy with its Secret).
    pub credential: Credential,
    /// What else the agent said: carried to the correlator, not read by the engine.
    #[serde(default)]
    pub details: AttestationDetails,
}

/// What an agent says of a credential beyond what the engine verifies: the pod's names and the
/// token's claims.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttestationDetails {
    /// The pod's namespace, when the agent knew the pod (the pod's key is its UID).
    pub pod_namespace: Option<String>,
    /// The pod's name, likewise.
    pub pod_name: Option<String>,
    /// The token's `aud` claim.
    pub audiences: Vec<String>,
    /// The token's `iat` claim.
    pub issued_at: Option<Timestamp>,
    /// The token's `nbf` claim.
    pub not_before: Option<Timestamp>,
    /// The token's `exp` claim.
    pub expires_at: Option<Timestamp>,
    /// `kubernetes.io.warnafter`: set on tokens whose expiry the apiserver extended.
    pub warn_after: Option<Timestamp>,
}

/// A node agent saw a process open a pod's token file that may not read it: another pod's
/// container, or a host process that is neither the kubelet nor the container runtime. The
/// theft itself, before any use of the token.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenFileRead {
    /// When the agent saw the open (its node's clock).
    pub time: Timestamp,
    /// The node whose agent saw it (authenticated by the aggregator).
    pub node: String,
    /// The pod whose volume holds the token file.
    pub token_pod_uid: String,
    /// That pod's namespace and name, when the agent knew the pod.
    pub token_pod: Option<(String, String)>,
    /// The token's service account.
    pub serviceaccount: ServiceAccountRef,
    /// The credential the file held, as the agent attested it.
    pub credential: Credential,
    /// Who opened it.
    pub reader: TokenReader,
}

/// The process that opened a token file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenReader {
    /// Its process id on the node.
    pub pid: u32,
    /// Its executable, when the agent could read it.
    pub executable: Option<String>,
    /// Its cgroup path.
    pub cgroup: String,
    /// The pod it runs in; `None`: a host process.
    pub pod_uid: Option<String>,
    /// That pod's namespace, when known.
    pub pod_namespace: Option<String>,
    /// That pod's name, when known.
    pub pod_name: Option<String>,
    /// Its container's id, when the cgroup names one.
    pub container: Option<String>,
}

impl TokenReader {
    /// `namespace/name` of the reader pod, its uid when the names are unknown, or the host
    /// process (`host process /usr/bin/cat (pid 42)`).
    pub fn describe(&self) -> String {
        match (&self.pod_uid, &self.pod_namespace, &self.pod_name) {
            (Some(_), Some(ns), Some(name)) => format!("pod {ns}/{name}"),
            (Some(uid), _, _) => format!("pod uid {uid}"),
            (None, _, _) => {
                format!(
                    "host process {} (pid {})",
                    self.executable.as_deref().unwrap_or("<unknown executable>"),
                    self.pid
                )
            }
        }
    }
}
