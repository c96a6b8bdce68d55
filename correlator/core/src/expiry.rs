//! Bounded state for the stream: what can no longer change a verdict is dropped, by event time.
//!
//! A correlator runs for months; without this its engines would hold every credential and pod
//! ever seen. [`Engine::expire`](crate::Engine::expire) is driven by the engine's own event time (the latest audit or
//! inventory event it folded, the watermark), never by a clock, so the same input and the same
//! calls give the same state: snapshots restore it exactly, and a replayed partition expires
//! what the original did. Agents' times do not move the watermark: a node's clock is the node's
//! to set, and one node stamping the far future must not expire every other node's evidence.
//! `tokentrail analyze` never calls it (a file's whole history is the point there).
//!
//! * **Credentials** (their use groups): dropped once no use has been seen for
//!   [`Retention::credentials`]. The audit log does not carry a token's `exp`, and the kubelet
//!   rewrites every projected token within 24 hours, so the default (25 h) outlives every token
//!   still in its pod.
//! * **TokenRequests** (mints): dropped with their credential, or after [`Retention::credentials`]
//!   when no use of the credential is held (a token minted and never used, a refused request).
//! * **Attestations** are held as 16-byte digests from the start
//!   ([`Attestations`](crate::attestation::Attestations)): while their credential is in use (up
//!   to [`Retention::retired`], a year, the longest the apiserver accepts a pod's token), else
//!   for [`Retention::credentials`] after the token was written, and never beyond their pod's
//!   departure (the apiserver refuses a pod-bound token once its pod is gone). A pod whose
//!   unused attestations were forgotten is remembered: a late use of one of its old tokens is
//!   not judged minted behind the kubelet's back when the apiserver flagged every use stale
//!   (`token-superseded-use` reports it).
//! * **Pods**: dropped [`Retention::pods`] after their deletion (never before the engine's own
//!   `deletion_window`, which matches 401s against recently deleted pods, plus
//!   [`ALLOWED_LATENESS`]: a 401 from the window's last minute that arrives a little behind
//!   later events must still find its pod).

use std::collections::BTreeSet;

use crate::principals::kubelet_node;
use crate::state::State;
use crate::time::{Micros, Timestamp};
use crate::usage::CredentialKey;

// A setting, so it lives with the settings; named here too, beside what it governs.
pub use crate::config::Retention;

/// How far behind the latest event evidence may arrive and still meet everything it needs:
/// several apiservers' logs interleave, and a stream's batches are not sorted. Kept on top of
/// the windows rules look back over, so nothing a late event needs has been expired yet.
pub const ALLOWED_LATENESS: Micros = 5 * crate::time::MINUTE;

/// What one [`Engine::expire`](crate::Engine::expire) dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Use groups (credential × client address).
    pub use_groups: usize,
    /// Attestations (their digests, a year after the token was written).
    pub attestations: usize,
    /// TokenRequests.
    pub mints: usize,
    /// Kubelets' TokenRequests for pods of their nodes, kept as their time alone.
    pub compacted_mints: usize,
    /// Pods.
    pub pods: usize,
}

/// How much the engine holds (the state-size gauge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Use groups (credential × client address).
    pub use_groups: usize,
    /// Attested credentials.
    pub attestations: usize,
    /// TokenRequests.
    pub mints: usize,
    /// Pods.
    pub pods: usize,
}

impl StateSize {
    /// All entries.
    pub fn total(&self) -> usize {
        self.use_groups + self.attestations + self.mints + self.pods
    }
}

