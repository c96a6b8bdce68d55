//! The same evidence always gives the same report, byte for byte: whatever order the events are
//! in, however they are split over files, and in whichever order the files are named. Decoder
//! threads finish in any order, so a run is itself a shuffle; the evidence here also holds what
//! real clusters write that made runs differ: an aggregated apiserver's copies of requests (the
//! same audit ID, one more `sourceIPs` hop) and the stages of one request.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::{Path, PathBuf};

use tokentrail_correlator::forensic::{analyze, AnalyzeOptions, Quiet};
use tokentrail_correlator::output;
use tokentrail_correlator_core::EngineConfig;

fn incident() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident")
}

/// The example incident's audit log, with an aggregated apiserver's copy of every third request
/// (the kube-apiserver's address appended to `sourceIPs`, its own `RequestReceived` stage too)
/// and a `RequestReceived` stage without a code for every fourth.
fn events() -> Vec<String> {
    let log = std::fs::read_to_string(incident().join("audit.log")).unwrap();
    let mut out = Vec::new();
    for (i, line) in log.lines().enumerate() {
        out.push(line.to_string());
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if i % 3 == 0 {
            let mut copy = event.clone();
            copy["sourceIPs"].as_array_mut().unwrap().push("10.0.1.10".into());
            out.push(copy.to_string());
            copy["stage"] = "RequestReceived".into();
            copy.as_object_mut().unwrap().remove("responseStatus");
            out.push(copy.to_string());
        }
        if i % 4 == 0 {
            let mut received = event;
            received["stage"] = "RequestReceived".into();
            received.as_object_mut().unwrap().remove("responseStatus");
            out.push(received.to_string());
        }
    }
    out
}

/// xorshift64*: a dependency-free, seeded shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

/// Every output `analyze` writes: the text, incidents, findings, HTML, usage, legacy tokens,
/// coverage, files.
fn report_bytes(paths: &[PathBuf]) -> Vec<u8> {
    let options = AnalyzeOptions {
        engine: EngineConfig { cluster: Some("shop-prod".into()), ..EngineConfig::default() },
        ..AnalyzeOptions::default()
    };
    let analysis = analyze(paths, &options, &Quiet, &mut |p| panic!("unexpected problem: {p}"));
    let report = &analysis.report;
    let mut out = output::text(&analysis).into_bytes();
    output::write_json(&report.findings, &mut out).unwrap();
    output::write_incidents(&report.incidents, &mut out).unwrap();
    output::write_ocsf_incidents(&report.incidents, &report.findings, "responders", &mut out).unwrap();
    output::html::write(&analysis, &mut out).unwrap();
    out.extend(serde_json::to_vec(&report.usage).unwrap());
    out.extend(serde_json::to_vec(&report.legacy_tokens).unwrap());
    out.extend(serde_json::to_vec(&report.coverage).unwrap());
    out.extend(serde_json::to_vec(&analysis.decode).unwrap());
    out.extend(serde_json::to_vec(&analysis.files).unwrap());
    out
}

/// The events in three files (the same events in each file every time, so the report's file
/// table is the same), each file's lines shuffled, the files named in a shuffled order among
/// the inventory dumps.
fn write_split(dir: &Path, events: &[String], seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("audit-{i}.log"))).collect();
    for (i, path) in paths.iter().enumerate() {
        let mut part: Vec<&str> = events.iter().skip(i).step_by(3).map(String::as_str).collect();
        shuffle(&mut part, seed.wrapping_add(i as u64));
        std::fs::write(path, part.join("\n") + "\n").unwrap();
    }
    for inventory in ["nodes.json", "pods.json", "sa_secrets.json", "serviceaccounts.json"] {
        paths.push(incident().join(inventory));
    }
    shuffle(&mut paths, seed ^ 0x5555);
    paths
}

#[test]
fn shuffled_events_and_files_give_the_same_report_bytes() {
    let events = events();
    let root = std::env::temp_dir().join(format!("tokentrail-determinism-{}", std::process::id()));
    let reference = report_bytes(&write_split(&root, &events, 0));
    let text = String::from_utf8_lossy(&reference);
    assert!(text.contains("token-used-off-cluster"), "the evidence is the incident");
    assert!(!text.contains("10.0.1.10 "), "no use is put on the aggregated apiserver's hop");
    for seed in 1..=12u64 {
        let paths = write_split(&root, &events, seed.wrapping_mul(0x9E37_79B9));
        let bytes = report_bytes(&paths);
        if bytes != reference {
            let (a, b) = (String::from_utf8_lossy(&reference), String::from_utf8_lossy(&bytes));
            let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
            panic!("seed {seed} changed the report: {first:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The text report's coverage, the client-address table (usage.json) and coverage.json count
/// the same uses by the same definition: per verdict, the rows' uses add up to the coverage.
#[test]
fn usage_rows_and_coverage_count_the_same_uses() {
    let paths: Vec<PathBuf> = ["audit.log", "nodes.json", "pods.json", "sa_secrets.json", "serviceaccounts.json"]
        .iter()
        .map(|f| incident().join(f))
        .collect();
    let analysis = analyze(&paths, &AnalyzeOptions::default(), &Quiet, &mut |p| panic!("unexpected problem: {p}"));
    let dir = std::env::temp_dir().join(format!("tokentrail-coverage-{}", std::process::id()));
    output::write_dir(&analysis, &dir, None).unwrap();
    let usage: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("usage.json")).unwrap()).unwrap();
    let coverage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("coverage.json")).unwrap()).unwrap();
    let text = std::fs::read_to_string(dir.join("report.txt")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let sum = |verdict: &str| -> u64 {
        usage.as_array().unwrap().iter().filter(|r| r["verdict"] == verdict).map(|r| r["count"].as_u64().unwrap()).sum()
    };
    let c = &coverage["coverage"];
    let unverified: u64 = c["unverified"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(sum("expected"), c["expected"].as_u64().unwrap());
    assert_eq!(sum("unexpected"), c["unexpected"].as_u64().unwrap());
    assert_eq!(sum("unknown"), unverified);
    assert_eq!(c["verified"].as_u64().unwrap() + unverified, c["token_uses"].as_u64().unwrap());
    // The text says the same figures.
    let verified_line = text.lines().find(|l| l.trim_start().starts_with("verified")).unwrap();
    let expected =
        format!("{} expected, {} unexpected", c["expected"].as_u64().unwrap(), c["unexpected"].as_u64().unwrap());
    assert!(verified_line.contains(&expected), "{verified_line}");
    assert!(text.contains(&format!("not verified    {unverified}:")), "{text}");
    // And its client-address table, read back as the usage rows.
    let table_uses: u64 = text
        .split("Client addresses by service account")
        .nth(1)
        .unwrap()
        .split("Legacy (Secret-based")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(" unknown"))
        .map(|l| l.split_whitespace().rev().nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(table_uses, unverified, "the table's unknown rows hold the unverified uses");
}
