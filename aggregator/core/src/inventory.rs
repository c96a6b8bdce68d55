//! Kubernetes objects from `kubectl get -o json` dumps: Pods, Nodes, ServiceAccounts and
//! token Secrets become facts; every other kind is counted as ignored.
//!
//! A dump is a snapshot: a pod in it was alive at collection, with the addresses it had then,
//! from its start. Secret `data` is never read (see [`crate::objects::Secret`]).

use serde::Deserialize;
use tokentrail_proto::observation::{
    FactSource, NodeFact, Observation, PodEvent, PodFact, ServiceAccountFact, ServiceAccountRef, TokenSecretFact,
};
use tokentrail_proto::Timestamp;

use crate::audit_event::Event;
use crate::decoded::{Decoded, Format, Place};
use crate::json::{self, raw_str, Raw};
use crate::normalize::quoted;
use crate::objects::{
    NodeSpec, NodeStatus, ObjectMeta, PodSpec, PodStatus, SecretRefs, SERVICE_ACCOUNT_TOKEN_TYPE,
    TOKEN_SHA256_ANNOTATION,
};

/// Appends the facts of one object of `kind` (its own, or its list's when it has none).
pub(crate) fn object(ev: &Event<'_>, kind: &str, format: Format, place: Place, out: &mut Decoded) {
    // Core kinds only: a CRD that happens to be called `Pod` in another group is not one.
    if ev.api_version.as_deref().is_some_and(|v| v != "v1") {
        out.stats.ignored += 1;
        return;
    }
    let mut reader = Reader { out, place, format };
    match kind {
        "Pod" => reader.pod(ev),
        "Node" => reader.node(ev),
        "ServiceAccount" => reader.serviceaccount(ev),
        "Secret" => reader.secret(ev),
        _ => reader.out.stats.ignored += 1,
    }
}

struct Reader<'s> {
    out: &'s mut Decoded,
    place: Place,
    format: Format,
}

