//! Conversion of the agent's state and deltas to `tokentrail.agent.v1` messages (pure).
//!
//! The only place the agent touches protobuf types; everything before works on its own small
//! types, everything after ships bytes.

use tokentrail_proto::wire::agent::v1 as pb;

use crate::claims::{ObjectRef, TokenKind};
use crate::layout::VolumeKind;
use crate::scan::HeldCredential;
use crate::state::{Delta, NodeInfo, NodeState, PodInfo};

/// Who is sending: constant for one agent process.
#[derive(Clone, Debug)]
pub struct Sender {
    /// Random per process start.
    pub agent_id: String,
    /// The node's name.
    pub node_name: String,
}

impl Sender {
    /// Wraps a body into a message with its sequence number and production time.
    pub fn message(&self, sequence: u64, observed_at_micros: i64, body: pb::agent_message::Body) -> pb::AgentMessage {
        pb::AgentMessage {
            agent_id: self.agent_id.clone(),
            sequence,
            node_name: self.node_name.clone(),
            observed_at_micros,
            body: Some(body),
        }
    }
}

/// A full snapshot of the node.
pub fn snapshot(state: &NodeState, dropped_messages: u64) -> pb::agent_message::Body {
    pb::agent_message::Body::Snapshot(pb::NodeSnapshot {
        node: state.node.as_ref().map(node),
        pods: state.pods.values().map(pod).collect(),
        credentials: state.credentials.values().map(credential).collect(),
        dropped_messages,
    })
}

/// A delta; `now_micros` stamps removals.
pub fn delta(d: &Delta, now_micros: i64) -> pb::agent_message::Body {
    pb::agent_message::Body::Delta(pb::NodeDelta {
        node: d.node.as_ref().map(node),
        pods_upserted: d.pods_upserted.iter().map(pod).collect(),
        pods_removed: d
            .pods_removed
            .iter()
            .map(|uid| pb::PodRemoved { uid: uid.clone(), removed_at_micros: now_micros })
            .collect(),
        credentials_upserted: d.credentials_upserted.iter().map(credential).collect(),
        token_reads: Vec::new(),
        credentials_removed: d
            .credentials_removed
            .iter()
            .map(|r| pb::CredentialRemoved {
                location: Some(location(&r.location)),
                jti: r.jti.clone(),
                removed_at_micros: now_micros,
            })
            .collect(),
    })
}

/// A delta carrying only foreign reads of token files.
pub fn token_reads(reads: Vec<pb::TokenFileRead>) -> pb::agent_message::Body {
    pb::agent_message::Body::Delta(pb::NodeDelta { token_reads: reads, ..pb::NodeDelta::default() })
}

/// A foreign read of the token file at `location` (holding `held`, when attested) by `reader`.
pub fn token_read(
    location: &crate::layout::Location,
    held: Option<&HeldCredential>,
    reader: &crate::readers::Reader,
    time_micros: i64,
) -> pb::TokenFileRead {
    let (pod, container) = match &reader.owner {
        crate::readers::CgroupOwner::Pod { uid, container } => (Some(uid.clone()), container.clone()),
        _ => (None, None),
    };
    pb::TokenFileRead {
        time_micros,
        location: Some(self::location(location)),
        credential: held.map(credential),
        pid: reader.pid,
        executable: reader.executable.clone(),
        cgroup: reader.cgroup.clone(),
        reader_pod_uid: pod,
        reader_container: container,
    }
}

fn node(n: &NodeInfo) -> pb::Node {
    pb::Node {
        name: n.name.clone(),
        uid: n.uid.clone(),
        addresses: n
            .addresses
            .iter()
            .map(|(t, a)| pb::NodeAddress { r#type: t.clone(), address: a.to_string() })
            .collect(),
        pod_cidrs: n.pod_cidrs.clone(),
    }
}

fn pod(p: &PodInfo) -> pb::Pod {
    pb::Pod {
        uid: p.uid.clone(),
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        serviceaccount: p.serviceaccount.clone(),
        ips: p.ips.iter().map(ToString::to_string).collect(),
        host_network: p.host_network,
        phase: p.phase.clone(),
        started_at_micros: p.started_at_micros,
        deletion_requested_at_micros: p.deletion_requested_at_micros,
        secret_volumes: p
            .secret_volumes
            .iter()
            .map(|(v, s)| pb::SecretVolume { volume: v.clone(), secret: s.clone() })
            .collect(),
    }
}

fn location(l: &crate::layout::Location) -> pb::CredentialLocation {
    pb::CredentialLocation {
        pod_uid: l.pod_uid.clone(),
        volume_kind: match l.kind {
            VolumeKind::Projected => pb::VolumeKind::Projected,
            VolumeKind::Secret => pb::VolumeKind::Secret,
        } as i32,
        volume: l.volume.clone(),
        file: l.file.clone(),
    }
}

fn object_ref(r: &ObjectRef) -> pb::ObjectRef {
    pb::ObjectRef { name: r.name.clone(), uid: r.uid.clone() }
}

/// NumericDate seconds to microseconds.
fn micros(seconds: Option<i64>) -> Option<i64> {
    seconds.map(|s| s.saturating_mul(1_000_000))
}

fn credential(c: &HeldCredential) -> pb::Credential {
    let k = &c.claims;
    pb::Credential {
        location: Some(location(&c.location)),
        kind: match k.kind {
            TokenKind::PodBound => pb::CredentialKind::PodBound,
            TokenKind::SecretBound => pb::CredentialKind::SecretBound,
            TokenKind::Unbound => pb::CredentialKind::Unbound,
            TokenKind::LegacySecret => pb::CredentialKind::LegacySecret,
        } as i32,
        jti: k.jti.clone(),
        issuer: k.issuer.clone(),
        subject: k.subject.clone(),
        audiences: k.audiences.clone(),
        issued_at_micros: micros(k.issued_at),
        not_before_micros: micros(k.not_before),
        expires_at_micros: micros(k.expires_at),
        warn_after_micros: micros(k.warn_after),
        namespace: k.namespace.clone(),
        serviceaccount: k.serviceaccount.as_ref().map(object_ref),
        pod: k.pod.as_ref().map(object_ref),
        node: k.node.as_ref().map(object_ref),
        bound_secret: k.bound_secret.as_ref().map(object_ref),
        legacy_secret_name: k.legacy_secret_name.clone(),
        written_at_micros: c.written_at_micros,
    }
}
