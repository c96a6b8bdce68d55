//! Token uses folded by service account, credential and client address.
//!
//! This is what keeps `analyze` in constant memory per credential: a token replayed ten thousand
//! times from one address is one [`UseGroup`], not ten thousand records. Everything a rule needs
//! about the uses (times, counts, samples, forged-header and stale-token sightings) is kept here.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::Serialize;
use std::hash::BuildHasher;

use crate::changes::Journal;
use crate::client::{fingerprint, Clients};
use crate::observation::{Credential, ServiceAccountRef, UseView};
use crate::shared::Shared;
use crate::tally::Tally;
use crate::time::{Micros, Timestamp, SECOND};

mod persisted;
pub(crate) use persisted::PersistedGroup;

/// A credential, as the key of its uses (`S` as in [`ServiceAccountRef`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum CredentialKey<S = String> {
    /// Bound to a pod; before 1.30 there is no JTI and the pod stands for the credential.
    PodBound {
        /// UID of the bound pod.
        pod_uid: S,
        /// JTI, when the evidence has it.
        jti: Option<S>,
    },
    /// TokenRequest token without a pod.
    Unbound {
        /// JTI.
        jti: S,
    },
    /// Secret-based token.
    Legacy {
        /// Secret name, when the evidence has it (1.29+).
        secret: Option<S>,
    },
    /// Kind unknown.
    Unknown,
}

impl<S: Clone> CredentialKey<S> {
    /// The key of a credential.
    pub fn of(c: &Credential<S>) -> CredentialKey<S> {
        match c {
            Credential::PodBound { jti, pod_uid, .. } => {
                CredentialKey::PodBound { pod_uid: pod_uid.clone(), jti: jti.clone() }
            }
            Credential::Unbound { jti } => CredentialKey::Unbound { jti: jti.clone() },
            Credential::LegacySecret { secret } => CredentialKey::Legacy { secret: secret.clone() },
            Credential::Unknown => CredentialKey::Unknown,
        }
    }
}

impl CredentialKey {
    /// Borrows the names.
    pub fn view(&self) -> CredentialKey<&str> {
        match self {
            CredentialKey::PodBound { pod_uid, jti } => CredentialKey::PodBound { pod_uid, jti: jti.as_deref() },
            CredentialKey::Unbound { jti } => CredentialKey::Unbound { jti },
            CredentialKey::Legacy { secret } => CredentialKey::Legacy { secret: secret.as_deref() },
            CredentialKey::Unknown => CredentialKey::Unknown,
        }
    }

    /// `pod-bound`, `unbound`, `legacy-secret` or `unknown`, as findings say it.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialKey::PodBound { .. } => "pod-bound",
            CredentialKey::Unbound { .. } => "unbound",
            CredentialKey::Legacy { .. } => "legacy-secret",
            CredentialKey::Unknown => "unknown",
        }
    }

    /// `JTI=<uuid>`, when there is one.
    pub fn credential_id(&self) -> Option<String> {
        match self {
            CredentialKey::PodBound { jti: Some(j), .. } | CredentialKey::Unbound { jti: j } => {
                Some(format!("JTI={j}"))
            }
            _ => None,
        }
    }

    /// A stable text naming the credential, for finding ids.
    pub fn stable_name(&self, sa: &ServiceAccountRef) -> String {
        match self {
            CredentialKey::PodBound { jti: Some(j), .. } | CredentialKey::Unbound { jti: j } => format!("JTI={j}"),
            CredentialKey::PodBound { pod_uid, jti: None } => format!("pod-uid={pod_uid}"),
            CredentialKey::Legacy { secret: Some(s) } => format!("secret={}/{s}", sa.namespace),
            CredentialKey::Legacy { secret: None } => format!("legacy-sa={}/{}", sa.namespace, sa.name),
            CredentialKey::Unknown => format!("sa={}/{}", sa.namespace, sa.name),
        }
    }
}

