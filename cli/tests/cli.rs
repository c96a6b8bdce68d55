//! The `tokentrail` binary as a user runs it: exit statuses, formats, `--out-dir`, and the promise
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
    // The last two under 0.1's names for the flags, which keep working.
    for (format, output, out) in [
        ("text", "-o", "--out-dir"),
        ("json", "--output", "--out-dir"),
        ("ocsf", "--format", "--out"),
        ("html", "--format", "--out"),
    ] {
        let o =
            run_on_example(&[output, format, out, out_dir.to_str().unwrap(), "--ocsf-incident-group", "responders"]);
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
        outputs.push((format!("stdout of -o {format}"), String::from_utf8_lossy(&o.stdout).into_owned()));
        outputs.push((format!("stderr of -o {format}"), String::from_utf8_lossy(&o.stderr).into_owned()));
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        outputs.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        files += 1;
    }
    assert_eq!(files, 9, "--out-dir writes every output");
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
    let o = run_on_example(&["-o", "json"]);
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
fn incidents_format_prints_incident_records_of_findings_json_names() {
    let incidents = String::from_utf8(run_on_example(&["-o", "incidents"]).stdout).unwrap();
    let findings = String::from_utf8(run_on_example(&["-o", "json"]).stdout).unwrap();
    let ids: Vec<String> = findings
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    let records: Vec<serde_json::Value> = incidents.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "the example is one story");
    assert_eq!(records[0]["schema"], "tokentrail.incident/v1");
    let members = records[0]["findings"].as_array().unwrap();
    assert_eq!(members.len(), 7);
    assert!(members.iter().all(|id| ids.contains(&id.as_str().unwrap().to_string())), "members are findings' ids");
}

#[test]
fn ocsf_incident_findings_need_the_group_they_are_assigned_to() {
    let last = |extra: &[&str]| -> serde_json::Value {
        let o = run_on_example(&[&["-o", "ocsf"], extra].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().lines().last().unwrap()).unwrap()
    };
    assert_eq!(last(&[])["class_uid"], 2004, "without a group, findings only");
    let incident = last(&["--ocsf-incident-group", "k8s-responders"]);
    assert_eq!((incident["class_uid"].clone(), incident["type_uid"].clone()), (2005.into(), 200501.into()));
    assert_eq!(incident["assignee_group"]["name"], "k8s-responders");
    assert_eq!(incident["finding_info_list"].as_array().unwrap().len(), 7);
}

#[test]
fn ocsf_format_prints_detection_findings() {
    let o = run_on_example(&["-o", "ocsf"]);
    assert!(o.status.success());
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["class_uid"], 2004);
    assert_eq!(first["type_uid"], 200401);
    assert!(first["finding_info"]["uid"].is_string());
}

