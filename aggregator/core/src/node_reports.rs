//! Which node facts the aggregator broadcasts, and the [`Progress`] that stands for the rest
//! (pure: the correlator's tests route evidence through it exactly as the aggregator does).
//!
//! Node facts go to every partition of the observations topic ([`crate::route`]), and nearly all
//! of them repeat what every partition already holds: each request of a kubelet names its node's
//! address again (several a second per node), each agent heartbeat (every 30 s) names its node
//! again. At 1,000 nodes and 24 partitions that is tens of thousands of records a second that
//! carry nothing new but their time. So a fact is broadcast only when it adds something to the
//! node as the partitions hold it (exactly what the correlator's node table would keep: a new
//! address, pod CIDR or OS, or a dump's or an agent's first word on a node only the log knew),
//! or when its node's last broadcast is an hour of event time old (a partition that lost its
//! state, or a topic that gained partitions, learns it again). A repeat's time is what the
//! partitions still need from it, and goes into its cluster's next [`Progress`], taken every
//! few seconds by the driver: the audit log's time for a kubelet's request (it moves the
//! partitions' event clock), the node's watermark for an agent's heartbeat (its attestations
//! are complete until then).
//!
//! An inventory's facts are always broadcast: their time moves no clock the progress carries,
//! and inventories repeat rarely.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use tokentrail_proto::observation::{FactSource, NodeFact, NodeProgress, Progress};
use tokentrail_proto::time::{Micros, MINUTE};
use tokentrail_proto::{IpNet, Timestamp};

/// How long a node's broadcast stands for its repeats, in event time.
pub const DEFAULT_REFRESH: Micros = 60 * MINUTE;

/// A node fact that repeated what every partition holds: what the progress needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeat {
    cluster: String,
    node: String,
    time: Timestamp,
    /// A kubelet's request (the log's progress) rather than an agent's heartbeat.
    from_log: bool,
}

/// What every partition was told of each node, and the repeats not yet sent as progress.
#[derive(Debug)]
pub struct NodeReports {
    clusters: HashMap<String, Cluster>,
    /// Nodes remembered per cluster; when full it starts over (and broadcasts them again).
    capacity: usize,
    refresh: Micros,
}

#[derive(Debug, Default)]
struct Cluster {
    told: HashMap<String, Told>,
    /// The latest time of the audit log's repeats since the last progress.
    logged: Option<Timestamp>,
    /// Each node's latest heartbeat since the last progress.
    reported: BTreeMap<String, Timestamp>,
}

/// What the partitions hold of one node, as far as broadcasts told them.
#[derive(Debug, Default)]
struct Told {
    addresses: Vec<IpAddr>,
    pod_cidrs: Vec<IpNet>,
    os: bool,
    /// A dump or an agent spoke of it (the correlator then no longer counts it as learned
    /// from the log alone).
    vouched: bool,
    /// The latest time of a broadcast fact.
    sent_at: Timestamp,
}

impl Told {
    fn covers(&self, fact: &NodeFact) -> bool {
        fact.addresses.iter().all(|a| self.addresses.contains(a))
            && fact.pod_cidrs.iter().all(|c| self.pod_cidrs.contains(c))
            && (fact.os.is_none() || self.os)
    }

    fn learn(&mut self, fact: &NodeFact, from_log: bool) {
        for a in &fact.addresses {
            if !self.addresses.contains(a) {
                self.addresses.push(*a);
            }
        }
        for c in &fact.pod_cidrs {
            if !self.pod_cidrs.contains(c) {
                self.pod_cidrs.push(*c);
            }
        }
        self.os |= fact.os.is_some();
        self.vouched |= !from_log;
        self.sent_at = self.sent_at.max(fact.time);
    }
}

impl NodeReports {
    /// Remembers at most `capacity` nodes per cluster; a node's broadcast stands for its
    /// repeats for `refresh` of event time.
    pub fn new(capacity: usize, refresh: Micros) -> NodeReports {
        NodeReports { clusters: HashMap::new(), capacity: capacity.max(1), refresh }
    }

