//! Foreign reads of token files, as node agents saw them: which process that may not read a
//! pod's token file opened it (another pod's container, a host process that is not the kubelet
//! or the runtime), folded by credential and reader, for `token-file-read-by-other-pod`,
//! `token-file-read-on-host` and `token-harvested-then-used`.

use std::collections::BTreeMap;

use crate::observation::{ServiceAccountRef, TokenFileRead, TokenReader};
use crate::time::Timestamp;
use crate::usage::CredentialKey;

/// Most (credential, reader) pairs kept: an agent reports each pair at most once a minute, so
/// this bounds a node flooding reads, not an honest cluster.
const MAX_READ_GROUPS: usize = 100_000;

/// Who read, as a key: the reader pod's container, else the host executable and cgroup (pids
/// change; the program does not).
fn reader_key(r: &TokenReader) -> String {
    match &r.pod_uid {
        Some(uid) => format!("pod:{uid}/{}", r.container.as_deref().unwrap_or("")),
        None => format!("host:{}:{}", r.executable.as_deref().unwrap_or(""), r.cgroup),
    }
}

/// The reads of one credential by one reader.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadGroup {
    /// The token's service account.
    pub serviceaccount: ServiceAccountRef,
    /// The credential read.
    pub credential: CredentialKey,
    /// The node whose agent saw the reads.
    pub node: String,
    /// The pod whose token file it was, and its namespace and name when known.
    pub token_pod_uid: String,
    /// `(namespace, name)` of that pod, when the agent knew it.
    pub token_pod: Option<(String, String)>,
    /// The reader, as first seen (a later read by the same container may have another pid).
    pub reader: TokenReader,
    /// Reads reported (each agent reports a reader's reads of one file at most once per its
    /// interval).
    pub count: u64,
    /// First read.
    pub first: Timestamp,
    /// Latest read.
    pub last: Timestamp,
}

/// A read group's key: (service account, credential, reader).
pub(crate) type ReadKey = (ServiceAccountRef, CredentialKey, String);

/// Foreign reads, by (service account, credential, reader).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenReads {
    #[serde(with = "crate::pairs")]
    groups: BTreeMap<ReadKey, ReadGroup>,
    /// Reads dropped beyond [`MAX_READ_GROUPS`].
    dropped: u64,
}

impl TokenReads {
    /// Folds one read.
    pub fn add(&mut self, r: &TokenFileRead) {
        let credential = CredentialKey::of(&r.credential);
        let key = (r.serviceaccount.clone(), credential.clone(), reader_key(&r.reader));
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_READ_GROUPS {
            self.dropped += 1;
            return;
        }
        let group = self.groups.entry(key).or_insert_with(|| ReadGroup {
            serviceaccount: r.serviceaccount.clone(),
            credential,
            node: r.node.clone(),
            token_pod_uid: r.token_pod_uid.clone(),
            token_pod: r.token_pod.clone(),
            reader: r.reader.clone(),
            count: 0,
            first: r.time,
            last: r.time,
        });
        group.count += 1;
        // Any order: the earliest read's reader is the one shown.
        if r.time < group.first {
            group.reader = r.reader.clone();
        }
        group.first = group.first.min(r.time);
        group.last = group.last.max(r.time);
        if group.token_pod.is_none() {
            group.token_pod = r.token_pod.clone();
        }
    }

    /// Every read group, in key order.
    pub fn groups(&self) -> impl Iterator<Item = &ReadGroup> {
        self.groups.values()
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.dropped == 0
    }

    /// Reads dropped beyond the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every read group with its key, for the changelog.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&ReadKey, &ReadGroup)> {
        self.groups.iter()
    }

    /// Puts back a group read from the changelog.
    pub(crate) fn insert_restored(&mut self, key: ReadKey, group: ReadGroup) {
        self.groups.insert(key, group);
    }

    /// Puts back the count of reads dropped, read from the changelog.
    pub(crate) fn restore_dropped(&mut self, dropped: u64) {
        self.dropped = dropped;
    }

    /// Forgets the groups whose latest read `stale` says is too old; returns how many.
    pub fn retain_recent(&mut self, mut stale: impl FnMut(Timestamp) -> bool) -> usize {
        let before = self.groups.len();
        self.groups.retain(|_, g| !stale(g.last));
        before - self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Credential;

    fn read(t: i64, pid: u32, container: &str) -> TokenFileRead {
        TokenFileRead {
            time: Timestamp(t),
            node: "n1".into(),
            token_pod_uid: "u1".into(),
            token_pod: None,
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            credential: Credential::PodBound {
                jti: Some("j1".into()),
                pod_name: "api-1".into(),
                pod_uid: "u1".into(),
                node: None,
            },
            reader: TokenReader {
                pid,
                pod_uid: Some("u-thief".into()),
                container: Some(container.into()),
                ..TokenReader::default()
            },
        }
    }

    #[test]
    fn reads_fold_by_credential_and_reader_in_any_order() {
        let mut a = TokenReads::default();
        for r in [read(30, 3, "c1"), read(10, 1, "c1"), read(20, 2, "c2")] {
            a.add(&r);
        }
        let groups: Vec<_> = a.groups().collect();
        assert_eq!(groups.len(), 2);
        let c1 = groups.iter().find(|g| g.reader.container.as_deref() == Some("c1")).unwrap();
        assert_eq!((c1.count, c1.first, c1.last, c1.reader.pid), (2, Timestamp(10), Timestamp(30), 1));
        assert_eq!(a.retain_recent(|last| last < Timestamp(25)), 1);
        assert_eq!(a.groups().count(), 1);
    }
}
