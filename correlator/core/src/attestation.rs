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

/// One attested credential as a changelog from before attestations were kept as digests wrote
/// it (read back only: see [`Attestations::insert_restored_legacy`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
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

/// What agents attested, as digests of (JTI, node, pod), and a watermark per attesting node.
///
/// The one question asked of an attestation is "did the agent on this node see this JTI in this
/// pod?" ([`Attestations::attested_on`]), and a digest answers it as well as the strings do, in
/// 16 bytes instead of ~200: every pod's every token is attested, used or not (a pod rotates its
/// token every ~48 minutes and most pods never call the apiserver), so this is the largest
/// population the engine holds. How long a digest is kept is [`crate::expiry`]'s to say: while
/// its credential is in use, else a day, and never beyond its pod; a pod that lost unused ones
/// is remembered ([`Attestations::forgot_some`]), so a late use of one of its old tokens is not
/// read as minted behind the kubelet's back.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "AttestationsWire")]
pub struct Attestations {
    /// Digest of (JTI, node, pod) → when the kubelet wrote the token (the earliest report).
    attested: HashMap<u64, Timestamp>,
    /// The digests of each pod's tokens, by pod UID ("" for digests an older version kept
    /// without their pod): forgotten with the pod.
    by_pod: HashMap<String, Vec<u64>>,
    /// Pods some of whose attestations were forgotten unused, with the latest such token's
    /// time.
    forgot: HashMap<String, Timestamp>,
    watermarks: HashMap<String, Watermark>,
    /// Digests attested or forgotten since the changes were last taken, with their pod (when
    /// tracking: [`Attestations::track_changes`]).
    #[serde(skip)]
    changed: Journal<(String, u64)>,
    /// Entries of an older changelog's sections read back, to be rewritten as digests and
    /// tombstoned ([`Attestations::rewrite_legacy`]).
    #[serde(skip)]
    legacy: Vec<(LegacyEntry, (String, u64))>,
    #[serde(skip)]
    legacy_pending: Vec<LegacyEntry>,
}

/// In the journal, in place of a digest: the pod's [`Attestations::forgot_some`] changed. (A
/// real digest equal to it would be written as this marker's entry instead: one in 2^64.)
const FORGOT: u64 = u64::MAX;

/// One changed entry of what agents attested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestationChange {
    /// A digest of a pod's token, with its time (`None`: forgotten).
    Digest {
        /// The pod's UID.
        pod: String,
        /// The digest.
        digest: u64,
        /// When the token was written.
        at: Option<Timestamp>,
    },
    /// Whether some of a pod's attestations were forgotten (`None`: no longer said).
    Forgot {
        /// The pod's UID.
        pod: String,
        /// The latest forgotten token's time.
        at: Option<Timestamp>,
    },
}

/// An entry of an older changelog's attestation sections, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegacyEntry {
    /// `attested`, keyed by JTI: the whole attestation.
    Attested(String, Attested),
    /// `retired`, keyed by digest: when the attestation was dropped.
    Retired(u64, Timestamp),
}

/// A whole-state snapshot's attestations, of this version or of one that kept them whole.
#[derive(serde::Deserialize)]
struct AttestationsWire {
    #[serde(default)]
    attested: HashMap<u64, Timestamp>,
    #[serde(default)]
    by_pod: HashMap<String, Vec<u64>>,
    #[serde(default)]
    forgot: HashMap<String, Timestamp>,
    #[serde(default)]
    watermarks: HashMap<String, Watermark>,
    /// Older snapshots: attestations whole, by JTI.
    #[serde(default)]
    by_jti: HashMap<String, Attested>,
    /// Older snapshots: digests of the attestations expiry had dropped, with when.
    #[serde(default)]
    retired: HashMap<u64, Timestamp>,
}

