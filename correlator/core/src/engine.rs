//! The engine: observations in, a [`Report`] out.
//!
//! [`Engine::observe`] folds each observation into the [`State`] (constant work per observation,
//! memory bounded by pods, credentials and client addresses, never by events), and
//! [`Engine::report`] evaluates every rule over what was folded. Because every fact carries its
//! event time and aggregates are order-independent, feeding the same evidence in any order gives
//! the same report.

use std::net::IpAddr;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::changes::{entry_key, split_key, value, Change, EntryError, Written};
use crate::config::EngineConfig;
use crate::dedup::{Rank, RecentIds, Sighting, WindowMeta};
use crate::expiry::{self, Expired, StateSize};
use crate::hash::FastMap;
use crate::net::client_address;
use crate::observation::{AuthFailure, Observation, PodAccess, SecretRead, Stage, UseView};
use crate::report::{self, Report};
use crate::state::State;
use crate::time::{Micros, Timestamp};

pub use crate::state::EngineStats;

/// The engine: the folded evidence, the window that deduplicates the copies of a request, and
/// the settings that say how to read a request's addresses.
///
/// Its snapshot is one JSON object: the window's fields, then the state's, as when the engine
/// held the state's fields itself. Written with `#[serde(flatten)]`; read by hand (see the
/// `Deserialize` impl below).
#[derive(Debug, serde::Serialize)]
pub struct Engine {
    /// Settings come from the caller, not from persisted state.
    #[serde(skip)]
    config: EngineConfig,
    recent: RecentIds,
    /// Copies of requests that a better copy may still replace (see [`crate::dedup`]), by the
    /// window's key of their audit ID.
    #[serde(with = "crate::pairs")]
    held: FastMap<u64, Observation>,
    #[serde(flatten)]
    state: State,
    /// What was last written of the state's sections compared whole ([`Engine::changes`]).
    #[serde(skip)]
    written: Written,
}

/// The changelog sections of the engine's own: the window's segments, and everything small.
const WINDOW: &str = "window";
const REST: &str = "rest";

/// The changelog's one entry of what is neither keyed nor large: the window's progress, the
/// copies held, and the state's small aggregates.
#[derive(serde::Serialize)]
struct EngineRest<'a> {
    window: WindowMeta,
    #[serde(serialize_with = "crate::pairs::serialize_ref")]
    held: &'a FastMap<u64, Observation>,
    #[serde(flatten)]
    state: crate::state::Rest<'a>,
}

/// [`EngineRest`] as read back.
#[derive(Deserialize)]
struct EngineRestOwned {
    window: WindowMeta,
    #[serde(with = "crate::pairs")]
    held: FastMap<u64, Observation>,
    #[serde(flatten)]
    state: crate::state::RestOwned,
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

/// Whether an observation's time is the audit log's own progress, the watermark expiry works by
/// (`State::expiry_watermark`): requests, and the pod and node facts the log carries. Not an
/// inventory's facts (a dump is taken at the end, whenever it is sent), nor objects' creation
/// times, nor an agent's clock.
fn logged(obs: &Observation) -> bool {
    use crate::observation::FactSource;
    match obs {
        Observation::Pod(p) => !matches!(p.source, Some(FactSource::Inventory | FactSource::Attestation)),
        Observation::Node(n) => !matches!(n.source, Some(FactSource::Inventory | FactSource::Attestation)),
        Observation::ServiceAccount(_)
        | Observation::TokenSecret(_)
        | Observation::Credential(_)
        | Observation::TokenFileRead(_) => false,
        Observation::Progress(p) => p.logged.is_some(),
        _ => true,
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
            state: State::default(),
            written: Written::default(),
        }
    }

    /// How far the slowest attesting node's agent trails the latest event: the verdicts that
    /// wait for attestations wait about this long (plus the grace period). `None` before any
    /// agent reported.
    pub fn watermark_lag(&self) -> Option<Micros> {
        // Before any audit event there is no event time for an agent to trail (agents' own times
        // never move it): nothing waits yet.
        let latest = self.state.latest();
        if latest == Timestamp::MIN {
            return None;
        }
        self.state.attestations().reported_by_all().map(|t| latest.0.saturating_sub(t.0).max(0))
    }

    /// What the engine has counted so far.
    pub fn stats(&self) -> &EngineStats {
        self.state.stats()
    }