#[test]
fn fail_on_sets_exit_status_three_only_when_a_finding_reaches_it() {
    assert_eq!(run_on_example(&["--fail-on", "critical", "-o", "json"]).status.code(), Some(3));
    // One of the example's ordinary requests: a pod using its own token from its own address.
    let dir = tempdir("quiet");
    let audit = std::fs::read_to_string(example().join("audit.log")).unwrap();
    std::fs::write(dir.join("audit.log"), audit.lines().next().unwrap()).unwrap();
    let (log, nodes, pods) = (dir.join("audit.log"), example().join("nodes.json"), example().join("pods.json"));
    let o = tokentrail(&[
        "analyze",
        "--fail-on",
        "low",
        log.to_str().unwrap(),
        nodes.to_str().unwrap(),
        pods.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tokentrail: no findings"));
}

#[test]
fn usage_errors_exit_two_and_missing_evidence_exits_one() {
    assert_eq!(tokentrail(&["analyze", "--fail-on", "severe", "x"]).status.code(), Some(2));
    assert_eq!(tokentrail(&["analyze", "--cluster-network", "10.0.0.0/99", "x"]).status.code(), Some(2));
    assert_eq!(tokentrail(&["analyze"]).status.code(), Some(2));
    let o = tokentrail(&["analyze", "/nonexistent/evidence"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/evidence"));
    // A file named on the command line that is not JSON or YAML is an error; in a directory it
    // is passed over (the example directory holds a README and a script).
    let readme = example().join("README.md");
    let o = tokentrail(&["analyze", readme.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not JSON or YAML evidence"));
    let o = tokentrail(&["analyze", example().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped, not JSON or YAML evidence: README.md, generate.py"));
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
    let o = tokentrail(&["analyze", "-o", "json", log.to_str().unwrap()]);
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
    let o = tokentrail(&["analyze", "-o", "json", log.to_str().unwrap()]);
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
        let o = run_on_example(&[&["-o", "json"], extra].concat());
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

#[test]
fn since_takes_a_duration_before_now_or_a_time() {
    let findings = |extra: &[&str]| -> String {
        let o = run_on_example(&[&["-o", "json"], extra].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let all = findings(&[]);
    assert!(all.contains("token-used-off-cluster"));
    // The example's requests are of March 2026: an hour before now holds none of them (what is
    // left are the legacy token Secrets of the inventory), ten years before now holds them all.
    let recent = findings(&["--since", "1h"]);
    assert!(!recent.contains("token-used-off-cluster") && recent.contains("legacy-token-present"), "{recent}");
    assert_eq!(findings(&["--since", "3650d"]), all);
    // A time, under either name, is that time.
    let from_ten = findings(&["--since", "2026-03-10T10:00:00Z"]);
    assert!(from_ten.contains("token-used-off-cluster"));
    assert_eq!(from_ten, findings(&["--since-time", "2026-03-10T10:00:00Z"]));
    assert_eq!(findings(&["--since-time", "2026-03-11T00:00:00Z"]), recent);
    let o = run_on_example(&["--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither a duration nor a time"));
}

#[test]
fn a_dash_reads_the_audit_log_from_standard_input() {
    use std::io::Write as _;
    let dumps: Vec<String> = example_files().into_iter().filter(|f| !f.ends_with("audit.log")).collect();
    let mut log = std::fs::read_to_string(example().join("audit.log")).unwrap();
    log.insert_str(0, "{\"kind\":\"Event\", cut\n");
    let run = |evidence: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
            .args(["analyze", "-o", "json"])
            .args(evidence)
            .args(&dumps)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let file = tempdir("stdin").join("audit.log");
    std::fs::write(&file, &log).unwrap();
    let from_file = run(&[file.to_str().unwrap()], "");
    let from_stdin = run(&["-"], &log);
    assert!(from_stdin.status.success(), "{}", String::from_utf8_lossy(&from_stdin.stderr));
    assert!(String::from_utf8_lossy(&from_stdin.stdout).contains("token-used-off-cluster"));
    assert_eq!(from_stdin.stdout, from_file.stdout);
    // Its bad records are placed in it by the name a reader knows, not a temporary file's.
    let stderr = String::from_utf8_lossy(&from_stdin.stderr);
    assert!(stderr.contains("tokentrail: <stdin>:1: "), "{stderr}");
    assert!(!stderr.contains(std::env::temp_dir().to_str().unwrap()), "{stderr}");
}

#[test]
fn no_audit_event_anywhere_exits_one_and_says_what_each_file_was_taken_for() {
    // A directory of unrelated JSON: no finding is not "nothing happened".
    let dir = tempdir("unrelated");
    std::fs::write(dir.join("package.json"), "{\n  \"name\": \"shop-frontend\",\n  \"version\": \"1.4.0\"\n}\n")
        .unwrap();
    std::fs::write(dir.join("metrics.jsonl"), "{\"cpu\": 0.4}\n{\"cpu\": 0.5}\n").unwrap();
    let o = tokentrail(&["analyze", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(o.stdout.is_empty(), "no report is printed");
    assert!(stderr.contains("package.json: a JSON document, not audit events or a known kubectl list"), "{stderr}");
    assert!(stderr.contains("metrics.jsonl: JSON lines, not audit events or a known kubectl list"), "{stderr}");
    assert!(stderr.contains("no audit events in the evidence"), "{stderr}");

    // Dumps alone describe the cluster, but there is no token use to verify.
    let nodes = example().join("nodes.json");
    let o = tokentrail(&["analyze", nodes.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nodes.json: a JSON document: 3 Kubernetes objects (a kubectl dump), no audit events"),
        "{stderr}"
    );
}

#[test]
fn gcloud_logging_read_yaml_is_evidence() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../correlator/tests/golden");
    let yaml = golden.join("gke-yaml/evidence");
    let json = golden.join("gke-no-pod-binding/evidence");
    let run = |dir: &Path| {
        let o = tokentrail(&["analyze", "-o", "json", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Nothing on stderr but the cluster the export names (`resource.labels.cluster_name`).
        let stderr = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            matches!(lines[..], [line] if line.starts_with("tokentrail: cluster shop: named by the evidence (GKE")),
            "{stderr}"
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let from_yaml = run(&yaml);
    assert!(from_yaml.contains("legacy-token-foreign-ip"), "{from_yaml}");
    assert_eq!(from_yaml, run(&json), "YAML gives what the same entries as JSON give");
}

#[test]
fn control_characters_from_the_evidence_never_reach_the_terminal() {
    let dir = tempdir("controls");
    // The replayer's user agent erases the finding's title line and rings the bell; a file name
    // carries an escape too.
    let hostile = "\u{1b}[2K\r\u{1b}[1Aall clear\u{7}\u{9b}31m\u{202e}";
    let audit = std::fs::read_to_string(example().join("audit.log")).unwrap();
    let mut lines: Vec<String> = audit
        .lines()
        .map(|l| {
            l.replace(
                "\"userAgent\":\"curl/8.5.0\"",
                &format!("\"userAgent\":{}", serde_json::to_string(hostile).unwrap()),
            )
        })
        .collect();
    assert!(lines.iter().any(|l| l.contains("\\u001b[2K")), "the example has the replayer's user agent");
    lines.insert(2, String::from("{\"kind\":\"Event\", broken"));
    std::fs::write(dir.join("audit\u{1b}[2J.log"), lines.join("\n")).unwrap();
    for f in ["nodes.json", "pods.json"] {
        std::fs::copy(example().join(f), dir.join(f)).unwrap();
    }
    let o = tokentrail(&["analyze", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (stdout, stderr) = (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap());
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        let bad: Vec<char> = text.chars().filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}').collect();
        assert!(bad.is_empty(), "{name} holds raw control characters {bad:?}");
    }
    assert!(stdout.contains("user agents: \\u{1b}[2K\\u{d}\\u{1b}[1Aall clear\\u{7}\\u{9b}31m\\u{202e}"), "{stdout}");
    assert!(stderr.contains("audit\\u{1b}[2J.log:3:"), "{stderr}");
    // JSON output keeps the value exact (escaped by JSON itself).
    let o = tokentrail(&["analyze", "-o", "json", dir.to_str().unwrap()]);
    assert!(String::from_utf8(o.stdout).unwrap().contains("\\u001b[2K\\r\\u001b[1Aall clear"));
}

/// README's sample is what the command prints: its first lines exactly, then (after a `…`
/// line) the section titles in order, each maybe followed by a note in parentheses.
#[test]
fn readme_shows_what_analyze_prints() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let command = "$ tokentrail analyze --cluster shop-prod examples/incident/\n";
    let start = readme.find(&format!("```console\n{command}")).expect("README's console sample") + 11 + command.len();
    let sample = &readme[start..start + readme[start..].find("```").unwrap()];
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["analyze", "--cluster", "shop-prod", "examples/incident/"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(o.status.success());
    let printed = String::from_utf8(o.stdout).unwrap();
    let printed: Vec<&str> = printed.lines().collect();
    let (head, tail) = sample.split_once("…\n").expect("README shows the head, then `…`");
    let head: Vec<&str> = head.lines().collect();
    assert!(
        printed.starts_with(&head),
        "README's sample is not the head of the output; it now starts:\n{}",
        printed[..head.len().min(printed.len())].join("\n")
    );
    let mut rest = printed[head.len()..].iter();
    for line in tail.lines() {
        let title = line.split("  (").next().unwrap().trim_end();
        assert!(rest.any(|l| *l == title), "README's `{title}` is not printed after the head (or out of order)");
    }
}

/// examples/two-clusters/README.md runs analyze on two clusters' evidence and shows the report's
/// incidents as printed; no token of gke-prod's Secrets dump reaches the output.
#[test]
fn the_two_cluster_samples_readme_shows_what_analyze_prints() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("examples/two-clusters/README.md")).unwrap();
    let args = ["analyze", "eks-prod=examples/two-clusters/eks-prod", "gke-prod=examples/two-clusters/gke-prod"];
    assert!(readme.contains(&format!("cargo run --release -p tokentrail -- {}\n", args.join(" "))), "README's command");
    let start = readme.find("```\ntokentrail: ").expect("README's incidents sample") + 4;
    let sample = &readme[start..start + readme[start..].find("```").unwrap()];
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).current_dir(&root).output().unwrap();
    assert!(o.status.success());
    let printed = String::from_utf8(o.stdout).unwrap();
    assert!(
        printed.starts_with(sample),
        "README's sample is not the head of the output; it now starts:\n{}",
        &printed[..sample.len().min(printed.len())]
    );
    for secret in secrets_in(&root.join("examples/two-clusters/gke-prod/sa_secrets.json")) {
        assert!(!printed.contains(&secret), "a token reached the report");
    }
}

#[test]
fn a_flood_of_findings_folds_in_the_reports_and_stays_whole_in_json() {
    // 250 pods' tokens, each used from its own routable address: one finding per credential.
    let dir = tempdir("spray");
    let log = dir.join("spray.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/credential_flood.py");
    let made = Command::new("python3").arg(&script).args(["--events", "250", "--outside"]).output().expect("python3");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::write(&log, &made.stdout).unwrap();
    let log = log.to_str().unwrap();
    let text = tokentrail(&["analyze", log]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("token-used-off-cluster  Token of pod").count(), 100, "{text}");
    assert!(text.contains("… 150 more token-used-off-cluster findings not shown"), "{text}");
    let html = tokentrail(&["analyze", "-o", "html", log]);
    assert!(String::from_utf8_lossy(&html.stdout).contains("150 more <code>token-used-off-cluster</code> findings"));
    let json = tokentrail(&["analyze", "-o", "json", log]);
    assert_eq!(String::from_utf8_lossy(&json.stdout).lines().count(), 250, "every finding stays in the JSON lines");
    // 250 credentials from 250 addresses: 250 incidents, folded in the text, whole in JSON.
    assert!(text.contains("… 150 more incidents not shown (the first 100 are): --format incidents"), "{text}");
    let incidents = tokentrail(&["analyze", "-o", "incidents", log]);
    assert_eq!(String::from_utf8_lossy(&incidents.stdout).lines().count(), 250);
}

#[test]
fn completions_know_every_subcommand_and_flag() {
    for shell in ["bash", "zsh", "fish"] {
        let o = tokentrail(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", String::from_utf8_lossy(&o.stderr));
        let script = String::from_utf8(o.stdout).unwrap();
        for word in ["analyze", "collect", "correlator", "since-time", "bootstrap-servers"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    assert_eq!(tokentrail(&["completions", "tcsh"]).status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let o = tokentrail(&["--version"]);
    let version = String::from_utf8(o.stdout).unwrap();
    let commit = version.trim().strip_prefix(concat!("tokentrail ", env!("CARGO_PKG_VERSION"), " (")).unwrap_or("");
    let commit = commit.strip_suffix(')').unwrap_or_else(|| panic!("{version}"));
    assert!(
        commit == "unknown commit" || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{version}"
    );
}

/// The clusters of the JSON findings of `analyze -o json ARGS`, run in `dir`.
fn finding_clusters(dir: &Path, args: &[&str]) -> std::collections::BTreeSet<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .current_dir(dir)
        .args(["analyze", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["cluster"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn name_equals_path_gives_each_cluster_its_evidence() {
    let dir = tempdir("clusters");
    std::fs::copy(example().join("audit.log"), dir.join("us-audit.log")).unwrap();
    let eu = format!("eu={}", example().display());
    let clusters = finding_clusters(&dir, &[&eu, "us=us-audit.log"]);
    assert_eq!(clusters, ["eu", "us"].map(String::from).into());
    // Plain paths belong to --cluster.
    let clusters = finding_clusters(&dir, &["--cluster", "home", &eu, "us-audit.log"]);
    assert_eq!(clusters, ["eu", "home"].map(String::from).into());
    // A cluster given dumps alone is named on stderr: it has no token use to verify.
    let pods = format!("dumps={}", example().join("pods.json").display());
    let o = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .current_dir(&dir)
        .args(["analyze", &eu, &pods])
        .output()
        .unwrap();
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("tokentrail: cluster dumps: no audit events in its evidence"), "{stderr}");
    assert!(!stderr.contains("cluster eu:"), "{stderr}");
}

#[test]
fn an_existing_file_named_with_an_equals_sign_is_read_as_that_file() {
    let dir = tempdir("equals-file");
    std::fs::copy(example().join("audit.log"), dir.join("prod=audit.log")).unwrap();
    let mut args = vec!["--cluster", "home", "prod=audit.log"];
    let dumps: Vec<String> = example_files().into_iter().filter(|f| !f.ends_with("audit.log")).collect();
    args.extend(dumps.iter().map(String::as_str));
    assert_eq!(finding_clusters(&dir, &args), ["home"].map(String::from).into());
}