impl CredentialKey<&str> {
    /// An owned copy.
    pub fn into_owned(self) -> CredentialKey {
        match self {
            CredentialKey::PodBound { pod_uid, jti } => {
                CredentialKey::PodBound { pod_uid: pod_uid.to_owned(), jti: jti.map(str::to_owned) }
            }
            CredentialKey::Unbound { jti } => CredentialKey::Unbound { jti: jti.to_owned() },
            CredentialKey::Legacy { secret } => CredentialKey::Legacy { secret: secret.map(str::to_owned) },
            CredentialKey::Unknown => CredentialKey::Unknown,
        }
    }
}

/// Which uses fold together (`S` as in [`ServiceAccountRef`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct UseKey<S = String> {
    /// The service account.
    pub serviceaccount: ServiceAccountRef<S>,
    /// The credential.
    pub credential: CredentialKey<S>,
    /// The trusted client address (docs/design.md §3.2); `None` when the event had no `sourceIPs`.
    pub client: Option<IpAddr>,
}

impl UseKey {
    /// Borrows the names.
    pub fn view(&self) -> UseKey<&str> {
        UseKey { serviceaccount: self.serviceaccount.view(), credential: self.credential.view(), client: self.client }
    }
}

impl From<&UseKey<&str>> for UseKey {
    fn from(key: &UseKey<&str>) -> UseKey {
        UseKey {
            serviceaccount: key.serviceaccount.into_owned(),
            credential: key.credential.into_owned(),
            client: key.client,
        }
    }
}

/// Every use group, by its key.
///
/// One table of pointers to boxed `(key, group)` entries. Hash tables size themselves in powers
/// of two, so up to half their slots are spare room: holding a pointer each, that room costs 8
/// bytes a slot rather than a key and a pointer (136), which at a million credentials is the
/// difference between 16 MB and 280 MB.
#[derive(Debug, Default)]
pub struct UseGroups {
    table: HashTable<Box<(UseKey, UseGroup)>>,
    hasher: foldhash::fast::RandomState,
    /// The hashes of groups changed, and the keys of groups dropped, since the changes were
    /// last taken (when tracking: [`UseGroups::track_changes`]).
    changed: Journal<u64>,
    removed: Journal<UseKey>,
}

impl UseGroups {
    /// The group of `key`, made empty on its first use. A borrowed key hashes like its owned
    /// form (`&str` and `String` hash alike), so the owned key is built only for a new group.
    pub fn entry(&mut self, key: &UseKey<&str>) -> &mut UseGroup {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        self.changed.note(|| hash);
        let entry = self
            .table
            .entry(hash, |kept| kept.0.view() == *key, |kept| hasher.hash_one(&kept.0))
            .or_insert_with(|| Box::new((UseKey::from(key), UseGroup::default())));
        &mut entry.into_mut().1
    }

