//! Incidents as a stream: the findings topic folded into incidents, and what changed in them
//! since they were last sent (`tokentrail incidents`, docs/incidents.md "In the stream").
//!
//! Findings arrive one record at a time, from every correlator partition and cluster, and a
//! finding is sent again when it grows or is withdrawn. The [`Feed`] holds the latest version of
//! each finding (by id; a withdrawn one leaves) and, after each batch, groups all it holds anew
//! with [`incident::incidents_of`]: grouping is a function of the set of findings, so the
//! incidents a feed holds never depend on the order or batching the findings came in. It then
//! compares them with what it last sent and returns only the difference ([`Change`]):
//!
//! * an incident that is new, or whose record changed (a finding joined it, grew, or left);
//! * an incident id that no longer stands ([`Closed`]). Ids are the hash of the smallest member
//!   ([`incident::incident_id`]), so when two incidents join, at least one id disappears: the
//!   feed sends that id once more, `merged` into the id that now holds its findings, so a SIEM
//!   keyed by incident id corrects itself. A withdrawal can split an incident (`split`, into
//!   each id its findings went to) or empty it (`withdrawn`).
//!
//! In the stream the findings are the whole context: there is no client-address table, no exec
//! list and no timeline beside them (they live in the correlators' partitions), so findings join
//! by credential (a Secret read by name included) and, when the credential is unknown, by
//! service account; not by attacker address or principal, and stories tell no mint, exec,
//! rotation or deletion. docs/incidents.md says what that leaves out.
//!
//! Bounded: an incident whose findings all ended more than [`Limits::horizon`] before the latest
//! event time seen is forgotten whole, silently (nothing about it changed; a finding that comes
//! back later starts an incident again, under the same id when it is the smallest). Past
//! [`Limits::max_findings`], the incidents that ended earliest are forgotten the same way.
//! Forgetting is by incident, never by finding: dropping one member of a live incident would
//! change its record (and perhaps its id) for no reason the evidence gives.
//!
//! Pure: no I/O, no clock; time is the findings' own.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::finding::{Finding, Rule};
use crate::incident::{self, Context, Incident, SCHEMA, SPAN};
use crate::time::{Micros, Timestamp};

/// How much the feed holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// An incident is forgotten once the latest event time seen is this far past its last
    /// finding's end. Twice [`SPAN`]: a finding that starts within a span of an incident's end
    /// joins it, and findings reach the topic up to a span late (a correlator reports what the
    /// log shows, as the log arrives).
    pub horizon: Micros,
    /// The most findings held; past it the incidents that ended earliest are forgotten.
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { horizon: 2 * SPAN, max_findings: 100_000 }
    }
}

/// Why an incident id no longer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    /// Its findings are now in one other incident (a join changed the smallest member).
    Merged,
    /// Its findings are now in several other incidents (a finding that tied them was withdrawn).
    Split,
    /// Every one of its findings was withdrawn.
    Withdrawn,
}

impl Ending {
    /// The name records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Merged => "merged",
            Ending::Split => "split",
            Ending::Withdrawn => "withdrawn",
        }
    }
}

/// The last record of an incident id that no longer stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Closed {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The id that no longer stands.
    pub id: String,
    /// Why.
    pub status: Ending,
    /// The incidents that now hold its findings (none when withdrawn).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded_by: Vec<String>,
    /// Its findings when it was last sent.
    pub findings: Vec<String>,
}

/// One record to send, keyed by its [`Change::id`].
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new incident, or one whose record changed.
    Incident(Box<Incident>),
    /// An incident id that no longer stands.
    Closed(Closed),
}

impl Change {
    /// The incident id: the record's key.
    pub fn id(&self) -> &str {
        match self {
            Change::Incident(i) => &i.id,
            Change::Closed(c) => &c.id,
        }
    }

    /// The record's value: the `tokentrail.incident/v1` JSON object.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        match self {
            Change::Incident(i) => serde_json::to_vec(i),
            Change::Closed(c) => serde_json::to_vec(c),
        }
    }
}

/// What was last sent of an incident: enough to tell a change and where its findings went.
#[derive(Clone, Debug)]
struct Sent {
    digest: [u8; 16],
    findings: Vec<String>,
}

/// What the feed has forgotten, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Findings of incidents past the horizon.
    pub aged: u64,
    /// Findings of incidents forgotten at the cap.
    pub capped: u64,
}