impl Reader<'_> {
    fn problem(&mut self, message: String) {
        self.out.problem(self.place, message);
    }

    /// Reads an optional raw part of the object; a part of the wrong shape is a problem.
    fn part<'a, T: Deserialize<'a> + Default>(&mut self, raw: Option<Raw<'a>>, kind: &str, field: &str) -> Option<T> {
        let Some(raw) = raw else { return Some(T::default()) };
        match json::parse(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(format!("{kind} `{field}` is unreadable ({}): object skipped", json::describe(&e)));
                None
            }
        }
    }

    /// `metadata` with the name (and the namespace, for namespaced kinds) present.
    fn meta<'a>(&mut self, ev: &Event<'a>, kind: &str, namespaced: bool) -> Option<ObjectMeta<'a>> {
        let meta: ObjectMeta<'a> = self.part(ev.metadata, kind, "metadata")?;
        let named = meta.name.as_deref().is_some_and(|n| !n.is_empty());
        let placed = !namespaced || meta.namespace.as_deref().is_some_and(|n| !n.is_empty());
        if !named || !placed {
            let what = if namespaced { "metadata.name and metadata.namespace" } else { "metadata.name" };
            self.problem(format!("{} without {what}: skipped", kind.to_lowercase()));
            return None;
        }
        Some(meta)
    }

    /// `metadata.creationTimestamp`, required to place a fact in time.
    fn created(&mut self, meta: &ObjectMeta<'_>, kind: &str) -> Option<Timestamp> {
        let time = meta.creation_timestamp.as_deref().and_then(Timestamp::parse);
        if time.is_none() {
            self.problem(format!(
                "{} {} has no readable metadata.creationTimestamp: skipped",
                kind.to_lowercase(),
                quoted(name(meta))
            ));
        }
        time
    }

    fn push(&mut self, o: Observation) {
        self.out.observations.push(o);
    }

    fn pod(&mut self, ev: &Event<'_>) {
        let Some(meta) = self.meta(ev, "Pod", true) else { return };
        let Some(spec) = self.part::<PodSpec<'_>>(ev.spec, "Pod", "spec") else { return };
        let Some(status) = self.part::<PodStatus<'_>>(ev.status, "Pod", "status") else { return };
        let started = status.start_time.as_deref().and_then(Timestamp::parse);
        let Some(time) = started.or_else(|| meta.creation_timestamp.as_deref().and_then(Timestamp::parse)) else {
            self.problem(format!(
                "pod {} has neither status.startTime nor metadata.creationTimestamp: skipped",
                quoted(name(&meta))
            ));
            return;
        };
        // A finished pod's address has been released and may belong to another pod now.
        let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let (ips, bad) = if finished { (Vec::new(), Vec::new()) } else { status.ips() };
        for b in bad {
            self.problem(format!("pod address {} is not an address: dropped", quoted(&b)));
        }
        let fact = PodFact {
            time,
            event: Some(PodEvent::Observed),
            source: Some(FactSource::Inventory),
            uid: owned(meta.uid.as_deref()),
            namespace: name_of(meta.namespace.as_deref()),
            name: name(&meta).to_string(),
            node: owned(spec.node_name.as_deref()),
            serviceaccount: spec.serviceaccount(),
            // hostNetwork defaults to false and is omitted when false.
            host_network: Some(spec.host_network.unwrap_or(false)),
            ips,
            secret_volumes: spec.secret_volumes(),
        };
        let deleted = meta.deletion_timestamp.as_deref().and_then(Timestamp::parse).map(|at| PodFact {
            time: at,
            event: Some(PodEvent::Deleted),
            source: Some(FactSource::Inventory),
            uid: fact.uid.clone(),
            namespace: fact.namespace.clone(),
            name: fact.name.clone(),
            ..PodFact::default()
        });
        // The pod's node is where its SNAT and hostNetwork traffic comes from: without nodes.json,
        // a node's address must not be taken for a stranger's.
        let host = status.host_addresses();
        let node_fact = fact.node.clone().filter(|_| !host.is_empty()).map(|name| NodeFact {
            time,
            source: Some(FactSource::Inventory),
            name,
            addresses: host,
            pod_cidrs: Vec::new(),
            os: None,
        });
        self.out.stats.event(self.format);
        self.push(Observation::Pod(fact));
        if let Some(node) = node_fact {
            self.push(Observation::Node(node));
        }
        if let Some(deleted) = deleted {
            self.push(Observation::Pod(deleted));
        }
    }

    fn node(&mut self, ev: &Event<'_>) {
        let Some(meta) = self.meta(ev, "Node", false) else { return };
        let Some(spec) = self.part::<NodeSpec<'_>>(ev.spec, "Node", "spec") else { return };
        let Some(status) = self.part::<NodeStatus<'_>>(ev.status, "Node", "status") else { return };
        let Some(time) = self.created(&meta, "Node") else { return };
        let addresses = status.ips();
        let (pod_cidrs, bad) = spec.pod_cidrs();
        for c in bad {
            self.problem(format!("node {} pod cidr {} is not a network: dropped", quoted(name(&meta)), quoted(c)));
        }
        let os = status.os();
        let fact = NodeFact {
            time,
            source: Some(FactSource::Inventory),
            name: name(&meta).to_string(),
            addresses,
            pod_cidrs,
            os,
        };
        self.out.stats.event(self.format);
        self.push(Observation::Node(fact));
    }

    fn serviceaccount(&mut self, ev: &Event<'_>) {
        let Some(meta) = self.meta(ev, "ServiceAccount", true) else { return };
        let Some(secrets) = self.part::<SecretRefs<'_>>(ev.secrets, "ServiceAccount", "secrets") else { return };
        let Some(time) = self.created(&meta, "ServiceAccount") else { return };
        let fact = ServiceAccountFact {
            time,
            serviceaccount: Some(ServiceAccountRef {
                namespace: name_of(meta.namespace.as_deref()),
                name: name(&meta).to_string(),
            }),
            uid: owned(meta.uid.as_deref()),
            secrets: secrets.iter().filter_map(|s| owned(s.name.as_deref())).collect(),
        };
        self.out.stats.event(self.format);
        self.push(Observation::ServiceAccount(fact));
    }

    /// Only `kubernetes.io/service-account-token` Secrets matter; their data is never read.
    fn secret(&mut self, ev: &Event<'_>) {
        let type_ = ev.type_.and_then(raw_str);
        if type_.as_deref() != Some(SERVICE_ACCOUNT_TOKEN_TYPE) {
            self.out.stats.ignored += 1;
            return;
        }
        let Some(meta) = self.meta(ev, "Secret", true) else { return };
        let Some(time) = self.created(&meta, "Secret") else { return };
        let written = meta.annotations.as_ref().and_then(|a| a.token_sha256.as_deref());
        let token_sha256 = match written.map(token_sha256) {
            Some(Ok(hash)) => Some(hash),
            Some(Err(why)) => {
                // The Secret still exists and is reported; only the hash is not trusted. The value
                // is never quoted: a hand-edited dump may hold the token itself there.
                self.problem(format!(
                    "token secret {}/{}: annotation `{TOKEN_SHA256_ANNOTATION}` {why}: the hash is ignored, the secret kept",
                    meta.namespace.as_deref().unwrap_or(""),
                    name(&meta)
                ));
                None
            }
            None => None,
        };
        let fact = TokenSecretFact {
            time,
            namespace: name_of(meta.namespace.as_deref()),
            name: name(&meta).to_string(),
            serviceaccount: owned(meta.annotations.as_ref().and_then(|a| a.service_account_name.as_deref())),
            last_used: owned(meta.labels.as_ref().and_then(|l| l.legacy_token_last_used.as_deref())),
            invalid_since: owned(meta.labels.as_ref().and_then(|l| l.legacy_token_invalid_since.as_deref())),
            token_sha256,
        };
        self.out.stats.event(self.format);
        self.push(Observation::TokenSecret(fact));
    }
}

/// A token's SHA-256 as `collect` writes it: 64 hex digits, taken in lowercase; else why not
/// (its length only: the value itself is never repeated).
fn token_sha256(written: &str) -> Result<String, String> {
    if written.len() == 64 && written.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(written.to_ascii_lowercase())
    } else {
        Err(format!("is not a SHA-256 (64 hex digits; {} characters given)", written.chars().count()))
    }
}

fn name<'m>(meta: &'m ObjectMeta<'_>) -> &'m str {
    meta.name.as_deref().unwrap_or("")
}

fn name_of(s: Option<&str>) -> String {
    s.unwrap_or("").to_string()
}

fn owned(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}