    /// Folds in another engine's groups: groups of the same key merge, as folding both groups'
    /// uses here would have made them.
    pub fn absorb(&mut self, other: UseGroups) {
        // The larger table is kept and the smaller poured into it, so no group is moved twice.
        let (mut into, from) =
            if other.len() > self.len() { (other, std::mem::take(self)) } else { (std::mem::take(self), other) };
        for entry in from.table {
            let (key, group) = *entry;
            let hasher = &into.hasher;
            match into.table.entry(hasher.hash_one(&key), |kept| kept.0 == key, |kept| hasher.hash_one(&kept.0)) {
                hashbrown::hash_table::Entry::Occupied(mut mine) => mine.get_mut().1.merge(group),
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(Box::new((key, group)));
                }
            }
        }
        *self = into;
    }

    /// Keeps the groups `keep` selects.
    pub fn retain(&mut self, mut keep: impl FnMut(&UseKey, &UseGroup) -> bool) {
        let removed = &mut self.removed;
        self.table.retain(|entry| {
            let kept = keep(&entry.0, &entry.1);
            if !kept {
                removed.note(|| entry.0.clone());
            }
            kept
        });
    }

    /// Starts noting which groups change and which leave, for [`UseGroups::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed.start();
        self.removed.start();
    }

    /// The groups changed since the last call (each once), and the keys of those dropped.
    pub fn take_changes(&mut self) -> (Vec<(&UseKey, &UseGroup)>, Vec<UseKey>) {
        let removed: Vec<UseKey> = self.removed.take().into_iter().collect();
        let mut changed = Vec::new();
        for hash in self.changed.take() {
            // `iter_hash` also yields entries that share only the hash's top bits: keep the
            // group's own (keys sharing the whole hash are written alike, harmlessly).
            let hasher = &self.hasher;
            let own = self.table.iter_hash(hash).filter(|entry| hasher.hash_one(&entry.0) == hash);
            changed.extend(own.map(|entry| (&entry.0, &entry.1)));
        }
        (changed, removed)
    }

    /// Puts back a group read from a changelog.
    pub fn insert_restored(&mut self, key: UseKey, group: UseGroup) {
        let hasher = &self.hasher;
        match self.table.entry(hasher.hash_one(&key), |kept| kept.0 == key, |kept| hasher.hash_one(&kept.0)) {
            hashbrown::hash_table::Entry::Occupied(mut mine) => mine.get_mut().1 = group,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(Box::new((key, group)));
            }
        }
    }

    /// Every group with its key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&UseKey, &UseGroup)> + Clone {
        self.table.iter().map(|entry| (&entry.0, &entry.1))
    }

    /// How many groups.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl<'a> IntoIterator for &'a UseGroups {
    type Item = (&'a UseKey, &'a UseGroup);
    type IntoIter = Box<dyn Iterator<Item = (&'a UseKey, &'a UseGroup)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<(UseKey, UseGroup)> for UseGroups {
    fn from_iter<I: IntoIterator<Item = (UseKey, UseGroup)>>(pairs: I) -> Self {
        let mut groups = UseGroups::default();
        for (key, group) in pairs {
            let mine = groups.entry(&key.view());
            mine.merge(group);
        }
        groups
    }
}

/// The uses of one credential from one client address.
///
/// One exists per credential and address, so a flood of credentials is a flood of these: the
/// parts only some groups need (forwarded-for claims, stale uses) live behind one pointer, and
/// the engine keeps each group boxed so its map holds keys and pointers only.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UseGroup {
    /// Every use.
    pub uses: Tally,
    /// ServiceAccount UID (`user.uid`).
    pub serviceaccount_uid: Option<Box<str>>,
    /// Bound pod's name.
    pub pod_name: Option<Box<str>>,
    /// Bound pod's node at mint time (shared: a node has many pods).
    pub node: Option<Arc<str>>,
    /// Forwarded-for claims and stale uses, for the few groups that have any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    irregular: Option<Box<Irregular>>,
    /// When the uses happened, in a bounded number of buckets (the report's timeline); empty
    /// while there is one use, whose time the tally holds (most groups of a flood have one).
    over_time: TimeBuckets,
    /// The client programs (and their OS) the uses came from, as their user agents say; a few
    /// at most.
    #[serde(default)]
    pub clients: Clients<CLIENTS_KEPT>,
    /// The last user agent folded here, and where its client is kept: nearly every use of a
    /// group comes from the program of the use before it. Not persisted (a restored group
    /// reads its next user agent afresh), and no part of what the group says.
    #[serde(skip)]
    last_agent: LastAgent,
}

/// A user agent a group has folded, with the slot of its client in the group's clients.
///
/// Folding a user agent a second time changes nothing in the sample of user agents (a value
/// offered again is either kept already or beyond the sample for good) and counts one more use
/// of the same client: so a use whose user agent is the last one's touches neither the sample
/// nor the user-agent parser, only its client's counts.
#[derive(Clone, Debug, Default)]
struct LastAgent(Option<(Arc<str>, Option<usize>)>);

impl PartialEq for LastAgent {
    /// A cache: equal whatever it holds, as the groups it belongs to are.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastAgent {}

/// The uses of a group that most groups never have.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Irregular {
    /// Uses whose `sourceIPs` carried client-supplied addresses other than the peer.
    forwarded: Tally,
    /// The client-supplied addresses seen (bounded).
    forwarded_ips: BTreeSet<IpAddr>,
    /// Uses the apiserver flagged with `authentication.k8s.io/stale-token`.
    stale: Tally,
}

impl Irregular {
    fn note_forwarded(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        for ip in ips {
            if self.forwarded_ips.len() < FORWARDED_IPS_KEPT {
                self.forwarded_ips.insert(ip);
            }
        }
    }
}

