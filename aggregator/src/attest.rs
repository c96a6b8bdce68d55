//! Agent attestations → observations (the domain's, as the decoders make), with the node check
//! (pure).
//!
//! An [`AgentState`] per agent (per node and `agent_id`: [`crate::agents`]) remembers what that agent attested (pods, credentials by
//! location) and the highest sequence processed, across its reconnections: resends are
//! recognised, a removal names the account of the credential it removes, and a snapshot
//! releases what it no longer holds. [`AgentState::apply`] turns one message into observations
//! and counts what it refused.
//!
//! The node check (docs/design.md §5): the agent's node comes from its credential (the caller passes
//! it). A message for another node is refused whole; inside a message, a credential whose
//! `kubernetes.io.node` claim names another node, or whose claimed pod is not the pod whose
//! volume holds it, and a pod the audit log placed on another node ([`PodNodes`]), are refused
//! one by one. A compromised node can still lie about its own pods; it cannot vouch for
//! another node's.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use tokentrail_proto::observation::{
    AttestationDetails, Credential, CredentialEvent, CredentialFact, FactSource, NodeFact, Observation, PodEvent,
    PodFact, ServiceAccountRef, TokenFileRead, TokenReader,
};
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::{IpNet, Timestamp};

/// Where the audit log says pods run: `(cluster, pod uid) → node`, learned only from audit
/// facts (an agent cannot teach it). Bounded like the route directory.
pub trait PodNodes {
    /// The node the audit log last placed the pod on.
    fn node_of(&self, cluster: &str, pod_uid: &str) -> Option<String>;
}

/// Why a message was not processed at all.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The message names another node than the agent's credential.
    #[error("agent authenticated for node {authenticated:?} sent a message for node {claimed:?}")]
    WrongNode {
        /// From the credential.
        authenticated: String,
        /// From the message.
        claimed: String,
    },
    /// The message has no body.
    #[error("attestation without a snapshot or delta")]
    Empty,
}

/// What one message became.
#[derive(Debug, Default)]
pub struct Applied {
    /// Observations to produce, about the agent's cluster.
    pub observations: Vec<Observation>,
    /// Pods and credentials refused by the node check.
    pub refused: u64,
    /// The message was a resend of one already processed: acknowledge it again, nothing else.
    pub resend: bool,
    /// The message was refused whole for this event time, beyond the receiver's clock plus the
    /// skew it tolerates ([`latest_time`]): acknowledge it, count it, deliver nothing.
    pub future: Option<i64>,
}

#[derive(Clone, Debug)]
struct PodId {
    namespace: String,
    name: String,
    serviceaccount: Option<String>,
}

/// What the aggregator remembers of one agent (one `agent_id`).
#[derive(Debug, Default)]
pub struct AgentState {
    /// Highest sequence processed (0: none).
    pub processed: u64,
    pods: HashMap<String, PodId>,
    /// Location key → the Held fact last produced for it.
    credentials: BTreeMap<String, CredentialFact>,
}

