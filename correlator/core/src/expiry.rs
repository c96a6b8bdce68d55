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
//! * **Credentials** (their use groups and attestation): dropped once neither a use nor an
//!   attestation has been seen for [`Retention::credentials`]. The audit log does not carry a
//!   token's `exp`, and the kubelet rewrites every projected token within 24 hours, so the
//!   default (25 h) outlives every token still in its pod.
//! * **TokenRequests** (mints): dropped with their credential, or after [`Retention::credentials`]
//!   when no use of the credential is held (a token minted and never used, a refused request).
//! * **Attestations** leave a 16-byte trace ([`Attestations`](crate::attestation::Attestations)' retired digests, kept for
//!   [`Retention::retired`]): a late use of a token its agent once attested must not read as
//!   minted behind the kubelet's back.
//! * **Pods**: dropped [`Retention::pods`] after their deletion (never before the engine's own
//!   `deletion_window`, which matches 401s against recently deleted pods, plus
//!   [`ALLOWED_LATENESS`]: a 401 from the window's last minute that arrives a little behind
//!   later events must still find its pod).

use std::collections::BTreeSet;

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
    /// Attestations.
    pub attestations: usize,
    /// TokenRequests.
    pub mints: usize,
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
    /// Pods.
    pub pods: usize,
}

impl StateSize {
    /// All entries.
    pub fn total(&self) -> usize {
        self.use_groups + self.attestations + self.pods
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
    // A credential's last sighting: its latest use under any client address, or its attestation.
    let mut last_seen: std::collections::HashMap<&CredentialKey, Timestamp> = std::collections::HashMap::new();
    for (key, group) in state.use_groups() {
        let seen = last_seen.entry(&key.credential).or_insert(Timestamp::MIN);
        *seen = (*seen).max(group.last());
    }
    let mut stale: BTreeSet<CredentialKey> = BTreeSet::new();
    for (credential, last) in last_seen {
        let attested = jti_of(credential).and_then(|j| state.attestations().of(j)).map(|a| a.since);
        if cutoff(attested.map_or(last, |a| a.max(last)), retention.credentials) {
            stale.insert(credential.clone());
        }
    }
    let use_groups = state.forget_credentials(&stale);
    // Attestations and mints of credentials still in use stay; the others go once old enough.
    let (uses, attestations, mints) = state.uses_attestations_and_mints_mut();
    let in_use: BTreeSet<&str> = uses.iter().filter_map(|(k, _)| jti_of(&k.credential)).collect();
    let attestations = attestations.retire(|jti, a| !in_use.contains(jti) && cutoff(a.since, retention.credentials));
    let mints = mints
        .retire(|m| !m.jti.as_deref().is_some_and(|jti| in_use.contains(jti)) && cutoff(m.time, retention.credentials));
    state.attestations_mut().forget_retired(|t| cutoff(t, retention.retired));
    // Deletions that named their pod without its UID are placed first.
    state.resolve_pods();
    let keep_pods = retention.pods.max(deletion_window.saturating_add(ALLOWED_LATENESS));
    let pods = state.retain_pods(|p| !p.deleted.is_some_and(|d| cutoff(d, keep_pods)));
    // Foreign reads of token files live as long as the credentials they read.
    state.token_reads_mut().retain_recent(|last| cutoff(last, retention.credentials));
    Expired { use_groups, attestations, mints, pods }
}

/// How much `state` holds.
pub(crate) fn size(state: &State) -> StateSize {
    StateSize {
        use_groups: state.use_group_count(),
        attestations: state.attestations().len(),
        pods: state.pods().len(),
    }
}

fn jti_of(credential: &CredentialKey) -> Option<&str> {
    match credential {
        CredentialKey::PodBound { jti: Some(jti), .. } | CredentialKey::Unbound { jti } => Some(jti),
        _ => None,
    }
}
