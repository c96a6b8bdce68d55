//! Order-independent answers (issue 19): the streaming side must give exactly the findings
//! `tokentrail analyze` gives on the same evidence, whatever order and batching the evidence
//! arrives in, on one partition or spread over many.
//!
//! Engine-level, no broker: each generated incident is decoded as the aggregator decodes it,
//! routed as the aggregator routes it (`tokentrail_aggregator_core::route`: keyed records, and
//! broadcasts with one home copy), and folded into one [`PartitionState`] per partition as the
//! correlator (and `tokentrail standalone`, which is one partition) folds it, with
//! [`PartitionState::due`] where a commit (or an emit tick) would come. What a SIEM would hold at
//! the end (every finding sent, less those withdrawn) is compared with `analyze`'s report on
//! (rule, service account, credential, client address).
//!
//! The matrix: orders (the dumps then the log as written; the same with the log shuffled within
//! [`LATENESS`]; the log then the dumps) × delivery (paced like a live apiserver, a commit every
//! [`PACE`] observations; the whole backlog in one batch; and, for the shuffled order, paced with
//! every replica restarted from its per-key changelog every few commits) × partitions (1, 24).
//! Each cell prints
//! its figure (`found/expected`, what is missing and what is extra): run with `--nocapture` to
//! see the table.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokentrail_aggregator_core::route::{home_partition, Directory, Route};
use tokentrail_aggregator_core::{decode_line, decode_value, Decoded};
use tokentrail_correlator::forensic::{analyze, AnalyzeOptions, Quiet};
use tokentrail_correlator::stream::{PartitionState, Placement};
use tokentrail_correlator_core::finding::Status;
use tokentrail_correlator_core::ocsf::Activity;
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{EngineConfig, Finding, Observation, Timestamp};

const CLUSTER: &str = "gen";
/// How late an audit event may come behind its neighbours in the shuffled orders.
const LATENESS: i64 = 2 * MINUTE;
/// Observations between two commits when paced.
const PACE: usize = 25;

/// What a finding is compared on: rule, service account, credential, client address.
type Key = (String, String, String, String);

fn key(f: &Finding) -> Key {
    (
        f.rule.id().to_string(),
        f.serviceaccount.as_ref().map(|s| format!("{}/{}", s.namespace, s.name)).unwrap_or_default(),
        f.credential.as_ref().and_then(|c| c.id.clone().or_else(|| c.secret.clone())).unwrap_or_default(),
        f.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
    )
}

fn config() -> EngineConfig {
    EngineConfig { cluster: Some(CLUSTER.into()), ..EngineConfig::default() }
}

/// An incident's evidence, decoded: the audit log's observations in file order, and the
/// dumps'.
struct Evidence {
    dir: PathBuf,
    log: Vec<Observation>,
    dumps: Vec<Observation>,
}

fn load(dir: &Path) -> Evidence {
    let mut log = Decoded::new();
    for line in std::fs::read(dir.join("audit.log")).unwrap().split(|b| *b == b'\n') {
        if !line.is_empty() {
            decode_line(line, &mut log);
        }
    }
    let mut dumps = Decoded::new();
    for f in ["serviceaccounts.json", "sa_secrets.json", "pods.json", "nodes.json"] {
        if let Ok(bytes) = std::fs::read(dir.join(f)) {
            decode_value(&bytes, &mut dumps);
        }
    }
    assert!(log.problems.is_empty() && dumps.problems.is_empty(), "{:?} {:?}", log.problems, dumps.problems);
    Evidence { dir: dir.to_path_buf(), log: log.observations, dumps: dumps.observations }
}

/// The incident of examples/incident (written by its generate.py).
fn example() -> &'static Evidence {
    static E: OnceLock<Evidence> = OnceLock::new();
    E.get_or_init(|| load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/incident")))
}

/// The benchmark cluster's incident, every planted replay (bench/generate_incident.py).
fn generated() -> &'static Evidence {
    static E: OnceLock<Evidence> = OnceLock::new();
    E.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tokentrail-order-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/generate_incident.py");
        let status = std::process::Command::new("python3").arg(script).arg("--out").arg(&dir).status().unwrap();
        assert!(status.success(), "bench/generate_incident.py failed");
        load(&dir)
    })
}

