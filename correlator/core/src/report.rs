//! The report: incidents (the findings that tell one story, grouped), findings, the
//! per-service-account client-address table, the legacy-token inventory, coverage (how much of
//! the evidence could be verified, and why not the rest), and the timelines of the service
//! accounts that findings name.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::config::EngineConfig;
use crate::finding::{finding_id, Finding, Rule};
use crate::incident::{self, Incident, PodEntry};
use crate::legacy_tokens;
use crate::model::{Place, Pods};
use crate::observation::ServiceAccountRef;
use crate::proxies;
use crate::rules::{self, Context};
use crate::state::{self, EngineStats, State};
use crate::time::Timestamp;
use crate::usage::{CredentialKey, TimeBuckets};
use crate::verdict::{Judge, Verdict};

pub use crate::legacy_tokens::LegacyTokenRow;

/// Everything `analyze` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Incidents: the findings that tell one story, grouped, most severe first (none from
    /// [`Engine::report_without_incidents`](crate::Engine::report_without_incidents)).
    pub incidents: Vec<Incident>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Client addresses per service account.
    pub usage: Vec<UsageRow>,
    /// Secret-based tokens.
    pub legacy_tokens: Vec<LegacyTokenRow>,
    /// What could be verified.
    pub coverage: Coverage,
    /// Service accounts named by findings, most severe first: their pods, credentials and uses
    /// over time.
    pub timelines: Vec<Timeline>,
}

/// At most this many timelines: one per service account a finding names, most severe first.
const MAX_TIMELINES: usize = 100;

/// One service account over time: the pods its credentials belong to, and each credential's life
/// and uses, per client address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    /// Cluster label.
    pub cluster: Option<String>,
    /// `namespace/name`.
    pub serviceaccount: String,
    /// Pods bound to its credentials or mounting its Secret tokens, by name.
    pub pods: Vec<TimelinePod>,
    /// Its credentials, in order of first use.
    pub credentials: Vec<TimelineCredential>,
}

/// A pod's life as far as the evidence tells.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelinePod {
    /// `namespace/name`.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Node.
    pub node: Option<String>,
    /// Addresses it held, with the earliest time each was seen.
    pub addresses: Vec<(IpAddr, Timestamp)>,
    /// Earliest time the evidence places it alive.
    pub first_seen: Timestamp,
    /// Latest time the evidence places it alive.
    pub last_seen: Timestamp,
    /// When its deletion was requested.
    pub deleted: Option<Timestamp>,
}

/// One credential's life and uses.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineCredential {
    /// `pod-bound`, `unbound`, `legacy-secret` or `unknown`.
    pub kind: &'static str,
    /// `JTI=...`, `secret=ns/name`, `pod-uid=...`: as finding ids name it.
    pub name: String,
    /// The pod it is bound to (`namespace/name`).
    pub pod: Option<String>,
    /// When its TokenRequest was made, when the evidence has it.
    pub minted: Option<Timestamp>,
    /// When its pod's next credential came into use: uses after that (and a grace) are replays.
    pub superseded: Option<Timestamp>,
    /// Its uses, one entry per client address.
    pub uses: Vec<TimelineUses>,
}

/// The uses of one credential from one client address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineUses {
    /// The client address.
    pub source_ip: Option<IpAddr>,
    /// Who held it (as in [`UsageRow::place`]).
    pub place: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Requests.
    pub count: u64,
    /// First request.
    pub first_seen: Timestamp,
    /// Last request.
    pub last_seen: Timestamp,
    /// When, in bounded buckets.
    pub over_time: TimeBuckets,
}

