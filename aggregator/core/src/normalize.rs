//! One audit event to observations: the hot path.
//!
//! Identity comes from `user` only, never `impersonatedUser` (docs/kubernetes.md §9.7): an
//! impersonated service account is not a use of that account's token. Every request
//! authenticated by a service-account token is a [`TokenUse`], whatever else it also is (a
//! mint, an exec, a Secret read). A 401 is only an [`AuthFailure`]: it has no user.
//!
//! Pod lifecycle facts (create, binding, kubelet status patch, delete) and token Secret creation
//! are taken only from events whose `responseStatus.code` is 2xx. A failed request changed
//! nothing (a create refused by admission never made a pod), and an event without a code
//! (stage `RequestReceived`, or a pipeline that dropped it) cannot say whether it succeeded; the
//! same request's `ResponseComplete` stage carries the code and the objects. Observations that
//! describe the request itself (uses, mints, exec, Secret reads) are emitted at every stage with
//! their code, and the engine deduplicates them by `auditID`.

use std::net::IpAddr;

use tokentrail_proto::net::parse_source_ip;
use tokentrail_proto::observation::{
    AuthFailure, BoundPod, Credential, FactSource, NodeFact, Observation, PodAccess, PodAccessKind, PodEvent, PodFact,
    Request, SecretRead, ServiceAccountRef, Stage, TokenMint, TokenSecretFact, UseView,
};
use tokentrail_proto::time::AUDIT_ERA;
use tokentrail_proto::Timestamp;

use crate::audit_event::{Event, LegacyEventMeta, ObjectRef};
use crate::decoded::{Decoded, Format, Place};
use crate::json::{self, elide_quoted, is_object, Raw, Str};
use crate::objects::{Binding, DeleteOptions, Node, ObjectMeta, Pod, Secret, TokenRequest, SERVICE_ACCOUNT_TOKEN_TYPE};

/// Where an audit event came from: its format, a time to fall back on from its envelope, and
/// where it was in the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub format: Format,
    pub fallback_time: Option<Timestamp>,
    pub place: Place,
}

/// Appends what one audit event tells the engine.
pub(crate) fn audit_event(ev: &Event<'_>, origin: &Origin, out: &mut Decoded) {
    out.stats.event(origin.format);
    if ev.impersonated_user.is_some() {
        out.stats.impersonated += 1;
    }
    let audit_id = ev.audit_id.as_deref().unwrap_or("");
    let Some(time) = event_time(ev).or(origin.fallback_time) else {
        out.problem(
            origin.place,
            format!(
                "audit event {} has no readable time (requestReceivedTimestamp, stageTimestamp or timestamp): skipped",
                quoted(audit_id)
            ),
        );
        return;
    };
    if !AUDIT_ERA.contains(&time) {
        out.problem(
            origin.place,
            format!(
                "audit event {} has an impossible time {time} (before {} or from {} on): skipped",
                quoted(audit_id),
                AUDIT_ERA.start.date(),
                AUDIT_ERA.end.date()
            ),
        );
        return;
    }
    let mut n = Normalizer { ev, origin, out, time, audit_id, source_ips: Vec::new() };
    n.source_ips = n.source_ips();
    n.run();
}

struct Normalizer<'e, 'a, 's> {
    ev: &'e Event<'a>,
    origin: &'e Origin,
    out: &'s mut Decoded,
    time: Timestamp,
    audit_id: &'e str,
    source_ips: Vec<IpAddr>,
}