/// The fold: the latest version of each finding, and what was last sent of each incident.
#[derive(Debug, Default)]
pub struct Feed {
    limits: Limits,
    findings: BTreeMap<String, Finding>,
    sent: BTreeMap<String, Sent>,
    /// Findings withdrawn since the last [`Feed::changes`]: an incident left with none of its
    /// findings is `withdrawn` only when they were withdrawn, not forgotten.
    withdrawn: BTreeSet<String>,
    latest: Option<Timestamp>,
    forgotten: Forgotten,
}

impl Feed {
    /// An empty feed.
    pub fn new(limits: Limits) -> Feed {
        Feed { limits, ..Feed::default() }
    }

    /// Folds in a finding record: its latest version replaces the one held, a withdrawal
    /// removes it. An inventory item (`legacy-token-present`) is in no incident and not held.
    pub fn fold(&mut self, finding: Finding) {
        self.latest = self.latest.max(Some(finding.last_seen));
        if !finding.status.is_active() {
            if self.findings.remove(&finding.id).is_some() {
                self.withdrawn.insert(finding.id);
            }
        } else if finding.rule != Rule::LegacyTokenPresent {
            self.withdrawn.remove(&finding.id);
            self.findings.insert(finding.id.clone(), finding);
        }
    }

    /// The incidents the feed holds now, grouped anew, after forgetting what is past the
    /// horizon or over the cap.
    fn current(&mut self) -> Vec<Incident> {
        let mut all = group(self.findings.values());
        let ended = |findings: &BTreeMap<String, Finding>, i: &Incident| {
            i.findings.iter().filter_map(|id| findings.get(id)).map(|f| f.last_seen).max().unwrap_or(i.last_seen)
        };
        let mut ends: Vec<(Timestamp, usize)> =
            all.iter().enumerate().map(|(n, i)| (ended(&self.findings, i), n)).collect();
        // Earliest end first, then the ranking's order: which go at the cap does not depend on
        // the order findings came in.
        ends.sort();
        let horizon = self.latest.map_or(Timestamp::MIN, |t| t.plus(-self.limits.horizon));
        let mut held = self.findings.len();
        let mut drop = BTreeSet::new();
        for (n, &(end, i)) in ends.iter().enumerate() {
            let aged = end < horizon;
            // The latest incident stays whatever its size: the cap forgets the past, not the news.
            let capped = held > self.limits.max_findings && n + 1 < ends.len();
            if !aged && !capped {
                break;
            }
            let members = all[i].findings.len();
            if aged {
                self.forgotten.aged += members as u64;
            } else {
                self.forgotten.capped += members as u64;
            }
            held -= members;
            drop.insert(i);
        }
        if drop.is_empty() {
            return all;
        }
        let mut n = 0;
        all.retain(|i| {
            let keep = !drop.contains(&n);
            n += 1;
            if !keep {
                for id in &i.findings {
                    self.findings.remove(id);
                }
                self.sent.remove(&i.id);
            }
            keep
        });
        all
    }