impl From<AttestationsWire> for Attestations {
    fn from(wire: AttestationsWire) -> Self {
        let mut a = Attestations {
            attested: wire.attested,
            by_pod: wire.by_pod,
            forgot: wire.forgot,
            watermarks: wire.watermarks,
            ..Attestations::default()
        };
        for (jti, old) in wire.by_jti {
            a.vouch(&old.pod_uid, digest(&jti, &old.node, &old.pod_uid), old.since);
        }
        for (d, at) in wire.retired {
            a.vouch("", d, at);
        }
        a
    }
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
            let d = digest(jti, &fact.node, &fact.pod_uid);
            if self.vouch(&fact.pod_uid, d, fact.time) {
                self.changed.note(|| (fact.pod_uid.clone(), d));
            }
        }
    }

    /// Records a digest of `pod`'s, keeping its earlier time (the same whatever order reports
    /// come in); whether anything changed.
    fn vouch(&mut self, pod: &str, d: u64, at: Timestamp) -> bool {
        match self.attested.entry(d) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let earlier = at < *e.get();
                if earlier {
                    e.insert(at);
                }
                earlier
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(at);
                match self.by_pod.get_mut(pod) {
                    Some(digests) => digests.push(d),
                    None => {
                        self.by_pod.insert(pod.to_string(), vec![d]);
                    }
                }
                true
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

    /// Whether the agent on `node` attested `jti` in pod `pod_uid`.
    pub fn attested_on(&self, jti: &str, node: &str, pod_uid: &str) -> bool {
        self.attested.contains_key(&digest(jti, node, pod_uid))
    }

    /// Forgets the attestations `old` selects by their digest and time; how many. Each pod that
    /// lost one is remembered ([`Attestations::forgot_some`]).
    pub fn forget(&mut self, mut old: impl FnMut(u64, Timestamp) -> bool) -> usize {
        let (attested, changed, forgot) = (&mut self.attested, &mut self.changed, &mut self.forgot);
        let mut forgotten = 0;
        self.by_pod.retain(|pod, digests| {
            digests.retain(|&d| {
                let since = attested.get(&d).copied();
                let forget = since.is_none_or(|t| old(d, t));
                if forget {
                    attested.remove(&d);
                    changed.note(|| (pod.clone(), d));
                    forgotten += 1;
                    if let Some(t) = since {
                        let latest = forgot.entry(pod.clone()).or_insert(t);
                        *latest = (*latest).max(t);
                        changed.note(|| (pod.clone(), FORGOT));
                    }
                }
                !forget
            });
            !digests.is_empty()
        });
        forgotten
    }

    /// Whether an attestation of the pod has been forgotten: an unknown JTI of it may be one of
    /// its old tokens, not a forged one.
    pub fn forgot_some(&self, pod_uid: &str) -> bool {
        self.forgot.contains_key(pod_uid)
    }

    /// Forgets the attestations of pods that are gone; how many.
    pub fn forget_pods<'a>(&mut self, pods: impl IntoIterator<Item = &'a str>) -> usize {
        let mut forgotten = 0;
        for pod in pods {
            if self.forgot.remove(pod).is_some() {
                self.changed.note(|| (pod.to_string(), FORGOT));
            }
            for d in self.by_pod.remove(pod).unwrap_or_default() {
                self.attested.remove(&d);
                self.changed.note(|| (pod.to_string(), d));
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Starts noting what changes, for [`Attestations::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed.start();
    }

    /// Whether changes are being noted.
    pub fn tracking(&self) -> bool {
        self.changed.on()
    }

    /// The entries changed since the last call, and the older changelog's entries to
    /// tombstone.
    pub fn take_changes(&mut self) -> (Vec<AttestationChange>, Vec<LegacyEntry>) {
        let changes = self.changed.take().into_iter().map(|(pod, d)| {
            if d == FORGOT {
                let at = self.forgot.get(&pod).copied();
                AttestationChange::Forgot { pod, at }
            } else {
                let at = self.attested.get(&d).copied();
                AttestationChange::Digest { pod, digest: d, at }
            }
        });
        (changes.collect(), std::mem::take(&mut self.legacy_pending))
    }

    /// After a restore: the older changelog's entries read back are rewritten as digests by the
    /// next commit, and tombstoned.
    pub fn rewrite_legacy(&mut self) {
        for (entry, key) in std::mem::take(&mut self.legacy) {
            self.changed.note(|| key);
            self.legacy_pending.push(entry);
        }
    }

    /// Every node's watermark.
    pub fn watermarks(&self) -> impl Iterator<Item = (&str, &Watermark)> {
        self.watermarks.iter().map(|(node, w)| (node.as_str(), w))
    }

    /// Puts back that a pod's attestations were forgotten, as a changelog held it.
    pub fn insert_restored_forgot(&mut self, pod: String, at: Timestamp) {
        self.forgot.insert(pod, at);
    }

    /// Puts back an attestation's digest a changelog held, with its pod.
    pub fn insert_restored(&mut self, pod: &str, digest: u64, at: Timestamp) {
        self.vouch(pod, digest, at);
    }

    /// Puts back what an older changelog held: a whole attestation (section `attested` keyed by
    /// JTI) or a retired digest (section `retired`, with when it was retired); both are
    /// rewritten as digests by the first commit after [`Attestations::rewrite_legacy`].
    pub fn insert_restored_legacy(&mut self, entry: LegacyEntry) {
        let (pod, d, at) = match &entry {
            LegacyEntry::Attested(jti, a) => (a.pod_uid.clone(), digest(jti, &a.node, &a.pod_uid), a.since),
            LegacyEntry::Retired(d, at) => (String::new(), *d, *at),
        };
        self.vouch(&pod, d, at);
        self.legacy.push((entry, (pod, d)));
    }

    /// Puts back a node's watermark a changelog held.
    pub fn insert_restored_watermark(&mut self, node: String, watermark: Watermark) {
        self.watermarks.insert(node, watermark);
    }

    /// Attestations held (as digests).
    pub fn len(&self) -> usize {
        self.attested.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.attested.is_empty()
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
pub(crate) fn digest(jti: &str, node: &str, pod_uid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in jti.bytes().chain([0]).chain(node.bytes()).chain([0]).chain(pod_uid.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_of_an_older_version_still_vouches_for_what_it_held() {
        let old = r#"{"by_jti":{"j-1":{"node":"worker-1","pod_uid":"uid-1","since":5}},
                     "watermarks":{"worker-1":{"covers_from":5,"reported_until":9}},
                     "retired":{"7":3}}"#;
        let a: Attestations = serde_json::from_str(old).unwrap();
        assert!(a.attested_on("j-1", "worker-1", "uid-1"));
        assert!(!a.attested_on("j-1", "worker-2", "uid-1"), "another node's claim is not the same digest");
        assert_eq!(a.len(), 2);
        assert_eq!(a.watermark("worker-1").map(|w| w.reported_until), Some(Timestamp(9)));
        // And this version's snapshot reads back the same.
        let again: Attestations = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(again, a);
    }

    #[test]
    fn the_earliest_report_of_an_attestation_is_kept_whatever_the_order() {
        let mut a = Attestations::default();
        a.insert_restored("uid-1", 1, Timestamp(20));
        a.insert_restored("uid-1", 1, Timestamp(10));
        a.insert_restored("uid-1", 1, Timestamp(30));
        a.insert_restored("uid-1", 2, Timestamp(40));
        assert_eq!(a.forget(|_, t| t < Timestamp(15)), 1, "held since 10");
        assert_eq!(a.len(), 1);
        assert!(a.forgot_some("uid-1"));
        assert!(!a.forgot_some("uid-2"));
    }

    #[test]
    fn a_pods_attestations_are_forgotten_with_it() {
        let mut a = Attestations::default();
        a.track_changes();
        a.insert_restored("uid-1", 1, Timestamp(10));
        a.insert_restored("uid-1", 2, Timestamp(20));
        a.insert_restored("uid-2", 3, Timestamp(20));
        a.take_changes();
        assert_eq!(a.forget_pods(["uid-1", "uid-9"]), 2);
        assert_eq!(a.len(), 1);
        let (changed, _) = a.take_changes();
        let gone = |digest| AttestationChange::Digest { pod: "uid-1".into(), digest, at: None };
        assert_eq!(changed, [gone(1), gone(2)]);
    }
}
