//! The time-aware model of the cluster (docs/design.md §3.3): pods and their addresses over time, nodes,
//! and the networks that make up the cluster.
//!
//! Address knowledge comes from several sources (attestations, audit events, inventory dumps);
//! [`Model::place`] answers the one question the rules ask of it: at time `t`, whose was `ip`?

mod nodes;
mod pods;

use std::collections::BTreeSet;
use std::net::IpAddr;

pub use nodes::{Node, Nodes};
pub use pods::{Pod, PodQuestions, PodSighting, Pods};

use crate::config::EngineConfig;
use crate::net::IpNet;
use crate::time::Timestamp;

/// Where an address sat at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A pod held it (the first, by UID, when several could have).
    Pod {
        /// The pod's UID.
        uid: Box<str>,
        /// `namespace/name`.
        name: Box<str>,
    },
    /// A node's address.
    Node(Box<str>),
    /// A configured egress (NAT) address.
    Egress,
    /// Inside a cluster network, holder unknown.
    InCluster,
    /// The apiserver's own host (loopback): control-plane components and host-network pods there.
    Loopback,
    /// Outside every cluster network.
    OffCluster,
    /// A private address while the cluster's networks are unknown: cannot tell.
    Unknown,
}

/// Pods, nodes and networks.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Model {
    /// Pods by UID.
    pub pods: Pods,
    /// Nodes by name.
    pub nodes: Nodes,
}

impl Model {
    /// The networks known to be the cluster's: configured ones and node pod CIDRs.
    pub fn cluster_networks(&self, config: &EngineConfig) -> Vec<IpNet> {
        let mut nets: BTreeSet<IpNet> = config.cluster_networks.iter().copied().collect();
        nets.extend(self.nodes.pod_cidrs());
        nets.into_iter().collect()
    }

    /// Whether the cluster's extent is known well enough to call a routable address outside it:
    /// networks are declared (pod CIDRs, `--cluster-network`), or the nodes are known and every
    /// address they talk from is private. A cluster whose nodes reach the apiserver privately has
    /// its pods reach it privately too; one whose nodes come from routable addresses (public
    /// node addresses, a NAT gateway in front of a public endpoint) may have pods come from
    /// routable addresses nobody has named yet.
    pub fn extent_known(&self, networks: &[IpNet]) -> bool {
        !networks.is_empty() || (!self.nodes.is_empty() && !self.nodes.any_routable())
    }

    /// Where `ip` sat at `t`. `networks` is [`Model::cluster_networks`], computed once by the caller.
    pub fn place(&self, ip: IpAddr, t: Timestamp, networks: &[IpNet], config: &EngineConfig) -> Place {
        if let Some(pod) = self.pods.holders_at(ip, t).next() {
            // A hostNetwork pod's address is its node's; name the node, it is the better answer.
            if pod.host_network != Some(true) || self.nodes.by_ip(ip).is_none() {
                let name = format!("{}/{}", pod.namespace, pod.name).into_boxed_str();
                return Place::Pod { uid: Box::from(pod.uid.as_str()), name };
            }
        }
        if let Some(node) = self.nodes.by_ip(ip) {
            return Place::Node(Box::from(node.name.as_str()));
        }
        if config.is_egress(ip) {
            return Place::Egress;
        }
        if ip.is_loopback() {
            return Place::Loopback;
        }
        if networks.iter().any(|n| n.contains(ip)) || self.pods.ever_held(ip) {
            return Place::InCluster;
        }
        // Without declared networks, the subnet of the nodes' routable addresses is the cluster's
        // own: a control-plane machine whose kubelet the log does not show talks from there.
        if networks.is_empty() && self.nodes.near(ip) {
            return Place::InCluster;
        }
        // With pod CIDRs or declared networks we know the cluster's extent; without them, only an
        // address no private network could use is certainly outside.
        if !networks.is_empty() || is_global(ip) {
            Place::OffCluster
        } else {
            Place::Unknown
        }
    }

    /// The addresses a credential bound to pod `uid` (on `node`) may be used from: the pod's
    /// addresses and its node's. Egress addresses are checked separately.
    pub fn expected_for_pod(&self, uid: &str, node: Option<&str>) -> BTreeSet<IpAddr> {
        let mut ips = BTreeSet::new();
        let pod = self.pods.get(uid);
        if let Some(pod) = pod {
            ips.extend(pod.addresses.keys().copied());
        }
        let node = node.or_else(|| pod.and_then(|p| p.node.as_deref()));
        if let Some(node) = node.and_then(|n| self.nodes.get(n)) {
            ips.extend(node.addresses.iter().copied());
        }
        ips
    }
}

/// Whether an address is globally routable, i.e. cannot be a pod or node address of a cluster
/// using private addressing. Documentation ranges count as global: examples use them as "the
/// internet".
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        for (ip, global) in [
            ("10.1.2.3", false),
            ("172.20.0.1", false),
            ("192.168.1.1", false),
            ("100.64.0.1", false),
            ("127.0.0.1", false),
            ("203.0.113.50", true),
            ("8.8.8.8", true),
            ("fd00::1", false),
            ("fe80::1", false),
            ("2001:db8::1", true),
        ] {
            assert_eq!(is_global(ip.parse().unwrap()), global, "{ip}");
        }
    }
}
