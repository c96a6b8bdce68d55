//! What the engine needs to know about the environment that the evidence does not say.

use std::net::IpAddr;

use crate::net::IpNet;
use crate::time::{Micros, MINUTE};

/// Engine settings. Defaults are the catalogue's (docs/design.md §3.4).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Cluster label put on every finding.
    pub cluster: Option<String>,
    /// Networks that belong to the cluster beyond what node objects say (`--cluster-network`).
    pub cluster_networks: Vec<IpNet>,
    /// Proxies whose `sourceIPs` entries are skipped when finding the client (`--trusted-proxy`).
    pub trusted_proxies: Vec<IpNet>,
    /// NAT addresses pod traffic to the apiserver may come from (`--egress-ip`).
    pub egress: Vec<IpNet>,
    /// How long an old credential may still be used after its successor is (`--rotation-grace`).
    pub rotation_grace: Micros,
    /// How long after an exec a token use from the exec's address counts as its consequence.
    pub exec_window: Micros,
    /// How long after a pod's deletion 401s from its token's users count as a revoked replay.
    pub deletion_window: Micros,
    /// Capacity of the recent-audit-ID set that folds duplicate stages of one request.
    pub dedup_capacity: usize,
    /// How long after a pod-bound credential's first use its node's agent has to attest it
    /// before the credential counts as minted behind the kubelet's back (streaming only).
    pub attestation_grace: Micros,
    /// How long the stream keeps what it no longer sees ([`crate::expiry`]; `analyze` keeps all).
    pub retention: Retention,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cluster: None,
            cluster_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            egress: Vec::new(),
            rotation_grace: 5 * MINUTE,
            exec_window: 30 * MINUTE,
            deletion_window: 60 * MINUTE,
            dedup_capacity: 1 << 20,
            attestation_grace: 2 * MINUTE,
            retention: Retention::default(),
        }
    }
}

impl EngineConfig {
    /// Whether `ip` is a configured egress (NAT) address.
    pub fn is_egress(&self, ip: IpAddr) -> bool {
        self.egress.iter().any(|n| n.contains(ip))
    }
}

/// How long what is no longer seen is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// After a credential's last use or attestation.
    pub credentials: Micros,
    /// After a pod's deletion.
    pub pods: Micros,
    /// After an attestation is dropped, how long its digest still vouches for its credential
    /// (the longest a token can stay valid: a year, for the apiserver's extended tokens).
    pub retired: Micros,
}

impl Retention {
    /// The shortest credential retention that is safe: the kubelet rewrites a projected token
    /// within 24 hours, so a credential unseen for less than a day may still be in its pod, and
    /// forgetting it sooner would make its next use look like a new credential.
    pub const MIN_CREDENTIALS: Micros = 24 * 60 * MINUTE;
}

impl Default for Retention {
    fn default() -> Self {
        Retention { credentials: 25 * 60 * MINUTE, pods: 60 * MINUTE, retired: 366 * 24 * 60 * MINUTE }
    }
}
