//! Which findings to send downstream, and when to send one again.
//!
//! A stream re-evaluates its findings as evidence arrives. Sending every finding after every
//! batch would flood a SIEM; sending each only once would hide that a replay is still going on.
//! The [`Emitter`] remembers what it sent and sends a finding again (as an update) only when it
//! changed materially: more severe, its count grown by half (and by at least [`MIN_GROWTH`]), or
//! its last sighting moved on by [`QUIET`] or more.
//!
//! A stream also reports before it has seen everything, and later evidence can explain a finding
//! already sent (a dump naming a pod's second address arrives after the log). [`Emitter::withdraw`]
//! sends such a finding once more, same id, with [`Status::Withdrawn`], so a SIEM that keyed the
//! first record by id sees the correction. A finding that left the report because its evidence
//! expired is no correction: the caller forgets it ([`Emitter::forget_absent`]) right after the
//! expiry, before the next report could read its absence as one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::finding::{
    Finding, FindingCredential, FindingPod, FindingServiceAccount, Rule, Severity, Status, CREDENTIAL_KINDS, SCHEMA,
};
use crate::ocsf::Activity;
use crate::time::{Micros, Timestamp, MINUTE};

/// Growth in count below which a finding is not sent again.
pub const MIN_GROWTH: u64 = 10;
/// Progress of `last_seen` that is worth an update on its own.
pub const QUIET: Micros = 15 * MINUTE;

/// What was last sent for one finding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// Severity sent.
    pub severity: Severity,
    /// Count sent.
    pub count: u64,
    /// Last sighting sent.
    pub last_seen: Timestamp,
    /// What a withdrawal repeats; absent in state saved before withdrawals existed (such a
    /// finding is forgotten, not withdrawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<Subject>>,
}

/// What a finding was about, kept so that its withdrawal names the same things.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    /// The rule.
    pub rule: Rule,
    /// Its title.
    pub title: String,
    /// Cluster label.
    pub cluster: Option<String>,
    /// The service account.
    pub serviceaccount: Option<FindingServiceAccount>,
    /// The credential's kind, id and Secret.
    pub credential: Option<(String, Option<String>, Option<String>)>,
    /// The pod.
    pub pod: Option<FindingPod>,
    /// The client address.
    pub source_ip: Option<IpAddr>,
    /// First sighting.
    pub first_seen: Timestamp,
}

impl Subject {
    fn of(f: &Finding) -> Subject {
        Subject {
            rule: f.rule,
            title: f.title.clone(),
            cluster: f.cluster.clone(),
            serviceaccount: f.serviceaccount.clone(),
            credential: f.credential.as_ref().map(|c| (c.kind.to_string(), c.id.clone(), c.secret.clone())),
            pod: f.pod.clone(),
            source_ip: f.source_ip,
            first_seen: f.first_seen,
        }
    }
}

/// Remembers what was sent, by finding id. Persisted with the engine's state so a restarted
/// correlator neither repeats nor forgets.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Emitter {
    sent: BTreeMap<String, Sent>,
}

impl Emitter {
    /// What was sent, by finding id (a changelog's entries).
    pub fn sent(&self) -> impl Iterator<Item = (&str, &Sent)> {
        self.sent.iter().map(|(id, s)| (id.as_str(), s))
    }

    /// Puts back what a changelog held of one finding.
    pub fn insert_restored(&mut self, id: String, sent: Sent) {
        self.sent.insert(id, sent);
    }

    /// The findings to send now, each with whether it is new or an update; records them as sent.
    pub fn due<'a>(&mut self, findings: &'a [Finding]) -> Vec<(&'a Finding, Activity)> {
        let mut out = Vec::new();
        for f in findings {
            let now = Sent {
                severity: f.severity,
                count: f.count,
                last_seen: f.last_seen,
                subject: Some(Box::new(Subject::of(f))),
            };
            let activity = match self.sent.get(&f.id) {
                None => Activity::Create,
                Some(before) if material(before, &now) => Activity::Update,
                Some(_) => continue,
            };
            self.sent.insert(f.id.clone(), now);
            out.push((f, activity));
        }
        out
    }

    /// Forgets the findings not among `current` (their evidence expired from the engine): if
    /// such a finding's evidence comes back, it is news again.
    pub fn forget_absent(&mut self, current: &[Finding]) -> usize {
        let ids: std::collections::BTreeSet<&str> = current.iter().map(|f| f.id.as_str()).collect();
        let before = self.sent.len();
        self.sent.retain(|id, _| ids.contains(id.as_str()));
        before - self.sent.len()
    }

    /// The findings sent before and absent from `current` (every finding the engines report
    /// now), as withdrawals: same id, [`Status::Withdrawn`], the count and last sighting last
    /// sent. They are forgotten: if their evidence comes back, they are news again. Call it only
    /// when nothing expired since `current`'s evidence was last reported (see the module doc).
    pub fn withdraw(&mut self, current: &[Finding]) -> Vec<Finding> {
        let ids: std::collections::BTreeSet<&str> = current.iter().map(|f| f.id.as_str()).collect();
        let gone: Vec<String> = self.sent.keys().filter(|id| !ids.contains(id.as_str())).cloned().collect();
        let mut out = Vec::new();
        for id in gone {
            let Some(sent) = self.sent.remove(&id) else { continue };
            if let Some(subject) = sent.subject {
                out.push(withdrawal(id, &sent.severity, sent.count, sent.last_seen, *subject));
            }
        }
        out
    }

    /// How many findings have been sent.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing has been sent.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

