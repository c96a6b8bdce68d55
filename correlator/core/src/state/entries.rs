//! The state as keyed entries for a per-key changelog (see [`crate::changes`]): each section's
//! key and value, what changed since the last commit, and the state rebuilt from live entries.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{SecretReadsBy, State};
use crate::activity::{Access, Mint};
use crate::attestation::{Attested, Watermark};
use crate::changes::{entry_key, Change, EntryError, Written};
use crate::model::{Node, Pod};
use crate::observation::{PodFact, ServiceAccountFact, ServiceAccountRef, TokenSecretFact};
use crate::proxies::ProxyHops;
use crate::tally::Tally;
use crate::time::Timestamp;
use crate::token_reads::{ReadGroup, ReadKey};
use crate::usage::{UseGroup, UseKey};

use super::EngineStats;

/// Sections that change with every credential, tracked by journals.
const USE: &str = "use";
const ATTESTED: &str = "attested";
const RETIRED: &str = "retired";
const POD: &str = "pod";
const MINT: &str = "mint";
/// Sections compared whole each commit: one entry per node, agent, service account, token Secret
/// and foreign token read.
const NODE: &str = "node";
const AGENT: &str = "agent";
const SERVICEACCOUNT: &str = "sa";
const TOKEN_SECRET: &str = "secret";
/// A foreign read of a token file: few, and only where an agent watches token reads.
const TOKEN_READ: &str = "read";

/// What the state holds beside its keyed sections, written as one entry (by the engine, with its
/// own: [`crate::Engine::changes`]). Small: aggregates by client address, the capped exec list.
#[derive(Serialize)]
pub(crate) struct Rest<'a> {
    unresolved_pods: &'a [PodFact],
    #[serde(serialize_with = "crate::pairs::serialize_ref")]
    failures: &'a HashMap<Option<IpAddr>, Tally>,
    accesses: &'a [Access],
    #[serde(serialize_with = "crate::pairs::serialize_ref")]
    secret_reads: &'a SecretReadsBy,
    #[serde(serialize_with = "crate::pairs::serialize_ref")]
    secret_reads_elsewhere: &'a SecretReadsBy,
    hops: &'a ProxyHops,
    stats: &'a EngineStats,
    latest: Timestamp,
    logged: Option<Timestamp>,
    token_reads_dropped: u64,
}

