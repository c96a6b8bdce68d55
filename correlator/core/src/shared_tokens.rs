//! `legacy-token-shared-across-clusters`: one Secret-based token in token Secrets of two or
//! more clusters, told by the SHA-256 `tokentrail collect` writes in place of each token.
//!
//! Each engine sees one cluster, so the rule runs where the clusters' reports are merged
//! ([`crate::report::merge`]), over their legacy-token inventories. A token authenticates in
//! every cluster that holds its Secret and trusts the key that signed it: a copy means clusters
//! cloned from one another (shared service-account signing keys), or a Secret copied by hand or
//! by GitOps. Either way a compromise of one cluster is a compromise of the others.

use std::collections::{BTreeMap, BTreeSet};

use crate::finding::{finding_id, Finding, FindingCredential, FindingServiceAccount, Rule, SecretCopy, SCHEMA};
use crate::legacy_tokens::LegacyTokenRow;
use crate::report::shown_cluster;
use crate::time::Timestamp;

/// The findings of the rule over the merged clusters' legacy-token rows (each row carries its
/// cluster; the evidence given without a name is the cluster named ""). Only Secrets in the
/// evidence count: a token only seen in use has no hash. The same hash twice in one cluster is
/// not this rule's (two Secrets of one cluster are one cluster's matter).
pub fn findings(rows: &[LegacyTokenRow]) -> Vec<Finding> {
    let mut by_hash: BTreeMap<&str, Vec<&LegacyTokenRow>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.exists) {
        if let Some(hash) = &row.token_sha256 {
            by_hash.entry(hash).or_default().push(row);
        }
    }
    by_hash
        .into_iter()
        .filter(|(_, rows)| rows.iter().map(|r| cluster(r)).collect::<BTreeSet<_>>().len() >= 2)
        .map(|(hash, rows)| finding(hash, &rows))
        .collect()
}

fn cluster(row: &LegacyTokenRow) -> &str {
    row.cluster.as_deref().unwrap_or("")
}

