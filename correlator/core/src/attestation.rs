//! What the node agents attested: which credentials physically sat in which pod on which node,
//! and how far each node's agent has reported (its watermark).
//!
//! Attestations arrive late and out of order, like everything else. A verdict that needs one
//! ("this pod-bound JTI was never on its pod's node") waits until the node's watermark has
//! passed the credential's first use by the grace period; before that, silence.

use std::collections::HashMap;

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
            self.by_jti.entry(jti.clone()).or_insert_with(|| Attested {
                node: fact.node.clone(),
                pod_uid: fact.pod_uid.clone(),
                since: fact.time,
            });
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

    /// The watermark of a node's agent, if it has one.
    pub fn watermark(&self, node: &str) -> Option<Watermark> {
        self.watermarks.get(node).copied()
    }

    /// Whether any agent has attested anything: only then is silence evidence.
    pub fn any(&self) -> bool {
        !self.watermarks.is_empty()
    }
}
