//! Every OCSF record tokentrail writes, checked against the official OCSF 1.3.0 schema.
//!
//! The schema is the compiled form the OCSF schema server exports (every class with its `extends`
//! chain resolved, the objects, the dictionary's types, and the profile that brings each
//! attribute), fetched once by `.ci/ocsf-setup.sh`. The checks: every field sits where the class
//! or its object defines it, with the dictionary type's JSON type (IP addresses parse, timestamps
//! are milliseconds, `*_dt` are RFC 3339); attributes of a profile only when `metadata.profiles`
//! declares it, and only profiles the class allows; every required attribute present (a profile's
//! only when declared); `at_least_one`/`just_one` constraints; enum ids among the schema's, and
//! their captions (`severity` beside `severity_id`) the schema's; `class_uid`, `category_uid`,
//! `type_uid = class_uid * 100 + activity_id`, `metadata.version`; observables naming a path that
//! holds their value.
//!
//! Records: `tokentrail analyze` over the bundled example (examples/incident) and every golden
//! scenario; the engine's findings in correlator-core's rule scenarios for the rules those do not
//! reach; and a finding of every rule with every optional field filled, as `Create` and `Update`. The last test shows the validator rejects misplaced or mistyped fields.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

// The engine tests' scenario builders, so the rules real evidence does not reach are checked on
// findings the engine itself made.
#[path = "../core/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{json, Map, Value};
use tokentrail_correlator::forensic::{analyze, AnalyzeOptions, Quiet};
use tokentrail_correlator::output::{write_ocsf, write_ocsf_incidents};
use tokentrail_correlator_core::finding::{
    Finding, FindingCredential, FindingPod, FindingRequest, FindingServiceAccount, Rule, Severity, SCHEMA,
};
use tokentrail_correlator_core::ocsf::{detection_finding, Activity, OCSF_VERSION};
use tokentrail_correlator_core::{EngineConfig, Timestamp};

/// The classes tokentrail writes: findings, and incidents.
const CLASSES: [&str; 2] = ["detection_finding", "incident_finding"];

fn schema() -> Value {
    let dir = std::env::var_os("TOKENTRAIL_OCSF_SCHEMA_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tokentrail/ocsf-schema")
    });
    let path = dir.join(format!("{OCSF_VERSION}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the OCSF {OCSF_VERSION} schema is missing ({}: {e}); run `bash .ci/ocsf-setup.sh` once (it fetches it \
             from PyPI and caches it)",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(schema["version"], OCSF_VERSION, "{}", path.display());
    schema
}

/// The problems of one record, each naming the field's path; empty when it is valid.
fn validate(schema: &Value, record: &Value) -> Vec<String> {
    let Some(name) = CLASSES.into_iter().find(|c| schema["classes"][c]["uid"] == record["class_uid"]) else {
        return vec![format!("class_uid {} is none of {CLASSES:?}", record["class_uid"])];
    };
    let class = &schema["classes"][name];
    let mut v = Validator { schema, profiles: BTreeSet::new(), problems: Vec::new() };
    let allowed: Vec<&str> = class["profiles"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    match record.pointer("/metadata/profiles") {
        Some(Value::Array(declared)) => {
            for p in declared.iter().map(|p| p.as_str().unwrap_or_default()) {
                if !allowed.contains(&p) {
                    v.problems.push(format!("metadata.profiles: {p:?} is not a profile of {name} ({allowed:?})"));
                }
                v.profiles.insert(p.to_string());
            }
        }
        Some(other) => v.problems.push(format!("metadata.profiles: {other} is not an array")),
        None => {}
    }
    v.object(record, &class["attributes"], &class["constraints"], "");
    if record["class_uid"] != class["uid"] || record["category_uid"] != class["category_uid"] {
        v.problems.push(format!("class_uid/category_uid must be {}/{}", class["uid"], class["category_uid"]));
    }
    let type_uid = record["class_uid"].as_i64().unwrap_or(0) * 100 + record["activity_id"].as_i64().unwrap_or(0);
    if record["type_uid"].as_i64() != Some(type_uid) {
        v.problems.push(format!("type_uid: {} is not class_uid * 100 + activity_id ({type_uid})", record["type_uid"]));
    }
    if record.pointer("/metadata/version") != Some(&schema["version"]) {
        v.problems.push(format!("metadata.version must be {}", schema["version"]));
    }
    for (i, o) in record["observables"].as_array().into_iter().flatten().enumerate() {
        let name = o["name"].as_str().unwrap_or_default();
        if !resolve(record, name).contains(&&o["value"]) {
            v.problems.push(format!("observables[{i}]: no {name} in the record holds {}", o["value"]));
        }
    }
    v.problems
}

/// The values at a dotted path, through arrays.
fn resolve<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut here = vec![v];
    for part in path.split('.') {
        here = here
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|i| i.get(part)).collect::<Vec<_>>(),
                other => other.get(part).into_iter().collect(),
            })
            .collect();
    }
    here
}