impl AgentState {
    /// Applies one message from an agent authenticated for `node` in `cluster`; a message with
    /// an event time after `not_after` (the receiver's clock plus its tolerated skew, in
    /// microseconds since the epoch) is refused whole and changes nothing.
    pub fn apply(
        &mut self,
        cluster: &str,
        node: &str,
        m: &agent::AgentMessage,
        pods: &dyn PodNodes,
        not_after: i64,
    ) -> Result<Applied, Refusal> {
        if m.node_name != node {
            return Err(Refusal::WrongNode { authenticated: node.into(), claimed: m.node_name.clone() });
        }
        let mut out = Applied::default();
        if m.sequence != 0 && m.sequence <= self.processed {
            out.resend = true;
            return Ok(out);
        }
        let latest = latest_time(m);
        if latest > not_after {
            out.future = Some(latest);
            return Ok(out);
        }
        let now = m.observed_at_micros;
        let mut ctx = Ctx { cluster, node, time: now, out: &mut out, pods };
        match &m.body {
            None => return Err(Refusal::Empty),
            Some(agent::agent_message::Body::Snapshot(s)) => {
                if let Some(n) = &s.node {
                    ctx.node_fact(n);
                }
                let mut seen_pods = Vec::new();
                for p in &s.pods {
                    if self.pod(&mut ctx, p, true) {
                        seen_pods.push(p.uid.clone());
                    }
                }
                let gone: Vec<String> = self.pods.keys().filter(|uid| !seen_pods.contains(uid)).cloned().collect();
                for uid in gone {
                    self.pod_removed(&mut ctx, &uid, now);
                }
                let mut held = Vec::new();
                for c in &s.credentials {
                    if let Some(key) = self.credential(&mut ctx, c) {
                        held.push(key);
                    }
                }
                let released: Vec<String> = self.credentials.keys().filter(|k| !held.contains(k)).cloned().collect();
                for key in released {
                    self.release(&mut ctx, &key, now);
                }
            }
            Some(agent::agent_message::Body::Delta(d)) => {
                if let Some(n) = &d.node {
                    ctx.node_fact(n);
                }
                for p in &d.pods_upserted {
                    self.pod(&mut ctx, p, false);
                }
                for r in &d.pods_removed {
                    self.pod_removed(&mut ctx, &r.uid, r.removed_at_micros);
                }
                for c in &d.credentials_upserted {
                    self.credential(&mut ctx, c);
                }
                for r in &d.credentials_removed {
                    if let Some(l) = &r.location {
                        self.release(&mut ctx, &location_key(l), r.removed_at_micros);
                    }
                }
                for r in &d.token_reads {
                    self.token_read(&mut ctx, r);
                }
            }
        }
        self.processed = self.processed.max(m.sequence);
        Ok(out)
    }

