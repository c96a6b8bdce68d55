//! What the node agents attested: which credentials physically sat in which pod on which node,
//! and how far each node's agent has reported (its watermark).
//!
//! Attestations arrive late and out of order, like everything else. A verdict that needs one
//! ("this pod-bound JTI was never on its pod's node") waits until the node's watermark has
//! passed the credential's first use by the grace period; before that, silence.

use std::collections::HashMap;

use crate::changes::Journal;
use crate::observation::{Credential, CredentialEvent, CredentialFact};
use crate::time::Timestamp;

/// One attested credential.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attested {
    /// The node whose agent saw it.
    pub node: String,
    /// The pod that held it.
    pub pod_uid: String,
    /// When the kubelet wrote it.
    pub since: Timestamp,
}

/// How far one node's agent has reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// The oldest credential it attested: before that, the agent may not have been watching.
    pub covers_from: Timestamp,
    /// The latest event it reported: it has seen everything its node did until about then.
    pub reported_until: Timestamp,
}

/// Attestations by JTI, and a watermark per attesting node.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attestations {
    by_jti: HashMap<String, Attested>,
    watermarks: HashMap<String, Watermark>,
    /// Attestations dropped by expiry ([`crate::expiry`]): a digest of (JTI, node, pod) and
    /// when it was retired, so a late use of the credential still counts as attested.
    #[serde(default)]
    retired: HashMap<u64, Timestamp>,
    /// JTIs attested or retired, and retired digests added or forgotten, since the changes
    /// were last taken (when tracking: [`Attestations::track_changes`]).
    #[serde(skip)]
    changed_jtis: Journal<String>,
    #[serde(skip)]
    changed_retired: Journal<u64>,
}

impl Attestations {
    /// Records one attestation.
    pub fn apply(&mut self, fact: &CredentialFact) {
        self.reported(&fact.node, fact.time);
        if fact.event == CredentialEvent::Held {
            if let Some(w) = self.watermarks.get_mut(&fact.node) {
                w.covers_from = w.covers_from.min(fact.time);
            }
        }
        // A release does not un-attest: the credential was on the node, which is all the
        // forged-mint question asks.
        if let (CredentialEvent::Held, Credential::PodBound { jti: Some(jti), .. }) = (fact.event, &fact.credential) {
            if !self.by_jti.contains_key(jti) {
                self.changed_jtis.note(|| jti.clone());
                let attested = Attested { node: fact.node.clone(), pod_uid: fact.pod_uid.clone(), since: fact.time };
                self.by_jti.insert(jti.clone(), attested);
            }
        }
    }

    /// Records that a node's agent reported at `time` (a snapshot, a heartbeat): everything on
    /// the node until then has been attested.
    pub fn reported(&mut self, node: &str, time: Timestamp) {
        let w =
            self.watermarks.entry(node.to_string()).or_insert(Watermark { covers_from: time, reported_until: time });
        w.reported_until = w.reported_until.max(time);
    }

    /// The attestation of a JTI.
    pub fn of(&self, jti: &str) -> Option<&Attested> {
        self.by_jti.get(jti)
    }

    /// Whether the agent on `node` attested `jti` in pod `pod_uid` (now or before expiry).
    pub fn attested_on(&self, jti: &str, node: &str, pod_uid: &str) -> bool {
        match self.by_jti.get(jti) {
            Some(a) => a.node == node && a.pod_uid == pod_uid,
            None => self.retired.contains_key(&digest(jti, node, pod_uid)),
        }
    }

    /// Drops the attestations `old` selects, keeping their digests; how many.
    pub fn retire(&mut self, mut old: impl FnMut(&str, &Attested) -> bool) -> usize {
        let before = self.by_jti.len();
        let (retired, changed_jtis, changed_retired) =
            (&mut self.retired, &mut self.changed_jtis, &mut self.changed_retired);
        self.by_jti.retain(|jti, a| {
            let drop = old(jti, a);
            if drop {
                let digest = digest(jti, &a.node, &a.pod_uid);
                retired.insert(digest, a.since);
                changed_jtis.note(|| jti.clone());
                changed_retired.note(|| digest);
            }
            !drop
        });
        before - self.by_jti.len()
    }

    /// Forgets the digests of attestations retired at a time `old` selects.
    pub fn forget_retired(&mut self, mut old: impl FnMut(Timestamp) -> bool) {
        let changed = &mut self.changed_retired;
        self.retired.retain(|digest, t| {
            let forget = old(*t);
            if forget {
                changed.note(|| *digest);
            }
            !forget
        });
    }

    /// Starts noting what changes, for [`Attestations::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed_jtis.start();
        self.changed_retired.start();
    }

    /// Whether changes are being noted.
    pub fn tracking(&self) -> bool {
        self.changed_jtis.on()
    }

    /// The entries changed since the last call: each JTI with its attestation (`None`: it left),
    /// each retired digest with its time (`None`: forgotten).
    #[allow(clippy::type_complexity)]
    pub fn take_changes(&mut self) -> (Vec<(String, Option<&Attested>)>, Vec<(u64, Option<Timestamp>)>) {
        let jtis = self.changed_jtis.take().into_iter().map(|jti| {
            let now = self.by_jti.get(&jti);
            (jti, now)
        });
        let jtis = jtis.collect();
        let retired = self.changed_retired.take().into_iter().map(|d| (d, self.retired.get(&d).copied())).collect();
        (jtis, retired)
    }

    /// Every node's watermark.
    pub fn watermarks(&self) -> impl Iterator<Item = (&str, &Watermark)> {
        self.watermarks.iter().map(|(node, w)| (node.as_str(), w))
    }

    /// Puts back what a changelog held.
    pub fn insert_restored_attested(&mut self, jti: String, attested: Attested) {
        self.by_jti.insert(jti, attested);
    }

    /// Puts back a retired digest a changelog held.
    pub fn insert_restored_retired(&mut self, digest: u64, at: Timestamp) {
        self.retired.insert(digest, at);
    }

    /// Puts back a node's watermark a changelog held.
    pub fn insert_restored_watermark(&mut self, node: String, watermark: Watermark) {
        self.watermarks.insert(node, watermark);
    }

    /// Attested credentials held in full.
    pub fn len(&self) -> usize {
        self.by_jti.len()
    }

    /// Whether none is held in full.
    pub fn is_empty(&self) -> bool {
        self.by_jti.is_empty()
    }

    /// The watermark of a node's agent, if it has one.
    pub fn watermark(&self, node: &str) -> Option<Watermark> {
        self.watermarks.get(node).copied()
    }

    /// The earliest time up to which every attesting node has reported: verdicts about uses
    /// after it may still be waiting for an agent.
    pub fn reported_by_all(&self) -> Option<Timestamp> {
        self.watermarks.values().map(|w| w.reported_until).min()
    }

    /// Whether any agent has attested anything: only then is silence evidence.
    pub fn any(&self) -> bool {
        !self.watermarks.is_empty()
    }
}

/// FNV-1a of the three strings, separated: stable across processes and releases (it is
/// persisted in snapshots).
fn digest(jti: &str, node: &str, pod_uid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in jti.bytes().chain([0]).chain(node.bytes()).chain([0]).chain(pod_uid.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