    /// Folds one observation in.
    pub fn observe(&mut self, obs: Observation) {
        // An agent's time is its node's clock: one node stamping 9999-12-31 would otherwise move
        // the watermark for every node and expire all evidence before it is reported. It moves
        // only its own node's watermark (`Attestations::reported`); event time follows the
        // apiserver's audit log (and inventories), which every node's evidence shares.
        self.state.received((!obs.from_agent()).then(|| obs.time()));
        if logged(&obs) {
            self.state.logged_at(obs.time());
        }
        match obs {
            Observation::TokenUse(u) => self.observe_use(u.view()),
            Observation::TokenMint(m) => {
                let client = self.client(&m.source_ips);
                let hops = self.rank(&m.source_ips, true, false).hops();
                self.state.fold_mint(m, client, hops);
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
            Observation::Pod(p) => self.state.fold_pod(p),
            Observation::Credential(c) => self.state.fold_attestation(&c),
            Observation::TokenFileRead(r) => self.state.fold_token_read(&r),
            Observation::Node(n) => self.state.fold_node(&n),
            Observation::ServiceAccount(sa) => self.state.fold_serviceaccount(sa),
            Observation::TokenSecret(s) => self.state.fold_token_secret(s),
            Observation::Progress(p) => self.state.fold_progress(&p),
        }
    }

    /// Folds a copy of an observation broadcast to every partition whose home copy went to
    /// another partition (the aggregator's routing, docs/streaming.md). Such a copy raises no
    /// finding about itself, which its home partition raises, except where this partition knows
    /// more: a Secret read is judged here against the token Secrets this partition holds (a
    /// cluster-wide `list` reads Secrets of every account, and each account's token Secrets live
    /// in its own partition). A token Secret that could not be placed is reported by its home
    /// copy only. Everything else folds as [`Engine::observe`] does.
    pub fn observe_elsewhere(&mut self, obs: Observation) {
        match obs {
            Observation::SecretRead(r) => {
                self.state.received(Some(r.time));
                let client = self.client(&r.source_ips);
                self.state.fold_secret_read_elsewhere(&r, client);
            }
            Observation::TokenSecret(_) => {}
            other => self.observe(other),
        }
    }

    /// Folds a token use given as a view: what [`Engine::observe`] does with a
    /// [`Observation::TokenUse`], without the owned copy (the hot path of `analyze`).
    pub fn observe_use_view(&mut self, u: UseView<'_>) {
        self.state.received(Some(u.time));
        self.state.logged_at(u.time);
        self.observe_use(u);
    }

    fn observe_use(&mut self, u: UseView<'_>) {
        let complete = matches!(u.stage, Stage::ResponseComplete | Stage::Panic | Stage::Unknown);
        let rank = self.rank(u.source_ips, complete, u.stage == Stage::ResponseStarted);
        match self.admit(Fold::Use, u.audit_id, rank, u.source_ips) {
            Admit::Now => self.fold_use(u),
            Admit::Hold(key) => self.hold(key, Observation::TokenUse(u.into_owned())),
            Admit::Drop => self.state.count_duplicate_stage(),
        }
    }

    /// Counts one request's token use (its best copy).
    fn fold_use(&mut self, u: UseView<'_>) {
        let client = self.client(u.source_ips);
        let forged = self.forged_addresses(u.source_ips);
        self.state.fold_use(u, client, &forged);
    }

    fn fold_failure(&mut self, f: &AuthFailure) {
        let client = self.client(&f.source_ips);
        self.state.fold_failure(f, client);
    }

    fn fold_access(&mut self, a: PodAccess) {
        let client = self.client(&a.source_ips);
        self.state.fold_access(a, client);
    }

    fn fold_secret_read(&mut self, r: &SecretRead) {
        let client = self.client(&r.source_ips);
        self.state.fold_secret_read(r, client);
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
            self.state.count_duplicate_stage();
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
            self.state.absorb_uses(other.state);
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

    /// Starts noting what changes in the state, for [`Engine::changes`] (a persisting
    /// correlator; `analyze` never pays for it).
    pub fn track_changes(&mut self) {
        self.recent.track_changes();
        self.state.track_changes();
    }

    /// The entries changed since the last call, as records of a per-key changelog
    /// ([`crate::changes`]): after [`Engine::track_changes`], what changed costs what it is, not
    /// what the engine holds. The first call after [`Engine::new`] or a restore writes every
    /// entry of the sections compared whole.
    pub fn changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        self.state.changes(&mut self.written, &mut changes);
        for (n, segment) in self.recent.take_changes() {
            let value = segment.map(|s| value::encode(&s));
            changes.push(Change { key: entry_key(WINDOW, &n.to_string()), value });
        }
        let rest = EngineRest { window: self.recent.meta(), held: &self.held, state: self.state.rest() };
        // JSON, as the sections compared whole: one entry, and flattened (which a format
        // without field names cannot read).
        let rest = serde_json::to_vec(&rest).unwrap_or_default();
        self.written.diff(REST, [(String::new(), rest)], &mut changes);
        changes
    }

    /// An engine made of the live entries of a per-key changelog (the last value of each key;
    /// deleted keys left out), in any order, tracking changes; the given settings.
    pub fn from_entries<'a>(
        config: EngineConfig,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Engine, EntryError> {
        let mut engine = Engine::new(config);
        let mut segments = Vec::new();
        let mut rest = None;
        for (key, value) in entries {
            let Some((section, inner)) = split_key(key) else {
                return Err(EntryError::UnknownSection { key: key.to_string() });
            };
            match section {
                WINDOW => {
                    let n: u64 = inner.parse().map_err(|_| EntryError::UnknownSection { key: key.to_string() })?;
                    segments.push((n, value::decode(value).map_err(EntryError::malformed(key))?));
                }
                REST => rest = Some(value::decode::<EngineRestOwned>(value).map_err(EntryError::malformed(key))?),
                _ if engine.state.restore_entry(section, inner, value)? => {}
                _ => return Err(EntryError::UnknownSection { key: key.to_string() }),
            }
        }
        if let Some(rest) = rest {
            engine.recent = RecentIds::from_segments(rest.window, segments);
            engine.held = rest.held;
            engine.state.restore_rest(rest.state);
        }
        engine.track_changes();
        // What was read is what is written: the first commit passes on only what changes next,
        // and what an older version wrote in another shape.
        engine.changes();
        engine.state.attestations_mut().rewrite_legacy();
        Ok(engine)
    }

    /// Replaces the settings (after [`Engine::restore`] or a configuration change).
    pub fn reconfigure(&mut self, config: EngineConfig) {
        self.config = config;
    }

    /// Evaluates every rule over the evidence folded so far, and groups the findings into
    /// incidents.
    pub fn report(&mut self) -> Report {
        self.report_of(report::Incidents::Made)
    }

    /// As [`Engine::report`], with no incidents: for the stream, which sends findings only and
    /// asks for a report on every tick.
    pub fn report_without_incidents(&mut self) -> Report {
        self.report_of(report::Incidents::Skipped)
    }

    fn report_of(&mut self, incidents: report::Incidents) -> Report {
        self.settle();
        self.state.place_sighted_pods();
        self.state.resolve_pods();
        report::build(&self.state, &self.config, incidents)
    }

    /// Drops what has not been seen for its retention (`EngineConfig::retention`) before the
    /// engine's watermark (the latest audit or inventory event time folded in).
    pub fn expire(&mut self) -> Expired {
        self.expire_by(self.state.expiry_watermark())
    }

    /// [`Engine::expire`] for an engine that may never see an audit event (a partition only
    /// agents write to): until one comes, `clock` (the caller's own, never an agent's) stands for
    /// the watermark, so agents' facts still leave after their retention. Once audit or
    /// inventory events have come, their time rules, whatever the clock says: a backlog replayed
    /// days late is judged by its own time.
    pub fn expire_at(&mut self, clock: Timestamp) -> Expired {
        let watermark = if self.state.latest() == Timestamp::MIN { clock } else { self.state.expiry_watermark() };
        self.expire_by(watermark)
    }

    fn expire_by(&mut self, watermark: Timestamp) -> Expired {
        expiry::expire(&mut self.state, watermark, self.config.retention, self.config.deletion_window)
    }

    /// How much the engine holds.
    pub fn state_size(&self) -> StateSize {
        expiry::size(&self.state)
    }
}

// Not derived with `#[serde(flatten)]`: that buffers the whole state before reading it (a second
// copy of a state of millions of credentials, at restore) and cannot read the maps it holds keyed
// by numbers (JSON writes their keys as strings). The state reads the object itself, and the
// window's fields are taken out of it as they come, in whatever order.
impl<'de> Deserialize<'de> for Engine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Engine, D::Error> {
        deserializer.deserialize_map(EngineVisitor)
    }
}