    /// A pod on the node; `false` when refused.
    fn pod(&mut self, ctx: &mut Ctx<'_>, p: &agent::Pod, snapshot: bool) -> bool {
        if let Some(elsewhere) = ctx.pods.node_of(ctx.cluster, &p.uid).filter(|n| n != ctx.node) {
            tracing::warn!(node = ctx.node, pod_uid = %p.uid, audit_node = %elsewhere, "attestation refused: pod runs on another node");
            ctx.out.refused += 1;
            return false;
        }
        let sa = Some(p.serviceaccount.clone()).filter(|s| !s.is_empty());
        self.pods.insert(
            p.uid.clone(),
            PodId { namespace: p.namespace.clone(), name: p.name.clone(), serviceaccount: sa.clone() },
        );
        let (event, time) = if snapshot {
            (PodEvent::Observed, p.started_at_micros.unwrap_or(ctx.time))
        } else {
            (PodEvent::Status, ctx.time)
        };
        let fact = PodFact {
            time: Timestamp(time),
            event: Some(event),
            source: Some(FactSource::Attestation),
            uid: Some(p.uid.clone()),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: Some(ctx.node.to_string()),
            serviceaccount: sa,
            host_network: Some(p.host_network),
            ips: p.ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()).collect(),
            secret_volumes: p.secret_volumes.iter().map(|v| v.secret.clone()).collect(),
        };
        ctx.push(Observation::Pod(fact.clone()));
        if let Some(at) = p.deletion_requested_at_micros {
            ctx.push(Observation::Pod(PodFact {
                time: Timestamp(at),
                event: Some(PodEvent::Deleted),
                ips: Vec::new(),
                secret_volumes: Vec::new(),
                ..fact
            }));
        }
        true
    }

    fn pod_removed(&mut self, ctx: &mut Ctx<'_>, uid: &str, time: i64) {
        let Some(id) = self.pods.remove(uid) else { return };
        ctx.push(Observation::Pod(PodFact {
            time: Timestamp(time),
            event: Some(PodEvent::Deleted),
            source: Some(FactSource::Attestation),
            uid: Some(uid.to_string()),
            namespace: id.namespace,
            name: id.name,
            node: Some(ctx.node.to_string()),
            serviceaccount: id.serviceaccount,
            ..Default::default()
        }));
    }

    /// The Held fact an attested credential makes, after the node check; `None` when refused
    /// (counted) or unusable.
    fn held_fact(&self, ctx: &mut Ctx<'_>, c: &agent::Credential) -> Option<CredentialFact> {
        let location = c.location.as_ref()?;
        let claimed_node = c.node.as_ref().map(|n| n.name.as_str()).filter(|n| !n.is_empty());
        let claimed_pod = c.pod.as_ref().map(|p| p.uid.as_str()).filter(|u| !u.is_empty());
        if claimed_node.is_some_and(|n| n != ctx.node) || claimed_pod.is_some_and(|u| u != location.pod_uid) {
            tracing::warn!(node = ctx.node, pod_uid = %location.pod_uid, claimed_node, "attestation refused: credential bound elsewhere");
            ctx.out.refused += 1;
            return None;
        }
        if ctx.pods.node_of(ctx.cluster, &location.pod_uid).is_some_and(|n| n != ctx.node) {
            ctx.out.refused += 1;
            return None;
        }
        // A token that names no service account (neither its claims nor its `sub`) cannot be
        // keyed by one: it is not produced (the correlator dropped such facts on reading).
        let serviceaccount = serviceaccount_of(c)?;
        let pod = self.pods.get(&location.pod_uid);
        let credential = match c.kind() {
            agent::CredentialKind::LegacySecret => Credential::LegacySecret { secret: c.legacy_secret_name.clone() },
            agent::CredentialKind::PodBound => Credential::PodBound {
                jti: c.jti.clone(),
                pod_name: c.pod.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                pod_uid: location.pod_uid.clone(),
                node: claimed_node.map(str::to_string),
            },
            _ => match &c.jti {
                Some(jti) => Credential::Unbound { jti: jti.clone() },
                None => Credential::Unknown,
            },
        };
        let fact = CredentialFact {
            time: Timestamp(c.written_at_micros.or(c.issued_at_micros).unwrap_or(ctx.time)),
            event: CredentialEvent::Held,
            node: ctx.node.to_string(),
            pod_uid: location.pod_uid.clone(),
            serviceaccount,
            credential,
            details: AttestationDetails {
                pod_namespace: pod.map(|p| p.namespace.clone()),
                pod_name: pod.map(|p| p.name.clone()),
                audiences: c.audiences.clone(),
                issued_at: c.issued_at_micros.map(Timestamp),
                not_before: c.not_before_micros.map(Timestamp),
                expires_at: c.expires_at_micros.map(Timestamp),
                warn_after: c.warn_after_micros.map(Timestamp),
            },
        };
        Some(fact)
    }

    /// A credential held on the node; its location key, or `None` when refused.
    fn credential(&mut self, ctx: &mut Ctx<'_>, c: &agent::Credential) -> Option<String> {
        let location = c.location.as_ref()?;
        let fact = self.held_fact(ctx, c)?;
        let key = location_key(location);
        // A snapshot repeats what is still held: say it once.
        if self.credentials.get(&key) != Some(&fact) {
            ctx.push(Observation::Credential(fact.clone()));
            self.credentials.insert(key.clone(), fact);
        }
        Some(key)
    }

    /// A foreign read of a token file: whose token it is comes from the credential the read
    /// carries, checked as an attested credential is (bound to this node, held by the pod whose
    /// volume it is in), else from what this agent attested at that location. A read naming no
    /// credential at a location the agent never attested, or a credential at another location,
    /// is refused.
    fn token_read(&mut self, ctx: &mut Ctx<'_>, r: &agent::TokenFileRead) {
        let attested = r.location.as_ref().and_then(|l| self.credentials.get(&location_key(l))).cloned();
        let held = match (&r.credential, attested) {
            (Some(c), _) if c.location == r.location => match self.held_fact(ctx, c) {
                Some(fact) => fact,
                // Refused and counted by the node check.
                None => return,
            },
            (None, Some(fact)) => fact,
            _ => {
                tracing::warn!(node = ctx.node, "token read refused: no credential attested at that token file");
                ctx.out.refused += 1;
                return;
            }
        };
        let reader_pod = r.reader_pod_uid.as_ref().and_then(|uid| self.pods.get(uid));
        let read = TokenFileRead {
            time: Timestamp(r.time_micros),
            node: ctx.node.to_string(),
            token_pod_uid: held.pod_uid.clone(),
            token_pod: held.details.pod_namespace.clone().zip(held.details.pod_name.clone()),
            serviceaccount: held.serviceaccount.clone(),
            credential: held.credential.clone(),
            reader: TokenReader {
                pid: r.pid,
                executable: r.executable.clone(),
                cgroup: r.cgroup.clone(),
                pod_uid: r.reader_pod_uid.clone(),
                pod_namespace: reader_pod.map(|p| p.namespace.clone()),
                pod_name: reader_pod.map(|p| p.name.clone()),
                container: r.reader_container.clone(),
            },
        };
        ctx.push(Observation::TokenFileRead(read));
    }

    fn release(&mut self, ctx: &mut Ctx<'_>, key: &str, time: i64) {
        if let Some(held) = self.credentials.remove(key) {
            ctx.push(Observation::Credential(CredentialFact {
                time: Timestamp(time),
                event: CredentialEvent::Released,
                ..held
            }));
        }
    }
}

