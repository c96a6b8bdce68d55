//! The folded evidence: what the engine knows, kept apart from how it comes to know it.
//!
//! [`State`] holds the model and the aggregates, and answers the questions the rules, the
//! report and expiry ask of them through methods, so none of them depends on the engine that
//! fills it (the engine owns a state, the deduplication window and the settings). Its fold
//! methods take what the settings decide (the client address of a request, its forged
//! addresses) already worked out: the state stores evidence, it does not interpret addresses.

mod entries;

pub(crate) use entries::{Rest, RestOwned};

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::activity::{Access, Mints, SecretReads};
use crate::attestation::Attestations;
use crate::model::{Model, Nodes, PodQuestions, PodSighting, Pods};
use crate::observation::{
    AuthFailure, Credential, CredentialFact, FactSource, NodeFact, PodAccess, PodFact, Progress, SecretRead,
    ServiceAccountFact, ServiceAccountRef, TokenFileRead, TokenMint, TokenSecretFact, UseView,
};
use crate::proxies::ProxyHops;
use crate::shared::Shared;
use crate::tally::Tally;
use crate::time::Timestamp;
use crate::token_reads::TokenReads;
use crate::usage::{CredentialKey, UseGroup, UseGroups, UseKey};

/// How many exec/attach records are kept; beyond it they are counted and dropped, so a flood of
/// execs cannot exhaust memory.
const MAX_POD_ACCESSES: usize = 100_000;

/// Counters about what the engine did with its input.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Observations received.
    pub observations: u64,
    /// Token uses counted (after folding duplicate stages).
    pub token_uses: u64,
    /// Extra stages of a request already counted.
    pub duplicate_stages: u64,
    /// exec/attach records dropped beyond the cap.
    pub pod_accesses_dropped: u64,
}

/// Secret reads, by reader and namespace (`None`: across namespaces).
pub(crate) type SecretReadsBy = HashMap<(String, Option<String>), SecretReads>;

/// Token Secrets, by namespace and name.
pub(crate) type TokenSecrets = BTreeMap<(String, String), TokenSecretFact>;

/// The folded evidence. Its fields are persisted in this order, inside the engine's snapshot:
/// reordering them changes the snapshot's bytes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct State {
    model: Model,
    #[serde(with = "crate::pairs")]
    uses: UseGroups,
    #[serde(with = "crate::pairs")]
    failures: HashMap<Option<IpAddr>, Tally>,
    accesses: Vec<Access>,
    #[serde(with = "crate::pairs")]
    secret_reads: SecretReadsBy,
    mints: Mints,
    #[serde(with = "crate::pairs")]
    serviceaccounts: BTreeMap<ServiceAccountRef, ServiceAccountFact>,
    #[serde(with = "crate::pairs")]
    token_secrets: TokenSecrets,
    attestations: Attestations,
    /// Last hops of forwarded requests: the apiservers in front of aggregated apiservers.
    #[serde(default)]
    hops: ProxyHops,
    /// Secret reads broadcast to every partition whose home is another one (a `list`, a `get`
    /// of a Secret the aggregator could not place): judged here only against the token Secrets
    /// this partition knows, which the home partition may not (`Engine::observe_elsewhere`).
    /// Written only when there are some, so other snapshots keep their bytes.
    #[serde(default, with = "crate::pairs", skip_serializing_if = "HashMap::is_empty")]
    secret_reads_elsewhere: SecretReadsBy,
    /// Foreign reads of token files that node agents saw. Written only when there are some.
    #[serde(default, skip_serializing_if = "TokenReads::is_empty")]
    token_reads: TokenReads,
    stats: EngineStats,
    /// The values many samples hold alike, kept once.
    #[serde(skip)]
    shared: Shared,
    /// The latest audit or inventory event time seen: the report's "now" and the watermark
    /// expiry works by (the core has no clock). Agents' times never move it (see
    /// `Engine::observe`).
    latest: Timestamp,
    /// The latest event time of the audit log itself (requests, and pod and node facts it
    /// logged): the watermark expiry works by. Inventories and objects are not the log's
    /// progress: a `pods.json` sent before the log holds pods started minutes before it was
    /// taken, and expiring by them would drop, as the log's first deletions arrive, the pods
    /// the 401s right behind them need. Absent in state saved before it (then `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logged: Option<Timestamp>,
}