/// [`Rest`] as read back.
#[derive(Deserialize)]
pub(crate) struct RestOwned {
    unresolved_pods: Vec<PodFact>,
    #[serde(with = "crate::pairs")]
    failures: HashMap<Option<IpAddr>, Tally>,
    accesses: Vec<Access>,
    #[serde(with = "crate::pairs")]
    secret_reads: SecretReadsBy,
    #[serde(with = "crate::pairs")]
    secret_reads_elsewhere: SecretReadsBy,
    hops: ProxyHops,
    stats: EngineStats,
    latest: Timestamp,
    logged: Option<Timestamp>,
    // Absent in changelogs written before token reads were watched.
    #[serde(default)]
    token_reads_dropped: u64,
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Every value here is plain data (maps with string or pair-listed keys): it always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

fn json_key(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl State {
    /// Starts noting what changes, for [`State::changes`]: off in `analyze`, which never persists.
    pub(crate) fn track_changes(&mut self) {
        self.uses.track_changes();
        self.attestations.track_changes();
        self.model.pods.track_changes();
        self.mints.track_changes();
    }

    /// Adds the entries changed since the last call to `changes`; `written` is what was last
    /// written of the sections compared whole.
    pub(crate) fn changes(&mut self, written: &mut Written, changes: &mut Vec<Change>) {
        let (changed, removed) = self.uses.take_changes();
        let mut written_now = std::collections::HashSet::with_capacity(changed.len());
        for (key, group) in changed {
            let key = entry_key(USE, &json_key(key));
            written_now.insert(key.clone());
            changes.push(Change { key, value: Some(json(group)) });
        }
        for key in removed {
            let key = entry_key(USE, &json_key(&key));
            // A group dropped and made again before the commit is written above.
            if !written_now.contains(&key) {
                changes.push(Change { key, value: None });
            }
        }
        let (attested, retired) = self.attestations.take_changes();
        for (jti, now) in attested {
            changes.push(Change { key: entry_key(ATTESTED, &jti), value: now.map(json) });
        }
        for (digest, at) in retired {
            changes.push(Change { key: entry_key(RETIRED, &digest.to_string()), value: at.map(|t| json(&t)) });
        }
        for (uid, pod) in self.model.pods.take_changes() {
            changes.push(Change { key: entry_key(POD, &uid), value: pod.map(json) });
        }
        for (key, mint) in self.mints.take_changes() {
            changes.push(Change { key: entry_key(MINT, &key), value: mint.map(json) });
        }
        let nodes = self.model.nodes.iter().map(|n| (n.name.clone(), json(n)));
        written.diff(NODE, nodes, changes);
        let agents = self.attestations.watermarks().map(|(node, w)| (node.to_string(), json(w)));
        written.diff(AGENT, agents, changes);
        let accounts = self.serviceaccounts.iter().map(|(k, sa)| (json_key(k), json(sa)));
        written.diff(SERVICEACCOUNT, accounts, changes);
        let secrets = self.token_secrets.iter().map(|(k, s)| (json_key(k), json(s)));
        written.diff(TOKEN_SECRET, secrets, changes);
        let reads = self.token_reads.entries().map(|(k, r)| (json_key(k), json(r)));
        written.diff(TOKEN_READ, reads, changes);
    }

    /// What the state holds beside its keyed sections.
    pub(crate) fn rest(&self) -> Rest<'_> {
        Rest {
            unresolved_pods: self.model.pods.unresolved(),
            failures: &self.failures,
            accesses: &self.accesses,
            secret_reads: &self.secret_reads,
            secret_reads_elsewhere: &self.secret_reads_elsewhere,
            hops: &self.hops,
            stats: &self.stats,
            latest: self.latest,
            logged: self.logged,
            token_reads_dropped: self.token_reads.dropped(),
        }
    }

    /// Puts back what [`State::rest`] wrote.
    pub(crate) fn restore_rest(&mut self, rest: RestOwned) {
        self.model.pods.restore_unresolved(rest.unresolved_pods);
        self.failures = rest.failures;
        self.accesses = rest.accesses;
        self.secret_reads = rest.secret_reads;
        self.secret_reads_elsewhere = rest.secret_reads_elsewhere;
        self.hops = rest.hops;
        self.stats = rest.stats;
        self.latest = rest.latest;
        self.logged = rest.logged;
        self.token_reads.restore_dropped(rest.token_reads_dropped);
    }

    /// Puts back one entry of a keyed section; `Ok(false)` when the section is not the state's.
    pub(crate) fn restore_entry(&mut self, section: &str, key: &str, value: &[u8]) -> Result<bool, EntryError> {
        let full = entry_key(section, key);
        let bad = || EntryError::malformed(&full);
        match section {
            USE => {
                let key: UseKey = serde_json::from_str(key).map_err(bad())?;
                let group: UseGroup = serde_json::from_slice(value).map_err(bad())?;
                self.uses.insert_restored(key, group);
            }
            ATTESTED => {
                let attested: Attested = serde_json::from_slice(value).map_err(bad())?;
                self.attestations.insert_restored_attested(key.to_string(), attested);
            }
            RETIRED => {
                let digest: u64 = serde_json::from_str(key).map_err(bad())?;
                self.attestations.insert_restored_retired(digest, serde_json::from_slice(value).map_err(bad())?);
            }
            POD => self.model.pods.insert_restored(serde_json::from_slice::<Pod>(value).map_err(bad())?),
            NODE => self.model.nodes.insert_restored(serde_json::from_slice::<Node>(value).map_err(bad())?),
            AGENT => {
                let watermark: Watermark = serde_json::from_slice(value).map_err(bad())?;
                self.attestations.insert_restored_watermark(key.to_string(), watermark);
            }
            SERVICEACCOUNT => {
                let key: ServiceAccountRef = serde_json::from_str(key).map_err(bad())?;
                let fact: ServiceAccountFact = serde_json::from_slice(value).map_err(bad())?;
                self.serviceaccounts.insert(key, fact);
            }
            TOKEN_SECRET => {
                let key: (String, String) = serde_json::from_str(key).map_err(bad())?;
                let fact: TokenSecretFact = serde_json::from_slice(value).map_err(bad())?;
                self.token_secrets.insert(key, fact);
            }
            TOKEN_READ => {
                let key: ReadKey = serde_json::from_str(key).map_err(bad())?;
                let group: ReadGroup = serde_json::from_slice(value).map_err(bad())?;
                self.token_reads.insert_restored(key, group);
            }
            MINT => {
                let mint: Mint = serde_json::from_slice(value).map_err(bad())?;
                self.mints.insert_restored(key.to_string(), mint);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