impl<'e> Normalizer<'e, '_, '_> {
    fn run(&mut self) {
        let ev = self.ev;
        let code = self.code();
        if code == Some(401) {
            let failure = AuthFailure {
                time: self.time,
                audit_id: self.audit_id.to_string(),
                source_ips: self.source_ips.clone(),
                user_agent: self.user_agent(),
                request: self.request(),
            };
            self.push(Observation::AuthFailure(failure));
            return;
        }
        let username = ev.username();
        if let Some(sa) = username.and_then(ServiceAccountRef::parse) {
            self.token_use(sa);
        }
        let verb = ev.verb.as_deref().unwrap_or("");
        let obj = ev.object_ref.as_ref();
        let core = obj.is_some_and(|o| o.api_group.as_deref().is_none_or(str::is_empty));
        let resource = obj.and_then(|o| o.resource.as_deref()).filter(|_| core);
        let subresource = obj.and_then(|o| o.subresource.as_deref()).filter(|s| !s.is_empty());
        let success = code.is_some_and(|c| (200..300).contains(&c));
        match (verb, resource, subresource) {
            ("create", Some("serviceaccounts"), Some("token")) => self.mint(username),
            // kubectl 1.30+ streams exec/attach/port-forward over WebSocket, which the apiserver
            // logs as `get`; older clients' SPDY upgrade is a `create`.
            ("create" | "get", Some("pods"), Some(sub @ ("exec" | "attach" | "portforward"))) => {
                self.pod_access(username, sub)
            }
            ("get" | "list" | "watch", Some("secrets"), None) => self.secret_read(username, verb),
            ("create", Some("pods"), None) if success => self.pod_created(),
            ("create", Some("pods"), Some("binding")) if success => self.pod_scheduled(),
            ("patch" | "update", Some("pods"), Some("status")) if success => self.pod_status(),
            ("delete", Some("pods"), None) if success => self.pod_deleted(),
            ("create", Some("secrets"), None) if success => self.secret_created(),
            ("create" | "patch" | "update", Some("nodes"), None | Some("status")) if success => self.node_written(),
            _ => {}
        }
        if let Some(node) = username.and_then(|u| u.strip_prefix("system:node:")) {
            self.kubelet_request(node);
        }
    }

    fn push(&mut self, o: Observation) {
        self.out.observations.push(o);
    }

    fn problem(&mut self, message: String) {
        self.out.problem(self.origin.place, message);
    }

    fn code(&self) -> Option<u16> {
        self.ev.response_status.as_ref().and_then(|s| s.code.0)
    }

    fn user_agent(&self) -> Option<String> {
        self.user_agent_view().map(str::to_string)
    }