/// One message being applied: its cluster and node, its time, what it became so far, and where
/// the audit log places pods ([`PodNodes`]).
struct Ctx<'a> {
    cluster: &'a str,
    node: &'a str,
    time: i64,
    out: &'a mut Applied,
    pods: &'a dyn PodNodes,
}

impl Ctx<'_> {
    fn push(&mut self, observation: Observation) {
        self.out.observations.push(observation);
    }

    fn node_fact(&mut self, n: &agent::Node) {
        if n.name != self.node {
            self.out.refused += 1;
            return;
        }
        let addresses = n
            .addresses
            .iter()
            .filter(|a| a.r#type == "InternalIP" || a.r#type == "ExternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .collect();
        // `spec.podCIDRs`, validated CIDRs, read as the decoders read an inventory's.
        let pod_cidrs = n.pod_cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect();
        let fact = NodeFact {
            time: Timestamp(self.time),
            source: Some(FactSource::Attestation),
            name: n.name.clone(),
            addresses,
            pod_cidrs,
            // The agent's node report says nothing of its OS yet; nodes.json and the kubelet's
            // requests do.
            os: None,
        };
        self.push(Observation::Node(fact));
    }
}

/// The latest event time a message carries, in microseconds since the epoch: when it was
/// observed, and when its pods started, were deleted or removed and its credentials were
/// written, issued or removed. A token's `nbf`, `exp` and refresh time are not events and may
/// lie ahead. All of them come from the node's clock: the driver refuses a message whose
/// latest time is beyond its own clock plus the skew it tolerates.
pub fn latest_time(m: &agent::AgentMessage) -> i64 {
    let pod = |p: &agent::Pod| p.started_at_micros.into_iter().chain(p.deletion_requested_at_micros);
    let credential = |c: &agent::Credential| c.written_at_micros.into_iter().chain(c.issued_at_micros);
    let times: Vec<i64> = match &m.body {
        Some(agent::agent_message::Body::Snapshot(s)) => {
            s.pods.iter().flat_map(pod).chain(s.credentials.iter().flat_map(credential)).collect()
        }
        Some(agent::agent_message::Body::Delta(d)) => d
            .pods_upserted
            .iter()
            .flat_map(pod)
            .chain(d.pods_removed.iter().map(|r| r.removed_at_micros))
            .chain(d.credentials_upserted.iter().flat_map(credential))
            .chain(d.credentials_removed.iter().map(|r| r.removed_at_micros))
            .chain(d.token_reads.iter().map(|r| r.time_micros))
            .collect(),
        None => Vec::new(),
    };
    times.into_iter().fold(m.observed_at_micros, i64::max)
}

/// Pods and credentials a message attests (what a refusal of the whole message refuses).
pub fn attested_items(m: &agent::AgentMessage) -> u64 {
    let n = match &m.body {
        Some(agent::agent_message::Body::Snapshot(s)) => s.pods.len() + s.credentials.len(),
        Some(agent::agent_message::Body::Delta(d)) => {
            d.pods_upserted.len() + d.credentials_upserted.len() + d.token_reads.len()
        }
        None => 0,
    };
    n as u64
}

fn location_key(l: &agent::CredentialLocation) -> String {
    format!("{}/{}/{}/{}", l.pod_uid, l.volume_kind, l.volume, l.file)
}

