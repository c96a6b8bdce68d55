//! The report: findings, the per-service-account client-address table, the legacy-token
//! inventory, and coverage (how much of the evidence could be verified, and why not the rest).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::engine::{Engine, EngineStats};
use crate::finding::Finding;
use crate::model::Place;
use crate::observation::ServiceAccountRef;
use crate::rules::{self, Context};
use crate::time::Timestamp;
use crate::usage::CredentialKey;
use crate::verdict::{Judge, Verdict};

/// Everything `analyze` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Client addresses per service account.
    pub usage: Vec<UsageRow>,
    /// Secret-based tokens.
    pub legacy_tokens: Vec<LegacyTokenRow>,
    /// What could be verified.
    pub coverage: Coverage,
}

/// One line of the client-address table: one service account, one client address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageRow {
    /// `namespace/name`.
    pub serviceaccount: String,
    /// The client address.
    pub source_ip: Option<IpAddr>,
    /// Who held the address (`pod shop/web-1`, `node worker-2`, `off-cluster`, ...).
    pub place: String,
    /// Kinds of credential used from it.
    pub credentials: Vec<&'static str>,
    /// Requests.
    pub count: u64,
    /// First request.
    pub first_seen: Timestamp,
    /// Last request.
    pub last_seen: Timestamp,
    /// The worst verdict among the credentials used from it.
    pub verdict: Verdict,
}

/// One Secret-based token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LegacyTokenRow {
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
}

/// How much of the evidence could be verified.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// Token uses (duplicate stages folded).
    pub token_uses: u64,
    /// Uses whose address was checked against the credential's pod: expected or unexpected.
    pub verified: u64,
    /// Verified and from where they should be.
    pub expected: u64,
    /// Verified and from where they should not be.
    pub unexpected: u64,
    /// Uses that could not be verified, by reason.
    pub unverified: BTreeMap<String, u64>,
    /// Uses by credential kind.
    pub by_credential: BTreeMap<String, u64>,
    /// Pods, nodes, credentials and Secrets the model knows.
    pub pods: u64,
    /// Nodes known.
    pub nodes: u64,
    /// Cluster networks (declared and node pod CIDRs).
    pub cluster_networks: Vec<String>,
    /// TokenRequests seen.
    pub mints: u64,
    /// Engine counters.
    pub engine: EngineStats,
}

impl Coverage {
    /// Share of token uses verified, in percent.
    pub fn verified_percent(&self) -> f64 {
        if self.token_uses == 0 {
            return 0.0;
        }
        100.0 * self.verified as f64 / self.token_uses as f64
    }
}

/// Evaluates everything the engine holds.
pub(crate) fn build(engine: &Engine) -> Report {
    let networks = engine.model.cluster_networks(&engine.config);
    let mints = engine.mints.by_jti();
    let judge = Judge {
        model: &engine.model,
        networks: &networks,
        config: &engine.config,
        token_secrets: &engine.token_secrets,
        mints: &mints,
    };
    let mut judged: Vec<_> = engine.uses.iter().map(|(k, g)| (k, g, judge.judge(k, g))).collect();
    judged.sort_by(|a, b| a.0.cmp(b.0));
    let ctx = Context { engine, judge: &judge, judged };
    let findings = rules::run(&ctx);
    let usage = usage_table(&ctx);
    let legacy_tokens = legacy_inventory(&ctx);
    let mut coverage = Coverage {
        pods: engine.model.pods.len() as u64,
        nodes: engine.model.nodes.len() as u64,
        cluster_networks: networks.iter().map(|n| n.to_string()).collect(),
        mints: mints.len() as u64,
        engine: engine.stats.clone(),
        ..Coverage::default()
    };
    for (key, group, judgement) in &ctx.judged {
        let n = group.uses.count;
        coverage.token_uses += n;
        *coverage.by_credential.entry(key.credential.kind().to_string()).or_default() += n;
        match judgement.verdict {
            Verdict::Expected => coverage.expected += n,
            Verdict::Unexpected => coverage.unexpected += n,
            Verdict::Unknown => {
                let why = judgement.unknown_because.map_or("unknown", |b| b.text());
                *coverage.unverified.entry(why.to_string()).or_default() += n;
            }
        }
    }
    coverage.verified = coverage.expected + coverage.unexpected;
    Report { findings, usage, legacy_tokens, coverage }
}

fn usage_table(ctx: &Context<'_>) -> Vec<UsageRow> {
    let mut rows: BTreeMap<(&ServiceAccountRef, Option<IpAddr>), UsageRow> = BTreeMap::new();
    for (key, group, judgement) in &ctx.judged {
        let row = rows.entry((&key.serviceaccount, key.client)).or_insert_with(|| UsageRow {
            serviceaccount: format!("{}/{}", key.serviceaccount.namespace, key.serviceaccount.name),
            source_ip: key.client,
            place: describe(judgement.place.as_ref()),
            credentials: Vec::new(),
            count: 0,
            first_seen: Timestamp::MAX,
            last_seen: Timestamp::MIN,
            verdict: Verdict::Expected,
        });
        if !row.credentials.contains(&key.credential.kind()) {
            row.credentials.push(key.credential.kind());
        }
        row.count += group.uses.count;
        row.first_seen = row.first_seen.min(group.first());
        row.last_seen = row.last_seen.max(group.last());
        row.verdict = row.verdict.max(judgement.verdict);
    }
    rows.into_values().collect()
}

/// Who held an address, in a few words.
fn describe(place: Option<&Place>) -> String {
    match place {
        Some(Place::Pod { name, .. }) => format!("pod {name}"),
        Some(Place::Node(n)) => format!("node {n}"),
        Some(Place::Egress) => String::from("egress"),
        Some(Place::InCluster) => String::from("in-cluster"),
        Some(Place::Loopback) => String::from("apiserver host (loopback)"),
        Some(Place::OffCluster) => String::from("off-cluster"),
        Some(Place::Unknown) | None => String::from("unknown"),
    }
}

/// Every Secret-based token: those in the evidence as Secrets, and those only seen in use.
pub(crate) fn legacy_inventory(ctx: &Context<'_>) -> Vec<LegacyTokenRow> {
    let engine = ctx.engine;
    let latest = engine.latest;
    let mut rows: BTreeMap<(String, String), LegacyTokenRow> = BTreeMap::new();
    for ((ns, name), s) in &engine.token_secrets {
        let mut mounted_by: Vec<String> =
            engine.model.pods.mounting(ns, name).iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
        mounted_by.dedup();
        rows.insert(
            (ns.clone(), name.clone()),
            LegacyTokenRow {
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
            },
        );
    }
    for (key, group, _) in &ctx.judged {
        let CredentialKey::Legacy { secret: Some(secret) } = &key.credential else { continue };
        let ns = &key.serviceaccount.namespace;
        let row = rows.entry((ns.clone(), secret.clone())).or_insert_with(|| LegacyTokenRow {
            namespace: ns.clone(),
            secret: secret.clone(),
            serviceaccount: Some(key.serviceaccount.name.clone()),
            exists: false,
            created: Timestamp::default(),
            age_days: None,
            last_used_label: None,
            invalid_since: None,
            mounted_by: engine
                .model
                .pods
                .mounting(ns, secret)
                .iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect(),
            uses: 0,
            source_ips: Vec::new(),
        });
        row.uses += group.uses.count;
        if let Some(ip) = key.client {
            let ips: BTreeSet<IpAddr> = row.source_ips.iter().copied().chain([ip]).collect();
            row.source_ips = ips.into_iter().collect();
        }
    }
    rows.into_values().collect()
}
