//! How much of a huge report the human outputs show: a flood of findings (an attacker spraying a
//! million stolen tokens, or a million accounts used from one proxy) must not make a text or HTML
//! report of gigabytes. Past a limit the text and HTML reports fold the rest into a count and
//! say where every record is: the JSON lines (`--format json`, `findings.jsonl`, `usage.json`)
//! always stay whole.

use std::collections::BTreeMap;

use tokentrail_correlator_core::incident::Incident;
use tokentrail_correlator_core::report::UsageRow;
use tokentrail_correlator_core::verdict::Verdict;
use tokentrail_correlator_core::{Finding, Rule};

/// Findings of one rule shown in full; the rest are counted.
pub const FINDINGS_PER_RULE: usize = 100;
/// Incidents shown in full; the rest are counted.
pub const INCIDENTS: usize = 100;
/// Member finding ids listed under an incident; the rest are counted.
pub const INCIDENT_MEMBERS: usize = 100;
/// Client-address rows shown; the rest are counted.
pub const USAGE_ROWS: usize = 2_000;

/// The findings a human report shows, in report order, and how many of each rule it leaves out.
pub fn findings(all: &[Finding]) -> (Vec<&Finding>, BTreeMap<Rule, usize>) {
    per_kind(all, |f| f.rule, FINDINGS_PER_RULE)
}

/// The incidents a human report shows, in report order, and how many it leaves out.
pub fn incidents(all: &[Incident]) -> (&[Incident], usize) {
    let shown = all.len().min(INCIDENTS);
    (&all[..shown], all.len() - shown)
}

/// Findings by id, so an incident's members are found without a scan per member.
pub fn by_id(findings: &[Finding]) -> BTreeMap<&str, &Finding> {
    findings.iter().map(|f| (f.id.as_str(), f)).collect()
}

/// The first `limit` items of each kind, and how many of each kind are left out.
fn per_kind<T, K: Ord>(all: &[T], kind: impl Fn(&T) -> K, limit: usize) -> (Vec<&T>, BTreeMap<K, usize>) {
    let mut shown_of: BTreeMap<K, usize> = BTreeMap::new();
    let mut left_out: BTreeMap<K, usize> = BTreeMap::new();
    let mut shown = Vec::new();
    for f in all {
        let n = shown_of.entry(kind(f)).or_default();
        if *n < limit {
            *n += 1;
            shown.push(f);
        } else {
            *left_out.entry(kind(f)).or_default() += 1;
        }
    }
    (shown, left_out)
}

/// The client-address rows a human report shows, in table order: every row that is not expected
/// first (up to the limit), then expected ones in the room left; and how many it leaves out.
pub fn usage(rows: &[UsageRow]) -> (Vec<&UsageRow>, usize) {
    notable_first(rows, |r| r.verdict != Verdict::Expected, USAGE_ROWS)
}

/// Up to `limit` items in their order, the notable ones first in line for the room.
fn notable_first<T>(rows: &[T], notable: impl Fn(&T) -> bool, limit: usize) -> (Vec<&T>, usize) {
    let wanted = rows.iter().filter(|r| notable(r)).count().min(limit);
    let mut room = (wanted, limit - wanted);
    let shown: Vec<&T> = rows
        .iter()
        .filter(|r| {
            let slot = if notable(r) { &mut room.0 } else { &mut room.1 };
            let take = *slot > 0;
            *slot = slot.saturating_sub(1);
            take
        })
        .collect();
    let left = rows.len() - shown.len();
    (shown, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_items_are_counted_per_kind() {
        let mut all = vec![Rule::TokenUsedOffCluster; 12];
        all.push(Rule::TokenMultiOrigin);
        let (shown, left) = per_kind(&all, |r| *r, 10);
        assert_eq!(shown.len(), 11);
        assert_eq!(left, BTreeMap::from([(Rule::TokenUsedOffCluster, 2)]));
    }

    #[test]
    fn past_the_limit_notable_rows_come_before_the_others_in_their_order() {
        let mut rows: Vec<(bool, usize)> = (0..10).map(|i| (false, i)).collect();
        rows.extend((10..25).map(|i| (true, i)));
        let (shown, left) = notable_first(&rows, |r| r.0, 12);
        assert_eq!(shown.len(), 12);
        assert!(shown.iter().all(|r| r.0));
        assert_eq!(left, 13);
        let (shown, left) = notable_first(&rows[5..15], |r| r.0, 12);
        assert_eq!((shown.len(), left), (10, 0), "under the limit every row, in order");
        assert!(shown.windows(2).all(|w| w[0].1 < w[1].1));
    }
}