impl Default for UseGroup {
    fn default() -> Self {
        UseGroup {
            uses: Tally::default(),
            serviceaccount_uid: None,
            pod_name: None,
            node: None,
            irregular: None,
            over_time: TimeBuckets::default(),
            clients: Clients::new(),
            last_agent: LastAgent::default(),
        }
    }
}

const FORWARDED_IPS_KEPT: usize = 8;
/// A workload runs one or a few programs; more than this many in one use group is already odd.
const CLIENTS_KEPT: usize = 8;

impl UseGroup {
    /// Adds one use of a credential bound to `pod_name` on `node` (when pod-bound); `forged`
    /// lists the client-supplied addresses that differ from the peer; samples share their values
    /// through `shared`.
    pub fn add(
        &mut self,
        u: &UseView<'_>,
        pod_name: Option<&str>,
        node: Option<&str>,
        forged: &[IpAddr],
        shared: &mut Shared,
    ) {
        let ua = u.user_agent;
        self.fill_buckets();
        match (&self.last_agent.0, ua) {
            (Some((last, at)), Some(ua)) if **last == *ua => {
                let at = *at;
                self.uses.add_sharing(u.time, u.audit_id, None, Some(&u.request), shared);
                if let Some(at) = at {
                    self.clients.count_again(at, u.time);
                }
            }
            _ => {
                self.uses.add_sharing(u.time, u.audit_id, ua, Some(&u.request), shared);
                if let Some(ua) = ua {
                    let at = fingerprint(ua).and_then(|client| self.clients.add(client, u.time, shared));
                    self.last_agent = LastAgent(Some((shared.text(ua), at)));
                }
            }
        }
        if self.serviceaccount_uid.is_none() {
            self.serviceaccount_uid = u.serviceaccount_uid.map(Box::from);
        }
        if self.pod_name.is_none() {
            self.pod_name = pod_name.map(Box::from);
        }
        if self.node.is_none() {
            self.node = node.map(|n| shared.text(n));
        }
        if !forged.is_empty() {
            let irregular = self.irregular_mut();
            irregular.forwarded.add_sharing(u.time, u.audit_id, ua, Some(&u.request), shared);
            irregular.note_forwarded(forged.iter().copied());
        }
        if u.stale_token {
            self.irregular_mut().stale.add_sharing(u.time, u.audit_id, ua, Some(&u.request), shared);
        }
        if self.uses.count > 1 {
            self.over_time.add(u.time);
        }
    }

    /// Folds in another group of the same key (uses folded on another thread): the result is
    /// the group that folding both groups' uses one by one would have made.
    pub fn merge(&mut self, other: UseGroup) {
        let their_buckets = other.over_time().into_owned();
        self.fill_buckets();
        self.uses.merge(&other.uses);
        self.serviceaccount_uid = self.serviceaccount_uid.take().or(other.serviceaccount_uid);
        self.pod_name = self.pod_name.take().or(other.pod_name);
        self.node = self.node.take().or(other.node);
        if let Some(theirs) = other.irregular {
            let mine = self.irregular_mut();
            mine.forwarded.merge(&theirs.forwarded);
            mine.note_forwarded(theirs.forwarded_ips);
            mine.stale.merge(&theirs.stale);
        }
        self.over_time.merge(&their_buckets);
        self.clients.merge(&other.clients);
        // The clients may have moved.
        self.last_agent = LastAgent::default();
    }

    /// Puts a group's one use, held by its tally alone, into its buckets: before a second use.
    fn fill_buckets(&mut self) {
        if self.uses.count == 1 && self.over_time.counts.is_empty() {
            self.over_time.add(self.uses.first);
        }
    }

