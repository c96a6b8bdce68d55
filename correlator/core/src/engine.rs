//! The engine: observations in, a [`Report`] out.
//!
//! [`Engine::observe`] folds each observation into the model and the aggregates (constant work per
//! observation, memory bounded by pods, credentials and client addresses, never by events), and
//! [`Engine::report`] evaluates every rule over what was folded. Because every fact carries its
//! event time and aggregates are order-independent, feeding the same evidence in any order gives
//! the same report.

use std::collections::{BTreeMap, HashMap};

use std::net::IpAddr;

use crate::activity::{Access, Mints, SecretReads};
use crate::attestation::Attestations;
use crate::config::EngineConfig;
use crate::dedup::{Rank, RecentIds, Sighting};
use crate::hash::FastMap;
use crate::model::{Model, PodQuestions, PodSighting};
use crate::net::client_address;
use crate::observation::{
    AuthFailure, Credential, FactSource, Observation, PodAccess, SecretRead, ServiceAccountFact, ServiceAccountRef,
    Stage, TokenSecretFact, UseView,
};
use crate::proxies::ProxyHops;
use crate::report::{self, Report};
use crate::shared::Shared;
use crate::tally::Tally;
use crate::time::{Micros, Timestamp};
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

/// The engine's whole state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Engine {
    /// Settings come from the caller, not from persisted state.
    #[serde(skip)]
    pub(crate) config: EngineConfig,
    recent: RecentIds,
    /// Copies of requests that a better copy may still replace (see [`crate::dedup`]), by the
    /// window's key of their audit ID.
    #[serde(default, with = "crate::pairs")]
    held: FastMap<u64, Observation>,
    pub(crate) model: Model,
    #[serde(with = "crate::pairs")]
    pub(crate) uses: UseGroups,
    #[serde(with = "crate::pairs")]
    pub(crate) failures: HashMap<Option<IpAddr>, Tally>,
    pub(crate) accesses: Vec<Access>,
    #[serde(with = "crate::pairs")]
    pub(crate) secret_reads: HashMap<(String, Option<String>), SecretReads>,
    pub(crate) mints: Mints,
    #[serde(with = "crate::pairs")]
    pub(crate) serviceaccounts: BTreeMap<ServiceAccountRef, ServiceAccountFact>,
    #[serde(with = "crate::pairs")]
    pub(crate) token_secrets: BTreeMap<(String, String), TokenSecretFact>,
    pub(crate) attestations: Attestations,
    /// Last hops of forwarded requests: the apiservers in front of aggregated apiservers.
    #[serde(default)]
    pub(crate) hops: ProxyHops,
    pub(crate) stats: EngineStats,
    /// The values many samples hold alike, kept once.
    #[serde(skip)]
    pub(crate) shared: Shared,
    /// The latest audit or inventory event time seen: the report's "now" and the watermark
    /// expiry works by (the core has no clock). Agents' times never move it (see `observe`).
    pub(crate) latest: Timestamp,
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

/// What becomes of a copy of a request.
enum Admit {
    /// Fold it now.
    Now,
    /// Hold it under this key.
    Hold(u64),
    /// Drop it: another copy stands for the request.
    Drop,
}

/// The `sourceIPs` of a held copy.
fn held_source_ips(obs: &Observation) -> &[IpAddr] {
    match obs {
        Observation::TokenUse(u) => &u.source_ips,
        Observation::AuthFailure(f) => &f.source_ips,
        Observation::PodAccess(a) => &a.source_ips,
        Observation::SecretRead(r) => &r.source_ips,
        _ => &[],
    }
}

/// Kinds of request folded separately: one audit event can be both a token use and, say, a
/// Secret read, and must count once as each.
#[derive(Clone, Copy)]
enum Fold {
    Use = 1,
    Failure = 2,
    Access = 3,
    SecretRead = 4,
}

