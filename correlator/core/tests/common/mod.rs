//! Fixture builders for engine tests, written to read as sentences:
//! `use_of("shop/web").bound_to(&web).from("10.244.1.5").at(3.0)`.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::IpAddr;

use tokentrail_correlator_core::observation::*;
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Engine, EngineConfig, Finding, IpNet, Observation, Report, Timestamp};

/// Minutes after the start of the scenario (2026-03-01T10:00:00Z).
pub fn t(minutes: f64) -> Timestamp {
    Timestamp(1_772_359_200_000_000 + (minutes * MINUTE as f64) as i64)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> ServiceAccountRef {
    let (namespace, name) = s.split_once('/').unwrap();
    ServiceAccountRef { namespace: namespace.into(), name: name.into() }
}

/// A pod, as the inventory or audit log would describe it.
#[derive(Clone)]
pub struct PodSpec {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    pub secrets: Vec<String>,
    pub since: f64,
    pub serviceaccount: String,
}

pub fn pod(ns_name: &str, uid: &str) -> PodSpec {
    let (namespace, name) = ns_name.split_once('/').unwrap();
    PodSpec {
        uid: uid.into(),
        namespace: namespace.into(),
        name: name.into(),
        node: "worker-1".into(),
        ips: vec![],
        host_network: false,
        secrets: vec![],
        since: 0.0,
        serviceaccount: "default".into(),
    }
}

impl PodSpec {
    pub fn on_node(mut self, n: &str) -> Self {
        self.node = n.into();
        self
    }
    pub fn with_ip(mut self, a: &str) -> Self {
        self.ips.push(ip(a));
        self
    }
    pub fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }
    pub fn mounting(mut self, secret: &str) -> Self {
        self.secrets.push(secret.into());
        self
    }
    pub fn since(mut self, minutes: f64) -> Self {
        self.since = minutes;
        self
    }
    pub fn running_as(mut self, sa: &str) -> Self {
        self.serviceaccount = sa.into();
        self
    }
    /// The pod as an inventory dump lists it.
    pub fn observed(&self) -> Observation {
        self.fact(PodEvent::Observed, FactSource::Inventory, self.since)
    }
    /// The kubelet's status patch giving its addresses (audit log only, no inventory).
    pub fn status_patched(&self) -> Observation {
        self.fact(PodEvent::Status, FactSource::AuditLog, self.since)
    }
    /// Its deletion at `minutes`, as a delete event naming it without its UID.
    pub fn deleted_at(&self, minutes: f64) -> Observation {
        Observation::Pod(PodFact {
            time: t(minutes),
            event: Some(PodEvent::Deleted),
            source: Some(FactSource::AuditLog),
            uid: None,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ..PodFact::default()
        })
    }
    fn fact(&self, event: PodEvent, source: FactSource, minutes: f64) -> Observation {
        Observation::Pod(PodFact {
            time: t(minutes),
            event: Some(event),
            source: Some(source),
            uid: Some(self.uid.clone()),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            node: Some(self.node.clone()),
            serviceaccount: Some(self.serviceaccount.clone()),
            host_network: Some(self.host_network),
            ips: self.ips.clone(),
            secret_volumes: self.secrets.clone(),
        })
    }
}

pub fn node(name: &str, address: &str, pod_cidr: &str) -> Observation {
    Observation::Node(NodeFact {
        time: t(0.0),
        source: Some(FactSource::Inventory),
        name: name.into(),
        addresses: vec![ip(address)],
        pod_cidrs: if pod_cidr.is_empty() { vec![] } else { vec![pod_cidr.parse::<IpNet>().unwrap()] },
        os: None,
    })
}

/// A node as nodes.json lists it, with its OS.
pub fn node_running(name: &str, address: &str, os: &str) -> Observation {
    Observation::Node(NodeFact {
        time: t(0.0),
        source: Some(FactSource::Inventory),
        name: name.into(),
        addresses: vec![ip(address)],
        pod_cidrs: vec![],
        os: Some(os.into()),
    })
}

/// A node learned only from its kubelet's own requests.
pub fn kubelet_seen(name: &str, address: &str) -> Observation {
    Observation::Node(NodeFact {
        time: t(0.0),
        source: Some(FactSource::AuditLog),
        name: name.into(),
        addresses: vec![ip(address)],
        pod_cidrs: vec![],
        os: None,
    })
}