    fn user_agent_view(&self) -> Option<&'e str> {
        self.ev.user_agent.as_deref().filter(|s| !s.is_empty())
    }

    fn object_ref(&self) -> Option<&ObjectRef<'_>> {
        self.ev.object_ref.as_ref()
    }

    /// `sourceIPs`, parsed; unparseable entries are dropped with a problem.
    fn source_ips(&mut self) -> Vec<IpAddr> {
        let mut ips = Vec::with_capacity(self.ev.source_ips.as_ref().map_or(0, Vec::len));
        for entry in self.ev.source_ips.iter().flatten() {
            match parse_source_ip(entry) {
                Some(ip) => ips.push(ip),
                None => {
                    let msg = format!("sourceIPs entry {} is not an address: dropped", quoted(entry));
                    self.problem(msg);
                }
            }
        }
        ips
    }

    /// What was requested: `objectRef`, or the request path for non-resource requests.
    fn request(&self) -> Request {
        self.request_view().into_owned()
    }

    fn request_view(&self) -> Request<&'e str> {
        let ev = self.ev;
        let filled = |s: &'e Option<Str<'_>>| s.as_deref().filter(|s| !s.is_empty());
        let mut request = Request { verb: ev.verb.as_deref().unwrap_or(""), code: self.code(), ..Request::default() };
        match &ev.object_ref {
            Some(o) => {
                request.resource = filled(&o.resource);
                request.subresource = filled(&o.subresource);
                request.namespace = filled(&o.namespace);
                request.name = filled(&o.name);
            }
            None => {
                let path = ev.request_uri.as_deref().map(|u| u.split(['?', '#']).next().unwrap_or(u));
                request.resource = path.filter(|p| !p.is_empty());
            }
        }
        request
    }

    fn token_use(&mut self, serviceaccount: ServiceAccountRef<&str>) {
        let ev = self.ev;
        let source_ips = std::mem::take(&mut self.source_ips);
        let use_ = UseView {
            time: self.time,
            audit_id: self.audit_id,
            stage: Stage::parse(ev.stage.as_deref().unwrap_or("")),
            serviceaccount,
            serviceaccount_uid: ev.user.as_ref().and_then(|u| u.uid.as_deref()).filter(|s| !s.is_empty()),
            credential: credential(ev),
            source_ips: &source_ips,
            user_agent: self.user_agent_view(),
            request: self.request_view(),
            stale_token: ev.annotations.as_ref().is_some_and(|a| a.stale_token.is_some()),
        };
        *self.out.stats.token_uses_by_format.entry(self.origin.format).or_default() += 1;
        self.out.token_use(use_);
        self.source_ips = source_ips;
    }

    fn mint(&mut self, minter: Option<&str>) {
        let ev = self.ev;
        let obj = self.object_ref();
        let ns = obj.and_then(|o| o.namespace.as_deref()).unwrap_or("");
        let name = obj.and_then(|o| o.name.as_deref()).unwrap_or("");
        if ns.is_empty() || name.is_empty() {
            self.problem(
                "token request without objectRef namespace and name: the service account is unknown, skipped".into(),
            );
            return;
        }
        let serviceaccount = ServiceAccountRef { namespace: ns.to_string(), name: name.to_string() };
        let annotations = ev.annotations.as_ref();
        let jti = annotations
            .and_then(|a| a.issued_credential_id.as_deref().or(a.credential_id.as_deref()))
            .and_then(strip_jti)
            .map(str::to_owned);
        let mut bound_kind = None;
        let mut bound_pod = None;
        if let Some(raw) = ev.request_object.filter(|r| is_object(r)) {
            match json::parse::<TokenRequest<'_>>(raw) {
                Ok(req) => {
                    if let Some(r) = req.spec.and_then(|s| s.bound_object_ref) {
                        let kind = r.kind.as_deref().filter(|k| !k.is_empty());
                        if kind == Some("Pod") {
                            bound_pod = r.name.as_deref().filter(|n| !n.is_empty()).map(|name| BoundPod {
                                name: name.to_string(),
                                uid: r.uid.as_deref().filter(|u| !u.is_empty()).map(str::to_string),
                            });
                        }
                        bound_kind = kind.map(str::to_string);
                    }
                }
                Err(e) => self.problem(format!(
                    "requestObject of token request is not a TokenRequest ({}): binding unknown",
                    json::describe(&e)
                )),
            }
        }
        let mint = TokenMint {
            time: self.time,
            audit_id: self.audit_id.to_string(),
            minter: minter.unwrap_or("").to_string(),
            source_ips: self.source_ips.clone(),
            serviceaccount,
            jti,
            bound_pod,
            bound_kind,
            code: self.code(),
            user_agent: self.user_agent(),
        };
        self.push(Observation::TokenMint(mint));
    }

    fn pod_access(&mut self, principal: Option<&str>, subresource: &str) {
        let kind = match subresource {
            "exec" => PodAccessKind::Exec,
            "attach" => PodAccessKind::Attach,
            _ => PodAccessKind::PortForward,
        };
        let obj = self.object_ref();
        let (Some(principal), Some(ns), Some(name)) = (
            principal,
            obj.and_then(|o| o.namespace.as_deref()).filter(|s| !s.is_empty()),
            obj.and_then(|o| o.name.as_deref()).filter(|s| !s.is_empty()),
        ) else {
            return;
        };
        let access = PodAccess {
            time: self.time,
            audit_id: self.audit_id.to_string(),
            kind,
            principal: principal.to_string(),
            source_ips: self.source_ips.clone(),
            namespace: ns.to_string(),
            pod_name: name.to_string(),
            code: self.code(),
        };
        self.push(Observation::PodAccess(access));
    }

    fn secret_read(&mut self, principal: Option<&str>, verb: &str) {
        let Some(principal) = principal else { return };
        let obj = self.object_ref();
        let read = SecretRead {
            time: self.time,
            audit_id: self.audit_id.to_string(),
            principal: principal.to_string(),
            source_ips: self.source_ips.clone(),
            verb: verb.to_string(),
            namespace: obj.and_then(|o| o.namespace.as_deref()).filter(|s| !s.is_empty()).map(str::to_string),
            name: obj.and_then(|o| o.name.as_deref()).filter(|s| !s.is_empty()).map(str::to_string),
            code: self.code(),
            user_agent: self.user_agent(),
        };
        self.push(Observation::SecretRead(read));
    }

    /// Reads `requestObject` or `responseObject` as `T` when it is an object; a parse error is
    /// a problem, a missing or non-object value (Metadata level, AKS's
    /// `"skipped-too-big-size-object"`) is just absent.
    fn object<'r, T: serde::Deserialize<'r>>(&mut self, raw: Option<Raw<'r>>, what: &str) -> Option<T> {
        let raw = raw.filter(|r| is_object(r))?;
        match json::parse::<T>(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(format!(
                    "{what} of {} is unreadable ({}): ignored",
                    quoted(self.audit_id),
                    json::describe(&e)
                ));
                None
            }
        }
    }

    /// A pod fact named by `objectRef` and the given objects, in order of preference.
    fn pod_fact(&self, event: PodEvent, metas: &[Option<&Pod<'_>>]) -> Option<PodFact> {
        let obj = self.object_ref();
        let meta = |f: MetaField| {
            metas
                .iter()
                .flatten()
                .filter_map(|p| p.metadata.as_ref().and_then(f))
                .find(|s| !s.is_empty())
                .map(str::to_string)
        };
        let name = meta(|m| m.name.as_deref()).or_else(|| nonempty(obj.and_then(|o| o.name.as_deref())))?;
        let namespace =
            meta(|m| m.namespace.as_deref()).or_else(|| nonempty(obj.and_then(|o| o.namespace.as_deref())))?;
        Some(PodFact {
            time: self.time,
            event: Some(event),
            source: Some(FactSource::AuditLog),
            uid: meta(|m| m.uid.as_deref()),
            namespace,
            name,
            ..PodFact::default()
        })
    }

    fn pod_created(&mut self) {
        let resp: Option<Pod<'_>> = self.object(self.ev.response_object, "responseObject");
        let req: Option<Pod<'_>> = self.object(self.ev.request_object, "requestObject");
        let Some(mut fact) = self.pod_fact(PodEvent::Created, &[resp.as_ref(), req.as_ref()]) else { return };
        if let Some(spec) = resp.as_ref().and_then(|p| p.spec.as_ref()).or(req.as_ref().and_then(|p| p.spec.as_ref())) {
            fact.node = nonempty(spec.node_name.as_deref());
            fact.serviceaccount = spec.serviceaccount();
            // hostNetwork defaults to false and is omitted when false.
            fact.host_network = Some(spec.host_network.unwrap_or(false));
            fact.secret_volumes = spec.secret_volumes();
        }
        if let Some(status) = resp.as_ref().and_then(|p| p.status.as_ref()) {
            fact.ips = self.ips_of(status);
        }
        self.push(Observation::Pod(fact));
    }

    fn pod_scheduled(&mut self) {
        let Some(binding) = self.object::<Binding<'_>>(self.ev.request_object, "requestObject") else { return };
        let node = binding
            .target
            .as_ref()
            .filter(|t| t.kind.as_deref().is_none_or(|k| k == "Node"))
            .and_then(|t| nonempty(t.name.as_deref()));
        let Some(node) = node else { return };
        let obj = self.object_ref();
        let meta = binding.metadata.as_ref();
        let (Some(name), Some(namespace)) = (
            nonempty(obj.and_then(|o| o.name.as_deref())).or_else(|| nonempty(meta.and_then(|m| m.name.as_deref()))),
            nonempty(obj.and_then(|o| o.namespace.as_deref()))
                .or_else(|| nonempty(meta.and_then(|m| m.namespace.as_deref()))),
        ) else {
            return;
        };
        let fact = PodFact {
            time: self.time,
            event: Some(PodEvent::Scheduled),
            source: Some(FactSource::AuditLog),
            uid: nonempty(meta.and_then(|m| m.uid.as_deref())),
            namespace,
            name,
            node: Some(node),
            ..PodFact::default()
        };
        self.push(Observation::Pod(fact));
    }

    fn pod_status(&mut self) {
        let req: Option<Pod<'_>> = self.object(self.ev.request_object, "requestObject");
        let resp: Option<Pod<'_>> = self.object(self.ev.response_object, "responseObject");
        let mut ips = match req.as_ref().and_then(|p| p.status.as_ref()) {
            Some(status) => self.ips_of(status),
            None => Vec::new(),
        };
        if ips.is_empty() {
            if let Some(status) = resp.as_ref().and_then(|p| p.status.as_ref()) {
                ips = self.ips_of(status);
            }
        }
        if ips.is_empty() {
            // A status patch without addresses (conditions only) says nothing the engine uses.
            return;
        }
        let Some(mut fact) = self.pod_fact(PodEvent::Status, &[req.as_ref(), resp.as_ref()]) else { return };
        if fact.uid.is_none() {
            fact.uid = nonempty(self.object_ref().and_then(|o| o.uid.as_deref()));
        }
        fact.node = resp.as_ref().and_then(|p| p.spec.as_ref()).and_then(|s| nonempty(s.node_name.as_deref()));
        fact.ips = ips;
        let statuses = [req.as_ref(), resp.as_ref()];
        let host = statuses
            .iter()
            .flatten()
            .filter_map(|p| p.status.as_ref())
            .map(|s| s.host_addresses())
            .find(|h| !h.is_empty());
        // The kubelet patches the status of its own node's pods.
        let kubelet = self.ev.username().and_then(|u| u.strip_prefix("system:node:")).map(str::to_string);
        let node_fact = fact.node.clone().or(kubelet).zip(host).map(|(name, addresses)| NodeFact {
            time: self.time,
            source: Some(FactSource::AuditLog),
            name,
            addresses,
            pod_cidrs: Vec::new(),
            os: None,
        });
        self.push(Observation::Pod(fact));
        if let Some(node) = node_fact {
            self.push(Observation::Node(node));
        }
    }

    fn pod_deleted(&mut self) {
        let options: Option<DeleteOptions<'_>> = self.object(self.ev.request_object, "requestObject");
        let resp: Option<Pod<'_>> = self.object(self.ev.response_object, "responseObject");
        let obj = self.object_ref();
        let (Some(name), Some(namespace)) =
            (nonempty(obj.and_then(|o| o.name.as_deref())), nonempty(obj.and_then(|o| o.namespace.as_deref())))
        else {
            return;
        };
        let uid = nonempty(obj.and_then(|o| o.uid.as_deref()))
            .or_else(|| {
                nonempty(options.as_ref().and_then(|o| o.preconditions.as_ref()).and_then(|p| p.uid.as_deref()))
            })
            .or_else(|| nonempty(resp.as_ref().and_then(|p| p.metadata.as_ref()).and_then(|m| m.uid.as_deref())));
        let fact = PodFact {
            time: self.time,
            event: Some(PodEvent::Deleted),
            source: Some(FactSource::AuditLog),
            uid,
            namespace,
            name,
            ..PodFact::default()
        };
        self.push(Observation::Pod(fact));
    }

    /// A Secret of type `kubernetes.io/service-account-token` created: read from the request
    /// (or response) object's metadata and type, never its data.
    fn secret_created(&mut self) {
        let req: Option<Secret<'_>> = self.object(self.ev.request_object, "requestObject");
        let resp: Option<Secret<'_>> = self.object(self.ev.response_object, "responseObject");
        let secrets = [req.as_ref(), resp.as_ref()];
        let is_token = secrets.iter().flatten().any(|s| s.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE));
        if !is_token {
            return;
        }
        let metas: Vec<_> = secrets.iter().flatten().filter_map(|s| s.metadata.as_ref()).collect();
        let pick = |f: MetaField| metas.iter().filter_map(|m| f(m)).find(|s| !s.is_empty()).map(str::to_string);
        let obj = self.object_ref();
        let (Some(name), Some(namespace)) = (
            pick(|m| m.name.as_deref()).or_else(|| nonempty(obj.and_then(|o| o.name.as_deref()))),
            pick(|m| m.namespace.as_deref()).or_else(|| nonempty(obj.and_then(|o| o.namespace.as_deref()))),
        ) else {
            return;
        };
        let fact = TokenSecretFact {
            time: self.time,
            namespace,
            name,
            serviceaccount: pick(|m| m.annotations.as_ref()?.service_account_name.as_deref()),
            last_used: pick(|m| m.labels.as_ref()?.legacy_token_last_used.as_deref()),
            invalid_since: pick(|m| m.labels.as_ref()?.legacy_token_invalid_since.as_deref()),
            // Only `collect` writes the hash, into its dumps; a Secret in a request is not one.
            token_sha256: None,
        };
        self.push(Observation::TokenSecret(fact));
    }

    /// A Node created or its status written (the kubelet registering and reporting, at Request
    /// level or above): the node's addresses, pod CIDRs and OS, from the body.
    fn node_written(&mut self) {
        let req: Option<Node<'_>> = self.object(self.ev.request_object, "requestObject");
        let resp: Option<Node<'_>> = self.object(self.ev.response_object, "responseObject");
        let bodies = [resp.as_ref(), req.as_ref()];
        let name = bodies
            .iter()
            .flatten()
            .filter_map(|n| n.metadata.as_ref()?.name.as_deref())
            .chain(self.object_ref().and_then(|o| o.name.as_deref()))
            .find(|n| !n.is_empty())
            .map(str::to_string);
        let Some(name) = name else { return };
        let statuses = || bodies.iter().flatten().filter_map(|n| n.status.as_ref());
        let addresses = statuses().map(|s| s.ips()).find(|a| !a.is_empty()).unwrap_or_default();
        let os = statuses().find_map(|s| s.os());
        let mut pod_cidrs = Vec::new();
        for spec in bodies.iter().flatten().filter_map(|n| n.spec.as_ref()) {
            let (networks, bad) = spec.pod_cidrs();
            for c in bad {
                self.problem(format!("node {} pod cidr {} is not a network: dropped", quoted(&name), quoted(c)));
            }
            if !networks.is_empty() {
                pod_cidrs = networks;
                break;
            }
        }
        if addresses.is_empty() && os.is_none() && pod_cidrs.is_empty() {
            // A status patch of conditions or a heartbeat only: nothing the engine uses.
            return;
        }
        let fact = NodeFact { time: self.time, source: Some(FactSource::AuditLog), name, addresses, pod_cidrs, os };
        self.push(Observation::Node(fact));
    }

    /// A request by `system:node:<name>`: the kubelet talks from its node's address, so the TCP
    /// peer is one of that node's addresses. Loopback is skipped: a control-plane kubelet
    /// talking to its local apiserver says nothing about the node's network address.
    fn kubelet_request(&mut self, node: &str) {
        let Some(&peer) = self.source_ips.last() else { return };
        if node.is_empty() || peer.is_loopback() || peer.is_unspecified() {
            return;
        }
        let fact = NodeFact {
            time: self.time,
            source: Some(FactSource::AuditLog),
            name: node.to_string(),
            addresses: vec![peer],
            pod_cidrs: Vec::new(),
            // client-go's user agent names the OS the kubelet was built for: `(linux/amd64)`.
            os: self.user_agent_view().and_then(kubelet_os),
        };
        self.push(Observation::Node(fact));
    }

    fn ips_of(&mut self, status: &crate::objects::PodStatus<'_>) -> Vec<IpAddr> {
        let (ips, bad) = status.ips();
        for b in bad {
            self.problem(format!("pod address {} is not an address: dropped", quoted(&b)));
        }
        ips
    }
}