struct EngineVisitor;

impl<'de> Visitor<'de> for EngineVisitor {
    type Value = Engine;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an engine snapshot")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Engine, A::Error> {
        let mut fields = WindowFields { rest: map, recent: None, held: None };
        let state = State::deserialize(MapAccessDeserializer::new(&mut fields))?;
        let recent = fields.recent.ok_or_else(|| de::Error::missing_field("recent"))?;
        // Snapshots from before copies were held have none.
        let held = fields.held.unwrap_or_default();
        Ok(Engine { config: EngineConfig::default(), recent, held, state, written: Written::default() })
    }
}

/// The held copies as the snapshot writes them (a list of pairs).
#[derive(Deserialize)]
#[serde(transparent)]
struct Held(#[serde(with = "crate::pairs")] FastMap<u64, Observation>);

/// A snapshot's object as the state sees it: the window's fields are read into `recent` and
/// `held` on the way, and the state is shown only its own.
struct WindowFields<A> {
    rest: A,
    recent: Option<RecentIds>,
    held: Option<FastMap<u64, Observation>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WindowFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.rest.next_key::<String>()? {
            match key.as_str() {
                "recent" => self.recent = Some(self.rest.next_value()?),
                "held" => self.held = Some(self.rest.next_value::<Held>()?.0),
                _ => return seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(key)).map(Some),
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.rest.next_value_seed(seed)
    }
}
