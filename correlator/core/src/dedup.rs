//! Folding the stages of one request (`RequestReceived`, `ResponseStarted`, `ResponseComplete`
//! share an `auditID`) into one use, in bounded memory.
//!
//! The stages of a request are written within its duration, so they sit close together in any
//! real log. A set of the most recent `capacity` audit IDs (first in, first out) folds them
//! exactly as long as no more than `capacity` requests lie between two stages of one request,
//! and memory stays constant however long the log is. IDs are kept as 64-bit hashes: a
//! collision would need about four billion IDs in the window.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

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

/// The most recent audit IDs seen. Persisted as the window's IDs in order; the set is rebuilt.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(from = "Window", into = "Window")]
pub struct RecentIds {
    set: HashSet<u64, BuildHasherDefault<PreHashed>>,
    order: VecDeque<u64>,
    capacity: usize,
}

/// The persisted form of [`RecentIds`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Window {
    capacity: usize,
    ids: Vec<u64>,
}

impl From<Window> for RecentIds {
    fn from(w: Window) -> Self {
        let mut ids = RecentIds::new(w.capacity);
        for id in w.ids {
            if ids.set.insert(id) {
                ids.order.push_back(id);
            }
        }
        ids
    }
}

impl From<RecentIds> for Window {
    fn from(r: RecentIds) -> Self {
        Window { capacity: r.capacity, ids: r.order.into_iter().collect() }
    }
}

impl Clone for RecentIds {
    fn clone(&self) -> Self {
        RecentIds { set: self.set.clone(), order: self.order.clone(), capacity: self.capacity }
    }
}

impl RecentIds {
    /// A window of `capacity` IDs.
    pub fn new(capacity: usize) -> Self {
        RecentIds { set: HashSet::default(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Records `audit_id` under `kind` (IDs of different kinds never meet); returns `false` when
    /// it was already in the window (a duplicate stage).
    pub fn first_sighting(&mut self, kind: u8, audit_id: &str) -> bool {
        if audit_id.is_empty() {
            return true;
        }
        // A fixed seed: the window is persisted as these hashes.
        let key = persistent_hash((kind, audit_id));
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_stages_within_the_window_and_forgets_beyond_it() {
        let mut ids = RecentIds::new(2);
        assert!(ids.first_sighting(0, "a"));
        assert!(!ids.first_sighting(0, "a"));
        assert!(ids.first_sighting(1, "a"), "another kind of request with the same ID");
        assert!(ids.first_sighting(0, "c"));
        assert!(ids.first_sighting(0, "a"), "a fell out of a window of two");
        assert!(ids.first_sighting(0, ""), "events without an ID are never folded");
        assert!(ids.first_sighting(0, ""));
    }
}
