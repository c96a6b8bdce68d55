//! Golden scenarios: evidence in, findings out, walked by one test.
//!
//! Each directory under `tests/golden/` holds `evidence/` (any files `analyze` accepts) and
//! `expected.txt`: one line per finding, `severity rule client count credential pod`, then the
//! coverage line. Run with `UPDATE_GOLDEN=1` to rewrite the expectations after a deliberate
//! change, and read the diff before committing it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokentrail_correlator::forensic::{analyze, AnalyzeOptions, Quiet};
use tokentrail_correlator_core::EngineConfig;

fn summarise(evidence: &Path) -> String {
    let options = AnalyzeOptions {
        engine: EngineConfig { cluster: Some("golden".into()), ..EngineConfig::default() },
        ..AnalyzeOptions::default()
    };
    let mut problems = Vec::new();
    let analysis = analyze(&[evidence.to_path_buf()], &options, &Quiet, &mut |p| problems.push(p.to_string()));
    let mut s = String::new();
    for f in &analysis.report.findings {
        let client = f.source_ip.map_or_else(|| String::from("-"), |ip| ip.to_string());
        let credential = f
            .credential
            .as_ref()
            .and_then(|c| c.id.clone().or_else(|| c.secret.clone()))
            .unwrap_or_else(|| String::from("-"));
        let pod = f.pod.as_ref().map_or_else(|| String::from("-"), |p| format!("{}/{}", p.namespace, p.name));
        let _ = writeln!(s, "{} {} {client} {} {credential} {pod}", f.severity, f.rule, f.count);
    }
    let c = &analysis.report.coverage;
    let _ = writeln!(
        s,
        "coverage: {} uses, {} expected, {} unexpected, {} unverified",
        c.token_uses,
        c.expected,
        c.unexpected,
        c.token_uses - c.verified
    );
    let _ = writeln!(s, "problems: {}", analysis.problems);
    s
}

#[test]
fn golden_scenarios() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "golden scenarios missing under {}", root.display());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for dir in dirs {
        let actual = summarise(&dir.join("evidence"));
        let expected_path = dir.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", dir.display()));
        }
    }
    assert!(failures.is_empty(), "golden scenarios differ (UPDATE_GOLDEN=1 to accept):\n{}", failures.join("\n"));
}
