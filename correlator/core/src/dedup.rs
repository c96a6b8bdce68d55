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

use std::collections::hash_map::Entry;
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

/// The state of one ID in the window, as snapshots write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Slot {
    /// The best copy's rank.
    rank: Rank,
    /// A copy is held (not yet folded).
    open: bool,
}

/// One place in the window's order: the ID that came there and its state, or a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    id: u64,
    /// `None`: a gap (see [`GAP`]).
    slot: Option<Slot>,
}

/// The most recent audit IDs seen. Persisted as the window's IDs in order, with their slots.
///
/// Each ID's state lives in its place in `order`, and `places` says where each ID came. An ID
/// leaving the window is not looked up again: its entry in `places` stays behind, stale (its
/// place is before the window's front, so it reads as absent), until a sweep drops the stale
/// entries once they are as many as half the window. Folding a use thus touches the table once,
/// for its own ID, not a second time for the ID it pushes out.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(from = "Window", into = "Window")]
pub struct RecentIds {
    /// Where each ID came in the order (`pushed` at its arrival); stale for IDs that left.
    places: HashMap<u64, u64, BuildHasherDefault<PreHashed>>,
    order: VecDeque<Place>,
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
        let folded = Slot { rank: Rank::default(), open: false };
        for (i, id) in w.ids.into_iter().enumerate() {
            let slot = w.slots.get(i).copied().unwrap_or(folded);
            match ids.place_of(id) {
                // Listed twice: the later state stands, in the earlier place.
                Some(at) => ids.order[at].slot = Some(slot),
                None => ids.push(Place { id, slot: Some(slot) }),
            }
        }
        ids
    }
}

impl From<RecentIds> for Window {
    fn from(r: RecentIds) -> Self {
        // Gaps have no slot: only the filled places' are listed.
        let slots = r.order.iter().filter_map(|p| p.slot).collect();
        Window { capacity: r.capacity, ids: r.order.into_iter().map(|p| p.id).collect(), slots }
    }
}

impl Clone for RecentIds {
    fn clone(&self) -> Self {
        RecentIds {
            places: self.places.clone(),
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
            places: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            pushed: 0,
            changed: Journal::default(),
        }
    }

    /// The place of the window's first ID.
    fn front(&self) -> u64 {
        self.pushed - self.order.len() as u64
    }

    /// Where `id` sits in `order`, when it is in the window.
    fn place_of(&self, id: u64) -> Option<usize> {
        let seq = *self.places.get(&id)?;
        let at = usize::try_from(seq.checked_sub(self.front())?).ok()?;
        self.order.get(at).filter(|p| p.id == id && p.slot.is_some()).map(|_| at)
    }

    /// Appends a place to the order (and an ID's to `places`).
    fn push(&mut self, place: Place) {
        if place.slot.is_some() {
            self.places.insert(place.id, self.pushed);
        }
        self.order.push_back(place);
        self.pushed += 1;
    }

    /// Drops the entries of `places` left by IDs that left the window, once they are as many as
    /// half of it: memory stays bounded by the window, and each sweep is paid for by the half
    /// window of IDs that came since the last.
    fn sweep(&mut self) {
        if self.places.len() > self.capacity + self.capacity / 2 + 1 {
            let front = self.front();
            self.places.retain(|_, seq| *seq >= front);
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
        let front = self.front();
        let (seq, fresh) = match self.places.entry(key) {
            Entry::Occupied(mut e) if *e.get() < front => {
                // Stale: the ID left the window, and comes again at the back.
                e.insert(self.pushed);
                (self.pushed, true)
            }
            Entry::Occupied(e) => (*e.get(), false),
            Entry::Vacant(e) => {
                e.insert(self.pushed);
                (self.pushed, true)
            }
        };
        let sighting = if fresh {
            self.order.push_back(Place { id: key, slot: Some(Slot { rank, open: !rank.is_final() }) });
            self.pushed += 1;
            self.changed.note(|| seq / SEGMENT);
            if rank.is_final() {
                Sighting::Fold
            } else {
                Sighting::Hold
            }
        } else {
            // In the window: its place holds its state.
            let place = usize::try_from(seq - front).ok().and_then(|at| self.order.get_mut(at));
            match place.and_then(|p| p.slot.as_mut()) {
                None => Sighting::Duplicate,
                Some(slot) if !slot.open || rank > slot.rank => Sighting::Duplicate,
                Some(slot) if rank == slot.rank => Sighting::Tie,
                Some(slot) => {
                    slot.rank = rank;
                    slot.open = !rank.is_final();
                    let open = slot.open;
                    self.changed.note(|| seq / SEGMENT);
                    if open {
                        Sighting::Hold
                    } else {
                        Sighting::Fold
                    }
                }
            }
        };
        let mut evicted = None;
        if self.order.len() > self.capacity {
            let seq = self.front();
            if let Some(old) = self.order.pop_front() {
                // A segment is written again when its last ID leaves (as a deletion); IDs that
                // leave before that are dropped at restore by their place (`from_segments`).
                if let Some(slot) = old.slot {
                    if (seq + 1) % SEGMENT == 0 {
                        self.changed.note(|| seq / SEGMENT);
                    }
                    evicted = slot.open.then_some(old.id);
                }
            }
            self.sweep();
        }
        Seen { sighting, key, evicted }
    }

    /// The copy held under `key` was folded: later copies of its ID are duplicates.
    pub fn close(&mut self, key: u64) {
        if let Some(at) = self.place_of(key) {
            if let Some(slot) = &mut self.order[at].slot {
                slot.open = false;
            }
            let seq = self.front() + at as u64;
            self.changed.note(|| seq / SEGMENT);
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
        // `order` holds the last `order.len()` places, in order, without gaps.
        let front = self.front();
        let (start, end) = ((n * SEGMENT).max(front), ((n + 1) * SEGMENT).min(self.pushed));
        if start >= end {
            return None;
        }
        let mut segment = Segment { first: start, ..Segment::default() };
        for i in start..end {
            let place = usize::try_from(i - front).ok().and_then(|at| self.order.get(at));
            let id = place.map_or(GAP, |p| p.id);
            let slot = place.and_then(|p| p.slot).map_or((0, 0, false), |s| (s.rank.hops, s.rank.stage, s.open));
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
                    placed.push((seq, id, Slot { rank: Rank { hops, stage }, open }));
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
                ids.push(Place { id: GAP, slot: None });
            }
            if let Some((id, slot)) = placed {
                ids.push(Place { id, slot: Some(slot) });
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
    fn ids_that_left_the_window_come_back_new_and_what_they_left_behind_is_swept() {
        let mut ids = RecentIds::new(4);
        for round in 0..3 {
            for i in 0..40 {
                let id = format!("id-{i}");
                assert_eq!(sighting(&mut ids, 0, &id, COMPLETE), Sighting::Fold, "round {round}: {id} had left");
                assert_eq!(sighting(&mut ids, 0, &id, RECEIVED), Sighting::Duplicate, "round {round}: {id} is in");
                assert!(ids.places.len() <= 4 + 4 / 2 + 1, "stale places are swept: {}", ids.places.len());
            }
        }
        assert_eq!(ids.order.len(), 4);
        // A held copy pushed out by IDs that came back is still handed back.
        let held = ids.sight(0, "id-0", FORWARDED);
        assert_eq!(held.sighting, Sighting::Hold);
        let evicted: Vec<_> = (36..40).filter_map(|i| ids.sight(0, &format!("id-{i}"), COMPLETE).evicted).collect();
        assert_eq!(evicted, [held.key]);
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