    /// Whether `fact`, about `cluster`, must be broadcast now. When not, its time is kept for
    /// the cluster's next [`NodeReports::take_progress`] at once: for callers whose broadcasts
    /// are sent as they are decided (see [`NodeReports::repeat`]).
    pub fn offer(&mut self, cluster: &str, fact: &NodeFact) -> bool {
        match self.repeat(cluster, fact) {
            None => true,
            Some(repeat) => {
                self.note(repeat);
                false
            }
        }
    }

    /// Whether `fact`, about `cluster`, repeats what every partition holds: `None` when it must
    /// be broadcast now (it is remembered as told), else the [`Repeat`] whose time the
    /// progress must carry. [`NodeReports::note`] it only once everything routed before it has
    /// been handed to the producer: a progress that overtook those records would move the
    /// partitions' event clocks past observations still on their way.
    pub fn repeat(&mut self, cluster: &str, fact: &NodeFact) -> Option<Repeat> {
        let from_log = match fact.source {
            Some(FactSource::AuditLog) => true,
            Some(FactSource::Attestation) => false,
            // An inventory's (or an unsaid source's) time moves what a progress cannot carry.
            _ => {
                self.remember(cluster, fact, false);
                return None;
            }
        };
        let refresh = self.refresh;
        let repeat = self.clusters.get(cluster).and_then(|c| c.told.get(&fact.name)).is_some_and(|told| {
            told.covers(fact) && (from_log || told.vouched) && fact.time.0 < told.sent_at.0.saturating_add(refresh)
        });
        if !repeat {
            self.remember(cluster, fact, from_log);
            return None;
        }
        Some(Repeat { cluster: cluster.to_string(), node: fact.name.clone(), time: fact.time, from_log })
    }

    /// Keeps a repeat's time for its cluster's next [`NodeReports::take_progress`].
    pub fn note(&mut self, repeat: Repeat) {
        let Some(c) = self.clusters.get_mut(&repeat.cluster) else { return };
        if repeat.from_log {
            c.logged = Some(c.logged.map_or(repeat.time, |t| t.max(repeat.time)));
        } else {
            let t = c.reported.entry(repeat.node).or_insert(repeat.time);
            *t = (*t).max(repeat.time);
        }
    }

    /// Records that `fact` is broadcast; always `true`.
    fn remember(&mut self, cluster: &str, fact: &NodeFact, from_log: bool) -> bool {
        if fact.name.is_empty() {
            return true;
        }
        if !self.clusters.contains_key(cluster) {
            self.clusters.insert(cluster.to_string(), Cluster::default());
        }
        let Some(c) = self.clusters.get_mut(cluster) else { return true };
        if !c.told.contains_key(&fact.name) && c.told.len() >= self.capacity {
            c.told.clear();
        }
        c.told.entry(fact.name.clone()).or_default().learn(fact, from_log);
        true
    }