/// One line of the client-address table: one service account, one client address, one verdict
/// (an address whose credentials were judged differently has a row per verdict).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageRow {
    /// The cluster (`--cluster`, or the `NAME` of `NAME=PATH` evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `namespace/name`.
    pub serviceaccount: String,
    /// The client address.
    pub source_ip: Option<IpAddr>,
    /// Who held the address (`pod shop/web-1`, `node worker-2`, `off-cluster`, ...).
    pub place: Cow<'static, str>,
    /// Kinds of credential used from it.
    pub credentials: CredentialKinds,
    /// Requests.
    pub count: u64,
    /// First request.
    pub first_seen: Timestamp,
    /// Last request.
    pub last_seen: Timestamp,
    /// The verdict on these uses.
    pub verdict: Verdict,
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
    /// What the evidence taught about the cluster beyond the dumps, and what follows from it.
    pub learned: Vec<String>,
    /// In a report of several clusters ([`merge`]), each cluster's own coverage (the fields
    /// above are their sums); empty otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, Coverage>,
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

/// A cluster's name as every report shows it: evidence given without one is `(unnamed)`.
pub fn shown_cluster(cluster: &str) -> &str {
    if cluster.is_empty() {
        "(unnamed)"
    } else {
        cluster
    }
}

/// One report of several clusters' reports, each made by its own engine (the cluster is in every
/// key, so nothing of two clusters mixes): findings, incidents and timelines in the reports'
/// order, with the findings only several clusters show (`legacy-token-shared-across-clusters`,
/// [`crate::shared_tokens`]), the tables' rows cluster by cluster, and coverage summed, with each cluster's own
/// under [`Coverage::clusters`]. Incidents never span two clusters (their keys carry the
/// cluster), so each report's incidents are already those of the merged findings. Reports are
/// given with their clusters' names.
pub fn merge(reports: impl IntoIterator<Item = (String, Report)>) -> Report {
    let mut merged = Report {
        incidents: Vec::new(),
        findings: Vec::new(),
        usage: Vec::new(),
        legacy_tokens: Vec::new(),
        coverage: Coverage::default(),
        timelines: Vec::new(),
    };
    for (name, r) in reports {
        merged.incidents.extend(r.incidents);
        merged.findings.extend(r.findings);
        merged.usage.extend(r.usage);
        merged.legacy_tokens.extend(r.legacy_tokens);
        merged.timelines.extend(r.timelines);
        merged.coverage.add(&name, &r.coverage);
        merged.coverage.clusters.insert(name, r.coverage);
    }
    // One token in several clusters' Secrets: only a run over several clusters can see it.
    let shared = crate::shared_tokens::findings(&merged.legacy_tokens);
    merged.findings.extend(shared.iter().cloned());
    merged.findings.sort_by(|a, b| {
        (std::cmp::Reverse(a.severity), a.first_seen, a.rule, &a.id).cmp(&(
            std::cmp::Reverse(b.severity),
            b.first_seen,
            b.rule,
            &b.id,
        ))
    });
    // One attacker in several clusters is one incident (sorted as one report sorts them).
    merged.incidents = crate::incident::join_across_clusters(std::mem::take(&mut merged.incidents));
    merged.incidents = crate::incident::join_shared_tokens(std::mem::take(&mut merged.incidents), &shared);
    // Timelines most severe first, as in one report: by the first finding that names them.
    let mut rank: BTreeMap<(Option<&str>, String), usize> = BTreeMap::new();
    for (i, f) in merged.findings.iter().enumerate() {
        if let Some(sa) = &f.serviceaccount {
            rank.entry((f.cluster.as_deref(), format!("{}/{}", sa.namespace, sa.name))).or_insert(i);
        }
    }
    let mut timelines = std::mem::take(&mut merged.timelines);
    timelines
        .sort_by_key(|t| rank.get(&(t.cluster.as_deref(), t.serviceaccount.clone())).copied().unwrap_or(usize::MAX));
    timelines.truncate(MAX_TIMELINES);
    merged.timelines = timelines;
    merged
}

