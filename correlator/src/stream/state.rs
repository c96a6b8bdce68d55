//! What one input partition's correlator holds: an engine per cluster and what it has sent.
//!
//! It is kept in the changelog topic as keyed entries (a use group, a pod, a sent finding, ...:
//! `tokentrail_correlator_core::changes`), of which each commit writes those that changed, in the
//! same transaction as the findings they led to and the input offsets consumed, so the three
//! never disagree. Versions before that wrote the whole state as one record; it is still read.

use std::collections::BTreeMap;

use tokentrail_correlator_core::changes::{entry_key, split_key, Change, EntryError, Written};
use tokentrail_correlator_core::emit::{Emitter, Sent};
use tokentrail_correlator_core::expiry::Expired;
use tokentrail_correlator_core::ocsf::Activity;
use tokentrail_correlator_core::time::Micros;
use tokentrail_correlator_core::{Engine, EngineConfig, Finding, Observation, Timestamp};

/// Which copy of an observation a partition was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The only copy (keyed by its service account), or a broadcast's home copy.
    Own,
    /// A broadcast's copy whose home is another partition ([`Engine::observe_elsewhere`]).
    Elsewhere,
}

/// State of one input partition.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    /// One engine per cluster: clusters share partitions, never pods or addresses.
    engines: BTreeMap<String, Engine>,
    /// Findings already sent from this partition.
    emitter: Emitter,
    /// Written by versions before withdrawals: their last [`PartitionState::due`] expired
    /// something, and the next one forgets the sent findings its evidence no longer supports.
    #[serde(default, skip_serializing)]
    expired: bool,
    /// Whether the engines note what changes, for [`PartitionState::changes`].
    #[serde(skip)]
    tracking: bool,
    /// What was last written of the sent findings.
    #[serde(skip)]
    written: Written,
}

/// The changelog sections of a partition: each cluster's engine's entries, and the findings sent.
const ENGINE: &str = "engine";
const SENT: &str = "sent";

impl PartitionState {
    /// Restores persisted state under the given settings.
    pub fn restore(bytes: &[u8], config: &EngineConfig) -> Result<PartitionState, serde_json::Error> {
        let mut state: PartitionState = serde_json::from_slice(bytes)?;
        for (cluster, engine) in &mut state.engines {
            engine.reconfigure(for_cluster(config, cluster));
        }
        Ok(state)
    }

    /// The whole state as one record, as versions before the per-key changelog wrote it.
    pub fn snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Starts noting what changes, for [`PartitionState::changes`].
    pub fn track_changes(&mut self) {
        self.tracking = true;
        for engine in self.engines.values_mut() {
            engine.track_changes();
        }
    }

