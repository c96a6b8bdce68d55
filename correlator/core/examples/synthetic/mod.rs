//! A synthetic cluster for the engine's benchmarks: PODS pods on 40 nodes, each rotating its
//! token 8 times (one credential per ~48 minutes), each credential used a given number of times
//! from its pod's address, plus a replay from outside for one pod in fifty.

use std::net::{IpAddr, Ipv4Addr};

use tokentrail_correlator_core::observation::{
    BoundPod, Credential, FactSource, NodeFact, PodEvent, PodFact, Request, ServiceAccountRef, Stage, TokenMint,
    TokenUse,
};
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Observation, Timestamp};

pub const NODES: u32 = 40;
pub const ROTATIONS: u32 = 8;
pub const START: i64 = 1_773_136_800_000_000;

fn pod_ip(p: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 64, (p / 250) as u8, (p % 250) as u8 + 2))
}

fn node_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8 + 10))
}

/// Every observation of the cluster.
pub fn cluster(pods: u32, uses_per_credential: u32) -> Vec<Observation> {
    let mut out = nodes();
    for p in 0..pods {
        out.extend(pod(p, uses_per_credential));
    }
    out
}

/// The nodes' facts.
pub fn nodes() -> Vec<Observation> {
    let mut out = Vec::new();
    for n in 0..NODES {
        out.push(Observation::Node(NodeFact {
            time: Timestamp(START),
            source: Some(FactSource::Inventory),
            name: format!("node-{n}"),
            addresses: vec![node_ip(n)],
            pod_cidrs: vec![format!("10.64.{n}.0/24").parse().expect("cidr")],
            os: None,
        }));
    }
    out
}

/// Pod `p`'s fact, and its credentials' mints and uses.
pub fn pod(p: u32, uses_per_credential: u32) -> Vec<Observation> {
    let mut out = Vec::new();
    let (node, ns, sa) = (format!("node-{}", p % NODES), format!("team-{}", p % 40), format!("app-{}", p % 97));
    let (name, uid) = (format!("app-{p}"), format!("uid-{p:08}"));
    out.push(Observation::Pod(PodFact {
        time: Timestamp(START),
        event: Some(PodEvent::Observed),
        source: Some(FactSource::Inventory),
        uid: Some(uid.clone()),
        namespace: ns.clone(),
        name: name.clone(),
        node: Some(node.clone()),
        serviceaccount: Some(sa.clone()),
        host_network: Some(false),
        ips: vec![pod_ip(p)],
        secret_volumes: vec![],
    }));
    for r in 0..ROTATIONS {
        let jti = format!("{p:08}-{r:02}");
        let minted = START + i64::from(r) * 48 * MINUTE;
        out.push(Observation::TokenMint(TokenMint {
            time: Timestamp(minted),
            audit_id: format!("mint-{jti}"),
            minter: format!("system:node:{node}"),
            source_ips: vec![node_ip(p % NODES)],
            serviceaccount: ServiceAccountRef { namespace: ns.clone(), name: sa.clone() },
            jti: Some(jti.clone()),
            bound_pod: Some(BoundPod { name: name.clone(), uid: Some(uid.clone()) }),
            bound_kind: Some("Pod".into()),
            code: Some(201),
            user_agent: Some("kubelet/v1.32.3".into()),
        }));
        for u in 0..uses_per_credential {
            let from =
                if p % 50 == 0 && r == 3 && u % 10 == 0 { "203.0.113.50".parse().expect("ip") } else { pod_ip(p) };
            out.push(Observation::TokenUse(TokenUse {
                time: Timestamp(minted + i64::from(u) * 47 * MINUTE / i64::from(uses_per_credential.max(1))),
                audit_id: format!("use-{jti}-{u}"),
                stage: Stage::ResponseComplete,
                serviceaccount: ServiceAccountRef { namespace: ns.clone(), name: sa.clone() },
                serviceaccount_uid: Some(format!("sa-uid-{sa}")),
                credential: Credential::PodBound {
                    jti: Some(jti.clone()),
                    pod_name: name.clone(),
                    pod_uid: uid.clone(),
                    node: Some(node.clone()),
                },
                source_ips: vec![from],
                user_agent: Some(format!("{sa}/1.0 (linux/amd64) kubernetes/$Format")),
                request: Request {
                    verb: if u % 3 == 0 { "list".into() } else { "get".into() },
                    resource: Some("configmaps".into()),
                    namespace: Some(ns.clone()),
                    name: (u % 3 != 0).then(|| format!("{sa}-config")),
                    code: Some(200),
                    ..Request::default()
                },
                stale_token: false,
            }));
        }
    }
    out
}