impl Coverage {
    /// Adds cluster `name`'s counts to these; its networks and lessons are prefixed with its name.
    fn add(&mut self, name: &str, other: &Coverage) {
        self.token_uses += other.token_uses;
        self.verified += other.verified;
        self.expected += other.expected;
        self.unexpected += other.unexpected;
        for (why, n) in &other.unverified {
            *self.unverified.entry(why.clone()).or_default() += n;
        }
        for (kind, n) in &other.by_credential {
            *self.by_credential.entry(kind.clone()).or_default() += n;
        }
        self.pods += other.pods;
        self.nodes += other.nodes;
        self.mints += other.mints;
        let name = shown_cluster(name);
        self.cluster_networks.extend(other.cluster_networks.iter().map(|n| format!("{name}: {n}")));
        self.learned.extend(other.learned.iter().map(|l| format!("{name}: {l}")));
        self.engine.observations += other.engine.observations;
        self.engine.token_uses += other.engine.token_uses;
        self.engine.duplicate_stages += other.engine.duplicate_stages;
        self.engine.pod_accesses_dropped += other.engine.pod_accesses_dropped;
    }
}

/// Whether a report groups its findings into incidents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Incidents {
    /// `analyze`'s reports.
    Made,
    /// The stream's: it sends findings only.
    Skipped,
}