    /// When the uses happened, in a bounded number of buckets.
    pub fn over_time(&self) -> Cow<'_, TimeBuckets> {
        if self.uses.count == 1 && self.over_time.counts.is_empty() {
            let mut single = TimeBuckets::default();
            single.add(self.uses.first);
            Cow::Owned(single)
        } else {
            Cow::Borrowed(&self.over_time)
        }
    }

    /// First use.
    pub fn first(&self) -> Timestamp {
        self.uses.first
    }

    /// Last use.
    pub fn last(&self) -> Timestamp {
        self.uses.last
    }

    /// The uses whose `sourceIPs` carried client-supplied addresses other than the peer, if any.
    pub fn forwarded(&self) -> Option<&Tally> {
        self.irregular.as_ref().map(|i| &i.forwarded).filter(|t| t.count > 0)
    }

    /// The client-supplied addresses seen (a few at most).
    pub fn forwarded_ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.irregular.iter().flat_map(|i| i.forwarded_ips.iter().copied())
    }

    /// Forgets the forwarded-for claims (once they are known to be a trusted front's).
    pub fn clear_forwarded(&mut self) {
        if let Some(irregular) = &mut self.irregular {
            irregular.forwarded = Tally::default();
            irregular.forwarded_ips.clear();
        }
    }

    /// How many uses the apiserver flagged as stale.
    pub fn stale_uses(&self) -> u64 {
        self.irregular.as_ref().map_or(0, |i| i.stale.count)
    }

    fn irregular_mut(&mut self) -> &mut Irregular {
        self.irregular.get_or_insert_with(Box::default)
    }
}

/// Events counted in at most [`TimeBuckets::MAX_BUCKETS`] equal, consecutive time buckets.
///
/// Buckets start one second wide, aligned to the epoch; when an event falls too far from the
/// others, the width doubles and neighbouring buckets merge. Alignment makes each merge exact,
/// and the width only grows when the span demands it, so the buckets are always the narrowest
/// that hold every event: the same whatever order the events came in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimeBuckets {
    /// Start of the first bucket.
    start: Timestamp,
    /// Width of every bucket, in microseconds: one second times a power of two.
    width: Micros,
    /// Events per bucket, from `start` on.
    /// A vector, not a boxed slice: in a log read in time order nearly every use of a group
    /// lands past its last bucket, and growing by one bucket at a time reallocated each time.
    /// It grows by doubling, up to [`TimeBuckets::MAX_BUCKETS`], and merges in place.
    counts: Vec<u32>,
}

impl Default for TimeBuckets {
    fn default() -> Self {
        TimeBuckets { start: Timestamp(0), width: SECOND, counts: Vec::new() }
    }
}

impl TimeBuckets {
    /// The most buckets kept: enough to see a replay's shape, small enough per use group.
    pub const MAX_BUCKETS: usize = 64;

    /// Counts one event at `t`.
    pub fn add(&mut self, t: Timestamp) {
        self.add_n(t, 1);
    }

    /// Counts `n` events at `t`.
    fn add_n(&mut self, t: Timestamp, n: u32) {
        loop {
            let at = t.0.div_euclid(self.width);
            if self.counts.is_empty() {
                self.start = Timestamp(at * self.width);
                self.counts.push(n);
                return;
            }
            let first = self.start.0.div_euclid(self.width);
            let last = first + self.counts.len() as i64 - 1;
            let (lo, hi) = (first.min(at), last.max(at));
            if hi - lo < Self::MAX_BUCKETS as i64 {
                if at < first {
                    // Earlier than every bucket so far: make room in front.
                    let len = (last - at + 1) as usize;
                    self.reserve_for(len);
                    self.counts.splice(..0, std::iter::repeat_n(0, (first - at) as usize));
                    self.start = Timestamp(at * self.width);
                } else if at > last {
                    let len = (at - first + 1) as usize;
                    self.reserve_for(len);
                    self.counts.resize(len, 0);
                }
                let slot = &mut self.counts[(at - lo) as usize];
                *slot = slot.saturating_add(n);
                return;
            }
            self.coarsen();
        }
    }

    /// Adds another set of buckets. Widths are powers of two aligned to the epoch, so once this
    /// one is at least as wide, each of the other's buckets falls whole into one of these: the
    /// result is exactly what counting both sets' events one by one would give.
    pub fn merge(&mut self, other: &TimeBuckets) {
        if other.counts.is_empty() {
            return;
        }
        while self.width < other.width {
            self.coarsen();
        }
        for (from, _, n) in other.iter() {
            self.add_n(from, n);
        }
    }