impl Engine {
    /// A new engine.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            recent: RecentIds::new(config.dedup_capacity),
            held: FastMap::default(),
            config,
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
            stats: EngineStats::default(),
            shared: Shared::default(),
            latest: Timestamp::MIN,
        }
    }

    /// How far the slowest attesting node's agent trails the latest event: the verdicts that
    /// wait for attestations wait about this long (plus the grace period). `None` before any
    /// agent reported.
    pub fn watermark_lag(&self) -> Option<Micros> {
        // Before any audit event there is no event time for an agent to trail (agents' own times
        // never move it): nothing waits yet.
        if self.latest == Timestamp::MIN {
            return None;
        }
        self.attestations.reported_by_all().map(|t| self.latest.0.saturating_sub(t.0).max(0))
    }

    /// What the engine has counted so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Folds one observation in.
    pub fn observe(&mut self, obs: Observation) {
        self.stats.observations += 1;
        // An agent's time is its node's clock: one node stamping 9999-12-31 would otherwise move
        // the watermark for every node and expire all evidence before it is reported. It moves
        // only its own node's watermark (`Attestations::reported`); event time follows the
        // apiserver's audit log (and inventories), which every node's evidence shares.
        if !obs.from_agent() {
            self.latest = self.latest.max(obs.time());
        }
        match obs {
            Observation::TokenUse(u) => self.observe_use(u.view()),
            Observation::TokenMint(m) => {
                let client = self.client(&m.source_ips);
                let hops = self.rank(&m.source_ips, true, false).hops();
                self.mints.add(m, client, hops);
            }
            Observation::AuthFailure(f) => {
                let rank = self.rank(&f.source_ips, true, false);
                match self.admit(Fold::Failure, &f.audit_id, rank, &f.source_ips) {
                    Admit::Now => self.fold_failure(&f),
                    Admit::Hold(key) => self.hold(key, Observation::AuthFailure(f)),
                    Admit::Drop => {}
                }
            }
            Observation::PodAccess(a) => {
                let rank = self.rank(&a.source_ips, a.code.is_some(), false);
                match self.admit(Fold::Access, &a.audit_id, rank, &a.source_ips) {
                    Admit::Now => self.fold_access(a),
                    Admit::Hold(key) => self.hold(key, Observation::PodAccess(a)),
                    Admit::Drop => {}
                }
            }
            Observation::SecretRead(r) => {
                // The code comes with the response: a `RequestReceived` copy waits for it.
                let rank = self.rank(&r.source_ips, r.code.is_some(), false);
                match self.admit(Fold::SecretRead, &r.audit_id, rank, &r.source_ips) {
                    Admit::Now => self.fold_secret_read(&r),
                    Admit::Hold(key) => self.hold(key, Observation::SecretRead(r)),
                    Admit::Drop => {}
                }
            }
            Observation::Pod(p) => self.model.pods.apply(p),
            Observation::Credential(c) => self.attestations.apply(&c),
            Observation::Node(n) => {
                // An agent's node report is its heartbeat: it moves the node's watermark on.
                if n.source == Some(FactSource::Attestation) {
                    self.attestations.reported(&n.name, n.time);
                }
                self.model.nodes.apply(&n);
            }
            Observation::ServiceAccount(sa) => {
                if let Some(key) = sa.serviceaccount.clone() {
                    self.serviceaccounts.insert(key, sa);
                }
            }
            Observation::TokenSecret(s) => {
                let key = (s.namespace.clone(), s.name.clone());
                let entry = self.token_secrets.entry(key).or_insert_with(|| s.clone());
                // An inventory dump knows labels an audit create event does not: keep the richer.
                entry.serviceaccount = entry.serviceaccount.take().or(s.serviceaccount);
                entry.last_used = entry.last_used.take().or(s.last_used);
                entry.invalid_since = entry.invalid_since.take().or(s.invalid_since);
                entry.time = entry.time.min(s.time);
            }
        }
    }

    /// Folds a token use given as a view: what [`Engine::observe`] does with a
    /// [`Observation::TokenUse`], without the owned copy (the hot path of `analyze`).
    pub fn observe_use_view(&mut self, u: UseView<'_>) {
        self.stats.observations += 1;
        self.latest = self.latest.max(u.time);
        self.observe_use(u);
    }

    fn observe_use(&mut self, u: UseView<'_>) {
        let complete = matches!(u.stage, Stage::ResponseComplete | Stage::Panic | Stage::Unknown);
        let rank = self.rank(u.source_ips, complete, u.stage == Stage::ResponseStarted);
        match self.admit(Fold::Use, u.audit_id, rank, u.source_ips) {
            Admit::Now => self.fold_use(u),
            Admit::Hold(key) => self.hold(key, Observation::TokenUse(u.into_owned())),
            Admit::Drop => self.stats.duplicate_stages += 1,
        }
    }

    /// Counts one request's token use (its best copy).
    fn fold_use(&mut self, u: UseView<'_>) {
        self.stats.token_uses += 1;
        let client = self.client(u.source_ips);
        let forged = self.forged_addresses(u.source_ips);
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
                group.add(&u, Some(pod_name), node, &forged, &mut self.shared)
            }
            _ => group.add(&u, None, None, &forged, &mut self.shared),
        }
    }

    fn fold_failure(&mut self, f: &AuthFailure) {
        let client = self.client(&f.source_ips);
        self.failures.entry(client).or_default().add_sharing(
            f.time,
            &f.audit_id,
            f.user_agent.as_deref(),
            Some(&f.request.view()),
            &mut self.shared,
        );
    }

    fn fold_access(&mut self, a: PodAccess) {
        if self.accesses.len() >= MAX_POD_ACCESSES {
            self.stats.pod_accesses_dropped += 1;
        } else {
            let client = self.client(&a.source_ips);
            self.accesses.push(Access { access: a, client });
        }
    }

    fn fold_secret_read(&mut self, r: &SecretRead) {
        // A refused read disclosed nothing.
        if r.code.is_some_and(|c| c >= 400) {
            return;
        }
        let client = self.client(&r.source_ips);
        let key = (r.principal.clone(), r.namespace.clone());
        self.secret_reads.entry(key).or_default().add(r, client);
    }

    /// The rank of a copy of a request (see [`crate::dedup`]): its `sourceIPs` hops beyond
    /// trusted proxies, and whether it carries the response.
    fn rank(&self, source_ips: &[IpAddr], complete: bool, started: bool) -> Rank {
        let proxies = &self.config.trusted_proxies;
        let trusted_tail = source_ips.iter().rev().take_while(|ip| proxies.iter().any(|p| p.contains(**ip))).count();
        Rank::new(source_ips.len() - trusted_tail.min(source_ips.len().saturating_sub(1)), complete, started)
    }

    /// Decides what becomes of a copy of a request, and folds a held copy that left the window.
    fn admit(&mut self, fold: Fold, audit_id: &str, rank: Rank, source_ips: &[IpAddr]) -> Admit {
        let seen = self.recent.sight(fold as u8, audit_id, rank);
        if let Some(obs) = seen.evicted.and_then(|key| self.held.remove(&key)) {
            self.fold_held(obs);
        }
        match seen.sighting {
            Sighting::Fold => {
                if !audit_id.is_empty() && self.held.remove(&seen.key).is_some() {
                    self.count_duplicate(fold);
                }
                Admit::Now
            }
            Sighting::Hold => Admit::Hold(seen.key),
            // Equally good copies (the same request logged twice with different addresses):
            // the smaller address list wins, whichever came first.
            Sighting::Tie if self.held.get(&seen.key).is_some_and(|h| source_ips < held_source_ips(h)) => {
                Admit::Hold(seen.key)
            }
            Sighting::Tie | Sighting::Duplicate => Admit::Drop,
        }
    }

    /// Keeps a copy until a better one comes or the engine settles.
    fn hold(&mut self, key: u64, obs: Observation) {
        let fold = match obs {
            Observation::TokenUse(_) => Fold::Use,
            _ => Fold::Failure,
        };
        if self.held.insert(key, obs).is_some() {
            self.count_duplicate(fold);
        }
    }

    fn count_duplicate(&mut self, fold: Fold) {
        if matches!(fold, Fold::Use) {
            self.stats.duplicate_stages += 1;
        }
    }

    /// Folds a held copy: no better one came.
    fn fold_held(&mut self, obs: Observation) {
        match obs {
            Observation::TokenUse(u) => self.fold_use(u.view()),
            Observation::AuthFailure(f) => self.fold_failure(&f),
            Observation::PodAccess(a) => self.fold_access(a),
            Observation::SecretRead(r) => self.fold_secret_read(&r),
            other => self.observe(other),
        }
    }

    /// Folds every held copy: the evidence is read (or a report is due), so each is the best
    /// copy of its request that came. Later copies of their IDs count as duplicates.
    pub fn settle(&mut self) {
        let held = std::mem::take(&mut self.held);
        for (key, obs) in held {
            self.recent.close(key);
            self.fold_held(obs);
        }
    }

    /// Takes over the token uses other engines folded. `analyze` spreads token uses over
    /// several engines by service account, so each folds every stage of its requests on its own
    /// thread, and gathers them here before the report; the result is what folding those uses
    /// here would have made. The other engines must have been given token uses and nothing else.
    pub fn absorb_uses(&mut self, others: impl IntoIterator<Item = Engine>) {
        for mut other in others {
            other.settle();
            let Engine { uses, stats, latest, hops, .. } = other;
            self.hops.merge(hops);
            self.uses.absorb(uses);
            self.stats.observations += stats.observations;
            self.stats.token_uses += stats.token_uses;
            self.stats.duplicate_stages += stats.duplicate_stages;
            self.latest = self.latest.max(latest);
        }
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

    /// Every use group, by its key.
    pub(crate) fn use_groups(&self) -> impl Iterator<Item = (&UseKey, &UseGroup)> + Clone {
        self.uses.iter()
    }

    /// Client-supplied `sourceIPs` entries that differ from the TCP peer, unless the peer is a
    /// trusted proxy (whose forwarded addresses are expected).
    fn forged_addresses(&self, source_ips: &[IpAddr]) -> Vec<IpAddr> {
        let Some((&peer, supplied)) = source_ips.split_last() else { return Vec::new() };
        if supplied.is_empty() {
            return Vec::new();
        }
        if self.config.trusted_proxies.iter().any(|p| p.contains(peer)) {
            return Vec::new();
        }
        supplied.iter().copied().filter(|&ip| ip != peer).collect()
    }

    fn client(&self, source_ips: &[IpAddr]) -> Option<IpAddr> {
        client_address(source_ips, &self.config.trusted_proxies)
    }

    /// The engine's whole state, to persist (the correlator writes it to its changelog topic).
    /// Settings are not part of it: [`Engine::restore`] takes them anew.
    pub fn snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// An engine with the state of a [`Engine::snapshot`] and the given settings.
    pub fn restore(config: EngineConfig, snapshot: &[u8]) -> Result<Engine, serde_json::Error> {
        let mut engine: Engine = serde_json::from_slice(snapshot)?;
        engine.config = config;
        Ok(engine)
    }

    /// Replaces the settings (after [`Engine::restore`] or a configuration change).
    pub fn reconfigure(&mut self, config: EngineConfig) {
        self.config = config;
    }

    /// Evaluates every rule over the evidence folded so far.
    pub fn report(&mut self) -> Report {
        self.settle();
        self.place_sighted_pods();
        self.model.pods.resolve();
        report::build(self)
    }
}