    /// The changelog records due since the last call (after [`PartitionState::track_changes`]):
    /// the entries that changed, and deletions of those that left. Call it after
    /// [`PartitionState::due`], whose expiry and emitter it records.
    pub fn changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for (cluster, engine) in &mut self.engines {
            let cluster = serde_json::to_string(cluster).unwrap_or_default();
            changes.extend(
                engine
                    .changes()
                    .into_iter()
                    .map(|c| Change { key: entry_key(ENGINE, &entry_key(&cluster, &c.key)), value: c.value }),
            );
        }
        let sent = self.emitter.sent().map(|(id, s)| (id.to_string(), serde_json::to_vec(s).unwrap_or_default()));
        self.written.diff(SENT, sent, &mut changes);
        changes
    }

    /// The state the live entries of a changelog make (any order; deleted keys left out),
    /// noting changes from there on.
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        config: &EngineConfig,
    ) -> Result<PartitionState, EntryError> {
        let mut by_cluster: BTreeMap<String, Vec<(&str, &[u8])>> = BTreeMap::new();
        let mut state = PartitionState::default();
        for (key, value) in entries {
            let unknown = || EntryError::UnknownSection { key: key.to_string() };
            match split_key(key).ok_or_else(unknown)? {
                (ENGINE, inner) => {
                    let (cluster, engine_key) = split_key(inner).ok_or_else(unknown)?;
                    let cluster: String = serde_json::from_str(cluster).map_err(EntryError::malformed(key))?;
                    by_cluster.entry(cluster).or_default().push((engine_key, value));
                }
                (SENT, id) => {
                    let sent: Sent = serde_json::from_slice(value).map_err(EntryError::malformed(key))?;
                    state.emitter.insert_restored(id.to_string(), sent);
                }
                _ => return Err(unknown()),
            }
        }
        for (cluster, entries) in by_cluster {
            let engine = Engine::from_entries(for_cluster(config, &cluster), entries)?;
            state.engines.insert(cluster, engine);
        }
        state.track_changes();
        // What was read is what is written: the first commit passes on only what changes next.
        state.changes();
        Ok(state)
    }

    /// Folds one observation about `cluster` in.
    pub fn observe(&mut self, cluster: &str, observation: Observation, config: &EngineConfig) {
        self.observe_copy(cluster, observation, Placement::Own, config);
    }

    /// Folds one record of the observations topic in, as the copy it is (its headers say).
    pub fn observe_copy(&mut self, cluster: &str, observation: Observation, copy: Placement, config: &EngineConfig) {
        let tracking = self.tracking;
        let engine = self.engines.entry(cluster.to_string()).or_insert_with(|| {
            let mut engine = Engine::new(for_cluster(config, cluster));
            if tracking {
                engine.track_changes();
            }
            engine
        });
        match copy {
            Placement::Own => engine.observe(observation),
            Placement::Elsewhere => engine.observe_elsewhere(observation),
        }
    }

    /// The findings due downstream now (new ones, material updates, and withdrawals of sent
    /// findings that later evidence explains); then what the engines no longer need is expired
    /// (bounded state, by event time: `tokentrail_correlator_core::expiry`).
    ///
    /// Reporting comes first so that nothing is expired before it was reported: evidence that
    /// arrives already older than the watermark minus its retention is reported once, then
    /// dropped. When the expiry dropped something, the engines report once more and the emitter
    /// forgets the sent findings that report lacks: their evidence expired, nothing explained
    /// them, so they are not withdrawn; a finding missing from the next report can then only
    /// have been explained by the evidence that came in between.
    ///
    /// `clock` is this host's time, by which an engine that never saw an audit event (a
    /// partition only agents write to) expires ([`Engine::expire_at`]).
    pub fn due(&mut self, clock: Timestamp) -> Vec<(Finding, Activity)> {
        let findings = self.report();
        // State saved before withdrawals: its last expiry's findings are forgotten here.
        if std::mem::take(&mut self.expired) {
            self.emitter.forget_absent(&findings);
        }
        let mut due: Vec<(Finding, Activity)> =
            self.emitter.due(&findings).into_iter().map(|(f, a)| (f.clone(), a)).collect();
        due.extend(self.emitter.withdraw(&findings).into_iter().map(|f| (f, Activity::Update)));
        let mut expired = false;
        for engine in self.engines.values_mut() {
            expired |= engine.expire_at(clock) != Expired::default();
        }
        if expired {
            let left = self.report();
            self.emitter.forget_absent(&left);
        }
        due
    }

    fn report(&mut self) -> Vec<Finding> {
        self.engines.values_mut().flat_map(|e| e.report_without_incidents().findings).collect()
    }

    /// How far the slowest node's agent trails the latest event, over every cluster's engine.
    pub fn watermark_lag(&self) -> Option<Micros> {
        self.engines.values().filter_map(Engine::watermark_lag).max()
    }

    /// How much the engines hold: use groups, attested credentials and pods.
    pub fn size(&self) -> usize {
        self.engines.values().map(|e| e.state_size().total()).sum()
    }
}