impl Default for State {
    fn default() -> Self {
        State {
            model: Model::default(),
            uses: UseGroups::default(),
            failures: HashMap::new(),
            accesses: Vec::new(),
            secret_reads: HashMap::new(),
            mints: Mints::default(),
            serviceaccounts: BTreeMap::new(),
            token_secrets: BTreeMap::new(),
            attestations: Attestations::default(),
            hops: ProxyHops::default(),
            secret_reads_elsewhere: HashMap::new(),
            token_reads: TokenReads::default(),
            stats: EngineStats::default(),
            shared: Shared::default(),
            latest: Timestamp::MIN,
            logged: None,
        }
    }
}

/// The bound pod a use group shows, when its credential is pod-bound.
pub(crate) fn sighting<'a>(key: &'a UseKey, group: &'a UseGroup) -> Option<PodSighting<'a>> {
    let CredentialKey::PodBound { pod_uid, .. } = &key.credential else { return None };
    Some(PodSighting {
        uid: pod_uid,
        namespace: &key.serviceaccount.namespace,
        name: group.pod_name.as_deref().unwrap_or_default(),
        node: group.node.as_deref(),
        first: group.first(),
        last: group.last(),
    })
}

/// Folding: the engine calls these once it has decided a copy of a request stands for it.
impl State {
    /// Counts an observation received, and moves event time on to `time` when it is given
    /// (agents' observations give none: their clocks are their nodes').
    pub(crate) fn received(&mut self, time: Option<Timestamp>) {
        self.stats.observations += 1;
        if let Some(t) = time {
            self.latest = self.latest.max(t);
        }
    }

    /// Moves the audit log's own watermark (see `logged`).
    pub(crate) fn logged_at(&mut self, time: Timestamp) {
        self.logged = Some(self.logged.map_or(time, |l| l.max(time)));
    }

    /// Counts one request's token use (its best copy), from `client`, with the `sourceIPs`
    /// entries that differ from the TCP peer (`forged`).
    pub(crate) fn fold_use(&mut self, u: UseView<'_>, client: Option<IpAddr>, forged: &[IpAddr]) {
        self.stats.token_uses += 1;
        if !forged.is_empty() {
            if let Some(&peer) = u.source_ips.last() {
                self.hops.note(peer, u.serviceaccount);
            }
        }
        let key = UseKey { serviceaccount: u.serviceaccount, credential: CredentialKey::of(&u.credential), client };
        let group = self.uses.entry(&key);
        // The bound pod is noted from its group when a question needs it (`place_sighted_pods`),
        // not here for every use.
        match u.credential {
            Credential::PodBound { pod_name, node, .. } => {
                group.add(&u, Some(pod_name), node, forged, &mut self.shared)
            }
            _ => group.add(&u, None, None, forged, &mut self.shared),
        }
    }

    /// Counts a copy of a request already counted.
    pub(crate) fn count_duplicate_stage(&mut self) {
        self.stats.duplicate_stages += 1;
    }

    pub(crate) fn fold_mint(&mut self, m: TokenMint, client: Option<IpAddr>, hops: u8) {
        self.mints.add(m, client, hops);
    }

    pub(crate) fn fold_failure(&mut self, f: &AuthFailure, client: Option<IpAddr>) {
        self.failures.entry(client).or_default().add_sharing(
            f.time,
            &f.audit_id,
            f.user_agent.as_deref(),
            Some(&f.request.view()),
            &mut self.shared,
        );
    }

    pub(crate) fn fold_access(&mut self, a: PodAccess, client: Option<IpAddr>) {
        if self.accesses.len() >= MAX_POD_ACCESSES {
            self.stats.pod_accesses_dropped += 1;
        } else {
            self.accesses.push(Access { access: a, client });
        }
    }