    /// The progress of each cluster that had repeats since the last call, in cluster order.
    pub fn take_progress(&mut self) -> Vec<(String, Progress)> {
        let mut out: Vec<(String, Progress)> = self
            .clusters
            .iter_mut()
            .filter(|(_, c)| c.logged.is_some() || !c.reported.is_empty())
            .map(|(name, c)| {
                let nodes = std::mem::take(&mut c.reported)
                    .into_iter()
                    .map(|(name, reported_until)| NodeProgress { name, reported_until })
                    .collect();
                (name.clone(), Progress { logged: c.logged.take(), nodes })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Default for NodeReports {
    fn default() -> Self {
        NodeReports::new(100_000, DEFAULT_REFRESH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokentrail_proto::time::SECOND;

    fn fact(source: FactSource, name: &str, secs: i64, ip: &str) -> NodeFact {
        NodeFact {
            time: Timestamp(secs * SECOND),
            source: Some(source),
            name: name.into(),
            addresses: vec![ip.parse().unwrap()],
            ..NodeFact::default()
        }
    }

    #[test]
    fn a_kubelets_repeated_requests_become_the_logs_progress() {
        let mut r = NodeReports::default();
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")));
        for s in 2..100 {
            assert!(!r.offer("prod", &fact(FactSource::AuditLog, "node-a", s, "10.0.0.1")));
        }
        // A new address is news.
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 100, "10.0.0.2")));
        let progress = r.take_progress();
        assert_eq!(progress, vec![("prod".into(), Progress { logged: Some(Timestamp(99 * SECOND)), nodes: vec![] })]);
        assert!(r.take_progress().is_empty(), "taken once");
    }

    #[test]
    fn an_agents_heartbeats_become_its_nodes_watermark_after_its_first_report() {
        let mut r = NodeReports::default();
        // The log knew the node first: the agent's first word still goes out (the correlator
        // then counts the node as vouched for), its repeats do not.
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")));
        assert!(r.offer("prod", &fact(FactSource::Attestation, "node-a", 2, "10.0.0.1")));
        assert!(!r.offer("prod", &fact(FactSource::Attestation, "node-a", 32, "10.0.0.1")));
        assert!(!r.offer("prod", &fact(FactSource::Attestation, "node-a", 62, "10.0.0.1")));
        // An out-of-order older heartbeat does not move it back.
        assert!(!r.offer("prod", &fact(FactSource::Attestation, "node-a", 40, "10.0.0.1")));
        let [(cluster, p)] = r.take_progress().try_into().unwrap();
        assert_eq!(cluster, "prod");
        assert_eq!(p.logged, None);
        assert_eq!(p.nodes, vec![NodeProgress { name: "node-a".into(), reported_until: Timestamp(62 * SECOND) }]);
    }

    #[test]
    fn clusters_are_apart_and_inventories_always_go_out() {
        let mut r = NodeReports::default();
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")));
        assert!(r.offer("staging", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")), "another cluster's node");
        assert!(r.offer("prod", &fact(FactSource::Inventory, "node-a", 2, "10.0.0.1")));
        assert!(r.offer("prod", &fact(FactSource::Inventory, "node-a", 3, "10.0.0.1")));
        assert!(r.take_progress().is_empty());
    }

    #[test]
    fn a_nodes_fact_is_broadcast_again_after_the_refresh() {
        let mut r = NodeReports::new(10, 60 * SECOND);
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 0, "10.0.0.1")));
        assert!(!r.offer("prod", &fact(FactSource::AuditLog, "node-a", 59, "10.0.0.1")));
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 60, "10.0.0.1")));
        assert!(!r.offer("prod", &fact(FactSource::AuditLog, "node-a", 61, "10.0.0.1")));
    }

    #[test]
    fn a_full_memory_starts_over_and_broadcasts_again() {
        let mut r = NodeReports::new(2, DEFAULT_REFRESH);
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 0, "10.0.0.1")));
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-b", 0, "10.0.0.2")));
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-c", 0, "10.0.0.3")));
        assert!(r.offer("prod", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")), "forgotten: told again");
    }

    #[test]
    fn a_repeat_moves_the_progress_only_once_noted() {
        let mut r = NodeReports::default();
        assert_eq!(r.repeat("prod", &fact(FactSource::AuditLog, "node-a", 1, "10.0.0.1")), None);
        let repeat = r.repeat("prod", &fact(FactSource::AuditLog, "node-a", 5, "10.0.0.1")).expect("a repeat");
        assert!(r.take_progress().is_empty(), "not before the records routed before it are sent");
        r.note(repeat);
        assert_eq!(r.take_progress()[0].1.logged, Some(Timestamp(5 * SECOND)));
    }

    #[test]
    fn an_os_or_pod_cidr_first_seen_is_news() {
        let mut r = NodeReports::default();
        let mut f = fact(FactSource::AuditLog, "node-a", 0, "10.0.0.1");
        assert!(r.offer("prod", &f));
        f.os = Some("linux".into());
        assert!(r.offer("prod", &f));
        assert!(!r.offer("prod", &f));
        f.pod_cidrs = vec!["10.244.1.0/24".parse().unwrap()];
        assert!(r.offer("prod", &f));
        f.addresses.clear();
        assert!(!r.offer("prod", &f));
    }
}
