//! The engine's state as keyed entries, and what changed in them: what a per-key changelog
//! holds ([`crate::Engine::changes`], [`crate::Engine::from_entries`]).
//!
//! The streaming correlator keeps each partition's state in a compacted topic, one record per
//! entry (a use group, a pod, a node, an attested credential, a slice of the window of audit
//! IDs, ...), so that a commit writes only the entries that changed since the last one plus a
//! deletion for each entry that left, and a restart reads only the live entries. Two ways of
//! knowing what changed, chosen by how many entries a section holds:
//!
//! * sections that grow with credentials and pods (use groups, TokenRequests, attestations and
//!   their retired digests, pods, the window) keep a [`Journal`] of the keys their folds and
//!   expiry touched: a commit costs what changed, not what is held;
//! * the rest (nodes, agents' watermarks, service accounts, token Secrets, the small aggregates,
//!   the findings sent) are serialized whole each commit into [`Written`], which compares digests
//!   with what was last written and passes on only the differences.
//!
//! The values' bytes, and the older versions' JSON still read, are [`value`]'s.

use std::collections::{BTreeSet, HashMap};

use crate::hash::persistent_hash;

pub mod value;

/// One record of the changelog: an entry's key, and its bytes or `None` when it left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `section` TAB `key` (see [`entry_key`]).
    pub key: String,
    /// The entry's value ([`value`]); `None`: a tombstone.
    pub value: Option<Vec<u8>>,
}

/// The key of an entry of `section` (a fixed name without tabs).
pub fn entry_key(section: &str, key: &str) -> String {
    format!("{section}\t{key}")
}

/// Splits an entry's key into its section and key.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('\t')
}

/// The keys of one keyed collection changed or removed since they were last taken. Off until
/// [`Journal::start`], so the engines of `analyze`, which never persist, pay nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal<K> {
    keys: Option<BTreeSet<K>>,
}

impl<K> Default for Journal<K> {
    fn default() -> Self {
        Journal { keys: None }
    }
}

impl<K: Ord> Journal<K> {
    /// Starts noting keys.
    pub fn start(&mut self) {
        self.keys.get_or_insert_with(BTreeSet::new);
    }

    /// Whether keys are being noted.
    pub fn on(&self) -> bool {
        self.keys.is_some()
    }

    /// Notes a key (built only when tracking).
    pub fn note(&mut self, key: impl FnOnce() -> K) {
        if let Some(keys) = &mut self.keys {
            keys.insert(key());
        }
    }

    /// The keys noted since the last call.
    pub fn take(&mut self) -> BTreeSet<K> {
        self.keys.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The keys noted since the last call, each with what `now` finds under it (`None`: gone).
    pub fn take_with<'a, V: ?Sized>(&mut self, now: impl Fn(&K) -> Option<&'a V>) -> Vec<(K, Option<&'a V>)> {
        self.take()
            .into_iter()
            .map(|k| {
                let v = now(&k);
                (k, v)
            })
            .collect()
    }
}

/// What was last written of the sections written whole, as digests, so a commit passes on only
/// the entries that differ and tombstones for those gone.
#[derive(Debug, Default)]
pub struct Written {
    sections: HashMap<&'static str, HashMap<String, u64>>,
}

impl Written {
    /// Compares a section's entries, all of them, with what was last written of it, and adds
    /// the differences to `changes`.
    pub fn diff(
        &mut self,
        section: &'static str,
        entries: impl IntoIterator<Item = (String, Vec<u8>)>,
        changes: &mut Vec<Change>,
    ) {
        let before = self.sections.remove(section).unwrap_or_default();
        let mut now = HashMap::with_capacity(before.len());
        for (key, bytes) in entries {
            let digest = persistent_hash(&bytes);
            if before.get(&key) != Some(&digest) {
                changes.push(Change { key: entry_key(section, &key), value: Some(bytes) });
            }
            now.insert(key, digest);
        }
        for key in before.into_keys().filter(|k| !now.contains_key(k)) {
            changes.push(Change { key: entry_key(section, &key), value: None });
        }
        self.sections.insert(section, now);
    }
}

/// Why a changelog's entries could not be made into state.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// An entry's key names no section this version knows.
    #[error("entry {key:?}: unknown section (written by a newer version?)")]
    UnknownSection {
        /// The entry's key.
        key: String,
    },
    /// An entry's bytes (or key) are not what its section holds.
    #[error("entry {key:?}: {source}")]
    Malformed {
        /// The entry's key.
        key: String,
        /// What was wrong.
        #[source]
        source: value::ValueError,
    },
}

impl EntryError {
    /// The error for the entry keyed `key`, from what was wrong with it (its value, or a key
    /// that is JSON).
    pub fn malformed<E: Into<value::ValueError>>(key: &str) -> impl FnOnce(E) -> EntryError + '_ {
        move |source| EntryError::Malformed { key: key.to_string(), source: source.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(changes: &[Change]) -> Vec<(&str, bool)> {
        changes.iter().map(|c| (c.key.as_str(), c.value.is_some())).collect()
    }

    #[test]
    fn written_passes_on_only_what_differs_and_tombstones_what_left() {
        let mut written = Written::default();
        let mut changes = Vec::new();
        written.diff("pod", [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())], &mut changes);
        assert_eq!(keys(&changes), [("pod\ta", true), ("pod\tb", true)]);
        changes.clear();
        written.diff("pod", [("a".into(), b"1".to_vec()), ("c".into(), b"3".to_vec())], &mut changes);
        assert_eq!(keys(&changes), [("pod\tc", true), ("pod\tb", false)]);
        changes.clear();
        written.diff("pod", [("a".into(), b"1".to_vec()), ("c".into(), b"3".to_vec())], &mut changes);
        assert!(changes.is_empty(), "nothing changed: nothing written");
        written.diff("node", [("a".into(), b"1".to_vec())], &mut changes);
        assert_eq!(keys(&changes), [("node\ta", true)], "sections are apart");
    }

    #[test]
    fn a_journal_notes_nothing_until_started_and_hands_each_key_once() {
        let mut journal = Journal::<String>::default();
        journal.note(|| unreachable!("keys are not built while off"));
        assert!(journal.take().is_empty());
        journal.start();
        journal.note(|| "a".to_string());
        journal.note(|| "a".to_string());
        assert_eq!(journal.take().into_iter().collect::<Vec<_>>(), ["a"]);
        assert!(journal.take().is_empty());
    }
}