    pub(crate) fn fold_secret_read(&mut self, r: &SecretRead, client: Option<IpAddr>) {
        // A refused read disclosed nothing.
        if r.code.is_some_and(|c| c >= 400) {
            return;
        }
        let key = (r.principal.clone(), r.namespace.clone());
        self.secret_reads.entry(key).or_default().add(r, client);
    }

    /// A Secret read whose home is another partition: its response copy only (the engine's
    /// window of audit IDs is for the reads it reports on its own; here one copy per request is
    /// enough, and the response is the one that tells whether anything was disclosed).
    pub(crate) fn fold_secret_read_elsewhere(&mut self, r: &SecretRead, client: Option<IpAddr>) {
        if r.code.is_none_or(|c| c >= 400) {
            return;
        }
        let key = (r.principal.clone(), r.namespace.clone());
        self.secret_reads_elsewhere.entry(key).or_default().add(r, client);
    }

    pub(crate) fn fold_pod(&mut self, p: PodFact) {
        self.model.pods.apply(p);
    }

    pub(crate) fn fold_attestation(&mut self, c: &CredentialFact) {
        self.attestations.apply(c);
    }

    pub(crate) fn fold_token_read(&mut self, r: &TokenFileRead) {
        self.token_reads.add(r);
    }

    pub(crate) fn fold_node(&mut self, n: &NodeFact) {
        // An agent's node report is its heartbeat: it moves the node's watermark on.
        if n.source == Some(FactSource::Attestation) {
            self.attestations.reported(&n.name, n.time);
        }
        self.model.nodes.apply(n);
    }

    /// Repeated node facts, batched: the audit log's part moved the clocks already (`received`,
    /// `logged_at`); the agents' part moves their nodes' watermarks as their heartbeats would.
    pub(crate) fn fold_progress(&mut self, p: &Progress) {
        for n in &p.nodes {
            self.attestations.reported(&n.name, n.reported_until);
        }
    }

    pub(crate) fn fold_serviceaccount(&mut self, sa: ServiceAccountFact) {
        if let Some(key) = sa.serviceaccount.clone() {
            self.serviceaccounts.insert(key, sa);
        }
    }

    pub(crate) fn fold_token_secret(&mut self, s: TokenSecretFact) {
        let key = (s.namespace.clone(), s.name.clone());
        let entry = self.token_secrets.entry(key).or_insert_with(|| s.clone());
        // An inventory dump knows labels an audit create event does not: keep the richer.
        entry.serviceaccount = entry.serviceaccount.take().or(s.serviceaccount);
        entry.last_used = entry.last_used.take().or(s.last_used);
        entry.invalid_since = entry.invalid_since.take().or(s.invalid_since);
        entry.token_sha256 = entry.token_sha256.take().or(s.token_sha256);
        entry.time = entry.time.min(s.time);
    }

    /// Takes over the token uses another state folded (and nothing else: see
    /// `Engine::absorb_uses`).
    pub(crate) fn absorb_uses(&mut self, other: State) {
        let State { uses, stats, latest, hops, .. } = other;
        self.hops.merge(hops);
        self.uses.absorb(uses);
        self.stats.observations += stats.observations;
        self.stats.token_uses += stats.token_uses;
        self.stats.duplicate_stages += stats.duplicate_stages;
        self.latest = self.latest.max(latest);
    }

    /// Makes pods of the bound pods that token uses show, where the evidence asks about them
    /// (see [`crate::model::Pods::note_sightings`]): before a report, and before expiry places
    /// deletions by name.
    pub(crate) fn place_sighted_pods(&mut self) {
        let mut asked = PodQuestions::default();
        for (namespace, name) in self.model.pods.unresolved_names() {
            asked.name(namespace, name);
        }
        // `exec-then-token-use` finds the pod an exec names by name and time.
        for a in &self.accesses {
            asked.name(&a.access.namespace, &a.access.pod_name);
        }
        // `token-forged-mint` finds the node of the pod a TokenRequest names.
        for mint in self.mints.iter() {
            if let Some(pod) = &mint.bound_pod {
                asked.name(&mint.serviceaccount.namespace, &pod.name);
                if let Some(uid) = &pod.uid {
                    asked.uid(uid);
                }
            }
        }
        let sightings = self.uses.iter().filter_map(|(key, group)| sighting(key, group));
        self.model.pods.note_sightings(sightings, &asked);
    }

