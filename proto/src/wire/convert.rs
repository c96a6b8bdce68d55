//! Conversions between the domain [`Observation`] and `tokentrail.observation.v1` (pure).
//!
//! The aggregator's Kafka sink encodes with [`to_proto`]; the correlator decodes with
//! [`from_proto`]. Both sides of the contract live here so a round trip is tested in one place
//! (and, over every observation the decoders make of the example incident, in
//! `aggregator/core/tests/wire.rs`). `CredentialFact` comes only from agents' attestations.

use std::net::IpAddr;

use super::observation::v1 as pb;
use crate::net::IpNet;
use crate::observation::{
    AttestationDetails, AuthFailure, BoundPod, Credential, CredentialEvent, CredentialFact, FactSource, NodeFact,
    NodeProgress, Observation, PodAccess, PodAccessKind, PodEvent, PodFact, Progress, Request, SecretRead,
    ServiceAccountFact, ServiceAccountRef, Stage, TokenFileRead, TokenMint, TokenReader, TokenSecretFact, TokenUse,
};
use crate::time::Timestamp;

/// The protobuf form of one observation about `cluster`.
pub fn to_proto(cluster: &str, o: &Observation) -> pb::Observation {
    use pb::observation::Kind;
    let kind = match o {
        Observation::TokenUse(u) => Kind::TokenUse(pb::TokenUse {
            time_micros: u.time.0,
            audit_id: u.audit_id.clone(),
            stage: stage(u.stage) as i32,
            serviceaccount: Some(sa(&u.serviceaccount)),
            serviceaccount_uid: u.serviceaccount_uid.clone(),
            credential: Some(credential(&u.credential)),
            source_ips: ips(&u.source_ips),
            user_agent: u.user_agent.clone(),
            request: Some(request(&u.request)),
            stale_token: u.stale_token,
        }),
        Observation::TokenMint(m) => Kind::TokenMint(pb::TokenMint {
            time_micros: m.time.0,
            audit_id: m.audit_id.clone(),
            minter: m.minter.clone(),
            source_ips: ips(&m.source_ips),
            serviceaccount: Some(sa(&m.serviceaccount)),
            jti: m.jti.clone(),
            bound_pod: m.bound_pod.as_ref().map(|b| pb::BoundPod { name: b.name.clone(), uid: b.uid.clone() }),
            bound_kind: m.bound_kind.clone(),
            code: m.code.map(u32::from),
            user_agent: m.user_agent.clone(),
        }),
        Observation::AuthFailure(f) => Kind::AuthFailure(pb::AuthFailure {
            time_micros: f.time.0,
            audit_id: f.audit_id.clone(),
            source_ips: ips(&f.source_ips),
            user_agent: f.user_agent.clone(),
            request: Some(request(&f.request)),
        }),
        Observation::PodAccess(a) => Kind::PodAccess(pb::PodAccess {
            time_micros: a.time.0,
            audit_id: a.audit_id.clone(),
            kind: match a.kind {
                PodAccessKind::Exec => pb::PodAccessKind::Exec,
                PodAccessKind::Attach => pb::PodAccessKind::Attach,
                PodAccessKind::PortForward => pb::PodAccessKind::PortForward,
            } as i32,
            principal: a.principal.clone(),
            source_ips: ips(&a.source_ips),
            namespace: a.namespace.clone(),
            pod_name: a.pod_name.clone(),
            code: a.code.map(u32::from),
        }),
        Observation::SecretRead(r) => Kind::SecretRead(pb::SecretRead {
            time_micros: r.time.0,
            audit_id: r.audit_id.clone(),
            principal: r.principal.clone(),
            source_ips: ips(&r.source_ips),
            verb: r.verb.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            code: r.code.map(u32::from),
            user_agent: r.user_agent.clone(),
        }),
        Observation::Pod(p) => Kind::Pod(pb::PodFact {
            time_micros: p.time.0,
            event: p.event.map_or(pb::PodEvent::Unspecified, pod_event) as i32,
            source: p.source.map_or(pb::FactSource::Unspecified, fact_source) as i32,
            uid: p.uid.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            serviceaccount: p.serviceaccount.clone(),
            host_network: p.host_network,
            ips: ips(&p.ips),
            secret_volumes: p.secret_volumes.clone(),
        }),
        Observation::Node(n) => Kind::Node(pb::NodeFact {
            time_micros: n.time.0,
            source: n.source.map_or(pb::FactSource::Unspecified, fact_source) as i32,
            name: n.name.clone(),
            addresses: ips(&n.addresses),
            pod_cidrs: n.pod_cidrs.iter().filter_map(net).collect(),
            os: n.os.clone(),
        }),
        Observation::ServiceAccount(s) => Kind::ServiceAccount(pb::ServiceAccountFact {
            time_micros: s.time.0,
            serviceaccount: s.serviceaccount.as_ref().map(sa),
            uid: s.uid.clone(),
            secrets: s.secrets.clone(),
        }),
        Observation::TokenSecret(s) => Kind::TokenSecret(pb::TokenSecretFact {
            time_micros: s.time.0,
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            serviceaccount: s.serviceaccount.clone(),
            last_used: s.last_used.clone(),
            invalid_since: s.invalid_since.clone(),
            token_sha256: s.token_sha256.clone(),
        }),
        Observation::Credential(c) => Kind::Credential(pb::CredentialFact {
            time_micros: c.time.0,
            event: match c.event {
                CredentialEvent::Held => pb::CredentialEvent::Held,
                CredentialEvent::Released => pb::CredentialEvent::Released,
            } as i32,
            source: pb::FactSource::Attestation as i32,
            node: c.node.clone(),
            pod_uid: c.pod_uid.clone(),
            serviceaccount: Some(sa(&c.serviceaccount)),
            credential: Some(credential(&c.credential)),
            pod_namespace: c.details.pod_namespace.clone(),
            pod_name: c.details.pod_name.clone(),
            audiences: c.details.audiences.clone(),
            issued_at_micros: c.details.issued_at.map(|t| t.0),
            not_before_micros: c.details.not_before.map(|t| t.0),
            expires_at_micros: c.details.expires_at.map(|t| t.0),
            warn_after_micros: c.details.warn_after.map(|t| t.0),
        }),
        Observation::TokenFileRead(r) => Kind::TokenFileRead(pb::TokenFileRead {
            time_micros: r.time.0,
            node: r.node.clone(),
            token_pod_uid: r.token_pod_uid.clone(),
            token_pod_namespace: r.token_pod.as_ref().map(|(ns, _)| ns.clone()),
            token_pod_name: r.token_pod.as_ref().map(|(_, name)| name.clone()),
            serviceaccount: Some(sa(&r.serviceaccount)),
            credential: Some(credential(&r.credential)),
            reader: Some(pb::TokenReader {
                pid: r.reader.pid,
                executable: r.reader.executable.clone(),
                cgroup: r.reader.cgroup.clone(),
                pod_uid: r.reader.pod_uid.clone(),
                pod_namespace: r.reader.pod_namespace.clone(),
                pod_name: r.reader.pod_name.clone(),
                container: r.reader.container.clone(),
            }),
        }),
        Observation::Progress(p) => Kind::Progress(pb::Progress {
            logged_micros: p.logged.map(|t| t.0),
            nodes: p
                .nodes
                .iter()
                .map(|n| pb::NodeProgress { name: n.name.clone(), reported_until_micros: n.reported_until.0 })
                .collect(),
        }),
    };
    pb::Observation { cluster: cluster.to_string(), kind: Some(kind) }
}

