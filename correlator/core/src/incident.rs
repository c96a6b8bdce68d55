//! Incidents (`tokentrail.incident/v1`): the findings that tell one story, grouped, with that
//! story told in time order (docs/report.md, "Incidents").
//!
//! A responder thinks in incidents, not findings: an exec into a pod, the token taken from it, its
//! replay from outside and its use after rotation are four findings and one incident. Findings
//! join when, within one cluster and [`SPAN`] of each other, they share
//! * a credential (`JTI=…`, a Secret's token, a pod's token when there is no JTI), including a
//!   token Secret that an `sa-token-secret-read` finding's reader fetched by name;
//! * an attacker address: a client address the engine placed outside every cluster network;
//! * a principal: the user who exec'd into the pod whose token was then used, or who read the
//!   token Secrets;
//! * a service account, for findings whose credential the evidence does not identify (GKE
//!   entries carry no credential id).
//!
//! Sharing a service account alone does not join findings whose credentials are known: two
//! replays of two credentials of one account from two addresses are two incidents until
//! something else (an address, an exec) ties them. Neither does sharing an in-cluster address:
//! a node's address is shared by every pod behind its SNAT.
//!
//! Pure: built from the findings and the facts the report holds beside them ([`Context`]); no
//! state of its own, so the same findings always give the same incidents, in any order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::finding::{Finding, FindingRequest, Rule, Severity};
use crate::report::{Timeline, UsageRow};
use crate::time::{Micros, Timestamp, MINUTE};

/// Schema name carried by every incident.
pub const SCHEMA: &str = "tokentrail.incident/v1";

/// Steps a story tells; the rest are counted ([`Incident::story_left_out`]).
pub const MAX_STEPS: usize = 200;

/// Findings that share a key join only when they are at most this far apart: an address or a
/// principal seen again days later may be someone else.
pub const SPAN: Micros = 24 * 60 * MINUTE;

/// An exec, attach or port-forward into a pod, as the story tells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodEntry {
    /// Cluster label.
    pub cluster: Option<String>,
    /// When it was requested.
    pub time: Timestamp,
    /// `exec`, `attach` or `port-forward`.
    pub what: &'static str,
    /// Who ran it.
    pub principal: String,
    /// From where.
    pub client: Option<IpAddr>,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

/// What the report holds beside the findings that joins them or tells their story.
#[derive(Clone, Debug, Default)]
pub struct Context<'a> {
    /// Execs, attaches and port-forwards that were allowed.
    pub entries: Vec<PodEntry>,
    /// How long after an exec a token use is tied to it (`exec-then-token-use`'s window).
    pub exec_window: Micros,
    /// The principal behind findings whose subject is a principal rather than a credential
    /// (`sa-token-secret-read`), by finding id.
    pub principals: BTreeMap<String, String>,
    /// The client-address table: addresses placed `off-cluster` are attacker addresses.
    pub usage: &'a [UsageRow],
    /// Attacker addresses known otherwise: the stream has findings but no address table, and
    /// takes the addresses of `token-used-off-cluster` findings (`crate::incident_feed`).
    pub attacker_ips: BTreeSet<IpAddr>,
    /// Timelines: when credentials were minted and superseded, when pods were deleted.
    pub timelines: &'a [Timeline],
}

/// What a step of a story is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// A credential minted (TokenRequest).
    Mint,
    /// Token Secrets read: the theft of Secret-based tokens.
    SecretRead,
    /// An exec, attach or port-forward into the pod whose token was then used.
    Exec,
    /// The token file opened on its node by a reader that may not read it (a node agent saw
    /// it): the theft itself.
    TokenFileRead,
    /// The first use of a credential from an address it does not belong to.
    ForeignUse,
    /// The pod moved to a newer credential; the old one is stale from here.
    Rotation,
    /// The old credential still used after the rotation.
    UseAfterRotation,
    /// The pod deleted, and its bound tokens with it.
    Deletion,
    /// Bearer failures (401) from an address that had used the token.
    AuthFailure,
}

impl StepKind {
    /// The kebab-case name records use.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Mint => "mint",
            StepKind::SecretRead => "secret-read",
            StepKind::Exec => "exec",
            StepKind::TokenFileRead => "token-file-read",
            StepKind::ForeignUse => "foreign-use",
            StepKind::Rotation => "rotation",
            StepKind::UseAfterRotation => "use-after-rotation",
            StepKind::Deletion => "deletion",
            StepKind::AuthFailure => "auth-failure",
        }
    }
}

/// One step of an incident's story.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// When.
    pub time: Timestamp,
    /// What kind of step.
    pub kind: StepKind,
    /// One line for a human.
    pub text: String,
    /// What was done in it (requests with their response codes), one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The findings that evidence it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// An incident: findings that tell one story.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Stable id: a hash of the smallest member finding id.
    pub id: String,
    /// The most severe member's, raised to critical when a theft and a use from elsewhere are
    /// both in it.
    pub severity: Severity,
    /// One line for a human: the chain (whose tokens, taken by whom, used from where) when it
    /// holds one, else its most severe finding's title.
    pub title: String,
    /// Cluster labels of its findings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// The first step of its story (its members' first event when the story is empty).
    pub first_seen: Timestamp,
    /// The last step of its story (its members' last event when the story is empty).
    pub last_seen: Timestamp,
    /// Service accounts involved (`namespace/name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub serviceaccounts: Vec<String>,
    /// Credentials involved (`JTI=…`, `secret=namespace/name`, `pod-uid=…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Client addresses placed outside every cluster network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attacker_ips: Vec<IpAddr>,
    /// Principals who exec'd into a pod or read token Secrets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Member finding ids, most severe first (as the report lists findings).
    pub findings: Vec<String>,
    /// The story, in time order: its first [`MAX_STEPS`] steps.
    pub story: Vec<Step>,
    /// Steps past [`MAX_STEPS`], counted: a spray of a million tokens is a million uses.
    #[serde(skip_serializing_if = "is_zero")]
    pub story_left_out: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Rules whose findings are uses of a credential from an address it does not belong to.
const USE_RULES: [Rule; 8] = [
    Rule::TokenUsedOffCluster,
    Rule::TokenUsedFromOtherWorkload,
    Rule::TokenMultiOrigin,
    Rule::TokenSupersededUse,
    Rule::ExecThenTokenUse,
    Rule::LegacyTokenForeignIp,
    Rule::TokenClientChanged,
    Rule::TokenHarvestedThenUsed,
];

/// Rules whose findings are the taking of a credential.
const THEFT_RULES: [Rule; 5] = [
    Rule::ExecThenTokenUse,
    Rule::SaTokenSecretRead,
    Rule::TokenFileReadByOtherPod,
    Rule::TokenFileReadOnHost,
    Rule::TokenHarvestedThenUsed,
];

