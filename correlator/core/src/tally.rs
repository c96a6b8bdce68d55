//! A tally of requests: how many, when, and a bounded, order-independent sample of which.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::changes::value::Id;
use crate::finding::FindingRequest;
use crate::observation::Request;
use crate::sample::Smallest;
use crate::shared::Shared;
use crate::time::Timestamp;

const AUDIT_ID_SAMPLE: usize = 5;
const USER_AGENT_SAMPLE: usize = 5;
const REQUEST_SAMPLE: usize = 10;

/// Requests folded together.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// Earliest event time.
    pub first: Timestamp,
    /// Latest event time.
    pub last: Timestamp,
    /// The earliest few audit IDs (by time, then ID).
    pub audit_ids: Smallest<(Timestamp, Box<str>), AUDIT_ID_SAMPLE>,
    /// A few user agents (copies shared with other tallies: see [`crate::shared`]).
    pub user_agents: Smallest<Arc<str>, USER_AGENT_SAMPLE>,
    /// A few distinct requests (kept as observed, shared like the user agents; converted for
    /// findings on the way out).
    pub requests: Smallest<Arc<Request>, REQUEST_SAMPLE>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            count: 0,
            first: Timestamp::MAX,
            last: Timestamp::MIN,
            audit_ids: Smallest::new(),
            user_agents: Smallest::new(),
            requests: Smallest::new(),
        }
    }
}

impl Tally {
    /// Adds one request.
    pub fn add(&mut self, t: Timestamp, audit_id: &str, user_agent: Option<&str>, request: Option<&Request<&str>>) {
        self.add_sharing(t, audit_id, user_agent, request, &mut Shared::default());
    }

    /// Adds one request, its sampled user agent and request shared through `shared`: what the
    /// engine does for the tallies it keeps by the million.
    pub fn add_sharing(
        &mut self,
        t: Timestamp,
        audit_id: &str,
        user_agent: Option<&str>,
        request: Option<&Request<&str>>,
        shared: &mut Shared,
    ) {
        // Every kept audit ID is at or before `last`: once the sample is full, a later use (in
        // a log read in time order, nearly every use) cannot enter it, and is turned away
        // without touching the sample's memory.
        let too_late = self.audit_ids.is_full() && t > self.last;
        self.count += 1;
        self.first = self.first.min(t);
        self.last = self.last.max(t);
        // Each sample is checked by reference first; an owned copy is made only when kept.
        if !audit_id.is_empty() && !too_late && self.audit_ids.admits(|(at, _)| *at, t) {
            self.audit_ids.offer((t, Box::from(audit_id)));
        }
        if let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) {
            self.user_agents.offer_with(ua, || shared.text(ua));
        }
        if let Some(r) = request {
            self.requests.offer_by(|kept| r.cmp(&kept.view()), || shared.request(r));
        }
    }

    /// Folds another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.audit_ids.merge(&other.audit_ids);
        self.user_agents.merge(&other.user_agents);
        self.requests.merge(&other.requests);
    }

    /// Whether any request in the tally falls in `[from, to]` (as far as first and last tell).
    pub fn overlaps(&self, from: Timestamp, to: Timestamp) -> bool {
        self.count > 0 && self.first <= to && self.last >= from
    }

    /// The sampled audit IDs, earliest first.
    pub fn audit_id_list(&self) -> Vec<String> {
        self.audit_ids.iter().map(|(_, id)| id.to_string()).collect()
    }

    /// The sampled user agents.
    pub fn user_agent_list(&self) -> Vec<String> {
        self.user_agents.iter().map(|ua| ua.to_string()).collect()
    }

    /// The sampled requests.
    pub fn request_list(&self) -> Vec<FindingRequest> {
        self.requests.iter().map(|r| FindingRequest::from(&**r)).collect()
    }
}

/// A tally as the changelog's format 1 writes it ([`crate::changes::value`]): times as
/// microseconds after `first` (a varint of 1 to 5 bytes where the time took 8), audit IDs as
/// [`Id`]s. The samples are written in their order, and read back into the same.
#[derive(Serialize, Deserialize)]
pub(crate) struct PersistedTally<'a> {
    count: u64,
    first: Timestamp,
    /// `last - first`, wrapping: an empty tally's are the ends of time.
    last: i64,
    audit_ids: Vec<(i64, Id<'a>)>,
    user_agents: Vec<Arc<str>>,
    requests: Vec<Arc<Request>>,
}

impl Tally {
    /// The tally in the changelog's format 1.
    pub(crate) fn persisted(&self) -> PersistedTally<'_> {
        let after_first = |t: Timestamp| t.0.wrapping_sub(self.first.0);
        PersistedTally {
            count: self.count,
            first: self.first,
            last: after_first(self.last),
            audit_ids: self.audit_ids.iter().map(|(t, id)| (after_first(*t), Id::of(id))).collect(),
            user_agents: self.user_agents.iter().cloned().collect(),
            requests: self.requests.iter().cloned().collect(),
        }
    }
}

impl From<PersistedTally<'_>> for Tally {
    fn from(p: PersistedTally<'_>) -> Tally {
        let at = |after: i64| Timestamp(p.first.0.wrapping_add(after));
        let mut tally = Tally { count: p.count, first: p.first, last: at(p.last), ..Tally::default() };
        for (after, id) in p.audit_ids {
            tally.audit_ids.offer((at(after), id.into_text().into()));
        }
        for ua in p.user_agents {
            tally.user_agents.offer(ua);
        }
        for request in p.requests {
            tally.requests.offer(request);
        }
        tally
    }
}