    /// What changed since the last call: incidents new or changed (most severe first, as
    /// reports rank them), then the ids that no longer stand. Records them as sent.
    pub fn changes(&mut self) -> Vec<Change> {
        let current = self.current();
        let home: BTreeMap<&str, &str> =
            current.iter().flat_map(|i| i.findings.iter().map(move |f| (f.as_str(), i.id.as_str()))).collect();
        let ids: BTreeSet<&str> = current.iter().map(|i| i.id.as_str()).collect();
        let mut closed = Vec::new();
        for (id, sent) in self.sent.iter().filter(|(id, _)| !ids.contains(id.as_str())) {
            let superseded_by: Vec<String> = sent
                .findings
                .iter()
                .filter_map(|f| home.get(f.as_str()))
                .map(|s| s.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let status = match superseded_by.len() {
                0 if sent.findings.iter().all(|f| self.withdrawn.contains(f)) => Ending::Withdrawn,
                // Forgotten with its findings, or findings left by ageing: nothing to correct.
                0 => continue,
                1 => Ending::Merged,
                _ => Ending::Split,
            };
            closed.push(Closed {
                schema: SCHEMA,
                id: id.clone(),
                status,
                superseded_by,
                findings: sent.findings.clone(),
            });
        }
        self.sent.retain(|id, _| ids.contains(id.as_str()));
        self.withdrawn.clear();
        let mut out = Vec::new();
        for incident in current {
            let d = digest(&incident);
            if self.sent.get(&incident.id).is_some_and(|s| s.digest == d) {
                continue;
            }
            self.sent.insert(incident.id.clone(), Sent { digest: d, findings: incident.findings.clone() });
            out.push(Change::Incident(Box::new(incident)));
        }
        out.extend(closed.into_iter().map(Change::Closed));
        out
    }

    /// How many findings the feed holds.
    pub fn len(&self) -> usize {
        self.findings.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// How many incidents were last sent and still stand.
    pub fn incidents(&self) -> usize {
        self.sent.len()
    }

    /// What it has forgotten so far.
    pub fn forgotten(&self) -> Forgotten {
        self.forgotten
    }
}

/// The incidents of findings alone, as `analyze` makes them from several clusters' reports:
/// each cluster's grouped (keys carry the cluster), joined across clusters, then the tokens
/// shared across clusters joined in.
pub fn group<'f>(findings: impl IntoIterator<Item = &'f Finding>) -> Vec<Incident> {
    let (shared, own): (Vec<&Finding>, Vec<&Finding>) =
        findings.into_iter().partition(|f| f.rule == Rule::LegacyTokenSharedAcrossClusters);
    // No address table in the stream: a `token-used-off-cluster` finding's address is outside
    // every cluster network by the rule's own definition, so it is an attacker address, and it
    // joins what else came from it as analyze's table of off-cluster addresses does.
    let attacker_ips = own.iter().filter(|f| f.rule == Rule::TokenUsedOffCluster).filter_map(|f| f.source_ip).collect();
    let own = incident::incidents_of(own, &Context { attacker_ips, ..Context::default() });
    let shared: Vec<Finding> = shared.into_iter().cloned().collect();
    incident::join_shared_tokens(incident::join_across_clusters(own), &shared)
}

fn digest(incident: &Incident) -> [u8; 16] {
    let bytes = serde_json::to_vec(incident).unwrap_or_default();
    let mut out = [0u8; 16];
    out.copy_from_slice(&Sha256::digest(&bytes)[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{FindingCredential, FindingRequest, Status};
    use crate::incident::incident_id;
    use crate::incident::tests::{at, use_of};

    /// A use of the legacy token of Secret `shop/<secret>` from outside.
    fn secret_use(id: &str, secret: &str, minutes: (i64, i64)) -> Finding {
        let mut f = use_of(id, Rule::LegacyTokenForeignIp, "legacy", "-", "192.0.2.80", minutes);
        f.credential = Some(FindingCredential { kind: "legacy-secret", id: None, secret: Some(secret.into()) });
        f.pod = None;
        f
    }

    /// Token Secrets `shop/<secrets>` read by name: the read ties every token it fetched.
    fn secret_read(id: &str, secrets: &[&str], minutes: (i64, i64)) -> Finding {
        let mut f = use_of(id, Rule::SaTokenSecretRead, "reader", "-", "198.51.100.7", minutes);
        f.credential = None;
        f.pod = None;
        f.requests = secrets
            .iter()
            .map(|s| FindingRequest {
                verb: "get".into(),
                resource: Some("secrets".into()),
                namespace: Some("shop".into()),
                name: Some(s.to_string()),
                code: Some(200),
            })
            .collect();
        f
    }

    fn withdrawn(f: &Finding) -> Finding {
        Finding { status: Status::Withdrawn, ..f.clone() }
    }

    /// What a SIEM keyed by incident id holds after these changes: each id's last record,
    /// less the closed ones.
    #[derive(Default)]
    struct Siem(BTreeMap<String, Option<Incident>>);

    impl Siem {
        fn apply(&mut self, changes: Vec<Change>) {
            for c in changes {
                match c {
                    Change::Incident(i) => self.0.insert(i.id.clone(), Some(*i)),
                    Change::Closed(c) => self.0.insert(c.id, None),
                };
            }
        }

        fn standing(&self) -> Vec<Incident> {
            let mut all: Vec<Incident> = self.0.values().flatten().cloned().collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all
        }
    }

    fn by_id(mut incidents: Vec<Incident>) -> Vec<Incident> {
        incidents.sort_by(|a, b| a.id.cmp(&b.id));
        incidents
    }

    fn story() -> Vec<Finding> {
        vec![
            use_of("f1", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
            use_of("f2", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (5, 50)),
            use_of("f3", Rule::TokenUsedOffCluster, "web", "2", "198.51.100.77", (20, 30)),
            secret_use("f4", "x-token", (40, 45)),
            secret_use("f5", "y-token", (41, 46)),
            secret_read("f0", &["x-token", "y-token"], (35, 36)),
            use_of("f6", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (26 * 60, 26 * 60 + 5)),
        ]
    }

    #[test]
    fn any_order_and_batching_ends_where_grouping_the_final_findings_does() {
        let findings = story();
        let expected = by_id(group(&findings));
        assert_eq!(expected.len(), 4, "api's token (two), web's, the Secret read with its two, api's days later");
        let later = [withdrawn(&findings[5]), Finding { count: 500, last_seen: at(55), ..findings[0].clone() }];
        let mut last = findings.clone();
        last.remove(5);
        last[0] = later[1].clone();
        let after = by_id(group(&last));
        assert_eq!(after.len(), 5, "the two Secrets' uses apart again");
        // Orders: as written, reversed, and rotations; batches of 1, 2, 3 and all.
        for rotation in 0..findings.len() {
            for reversed in [false, true] {
                for batch in [1, 2, 3, findings.len()] {
                    let mut order = findings.clone();
                    order.rotate_left(rotation);
                    if reversed {
                        order.reverse();
                    }
                    let mut feed = Feed::new(Limits::default());
                    let mut siem = Siem::default();
                    for chunk in order.chunks(batch) {
                        chunk.iter().cloned().for_each(|f| feed.fold(f));
                        siem.apply(feed.changes());
                    }
                    assert_eq!(siem.standing(), expected, "rotation {rotation}, reversed {reversed}, batch {batch}");
                    // Later versions (after the first, as Kafka keeps one key's records in order):
                    // the read that tied two Secrets withdrawn, a use grown.
                    for f in &later {
                        feed.fold(f.clone());
                    }
                    siem.apply(feed.changes());
                    assert_eq!(siem.standing(), after, "later versions: rotation {rotation}, reversed {reversed}");
                }
            }
        }
    }

    #[test]
    fn one_attacker_address_joins_two_credentials_as_analyze_does() {
        // Two accounts' tokens replayed from one outside address within a day: one incident,
        // as analyze's table of off-cluster addresses joins them.
        let api = use_of("g1", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.9", (0, 5));
        let web = use_of("g2", Rule::TokenUsedOffCluster, "web", "2", "203.0.113.9", (30, 35));
        let joined = group(&[api.clone(), web.clone()]);
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert_eq!(joined[0].attacker_ips, ["203.0.113.9".parse::<std::net::IpAddr>().unwrap()]);
        // An address that no off-cluster finding names is no attacker address (it may be a
        // node's, shared by every pod behind its SNAT): the findings stay apart.
        let stale = |f: Finding| Finding { rule: Rule::TokenSupersededUse, ..f };
        assert_eq!(group(&[stale(api), stale(web)]).len(), 2);
    }

    #[test]
    fn a_join_that_changes_the_id_closes_the_old_id_as_merged_into_the_new() {
        let mut feed = Feed::new(Limits::default());
        feed.fold(secret_use("b", "x-token", (0, 5)));
        feed.fold(secret_use("c", "y-token", (1, 6)));
        let first = feed.changes();
        let ids: Vec<&str> = first.iter().map(Change::id).collect();
        assert_eq!(ids.len(), 2, "two Secrets, two incidents");
        assert!(ids.contains(&incident_id("b").as_str()) && ids.contains(&incident_id("c").as_str()));
        // A read of both Secrets, whose id is smallest: one incident, under its id.
        feed.fold(secret_read("a", &["x-token", "y-token"], (-5, -4)));
        let changes = feed.changes();
        assert_eq!(changes.len(), 3, "{changes:?}");
        let Change::Incident(joined) = &changes[0] else { panic!("the joined incident first: {changes:?}") };
        assert_eq!(joined.id, incident_id("a"));
        let mut members = joined.findings.clone();
        members.sort();
        assert_eq!(members, ["a", "b", "c"]);
        for (change, old) in changes[1..].iter().zip(["b", "c"]) {
            let Change::Closed(c) = change else { panic!("{change:?}") };
            assert_eq!((c.id.as_str(), c.status), (incident_id(old).as_str(), Ending::Merged));
            assert_eq!(c.superseded_by, [incident_id("a")]);
            assert_eq!(c.findings, [old]);
        }
        let record: serde_json::Value = serde_json::from_slice(&changes[1].to_json().unwrap()).unwrap();
        assert_eq!(record["status"], "merged");
        assert_eq!(record["schema"], SCHEMA);
        assert_eq!(feed.incidents(), 1);
    }

    #[test]
    fn withdrawals_split_or_close_an_incident() {
        let read = secret_read("a", &["x-token", "y-token"], (-5, -4));
        let mut feed = Feed::new(Limits::default());
        for f in [read.clone(), secret_use("b", "x-token", (0, 5)), secret_use("c", "y-token", (1, 6))] {
            feed.fold(f);
        }
        assert_eq!(feed.changes().len(), 1);
        // The read that tied them is withdrawn: its id goes, split into the two it tied.
        feed.fold(withdrawn(&read));
        let changes = feed.changes();
        let closed: Vec<&Closed> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Closed(c) => Some(c),
                Change::Incident(_) => None,
            })
            .collect();
        assert_eq!(changes.len(), 3, "two incidents and the old id: {changes:?}");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].status, Ending::Split);
        assert_eq!(closed[0].superseded_by, {
            let mut v = vec![incident_id("b"), incident_id("c")];
            v.sort();
            v
        });
        // Both withdrawn: closed as withdrawn, with no successor.
        feed.fold(withdrawn(&secret_use("b", "x-token", (0, 5))));
        feed.fold(withdrawn(&secret_use("c", "y-token", (1, 6))));
        let changes = feed.changes();
        assert_eq!(changes.len(), 2, "{changes:?}");
        for c in &changes {
            let Change::Closed(c) = c else { panic!("{c:?}") };
            assert_eq!(c.status, Ending::Withdrawn);
            assert!(c.superseded_by.is_empty());
        }
        assert!(feed.is_empty());
        assert_eq!(feed.incidents(), 0);
    }

    #[test]
    fn an_unchanged_incident_is_not_sent_again_and_a_grown_one_is() {
        let mut feed = Feed::new(Limits::default());
        let f1 = use_of("f1", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10));
        feed.fold(f1.clone());
        assert_eq!(feed.changes().len(), 1);
        // The same record again (a redelivery) and an empty batch: nothing.
        feed.fold(f1.clone());
        assert!(feed.changes().is_empty());
        assert!(feed.changes().is_empty());
        // A second finding on the credential: the incident is sent again, same id, both members.
        feed.fold(use_of("f2", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (5, 50)));
        let changes = feed.changes();
        assert_eq!(changes.len(), 1);
        let Change::Incident(i) = &changes[0] else { panic!() };
        assert_eq!((i.id.as_str(), i.findings.len()), (incident_id("f1").as_str(), 2));
        // The first finding's update (more requests): sent again.
        feed.fold(Finding { count: 300, last_seen: at(60), ..f1 });
        assert_eq!(feed.changes().len(), 1);
        // An inventory item is in no incident.
        feed.fold(use_of("inv", Rule::LegacyTokenPresent, "old", "9", "10.0.0.1", (0, 0)));
        assert!(feed.changes().is_empty());
        assert_eq!(feed.len(), 2);
    }