    /// Doubles the width, merging each aligned pair of buckets.
    fn coarsen(&mut self) {
        let first = self.start.0.div_euclid(self.width);
        let width = self.width.saturating_mul(2);
        let new_first = first.div_euclid(2);
        // In place: bucket `i` goes to `j <= i`, and `j` grows by at most one per step, so each
        // merged bucket is written after every old bucket at or before it was read.
        let mut merged = 0;
        for i in 0..self.counts.len() {
            let n = self.counts[i];
            let j = ((first + i as i64).div_euclid(2) - new_first) as usize;
            if j == merged {
                self.counts[j] = n;
                merged += 1;
            } else {
                self.counts[j] = self.counts[j].saturating_add(n);
            }
        }
        self.counts.truncate(merged);
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        self.width = width;
        self.start = Timestamp(new_first * width);
    }

    /// Makes room for `len` buckets, doubling (up to [`TimeBuckets::MAX_BUCKETS`]) rather than
    /// growing by what is needed.
    fn reserve_for(&mut self, len: usize) {
        if len > self.counts.capacity() {
            let room = len.max(self.counts.capacity() * 2).min(Self::MAX_BUCKETS).max(len);
            self.counts.reserve_exact(room - self.counts.len());
        }
    }

    /// Width of each bucket.
    pub fn width(&self) -> Micros {
        self.width
    }

