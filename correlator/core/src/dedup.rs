//! Folding the copies of one request into one, the same one whatever order they come in.
//!
//! One request leaves several audit entries with its `auditID`: its stages (`RequestReceived`,
//! `ResponseStarted`, `ResponseComplete`), and, when an aggregated apiserver served it, that
//! server's own entries, which carry the same ID with the kube-apiserver's address appended to
//! `sourceIPs`. They must count as one request, and which copy stands for it must not depend
//! on the order files are read or threads run: the copy with the fewest `sourceIPs` hops (the
//! kube-apiserver's own view of the client) and, among those, the latest stage (the one with the
//! response code) is the request, as [`Rank`] orders them.
//!
//! A copy that no other copy can beat ([`Rank::is_final`]: one hop, a final stage) is folded as
//! soon as it is seen, which is nearly every entry of a real log. Any other copy is held (the
//! engine keeps it) until a better one replaces it, a final one makes it moot, its ID leaves the
//! window, or the engine settles before a report. Copies of one request are written within the
//! request's duration, so they sit close together in any real log: a window of the most recent
//! `capacity` audit IDs (first in, first out) sees them all as long as no more than `capacity`
//! requests lie between two of them, and memory stays constant however long the log is. IDs
//! are kept as 64-bit hashes: a collision would need about four billion IDs in the window.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::changes::Journal;
use crate::hash::persistent_hash;

/// The set's keys are already hashes: hashing them again would only cost time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// How good a copy of a request is; lower is better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rank {
    /// `sourceIPs` entries beyond trusted proxies: every server that passed the request on
    /// added one.
    hops: u8,
    /// 0 for a final stage (`ResponseComplete`, `Panic`, or none said), 1 for `ResponseStarted`,
    /// 2 for `RequestReceived` (no response code yet).
    stage: u8,
}

impl Rank {
    /// The rank of a copy with `hops` untrusted `sourceIPs` entries; `complete` when it carries
    /// the response, `started` when only the response's start.
    pub fn new(hops: usize, complete: bool, started: bool) -> Rank {
        let stage = if complete {
            0
        } else if started {
            1
        } else {
            2
        };
        Rank { hops: u8::try_from(hops).unwrap_or(u8::MAX), stage }
    }

    /// `sourceIPs` entries beyond trusted proxies.
    pub fn hops(self) -> u8 {
        self.hops
    }

    /// No other copy of the request can be better: one (or no) hop, a final stage.
    pub fn is_final(self) -> bool {
        self.hops <= 1 && self.stage == 0
    }
}

/// What to do with a copy of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Fold it now, dropping any copy held for its ID.
    Fold,
    /// Hold it in place of any copy held for its ID: a better copy may still come.
    Hold,
    /// As good as the copy held for its ID: the caller keeps whichever comes first in its own
    /// canonical order.
    Tie,
    /// Another copy of a request already counted, or worse than the one held.
    Duplicate,
}

/// The outcome of [`RecentIds::sight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// What to do with the copy.
    pub sighting: Sighting,
    /// The key under which a held copy of this ID is kept.
    pub key: u64,
    /// An ID that left the window with a copy still held: fold that copy now.
    pub evicted: Option<u64>,
}

/// The state of one ID in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Slot {
    /// The best copy's rank.
    rank: Rank,
    /// A copy is held (not yet folded).
    open: bool,
    /// Its place in the order IDs came in (see [`RecentIds::segment`]).
    #[serde(skip)]
    seq: u64,
}

/// The most recent audit IDs seen. Persisted as the window's IDs in order, with their slots.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(from = "Window", into = "Window")]
pub struct RecentIds {
    slots: HashMap<u64, Slot, BuildHasherDefault<PreHashed>>,
    order: VecDeque<u64>,
    capacity: usize,
    /// How many IDs ever came in: the last one's place in the order is `pushed - 1`.
    pushed: u64,
    /// Segments whose IDs changed since the changes were last taken (when tracking).
    changed: Journal<u64>,
}

/// How many IDs one changelog entry of the window holds: a commit rewrites the segment being
/// filled (tens of kilobytes at most), not the window.
pub const SEGMENT: u64 = 1024;

/// A place in the window no ID fills (one restored from a changelog that lacked its segment).
const GAP: u64 = 0;

/// One segment of the window as a changelog entry holds it: its IDs still in the window, in
/// order from the place of the first, each with its best copy's rank and whether a copy is held
/// (`[hops, stage, open]`).
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    first: u64,
    ids: Vec<u64>,
    slots: Vec<(u8, u8, bool)>,
}

/// The window's size and progress, persisted beside its segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowMeta {
    capacity: usize,
    pushed: u64,
}

/// The persisted form of [`RecentIds`]. `slots` is absent in snapshots written before copies
/// were ranked: their IDs were all folded.
#[derive(serde::Serialize, serde::Deserialize)]
struct Window {
    capacity: usize,
    ids: Vec<u64>,
    #[serde(default)]
    slots: Vec<Slot>,
}