fn finding(hash: &str, rows: &[&LegacyTokenRow]) -> Finding {
    let copies: Vec<SecretCopy> = rows
        .iter()
        .map(|r| SecretCopy {
            cluster: cluster(r).to_string(),
            namespace: r.namespace.clone(),
            secret: r.secret.clone(),
            serviceaccount: r.serviceaccount.clone(),
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let clusters: BTreeSet<&str> = copies.iter().map(|c| c.cluster.as_str()).collect();
    let clusters: Vec<&str> = clusters.into_iter().collect();
    // Named once when every copy agrees on it (a copy keeps its namespace and name).
    let one = |field: fn(&SecretCopy) -> (&str, Option<&str>)| {
        let values: BTreeSet<_> = copies.iter().map(field).collect();
        (values.len() == 1).then(|| values.into_iter().next()).flatten()
    };
    let serviceaccount = one(|c| (c.namespace.as_str(), c.serviceaccount.as_deref())).and_then(|(ns, sa)| {
        Some(FindingServiceAccount { namespace: ns.to_string(), name: sa?.to_string(), uid: None })
    });
    let secret = one(|c| (c.secret.as_str(), None)).map(|(name, _)| name.to_string());
    let created: Vec<Timestamp> = rows.iter().map(|r| r.created).collect();
    let listed: Vec<String> = copies.iter().map(described).collect();
    Finding {
        schema: SCHEMA,
        // The token's hash keys it: the same copied token is the same finding, whichever clusters
        // the run holds. The id is a hash of the hash; the token is never in it.
        id: finding_id(Rule::LegacyTokenSharedAcrossClusters, None, &format!("sha256={hash}"), ""),
        rule: Rule::LegacyTokenSharedAcrossClusters,
        severity: Rule::LegacyTokenSharedAcrossClusters.severity(),
        title: format!(
            "One non-expiring service-account token in Secrets of clusters {}: {}",
            clusters.iter().map(|c| shown_cluster(c)).collect::<Vec<_>>().join(", "),
            copies
                .iter()
                .map(|c| format!("{}/{}", c.namespace, c.secret))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        cluster: None,
        serviceaccount,
        credential: Some(FindingCredential { kind: "legacy-secret", id: None, secret }),
        pod: None,
        source_ip: None,
        source_ips: Vec::new(),
        expected_ips: Vec::new(),
        first_seen: created.iter().copied().min().unwrap_or_default(),
        last_seen: created.iter().copied().max().unwrap_or_default(),
        count: copies.len() as u64,
        user_agents: Vec::new(),
        requests: Vec::new(),
        audit_ids: Vec::new(),
        attack: Rule::LegacyTokenSharedAcrossClusters.attack(),
        explanation: format!(
            "The token Secrets {} hold the same non-expiring token (the same SHA-256 in `tokentrail collect`'s \
             dumps): it authenticates in each of these clusters that trusts the key that signed it, so the clusters \
             share their service-account signing keys or the Secret was copied by hand or by GitOps. Whoever \
             holds it in one cluster holds it in the others.",
            listed.join("; ")
        ),
        status: crate::finding::Status::Active,
        copies,
    }
}

/// `cluster prod-eu: monitoring/exporter-token (service account monitoring/exporter)`.
fn described(c: &SecretCopy) -> String {
    let sa = c.serviceaccount.as_ref().map(|sa| format!(" (service account {}/{sa})", c.namespace)).unwrap_or_default();
    format!("cluster {}: {}/{}{sa}", shown_cluster(&c.cluster), c.namespace, c.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn row(cluster: &str, ns: &str, secret: &str, sa: &str, hash: Option<&str>) -> LegacyTokenRow {
        LegacyTokenRow {
            cluster: Some(cluster.to_string()),
            namespace: ns.to_string(),
            secret: secret.to_string(),
            serviceaccount: Some(sa.to_string()),
            exists: true,
            created: Timestamp(1_700_000_000_000_000),
            age_days: None,
            last_used_label: None,
            invalid_since: None,
            mounted_by: Vec::new(),
            uses: 0,
            source_ips: Vec::new(),
            token_sha256: hash.map(str::to_string),
        }
    }

    #[test]
    fn the_same_hash_in_two_clusters_is_one_finding_naming_both_secrets() {
        let rows = [
            row("prod-eu", "monitoring", "exporter-token-abcde", "exporter", Some(HASH_A)),
            row("prod-us", "monitoring", "exporter-token-fghij", "exporter", Some(HASH_A)),
            row("prod-us", "ci", "deployer-token", "deployer", Some(HASH_B)),
        ];
        let found = findings(&rows);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(
            (f.rule, f.severity, f.cluster.as_deref(), f.count),
            (Rule::LegacyTokenSharedAcrossClusters, crate::Severity::High, None, 2)
        );
        let copies: Vec<(&str, &str, &str, Option<&str>)> = f
            .copies
            .iter()
            .map(|c| (c.cluster.as_str(), c.namespace.as_str(), c.secret.as_str(), c.serviceaccount.as_deref()))
            .collect();
        assert_eq!(
            copies,
            [
                ("prod-eu", "monitoring", "exporter-token-abcde", Some("exporter")),
                ("prod-us", "monitoring", "exporter-token-fghij", Some("exporter")),
            ]
        );
        assert_eq!(
            f.serviceaccount.as_ref().map(|sa| (sa.namespace.as_str(), sa.name.as_str())),
            Some(("monitoring", "exporter"))
        );
        for text in [&f.title, &f.explanation] {
            assert!(text.contains("prod-eu") && text.contains("prod-us"), "{text}");
        }
        assert!(
            f.explanation.contains("monitoring/exporter-token-abcde")
                && f.explanation.contains("monitoring/exporter-token-fghij")
        );
        assert!(!f.title.contains(HASH_A) && !f.explanation.contains(HASH_A), "the hash is a key, not a message");
        // Keyed by the token: the same with the clusters' rows in another order.
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(findings(&reversed), found);
    }

    #[test]
    fn the_same_hash_twice_in_one_cluster_is_not_this_rule() {
        let rows = [
            row("prod-eu", "monitoring", "exporter-token-abcde", "exporter", Some(HASH_A)),
            row("prod-eu", "backup", "exporter-copy", "exporter", Some(HASH_A)),
        ];
        assert!(findings(&rows).is_empty());
    }

    #[test]
    fn different_hashes_and_secrets_without_one_are_nothing() {
        let rows = [
            row("prod-eu", "monitoring", "exporter-token", "exporter", Some(HASH_A)),
            row("prod-us", "monitoring", "exporter-token", "exporter", Some(HASH_B)),
            row("prod-eu", "ci", "deployer-token", "deployer", None),
            row("prod-us", "ci", "deployer-token", "deployer", None),
        ];
        assert!(findings(&rows).is_empty());
    }

    #[test]
    fn a_token_only_seen_in_use_has_no_secret_to_compare() {
        let mut used = row("prod-us", "monitoring", "exporter-token", "exporter", Some(HASH_A));
        used.exists = false;
        let rows = [row("prod-eu", "monitoring", "exporter-token", "exporter", Some(HASH_A)), used];
        assert!(findings(&rows).is_empty());
    }

    #[test]
    fn three_clusters_one_finding_and_copies_that_differ_name_no_single_account() {
        let rows = [
            row("a", "monitoring", "exporter-token", "exporter", Some(HASH_A)),
            row("b", "monitoring", "exporter-token", "exporter", Some(HASH_A)),
            row("c", "ops", "scraper-token", "scraper", Some(HASH_A)),
        ];
        let found = findings(&rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].copies.len(), 3);
        assert_eq!(found[0].serviceaccount, None);
        assert_eq!(found[0].credential.as_ref().and_then(|c| c.secret.as_deref()), None);
    }
}