fn analyzed(e: &Evidence) -> BTreeSet<Key> {
    let options = AnalyzeOptions { engine: config(), decoders: 2, ..AnalyzeOptions::default() };
    let files: Vec<PathBuf> = ["audit.log", "serviceaccounts.json", "sa_secrets.json", "pods.json", "nodes.json"]
        .iter()
        .map(|f| e.dir.join(f))
        .filter(|p| p.exists())
        .collect();
    analyze(&files, &options, &Quiet, &mut |_| {}).report.findings.iter().map(key).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// The dumps, then the log as written.
    Original,
    /// The dumps, then the log with every event moved by up to [`LATENESS`].
    Shuffled,
    /// The log as written, then the dumps.
    DumpsAfter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// A commit every [`PACE`] observations.
    Paced,
    /// Everything, then one commit.
    Backlog,
    /// Paced, each commit's changes written to a per-key changelog, and every
    /// [`RESTART_EVERY`]th commit every partition's state rebuilt from it (replicas restarted).
    Restarted,
}

/// Commits between two restarts in [`Delivery::Restarted`].
const RESTART_EVERY: usize = 4;

/// One partition's changelog as compaction leaves it: the last value of each key.
#[derive(Default)]
struct Changelog(BTreeMap<String, Vec<u8>>);

impl Changelog {
    fn write(&mut self, state: &mut PartitionState) {
        for change in state.changes() {
            match change.value {
                Some(v) => self.0.insert(change.key, v),
                None => self.0.remove(&change.key),
            };
        }
    }

    fn restore(&self, config: &EngineConfig) -> PartitionState {
        PartitionState::from_entries(self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice())), config).unwrap()
    }
}

fn arrange(e: &Evidence, order: Order) -> Vec<Observation> {
    let mut log = e.log.clone();
    if let Order::Shuffled = order {
        // Deterministic: each event is delayed by a pseudo-random amount below the lateness.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut delayed: Vec<(i64, usize, Observation)> = log
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let delay = i64::try_from(x % u64::try_from(LATENESS).unwrap()).unwrap();
                (o.time().0.saturating_add(delay), i, o)
            })
            .collect();
        delayed.sort_by_key(|(t, i, _)| (*t, *i));
        log = delayed.into_iter().map(|(_, _, o)| o).collect();
    }
    match order {
        Order::DumpsAfter => log.into_iter().chain(e.dumps.iter().cloned()).collect(),
        _ => e.dumps.iter().cloned().chain(log).collect(),
    }
}

/// Streams `observations` through `partitions` partition states and returns what a SIEM holds at
/// the end: each finding id's last record, less the withdrawn ones.
fn stream(observations: Vec<Observation>, partitions: i32, delivery: Delivery) -> BTreeSet<Key> {
    let config = config();
    let restarted = matches!(delivery, Delivery::Restarted);
    let mut states: Vec<PartitionState> = (0..partitions)
        .map(|_| {
            let mut state = PartitionState::default();
            state.track_changes();
            state
        })
        .collect();
    let mut logs: Vec<Changelog> = (0..partitions).map(|_| Changelog::default()).collect();
    let mut moved = vec![false; states.len()];
    let mut directory = Directory::new(100_000);
    let mut held: BTreeMap<String, Key> = BTreeMap::new();
    let mut commits = 0;
    let mut commit = |states: &mut [PartitionState], moved: &mut [bool]| {
        for ((state, moved), log) in states.iter_mut().zip(moved.iter_mut()).zip(logs.iter_mut()) {
            if std::mem::take(moved) {
                for (f, _) in state.due(Timestamp::MIN) {
                    match f.status {
                        Status::Withdrawn => held.remove(&f.id),
                        Status::Active => held.insert(f.id.clone(), key(&f)),
                    };
                }
                if restarted {
                    log.write(state);
                }
            }
        }
        commits += 1;
        if restarted && commits % RESTART_EVERY == 0 {
            for (state, log) in states.iter_mut().zip(logs.iter()) {
                *state = log.restore(&config);
            }
        }
    };
    for (n, o) in observations.into_iter().enumerate() {
        match directory.route(CLUSTER, &o) {
            Route::Key(k) => {
                let p = usize::try_from(home_partition(&k, partitions)).unwrap();
                states[p].observe_copy(CLUSTER, o, Placement::Own, &config);
                moved[p] = true;
            }
            Route::Broadcast(k) => {
                let home = usize::try_from(home_partition(&k, partitions)).unwrap();
                for (p, state) in states.iter_mut().enumerate() {
                    let placement = if p == home { Placement::Own } else { Placement::Elsewhere };
                    state.observe_copy(CLUSTER, o.clone(), placement, &config);
                    moved[p] = true;
                }
            }
        }
        if matches!(delivery, Delivery::Paced | Delivery::Restarted) && (n + 1) % PACE == 0 {
            commit(&mut states, &mut moved);
        }
    }
    moved.iter_mut().for_each(|m| *m = true);
    commit(&mut states, &mut moved);
    held.into_values().collect()
}