/// Evaluates everything the state holds, under these settings.
pub(crate) fn build(state: &State, config: &EngineConfig, with: Incidents) -> Report {
    let networks = state.model().cluster_networks(config);
    let mints = state.mints().by_jti();
    let judge = Judge {
        model: state.model(),
        networks: &networks,
        config,
        token_secrets: state.token_secrets(),
        mints: &mints,
        all_mints: state.mints(),
    };
    // Groups are put in key order before they are judged: a key and a group reference sort
    // quicker than a judged group, and judging in key order meets each pod again while it is
    // still in cache. Keys are unique, so an unstable sort gives the one order.
    let fronts = state.hops().fronts(state.model());
    let (moved, replaced) = proxies::through_fronts(state.use_groups(), &fronts);
    let mut groups: Vec<_> = state
        .use_groups()
        .filter(|(key, _)| !replaced.contains(key))
        .chain(moved.iter().map(|(k, g)| (k, g)))
        .collect();
    groups.sort_unstable_by_key(|(key, _)| *key);
    let judged: Vec<_> = groups.into_iter().map(|(k, g)| (k, g, judge.judge(k, g))).collect();
    let mut ctx = Context { state, config, judge: &judge, judged, legacy: Vec::new() };
    ctx.legacy = legacy_tokens::inventory(state, &ctx.judged);
    // Counted before the findings and the table are made: its list is as long as the groups.
    let sighted_only = sighted_only(&ctx);
    let findings = rules::run(&ctx);
    let usage = usage_table(&ctx);
    let mut legacy_tokens = std::mem::take(&mut ctx.legacy);
    for row in &mut legacy_tokens {
        row.cluster.clone_from(&config.cluster);
    }
    let mut coverage = Coverage {
        pods: (state.pods().len() + sighted_only) as u64,
        nodes: state.nodes().len() as u64,
        cluster_networks: networks.iter().map(|n| n.to_string()).collect(),
        mints: state.mints().len() as u64,
        engine: state.stats().clone(),
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
    coverage.learned = learned(state, &networks, &fronts);
    let timelines = timelines(&ctx, &findings);
    let incidents = match with {
        Incidents::Made => incidents(&ctx, &findings, &usage, &timelines),
        Incidents::Skipped => Vec::new(),
    };
    Report { incidents, findings, usage, legacy_tokens, coverage, timelines }
}

/// The incidents of these findings, with what the state holds beside them: who exec'd into which
/// pod, and who read token Secrets.
fn incidents(ctx: &Context<'_>, findings: &[Finding], usage: &[UsageRow], timelines: &[Timeline]) -> Vec<Incident> {
    let cluster = ctx.config.cluster.as_deref();
    let entries = ctx
        .state
        .accesses()
        .iter()
        .filter(|a| a.access.code.is_none_or(|c| c < 400))
        .map(|a| PodEntry {
            cluster: ctx.config.cluster.clone(),
            time: a.access.time,
            what: a.what(),
            principal: a.access.principal.clone(),
            client: a.client,
            namespace: a.access.namespace.clone(),
            pod: a.access.pod_name.clone(),
        })
        .collect();
    // A Secret-read finding is about a principal; its id is made from it (see rules::access).
    let read_ids: BTreeSet<&str> =
        findings.iter().filter(|f| f.rule == Rule::SaTokenSecretRead).map(|f| f.id.as_str()).collect();
    let mut principals = BTreeMap::new();
    if !read_ids.is_empty() {
        for (principal, namespace) in ctx.state.secret_reads().keys().chain(ctx.state.secret_reads_elsewhere().keys()) {
            let scope = namespace.as_deref().unwrap_or("all namespaces");
            let id = finding_id(Rule::SaTokenSecretRead, cluster, &format!("{principal}@{scope}"), "");
            if read_ids.contains(id.as_str()) {
                principals.insert(id, principal.clone());
            }
        }
    }
    let context = incident::Context {
        entries,
        exec_window: ctx.config.exec_window,
        principals,
        usage,
        timelines,
        attacker_ips: BTreeSet::new(),
    };
    incident::incidents(findings, &context)
}

/// How many pods only their tokens' uses show (they stay in their use groups: see
/// [`crate::model::Pods::note_sightings`]).
fn sighted_only(ctx: &Context<'_>) -> usize {
    let pods = ctx.state.pods();
    let mut uids: Vec<&str> = ctx
        .judged
        .iter()
        .filter_map(|(key, group, _)| state::sighting(key, group))
        .map(|s| s.uid)
        .filter(|uid| !pods.contains(uid))
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids.len()
}

/// What the evidence itself taught about the cluster, in sentences for the coverage section.
fn learned(state: &State, networks: &[crate::net::IpNet], fronts: &BTreeSet<IpAddr>) -> Vec<String> {
    let nodes = state.nodes();
    let mut lines = Vec::new();
    let from_log = nodes.iter().filter(|n| n.learned).count();
    if from_log > 0 {
        lines.push(format!(
            "{from_log} of {} nodes and their addresses learned from the audit log (kubelets' requests, Node and Pod bodies)",
            nodes.len()
        ));
    }
    let with_os = nodes.iter().filter(|n| n.os.is_some()).count();
    if with_os > 0 {
        lines.push(format!("operating system known for {with_os} nodes (nodes.json, kubelets' user agents)"));
    }
    lines.push(String::from(if !networks.is_empty() {
        "cluster extent: declared networks and node pod CIDRs"
    } else if state.model().extent_known(networks) {
        "cluster extent: every known node talks from a private address, so a routable client is outside the cluster"
    } else {
        "cluster extent unknown (no pod CIDRs; nodes unknown or talking from routable addresses): verdicts of \
         'outside the cluster' by address are held at medium; add nodes.json or --cluster-network"
    }));
    if !fronts.is_empty() {
        let list: Vec<String> = fronts.iter().map(|ip| ip.to_string()).collect();
        lines.push(format!(
            "apiservers in front of aggregated apiservers, learned from forwarded requests: {}",
            list.join(", ")
        ));
    }
    lines
}

/// A timeline for each service account the findings name, most severe first.
fn timelines(ctx: &Context<'_>, findings: &[Finding]) -> Vec<Timeline> {
    let mut named: Vec<ServiceAccountRef> = Vec::new();
    for sa in findings.iter().filter_map(|f| f.serviceaccount.as_ref()) {
        let sa = ServiceAccountRef { namespace: sa.namespace.clone(), name: sa.name.clone() };
        if !named.contains(&sa) && named.len() < MAX_TIMELINES {
            named.push(sa);
        }
    }
    named.iter().map(|sa| timeline(ctx, sa)).collect()
}

fn timeline(ctx: &Context<'_>, sa: &ServiceAccountRef) -> Timeline {
    let pods = ctx.state.pods();
    // Pods only their tokens' uses show, as noting each use would have made them.
    let mut sighted = Pods::default();
    let mut credentials: BTreeMap<&CredentialKey, TimelineCredential> = BTreeMap::new();
    let mut pod_uids: BTreeSet<&str> = BTreeSet::new();
    for (key, group, judgement) in ctx.of_serviceaccount(sa) {
        let c = credentials.entry(&key.credential).or_insert_with(|| TimelineCredential {
            kind: key.credential.kind(),
            name: key.credential.stable_name(sa),
            pod: group.pod_name.as_ref().map(|p| format!("{}/{p}", sa.namespace)),
            minted: match &key.credential {
                CredentialKey::PodBound { jti: Some(jti), .. } | CredentialKey::Unbound { jti } => {
                    ctx.judge.minted_at(jti)
                }
                _ => None,
            },
            superseded: None,
            uses: Vec::new(),
        });
        c.uses.push(TimelineUses {
            source_ip: key.client,
            place: describe(judgement.place.as_ref()).into_owned(),
            verdict: judgement.verdict,
            count: group.uses.count,
            first_seen: group.first(),
            last_seen: group.last(),
            over_time: group.over_time().into_owned(),
        });
        match &key.credential {
            CredentialKey::PodBound { pod_uid, .. } => {
                pod_uids.insert(pod_uid);
                if let Some(s) = state::sighting(key, group).filter(|_| !pods.contains(pod_uid)) {
                    sighted.note_bound(s.uid, s.namespace, s.name, s.node, s.first);
                    sighted.note_bound(s.uid, s.namespace, s.name, s.node, s.last);
                }
            }
            CredentialKey::Legacy { secret } => {
                pod_uids.extend(ctx.judge.mounting_pods(sa, secret.as_deref()).into_iter().map(|p| p.uid.as_str()));
            }
            _ => {}
        }
    }
    let first_use = |c: &TimelineCredential| c.uses.iter().map(|u| u.first_seen).min();
    // A pod's credential is superseded when the pod's next one (by first use) comes into use,
    // as `token-superseded-use` reads it.
    let mut by_pod: BTreeMap<&str, Vec<(Timestamp, &CredentialKey)>> = BTreeMap::new();
    for (key, c) in &credentials {
        if let (CredentialKey::PodBound { pod_uid, .. }, Some(t)) = (key, first_use(c)) {
            by_pod.entry(pod_uid).or_default().push((t, key));
        }
    }
    let mut superseded: Vec<(&CredentialKey, Timestamp)> = Vec::new();
    for chain in by_pod.values_mut() {
        chain.sort();
        superseded.extend(chain.windows(2).map(|w| (w[0].1, w[1].0)));
    }
    for (key, t) in superseded {
        if let Some(c) = credentials.get_mut(key) {
            c.superseded = Some(t);
        }
    }
    let mut credentials: Vec<TimelineCredential> = credentials.into_values().collect();
    credentials.sort_by(|a, b| (first_use(a), &a.name).cmp(&(first_use(b), &b.name)));
    let mut pods: Vec<TimelinePod> = pod_uids
        .into_iter()
        .filter_map(|uid| pods.get(uid).or_else(|| sighted.get(uid)))
        .map(|p| TimelinePod {
            name: format!("{}/{}", p.namespace, p.name),
            uid: p.uid.clone(),
            node: p.node.clone(),
            addresses: p.addresses.iter().map(|(ip, t)| (*ip, *t)).collect(),
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            deleted: p.deleted,
        })
        .collect();
    pods.sort_by(|a, b| (&a.name, a.first_seen).cmp(&(&b.name, b.first_seen)));
    Timeline {
        cluster: ctx.config.cluster.clone(),
        serviceaccount: format!("{}/{}", sa.namespace, sa.name),
        pods,
        credentials,
    }
}

fn usage_table(ctx: &Context<'_>) -> Vec<UsageRow> {
    let mut rows = Vec::new();
    for groups in ctx.by_serviceaccount() {
        // One row per address and verdict, so the rows' uses add up to the coverage figures:
        // a row whose credentials had different verdicts would count all its uses under the
        // worst of them.
        let mut by_client: BTreeMap<(Option<IpAddr>, Verdict), UsageRow> = BTreeMap::new();
        for (key, group, judgement) in groups {
            let row = by_client.entry((key.client, judgement.verdict)).or_insert_with(|| UsageRow {
                cluster: ctx.config.cluster.clone(),
                serviceaccount: [key.serviceaccount.namespace.as_str(), "/", &key.serviceaccount.name].concat(),
                source_ip: key.client,
                place: describe(judgement.place.as_ref()),
                credentials: CredentialKinds::default(),
                count: 0,
                first_seen: Timestamp::MAX,
                last_seen: Timestamp::MIN,
                verdict: judgement.verdict,
            });
            row.credentials.insert(key.credential.kind());
            row.count += group.uses.count;
            row.first_seen = row.first_seen.min(group.first());
            row.last_seen = row.last_seen.max(group.last());
        }
        rows.extend(by_client.into_values());
    }
    rows
}

/// Who held an address, in a few words (a row per client address: most need no copy).
fn describe(place: Option<&Place>) -> Cow<'static, str> {
    match place {
        Some(Place::Pod { name, .. }) => Cow::Owned(format!("pod {name}")),
        Some(Place::Node(n)) => Cow::Owned(format!("node {n}")),
        Some(Place::Egress) => Cow::Borrowed("egress"),
        Some(Place::InCluster) => Cow::Borrowed("in-cluster"),
        Some(Place::Loopback) => Cow::Borrowed("apiserver host (loopback)"),
        Some(Place::OffCluster) => Cow::Borrowed("off-cluster"),
        Some(Place::Unknown) | None => Cow::Borrowed("unknown"),
    }
}