fn for_cluster(config: &EngineConfig, cluster: &str) -> EngineConfig {
    let mut c = config.clone();
    if !cluster.is_empty() {
        c.cluster = Some(cluster.to_string());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokentrail_correlator_core::finding::{Rule, Status};
    use tokentrail_correlator_core::observation::{
        AuthFailure, Credential, FactSource, PodEvent, PodFact, Request, SecretRead, ServiceAccountRef, Stage,
        TokenSecretFact, TokenUse,
    };
    use tokentrail_correlator_core::time::MINUTE;

    fn use_at(audit_id: &str, minutes: i64, from: &str) -> Observation {
        Observation::TokenUse(TokenUse {
            time: Timestamp(1_772_359_200_000_000 + minutes * MINUTE),
            audit_id: audit_id.into(),
            stage: Stage::ResponseComplete,
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            serviceaccount_uid: None,
            credential: Credential::PodBound {
                jti: Some(format!("j-{audit_id}")),
                pod_name: "api-1".into(),
                pod_uid: "uid-api".into(),
                node: Some("worker-1".into()),
            },
            source_ips: vec![from.parse().unwrap()],
            user_agent: None,
            request: Request { verb: "get".into(), code: Some(200), ..Request::default() },
            stale_token: false,
        })
    }

    fn at(minutes: i64) -> Timestamp {
        Timestamp(1_772_359_200_000_000 + minutes * MINUTE)
    }

    fn api_pod(event: PodEvent, source: FactSource, minutes: i64) -> Observation {
        Observation::Pod(PodFact {
            time: at(minutes),
            event: Some(event),
            source: Some(source),
            uid: Some("uid-api".into()),
            namespace: "payments".into(),
            name: "api-1".into(),
            node: Some("worker-1".into()),
            serviceaccount: Some("api".into()),
            ips: vec!["10.244.1.12".parse().unwrap()],
            ..PodFact::default()
        })
    }

    fn rules(due: &[(Finding, Activity)]) -> Vec<Rule> {
        due.iter().map(|(f, _)| f.rule).collect()
    }

    #[test]
    fn a_dump_sent_before_the_log_expires_nothing_the_log_still_needs() {
        // pods.json, taken at the end, holds a pod started four hours into the log: its time is
        // not how far the log has come.
        let config = EngineConfig::default();
        let mut state = PartitionState::default();
        let mut web = api_pod(PodEvent::Observed, FactSource::Inventory, 240);
        if let Observation::Pod(p) = &mut web {
            (p.uid, p.name, p.ips) = (Some("uid-web".into()), "web-2".into(), vec!["10.244.2.9".parse().unwrap()]);
        }
        state.observe("prod", web, &config);
        state.observe("prod", use_at("copied", 0, "203.0.113.50"), &config);
        state.due(Timestamp::MIN);
        // The log goes on: the pod is deleted, and the batch ends there.
        state.observe("prod", api_pod(PodEvent::Deleted, FactSource::AuditLog, 10), &config);
        state.due(Timestamp::MIN);
        // Two minutes later the copied token is refused from where it was used.
        state.observe(
            "prod",
            Observation::AuthFailure(AuthFailure {
                time: at(12),
                audit_id: "401".into(),
                source_ips: vec!["203.0.113.50".parse().unwrap()],
                user_agent: None,
                request: Request { verb: "list".into(), code: Some(401), ..Request::default() },
            }),
            &config,
        );
        let due = state.due(Timestamp::MIN);
        assert!(rules(&due).contains(&Rule::TokenAfterPodDeletion), "{:?}", rules(&due));
    }

    #[test]
    fn a_list_broadcast_from_elsewhere_is_judged_where_the_token_secrets_are() {
        let config = EngineConfig::default();
        let secret = Observation::TokenSecret(TokenSecretFact {
            time: at(0),
            namespace: "monitoring".into(),
            name: "exporter-token".into(),
            serviceaccount: Some("exporter".into()),
            ..TokenSecretFact::default()
        });
        let list = Observation::SecretRead(SecretRead {
            time: at(5),
            audit_id: "list-1".into(),
            principal: "oidc:mallory".into(),
            source_ips: vec!["198.51.100.23".parse().unwrap()],
            verb: "list".into(),
            namespace: Some("monitoring".into()),
            name: None,
            code: Some(200),
            user_agent: None,
        });
        // The list's home partition does not hold the Secret; the exporter's partition does.
        let mut home = PartitionState::default();
        home.observe_copy("prod", list.clone(), Placement::Own, &config);
        assert!(home.due(Timestamp::MIN).is_empty(), "no token Secret known at home");
        let mut exporter = PartitionState::default();
        exporter.observe_copy("prod", secret, Placement::Own, &config);
        exporter.observe_copy("prod", list, Placement::Elsewhere, &config);
        let due = exporter.due(Timestamp::MIN);
        assert!(rules(&due).contains(&Rule::SaTokenSecretRead), "{:?}", rules(&due));
        // A `get` of an unknown Secret named like a token Secret is the home copy's to report.
        let get = Observation::SecretRead(SecretRead {
            time: at(6),
            audit_id: "get-1".into(),
            principal: "oidc:mallory".into(),
            source_ips: vec!["198.51.100.23".parse().unwrap()],
            verb: "get".into(),
            namespace: Some("shop".into()),
            name: Some("web-token-x7k2p".into()),
            code: Some(200),
            user_agent: None,
        });
        exporter.observe_copy("prod", get.clone(), Placement::Elsewhere, &config);
        assert!(exporter.due(Timestamp::MIN).is_empty(), "judged by its name at home only");
        home.observe_copy("prod", get, Placement::Own, &config);
        assert_eq!(rules(&home.due(Timestamp::MIN)), [Rule::SaTokenSecretRead]);
    }

    #[test]
    fn a_finding_that_only_expired_is_forgotten_not_withdrawn() {
        let config = EngineConfig::default();
        let mut state = PartitionState::default();
        state.observe("prod", use_at("old", 0, "203.0.113.50"), &config);
        assert_eq!(state.due(Timestamp::MIN).len(), 1);
        // A day and more later: the credential leaves the state, its finding the report.
        state.observe("prod", use_at("now", 30 * 60, "10.244.1.12"), &config);
        let due = state.due(Timestamp::MIN);
        assert!(due.iter().all(|(f, _)| f.status == Status::Active), "{due:?}");
        let due = state.due(Timestamp::MIN);
        assert!(due.iter().all(|(f, _)| f.status == Status::Active), "not withdrawn later either: {due:?}");
    }

    #[test]
    fn evidence_older_than_the_retention_is_reported_before_it_is_expired() {
        let config = EngineConfig::default();
        let mut state = PartitionState::default();
        state.observe("prod", use_at("now", 30 * 60, "10.244.1.12"), &config);
        state.due(Timestamp::MIN);
        // A replay from 30 hours ago arrives late: past the 25-hour retention on arrival.
        state.observe("prod", use_at("late", 0, "203.0.113.50"), &config);
        let held = state.size();
        let due = state.due(Timestamp::MIN);
        assert!(due.iter().any(|(f, _)| f.source_ip == Some("203.0.113.50".parse().unwrap())), "{due:?}");
        assert_eq!(state.size(), held - 1, "then its use group expired");
        assert!(state.due(Timestamp::MIN).is_empty(), "and not reported again");
    }

    fn replay(log: &BTreeMap<String, Vec<u8>>, config: &EngineConfig) -> PartitionState {
        PartitionState::from_entries(log.iter().map(|(k, v)| (k.as_str(), v.as_slice())), config).unwrap()
    }

    fn write(log: &mut BTreeMap<String, Vec<u8>>, state: &mut PartitionState) -> usize {
        let changes = state.changes();
        for c in &changes {
            match &c.value {
                Some(v) => log.insert(c.key.clone(), v.clone()),
                None => log.remove(&c.key),
            };
        }
        changes.len()
    }

    #[test]
    fn a_state_rebuilt_from_its_entries_keeps_its_clusters_and_what_it_sent() {
        let config = EngineConfig::default();
        let mut state = PartitionState::default();
        state.track_changes();
        let mut log = BTreeMap::new();
        state.observe("prod", use_at("p", 0, "203.0.113.50"), &config);
        state.observe("staging\tb", use_at("s", 0, "203.0.113.51"), &config);
        assert_eq!(state.due(Timestamp::MIN).len(), 2);
        write(&mut log, &mut state);
        assert!(log.keys().any(|k| k.starts_with("sent\t")), "{:?}", log.keys().collect::<Vec<_>>());
        let mut restored = replay(&log, &config);
        assert_eq!(write(&mut log, &mut restored), 0, "a restored state has nothing new to write");
        assert!(restored.due(Timestamp::MIN).is_empty(), "both findings were sent before the restart");
        // The same credential again from the same address: an update at most, never a second
        // create.
        let mut again = use_at("p2", 1, "203.0.113.50");
        if let Observation::TokenUse(u) = &mut again {
            u.credential = Credential::PodBound {
                jti: Some("j-p".into()),
                pod_name: "api-1".into(),
                pod_uid: "uid-api".into(),
                node: Some("worker-1".into()),
            };
        }
        restored.observe("prod", again, &config);
        let due = restored.due(Timestamp::MIN);
        assert!(due.iter().all(|(_, a)| *a == Activity::Update), "{due:?}");
        assert_eq!(restored.size(), 2, "one use group in each cluster's engine");
    }
}