/// An address as 4 or 16 bytes in network order.
fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ips(list: &[IpAddr]) -> Vec<Vec<u8>> {
    list.iter().map(ip_bytes).collect()
}

/// `IpNet` keeps its parts private; its `addr/prefix` display is the stable way in.
fn net(n: &IpNet) -> Option<pb::IpNet> {
    let text = n.to_string();
    let (addr, prefix) = text.split_once('/')?;
    Some(pb::IpNet { addr: ip_bytes(&addr.parse().ok()?), prefix_len: prefix.parse().ok()? })
}

fn sa(s: &ServiceAccountRef) -> pb::ServiceAccountRef {
    pb::ServiceAccountRef { namespace: s.namespace.clone(), name: s.name.clone() }
}

fn request(r: &Request) -> pb::Request {
    pb::Request {
        verb: r.verb.clone(),
        resource: r.resource.clone(),
        subresource: r.subresource.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        code: r.code.map(u32::from),
    }
}

fn credential(c: &Credential) -> pb::Credential {
    use pb::credential::Kind;
    let kind = match c {
        Credential::PodBound { jti, pod_name, pod_uid, node } => Kind::PodBound(pb::credential::PodBound {
            jti: jti.clone(),
            pod_name: pod_name.clone(),
            pod_uid: pod_uid.clone(),
            node: node.clone(),
        }),
        Credential::Unbound { jti } => Kind::Unbound(pb::credential::Unbound { jti: jti.clone() }),
        Credential::LegacySecret { secret } => {
            Kind::LegacySecret(pb::credential::LegacySecret { secret: secret.clone() })
        }
        Credential::Unknown => Kind::Unknown(pb::credential::Unknown {}),
    };
    pb::Credential { kind: Some(kind) }
}

