//! Which findings to send downstream, and when to send one again.
//!
//! A stream re-evaluates its findings as evidence arrives. Sending every finding after every
//! batch would flood a SIEM; sending each only once would hide that a replay is still going on.
//! The [`Emitter`] remembers what it sent and sends a finding again (as an update) only when it
//! changed materially: more severe, its count grown by half (and by at least [`MIN_GROWTH`]), or
//! its last sighting moved on by [`QUIET`] or more.

use std::collections::BTreeMap;

use crate::finding::{Finding, Severity};
use crate::ocsf::Activity;
use crate::time::{Micros, Timestamp, MINUTE};

/// Growth in count below which a finding is not sent again.
pub const MIN_GROWTH: u64 = 10;
/// Progress of `last_seen` that is worth an update on its own.
pub const QUIET: Micros = 15 * MINUTE;

/// What was last sent for one finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    /// Severity sent.
    pub severity: Severity,
    /// Count sent.
    pub count: u64,
    /// Last sighting sent.
    pub last_seen: Timestamp,
}

/// Remembers what was sent, by finding id. Persisted with the engine's state so a restarted
/// correlator neither repeats nor forgets.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Emitter {
    sent: BTreeMap<String, Sent>,
}

impl Emitter {
    /// The findings to send now, each with whether it is new or an update; records them as sent.
    pub fn due<'a>(&mut self, findings: &'a [Finding]) -> Vec<(&'a Finding, Activity)> {
        let mut out = Vec::new();
        for f in findings {
            let now = Sent { severity: f.severity, count: f.count, last_seen: f.last_seen };
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

    /// How many findings have been sent.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing has been sent.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
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
    fn ten_thousand_replays_are_a_handful_of_messages() {
        let mut e = Emitter::default();
        let sent: usize = (1..=10_000).map(|n| e.due(&[finding(n, 0)]).len()).sum();
        assert!(sent <= 20, "{sent} messages for one finding");
    }
}