/// A token use being built.
#[derive(Clone)]
pub struct Use {
    pub u: TokenUse,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_audit_id() -> String {
    format!("audit-{:08}", NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

pub fn use_of(serviceaccount: &str) -> Use {
    Use {
        u: TokenUse {
            time: t(0.0),
            audit_id: next_audit_id(),
            stage: Stage::ResponseComplete,
            serviceaccount: sa(serviceaccount),
            serviceaccount_uid: Some(format!("uid-of-{serviceaccount}")),
            credential: Credential::Unknown,
            source_ips: vec![],
            user_agent: Some("app/1.0".into()),
            request: Request {
                verb: "get".into(),
                resource: Some("configmaps".into()),
                code: Some(200),
                ..Request::default()
            },
            stale_token: false,
        },
    }
}

impl Use {
    pub fn bound_to(mut self, p: &PodSpec, jti: &str) -> Self {
        self.u.credential = Credential::PodBound {
            jti: Some(jti.into()),
            pod_name: p.name.clone(),
            pod_uid: p.uid.clone(),
            node: Some(p.node.clone()),
        };
        self
    }
    pub fn unbound(mut self, jti: &str) -> Self {
        self.u.credential = Credential::Unbound { jti: jti.into() };
        self
    }
    pub fn legacy(mut self, secret: &str) -> Self {
        self.u.credential = Credential::LegacySecret { secret: Some(secret.into()) };
        self
    }
    pub fn from(mut self, a: &str) -> Self {
        self.u.source_ips = vec![ip(a)];
        self
    }
    /// `sourceIPs` exactly as logged (X-Forwarded-For entries first, the TCP peer last).
    pub fn via(mut self, ips: &[&str]) -> Self {
        self.u.source_ips = ips.iter().map(|a| ip(a)).collect();
        self
    }
    pub fn at(mut self, minutes: f64) -> Self {
        self.u.time = t(minutes);
        self
    }
    /// The client's user agent.
    pub fn by(mut self, user_agent: &str) -> Self {
        self.u.user_agent = Some(user_agent.into());
        self
    }
    pub fn audit_id(mut self, id: &str) -> Self {
        self.u.audit_id = id.into();
        self
    }
    pub fn stage(mut self, s: Stage) -> Self {
        self.u.stage = s;
        self
    }
    pub fn stale(mut self) -> Self {
        self.u.stale_token = true;
        self
    }
    pub fn listing_secrets(mut self, ns: &str) -> Self {
        self.u.request = Request {
            verb: "list".into(),
            resource: Some("secrets".into()),
            namespace: Some(ns.into()),
            code: Some(200),
            ..Request::default()
        };
        self
    }
    pub fn obs(self) -> Observation {
        Observation::TokenUse(self.u)
    }
    /// The same request `n` times a minute apart from `start`, each with its own audit ID.
    pub fn every_minute(self, start: f64, n: usize) -> Vec<Observation> {
        (0..n).map(|i| self.clone().at(start + i as f64).audit_id(&next_audit_id()).obs()).collect()
    }
}

pub fn mint(jti: &str, serviceaccount: &str, by: &str, from: &str, minutes: f64) -> TokenMint {
    TokenMint {
        time: t(minutes),
        audit_id: next_audit_id(),
        minter: by.into(),
        source_ips: vec![ip(from)],
        serviceaccount: sa(serviceaccount),
        jti: Some(jti.into()),
        bound_pod: None,
        bound_kind: None,
        code: Some(201),
        user_agent: Some("kubectl/v1.32.0".into()),
    }
}

pub fn bound(mut m: TokenMint, p: &PodSpec) -> Observation {
    m.bound_pod = Some(BoundPod { name: p.name.clone(), uid: Some(p.uid.clone()) });
    m.bound_kind = Some("Pod".into());
    Observation::TokenMint(m)
}

pub fn exec_into(p: &PodSpec, by: &str, from: &str, minutes: f64) -> Observation {
    Observation::PodAccess(PodAccess {
        time: t(minutes),
        audit_id: next_audit_id(),
        kind: PodAccessKind::Exec,
        principal: by.into(),
        source_ips: vec![ip(from)],
        namespace: p.namespace.clone(),
        pod_name: p.name.clone(),
        code: Some(101),
    })
}

pub fn auth_failure(from: &str, minutes: f64) -> Observation {
    Observation::AuthFailure(AuthFailure {
        time: t(minutes),
        audit_id: next_audit_id(),
        source_ips: vec![ip(from)],
        user_agent: Some("curl/8.0".into()),
        request: Request {
            verb: "list".into(),
            resource: Some("secrets".into()),
            code: Some(401),
            ..Request::default()
        },
    })
}

pub fn secret_list(by: &str, ns: &str, from: &str, minutes: f64) -> Observation {
    Observation::SecretRead(SecretRead {
        time: t(minutes),
        audit_id: next_audit_id(),
        principal: by.into(),
        source_ips: vec![ip(from)],
        verb: "list".into(),
        namespace: Some(ns.into()),
        name: None,
        code: Some(200),
        user_agent: Some("kubectl/v1.32.0".into()),
    })
}

pub fn token_secret(ns: &str, name: &str, sa: &str) -> Observation {
    Observation::TokenSecret(TokenSecretFact {
        time: t(-60.0 * 24.0 * 400.0),
        namespace: ns.into(),
        name: name.into(),
        serviceaccount: Some(sa.into()),
        last_used: Some("2026-02-28".into()),
        invalid_since: None,
        token_sha256: None,
    })
}

/// A three-node cluster with pod CIDRs: the inventory most tests stand on.
pub fn cluster() -> Vec<Observation> {
    vec![
        node("worker-1", "10.0.1.11", "10.244.1.0/24"),
        node("worker-2", "10.0.1.12", "10.244.2.0/24"),
        node("worker-3", "10.0.1.13", "10.244.3.0/24"),
    ]
}

pub fn run(observations: impl IntoIterator<Item = Observation>) -> Report {
    run_with(EngineConfig::default(), observations)
}

pub fn run_with(config: EngineConfig, observations: impl IntoIterator<Item = Observation>) -> Report {
    let mut engine = Engine::new(config);
    for o in observations {
        engine.observe(o);
    }
    engine.report()
}

/// The findings as `rule@client` strings, sorted: what most assertions compare.
pub fn fired(report: &Report) -> Vec<String> {
    let mut v: Vec<String> = report
        .findings
        .iter()
        .map(|f| match f.source_ip {
            Some(ip) => format!("{}@{ip}", f.rule),
            None => f.rule.to_string(),
        })
        .collect();
    v.sort();
    v
}

pub fn only<'a>(report: &'a Report, rule: &str) -> Vec<&'a Finding> {
    report.findings.iter().filter(|f| f.rule.id() == rule).collect()
}

/// The agent on `p`'s node attests that `p` holds `jti` (the kubelet wrote it at `minutes`).
pub fn attested(p: &PodSpec, jti: &str, minutes: f64) -> Observation {
    Observation::Credential(CredentialFact {
        time: t(minutes),
        event: CredentialEvent::Held,
        node: p.node.clone(),
        pod_uid: p.uid.clone(),
        serviceaccount: sa(&format!("{}/{}", p.namespace, p.serviceaccount)),
        credential: Credential::PodBound {
            jti: Some(jti.into()),
            pod_name: p.name.clone(),
            pod_uid: p.uid.clone(),
            node: Some(p.node.clone()),
        },
        details: Default::default(),
    })
}

/// The agent on `token_pod`'s node saw `reader` (another pod, or a host executable when `None`)
/// open `token_pod`'s token file holding `jti`.
pub fn token_read(token_pod: &PodSpec, jti: &str, reader: Option<&PodSpec>, exe: &str, minutes: f64) -> Observation {
    Observation::TokenFileRead(TokenFileRead {
        time: t(minutes),
        node: token_pod.node.clone(),
        token_pod_uid: token_pod.uid.clone(),
        token_pod: Some((token_pod.namespace.clone(), token_pod.name.clone())),
        serviceaccount: sa(&format!("{}/{}", token_pod.namespace, token_pod.serviceaccount)),
        credential: Credential::PodBound {
            jti: Some(jti.into()),
            pod_name: token_pod.name.clone(),
            pod_uid: token_pod.uid.clone(),
            node: Some(token_pod.node.clone()),
        },
        reader: TokenReader {
            pid: 4242,
            executable: Some(exe.into()),
            cgroup: match reader {
                Some(r) => format!("/kubepods/besteffort/pod{}/c0ffee", r.uid),
                None => "/user.slice/user-0.slice/session-1.scope".into(),
            },
            pod_uid: reader.map(|r| r.uid.clone()),
            pod_namespace: reader.map(|r| r.namespace.clone()),
            pod_name: reader.map(|r| r.name.clone()),
            container: reader.map(|_| "c0ffee".to_string()),
        },
    })
}