/// Drops from `state` what has not been seen for its retention before `watermark`. Pods stay at
/// least `deletion_window` after their deletion, the window 401s are matched against it in.
pub(crate) fn expire(
    state: &mut State,
    watermark: Timestamp,
    retention: Retention,
    deletion_window: Micros,
) -> Expired {
    let cutoff = |t: Timestamp, keep: Micros| t.0.saturating_add(keep) < watermark.0;
    // Pods that only the groups about to go show, and that a deletion by name asks about,
    // become pods first.
    state.place_sighted_pods();
    // A credential's last sighting: its latest use under any client address.
    let mut last_seen: std::collections::HashMap<&CredentialKey, Timestamp> = std::collections::HashMap::new();
    for (key, group) in state.use_groups() {
        let seen = last_seen.entry(&key.credential).or_insert(Timestamp::MIN);
        *seen = (*seen).max(group.last());
    }
    let stale: BTreeSet<CredentialKey> = last_seen
        .into_iter()
        .filter(|&(_, last)| cutoff(last, retention.credentials))
        .map(|(credential, _)| credential.clone())
        .collect();
    let use_groups = state.forget_credentials(&stale);
    // Mints of credentials still in use stay; the others go once old enough. A kubelet's mint for
    // a pod of its own node is kept as its time alone.
    let compacted = compact_kubelet_mints(state, Timestamp(watermark.0.saturating_sub(ALLOWED_LATENESS)));
    let (uses, mints) = state.uses_and_mints_mut();
    let in_use: BTreeSet<&str> = uses.iter().filter_map(|(k, _)| jti_of(&k.credential)).collect();
    let mints =
        mints.retire(|jti, time| !jti.is_some_and(|j| in_use.contains(j)) && cutoff(time, retention.credentials));
    // An attestation of a token in use stays (for up to a year: no token is valid longer);
    // others go with the credentials' retention. A pod never rewrites a token it is done with,
    // so a pod that lives for months would otherwise hold a digest for every ~48 minutes of it.
    let in_use = attested_in_use(state);
    let attestations = state.attestations_mut().forget(|d, since| {
        cutoff(since, retention.retired) || (!in_use.contains(&d) && cutoff(since, retention.credentials))
    });
    // Deletions that named their pod without its UID are placed first.
    state.resolve_pods();
    let keep_pods = retention.pods.max(deletion_window.saturating_add(ALLOWED_LATENESS));
    let mut gone = Vec::new();
    let pods = state.retain_pods(|p| {
        let keep = !p.deleted.is_some_and(|d| cutoff(d, keep_pods));
        if !keep {
            gone.push(p.uid.clone());
        }
        keep
    });
    // The apiserver refuses a pod-bound token once its pod is gone: what vouched for its
    // tokens goes with it.
    let attestations = attestations + state.attestations_mut().forget_pods(gone.iter().map(String::as_str));
    // Foreign reads of token files live as long as the credentials they read.
    state.token_reads_mut().retain_recent(|last| cutoff(last, retention.credentials));
    Expired { use_groups, attestations, mints, compacted_mints: compacted, pods }
}

/// The digests of the attestations of credentials in use: the pod each is bound to, on its
/// node, as the agent there would have attested it.
fn attested_in_use(state: &State) -> std::collections::HashSet<u64> {
    let pods = state.pods();
    state
        .use_groups()
        .filter_map(|(key, _)| match &key.credential {
            CredentialKey::PodBound { pod_uid, jti: Some(jti) } => {
                let node = pods.get(pod_uid)?.node.as_deref()?;
                Some(crate::attestation::digest(jti, node, pod_uid))
            }
            _ => None,
        })
        .collect()
}

/// Compacts the mints of kubelets for pods on their own nodes (see
/// [`Mints`](crate::activity::Mints)), made before `settled`; how many. The pod is the one the
/// request names (by UID, or by name at the time), or the one the credential's uses are bound
/// to; a mint whose pod or its node is not known yet stays whole, to be judged when it is.
fn compact_kubelet_mints(state: &mut State, settled: Timestamp) -> usize {
    let mut used_by: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (key, _) in state.use_groups() {
        if let CredentialKey::PodBound { pod_uid, jti: Some(jti) } = &key.credential {
            used_by.insert(jti.as_str(), pod_uid.as_str());
        }
    }
    let pods = state.pods();
    let legitimate: std::collections::HashSet<String> = state
        .mints()
        .unordered()
        .filter(|m| m.time < settled)
        .filter_map(|m| {
            let jti = m.jti.as_deref()?;
            let minter = kubelet_node(&m.minter)?;
            let requested = m
                .bound_pod
                .as_ref()
                .and_then(|b| b.uid.clone().or_else(|| pods.uid_by_name(&m.serviceaccount.namespace, &b.name, m.time)));
            let uid = requested.or_else(|| used_by.get(jti).map(|u| u.to_string()))?;
            let node = pods.get(&uid)?.node.as_deref()?;
            (node == minter).then(|| m.audit_id.clone())
        })
        .collect();
    drop(used_by);
    state.mints_mut().compact(settled, |m| legitimate.contains(&m.audit_id))
}

/// How much `state` holds.
pub(crate) fn size(state: &State) -> StateSize {
    StateSize {
        use_groups: state.use_group_count(),
        attestations: state.attestations().len(),
        mints: state.mints().len(),
        pods: state.pods().len(),
    }
}

fn jti_of(credential: &CredentialKey) -> Option<&str> {
    match credential {
        CredentialKey::PodBound { jti: Some(jti), .. } | CredentialKey::Unbound { jti } => Some(jti),
        _ => None,
    }
}