struct Validator<'a> {
    schema: &'a Value,
    profiles: BTreeSet<String>,
    problems: Vec<String>,
}

impl Validator<'_> {
    fn applies(&self, attr: &Value) -> bool {
        attr["profile"].as_str().is_none_or(|p| self.profiles.contains(p))
    }

    fn object(&mut self, value: &Value, attributes: &Value, constraints: &Value, path: &str) {
        let (Some(obj), Some(attributes)) = (value.as_object(), attributes.as_object()) else {
            self.problems.push(format!("{}: {value} is not an object", shown(path)));
            return;
        };
        for (name, v) in obj {
            let p = joined(path, name);
            let Some(attr) = attributes.get(name) else {
                self.problems.push(format!("{p}: no such attribute here"));
                continue;
            };
            if !self.applies(attr) {
                self.problems.push(format!(
                    "{p}: belongs to the {} profile, which metadata.profiles does not declare",
                    attr["profile"]
                ));
            }
            if attr["is_array"] == true {
                match v.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.value(item, attr, &format!("{p}[{i}]"));
                        }
                    }
                    None => self.problems.push(format!("{p}: {v} is not an array")),
                }
            } else {
                self.value(v, attr, &p);
            }
        }
        for (name, attr) in attributes {
            if attr["requirement"] == "required" && self.applies(attr) && !obj.contains_key(name) {
                self.problems.push(format!("{}: required attribute {name} is missing", shown(path)));
            }
            // A caption beside an enum id (`severity` beside `severity_id`) is the id's caption.
            if let (Some(sibling), Some(id)) = (attr["sibling"].as_str(), obj.get(name)) {
                let caption = &attr["enum"][id.to_string()]["caption"];
                if let Some(given) = obj.get(sibling).filter(|_| caption.is_string() && id != 99) {
                    if given != caption {
                        self.problems
                            .push(format!("{}: {given} is not {name} {id}'s caption {caption}", joined(path, sibling)));
                    }
                }
            }
        }
        let present = |names: &Value| {
            names.as_array().into_iter().flatten().filter(|n| obj.contains_key(n.as_str().unwrap_or_default())).count()
        };
        if constraints["at_least_one"].is_array() && present(&constraints["at_least_one"]) == 0 {
            self.problems.push(format!("{}: needs at least one of {}", shown(path), constraints["at_least_one"]));
        }
        if constraints["just_one"].is_array() && present(&constraints["just_one"]) != 1 {
            self.problems.push(format!("{}: needs exactly one of {}", shown(path), constraints["just_one"]));
        }
    }

    fn value(&mut self, v: &Value, attr: &Value, path: &str) {
        let ty = attr["type"].as_str().unwrap_or_default();
        if ty == "object_t" {
            let object_type = attr["object_type"].as_str().unwrap_or_default();
            if object_type == "object" {
                return; // free-form: `unmapped`
            }
            let object = &self.schema["objects"][object_type];
            if object.is_null() {
                self.problems.push(format!("{path}: the schema has no object {object_type}"));
                return;
            }
            self.object(v, &object["attributes"], &object["constraints"], path);
            return;
        }
        self.scalar(v, ty, path);
        if let Some(ids) = attr["enum"].as_object() {
            let id = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            if !ids.contains_key(&id) {
                let known: Vec<&String> = ids.keys().collect();
                self.problems.push(format!("{path}: {v} is not one of the enum's ids {known:?}"));
            }
        }
    }

    fn scalar(&mut self, v: &Value, ty: &str, path: &str) {
        let def = &self.schema["types"][ty];
        if def.is_null() {
            self.problems.push(format!("{path}: the schema has no type {ty}"));
            return;
        }
        let base = def["type"].as_str().unwrap_or(ty);
        let fits = match base {
            "string_t" => v.is_string(),
            "integer_t" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long_t" => v.is_i64() || v.is_u64(),
            "float_t" => v.is_number(),
            "boolean_t" => v.is_boolean(),
            "json_t" => true,
            _ => false,
        };
        if !fits {
            self.problems.push(format!("{path}: {v} is not a {ty} ({base})"));
            return;
        }
        if let (Some(max), Some(s)) = (def["max_len"].as_u64(), v.as_str()) {
            if s.len() as u64 > max {
                self.problems.push(format!("{path}: longer than {ty}'s {max} characters"));
            }
        }
        let shaped = match ty {
            "ip_t" => v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            "datetime_t" => v.as_str().is_some_and(rfc3339),
            // Milliseconds since the epoch: a microsecond count would read as a date after 2286.
            "timestamp_t" => v.as_i64().is_some_and(|t| (0..10_000_000_000_000).contains(&t)),
            _ if def["regex"].is_string() => {
                self.problems.push(format!("{path}: {ty} has a pattern this validator does not check; teach it"));
                true
            }
            _ => true,
        };
        if !shaped {
            self.problems.push(format!("{path}: {v} is not a valid {ty}"));
        }
    }
}