impl From<Window> for RecentIds {
    fn from(w: Window) -> Self {
        let mut ids = RecentIds::new(w.capacity);
        let folded = Slot { rank: Rank::default(), open: false, seq: 0 };
        for (i, id) in w.ids.into_iter().enumerate() {
            let slot = Slot { seq: ids.pushed, ..w.slots.get(i).copied().unwrap_or(folded) };
            if ids.slots.insert(id, slot).is_none() {
                ids.order.push_back(id);
                ids.pushed += 1;
            }
        }
        ids
    }
}

impl From<RecentIds> for Window {
    fn from(r: RecentIds) -> Self {
        let slots = r.order.iter().filter_map(|id| r.slots.get(id).copied()).collect();
        Window { capacity: r.capacity, ids: r.order.into_iter().collect(), slots }
    }
}

impl Clone for RecentIds {
    fn clone(&self) -> Self {
        RecentIds {
            slots: self.slots.clone(),
            order: self.order.clone(),
            capacity: self.capacity,
            pushed: self.pushed,
            changed: self.changed.clone(),
        }
    }
}

impl RecentIds {
    /// A window of `capacity` IDs.
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            slots: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            pushed: 0,
            changed: Journal::default(),
        }
    }

    /// Records a copy of `audit_id` of rank `rank` under `kind` (IDs of different kinds never
    /// meet) and says what to do with it. Copies without an ID are always folded.
    pub fn sight(&mut self, kind: u8, audit_id: &str, rank: Rank) -> Seen {
        if audit_id.is_empty() {
            return Seen { sighting: Sighting::Fold, key: 0, evicted: None };
        }
        // A fixed seed: the window is persisted as these hashes.
        let key = persistent_hash((kind, audit_id));
        let sighting = match self.slots.get_mut(&key) {
            None => {
                let seq = self.pushed;
                self.slots.insert(key, Slot { rank, open: !rank.is_final(), seq });
                self.order.push_back(key);
                self.pushed += 1;
                self.changed.note(|| seq / SEGMENT);
                if rank.is_final() {
                    Sighting::Fold
                } else {
                    Sighting::Hold
                }
            }
            Some(slot) if !slot.open || rank > slot.rank => Sighting::Duplicate,
            Some(slot) if rank == slot.rank => Sighting::Tie,
            Some(slot) => {
                slot.rank = rank;
                slot.open = !rank.is_final();
                self.changed.note(|| slot.seq / SEGMENT);
                if slot.open {
                    Sighting::Hold
                } else {
                    Sighting::Fold
                }
            }
        };
        let mut evicted = None;
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                let slot = self.slots.remove(&old);
                // A segment is written again when its last ID leaves (as a deletion); IDs that
                // leave before that are dropped at restore by their place (`from_segments`).
                if let Some(s) = slot.filter(|s| (s.seq + 1) % SEGMENT == 0) {
                    self.changed.note(|| s.seq / SEGMENT);
                }
                evicted = slot.filter(|s| s.open).map(|_| old);
            }
        }
        Seen { sighting, key, evicted }
    }

    /// The copy held under `key` was folded: later copies of its ID are duplicates.
    pub fn close(&mut self, key: u64) {
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.open = false;
            self.changed.note(|| slot.seq / SEGMENT);
        }
    }

    /// Starts noting which segments change, for [`RecentIds::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed.start();
    }

    /// The window's size and progress.
    pub fn meta(&self) -> WindowMeta {
        WindowMeta { capacity: self.capacity, pushed: self.pushed }
    }

    /// The segments changed since the last call, by number, with what they hold now (`None`:
    /// none of their IDs is left in the window).
    pub fn take_changes(&mut self) -> Vec<(u64, Option<Segment>)> {
        self.changed.take().into_iter().map(|n| (n, self.segment(n))).collect()
    }

    /// The IDs of segment `n` still in the window.
    fn segment(&self, n: u64) -> Option<Segment> {
        // `order` holds the last `order.len()` IDs that came, in order, without gaps.
        let front = self.pushed - self.order.len() as u64;
        let (start, end) = ((n * SEGMENT).max(front), ((n + 1) * SEGMENT).min(self.pushed));
        if start >= end {
            return None;
        }
        let mut segment = Segment { first: start, ..Segment::default() };
        for i in start..end {
            let id = usize::try_from(i - front).ok().and_then(|at| self.order.get(at)).copied().unwrap_or(GAP);
            let slot = self.slots.get(&id).map_or((0, 0, false), |s| (s.rank.hops, s.rank.stage, s.open));
            segment.ids.push(id);
            segment.slots.push(slot);
        }
        Some(segment)
    }

    /// A window rebuilt from its size and progress and the segments a changelog held (any
    /// order); IDs that had left the window are left out.
    pub fn from_segments(meta: WindowMeta, segments: impl IntoIterator<Item = (u64, Segment)>) -> RecentIds {
        let mut ids = RecentIds::new(meta.capacity);
        let front = meta.pushed.saturating_sub(ids.capacity as u64);
        let mut placed: Vec<(u64, u64, Slot)> = Vec::new();
        for (_, segment) in segments {
            let ids_slots = segment.ids.into_iter().zip(segment.slots);
            for (seq, (id, (hops, stage, open))) in (segment.first..).zip(ids_slots) {
                if seq >= front && seq < meta.pushed && id != GAP {
                    placed.push((seq, id, Slot { rank: Rank { hops, stage }, open, seq }));
                }
            }
        }
        placed.sort_unstable_by_key(|(seq, ..)| *seq);
        ids.pushed = placed.first().map_or(meta.pushed, |(seq, ..)| *seq);
        let places = placed.into_iter().map(|(seq, id, slot)| (seq, Some((id, slot))));
        // Places no segment filled (none in a whole log) stay in the order as gaps, so every ID
        // keeps its place and the last one's is `pushed - 1`, as before.
        for (seq, placed) in places.chain([(meta.pushed, None)]) {
            while ids.pushed < seq {
                ids.order.push_back(GAP);
                ids.pushed += 1;
            }
            if let Some((id, slot)) = placed {
                ids.slots.insert(id, slot);
                ids.order.push_back(id);
                ids.pushed += 1;
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETE: Rank = Rank { hops: 1, stage: 0 };
    const RECEIVED: Rank = Rank { hops: 1, stage: 2 };
    const FORWARDED: Rank = Rank { hops: 2, stage: 0 };

    fn sighting(ids: &mut RecentIds, kind: u8, id: &str, rank: Rank) -> Sighting {
        ids.sight(kind, id, rank).sighting
    }

    #[test]
    fn folds_stages_within_the_window_and_forgets_beyond_it() {
        let mut ids = RecentIds::new(2);
        assert_eq!(sighting(&mut ids, 0, "a", COMPLETE), Sighting::Fold);
        assert_eq!(sighting(&mut ids, 0, "a", COMPLETE), Sighting::Duplicate);
        assert_eq!(sighting(&mut ids, 1, "a", COMPLETE), Sighting::Fold, "another kind of request with the same ID");
        assert_eq!(sighting(&mut ids, 0, "c", COMPLETE), Sighting::Fold);
        assert_eq!(sighting(&mut ids, 0, "a", COMPLETE), Sighting::Fold, "a fell out of a window of two");
        assert_eq!(sighting(&mut ids, 0, "", COMPLETE), Sighting::Fold, "events without an ID are never folded");
        assert_eq!(sighting(&mut ids, 0, "", COMPLETE), Sighting::Fold);
    }

    #[test]
    fn the_best_copy_wins_whichever_comes_first() {
        // RequestReceived first: held, then replaced by the final stage.
        let mut ids = RecentIds::new(8);
        assert_eq!(sighting(&mut ids, 0, "a", RECEIVED), Sighting::Hold);
        assert_eq!(sighting(&mut ids, 0, "a", COMPLETE), Sighting::Fold);
        assert_eq!(sighting(&mut ids, 0, "a", RECEIVED), Sighting::Duplicate);
        // An aggregated apiserver's copy (one hop more) first: held, then beaten.
        assert_eq!(sighting(&mut ids, 0, "b", FORWARDED), Sighting::Hold);
        assert_eq!(sighting(&mut ids, 0, "b", RECEIVED), Sighting::Hold, "fewer hops beat a later stage");
        assert_eq!(sighting(&mut ids, 0, "b", FORWARDED), Sighting::Duplicate);
        assert_eq!(sighting(&mut ids, 0, "b", RECEIVED), Sighting::Tie);
        // The other way round: the final copy is folded, the rest are duplicates.
        assert_eq!(sighting(&mut ids, 0, "c", COMPLETE), Sighting::Fold);
        assert_eq!(sighting(&mut ids, 0, "c", FORWARDED), Sighting::Duplicate);
    }

    #[test]
    fn a_held_copy_leaving_the_window_is_handed_back_and_a_closed_one_is_not() {
        let mut ids = RecentIds::new(1);
        let held = ids.sight(0, "a", FORWARDED);
        assert_eq!(held.sighting, Sighting::Hold);
        let next = ids.sight(0, "b", FORWARDED);
        assert_eq!(next.evicted, Some(held.key));
        ids.close(next.key);
        assert_eq!(ids.sight(0, "c", COMPLETE).evicted, None, "b was closed (folded at a settle)");
    }

    #[test]
    fn a_restored_window_keeps_held_ids_held_and_reads_old_snapshots() {
        let mut ids = RecentIds::new(4);
        ids.sight(0, "a", FORWARDED);
        ids.sight(0, "b", COMPLETE);
        let restored: RecentIds = serde_json::from_slice(&serde_json::to_vec(&ids).unwrap()).unwrap();
        let mut restored = restored;
        assert_eq!(restored.sight(0, "a", COMPLETE).sighting, Sighting::Fold);
        assert_eq!(restored.sight(0, "b", COMPLETE).sighting, Sighting::Duplicate);
        let old: RecentIds =
            serde_json::from_str(&format!("{{\"capacity\":4,\"ids\":[{}]}}", persistent_hash((0u8, "x")))).unwrap();
        let mut old = old;
        assert_eq!(old.sight(0, "x", COMPLETE).sighting, Sighting::Duplicate, "IDs of old snapshots were folded");
    }
}
