//! The hashers of the engine's maps and sets.
//!
//! Every token use is hashed a few times (its audit ID, its use group, its bound pod), so the
//! hasher is on the hot path of `analyze`: foldhash instead of SipHash. Maps keyed by evidence
//! are seeded at random per process, so crafted keys cannot be aimed at one bucket; hashes that
//! are persisted (the recent audit IDs of a snapshot) use a fixed seed, so a restored window
//! still recognises the IDs it holds.

use std::hash::{BuildHasher, Hash};

/// A hash map keyed by values from the evidence.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set of values from the evidence.
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Fixed, so hashes survive a snapshot and a restart: never change it.
const PERSISTED_SEED: u64 = 0x746f_6b65_6e74_7261; // "tokentra"

/// A hash that is the same in every process.
pub fn persistent_hash(value: impl Hash) -> u64 {
    foldhash::fast::FixedState::with_seed(PERSISTED_SEED).hash_one(value)
}