    /// The buckets that hold events: start, end (exclusive) and count, in time order.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, Timestamp, u32)> + '_ {
        let (start, width) = (self.start, self.width);
        self.counts.iter().enumerate().filter(|(_, n)| **n > 0).map(move |(i, &n)| {
            let from = start.plus(i as i64 * width);
            (from, from.plus(width), n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Os;
    use crate::time::MINUTE;

    fn buckets(times: &[i64]) -> TimeBuckets {
        let mut b = TimeBuckets::default();
        for &t in times {
            b.add(Timestamp(t));
        }
        b
    }

    #[test]
    fn a_borrowed_key_finds_the_group_of_its_owned_key_and_absorbed_groups_merge() {
        let sa = ServiceAccountRef { namespace: String::from("shop"), name: String::from("api") };
        let keys = [
            CredentialKey::PodBound { pod_uid: String::from("0b2e"), jti: Some(String::from("7f1c")) },
            CredentialKey::PodBound { pod_uid: String::from("0b2e"), jti: None },
            CredentialKey::Unbound { jti: String::from("7f1c") },
            CredentialKey::Legacy { secret: Some(String::from("api-token")) },
            CredentialKey::Legacy { secret: None },
            CredentialKey::Unknown,
        ];
        let key = |credential: &CredentialKey, client| UseKey {
            serviceaccount: sa.clone(),
            credential: credential.clone(),
            client,
        };
        let count =
            |groups: &UseGroups, k: &UseKey| groups.iter().find(|(kept, _)| *kept == k).map(|(_, g)| g.uses.count);
        let (mut mine, mut theirs) = (UseGroups::default(), UseGroups::default());
        for (i, credential) in keys.iter().enumerate() {
            for client in [None, Some(IpAddr::from([10, 0, 0, 7]))] {
                mine.entry(&key(credential, client).view()).uses.count = i as u64 + 1;
            }
            theirs.entry(&key(credential, None).view()).uses.count = 100;
            theirs.entry(&key(credential, Some(IpAddr::from([192, 0, 2, 1]))).view()).uses.count = 1000;
        }
        assert_eq!(mine.len(), keys.len() * 2, "every key is distinct");
        for (i, credential) in keys.iter().enumerate() {
            // Found again through a borrowed key, not made anew.
            assert_eq!(mine.entry(&key(credential, None).view()).uses.count, i as u64 + 1, "{credential:?}");
        }
        mine.absorb(theirs);
        assert_eq!(mine.len(), keys.len() * 3);
        for (i, credential) in keys.iter().enumerate() {
            assert_eq!(count(&mine, &key(credential, None)), Some(i as u64 + 101), "merged: {credential:?}");
            assert_eq!(count(&mine, &key(credential, Some(IpAddr::from([10, 0, 0, 7])))), Some(i as u64 + 1));
            assert_eq!(count(&mine, &key(credential, Some(IpAddr::from([192, 0, 2, 1])))), Some(1000));
        }
    }

    fn group_of(times: &[i64]) -> UseGroup {
        let mut group = UseGroup::default();
        let mut shared = Shared::default();
        for (i, &t) in times.iter().enumerate() {
            let id = format!("id-{i}");
            let u = UseView {
                time: Timestamp(t),
                audit_id: &id,
                stage: crate::observation::Stage::ResponseComplete,
                serviceaccount: ServiceAccountRef { namespace: "shop", name: "api" },
                serviceaccount_uid: None,
                credential: Credential::Unknown,
                source_ips: &[],
                user_agent: None,
                request: crate::observation::Request::default(),
                stale_token: false,
            };
            group.add(&u, None, None, &[], &mut shared);
        }
        group
    }

    fn use_at<'a>(t: i64, audit_id: &'a str, user_agent: Option<&'a str>) -> UseView<'a> {
        UseView {
            time: Timestamp(t),
            audit_id,
            stage: crate::observation::Stage::ResponseComplete,
            serviceaccount: ServiceAccountRef { namespace: "shop", name: "api" },
            serviceaccount_uid: None,
            credential: Credential::Unknown,
            source_ips: &[],
            user_agent,
            request: crate::observation::Request::default(),
            stale_token: false,
        }
    }

    #[test]
    fn repeated_user_agents_count_every_use_of_their_client() {
        let kubectl = "kubectl/v1.31.0 (darwin/arm64) kubernetes/6fc0a69";
        let app = "shop-api/1.2.0 (linux/amd64) kubernetes/$Format";
        let app_next = "shop-api/1.3.0 (linux/amd64) kubernetes/$Format";
        let agents = [
            Some(app),
            Some(app),
            Some(kubectl),
            Some(app),
            None,
            Some(app_next),
            Some(app),
            Some(""),
            Some(kubectl),
            Some(kubectl),
            Some(app),
        ];
        let mut group = UseGroup::default();
        let mut shared = Shared::default();
        for (i, ua) in agents.iter().enumerate() {
            let id = format!("id-{i}");
            group.add(&use_at(SECOND * (i as i64 + 1), &id, *ua), None, None, &[], &mut shared);
        }
        let clients: Vec<_> = group
            .clients
            .iter()
            .map(|(c, s)| (c.program.to_string(), c.os, s.first.0 / SECOND, s.last.0 / SECOND, s.count))
            .collect();
        assert_eq!(
            clients,
            [("kubectl".to_string(), Some(Os::Darwin), 3, 10, 3), ("shop-api".to_string(), Some(Os::Linux), 1, 11, 6)]
        );
        assert_eq!(group.uses.user_agent_list(), [kubectl, app, app_next]);
        // A merge may move the clients: the next use is read afresh and still counted.
        group.merge(UseGroup::default());
        group.add(&use_at(SECOND * 20, "id-20", Some(app)), None, None, &[], &mut shared);
        assert_eq!(group.clients.iter().find(|(c, _)| c.program == "shop-api").map(|(_, s)| s.count), Some(7));
    }

    #[test]
    fn a_full_sample_of_audit_ids_still_takes_an_earlier_or_tied_use() {
        let mut group = UseGroup::default();
        let mut shared = Shared::default();
        for (t, id) in [(10, "e"), (11, "d"), (12, "c"), (13, "b"), (14, "x"), (15, "y"), (14, "a"), (9, "z")] {
            group.add(&use_at(SECOND * t, id, None), None, None, &[], &mut shared);
        }
        assert_eq!(group.uses.audit_id_list(), ["z", "e", "d", "c", "b"]);
        let mut tied = UseGroup::default();
        for (t, id) in [(1, "p"), (2, "q"), (3, "r"), (4, "s"), (5, "u"), (5, "t"), (6, "v")] {
            tied.add(&use_at(SECOND * t, id, None), None, None, &[], &mut shared);
        }
        assert_eq!(tied.uses.audit_id_list(), ["p", "q", "r", "s", "t"], "a use at the last kept time, smaller ID");
    }

    #[test]
    fn a_groups_buckets_are_those_of_its_uses_however_they_were_folded() {
        let times: Vec<i64> = (0..7).map(|i| 1_773_000_000 * SECOND + (i * i * 7919 % 600) * SECOND).collect();
        for n in 0..=times.len() {
            let whole = group_of(&times[..n]);
            assert_eq!(*whole.over_time(), buckets(&times[..n]), "{n} uses folded one by one");
            for split in 0..=n {
                let (a, b) = times[..n].split_at(split);
                let mut merged = group_of(a);
                merged.merge(group_of(b));
                assert_eq!(*merged.over_time(), buckets(&times[..n]), "{n} uses split at {split}");
            }
        }
    }

    #[test]
    fn coarsening_in_place_merges_each_aligned_pair_and_growth_stops_at_the_bound() {
        let counts = |b: &TimeBuckets| b.iter().map(|(from, _, n)| (from.0 / SECOND, n)).collect::<Vec<_>>();
        // 0..=64 s: 65 one-second buckets do not fit, so pairs merge from the epoch-aligned 0.
        let even = buckets(&(0..=64).map(|s| s * SECOND).collect::<Vec<_>>());
        assert_eq!(even.width(), 2 * SECOND);
        let mut want: Vec<(i64, u32)> = (0..32).map(|i| (2 * i, 2)).collect();
        want.push((64, 1));
        assert_eq!(counts(&even), want);
        // 1..=65 s: the first bucket holds one use, its pair's other half being before it.
        let odd = buckets(&(1..=65).map(|s| s * SECOND).collect::<Vec<_>>());
        let mut want = vec![(0, 1)];
        want.extend((1..33).map(|i| (2 * i, 2)));
        assert_eq!(counts(&odd), want);
        assert!(odd.counts.capacity() <= TimeBuckets::MAX_BUCKETS, "{}", odd.counts.capacity());
        // Backwards: room is made in front.
        let back = buckets(&(0..=64).rev().map(|s| s * SECOND).collect::<Vec<_>>());
        assert_eq!(back, even);
    }

    #[test]
    fn uses_close_together_stay_one_second_apart() {
        let b = buckets(&[10 * SECOND, 10 * SECOND + 5, 12 * SECOND]);
        assert_eq!(b.width(), SECOND);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(Timestamp(10 * SECOND), Timestamp(11 * SECOND), 2), (Timestamp(12 * SECOND), Timestamp(13 * SECOND), 1),]
        );
    }

    #[test]
    fn a_long_span_widens_the_buckets_and_keeps_every_use() {
        let times: Vec<i64> = (0..1000).map(|i| 1_773_000_000 * SECOND + i * 13 * SECOND).collect();
        let b = buckets(&times);
        assert!(b.counts.len() <= TimeBuckets::MAX_BUCKETS);
        assert_eq!(b.iter().map(|(_, _, n)| u64::from(n)).sum::<u64>(), 1000);
        // 13,000 s over at most 64 buckets: 256 s is the narrowest power of two that fits.
        assert_eq!(b.width(), 256 * SECOND);
    }

    #[test]
    fn merged_buckets_equal_the_buckets_of_all_the_uses() {
        let times: Vec<i64> = (0..400).map(|i| (i * i * 7919) % (900 * MINUTE) + 3 * MINUTE).collect();
        let whole = buckets(&times);
        for split in [0, 1, 7, 133, 399, 400] {
            let (a, b) = times.split_at(split);
            let (mut left, right) = (buckets(a), buckets(b));
            left.merge(&right);
            assert_eq!(left, whole, "split at {split}");
            let (left, mut right) = (buckets(a), buckets(b));
            right.merge(&left);
            assert_eq!(right, whole, "split at {split}, merged the other way");
        }
    }

    #[test]
    fn buckets_do_not_depend_on_the_order_of_uses() {
        let mut times: Vec<i64> = (0..300).map(|i| (i * i * 7919) % (600 * MINUTE) + 5 * MINUTE).collect();
        let forward = buckets(&times);
        times.reverse();
        assert_eq!(buckets(&times), forward);
        times.sort_by_key(|t| (t % 97, *t));
        assert_eq!(buckets(&times), forward);
    }
}