fn withdrawal(id: String, severity: &Severity, count: u64, last_seen: Timestamp, s: Subject) -> Finding {
    let credential = s.credential.map(|(kind, id, secret)| FindingCredential {
        kind: CREDENTIAL_KINDS.into_iter().find(|k| *k == kind).unwrap_or("unknown"),
        id,
        secret,
    });
    Finding {
        schema: SCHEMA,
        id,
        rule: s.rule,
        severity: *severity,
        explanation: format!(
            "Withdrawn: evidence that arrived after this finding was sent explains it (\"{}\"); with all the \
             evidence, {} no longer fires.",
            s.title,
            s.rule.id()
        ),
        title: format!("Withdrawn: {}", s.title),
        cluster: s.cluster,
        serviceaccount: s.serviceaccount,
        credential,
        pod: s.pod,
        source_ip: s.source_ip,
        source_ips: Vec::new(),
        expected_ips: Vec::new(),
        first_seen: s.first_seen,
        last_seen,
        count,
        user_agents: Vec::new(),
        requests: Vec::new(),
        audit_ids: Vec::new(),
        attack: s.rule.attack(),
        status: Status::Withdrawn,
        copies: Vec::new(),
    }
}

fn material(before: &Sent, now: &Sent) -> bool {
    let grown = now.count >= before.count.saturating_add(MIN_GROWTH.max(before.count / 2));
    now.severity > before.severity || grown || now.last_seen.0 - before.last_seen.0 >= QUIET
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{finding_id, Rule, SCHEMA};

    fn finding(count: u64, last_minute: i64) -> Finding {
        Finding {
            schema: SCHEMA,
            id: finding_id(Rule::TokenUsedOffCluster, None, "JTI=1", "203.0.113.50"),
            rule: Rule::TokenUsedOffCluster,
            severity: Severity::Critical,
            title: String::new(),
            cluster: None,
            serviceaccount: None,
            credential: None,
            pod: None,
            source_ip: None,
            source_ips: vec![],
            expected_ips: vec![],
            first_seen: Timestamp(0),
            last_seen: Timestamp(last_minute * MINUTE),
            count,
            user_agents: vec![],
            requests: vec![],
            audit_ids: vec![],
            attack: Rule::TokenUsedOffCluster.attack(),
            explanation: String::new(),
            status: crate::finding::Status::Active,
            copies: Vec::new(),
        }
    }

    #[test]
    fn new_once_then_only_material_updates() {
        let mut e = Emitter::default();
        assert_eq!(e.due(&[finding(1, 0)]).len(), 1);
        assert!(e.due(&[finding(1, 0)]).is_empty(), "unchanged");
        assert!(e.due(&[finding(5, 3)]).is_empty(), "a few more uses a few minutes later");
        let grown = [finding(11, 4)];
        assert_eq!(e.due(&grown)[0].1, Activity::Update, "grown by ten");
        assert!(e.due(&[finding(12, 10)]).is_empty());
        let later = [finding(12, 20)];
        assert_eq!(e.due(&later)[0].1, Activity::Update, "still going a quarter hour later");
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn a_finding_whose_evidence_expired_is_forgotten_and_news_again_if_it_returns() {
        let mut e = Emitter::default();
        assert_eq!(e.due(&[finding(1, 0)]).len(), 1);
        assert_eq!(e.forget_absent(&[finding(1, 0)]), 0, "still reported: kept");
        assert_eq!(e.forget_absent(&[]), 1);
        assert!(e.is_empty());
        assert_eq!(e.due(&[finding(1, 30)])[0].1, Activity::Create);
    }

    #[test]
    fn a_finding_later_evidence_explains_is_withdrawn_once_under_its_id() {
        let mut e = Emitter::default();
        let sent = finding(3, 5);
        assert_eq!(e.due(std::slice::from_ref(&sent)).len(), 1);
        assert!(e.withdraw(std::slice::from_ref(&sent)).is_empty(), "still reported: stands");
        let withdrawn = e.withdraw(&[]);
        assert_eq!(withdrawn.len(), 1);
        let w = &withdrawn[0];
        assert_eq!(
            (w.id.as_str(), w.rule, w.status, w.count, w.last_seen),
            (sent.id.as_str(), sent.rule, Status::Withdrawn, 3, sent.last_seen)
        );
        let json = serde_json::to_value(w).unwrap();
        assert_eq!(json["status"], "withdrawn");
        assert!(serde_json::to_value(&sent).unwrap().get("status").is_none(), "an active finding's JSON is unchanged");
        assert!(e.is_empty() && e.withdraw(&[]).is_empty(), "withdrawn once");
        assert_eq!(e.due(&[sent])[0].1, Activity::Create, "back again: news");
    }

    #[test]
    fn a_withdrawal_survives_a_snapshot() {
        let mut e = Emitter::default();
        e.due(&[finding(1, 0)]);
        let mut restored: Emitter = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(restored, e);
        assert_eq!(restored.withdraw(&[]).len(), 1);
    }

    #[test]
    fn ten_thousand_replays_are_a_handful_of_messages() {
        let mut e = Emitter::default();
        let sent: usize = (1..=10_000).map(|n| e.due(&[finding(n, 0)]).len()).sum();
        assert!(sent <= 20, "{sent} messages for one finding");
    }
}
