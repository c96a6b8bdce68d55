//! The engine: observations in, a [`Report`] out.
//!
//! [`Engine::observe`] folds each observation into the model and the aggregates (constant work per
//! observation, memory bounded by pods, credentials and client addresses, never by events), and
//! [`Engine::report`] evaluates every rule over what was folded. Because every fact carries its
//! event time and aggregates are order-independent, feeding the same evidence in any order gives
//! the same report.

use std::collections::{BTreeMap, HashMap};

use hashbrown::hash_map::Entry;
use std::net::IpAddr;

use crate::activity::{Access, Mints, SecretReads};
use crate::attestation::Attestations;
use crate::config::EngineConfig;
use crate::dedup::RecentIds;
use crate::hash::LookupMap;
use crate::model::Model;
use crate::net::client_address;
use crate::observation::{
    Credential, FactSource, Observation, ServiceAccountFact, ServiceAccountRef, TokenSecretFact, UseView,
};
use crate::report::{self, Report};
use crate::tally::Tally;
use crate::time::{Micros, Timestamp};
use crate::usage::{CredentialKey, UseGroup, UseKey};

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
    pub(crate) model: Model,
    #[serde(with = "crate::pairs")]
    pub(crate) uses: LookupMap<UseKey, UseGroup>,
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
    pub(crate) stats: EngineStats,
    /// The latest audit or inventory event time seen: the report's "now" and the watermark
    /// expiry works by (the core has no clock). Agents' times never move it (see `observe`).
    pub(crate) latest: Timestamp,
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
            config,
            model: Model::default(),
            uses: LookupMap::default(),
            failures: HashMap::new(),
            accesses: Vec::new(),
            secret_reads: HashMap::new(),
            mints: Mints::default(),
            serviceaccounts: BTreeMap::new(),
            token_secrets: BTreeMap::new(),
            attestations: Attestations::default(),
            stats: EngineStats::default(),
            latest: Timestamp::MIN,
        }
    }

    /// How far the slowest attesting node's agent trails the latest event: the verdicts that
    /// wait for attestations wait about this long (plus the grace period). `None` before any
    /// agent reported.
    pub fn watermark_lag(&self) -> Option<Micros> {
        self.attestations.reported_by_all().map(|t| (self.latest.0 - t.0).max(0))
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
                self.mints.add(m, client);
            }
            Observation::AuthFailure(f) => {
                if self.first_sighting(Fold::Failure, &f.audit_id) {
                    let client = self.client(&f.source_ips);
                    self.failures.entry(client).or_default().add(
                        f.time,
                        &f.audit_id,
                        f.user_agent.as_deref(),
                        Some(&f.request.view()),
                    );
                }
            }
            Observation::PodAccess(a) => {
                if self.first_sighting(Fold::Access, &a.audit_id) {
                    if self.accesses.len() >= MAX_POD_ACCESSES {
                        self.stats.pod_accesses_dropped += 1;
                    } else {
                        let client = self.client(&a.source_ips);
                        self.accesses.push(Access { access: a, client });
                    }
                }
            }
            Observation::SecretRead(r) => {
                let refused = r.code.is_some_and(|c| c >= 400);
                if !refused && self.first_sighting(Fold::SecretRead, &r.audit_id) {
                    let client = self.client(&r.source_ips);
                    let key = (r.principal.clone(), r.namespace.clone());
                    self.secret_reads.entry(key).or_default().add(&r, client);
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
        if !self.first_sighting(Fold::Use, u.audit_id) {
            self.stats.duplicate_stages += 1;
            return;
        }
        self.stats.token_uses += 1;
        let client = self.client(u.source_ips);
        let forged = self.forged_addresses(u.source_ips);
        let key = UseKey { serviceaccount: u.serviceaccount, credential: CredentialKey::of(&u.credential), client };
        let group = self.uses.entry_ref(&key).or_default();
        if let Credential::PodBound { pod_name, pod_uid, node, .. } = u.credential {
            // A successful use proves the pod existed then (its token is validated against it).
            // A use inside the span of its group's earlier uses, which were noted already,
            // would change nothing: skip the pod lookup, which is most of a repeated use's cost.
            let noted = group.uses.count > 0
                && (group.first()..=group.last()).contains(&u.time)
                && (node.is_none() || group.node.is_some());
            if !noted {
                self.model.pods.note_bound(pod_uid, u.serviceaccount.namespace, pod_name, node, u.time);
            }
            group.add(&u, Some(pod_name), node, &forged);
        } else {
            group.add(&u, None, None, &forged);
        }
    }

    /// Takes over the token uses other engines folded. `analyze` spreads token uses over
    /// several engines by service account, so each folds every stage of its requests on its own
    /// thread, and gathers them here before the report; the result is what folding those uses
    /// here would have made. The other engines must have been given token uses and nothing else.
    pub fn absorb_uses(&mut self, others: impl IntoIterator<Item = Engine>) {
        let others: Vec<Engine> = others.into_iter().collect();
        // Room for every group at once: growing the map step by step would move each group
        // (a few hundred bytes) several times over.
        self.uses.reserve(others.iter().map(|e| e.uses.len()).sum());
        for Engine { uses, model, stats, latest, .. } in others {
            for (key, group) in uses {
                match self.uses.entry(key) {
                    Entry::Occupied(mut mine) => mine.get_mut().merge(group),
                    Entry::Vacant(slot) => {
                        slot.insert(group);
                    }
                }
            }
            self.model.pods.absorb_sightings(model.pods);
            self.stats.observations += stats.observations;
            self.stats.token_uses += stats.token_uses;
            self.stats.duplicate_stages += stats.duplicate_stages;
            self.latest = self.latest.max(latest);
        }
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

    fn first_sighting(&mut self, fold: Fold, audit_id: &str) -> bool {
        self.recent.first_sighting(fold as u8, audit_id)
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
        self.model.pods.resolve();
        report::build(self)
    }
}