fn stage(s: Stage) -> pb::Stage {
    match s {
        Stage::RequestReceived => pb::Stage::RequestReceived,
        Stage::ResponseStarted => pb::Stage::ResponseStarted,
        Stage::ResponseComplete => pb::Stage::ResponseComplete,
        Stage::Panic => pb::Stage::Panic,
        Stage::Unknown => pb::Stage::Unknown,
    }
}

fn pod_event(e: PodEvent) -> pb::PodEvent {
    match e {
        PodEvent::Created => pb::PodEvent::Created,
        PodEvent::Scheduled => pb::PodEvent::Scheduled,
        PodEvent::Status => pb::PodEvent::Status,
        PodEvent::Deleted => pb::PodEvent::Deleted,
        PodEvent::Observed => pb::PodEvent::Observed,
    }
}

fn fact_source(s: FactSource) -> pb::FactSource {
    match s {
        FactSource::Attestation => pb::FactSource::Attestation,
        FactSource::AuditLog => pb::FactSource::AuditLog,
        FactSource::Inventory => pb::FactSource::Inventory,
    }
}

// ------------------------------------------------------------------------ protobuf → domain

/// The engine's observation from its protobuf form, with the cluster it is about. `None` for a
/// message without a kind or without the service account it must name.
pub fn from_proto(o: &pb::Observation) -> Option<(String, Observation)> {
    use pb::observation::Kind;
    let obs = match o.kind.as_ref()? {
        Kind::TokenUse(u) => Observation::TokenUse(TokenUse {
            time: Timestamp(u.time_micros),
            audit_id: u.audit_id.clone(),
            stage: match u.stage() {
                pb::Stage::RequestReceived => Stage::RequestReceived,
                pb::Stage::ResponseStarted => Stage::ResponseStarted,
                pb::Stage::ResponseComplete => Stage::ResponseComplete,
                pb::Stage::Panic => Stage::Panic,
                pb::Stage::Unknown => Stage::Unknown,
            },
            serviceaccount: sa_back(u.serviceaccount.as_ref()?),
            serviceaccount_uid: u.serviceaccount_uid.clone(),
            credential: credential_back(u.credential.as_ref()),
            source_ips: ips_back(&u.source_ips),
            user_agent: u.user_agent.clone(),
            request: u.request.as_ref().map(request_back).unwrap_or_default(),
            stale_token: u.stale_token,
        }),
        Kind::TokenMint(m) => Observation::TokenMint(TokenMint {
            time: Timestamp(m.time_micros),
            audit_id: m.audit_id.clone(),
            minter: m.minter.clone(),
            source_ips: ips_back(&m.source_ips),
            serviceaccount: sa_back(m.serviceaccount.as_ref()?),
            jti: m.jti.clone(),
            bound_pod: m.bound_pod.as_ref().map(|b| BoundPod { name: b.name.clone(), uid: b.uid.clone() }),
            bound_kind: m.bound_kind.clone(),
            code: code_back(m.code),
            user_agent: m.user_agent.clone(),
        }),
        Kind::AuthFailure(f) => Observation::AuthFailure(AuthFailure {
            time: Timestamp(f.time_micros),
            audit_id: f.audit_id.clone(),
            source_ips: ips_back(&f.source_ips),
            user_agent: f.user_agent.clone(),
            request: f.request.as_ref().map(request_back).unwrap_or_default(),
        }),
        Kind::PodAccess(a) => Observation::PodAccess(PodAccess {
            time: Timestamp(a.time_micros),
            audit_id: a.audit_id.clone(),
            kind: match a.kind() {
                pb::PodAccessKind::Attach => PodAccessKind::Attach,
                pb::PodAccessKind::PortForward => PodAccessKind::PortForward,
                pb::PodAccessKind::Exec | pb::PodAccessKind::Unspecified => PodAccessKind::Exec,
            },
            principal: a.principal.clone(),
            source_ips: ips_back(&a.source_ips),
            namespace: a.namespace.clone(),
            pod_name: a.pod_name.clone(),
            code: code_back(a.code),
        }),
        Kind::SecretRead(r) => Observation::SecretRead(SecretRead {
            time: Timestamp(r.time_micros),
            audit_id: r.audit_id.clone(),
            principal: r.principal.clone(),
            source_ips: ips_back(&r.source_ips),
            verb: r.verb.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            code: code_back(r.code),
            user_agent: r.user_agent.clone(),
        }),
        Kind::Pod(p) => Observation::Pod(PodFact {
            time: Timestamp(p.time_micros),
            event: match p.event() {
                pb::PodEvent::Created => Some(PodEvent::Created),
                pb::PodEvent::Scheduled => Some(PodEvent::Scheduled),
                pb::PodEvent::Status => Some(PodEvent::Status),
                pb::PodEvent::Deleted => Some(PodEvent::Deleted),
                pb::PodEvent::Observed => Some(PodEvent::Observed),
                pb::PodEvent::Unspecified => None,
            },
            source: source_back(p.source()),
            uid: p.uid.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            node: p.node.clone(),
            serviceaccount: p.serviceaccount.clone(),
            host_network: p.host_network,
            ips: ips_back(&p.ips),
            secret_volumes: p.secret_volumes.clone(),
        }),
        Kind::Node(n) => Observation::Node(NodeFact {
            time: Timestamp(n.time_micros),
            source: source_back(n.source()),
            name: n.name.clone(),
            addresses: ips_back(&n.addresses),
            pod_cidrs: n
                .pod_cidrs
                .iter()
                .filter_map(|c| format!("{}/{}", ip_back(&c.addr)?, c.prefix_len).parse().ok())
                .collect(),
            os: n.os.clone(),
        }),
        Kind::ServiceAccount(s) => Observation::ServiceAccount(ServiceAccountFact {
            time: Timestamp(s.time_micros),
            serviceaccount: s.serviceaccount.as_ref().map(sa_back),
            uid: s.uid.clone(),
            secrets: s.secrets.clone(),
        }),
        Kind::TokenSecret(s) => Observation::TokenSecret(TokenSecretFact {
            time: Timestamp(s.time_micros),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            serviceaccount: s.serviceaccount.clone(),
            last_used: s.last_used.clone(),
            invalid_since: s.invalid_since.clone(),
            token_sha256: s.token_sha256.clone(),
        }),
        Kind::Credential(c) => Observation::Credential(CredentialFact {
            time: Timestamp(c.time_micros),
            event: match c.event() {
                pb::CredentialEvent::Released => CredentialEvent::Released,
                pb::CredentialEvent::Held | pb::CredentialEvent::Unspecified => CredentialEvent::Held,
            },
            node: c.node.clone(),
            pod_uid: c.pod_uid.clone(),
            serviceaccount: sa_back(c.serviceaccount.as_ref()?),
            credential: credential_back(c.credential.as_ref()),
            details: AttestationDetails {
                pod_namespace: c.pod_namespace.clone(),
                pod_name: c.pod_name.clone(),
                audiences: c.audiences.clone(),
                issued_at: c.issued_at_micros.map(Timestamp),
                not_before: c.not_before_micros.map(Timestamp),
                expires_at: c.expires_at_micros.map(Timestamp),
                warn_after: c.warn_after_micros.map(Timestamp),
            },
        }),
        Kind::TokenFileRead(r) => Observation::TokenFileRead(TokenFileRead {
            time: Timestamp(r.time_micros),
            node: r.node.clone(),
            token_pod_uid: r.token_pod_uid.clone(),
            token_pod: r.token_pod_namespace.clone().zip(r.token_pod_name.clone()),
            serviceaccount: sa_back(r.serviceaccount.as_ref()?),
            credential: credential_back(r.credential.as_ref()),
            reader: r
                .reader
                .as_ref()
                .map(|p| TokenReader {
                    pid: p.pid,
                    executable: p.executable.clone(),
                    cgroup: p.cgroup.clone(),
                    pod_uid: p.pod_uid.clone(),
                    pod_namespace: p.pod_namespace.clone(),
                    pod_name: p.pod_name.clone(),
                    container: p.container.clone(),
                })
                .unwrap_or_default(),
        }),
        Kind::Progress(p) => Observation::Progress(Progress {
            logged: p.logged_micros.map(Timestamp),
            nodes: p
                .nodes
                .iter()
                .map(|n| NodeProgress { name: n.name.clone(), reported_until: Timestamp(n.reported_until_micros) })
                .collect(),
        }),
    };
    Some((o.cluster.clone(), obs))
}