    #[test]
    fn incidents_past_the_horizon_are_forgotten_silently_and_the_cap_forgets_the_earliest() {
        let mut feed = Feed::new(Limits { horizon: 2 * SPAN, max_findings: 3 });
        feed.fold(use_of("old1", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)));
        feed.fold(use_of("old2", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (5, 20)));
        feed.fold(use_of("mid", Rule::TokenUsedOffCluster, "web", "2", "198.51.100.77", (30, 40)));
        assert_eq!(feed.changes().len(), 2);
        // A finding two days and more later: the incidents that ended before its horizon go,
        // without a record (they did not change).
        let late = 2 * 24 * 60 + 35;
        feed.fold(use_of("new", Rule::TokenUsedOffCluster, "db", "3", "203.0.113.50", (late, late + 1)));
        let changes = feed.changes();
        assert_eq!(changes.iter().map(Change::id).collect::<Vec<_>>(), [incident_id("new")]);
        assert_eq!(feed.len(), 2, "api's two findings forgotten, web's within the horizon");
        assert_eq!(feed.forgotten(), Forgotten { aged: 2, capped: 0 });
        // Over the cap of 3: the earliest-ended incident (web's) is forgotten, the newest kept.
        feed.fold(use_of("p2", Rule::TokenSupersededUse, "db", "3", "203.0.113.50", (late, late + 2)));
        feed.fold(use_of("p3", Rule::TokenClientChanged, "db", "3", "203.0.113.50", (late, late + 3)));
        let changes = feed.changes();
        assert_eq!(changes.len(), 1, "db's incident grew; web's went silently: {changes:?}");
        assert_eq!(feed.len(), 3);
        assert_eq!(feed.forgotten(), Forgotten { aged: 2, capped: 1 });
        // One incident bigger than the cap stays: the news is never what is forgotten.
        feed.fold(use_of("p4", Rule::TokenUsedOffCluster, "db", "3", "198.51.100.1", (late, late + 4)));
        assert_eq!(feed.changes().len(), 1);
        assert_eq!(feed.len(), 4);
    }
}