/// The incident id: a hash of the smallest member finding id (stable while the smallest stays).
pub fn incident_id(smallest_member: &str) -> String {
    let mut h = Sha256::new();
    h.update(SCHEMA.as_bytes());
    h.update([0u8]);
    h.update(smallest_member.as_bytes());
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Groups the findings into incidents, most severe first, then by time, then by id. Every
/// finding but an inventory item (`legacy-token-present`) and a withdrawn one is in exactly one.
pub fn incidents(findings: &[Finding], ctx: &Context<'_>) -> Vec<Incident> {
    incidents_of(findings, ctx)
}

/// [`incidents`] of findings held elsewhere than in one slice (the stream's feed holds them by
/// id: copying them all into a slice for every batch would cost what grouping them does).
pub fn incidents_of<'f>(findings: impl IntoIterator<Item = &'f Finding>, ctx: &Context<'_>) -> Vec<Incident> {
    let mut members: Vec<&Finding> =
        findings.into_iter().filter(|f| f.status.is_active() && f.rule != Rule::LegacyTokenPresent).collect();
    // Input order must not matter: the report's own order, made here.
    members.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    members.dedup_by(|a, b| a.id == b.id);
    let foreign: BTreeSet<IpAddr> = ctx
        .usage
        .iter()
        .filter(|r| r.place == "off-cluster")
        .filter_map(|r| r.source_ip)
        .chain(ctx.attacker_ips.iter().copied())
        .collect();
    let execs: Vec<Option<&PodEntry>> = members.iter().map(|f| exec_of(f, ctx)).collect();
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in members.iter().enumerate() {
        for key in keys(f, execs[i], ctx, &foreign) {
            by_key.entry(key).or_default().push(i);
        }
    }
    let mut sets = UnionFind::new(members.len());
    for list in by_key.values_mut() {
        list.sort_by(|&a, &b| (members[a].first_seen, &members[a].id).cmp(&(members[b].first_seen, &members[b].id)));
        // A sweep in time: each joins the run before it if it starts within SPAN of the run's end.
        let mut run_end = Timestamp::MIN;
        let mut prev: Option<usize> = None;
        for &i in list.iter() {
            let f = members[i];
            if let Some(p) = prev.filter(|_| f.first_seen <= run_end.plus(SPAN)) {
                sets.union(p, i);
                run_end = run_end.max(f.last_seen);
            } else {
                run_end = f.last_seen;
            }
            prev = Some(i);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..members.len() {
        groups.entry(sets.find(i)).or_default().push(i);
    }
    let mut out: Vec<Incident> = groups
        .into_values()
        .map(|ids| {
            let group: Vec<&Finding> = ids.iter().map(|&i| members[i]).collect();
            let entries: Vec<&PodEntry> = ids.iter().filter_map(|&i| execs[i]).collect();
            incident(&group, &entries, ctx, &foreign)
        })
        .collect();
    out.sort_by(|a, b| rank(a).cmp(&rank(b)));
    out
}

/// Joins incidents of different clusters that share an attacker address within [`SPAN`] of
/// each other: one attacker replaying tokens in several clusters is one incident. Each cluster's
/// incidents come from [`incidents`] on that cluster's findings alone (its engine judged which
/// addresses are off-cluster), so only the attacker addresses join here: names, credentials and
/// in-cluster addresses mean nothing across clusters.
pub fn join_across_clusters(incidents: Vec<Incident>) -> Vec<Incident> {
    let mut by_address: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, incident) in incidents.iter().enumerate() {
        for ip in &incident.attacker_ips {
            by_address.entry(*ip).or_default().push(i);
        }
    }
    let mut sets = UnionFind::new(incidents.len());
    for list in by_address.values_mut() {
        list.sort_by(|&a, &b| {
            (incidents[a].first_seen, &incidents[a].id).cmp(&(incidents[b].first_seen, &incidents[b].id))
        });
        let mut run: Option<(usize, Timestamp)> = None;
        for &i in list.iter() {
            let incident = &incidents[i];
            run = match run {
                Some((prev, end)) if incident.first_seen <= end.plus(SPAN) => {
                    if incidents[prev].clusters != incident.clusters {
                        sets.union(prev, i);
                    }
                    Some((i, end.max(incident.last_seen)))
                }
                _ => Some((i, incident.last_seen)),
            };
        }
    }
    joined_sets(incidents, &mut sets)
}

/// Incidents whose sets were joined, each set as one incident ([`joined`]), ranked.
fn joined_sets(incidents: Vec<Incident>, sets: &mut UnionFind) -> Vec<Incident> {
    let mut groups: BTreeMap<usize, Vec<Incident>> = BTreeMap::new();
    let roots: Vec<usize> = (0..incidents.len()).map(|i| sets.find(i)).collect();
    for (incident, root) in incidents.into_iter().zip(roots) {
        groups.entry(root).or_default().push(incident);
    }
    let mut out: Vec<Incident> = groups
        .into_values()
        .filter_map(|mut group| if group.len() == 1 { group.pop() } else { Some(joined(group)) })
        .collect();
    out.sort_by(|a, b| rank(a).cmp(&rank(b)));
    out
}

/// Adds the `legacy-token-shared-across-clusters` findings of a merged report to its incidents:
/// each joins every incident of a cluster it names that holds one of its Secrets as a credential
/// (`secret=<namespace>/<name>`, a use or a read of that token there), whatever the time: the
/// copy exists the whole time. One with no such incident is an incident of its own. So a token
/// copied from one cluster and misused in another is one story.
pub fn join_shared_tokens(incidents: Vec<Incident>, shared: &[Finding]) -> Vec<Incident> {
    if shared.is_empty() {
        return incidents;
    }
    let mut all: Vec<Incident> = shared.iter().map(shared_token).collect();
    let own = all.len();
    all.extend(incidents);
    let mut sets = UnionFind::new(all.len());
    for (s, f) in shared.iter().enumerate() {
        for (i, incident) in all.iter().enumerate().skip(own) {
            let holds = f.copies.iter().any(|c| {
                // The evidence given without a name is the cluster "", which incidents leave out.
                let in_cluster = if c.cluster.is_empty() {
                    incident.clusters.is_empty()
                } else {
                    incident.clusters.contains(&c.cluster)
                };
                in_cluster && incident.credentials.contains(&format!("secret={}/{}", c.namespace, c.secret))
            });
            if holds {
                sets.union(s, i);
            }
        }
    }
    joined_sets(all, &mut sets)
}

/// The incident of a `legacy-token-shared-across-clusters` finding alone: no story (a copy is a
/// state, not an event), its clusters, accounts and Secrets from the copies.
fn shared_token(f: &Finding) -> Incident {
    let set = |each: &dyn Fn(&crate::finding::SecretCopy) -> Option<String>| -> Vec<String> {
        f.copies.iter().filter_map(each).collect::<BTreeSet<_>>().into_iter().collect()
    };
    Incident {
        schema: SCHEMA,
        id: incident_id(&f.id),
        severity: f.severity,
        title: format!("{} ({})", f.title, findings_count(1)),
        clusters: set(&|c| Some(c.cluster.clone()).filter(|c| !c.is_empty())),
        first_seen: f.first_seen,
        last_seen: f.last_seen,
        serviceaccounts: set(&|c| c.serviceaccount.as_ref().map(|sa| format!("{}/{sa}", c.namespace))),
        credentials: set(&|c| Some(format!("secret={}/{}", c.namespace, c.secret))),
        attacker_ips: Vec::new(),
        principals: Vec::new(),
        findings: vec![f.id.clone()],
        story: Vec::new(),
        story_left_out: 0,
    }
}

/// An incident's title without the count of findings it ends with: a joined incident counts
/// all of its own.
fn without_count(title: &str) -> &str {
    match title.rsplit_once(" (") {
        Some((head, count)) if count.ends_with(" findings)") || count.ends_with(" finding)") => head,
        _ => title,
    }
}

/// "1 finding", "2 findings".
pub fn findings_count(n: usize) -> String {
    if n == 1 {
        String::from("1 finding")
    } else {
        format!("{n} findings")
    }
}

/// Incidents of several clusters as one: every step says its cluster.
fn joined(mut group: Vec<Incident>) -> Incident {
    group.sort_by(|a, b| rank(a).cmp(&rank(b)));
    let union = |field: fn(&Incident) -> &Vec<String>| -> Vec<String> {
        group.iter().flat_map(|i| field(i).iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
    };
    let clusters = union(|i| &i.clusters);
    let serviceaccounts = union(|i| &i.serviceaccounts);
    let credentials = union(|i| &i.credentials);
    let principals = union(|i| &i.principals);
    let attacker_ips: Vec<IpAddr> =
        group.iter().flat_map(|i| i.attacker_ips.iter().copied()).collect::<BTreeSet<_>>().into_iter().collect();
    let findings: Vec<String> = group.iter().flat_map(|i| i.findings.iter().cloned()).collect();
    let smallest = findings.iter().min().cloned().unwrap_or_default();
    let mut story: Vec<Step> = Vec::new();
    let mut left_out = 0;
    for incident in &group {
        let cluster = incident.clusters.join(", ");
        left_out += incident.story_left_out;
        story.extend(incident.story.iter().cloned().map(|mut s| {
            s.text = format!("[{cluster}] {}", s.text);
            s
        }));
    }
    story.sort_by(|a, b| (a.time, a.kind, &a.text).cmp(&(b.time, b.kind, &b.text)));
    left_out += story.len().saturating_sub(MAX_STEPS) as u64;
    story.truncate(MAX_STEPS);
    let first = &group[0];
    Incident {
        schema: SCHEMA,
        id: incident_id(&smallest),
        severity: first.severity,
        title: format!(
            "Across clusters {}: {} ({})",
            clusters.join(", "),
            without_count(&first.title),
            findings_count(findings.len())
        ),
        first_seen: group.iter().map(|i| i.first_seen).min().unwrap_or(first.first_seen),
        last_seen: group.iter().map(|i| i.last_seen).max().unwrap_or(first.last_seen),
        clusters,
        serviceaccounts,
        credentials,
        attacker_ips,
        principals,
        findings,
        story,
        story_left_out: left_out,
    }
}

/// How reports list incidents: most severe first, then by time, then by id.
fn rank(i: &Incident) -> (std::cmp::Reverse<Severity>, Timestamp, &str) {
    (std::cmp::Reverse(i.severity), i.first_seen, &i.id)
}

fn order_key(f: &Finding) -> (std::cmp::Reverse<Severity>, Timestamp, Rule, &str) {
    (std::cmp::Reverse(f.severity), f.first_seen, f.rule, f.id.as_str())
}

fn cluster_of(f: &Finding) -> &str {
    f.cluster.as_deref().unwrap_or("")
}

/// The exec an `exec-then-token-use` finding follows: the earliest allowed one into its pod whose
/// window reaches its uses, as the rule ties them.
fn exec_of<'c>(f: &Finding, ctx: &'c Context<'_>) -> Option<&'c PodEntry> {
    if f.rule != Rule::ExecThenTokenUse {
        return None;
    }
    let pod = f.pod.as_ref()?;
    ctx.entries
        .iter()
        .filter(|e| e.cluster == f.cluster && e.namespace == pod.namespace && e.pod == pod.name)
        .filter(|e| e.time <= f.last_seen && e.time.plus(ctx.exec_window) >= f.first_seen)
        .min_by(|a, b| (a.time, &a.principal).cmp(&(b.time, &b.principal)))
}

/// The credential a finding is about, as timelines name it.
fn credential_name(f: &Finding) -> Option<String> {
    let c = f.credential.as_ref()?;
    if let Some(id) = &c.id {
        return Some(id.clone());
    }
    if let Some(secret) = &c.secret {
        let ns = f.serviceaccount.as_ref().map_or("", |sa| sa.namespace.as_str());
        return Some(format!("secret={ns}/{secret}"));
    }
    f.pod.as_ref().and_then(|p| p.uid.as_ref()).map(|uid| format!("pod-uid={uid}"))
}

/// Token Secrets an `sa-token-secret-read` finding's reader fetched by name (and was not refused).
fn secrets_read(f: &Finding) -> Vec<String> {
    if f.rule != Rule::SaTokenSecretRead {
        return Vec::new();
    }
    f.requests
        .iter()
        .filter(|r| r.verb == "get" && r.resource.as_deref() == Some("secrets") && r.code.is_none_or(|c| c < 400))
        .filter_map(|r| Some(format!("secret={}/{}", r.namespace.as_deref()?, r.name.as_deref()?)))
        .collect()
}

fn addresses(f: &Finding) -> impl Iterator<Item = IpAddr> + '_ {
    f.source_ip.into_iter().chain(f.source_ips.iter().copied())
}

/// The keys a finding joins others by; each carries the cluster, so equal names in two clusters
/// never mix.
fn keys(f: &Finding, exec: Option<&PodEntry>, ctx: &Context<'_>, foreign: &BTreeSet<IpAddr>) -> BTreeSet<String> {
    let cluster = cluster_of(f);
    let mut keys = BTreeSet::new();
    let credential = credential_name(f);
    for name in credential.iter().cloned().chain(secrets_read(f)) {
        keys.insert(format!("credential\0{cluster}\0{name}"));
    }
    for ip in addresses(f).chain(exec.and_then(|e| e.client)).filter(|ip| foreign.contains(ip)) {
        keys.insert(format!("address\0{cluster}\0{ip}"));
    }
    for principal in exec.map(|e| &e.principal).into_iter().chain(ctx.principals.get(&f.id)) {
        keys.insert(format!("principal\0{cluster}\0{principal}"));
    }
    if credential.is_none() && f.rule != Rule::SaTokenSecretRead {
        // The service account a Secret read names is the reader's own, not a stolen one's.
        if let Some(sa) = &f.serviceaccount {
            keys.insert(format!("serviceaccount\0{cluster}\0{}/{}", sa.namespace, sa.name));
        }
    }
    keys
}

fn incident(group: &[&Finding], entries: &[&PodEntry], ctx: &Context<'_>, foreign: &BTreeSet<IpAddr>) -> Incident {
    let smallest = group.iter().map(|f| f.id.as_str()).min().unwrap_or_default();
    let mut severity = group.iter().map(|f| f.severity).max().unwrap_or(Severity::Low);
    let took = group.iter().any(|f| THEFT_RULES.contains(&f.rule));
    let used = group.iter().any(|f| USE_RULES.contains(&f.rule) && f.rule != Rule::ExecThenTokenUse);
    if took && used {
        severity = Severity::Critical;
    }
    let set =
        |it: &mut dyn Iterator<Item = String>| -> Vec<String> { it.collect::<BTreeSet<_>>().into_iter().collect() };
    let clusters = set(&mut group.iter().filter_map(|f| f.cluster.clone()));
    let serviceaccounts = set(&mut group
        .iter()
        .filter(|f| f.rule != Rule::SaTokenSecretRead)
        .filter_map(|f| f.serviceaccount.as_ref())
        .map(|sa| format!("{}/{}", sa.namespace, sa.name)));
    let credentials = set(&mut group.iter().filter_map(|f| credential_name(f)));
    let principals = set(&mut entries
        .iter()
        .map(|e| e.principal.clone())
        .chain(group.iter().filter_map(|f| ctx.principals.get(&f.id).cloned())));
    let attacker_ips: Vec<IpAddr> = group
        .iter()
        .flat_map(|f| addresses(f))
        .chain(entries.iter().filter_map(|e| e.client))
        .filter(|ip| foreign.contains(ip))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut story = story(group, entries, ctx, &credentials);
    let story_left_out = story.len().saturating_sub(MAX_STEPS) as u64;
    // The story's span: a member can span more than the incident (`legacy-token-use` counts the
    // mounting pod's own uses too).
    let (first_seen, last_seen) = match (story.first(), story.last()) {
        (Some(first), Some(last)) => (first.time, last.time),
        _ => (
            group.iter().map(|f| f.first_seen).min().unwrap_or(Timestamp::MIN),
            group.iter().map(|f| f.last_seen).max().unwrap_or(Timestamp::MAX),
        ),
    };
    story.truncate(MAX_STEPS);
    let title = if took && used && !serviceaccounts.is_empty() {
        // The chain in one line: whose tokens, taken by whom, used from where.
        let by = if principals.is_empty() { String::new() } else { format!(" by {}", principals.join(", ")) };
        let from = match attacker_ips.as_slice() {
            [] => String::from(" elsewhere"),
            ips => format!(" from {}", ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")),
        };
        format!(
            "Service-account tokens of {} taken{by} and used{from} ({})",
            serviceaccounts.join(", "),
            findings_count(group.len())
        )
    } else {
        match group.len() {
            1 => group[0].title.clone(),
            2 => format!("{} (+1 related finding)", group[0].title),
            n => format!("{} (+{} related findings)", group[0].title, n - 1),
        }
    };
    Incident {
        schema: SCHEMA,
        id: incident_id(smallest),
        severity,
        title,
        clusters,
        first_seen,
        last_seen,
        serviceaccounts,
        credentials,
        attacker_ips,
        principals,
        findings: group.iter().map(|f| f.id.clone()).collect(),
        story,
        story_left_out,
    }
}

/// The story: what the findings and the timelines tell, in time order.
/// `credentials` is sorted (a set's list), so each timeline credential is looked up, not scanned for.
fn story(group: &[&Finding], entries: &[&PodEntry], ctx: &Context<'_>, credentials: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let cluster = group[0].cluster.as_ref();
    let ids = |rule: Rule| -> Vec<String> { group.iter().filter(|f| f.rule == rule).map(|f| f.id.clone()).collect() };
    // Mints, rotations and deletions, from the timelines of the incident's credentials.
    let mut pods: BTreeSet<String> =
        group.iter().filter_map(|f| f.pod.as_ref()).map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    for t in ctx.timelines.iter().filter(|t| t.cluster.as_ref() == cluster) {
        for c in t.credentials.iter().filter(|c| credentials.binary_search(&c.name).is_ok()) {
            let pod = c.pod.as_deref().map_or_else(|| String::from("its pod"), |p| format!("pod {p}"));
            if let Some(minted) = c.minted {
                steps.push(step(minted, StepKind::Mint, format!("{} minted (TokenRequest) for {pod}", c.name), vec![]));
            }
            if let Some(superseded) = c.superseded {
                let text = format!("{pod} moved to a newer credential: {} is stale from here", c.name);
                steps.push(step(superseded, StepKind::Rotation, text, vec![]));
            }
            pods.extend(c.pod.clone());
        }
        for p in t.pods.iter().filter(|p| pods.contains(&p.name)) {
            if let Some(deleted) = p.deleted {
                let text = format!("pod {} deleted: its bound tokens stop working", p.name);
                steps.push(step(deleted, StepKind::Deletion, text, vec![]));
            }
        }
    }
    for e in entries.iter().copied().collect::<BTreeSet<_>>() {
        let from = e.client.map(|ip| format!(" from {ip}")).unwrap_or_default();
        let text = format!("{} ran {} into pod {}/{}{from}", e.principal, e.what, e.namespace, e.pod);
        steps.push(step(e.time, StepKind::Exec, text, ids(Rule::ExecThenTokenUse)));
    }
    for f in group {
        match f.rule {
            Rule::SaTokenSecretRead => {
                let mut s = step(f.first_seen, StepKind::SecretRead, f.title.clone(), vec![f.id.clone()]);
                s.details = f.requests.iter().map(request_line).collect();
                steps.push(s);
            }
            Rule::TokenFileReadByOtherPod | Rule::TokenFileReadOnHost => {
                steps.push(step(f.first_seen, StepKind::TokenFileRead, f.title.clone(), vec![f.id.clone()]));
            }
            Rule::TokenForgedMint | Rule::TokenMintedByUser => {
                steps.push(step(f.first_seen, StepKind::Mint, f.title.clone(), vec![f.id.clone()]));
            }
            Rule::TokenAfterPodDeletion => {
                let from = f.source_ip.map(|ip| format!(" from {ip}")).unwrap_or_default();
                let text = format!("{} bearer failures (401){from} after the pod was deleted", f.count);
                steps.push(step(f.first_seen, StepKind::AuthFailure, text, vec![f.id.clone()]));
            }
            Rule::TokenSupersededUse => {
                let from = f.source_ip.map(|ip| format!(" from {ip}")).unwrap_or_default();
                let name = credential_name(f).unwrap_or_default();
                let text = format!("{name} still used{from} after the rotation (last use)");
                steps.push(step(f.last_seen, StepKind::UseAfterRotation, text, vec![f.id.clone()]));
            }
            _ => {}
        }
    }
    steps.extend(foreign_uses(group));
    steps.sort_by(|a, b| (a.time, a.kind, &a.text).cmp(&(b.time, b.kind, &b.text)));
    steps.dedup_by(|a, b| a.time == b.time && a.kind == b.kind && a.text == b.text);
    steps
}

fn step(time: Timestamp, kind: StepKind, text: String, findings: Vec<String>) -> Step {
    Step { time, kind, text, details: Vec::new(), findings }
}

/// One step per credential and address it was used from where it does not belong, at the first
/// such use, with what was done (the findings' requests: they carry no time of their own).
fn foreign_uses(group: &[&Finding]) -> Vec<Step> {
    type Uses<'f> = BTreeMap<(String, IpAddr), Vec<&'f Finding>>;
    let mut uses: Uses<'_> = BTreeMap::new();
    for f in group.iter().filter(|f| USE_RULES.contains(&f.rule)) {
        let name = credential_name(f).unwrap_or_else(|| String::from("a credential"));
        for ip in addresses(f).filter(|ip| !f.expected_ips.contains(ip)).collect::<BTreeSet<_>>() {
            uses.entry((name.clone(), ip)).or_default().push(f);
        }
    }
    let mut steps: Vec<Step> = uses
        .into_iter()
        .map(|((name, ip), fs)| {
            let first = fs.iter().map(|f| f.first_seen).min().unwrap_or(Timestamp::MIN);
            let last = fs.iter().map(|f| f.last_seen).max().unwrap_or(Timestamp::MAX);
            let count = fs.iter().map(|f| f.count).max().unwrap_or(0);
            let sa =
                fs.iter().find_map(|f| f.serviceaccount.as_ref()).map(|sa| format!(" of {}/{}", sa.namespace, sa.name));
            let agents: BTreeSet<&str> = fs.iter().flat_map(|f| f.user_agents.iter().map(String::as_str)).collect();
            let agents = if agents.is_empty() {
                String::new()
            } else {
                format!(" ({})", agents.into_iter().collect::<Vec<_>>().join("; "))
            };
            let text =
                format!("{name}{} used from {ip}{agents}: {count} requests until {last}", sa.unwrap_or_default());
            let requests: BTreeSet<&FindingRequest> = fs.iter().flat_map(|f| f.requests.iter()).collect();
            let mut s = step(first, StepKind::ForeignUse, text, fs.iter().map(|f| f.id.clone()).collect());
            s.details = what_it_did(&requests);
            s
        })
        .collect();
    steps.sort_by(|a, b| (a.time, &a.text).cmp(&(b.time, &b.text)));
    if let Some(first) = steps.first_mut() {
        first.text = format!("first foreign use: {}", first.text);
    }
    steps
}

/// The requests of a use, grouped as a responder reads them: Secret reads, pods created,
/// permission probes (self-reviews and refusals), the rest.
fn what_it_did(requests: &BTreeSet<&FindingRequest>) -> Vec<String> {
    let is_probe = |r: &FindingRequest| {
        r.resource.as_deref().is_some_and(|res| res.starts_with("selfsubject")) || r.code == Some(403)
    };
    let mut lines = Vec::new();
    let mut add = |label: &str, matching: Vec<&FindingRequest>| {
        if !matching.is_empty() {
            let list: Vec<String> = matching.into_iter().map(request_line).collect();
            lines.push(format!("{label}: {}", list.join("; ")));
        }
    };
    let secrets: Vec<&FindingRequest> =
        requests.iter().copied().filter(|r| r.resource.as_deref() == Some("secrets") && !is_probe(r)).collect();
    let pods: Vec<&FindingRequest> = requests
        .iter()
        .copied()
        .filter(|r| r.verb == "create" && r.resource.as_deref() == Some("pods") && !is_probe(r))
        .collect();
    let probes: Vec<&FindingRequest> = requests.iter().copied().filter(|r| is_probe(r)).collect();
    let other: Vec<&FindingRequest> = requests
        .iter()
        .copied()
        .filter(|r| !is_probe(r) && r.resource.as_deref() != Some("secrets"))
        .filter(|r| !(r.verb == "create" && r.resource.as_deref() == Some("pods")))
        .collect();
    add("Secret reads", secrets);
    add("pods created", pods);
    add("permission probes and refusals", probes);
    add("other requests", other);
    lines
}

/// `verb resource name in namespace → code`, as the text report writes a request.
pub fn request_line(r: &FindingRequest) -> String {
    let mut t = r.verb.clone();
    for part in [&r.resource, &r.name].into_iter().flatten() {
        t.push(' ');
        t.push_str(part);
    }
    if let Some(ns) = &r.namespace {
        let _ = write!(t, " in {ns}");
    }
    if let Some(code) = r.code {
        let _ = write!(t, " → {code}");
    }
    t
}

/// Disjoint sets over `0..n`, smallest index as each set's root (so roots do not depend on the
/// order of unions).
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind { parent: (0..n).collect() }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        let (low, high) = (a.min(b), a.max(b));
        self.parent[high] = low;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::finding::{FindingCredential, FindingPod, FindingServiceAccount, Status};
    use crate::report::{CredentialKinds, TimelineCredential, TimelinePod};
    use crate::time::SECOND;
    use crate::verdict::Verdict;

    const T0: i64 = 1_773_136_800 * SECOND; // 2026-03-10T10:00:00Z

    pub(crate) fn at(minutes: i64) -> Timestamp {
        Timestamp(T0 + minutes * MINUTE)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A use of `jti` (of service account `shop/<sa>`, bound to pod `shop/<sa>-0`) from `client`.
    pub(crate) fn use_of(id: &str, rule: Rule, sa: &str, jti: &str, client: &str, minutes: (i64, i64)) -> Finding {
        Finding {
            schema: crate::finding::SCHEMA,
            id: id.to_string(),
            rule,
            severity: rule.severity(),
            title: format!("{rule} {jti} from {client}"),
            cluster: Some(String::from("prod")),
            serviceaccount: Some(FindingServiceAccount { namespace: "shop".into(), name: sa.into(), uid: None }),
            credential: Some(FindingCredential { kind: "pod-bound", id: Some(format!("JTI={jti}")), secret: None }),
            pod: Some(FindingPod {
                namespace: "shop".into(),
                name: format!("{sa}-0"),
                uid: Some(format!("uid-{sa}")),
                node: None,
            }),
            source_ip: Some(ip(client)),
            source_ips: Vec::new(),
            expected_ips: vec![ip("10.244.1.12")],
            first_seen: at(minutes.0),
            last_seen: at(minutes.1),
            count: 3,
            user_agents: vec![String::from("curl/8.5.0")],
            requests: vec![FindingRequest {
                verb: "get".into(),
                resource: Some("secrets".into()),
                namespace: Some("shop".into()),
                name: Some("stripe-api-key".into()),
                code: Some(200),
            }],
            audit_ids: Vec::new(),
            attack: rule.attack(),
            explanation: String::new(),
            status: Status::Active,
            copies: Vec::new(),
        }
    }

    fn row(client: &str, place: &'static str) -> UsageRow {
        UsageRow {
            cluster: None,
            serviceaccount: "shop/api".into(),
            source_ip: Some(ip(client)),
            place: Cow::Borrowed(place),
            credentials: CredentialKinds::default(),
            count: 1,
            first_seen: at(0),
            last_seen: at(0),
            verdict: Verdict::Unexpected,
        }
    }

    /// 203.0.113.50 and 198.51.100.77 are off-cluster; 10.0.1.13 is a node.
    fn usage() -> Vec<UsageRow> {
        vec![row("203.0.113.50", "off-cluster"), row("198.51.100.77", "off-cluster"), row("10.0.1.13", "node worker-3")]
    }

    fn grouped(findings: &[Finding], ctx: &Context<'_>) -> Vec<Vec<String>> {
        let mut groups: Vec<Vec<String>> = incidents(findings, ctx)
            .into_iter()
            .map(|i| {
                let mut ids = i.findings;
                ids.sort();
                ids
            })
            .collect();
        groups.sort();
        groups
    }

    #[test]
    fn findings_on_one_credential_are_one_incident() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let findings = [
            use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
            use_of("b", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (0, 50)),
            // The same credential from another address (not off-cluster) still joins.
            use_of("c", Rule::TokenUsedFromOtherWorkload, "api", "1", "10.244.2.15", (5, 6)),
        ];
        assert_eq!(grouped(&findings, &ctx), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn two_unrelated_replays_the_same_hour_stay_two_incidents() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        // Two credentials, two addresses, minutes apart: of two accounts, and of one account.
        for sa in ["web", "api"] {
            let findings = [
                use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
                use_of("b", Rule::TokenUsedOffCluster, sa, "2", "198.51.100.77", (5, 20)),
            ];
            assert_eq!(grouped(&findings, &ctx), vec![vec!["a"], vec!["b"]], "{sa}");
        }
    }

    #[test]
    fn an_attacker_address_joins_different_credentials() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let findings = [
            use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
            use_of("b", Rule::TokenUsedOffCluster, "web", "2", "203.0.113.50", (30, 40)),
        ];
        assert_eq!(grouped(&findings, &ctx), vec![vec!["a", "b"]]);
    }

    #[test]
    fn an_in_cluster_address_joins_nothing() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        // A node's address is every SNAT'd pod's: sharing it says nothing.
        let findings = [
            use_of("a", Rule::TokenUsedFromOtherWorkload, "api", "1", "10.0.1.13", (0, 10)),
            use_of("b", Rule::TokenUsedFromOtherWorkload, "web", "2", "10.0.1.13", (0, 10)),
        ];
        assert_eq!(grouped(&findings, &ctx), vec![vec!["a"], vec!["b"]]);
    }

    #[test]
    fn an_attacker_address_seen_again_days_later_is_another_incident() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let days = 3 * 24 * 60;
        let findings = [
            use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
            use_of("b", Rule::TokenUsedOffCluster, "web", "2", "203.0.113.50", (days, days + 10)),
            // Within a day of `b`: joins it, not `a`.
            use_of("c", Rule::TokenUsedOffCluster, "db", "3", "203.0.113.50", (days + 600, days + 610)),
        ];
        assert_eq!(grouped(&findings, &ctx), vec![vec!["a"], vec!["b", "c"]]);
    }

    #[test]
    fn equal_names_and_addresses_in_two_clusters_never_mix() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let a = use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10));
        let mut b = use_of("b", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10));
        b.cluster = Some(String::from("staging"));
        let incidents = incidents(&[a, b], &ctx);
        assert_eq!(incidents.len(), 2);
        let clusters: Vec<&[String]> = incidents.iter().map(|i| i.clusters.as_slice()).collect();
        assert!(clusters.contains(&[String::from("prod")].as_slice()));
        assert!(clusters.contains(&[String::from("staging")].as_slice()));
    }

    /// The sample's chain: a user reads a token Secret, its token is used from outside; the same
    /// user execs into a pod, whose token is then replayed from another outside address.
    fn chain() -> (Vec<Finding>, Vec<PodEntry>, BTreeMap<String, String>) {
        let mut read = use_of("read", Rule::SaTokenSecretRead, "api", "x", "198.51.100.23", (-30, -29));
        read.credential = None;
        read.pod = None;
        read.serviceaccount = None;
        read.requests[0].namespace = Some("monitoring".into());
        read.requests[0].name = Some("exporter-token-abcde".into());
        let mut legacy = use_of("legacy", Rule::LegacyTokenForeignIp, "exporter", "x", "198.51.100.77", (-20, -19));
        legacy.serviceaccount.as_mut().unwrap().namespace = "monitoring".into();
        legacy.credential =
            Some(FindingCredential { kind: "legacy-secret", id: None, secret: Some("exporter-token-abcde".into()) });
        let exec = use_of("exec", Rule::ExecThenTokenUse, "api", "1", "203.0.113.50", (6, 50));
        let offcluster = use_of("off", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (6, 50));
        let entry = PodEntry {
            cluster: Some(String::from("prod")),
            time: at(1),
            what: "exec",
            principal: String::from("oidc:m.keller"),
            client: Some(ip("198.51.100.23")),
            namespace: "shop".into(),
            pod: "api-0".into(),
        };
        let principals = BTreeMap::from([(String::from("read"), String::from("oidc:m.keller"))]);
        (vec![read, legacy, exec, offcluster], vec![entry], principals)
    }

    /// The incidents of `findings`, each cluster's grouped alone (as each has its own engine),
    /// then joined across clusters.
    fn across(clusters: &[(&str, Vec<Finding>)]) -> Vec<Incident> {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let per_cluster = clusters.iter().flat_map(|(name, findings)| {
            let mut findings = findings.clone();
            for f in &mut findings {
                f.cluster = Some(name.to_string());
            }
            incidents(&findings, &ctx)
        });
        join_across_clusters(per_cluster.collect())
    }

    #[test]
    fn one_attacker_address_in_two_clusters_is_one_incident_and_each_step_names_its_cluster() {
        let joined = across(&[
            ("eu", vec![use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10))]),
            ("us", vec![use_of("b", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (30, 40))]),
        ]);
        assert_eq!(joined.len(), 1, "{joined:#?}");
        let i = &joined[0];
        assert_eq!(i.clusters, ["eu", "us"]);
        assert_eq!(i.findings.iter().collect::<BTreeSet<_>>(), BTreeSet::from([&"a".to_string(), &"b".to_string()]));
        assert_eq!(i.id, incident_id("a"));
        assert!(i.title.starts_with("Across clusters eu, us: "), "{}", i.title);
        assert!(i.title.ends_with(" (2 findings)"), "the joined incident counts all its findings: {}", i.title);
        assert_eq!(without_count("Tokens of a taken (2 findings)"), "Tokens of a taken");
        assert_eq!(without_count("Token used off-cluster (+3 related findings)"), "Token used off-cluster");
        assert_eq!(without_count("Token used off-cluster (+1 related finding)"), "Token used off-cluster");
        assert_eq!((findings_count(1), findings_count(2)), ("1 finding".to_string(), "2 findings".to_string()));
        assert_eq!(without_count("Token used (from 203.0.113.9)"), "Token used (from 203.0.113.9)");
        let texts: Vec<&str> = i.story.iter().map(|s| s.text.as_str()).collect();
        assert!(texts[0].starts_with("[eu] ") && texts.last().unwrap().starts_with("[us] "), "{texts:?}");
        assert!(i.story.windows(2).all(|w| w[0].time <= w[1].time), "in time order");
    }

    #[test]
    fn across_clusters_other_addresses_days_apart_or_shared_names_do_not_join() {
        // Other attacker addresses: two incidents, even with equal names and credentials.
        let apart = across(&[
            ("eu", vec![use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10))]),
            ("us", vec![use_of("b", Rule::TokenUsedOffCluster, "api", "1", "198.51.100.77", (0, 10))]),
        ]);
        assert_eq!(apart.len(), 2);
        // The same address days later: someone else, perhaps.
        let days = 3 * 24 * 60;
        let later = across(&[
            ("eu", vec![use_of("a", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10))]),
            ("us", vec![use_of("b", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (days, days + 10))]),
        ]);
        assert_eq!(later.len(), 2);
        // An in-cluster address (a node's, behind SNAT) joins nothing across clusters either.
        let node = across(&[
            ("eu", vec![use_of("a", Rule::TokenUsedFromOtherWorkload, "api", "1", "10.0.1.13", (0, 10))]),
            ("us", vec![use_of("b", Rule::TokenUsedFromOtherWorkload, "api", "1", "10.0.1.13", (0, 10))]),
        ]);
        assert_eq!(node.len(), 2);
        assert!(node.iter().all(|i| i.clusters.len() == 1));
    }

    #[test]
    fn a_token_shared_across_clusters_joins_the_incidents_of_its_secrets_in_its_clusters() {
        let legacy = |id: &str, secret: &str, client: &str| Finding {
            credential: Some(FindingCredential { kind: "legacy-secret", id: None, secret: Some(secret.into()) }),
            ..use_of(id, Rule::LegacyTokenForeignIp, "exporter", "x", client, (0, 10))
        };
        let copy = |cluster: &str| crate::finding::SecretCopy {
            cluster: cluster.into(),
            namespace: "shop".into(),
            secret: "exporter-token".into(),
            serviceaccount: Some("exporter".into()),
        };
        let shared = Finding {
            rule: Rule::LegacyTokenSharedAcrossClusters,
            severity: Severity::High,
            cluster: None,
            copies: vec![copy("eu"), copy("us")],
            ..use_of("s", Rule::LegacyTokenSharedAcrossClusters, "exporter", "x", "203.0.113.1", (0, 0))
        };
        let per_cluster = across(&[
            // The shared Secret used from outside in eu; another Secret of the same name in a third
            // cluster that holds no copy stays apart.
            ("eu", vec![legacy("a", "exporter-token", "203.0.113.50")]),
            ("ap", vec![legacy("b", "exporter-token", "198.51.100.77")]),
        ]);
        let joined = join_shared_tokens(per_cluster, std::slice::from_ref(&shared));
        assert_eq!(joined.len(), 2, "{joined:#?}");
        let with = joined.iter().find(|i| i.findings.contains(&"s".to_string())).unwrap();
        assert_eq!(with.findings.iter().collect::<BTreeSet<_>>(), BTreeSet::from([&"a".to_string(), &"s".to_string()]));
        assert_eq!(with.clusters, ["eu", "us"]);
        // Alone, it is an incident of its own.
        let alone = join_shared_tokens(Vec::new(), std::slice::from_ref(&shared));
        assert_eq!(alone.len(), 1);
        assert_eq!(
            (alone[0].findings.clone(), alone[0].clusters.clone()),
            (vec!["s".to_string()], vec!["eu".to_string(), "us".to_string()])
        );
        assert_eq!(alone[0].credentials, ["secret=shop/exporter-token"]);
    }

    #[test]
    fn an_exec_users_secret_reads_join_the_tokens_they_took() {
        let usage = usage();
        let (findings, entries, principals) = chain();
        let ctx = Context { usage: &usage, entries, principals, exec_window: 30 * MINUTE, ..Context::default() };
        assert_eq!(grouped(&findings, &ctx), vec![vec!["exec", "legacy", "off", "read"]]);
        // Without the exec's principal the two halves share nothing.
        let ctx = Context { usage: &usage, ..Context::default() };
        assert_eq!(grouped(&findings, &ctx), vec![vec!["exec", "off"], vec!["legacy", "read"]]);
    }

    #[test]
    fn a_theft_then_a_foreign_use_is_critical() {
        let usage = usage();
        let (findings, _, _) = chain();
        let ctx = Context { usage: &usage, ..Context::default() };
        let medium_and_high: Vec<Finding> =
            findings.into_iter().filter(|f| ["read", "legacy"].contains(&f.id.as_str())).collect();
        assert_eq!(medium_and_high.iter().map(|f| f.severity).max(), Some(Severity::High));
        let incidents = incidents(&medium_and_high, &ctx);
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].severity, Severity::Critical);
        assert_eq!(
            incidents[0].title,
            "Service-account tokens of monitoring/exporter taken and used from 198.51.100.77 (2 findings)"
        );
    }

    #[test]
    fn incidents_do_not_depend_on_the_order_of_findings() {
        let usage = usage();
        let (mut findings, entries, principals) = chain();
        findings.push(use_of("z", Rule::TokenUsedOffCluster, "web", "9", "192.0.2.1", (0, 1)));
        let ctx = Context { usage: &usage, entries, principals, exec_window: 30 * MINUTE, ..Context::default() };
        let expected = incidents(&findings, &ctx);
        assert_eq!(expected.len(), 2);
        for turn in 1..findings.len() {
            findings.rotate_left(1);
            assert_eq!(incidents(&findings, &ctx), expected, "rotated {turn}");
        }
        findings.reverse();
        assert_eq!(incidents(&findings, &ctx), expected, "reversed");
    }

    #[test]
    fn the_id_is_a_hash_of_the_smallest_member_id() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let findings = [
            use_of("b", Rule::TokenUsedOffCluster, "api", "1", "203.0.113.50", (0, 10)),
            use_of("a", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (0, 50)),
        ];
        let incidents = incidents(&findings, &ctx);
        assert_eq!(incidents[0].id, incident_id("a"));
        assert_eq!(incidents[0].id.len(), 32);
        assert_ne!(incident_id("a"), incident_id("b"));
        assert_eq!(incidents[0].findings, vec!["b", "a"], "most severe first");
    }

    #[test]
    fn inventory_and_withdrawn_findings_form_no_incident() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let mut present = use_of("p", Rule::LegacyTokenPresent, "api", "1", "203.0.113.50", (0, 10));
        present.severity = Severity::Low;
        let mut withdrawn = use_of("w", Rule::TokenUsedOffCluster, "api", "2", "198.51.100.77", (0, 10));
        withdrawn.status = Status::Withdrawn;
        assert!(incidents(&[present, withdrawn], &ctx).is_empty());
    }

    #[test]
    fn the_story_tells_mint_exec_use_rotation_and_deletion_in_time_order() {
        let usage = usage();
        let (findings, entries, principals) = chain();
        let mut findings: Vec<Finding> =
            findings.into_iter().filter(|f| ["exec", "off"].contains(&f.id.as_str())).collect();
        findings.push(use_of("stale", Rule::TokenSupersededUse, "api", "1", "203.0.113.50", (6, 50)));
        let timelines = [Timeline {
            cluster: Some(String::from("prod")),
            serviceaccount: "shop/api".into(),
            pods: vec![TimelinePod {
                name: "shop/api-0".into(),
                uid: "uid-api".into(),
                node: None,
                addresses: Vec::new(),
                first_seen: at(-600),
                last_seen: at(60),
                deleted: Some(at(60)),
            }],
            credentials: vec![TimelineCredential {
                kind: "pod-bound",
                name: "JTI=1".into(),
                pod: Some("shop/api-0".into()),
                minted: Some(at(-5)),
                superseded: Some(at(40)),
                uses: Vec::new(),
            }],
        }];
        let ctx = Context {
            usage: &usage,
            entries,
            principals,
            exec_window: 30 * MINUTE,
            timelines: &timelines,
            ..Context::default()
        };
        let incidents = incidents(&findings, &ctx);
        assert_eq!(incidents.len(), 1);
        let story = &incidents[0].story;
        let kinds: Vec<StepKind> = story.iter().map(|s| s.kind).collect();
        let expected = [
            StepKind::Mint,
            StepKind::Exec,
            StepKind::ForeignUse,
            StepKind::Rotation,
            StepKind::UseAfterRotation,
            StepKind::Deletion,
        ];
        assert_eq!(kinds, expected);
        assert!(story.windows(2).all(|w| w[0].time <= w[1].time));
        assert_eq!(story[1].text, "oidc:m.keller ran exec into pod shop/api-0 from 198.51.100.23");
        assert!(
            story[2].text.starts_with("first foreign use: JTI=1 of shop/api used from 203.0.113.50"),
            "{}",
            story[2].text
        );
        assert_eq!(story[2].details, vec!["Secret reads: get secrets stripe-api-key in shop → 200"]);
        assert_eq!(story[2].findings.len(), 3, "every finding on that use");
        assert_eq!((incidents[0].first_seen, incidents[0].last_seen), (at(-5), at(60)));
        assert_eq!(incidents[0].principals, vec!["oidc:m.keller"]);
        // The exec's address is not in the client-address table: not known to be outside.
        assert_eq!(incidents[0].attacker_ips, vec![ip("203.0.113.50")]);
    }

    #[test]
    fn a_spray_of_credentials_from_one_address_tells_a_bounded_story() {
        let usage = usage();
        let ctx = Context { usage: &usage, ..Context::default() };
        let findings: Vec<Finding> = (0..MAX_STEPS as i64 + 50)
            .map(|n| use_of(&format!("f{n}"), Rule::TokenUsedOffCluster, "api", &n.to_string(), "203.0.113.50", (n, n)))
            .collect();
        let incidents = incidents(&findings, &ctx);
        assert_eq!(incidents.len(), 1, "one attacker address");
        assert_eq!(incidents[0].findings.len(), MAX_STEPS + 50);
        assert_eq!((incidents[0].story.len(), incidents[0].story_left_out), (MAX_STEPS, 50));
        assert_eq!(incidents[0].first_seen, at(0));
    }

    #[test]
    fn what_a_use_did_is_sorted_into_reads_pods_and_probes() {
        let req = |verb: &str, resource: &str, code: u16| FindingRequest {
            verb: verb.into(),
            resource: Some(resource.into()),
            namespace: None,
            name: None,
            code: Some(code),
        };
        let reqs = [
            req("list", "secrets", 200),
            req("create", "pods", 201),
            req("create", "selfsubjectrulesreviews", 201),
            req("list", "nodes", 403),
            req("list", "namespaces", 200),
        ];
        let set: BTreeSet<&FindingRequest> = reqs.iter().collect();
        assert_eq!(
            what_it_did(&set),
            vec![
                "Secret reads: list secrets → 200",
                "pods created: create pods → 201",
                "permission probes and refusals: create selfsubjectrulesreviews → 201; list nodes → 403",
                "other requests: list namespaces → 200",
            ]
        );
    }
}