fn ip_back(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn ips_back(list: &[Vec<u8>]) -> Vec<IpAddr> {
    list.iter().filter_map(|b| ip_back(b)).collect()
}

fn code_back(code: Option<u32>) -> Option<u16> {
    code.and_then(|c| u16::try_from(c).ok())
}

fn sa_back(s: &pb::ServiceAccountRef) -> ServiceAccountRef {
    ServiceAccountRef { namespace: s.namespace.clone(), name: s.name.clone() }
}

fn request_back(r: &pb::Request) -> Request {
    Request {
        verb: r.verb.clone(),
        resource: r.resource.clone(),
        subresource: r.subresource.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        code: code_back(r.code),
    }
}

fn credential_back(c: Option<&pb::Credential>) -> Credential {
    use pb::credential::Kind;
    match c.and_then(|c| c.kind.as_ref()) {
        Some(Kind::PodBound(p)) => Credential::PodBound {
            jti: p.jti.clone(),
            pod_name: p.pod_name.clone(),
            pod_uid: p.pod_uid.clone(),
            node: p.node.clone(),
        },
        Some(Kind::Unbound(u)) => Credential::Unbound { jti: u.jti.clone() },
        Some(Kind::LegacySecret(l)) => Credential::LegacySecret { secret: l.secret.clone() },
        Some(Kind::Unknown(_)) | None => Credential::Unknown,
    }
}

fn source_back(s: pb::FactSource) -> Option<FactSource> {
    match s {
        pb::FactSource::Attestation => Some(FactSource::Attestation),
        pb::FactSource::AuditLog => Some(FactSource::AuditLog),
        pb::FactSource::Inventory => Some(FactSource::Inventory),
        pb::FactSource::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestations_round_trip() {
        let fact = Observation::Credential(CredentialFact {
            time: Timestamp(1_772_359_200_000_000),
            event: CredentialEvent::Held,
            node: "worker-1".into(),
            pod_uid: "uid-api".into(),
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            credential: Credential::PodBound {
                jti: Some("j1".into()),
                pod_name: "api-1".into(),
                pod_uid: "uid-api".into(),
                node: Some("worker-1".into()),
            },
            details: AttestationDetails {
                pod_namespace: Some("payments".into()),
                pod_name: Some("api-1".into()),
                audiences: vec!["https://kubernetes.default.svc".into()],
                issued_at: Some(Timestamp(1_772_359_000_000_000)),
                not_before: Some(Timestamp(1_772_359_000_000_000)),
                expires_at: Some(Timestamp(1_772_362_600_000_000)),
                warn_after: None,
            },
        });
        assert_eq!(from_proto(&to_proto("prod", &fact)), Some(("prod".to_string(), fact)));
    }

    #[test]
    fn token_secrets_round_trip_with_their_token_hash() {
        let secret = TokenSecretFact {
            time: Timestamp(1_772_359_200_000_000),
            namespace: "monitoring".into(),
            name: "exporter-token-abcde".into(),
            serviceaccount: Some("exporter".into()),
            last_used: Some("2026-03-01".into()),
            invalid_since: None,
            token_sha256: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        };
        for fact in [secret.clone(), TokenSecretFact { token_sha256: None, ..secret }] {
            let fact = Observation::TokenSecret(fact);
            assert_eq!(from_proto(&to_proto("prod", &fact)), Some(("prod".to_string(), fact)));
        }
    }

    #[test]
    fn token_file_reads_round_trip() {
        let read = Observation::TokenFileRead(TokenFileRead {
            time: Timestamp(1_772_359_200_000_000),
            node: "worker-1".into(),
            token_pod_uid: "uid-api".into(),
            token_pod: Some(("payments".into(), "api-1".into())),
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            credential: Credential::PodBound {
                jti: Some("j1".into()),
                pod_name: "api-1".into(),
                pod_uid: "uid-api".into(),
                node: Some("worker-1".into()),
            },
            reader: TokenReader {
                pid: 4242,
                executable: Some("/usr/bin/cat".into()),
                cgroup: "/kubepods/besteffort/poduid-thief/c1".into(),
                pod_uid: Some("uid-thief".into()),
                pod_namespace: Some("default".into()),
                pod_name: Some("thief".into()),
                container: Some("c1".into()),
            },
        });
        assert_eq!(from_proto(&to_proto("prod", &read)), Some(("prod".to_string(), read)));
    }

    #[test]
    fn progress_round_trips() {
        for logged in [Some(Timestamp(1_772_359_200_000_000)), None] {
            let progress = Observation::Progress(Progress {
                logged,
                nodes: vec![NodeProgress { name: "worker-1".into(), reported_until: Timestamp(1_772_359_100_000_000) }],
            });
            assert_eq!(from_proto(&to_proto("prod", &progress)), Some(("prod".to_string(), progress)));
        }
    }

    #[test]
    fn networks_keep_their_prefix() {
        let n: IpNet = "fd00:10:244::/64".parse().unwrap();
        let p = net(&n).unwrap();
        assert_eq!((p.addr.len(), p.prefix_len), (16, 64));
    }
}