fn matrix(name: &str, e: &Evidence) {
    let expected = analyzed(e);
    assert!(!expected.is_empty());
    let mut failures = Vec::new();
    println!("{name}: analyze reports {} findings", expected.len());
    for order in [Order::Original, Order::Shuffled, Order::DumpsAfter] {
        for delivery in [Delivery::Paced, Delivery::Backlog, Delivery::Restarted] {
            // Restarts are costly (a restore of every partition each few commits): one order,
            // the hardest, is enough to show that a restore changes nothing.
            if delivery == Delivery::Restarted && order != Order::Shuffled {
                continue;
            }
            for partitions in [1, 24] {
                let started = std::time::Instant::now();
                let got = stream(arrange(e, order), partitions, delivery);
                let took = started.elapsed();
                let missing: Vec<_> = expected.difference(&got).collect();
                let extra: Vec<_> = got.difference(&expected).collect();
                let found = expected.len() - missing.len();
                let cell = format!("{name} {order:?} {delivery:?} {partitions:>2} partitions");
                println!(
                    "  {cell}: {found}/{}, {} extra; missing {missing:?} extra {extra:?} ({took:.1?})",
                    expected.len(),
                    extra.len()
                );
                if !missing.is_empty() || !extra.is_empty() {
                    failures.push(cell);
                }
            }
        }
    }
    assert!(failures.is_empty(), "cells that differ from analyze: {failures:?}");
}

/// The example's log alone, paced, makes findings its dumps explain (the legacy exporter's own
/// pod, the first db-0's address): once the dumps come, each is sent again under its id as
/// withdrawn, and nothing else is withdrawn.
#[test]
fn a_finding_the_dumps_explain_is_withdrawn_under_its_id() {
    let e = example();
    let config = config();
    let mut state = PartitionState::default();
    let mut sent: BTreeMap<String, Vec<(Activity, Status, Key)>> = BTreeMap::new();
    let observations = arrange(e, Order::DumpsAfter);
    for (n, o) in observations.into_iter().enumerate() {
        state.observe(CLUSTER, o, &config);
        if (n + 1) % PACE == 0 {
            for (f, a) in state.due(Timestamp::MIN) {
                sent.entry(f.id.clone()).or_default().push((a, f.status, key(&f)));
            }
        }
    }
    for (f, a) in state.due(Timestamp::MIN) {
        sent.entry(f.id.clone()).or_default().push((a, f.status, key(&f)));
    }
    let expected = analyzed(e);
    let withdrawn: Vec<&Key> = sent
        .values()
        .filter(|records| records.last().is_some_and(|r| r.1 == Status::Withdrawn))
        .map(|records| &records[0].2)
        .collect();
    assert!(!withdrawn.is_empty(), "the log alone reports what the dumps explain");
    for records in sent.values() {
        let (first, last) = (&records[0], &records[records.len() - 1]);
        assert_eq!(first.0, Activity::Create);
        if last.1 == Status::Withdrawn {
            assert_eq!((last.0, &last.2), (Activity::Update, &first.2), "withdrawn as an update of the same finding");
            assert!(!expected.contains(&first.2), "{:?} is one of analyze's findings", first.2);
        } else {
            assert!(expected.contains(&last.2), "{:?} stands but analyze does not report it", last.2);
        }
    }
}

#[test]
fn the_example_incident_streams_to_what_analyze_reports_in_every_order() {
    matrix("examples/incident", example());
}

#[test]
fn the_generated_incident_streams_to_what_analyze_reports_in_every_order() {
    matrix("generated", generated());
}
