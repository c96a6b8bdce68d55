//! The legacy-token inventory: every Secret-based token, those in the evidence as Secrets and
//! those only seen in use. The report shows it and `legacy-token-present` reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::state::State;
use crate::time::Timestamp;
use crate::usage::CredentialKey;
use crate::verdict::Judged;

/// One Secret-based token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LegacyTokenRow {
    /// The cluster (set by the report from the engine's settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Secret name.
    pub secret: String,
    /// Service account it authenticates as.
    pub serviceaccount: Option<String>,
    /// Whether the Secret itself is in the evidence (else only its uses are).
    pub exists: bool,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Days from creation to the latest event in the evidence.
    pub age_days: Option<i64>,
    /// `kubernetes.io/legacy-token-last-used`.
    pub last_used_label: Option<String>,
    /// `kubernetes.io/legacy-token-invalid-since`.
    pub invalid_since: Option<String>,
    /// Pods that mount it.
    pub mounted_by: Vec<String>,
    /// Uses in the evidence.
    pub uses: u64,
    /// Client addresses of those uses.
    pub source_ips: Vec<IpAddr>,
    /// The SHA-256 of its token, when `tokentrail collect` wrote it (never the token): the same
    /// token in another cluster's Secret has the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

/// Every Secret-based token: those in the evidence as Secrets, and those only seen in use.
pub(crate) fn inventory(state: &State, judged: &[Judged<'_>]) -> Vec<LegacyTokenRow> {
    let latest = state.latest();
    let mut rows: BTreeMap<(String, String), LegacyTokenRow> = BTreeMap::new();
    for ((ns, name), s) in state.token_secrets() {
        let mut mounted_by: Vec<String> =
            state.pods().mounting(ns, name).iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
        mounted_by.dedup();
        rows.insert(
            (ns.clone(), name.clone()),
            LegacyTokenRow {
                cluster: None,
                namespace: ns.clone(),
                secret: name.clone(),
                serviceaccount: s.serviceaccount.clone(),
                exists: true,
                created: s.time,
                age_days: (s.time.0 > 0 && latest > s.time).then(|| (latest.0 - s.time.0) / (86_400 * 1_000_000)),
                last_used_label: s.last_used.clone(),
                invalid_since: s.invalid_since.clone(),
                mounted_by,
                uses: 0,
                source_ips: Vec::new(),
                token_sha256: s.token_sha256.clone(),
            },
        );
    }
    for (key, group, _) in judged {
        let CredentialKey::Legacy { secret: Some(secret) } = &key.credential else { continue };
        let ns = &key.serviceaccount.namespace;
        let row = rows.entry((ns.clone(), secret.clone())).or_insert_with(|| LegacyTokenRow {
            cluster: None,
            namespace: ns.clone(),
            secret: secret.clone(),
            serviceaccount: Some(key.serviceaccount.name.clone()),
            exists: false,
            created: Timestamp::default(),
            age_days: None,
            last_used_label: None,
            invalid_since: None,
            mounted_by: state
                .pods()
                .mounting(ns, secret)
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect(),
            uses: 0,
            source_ips: Vec::new(),
            token_sha256: None,
        });
        row.uses += group.uses.count;
        if let Some(ip) = key.client {
            let ips: BTreeSet<IpAddr> = row.source_ips.iter().copied().chain([ip]).collect();
            row.source_ips = ips.into_iter().collect();
        }
    }
    rows.into_values().collect()
}