/// The OS a kubelet's user agent names (`kubelet/v1.30.2 (linux/amd64) kubernetes/39683505`).
fn kubelet_os(user_agent: &str) -> Option<String> {
    if !user_agent.starts_with("kubelet/") {
        return None;
    }
    let inside = user_agent.split_once('(')?.1;
    let os = inside.split(['/', ')']).next()?.trim();
    (!os.is_empty()).then(|| os.to_string())
}

/// Reads one field of an object's metadata.
type MetaField = for<'m, 'x> fn(&'m ObjectMeta<'x>) -> Option<&'m str>;

/// How the token behind a service-account request was issued (docs/kubernetes.md §0, §2, §3).
fn credential<'e>(ev: &'e Event<'_>) -> Credential<&'e str> {
    let extra = ev.user.as_ref().and_then(|u| u.extra.as_ref());
    // Since 1.32 `credential-id` also names x509 certificates (`X509SHA256=`) and OIDC tokens:
    // only a `JTI=` value identifies a service-account token.
    let jti = extra.and_then(|x| x.credential_id.as_deref()).and_then(strip_jti);
    let filled = |s: Option<&'e str>| s.filter(|s| !s.is_empty());
    if let Some(x) = extra {
        if let (Some(pod_name), Some(pod_uid)) = (filled(x.pod_name.as_deref()), filled(x.pod_uid.as_deref())) {
            return Credential::PodBound { jti, pod_name, pod_uid, node: filled(x.node_name.as_deref()) };
        }
    }
    if let Some(jti) = jti {
        return Credential::Unbound { jti };
    }
    match ev.annotations.as_ref() {
        Some(a) if a.legacy_token.is_some() => Credential::LegacySecret {
            secret: filled(a.legacy_token_autogenerated_secret.as_deref())
                .or_else(|| filled(a.legacy_token_manual_secret.as_deref())),
        },
        _ => Credential::Unknown,
    }
}