/// The kinds of credential used from an address (`pod-bound`, `unbound`, `legacy-secret`,
/// `unknown`, as [`CredentialKey::kind`] names them): a set of four, one byte, listed in that
/// order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialKinds(u8);

impl CredentialKinds {
    const NAMES: [&'static str; 4] = ["pod-bound", "unbound", "legacy-secret", "unknown"];

    /// Adds a kind (a name [`CredentialKey::kind`] gives).
    pub fn insert(&mut self, kind: &str) {
        if let Some(i) = Self::NAMES.iter().position(|k| *k == kind) {
            self.0 |= 1 << i;
        }
    }

    /// The kinds, in the order above.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES.into_iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, k)| k)
    }
}

impl Serialize for CredentialKinds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cluster: &str, uses: u64, network: &str) -> Report {
        let row = UsageRow {
            cluster: Some(cluster.to_string()),
            serviceaccount: String::from("shop/api"),
            source_ip: "10.0.0.5".parse().ok(),
            place: Cow::Borrowed("off-cluster"),
            credentials: CredentialKinds::default(),
            count: uses,
            first_seen: Timestamp(1),
            last_seen: Timestamp(2),
            verdict: Verdict::Unexpected,
        };
        Report {
            incidents: Vec::new(),
            findings: Vec::new(),
            usage: vec![row],
            legacy_tokens: Vec::new(),
            coverage: Coverage {
                token_uses: uses,
                verified: uses,
                unexpected: uses,
                pods: 1,
                unverified: BTreeMap::from([(String::from("no pod"), 1)]),
                cluster_networks: vec![network.to_string()],
                ..Coverage::default()
            },
            timelines: Vec::new(),
        }
    }

    #[test]
    fn merge_keeps_each_clusters_rows_and_coverage_and_sums_the_coverage() {
        let merged = merge([
            (String::from("eu"), report("eu", 3, "10.0.0.0/16")),
            (String::from("us"), report("us", 4, "10.0.0.0/16")),
        ]);
        let rows: Vec<(Option<&str>, u64)> = merged.usage.iter().map(|r| (r.cluster.as_deref(), r.count)).collect();
        assert_eq!(rows, [(Some("eu"), 3), (Some("us"), 4)]);
        let c = &merged.coverage;
        assert_eq!((c.token_uses, c.unexpected, c.pods), (7, 7, 2));
        assert_eq!(c.unverified.get("no pod"), Some(&2));
        assert_eq!(c.cluster_networks, ["eu: 10.0.0.0/16", "us: 10.0.0.0/16"]);
        let per_cluster: Vec<(&str, u64)> = c.clusters.iter().map(|(n, c)| (n.as_str(), c.token_uses)).collect();
        assert_eq!(per_cluster, [("eu", 3), ("us", 4)]);
    }
}
