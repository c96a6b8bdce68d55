//! What the streaming correlator's per-key changelog costs, beside the whole-state snapshot it
//! replaced: bytes held per credential, bytes a commit writes, and restore time.
//!
//! ```sh
//! cargo run --release -p tokentrail-correlator-core --example changelog_cost [CREDENTIALS...]
//! ```
//!
//! For each size (default 10,000, 100,000 and 1,000,000 credentials) the synthetic cluster of
//! `engine_throughput` is folded with 3 uses per credential, then committed once (every entry
//! written). A steady-state commit follows: 1% of the credentials used again (from their own
//! pods) and committed, against one whole snapshot of the same state. Restore: the live entries
//! into an engine, against one snapshot into an engine. Judging: one report of the whole state,
//! which a streaming commit makes for every partition that had input since the last.

#[allow(dead_code)] // each example uses its part of the generator
mod synthetic;

use std::collections::HashMap;
use std::time::Instant;

use synthetic::{nodes, pod, ROTATIONS};
use tokentrail_correlator_core::changes::Change;
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation, Timestamp};

const USES_PER_CREDENTIAL: u32 = 3;

fn main() {
    let sizes: Vec<u32> = std::env::args().skip(1).map(|a| a.parse().expect("a number of credentials")).collect();
    let sizes = if sizes.is_empty() { vec![10_000, 100_000, 1_000_000] } else { sizes };
    println!(
        "| credentials | state, per-key (bytes/credential) | state, snapshot (bytes/credential) | steady commit: per-key | steady commit: snapshot | restore: per-key | restore: snapshot | judging what is due |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for credentials in sizes {
        measure(credentials);
    }
}

fn measure(credentials: u32) {
    let pods = credentials.div_ceil(ROTATIONS);
    let credentials = pods * ROTATIONS;
    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    for o in nodes() {
        engine.observe(o);
    }
    for p in 0..pods {
        for o in pod(p, USES_PER_CREDENTIAL) {
            engine.observe(o);
        }
    }
    let mut log: HashMap<String, Vec<u8>> = HashMap::new();
    commit(&mut engine, &mut log);
    let held: usize = log.values().map(Vec::len).sum();
    let mut by_section: std::collections::BTreeMap<&str, (usize, usize)> = std::collections::BTreeMap::new();
    for (key, value) in &log {
        let section = by_section.entry(key.split('\t').next().unwrap_or_default()).or_default();
        *section = (section.0 + 1, section.1 + key.len() + value.len());
    }
    let breakdown: Vec<String> = by_section
        .iter()
        .map(|(name, (n, bytes))| format!("{name} {n} × {:.0} B", *bytes as f64 / *n as f64))
        .collect();
    let keys: usize = log.keys().map(String::len).sum();
    eprintln!(
        "{credentials} credentials, entries by section (key and value): {}; {:.0} B per credential with keys",
        breakdown.join(", "),
        (held + keys) as f64 / f64::from(credentials)
    );
    if std::env::var_os("SHOW_ENTRIES").is_some() {
        for section in ["use\t", "mint\t", "pod\t"] {
            if let Some((k, v)) = log.iter().find(|(k, _)| k.starts_with(section)) {
                // Binary values as escaped ASCII: the strings in them show, the rest as \xNN.
                eprintln!("{k}\n  {} bytes: {}", v.len(), v.escape_ascii());
            }
        }
    }

    // Steady state: one credential in a hundred used again, a little later.
    let again: Vec<Observation> = (0..pods)
        .filter(|p| p % 100 == 0)
        .flat_map(|p| pod(p, USES_PER_CREDENTIAL))
        .filter_map(|o| match o {
            Observation::TokenUse(mut u) if u.audit_id.ends_with("-0") => {
                u.time = Timestamp(u.time.0 + MINUTE);
                u.audit_id.push_str("-again");
                Some(Observation::TokenUse(u))
            }
            _ => None,
        })
        .collect();
    let used_again = again.len();
    for o in again {
        engine.observe(o);
    }
    let started = Instant::now();
    let steady = commit(&mut engine, &mut log);
    let per_key_commit = started.elapsed();
    let started = Instant::now();
    let snapshot = engine.snapshot().expect("snapshot");
    let snapshot_commit = started.elapsed();

    // What a streaming commit also does for each partition with new input: judge the whole
    // state to see which findings are due (`PartitionState::due`).
    let started = Instant::now();
    let findings = engine.report_without_incidents().findings.len();
    let judged = started.elapsed();

    let started = Instant::now();
    let restored = Engine::from_entries(EngineConfig::default(), log.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .expect("restore from entries");
    let per_key_restore = started.elapsed();
    assert_eq!(restored.state_size(), engine.state_size(), "the entries restore the same state");
    drop(restored);
    let started = Instant::now();
    let restored = Engine::restore(EngineConfig::default(), &snapshot).expect("restore from a snapshot");
    let snapshot_restore = started.elapsed();
    drop(restored);

    let per = |bytes: usize| bytes as f64 / f64::from(credentials);
    println!(
        "| {credentials} | {:.0} ({} entries) | {:.0} | {} records, {:.1} KiB, {:.0} ms ({used_again} uses) | {:.1} MiB, {:.0} ms | {:.2} s | {:.2} s | {:.1} ms ({findings} findings) |",
        per(held),
        log.len(),
        per(snapshot.len()),
        steady.0,
        steady.1 as f64 / 1024.0,
        per_key_commit.as_secs_f64() * 1000.0,
        snapshot.len() as f64 / f64::from(1 << 20),
        snapshot_commit.as_secs_f64() * 1000.0,
        per_key_restore.as_secs_f64(),
        snapshot_restore.as_secs_f64(),
        judged.as_secs_f64() * 1000.0,
    );
}

/// One commit's records into the compacted log; how many and their bytes.
fn commit(engine: &mut Engine, log: &mut HashMap<String, Vec<u8>>) -> (usize, usize) {
    let changes: Vec<Change> = engine.changes();
    let (records, mut bytes) = (changes.len(), 0);
    for Change { key, value } in changes {
        match value {
            Some(v) => {
                bytes += v.len();
                log.insert(key, v);
            }
            None => {
                log.remove(&key);
            }
        }
    }
    (records, bytes)
}
