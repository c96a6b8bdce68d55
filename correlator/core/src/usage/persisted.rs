//! A use group as the changelog's format 1 writes it ([`crate::changes::value`]): what a used
//! credential costs the stream to hold, so shaped for size. Its tallies as
//! [`PersistedTally`]; the ServiceAccount's UID as an [`Id`]; the timeline's buckets only where
//! they count (a group used three times in half an hour has 59 buckets, 56 of them empty), and
//! not at all while the group has one use.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Clients, Irregular, LastAgent, TimeBuckets, UseGroup, CLIENTS_KEPT};
use crate::changes::value::Id;
use crate::tally::PersistedTally;
use crate::time::{Micros, Timestamp};

/// [`UseGroup`] in format 1.
#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedGroup<'a> {
    uses: PersistedTally<'a>,
    serviceaccount_uid: Option<Id<'a>>,
    pod_name: Option<Cow<'a, str>>,
    node: Option<Arc<str>>,
    irregular: Option<PersistedIrregular<'a>>,
    /// `None`: no buckets yet (the group's one use is its tally's).
    over_time: Option<Buckets>,
    clients: Cow<'a, Clients<CLIENTS_KEPT>>,
}

#[derive(Serialize, Deserialize)]
struct PersistedIrregular<'a> {
    forwarded: PersistedTally<'a>,
    forwarded_ips: Cow<'a, BTreeSet<IpAddr>>,
    stale: PersistedTally<'a>,
}

/// [`TimeBuckets`] as the counts that are not zero, each after the one before.
#[derive(Serialize, Deserialize)]
struct Buckets {
    /// The first bucket's start after the group's first use (wrapping: it is at or before it).
    start: i64,
    width: Micros,
    /// How many buckets, empty ones included.
    len: u32,
    /// Each count that is not zero, with how many buckets after the last such one it is.
    counts: Vec<(u32, u32)>,
}

impl UseGroup {
    /// The group in the changelog's format 1.
    pub(crate) fn persisted(&self) -> PersistedGroup<'_> {
        let first = self.uses.first;
        PersistedGroup {
            uses: self.uses.persisted(),
            serviceaccount_uid: self.serviceaccount_uid.as_deref().map(Id::of),
            pod_name: self.pod_name.as_deref().map(Cow::Borrowed),
            node: self.node.clone(),
            irregular: self.irregular.as_deref().map(|i| PersistedIrregular {
                forwarded: i.forwarded.persisted(),
                forwarded_ips: Cow::Borrowed(&i.forwarded_ips),
                stale: i.stale.persisted(),
            }),
            over_time: (self.over_time != TimeBuckets::default()).then(|| Buckets::of(&self.over_time, first)),
            clients: Cow::Borrowed(&self.clients),
        }
    }
}

impl From<PersistedGroup<'_>> for UseGroup {
    fn from(p: PersistedGroup<'_>) -> UseGroup {
        let uses: crate::tally::Tally = p.uses.into();
        let over_time = p.over_time.map_or_else(TimeBuckets::default, |b| b.into_buckets(uses.first));
        UseGroup {
            uses,
            serviceaccount_uid: p.serviceaccount_uid.map(|id| id.into_text().into()),
            pod_name: p.pod_name.map(|name| name.into()),
            node: p.node,
            irregular: p.irregular.map(|i| {
                Box::new(Irregular {
                    forwarded: i.forwarded.into(),
                    forwarded_ips: i.forwarded_ips.into_owned(),
                    stale: i.stale.into(),
                })
            }),
            over_time,
            clients: p.clients.into_owned(),
            last_agent: LastAgent::default(),
        }
    }
}

impl Buckets {
    fn of(b: &TimeBuckets, first: Timestamp) -> Buckets {
        let mut counts = Vec::new();
        let mut last = 0;
        for (i, &n) in b.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            // At most `TimeBuckets::MAX_BUCKETS` buckets: the indices fit.
            let i = i as u32;
            counts.push((i - last, n));
            last = i;
        }
        Buckets { start: b.start.0.wrapping_sub(first.0), width: b.width, len: b.counts.len() as u32, counts }
    }

    fn into_buckets(self, first: Timestamp) -> TimeBuckets {
        // Bounded as the buckets are: a damaged value must not ask for gigabytes.
        let mut counts = vec![0; (self.len as usize).min(TimeBuckets::MAX_BUCKETS)];
        let mut at = 0usize;
        for (after, n) in self.counts {
            at += after as usize;
            if let Some(slot) = counts.get_mut(at) {
                *slot = n;
            }
        }
        TimeBuckets { start: Timestamp(first.0.wrapping_add(self.start)), width: self.width, counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;

    #[test]
    fn a_damaged_bucket_count_is_bounded_as_the_buckets_are() {
        let damaged = Buckets { start: 0, width: SECOND, len: u32::MAX, counts: vec![(0, 3), (u32::MAX, 1)] };
        let buckets = damaged.into_buckets(Timestamp(0));
        assert_eq!(buckets.counts.len(), TimeBuckets::MAX_BUCKETS);
        assert_eq!(buckets.counts.iter().sum::<u32>(), 3, "the count past the end is dropped, not placed");
    }
}