/// `JTI=<uuid>` without its prefix; `None` for any other credential id.
fn strip_jti(id: &str) -> Option<&str> {
    id.strip_prefix("JTI=").filter(|j| !j.is_empty())
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// The event's time: `requestReceivedTimestamp`, else `stageTimestamp`, else v1beta1's
/// `timestamp` or `metadata.creationTimestamp`.
fn event_time(ev: &Event<'_>) -> Option<Timestamp> {
    let parse = |s: &Option<Str<'_>>| s.as_deref().and_then(Timestamp::parse);
    parse(&ev.request_received_timestamp)
        .or_else(|| parse(&ev.stage_timestamp))
        .or_else(|| ev.timestamp.and_then(json::raw_str).and_then(|s| Timestamp::parse(&s)))
        .or_else(|| {
            let meta: LegacyEventMeta<'_> = ev.metadata.filter(|m| is_object(m)).and_then(|m| json::parse(m).ok())?;
            meta.creation_timestamp.as_deref().and_then(Timestamp::parse)
        })
}

/// An input string quoted for a problem message, elided when long (it could be a token).
pub(crate) fn quoted(s: &str) -> String {
    elide_quoted(&format!("{s:?}"), 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jti_credential_ids_name_a_token() {
        assert_eq!(strip_jti("JTI=3f0c2b1e"), Some("3f0c2b1e"));
        assert_eq!(strip_jti("X509SHA256=ab"), None);
        assert_eq!(strip_jti("JTI="), None);
    }

    #[test]
    fn long_inputs_are_elided_in_messages() {
        assert_eq!(quoted("10.0.0.1x"), "\"10.0.0.1x\"");
        assert_eq!(quoted(&"a".repeat(100)), "\"…\"");
    }
}
