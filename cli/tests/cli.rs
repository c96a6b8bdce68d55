//! The `tokentrail` binary as a user runs it: exit statuses, formats, `--out`, and the promise
//! that no token from the evidence reaches any output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tokentrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).output().expect("run tokentrail")
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident")
}

fn example_files() -> Vec<String> {
    ["audit.log", "serviceaccounts.json", "sa_secrets.json", "pods.json", "nodes.json"]
        .iter()
        .map(|f| example().join(f).display().to_string())
        .collect()
}

fn run_on_example(extra: &[&str]) -> Output {
    let files = example_files();
    let mut args = vec!["analyze"];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(String::as_str));
    tokentrail(&args)
}

/// Every token in a `kubectl get secrets -o json` dump, and the pieces of each that would give
/// it away: the base64 form as stored, the decoded JWT, and each of its three segments.
fn secrets_in(dump: &Path) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dump).unwrap()).unwrap();
    let mut out = Vec::new();
    for item in json["items"].as_array().unwrap() {
        let Some(b64) = item["data"]["token"].as_str() else { continue };
        out.push(b64.to_string());
        let jwt = String::from_utf8(base64_decode(b64)).unwrap();
        out.extend(jwt.split('.').filter(|s| s.len() >= 16).map(str::to_string));
        out.push(jwt);
    }
    assert!(!out.is_empty(), "the example must hold tokens for this test to mean anything");
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn no_token_reaches_any_output() {
    let secrets = secrets_in(&example().join("sa_secrets.json"));
    let out_dir = tempdir("no-token");
    let mut outputs = Vec::new();
    for format in ["text", "json", "ocsf", "html"] {
        let o = run_on_example(&["--format", format, "--out", out_dir.to_str().unwrap()]);
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
        outputs.push((format!("stdout of --format {format}"), String::from_utf8_lossy(&o.stdout).into_owned()));
        outputs.push((format!("stderr of --format {format}"), String::from_utf8_lossy(&o.stderr).into_owned()));
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        outputs.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        files += 1;
    }
    assert_eq!(files, 7, "--out writes every output");
    for (name, text) in &outputs {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{name} contains token material");
        }
    }
    // The outputs are not empty: the test would pass vacuously otherwise.
    assert!(outputs.iter().any(|(_, t)| t.contains("token-used-off-cluster")));
}

#[test]
fn json_format_prints_finding_records_only() {
    let o = run_on_example(&["--format", "json"]);
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    let mut rules = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every stdout line is a finding");
        assert_eq!(v["schema"], "tokentrail.finding/v1");
        rules.push(v["rule"].as_str().unwrap().to_string());
    }
    assert!(rules.contains(&"token-used-off-cluster".to_string()), "{rules:?}");
}

#[test]
fn ocsf_format_prints_detection_findings() {
    let o = run_on_example(&["--format", "ocsf"]);
    assert!(o.status.success());
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["class_uid"], 2004);
    assert_eq!(first["type_uid"], 200401);
    assert!(first["finding_info"]["uid"].is_string());
}

#[test]
fn fail_on_sets_exit_status_three_only_when_a_finding_reaches_it() {
    assert_eq!(run_on_example(&["--fail-on", "critical", "--format", "json"]).status.code(), Some(3));
    let quiet = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident/nodes.json");
    let o = tokentrail(&["analyze", "--fail-on", "low", quiet.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn usage_errors_exit_two_and_missing_evidence_exits_one() {
    assert_eq!(tokentrail(&["analyze", "--fail-on", "severe", "x"]).status.code(), Some(2));
    assert_eq!(tokentrail(&["analyze", "--cluster-network", "10.0.0.0/99", "x"]).status.code(), Some(2));
    assert_eq!(tokentrail(&["analyze"]).status.code(), Some(2));
    let o = tokentrail(&["analyze", "/nonexistent/evidence"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/evidence"));
    // A file named on the command line that is not JSON is an error; in a directory it is
    // passed over (the example directory holds a README and a script).
    let readme = example().join("README.md");
    let o = tokentrail(&["analyze", readme.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not JSON evidence"));
    let o = tokentrail(&["analyze", example().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped, not JSON evidence: README.md"));
}

#[test]
fn bad_records_are_reported_with_file_and_line_and_the_rest_is_analysed() {
    let dir = tempdir("bad-lines");
    let log = dir.join("audit.log");
    let good = std::fs::read_to_string(example().join("audit.log")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(3, "{\"kind\":\"Event\", this is not json");
    lines.insert(7, "\u{1}\u{2} garbage");
    std::fs::write(&log, lines.join("\n")).unwrap();
    let o = tokentrail(&["analyze", "--format", "json", log.to_str().unwrap()]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("audit.log:4:"), "{stderr}");
    assert!(stderr.contains("audit.log:8:"), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("token-used-off-cluster"));
}

#[test]
fn audit_events_with_impossible_times_are_bad_records_and_the_rest_is_analysed() {
    let dir = tempdir("bad-times");
    let log = dir.join("audit.log");
    let good = std::fs::read_to_string(example().join("audit.log")).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let relabel = |year: &str, id: &str| {
        let line = lines[0].replace("Timestamp\":\"2026-", &format!("Timestamp\":\"{year}-"));
        assert_ne!(line, lines[0], "the example's first event has the expected time fields");
        line.replacen("\"auditID\":\"", &format!("\"auditID\":\"{id}"), 1)
    };
    let (future, past) = (relabel("9999", "future-"), relabel("2013", "past-"));
    lines.insert(3, future);
    lines.insert(7, past);
    std::fs::write(&log, lines.join("\n")).unwrap();
    let o = tokentrail(&["analyze", "--format", "json", log.to_str().unwrap()]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    for place in ["audit.log:4: ", "audit.log:8: "] {
        let line = stderr.lines().find(|l| l.contains(place)).unwrap_or_else(|| panic!("{place} in {stderr}"));
        assert!(line.contains("impossible time"), "{line}");
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("token-used-off-cluster"));
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokentrail-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn time_window_and_network_options_change_the_verdicts() {
    let rules = |extra: &[&str]| -> Vec<String> {
        let o = run_on_example(&[&["--format", "json"], extra].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8(o.stdout).unwrap();
        stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"].as_str().unwrap().to_string())
            .collect()
    };
    let all = rules(&[]);
    assert!(all.iter().any(|r| r == "token-used-off-cluster"));
    // The replay starts at 10:26; a window that ends before it holds no replay.
    let before = rules(&["--until", "2026-03-10T10:20:00Z"]);
    assert!(!before.iter().any(|r| r == "token-used-off-cluster"), "{before:?}");
    // Declaring the replayer's address an egress NAT address makes its uses expected.
    let egress = rules(&["--egress-ip", "203.0.113.50"]);
    assert!(!egress.iter().any(|r| r == "token-used-off-cluster"), "{egress:?}");
}
