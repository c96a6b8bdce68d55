//! Which node each `agent_id` belongs to, and what the aggregator remembers per (node, agent).
//!
//! An agent picks a random `agent_id` when it starts, and its sequence numbers decide what is a
//! resend. The first node to use an id owns it: a message from another node under that id is
//! refused ([`Hijack`]), so a compromised node cannot take over another node's agent and set its
//! sequence to 2^64-1, which would make every later message of that agent look like a resend
//! and silence its attestations (and the `token-forged-mint` verdicts that wait for them).
//! State is keyed by (node, `agent_id`), so sequence numbers never mix across nodes.
//!
//! Bounded: a node keeps at most [`MAX_PER_NODE`] agents (an agent that restarts takes a new
//! id; the node's least recently used one goes), so one node cannot push the others out; all
//! nodes together keep at most the registry's capacity, the least recently used going first
//! (nodes that left the cluster). A forgotten agent's ownership goes with it: its resends are
//! processed again (at-least-once), and its id is free, which only matters for an agent that
//! has not spoken in longer than every other agent.

use std::collections::{BTreeMap, HashMap};

use crate::attest::AgentState;

/// Agents remembered per node. A DaemonSet runs one agent per node; the rest are its
/// predecessors, whose resends may still arrive after a restart.
pub const MAX_PER_NODE: usize = 4;

/// A node used an `agent_id` another node owns.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent id {agent_id:?} belongs to node {owner:?}, not to node {node:?}")]
pub struct Hijack {
    /// The id.
    pub agent_id: String,
    /// The node that used it first.
    pub owner: String,
    /// The node that used it now.
    pub node: String,
}

struct Entry {
    state: AgentState,
    used: u64,
}

/// The registry of agents (pure: the caller locks it).
pub struct Agents {
    capacity: usize,
    /// `agent_id` → the node that owns it.
    owners: HashMap<String, String>,
    /// (node, `agent_id`) → what was remembered, and when it was last used.
    entries: HashMap<(String, String), Entry>,
    /// Last use → (node, `agent_id`): the least recently used first.
    by_use: BTreeMap<u64, (String, String)>,
    /// Per node, last use → `agent_id`.
    per_node: HashMap<String, BTreeMap<u64, String>>,
    tick: u64,
}

impl Agents {
    /// An empty registry holding at most `capacity` agents.
    pub fn new(capacity: usize) -> Agents {
        Agents {
            capacity: capacity.max(1),
            owners: HashMap::new(),
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            per_node: HashMap::new(),
            tick: 0,
        }
    }

    /// The state of `agent_id` on `node`, created on its first use; refused when another node
    /// owns the id.
    pub fn state(&mut self, node: &str, agent_id: &str) -> Result<&mut AgentState, Hijack> {
        if let Some(owner) = self.owners.get(agent_id).filter(|o| *o != node) {
            return Err(Hijack { agent_id: agent_id.into(), owner: owner.clone(), node: node.into() });
        }
        self.tick += 1;
        let key = (node.to_string(), agent_id.to_string());
        if let Some(used) = self.entries.get(&key).map(|e| e.used) {
            self.by_use.remove(&used);
            if let Some(mine) = self.per_node.get_mut(node) {
                mine.remove(&used);
            }
        } else {
            let full_here = self.per_node.get(node).filter(|m| m.len() >= MAX_PER_NODE);
            if let Some(id) = full_here.and_then(|m| m.values().next()) {
                let k = (node.to_string(), id.clone());
                self.forget(&k);
            }
            if self.entries.len() >= self.capacity {
                if let Some(k) = self.by_use.values().next() {
                    let k = k.clone();
                    self.forget(&k);
                }
            }
            self.owners.insert(agent_id.to_string(), node.to_string());
        }
        self.per_node.entry(node.to_string()).or_default().insert(self.tick, agent_id.to_string());
        self.by_use.insert(self.tick, key.clone());
        let entry = self.entries.entry(key).or_insert_with(|| Entry { state: AgentState::default(), used: 0 });
        entry.used = self.tick;
        Ok(&mut entry.state)
    }

    /// Forgets what `agent_id` on `node` attested and processed (its resends will be processed
    /// again), keeping the id bound to the node.
    pub fn reset(&mut self, node: &str, agent_id: &str) {
        if let Some(entry) = self.entries.get_mut(&(node.to_string(), agent_id.to_string())) {
            entry.state = AgentState::default();
        }
    }

    /// Agents remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget(&mut self, key: &(String, String)) {
        let Some(entry) = self.entries.remove(key) else { return };
        self.by_use.remove(&entry.used);
        self.owners.remove(&key.1);
        if let Some(mine) = self.per_node.get_mut(&key.0) {
            mine.remove(&entry.used);
            if mine.is_empty() {
                self.per_node.remove(&key.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_id_belongs_to_the_node_that_used_it_first() {
        let mut agents = Agents::new(100);
        agents.state("n1", "a1").unwrap().processed = 7;
        let refused = agents.state("n2", "a1").unwrap_err();
        assert_eq!((refused.owner.as_str(), refused.node.as_str()), ("n1", "n2"));
        assert_eq!(agents.state("n1", "a1").unwrap().processed, 7, "the owner's sequence is untouched");
    }

    #[test]
    fn a_reset_keeps_the_id_bound_to_its_node() {
        let mut agents = Agents::new(100);
        agents.state("n1", "a1").unwrap().processed = 7;
        agents.reset("n1", "a1");
        assert!(agents.state("n2", "a1").is_err());
        assert_eq!(agents.state("n1", "a1").unwrap().processed, 0);
    }

    #[test]
    fn one_node_cannot_push_out_another_nodes_agents() {
        let mut agents = Agents::new(10);
        agents.state("victim", "v").unwrap().processed = 3;
        for i in 0..1000 {
            agents.state("flooder", &format!("f{i}")).unwrap();
        }
        assert_eq!(agents.len(), 1 + MAX_PER_NODE);
        assert!(agents.state("flooder", "v").is_err(), "the victim's id is still bound");
        assert_eq!(agents.state("victim", "v").unwrap().processed, 3);
    }

    #[test]
    fn beyond_capacity_the_least_recently_used_agent_goes() {
        let mut agents = Agents::new(2);
        agents.state("n1", "a1").unwrap();
        agents.state("n2", "a2").unwrap();
        agents.state("n1", "a1").unwrap();
        agents.state("n3", "a3").unwrap();
        assert_eq!(agents.len(), 2);
        assert!(agents.state("n4", "a1").is_err(), "n1's was kept");
        assert!(agents.state("n4", "a2").is_ok(), "n2's agent, the least recently used, was forgotten");
    }
}
