//! Nodes: their addresses (InternalIP, ExternalIP, or where their kubelet talks from) and pod CIDRs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::client::Os;
use crate::net::IpNet;
use crate::observation::{FactSource, NodeFact};

/// One node.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Addresses the node has had.
    pub addresses: BTreeSet<IpAddr>,
    /// Pod CIDRs allocated to it.
    pub pod_cidrs: BTreeSet<IpNet>,
    /// Its operating system, when known.
    #[serde(default)]
    pub os: Option<Os>,
    /// Known from the audit log alone (kubelets' requests, Node and Pod bodies), not from a
    /// dump or an agent.
    #[serde(default)]
    pub learned: bool,
}

/// All nodes, indexed by address.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Nodes {
    by_name: BTreeMap<String, Node>,
    #[serde(with = "crate::pairs")]
    name_by_ip: HashMap<IpAddr, String>,
    /// The /24 (IPv4) or /64 (IPv6) around each routable node address: the nodes' own network.
    #[serde(default)]
    subnets: BTreeSet<IpNet>,
}

/// How wide a node's own network is taken to be. Machines of one cluster sit in one subnet or a
/// few (a cloud VPC's, a datacenter rack's); a /24 or /64 is the smallest that real clusters use.
const NODE_SUBNET_V4: u8 = 24;
const NODE_SUBNET_V6: u8 = 64;

impl Nodes {
    /// Records a fact.
    pub fn apply(&mut self, fact: &NodeFact) {
        if fact.name.is_empty() {
            return;
        }
        let from_log = fact.source == Some(FactSource::AuditLog);
        if let Some(node) = self.by_name.get_mut(&fact.name) {
            node.learned &= from_log;
        }
        // The kubelet of every node sends many requests: skip the map work when nothing is new.
        if let Some(node) = self.by_name.get(&fact.name) {
            if fact.addresses.iter().all(|a| node.addresses.contains(a))
                && fact.pod_cidrs.iter().all(|c| node.pod_cidrs.contains(c))
                && (fact.os.is_none() || node.os.is_some())
            {
                return;
            }
        }
        let node = self.by_name.entry(fact.name.clone()).or_insert_with(|| Node {
            name: fact.name.clone(),
            learned: from_log,
            ..Node::default()
        });
        for &ip in &fact.addresses {
            node.addresses.insert(ip);
            self.name_by_ip.insert(ip, fact.name.clone());
            if crate::model::is_global(ip) {
                self.subnets.insert(IpNet::around(ip, if ip.is_ipv4() { NODE_SUBNET_V4 } else { NODE_SUBNET_V6 }));
            }
        }
        node.pod_cidrs.extend(fact.pod_cidrs.iter().copied());
        if node.os.is_none() {
            node.os = fact.os.as_deref().and_then(Os::parse);
        }
    }

    /// Puts back a node a changelog held, with its address index entries.
    pub fn insert_restored(&mut self, node: Node) {
        for &ip in &node.addresses {
            self.name_by_ip.insert(ip, node.name.clone());
            if crate::model::is_global(ip) {
                self.subnets.insert(IpNet::around(ip, if ip.is_ipv4() { NODE_SUBNET_V4 } else { NODE_SUBNET_V6 }));
            }
        }
        self.by_name.insert(node.name.clone(), node);
    }

    /// The node with this name.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name)
    }

    /// The node that has `ip`.
    pub fn by_ip(&self, ip: IpAddr) -> Option<&Node> {
        self.name_by_ip.get(&ip).and_then(|n| self.by_name.get(n))
    }

    /// Whether `ip` lies in the network of a node with a routable address: machines of the
    /// cluster's own, though no node is known to hold this one. Private addresses are never
    /// taken for off-cluster without declared networks, so only routable ones are kept.
    pub fn near(&self, ip: IpAddr) -> bool {
        let prefix = if ip.is_ipv4() { NODE_SUBNET_V4 } else { NODE_SUBNET_V6 };
        self.subnets.contains(&IpNet::around(ip, prefix))
    }

    /// Whether any node has a routable address.
    pub fn any_routable(&self) -> bool {
        !self.subnets.is_empty()
    }

    /// Every node, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.by_name.values()
    }

    /// Every pod CIDR of every node.
    pub fn pod_cidrs(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.by_name.values().flat_map(|n| n.pod_cidrs.iter().copied())
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