    /// Places deletions that named their pod without its UID.
    pub(crate) fn resolve_pods(&mut self) {
        self.model.pods.resolve();
    }
}

/// Reading: what the rules, the report and expiry ask.
impl State {
    /// The model of pods, nodes and addresses over time.
    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    /// Pods.
    pub(crate) fn pods(&self) -> &Pods {
        &self.model.pods
    }

    /// Nodes.
    pub(crate) fn nodes(&self) -> &Nodes {
        &self.model.nodes
    }

    /// Every use group, by its key.
    pub(crate) fn use_groups(&self) -> impl Iterator<Item = (&UseKey, &UseGroup)> + Clone {
        self.uses.iter()
    }

    /// How many use groups there are.
    pub(crate) fn use_group_count(&self) -> usize {
        self.uses.len()
    }

    /// Authentication failures from a client address.
    pub(crate) fn failures_from(&self, client: &Option<IpAddr>) -> Option<&Tally> {
        self.failures.get(client)
    }

    /// exec/attach records (up to the cap), in the order they were folded.
    pub(crate) fn accesses(&self) -> &[Access] {
        &self.accesses
    }

    /// Secret reads, by reader and namespace.
    pub(crate) fn secret_reads(&self) -> &SecretReadsBy {
        &self.secret_reads
    }

    pub(crate) fn secret_reads_elsewhere(&self) -> &SecretReadsBy {
        &self.secret_reads_elsewhere
    }

    /// TokenRequests.
    pub(crate) fn mints(&self) -> &Mints {
        &self.mints
    }

    /// Token Secrets, by namespace and name.
    pub(crate) fn token_secrets(&self) -> &TokenSecrets {
        &self.token_secrets
    }

    /// What node agents attested.
    pub(crate) fn token_reads(&self) -> &TokenReads {
        &self.token_reads
    }

    pub(crate) fn token_reads_mut(&mut self) -> &mut TokenReads {
        &mut self.token_reads
    }

    pub(crate) fn attestations(&self) -> &Attestations {
        &self.attestations
    }

    /// Last hops of forwarded requests.
    pub(crate) fn hops(&self) -> &ProxyHops {
        &self.hops
    }

    /// What the engine has counted so far.
    pub(crate) fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The latest audit or inventory event time folded: the watermark.
    pub(crate) fn latest(&self) -> Timestamp {
        self.latest
    }

    /// The watermark expiry works by: the audit log's latest event time, or, before any (and in
    /// state saved before it was kept), the latest event time.
    pub(crate) fn expiry_watermark(&self) -> Timestamp {
        self.logged.unwrap_or(self.latest)
    }
}

/// Forgetting: the primitives expiry drops stale evidence with (see [`crate::expiry`]).
impl State {
    /// Drops the use groups of these credentials, and the shared values only they held; returns
    /// how many groups went.
    pub(crate) fn forget_credentials(&mut self, stale: &std::collections::BTreeSet<CredentialKey>) -> usize {
        let before = self.uses.len();
        self.uses.retain(|key, _| !stale.contains(&key.credential));
        self.shared.prune();
        before - self.uses.len()
    }

    /// The use groups beside the TokenRequests: mints of credentials still in use are kept, the
    /// others retired.
    pub(crate) fn uses_and_mints_mut(&mut self) -> (&UseGroups, &mut Mints) {
        (&self.uses, &mut self.mints)
    }

    /// The TokenRequests, to compact.
    pub(crate) fn mints_mut(&mut self) -> &mut Mints {
        &mut self.mints
    }

    /// What node agents attested, to forget old attestations from and rewrite an older
    /// changelog's.
    pub(crate) fn attestations_mut(&mut self) -> &mut Attestations {
        &mut self.attestations
    }

    /// Keeps the pods `keep` accepts; returns how many went.
    pub(crate) fn retain_pods(&mut self, keep: impl FnMut(&crate::model::Pod) -> bool) -> usize {
        self.model.pods.retain(keep)
    }
}
