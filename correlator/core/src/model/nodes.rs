//! Nodes: their addresses (InternalIP, ExternalIP, or where their kubelet talks from) and pod CIDRs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::net::IpNet;
use crate::observation::NodeFact;

/// One node.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Addresses the node has had.
    pub addresses: BTreeSet<IpAddr>,
    /// Pod CIDRs allocated to it.
    pub pod_cidrs: BTreeSet<IpNet>,
}

/// All nodes, indexed by address.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Nodes {
    by_name: BTreeMap<String, Node>,
    #[serde(with = "crate::pairs")]
    name_by_ip: HashMap<IpAddr, String>,
}

impl Nodes {
    /// Records a fact.
    pub fn apply(&mut self, fact: &NodeFact) {
        if fact.name.is_empty() {
            return;
        }
        // The kubelet of every node sends many requests: skip the map work when nothing is new.
        if let Some(node) = self.by_name.get(&fact.name) {
            if fact.addresses.iter().all(|a| node.addresses.contains(a))
                && fact.pod_cidrs.iter().all(|c| node.pod_cidrs.contains(c))
            {
                return;
            }
        }
        let node = self
            .by_name
            .entry(fact.name.clone())
            .or_insert_with(|| Node { name: fact.name.clone(), ..Node::default() });
        for &ip in &fact.addresses {
            node.addresses.insert(ip);
            self.name_by_ip.insert(ip, fact.name.clone());
        }
        node.pod_cidrs.extend(fact.pod_cidrs.iter().copied());
    }

    /// The node with this name.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.by_name.get(name)
    }

    /// The node that has `ip`.
    pub fn by_ip(&self, ip: IpAddr) -> Option<&Node> {
        self.name_by_ip.get(&ip).and_then(|n| self.by_name.get(n))
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
