//! The state as keyed entries for a per-key changelog (see [`crate::changes`]): each section's
//! key and value, what changed since the last commit, and the state rebuilt from live entries.
//!
//! The sections that grow with credentials and pods (use groups, TokenRequests, attestations,
//! pods) are written in the changelog's binary format ([`value::encode`]); the sections compared
//! whole (a few entries per node, ServiceAccount and token Secret) stay JSON, which some of
//! their types' shapes need (fields left out when empty) and which costs nothing at their size.
//! Every section reads either.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{SecretReadsBy, State};
use crate::activity::{Access, Mint};
use crate::attestation::{AttestationChange, Attested, LegacyEntry, Watermark};
use crate::changes::value::{self, decode, decode_as};
use crate::changes::{entry_key, Change, EntryError, Written};
use crate::model::{Node, Pod};
use crate::observation::{PodFact, ServiceAccountFact, ServiceAccountRef, TokenSecretFact};
use crate::proxies::ProxyHops;
use crate::tally::Tally;
use crate::time::Timestamp;
use crate::token_reads::{ReadGroup, ReadKey};
use crate::usage::{PersistedGroup, UseGroup, UseKey};

use super::EngineStats;

/// Sections that change with every credential, tracked by journals.
const USE: &str = "use";
/// An attestation's digest (see [`crate::attestation`]), with when the token was written. Older
/// versions keyed this section by JTI and held the attestation whole, and kept the digests of
/// expired ones in `retired`: both are read back and rewritten.
const ATTESTED: &str = "attested";
const RETIRED: &str = "retired";
/// Pods some of whose attestations were forgotten unused (see [`crate::expiry`]).
const FORGOT: &str = "forgot";
const POD: &str = "pod";
const MINT: &str = "mint";
/// A kubelet's mint for a pod of its node, kept as its time alone, by JTI.
const MINTED: &str = "minted";
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

/// An `attested` entry's key: `POD_UID/DIGEST`.
fn attested_key(key: &str) -> Option<(&str, u64)> {
    let (pod, digest) = key.rsplit_once('/')?;
    Some((pod, digest.parse().ok()?))
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
            changes.push(Change { key, value: Some(value::encode(&group.persisted())) });
        }
        for key in removed {
            let key = entry_key(USE, &json_key(&key));
            // A group dropped and made again before the commit is written above.
            if !written_now.contains(&key) {
                changes.push(Change { key, value: None });
            }
        }
        let (attested, legacy) = self.attestations.take_changes();
        for change in attested {
            let (key, at) = match change {
                AttestationChange::Digest { pod, digest, at } => (entry_key(ATTESTED, &format!("{pod}/{digest}")), at),
                AttestationChange::Forgot { pod, at } => (entry_key(FORGOT, &pod), at),
            };
            changes.push(Change { key, value: at.map(|t| value::encode(&t)) });
        }
        for entry in legacy {
            let key = match entry {
                LegacyEntry::Attested(jti, _) => entry_key(ATTESTED, &jti),
                LegacyEntry::Retired(digest, _) => entry_key(RETIRED, &digest.to_string()),
            };
            changes.push(Change { key, value: None });
        }
        for (uid, pod) in self.model.pods.take_changes() {
            changes.push(Change { key: entry_key(POD, &uid), value: pod.map(value::encode) });
        }
        let (whole, compacted) = self.mints.take_changes();
        for (key, mint) in whole {
            changes.push(Change { key: entry_key(MINT, &key), value: mint.map(value::encode) });
        }
        for (jti, at) in compacted {
            changes.push(Change { key: entry_key(MINTED, &jti), value: at.map(|t| value::encode(&t)) });
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
                let key: UseKey = serde_json::from_str(key).map_err(EntryError::malformed(&full))?;
                let group = decode_as::<UseGroup, PersistedGroup<'_>>(value).map_err(bad())?;
                self.uses.insert_restored(key, group);
            }
            // This version's entries: the pod's UID and the digest (a number), and a time; an
            // older version's: a JTI and an object.
            ATTESTED => match (attested_key(key), decode::<Timestamp>(value)) {
                (Some((pod, digest)), Ok(at)) => self.attestations.insert_restored(pod, digest, at),
                _ => {
                    let attested: Attested = decode(value).map_err(bad())?;
                    self.attestations.insert_restored_legacy(LegacyEntry::Attested(key.to_string(), attested));
                }
            },
            FORGOT => self.attestations.insert_restored_forgot(key.to_string(), decode(value).map_err(bad())?),
            RETIRED => {
                let digest: u64 = serde_json::from_str(key).map_err(EntryError::malformed(&full))?;
                let at: Timestamp = decode(value).map_err(bad())?;
                self.attestations.insert_restored_legacy(LegacyEntry::Retired(digest, at));
            }
            POD => self.model.pods.insert_restored(decode::<Pod>(value).map_err(bad())?),
            NODE => self.model.nodes.insert_restored(decode::<Node>(value).map_err(bad())?),
            AGENT => {
                let watermark: Watermark = decode(value).map_err(bad())?;
                self.attestations.insert_restored_watermark(key.to_string(), watermark);
            }
            SERVICEACCOUNT => {
                let key: ServiceAccountRef = serde_json::from_str(key).map_err(EntryError::malformed(&full))?;
                let fact: ServiceAccountFact = decode(value).map_err(bad())?;
                self.serviceaccounts.insert(key, fact);
            }
            TOKEN_SECRET => {
                let key: (String, String) = serde_json::from_str(key).map_err(EntryError::malformed(&full))?;
                let fact: TokenSecretFact = decode(value).map_err(bad())?;
                self.token_secrets.insert(key, fact);
            }
            TOKEN_READ => {
                let key: ReadKey = serde_json::from_str(key).map_err(EntryError::malformed(&full))?;
                let group: ReadGroup = decode(value).map_err(bad())?;
                self.token_reads.insert_restored(key, group);
            }
            MINT => {
                let mint: Mint = decode(value).map_err(bad())?;
                self.mints.insert_restored(key.to_string(), mint);
            }
            MINTED => self.mints.insert_restored_minted(key.to_string(), decode(value).map_err(bad())?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}