/// The token's account: the `kubernetes.io` claims, else `sub`.
fn serviceaccount_of(c: &agent::Credential) -> Option<ServiceAccountRef> {
    if let (Some(sa), false) = (&c.serviceaccount, c.namespace.is_empty()) {
        return Some(ServiceAccountRef { namespace: c.namespace.clone(), name: sa.name.clone() });
    }
    let rest = c.subject.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    Some(ServiceAccountRef { namespace: namespace.into(), name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Audit(Vec<(&'static str, &'static str)>);
    impl PodNodes for Audit {
        fn node_of(&self, _cluster: &str, uid: &str) -> Option<String> {
            self.0.iter().find(|(u, _)| *u == uid).map(|(_, n)| n.to_string())
        }
    }

    fn cred(pod_uid: &str, node: &str, jti: &str) -> agent::Credential {
        agent::Credential {
            location: Some(agent::CredentialLocation {
                pod_uid: pod_uid.into(),
                volume_kind: agent::VolumeKind::Projected as i32,
                volume: "kube-api-access-x".into(),
                file: "token".into(),
            }),
            kind: agent::CredentialKind::PodBound as i32,
            jti: Some(jti.into()),
            subject: "system:serviceaccount:payments:api".into(),
            namespace: "payments".into(),
            serviceaccount: Some(agent::ObjectRef { name: "api".into(), uid: "sa-uid".into() }),
            pod: Some(agent::ObjectRef { name: "api-1".into(), uid: pod_uid.into() }),
            node: Some(agent::ObjectRef { name: node.into(), uid: String::new() }),
            ..Default::default()
        }
    }

    fn snapshot(
        seq: u64,
        node: &str,
        pods: Vec<agent::Pod>,
        credentials: Vec<agent::Credential>,
    ) -> agent::AgentMessage {
        agent::AgentMessage {
            agent_id: "a1".into(),
            sequence: seq,
            node_name: node.into(),
            observed_at_micros: 1_000,
            body: Some(agent::agent_message::Body::Snapshot(agent::NodeSnapshot {
                pods,
                credentials,
                ..Default::default()
            })),
        }
    }

    fn pod(uid: &str) -> agent::Pod {
        agent::Pod {
            uid: uid.into(),
            namespace: "payments".into(),
            name: "api-1".into(),
            serviceaccount: "api".into(),
            ips: vec!["10.244.1.5".into()],
            ..Default::default()
        }
    }

    #[test]
    fn credential_bound_to_another_node_is_refused_the_rest_is_kept() {
        let mut s = AgentState::default();
        let m = snapshot(1, "n1", vec![pod("u1")], vec![cred("u1", "n1", "j1"), cred("u2", "n2", "j2")]);
        let a = s.apply("prod", "n1", &m, &Audit(vec![]), i64::MAX).unwrap();
        assert_eq!(a.refused, 1);
        assert_eq!(a.observations.len(), 2, "{:?}", a.observations);
    }

    #[test]
    fn pod_the_audit_log_placed_elsewhere_is_refused() {
        let mut s = AgentState::default();
        let m = snapshot(1, "n1", vec![pod("u1")], vec![cred("u1", "n1", "j1")]);
        let a = s.apply("prod", "n1", &m, &Audit(vec![("u1", "n2")]), i64::MAX).unwrap();
        assert_eq!((a.refused, a.observations.len()), (2, 0));
    }

    #[test]
    fn latest_time_is_the_latest_event_time_and_not_a_tokens_expiry() {
        let mut c = cred("u1", "n1", "j1");
        c.written_at_micros = Some(5_000);
        c.expires_at_micros = Some(i64::MAX);
        let mut p = pod("u1");
        p.started_at_micros = Some(3_000);
        assert_eq!(latest_time(&snapshot(1, "n1", vec![p.clone()], vec![c.clone()])), 5_000);
        p.deletion_requested_at_micros = Some(9_000);
        assert_eq!(latest_time(&snapshot(1, "n1", vec![p], vec![c])), 9_000);
        let heartbeat = agent::AgentMessage {
            observed_at_micros: 7_000,
            body: Some(agent::agent_message::Body::Delta(agent::NodeDelta::default())),
            ..Default::default()
        };
        assert_eq!(latest_time(&heartbeat), 7_000);
    }

    #[test]
    fn message_from_beyond_the_clock_is_refused_whole_and_changes_nothing() {
        let mut s = AgentState::default();
        let m = snapshot(1, "n1", vec![pod("u1")], vec![cred("u1", "n1", "j1")]);
        let a = s.apply("prod", "n1", &m, &Audit(vec![]), 999).unwrap();
        assert_eq!((a.future, a.observations.len(), s.processed), (Some(1_000), 0, 0));
        let a = s.apply("prod", "n1", &m, &Audit(vec![]), 1_000).unwrap();
        assert_eq!((a.future, a.observations.len()), (None, 2), "at the bound: accepted");
    }

    #[test]
    fn message_for_another_node_is_refused_whole() {
        let mut s = AgentState::default();
        let m = snapshot(1, "n2", vec![], vec![]);
        assert!(matches!(s.apply("prod", "n1", &m, &Audit(vec![]), i64::MAX), Err(Refusal::WrongNode { .. })));
    }

    #[test]
    fn resend_is_recognised_and_snapshot_releases_what_is_gone() {
        let mut s = AgentState::default();
        let audit = Audit(vec![]);
        s.apply("prod", "n1", &snapshot(1, "n1", vec![pod("u1")], vec![cred("u1", "n1", "j1")]), &audit, i64::MAX)
            .unwrap();
        assert!(s.apply("prod", "n1", &snapshot(1, "n1", vec![], vec![]), &audit, i64::MAX).unwrap().resend);
        let a = s.apply("prod", "n1", &snapshot(2, "n1", vec![], vec![]), &audit, i64::MAX).unwrap();
        assert!(matches!(&a.observations[0], Observation::Pod(p) if p.event == Some(PodEvent::Deleted)));
        assert!(matches!(&a.observations[1], Observation::Credential(c) if c.event == CredentialEvent::Released
            && c.serviceaccount.name == "api"));
    }

    #[test]
    fn token_reads_name_the_account_the_agent_attested_at_that_location_and_nothing_else() {
        let mut s = AgentState::default();
        let audit = Audit(vec![]);
        let mut thief = pod("u-thief");
        thief.namespace = "default".into();
        thief.name = "thief".into();
        s.apply(
            "prod",
            "n1",
            &snapshot(1, "n1", vec![pod("u1"), thief], vec![cred("u1", "n1", "j1")]),
            &audit,
            i64::MAX,
        )
        .unwrap();
        let read = |pod_uid: &str| agent::TokenFileRead {
            time_micros: 2_000,
            location: cred(pod_uid, "n1", "x").location,
            credential: None,
            pid: 42,
            executable: Some("/bin/cat".into()),
            cgroup: "/kubepods/besteffort/podu-thief/c1".into(),
            reader_pod_uid: Some("u-thief".into()),
            reader_container: Some("c1".into()),
        };
        let delta = agent::AgentMessage {
            agent_id: "a1".into(),
            sequence: 2,
            node_name: "n1".into(),
            observed_at_micros: 2_000,
            body: Some(agent::agent_message::Body::Delta(agent::NodeDelta {
                token_reads: vec![read("u1"), read("u-unattested")],
                ..Default::default()
            })),
        };
        assert_eq!(latest_time(&delta), 2_000);
        let a = s.apply("prod", "n1", &delta, &audit, i64::MAX).unwrap();
        assert_eq!(a.refused, 1, "a read of a file the agent never attested");
        let [Observation::TokenFileRead(r)] = a.observations.as_slice() else { panic!("{:?}", a.observations) };
        assert_eq!((r.serviceaccount.name.as_str(), r.token_pod_uid.as_str(), r.node.as_str()), ("api", "u1", "n1"));
        assert!(matches!(&r.credential, Credential::PodBound { jti: Some(j), .. } if j == "j1"));
        assert_eq!((r.reader.pod_namespace.as_deref(), r.reader.pod_name.as_deref()), (Some("default"), Some("thief")));
        assert_eq!(r.reader.container.as_deref(), Some("c1"));

        // A read that carries its credential needs no earlier attestation (a restarted
        // aggregator, reads queued before the snapshot), and is checked like one.
        let mut fresh = AgentState::default();
        let mut carried = read("u2");
        carried.credential = Some(cred("u2", "n1", "j2"));
        let mut elsewhere = read("u3");
        elsewhere.credential = Some(cred("u3", "n2", "j3"));
        let mut moved = read("u4");
        moved.credential = Some(cred("u5", "n1", "j5"));
        let m = agent::AgentMessage {
            body: Some(agent::agent_message::Body::Delta(agent::NodeDelta {
                token_reads: vec![carried, elsewhere, moved],
                ..Default::default()
            })),
            ..delta
        };
        let a = fresh.apply("prod", "n1", &m, &audit, i64::MAX).unwrap();
        assert_eq!(a.refused, 2, "bound to another node; a credential from another location");
        let [Observation::TokenFileRead(r)] = a.observations.as_slice() else { panic!("{:?}", a.observations) };
        assert!(matches!(&r.credential, Credential::PodBound { jti: Some(j), .. } if j == "j2"));
    }
}