fn joined(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(record)"
    } else {
        path
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !(digits(0..4) && digits(5..7) && digits(8..10) && digits(11..13) && digits(14..16)) {
        return false;
    }
    if (b[4], b[7], b[10], b[13], b[16]) != (b'-', b'-', b'T', b':', b':') || !digits(17..19) {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z" || (rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':')
}

fn assert_valid(schema: &Value, record: &Value, what: &str) {
    let problems = validate(schema, record);
    assert!(
        problems.is_empty(),
        "{what}: the OCSF record does not follow the {OCSF_VERSION} schema:\n  {}\nrecord: {record:#}",
        problems.join("\n  ")
    );
}

/// The OCSF lines `tokentrail analyze --format ocsf --ocsf-incident-group responders` prints for
/// this evidence: Detection Findings, then Incident Findings.
fn analyze_ocsf(evidence: &[PathBuf], cluster: Option<&str>) -> Vec<Value> {
    let options = AnalyzeOptions {
        engine: EngineConfig { cluster: cluster.map(str::to_string), ..EngineConfig::default() },
        ..AnalyzeOptions::default()
    };
    let analysis = analyze(evidence, &options, &Quiet, &mut |_| {});
    let mut out = Vec::new();
    write_ocsf(&analysis.report.findings, &mut out).unwrap();
    write_ocsf_incidents(&analysis.report.incidents, &analysis.report.findings, "responders", &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The rule of a Detection Finding; `incident` for an Incident Finding.
fn rule_of(record: &Value) -> String {
    match record["finding_info"]["analytic"]["uid"].as_str() {
        Some(rule) => rule.to_string(),
        None => String::from("incident"),
    }
}

#[test]
fn the_example_and_golden_scenarios_follow_the_ocsf_schema() {
    let schema = schema();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("../examples/incident");
    let mut rules = BTreeSet::new();
    // As the README runs it (no cluster label) and as a fleet would (with one).
    for cluster in [None, Some("prod-eu-1")] {
        let records = analyze_ocsf(std::slice::from_ref(&example), cluster);
        assert!(records.len() >= 5, "the example should give several findings, got {}", records.len());
        for r in &records {
            assert_valid(&schema, r, &format!("examples/incident, {}", rule_of(r)));
            rules.insert(rule_of(r));
        }
    }
    let mut golden: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("evidence").is_dir())
        .collect();
    golden.sort();
    assert!(golden.len() >= 4, "golden scenarios missing");
    for dir in &golden {
        for r in analyze_ocsf(&[dir.join("evidence")], Some("golden")) {
            assert_valid(&schema, &r, &format!("{}, {}", dir.display(), rule_of(&r)));
            rules.insert(rule_of(&r));
        }
    }
    assert!(rules.contains("incident"), "no Incident Finding was validated");
    // Real evidence reaches most rules; the next test covers every rule whatever the evidence.
    assert!(rules.len() >= 9, "only {rules:?} were validated from real evidence");
    eprintln!("validated OCSF records of {} rules from real evidence: {rules:?}", rules.len());
}

#[test]
fn the_engine_findings_of_the_rules_real_evidence_misses_follow_the_ocsf_schema() {
    use common::*;
    let schema = schema();
    let p = pod("payments/api-7d9f8-xk2lq", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let other = pod("shop/web-1", "uid-web").on_node("worker-2").with_ip("10.244.2.7");
    let with_cluster = |mut extra: Vec<tokentrail_correlator_core::Observation>| {
        let mut all = cluster();
        all.append(&mut extra);
        all
    };
    let mint_only = |jti| {
        tokentrail_correlator_core::Observation::TokenMint(mint(jti, "ci/deployer", "alice", "198.51.100.23", 0.0))
    };
    // The scenarios of correlator/core/tests/rules.rs, one per rule.
    let scenarios = [
        with_cluster(vec![
            p.observed(),
            other.observed(),
            use_of("payments/api").bound_to(&p, "j1").from("10.244.2.7").at(3.0).obs(),
        ]),
        vec![
            use_of("payments/api").bound_to(&p, "j1").from("10.1.1.1").at(1.0).obs(),
            use_of("payments/api").bound_to(&p, "j1").from("10.2.2.2").at(2.0).obs(),
        ],
        with_cluster(vec![
            p.observed(),
            bound(mint("j-forged", "payments/api", "alice", "198.51.100.23", 1.0), &p),
            use_of("payments/api").bound_to(&p, "j-forged").from("10.244.1.12").at(2.0).obs(),
        ]),
        vec![mint_only("j1"), mint_only("j2")],
        with_cluster(vec![
            p.observed(),
            use_of("payments/api").bound_to(&p, "j1").from("203.0.113.9").at(10.0).obs(),
            p.deleted_at(20.0),
            auth_failure("203.0.113.9", 25.0),
        ]),
    ];
    let mut rules = BTreeSet::new();
    for observations in scenarios {
        let report =
            run_with(EngineConfig { cluster: Some("prod-eu-1".into()), ..EngineConfig::default() }, observations);
        for f in &report.findings {
            for activity in [Activity::Create, Activity::Update] {
                assert_valid(
                    &schema,
                    &detection_finding(f, activity, "0.1.0"),
                    &format!("engine scenario, {}", f.rule),
                );
            }
            // The stream's correction of a finding it sent (`emit::Emitter::withdraw`).
            let withdrawn = Finding { status: tokentrail_correlator_core::finding::Status::Withdrawn, ..f.clone() };
            assert_valid(
                &schema,
                &detection_finding(&withdrawn, Activity::Update, "0.1.0"),
                &format!("engine scenario, {} withdrawn", f.rule),
            );
            rules.insert(f.rule.id());
        }
    }
    for rule in [
        "token-used-from-other-workload",
        "token-multi-origin",
        "token-forged-mint",
        "token-minted-by-user",
        "token-after-pod-deletion",
    ] {
        assert!(rules.contains(rule), "the scenarios no longer produce {rule}: {rules:?}");
    }
}

/// A finding of `rule` with every optional field filled.
fn full_finding(rule: Rule, severity: Severity) -> Finding {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Finding {
        schema: SCHEMA,
        id: "0123456789abcdef0123456789abcdef".into(),
        rule,
        severity,
        title: format!("{rule} on default/web"),
        cluster: Some("prod-eu-1".into()),
        serviceaccount: Some(FindingServiceAccount {
            namespace: "default".into(),
            name: "web".into(),
            uid: Some("6b1a0a43-3f6e-4d55-9a0e-6f2c1c8b9e01".into()),
        }),
        credential: Some(FindingCredential {
            kind: "pod-bound",
            id: Some("JTI=9f0c2a1e-2f7d-4c3e-8d6b-1a2b3c4d5e6f".into()),
            secret: Some("web-token-abcde".into()),
        }),
        pod: Some(FindingPod {
            namespace: "default".into(),
            name: "web-7d4b9c".into(),
            uid: Some("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b".into()),
            node: Some("node-1".into()),
        }),
        source_ip: Some(ip("2001:db8::50")),
        source_ips: vec![ip("203.0.113.50"), ip("2001:db8::50")],
        expected_ips: vec![ip("10.244.1.7")],
        first_seen: Timestamp::parse("2026-03-01T10:00:00.123456Z").unwrap(),
        last_seen: Timestamp::parse("2026-03-01T11:30:00Z").unwrap(),
        count: 42,
        user_agents: vec!["curl/8.5.0".into()],
        requests: vec![FindingRequest {
            verb: "list".into(),
            resource: Some("secrets".into()),
            namespace: Some("default".into()),
            name: None,
            code: Some(200),
        }],
        audit_ids: vec!["a1b2c3d4-0000-4000-8000-000000000001".into()],
        attack: rule.attack(),
        explanation: "Why it fired.".into(),
        status: tokentrail_correlator_core::finding::Status::Active,
        copies: Vec::new(),
    }
}

#[test]
fn every_rule_and_activity_follows_the_ocsf_schema() {
    let schema = schema();
    for rule in Rule::ALL {
        for severity in [rule.severity(), Severity::Medium, Severity::Low] {
            for activity in [Activity::Create, Activity::Update] {
                let mut f = full_finding(rule, severity);
                assert_valid(&schema, &detection_finding(&f, activity, "0.1.0"), &format!("{rule} {activity:?}"));
                // And with nothing optional: no cluster, account, credential, pod or address.
                (f.cluster, f.serviceaccount, f.credential, f.pod, f.source_ip) = (None, None, None, None, None);
                assert_valid(&schema, &detection_finding(&f, activity, "0.1.0"), &format!("bare {rule} {activity:?}"));
            }
        }
    }
}

/// A change made to a valid record.
type Change = Box<dyn FnOnce(&mut Map<String, Value>)>;

/// Applies `change` to a valid record and returns the validator's problems.
fn problems_after(schema: &Value, change: impl FnOnce(&mut Map<String, Value>)) -> Vec<String> {
    let mut record =
        detection_finding(&full_finding(Rule::TokenUsedOffCluster, Severity::Critical), Activity::Create, "0");
    assert_valid(schema, &record, "the unchanged record");
    change(record.as_object_mut().unwrap());
    validate(schema, &record)
}

#[test]
fn the_validator_rejects_misplaced_and_mistyped_fields() {
    let schema = schema();
    let cases: Vec<(&str, Change)> = vec![
        // The defects of the records before this validator existed.
        (
            "src_endpoint",
            Box::new(|r| {
                r.insert("src_endpoint".into(), json!({"ip": "203.0.113.50"}));
            }),
        ),
        (
            "host",
            Box::new(|r| {
                r.insert("actor".into(), json!({"user": {"name": "x"}}));
            }),
        ),
        ("cloud", Box::new(|r| r["resources"][0]["cloud_partition"] = json!("prod"))),
        // Required, typed, enumerated, derived.
        (
            "uid is missing",
            Box::new(|r| {
                r["finding_info"].as_object_mut().unwrap().remove("uid");
            }),
        ),
        ("confidence_id", Box::new(|r| r["confidence_id"] = json!(7))),
        ("type_uid", Box::new(|r| r["type_uid"] = json!(200403))),
        ("severity", Box::new(|r| r["severity"] = json!("High"))),
        ("timestamp_t", Box::new(|r| r["time"] = json!(1_772_359_200_000_000_i64))),
        ("datetime_t", Box::new(|r| r["time_dt"] = json!("yesterday"))),
        ("ip_t", Box::new(|r| r["evidences"][0]["src_endpoint"]["ip"] = json!("not-an-address"))),
        ("string_t", Box::new(|r| r["finding_info"]["title"] = json!(7))),
        ("integer_t", Box::new(|r| r["count"] = json!(5_000_000_000_i64))),
        ("metadata.profiles", Box::new(|r| r["metadata"]["profiles"] = json!(["kubernetes"]))),
        ("observables[0]", Box::new(|r| r["observables"][0]["value"] = json!("198.51.100.1"))),
        ("at least one of", Box::new(|r| r["evidences"] = json!([{}]))),
    ];
    for (expected, change) in cases {
        let problems = problems_after(&schema, change);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "a change that should be caught ({expected}) was not: {problems:?}"
        );
    }
}

#[test]
fn an_incident_finding_must_name_the_group_it_is_assigned_to() {
    let schema = schema();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident");
    let mut incident = analyze_ocsf(&[example], Some("prod-eu-1")).pop().unwrap();
    assert_eq!(incident["class_uid"], 2005);
    assert_valid(&schema, &incident, "the example's incident");
    incident.as_object_mut().unwrap().remove("assignee_group");
    let problems = validate(&schema, &incident);
    assert!(problems.iter().any(|p| p.contains("assignee")), "OCSF requires an assignee or group: {problems:?}");
}
