//! The changelog's value format across versions: entries an older version wrote as JSON still
//! restore the same state, format 1 is written byte for byte as pinned here (a moved field is a
//! new format, see `tokentrail_correlator_core::changes::value`), and a used credential's
//! entries stay under a kilobyte.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;
#[allow(dead_code)] // the generator of `examples/changelog_cost.rs`, which the size is measured on
#[path = "../examples/synthetic/mod.rs"]
mod synthetic;

use common::*;
use tokentrail_correlator_core::changes::{entry_key, Change};
use tokentrail_correlator_core::{Engine, EngineConfig, Observation};

/// A credential's life in a few records, every part of a use group filled: a pod on a node, its
/// TokenRequest and attestation, uses from its own address (audit IDs that are UUIDs, as the
/// apiserver writes them), a forwarded and stale use with an ID that is not, and a use from
/// outside in upper case.
fn story() -> Vec<Observation> {
    let api = pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let mut obs = cluster();
    obs.push(api.observed());
    let mut m = mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0);
    m.audit_id = "5d0c3f4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f".into();
    obs.push(bound(m, &api));
    obs.push(attested(&api, "j1", 0.0));
    let used = || use_of("payments/api").bound_to(&api, "j1");
    for (i, minutes) in [1.0, 2.5, 30.0].into_iter().enumerate() {
        obs.push(
            used().from("10.244.1.12").at(minutes).audit_id(&format!("0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f{i}")).obs(),
        );
    }
    obs.push(used().via(&["203.0.113.50", "10.244.1.12"]).at(31.0).audit_id("not-a-uuid-1").stale().obs());
    obs.push(
        used().from("198.51.100.7").at(40.0).by("curl/8.5.0").audit_id("0F8C7D2E-5B1A-4C3D-9E8F-A1B2C3D4E5F9").obs(),
    );
    obs
}

/// The story folded and committed as a correlator does: the report, then the changes.
fn story_changes() -> (Engine, Vec<Change>) {
    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    for o in story() {
        engine.observe(o);
    }
    engine.report();
    let changes = engine.changes();
    (engine, changes)
}

/// What the version before format 1 (main at 65822e3) wrote for [`story`]: section, key, value.
const JSON_CHANGELOG: &[(&str, &str, &str)] = &[
    (
        "use",
        r#"{"serviceaccount":{"namespace":"payments","name":"api"},"credential":{"PodBound":{"pod_uid":"uid-api","jti":"j1"}},"client":"198.51.100.7"}"#,
        r#"{"uses":{"count":1,"first":"2026-03-01T10:40:00Z","last":"2026-03-01T10:40:00Z","audit_ids":{"values":[["2026-03-01T10:40:00Z","0F8C7D2E-5B1A-4C3D-9E8F-A1B2C3D4E5F9"]]},"user_agents":{"values":["curl/8.5.0"]},"requests":{"values":[{"verb":"get","resource":"configmaps","subresource":null,"namespace":null,"name":null,"code":200}]}},"serviceaccount_uid":"uid-of-payments/api","pod_name":"api-1","node":"worker-1","over_time":{"start":"1970-01-01T00:00:00Z","width":1000000,"counts":[]},"clients":{"seen":[[{"program":"curl","os":null},{"first":"2026-03-01T10:40:00Z","last":"2026-03-01T10:40:00Z","count":1}]]}}"#,
    ),
    (
        "use",
        r#"{"serviceaccount":{"namespace":"payments","name":"api"},"credential":{"PodBound":{"pod_uid":"uid-api","jti":"j1"}},"client":"10.244.1.12"}"#,
        r#"{"uses":{"count":4,"first":"2026-03-01T10:01:00Z","last":"2026-03-01T10:31:00Z","audit_ids":{"values":[["2026-03-01T10:01:00Z","0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f0"],["2026-03-01T10:02:30Z","0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f1"],["2026-03-01T10:30:00Z","0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f2"],["2026-03-01T10:31:00Z","not-a-uuid-1"]]},"user_agents":{"values":["app/1.0"]},"requests":{"values":[{"verb":"get","resource":"configmaps","subresource":null,"namespace":null,"name":null,"code":200}]}},"serviceaccount_uid":"uid-of-payments/api","pod_name":"api-1","node":"worker-1","irregular":{"forwarded":{"count":1,"first":"2026-03-01T10:31:00Z","last":"2026-03-01T10:31:00Z","audit_ids":{"values":[["2026-03-01T10:31:00Z","not-a-uuid-1"]]},"user_agents":{"values":["app/1.0"]},"requests":{"values":[{"verb":"get","resource":"configmaps","subresource":null,"namespace":null,"name":null,"code":200}]}},"forwarded_ips":["203.0.113.50"],"stale":{"count":1,"first":"2026-03-01T10:31:00Z","last":"2026-03-01T10:31:00Z","audit_ids":{"values":[["2026-03-01T10:31:00Z","not-a-uuid-1"]]},"user_agents":{"values":["app/1.0"]},"requests":{"values":[{"verb":"get","resource":"configmaps","subresource":null,"namespace":null,"name":null,"code":200}]}}},"over_time":{"start":"2026-03-01T10:00:32Z","width":32000000,"counts":[1,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,1]},"clients":{"seen":[[{"program":"app","os":null},{"first":"2026-03-01T10:01:00Z","last":"2026-03-01T10:31:00Z","count":4}]]}}"#,
    ),
    ("attested", r#"uid-api/4420353830476899083"#, r#""2026-03-01T10:00:00Z""#),
    (
        "pod",
        r#"uid-api"#,
        r#"{"uid":"uid-api","namespace":"payments","name":"api-1","node":"worker-1","serviceaccount":"api","host_network":false,"first_seen":"2026-03-01T10:00:00Z","last_seen":"2026-03-01T10:40:00Z","deleted":null,"addresses":[["10.244.1.12","2026-03-01T10:00:00Z"]],"secret_volumes":[],"inventoried":true}"#,
    ),
    (
        "mint",
        r#"5d0c3f4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"#,
        r#"{"time":"2026-03-01T10:00:00Z","audit_id":"5d0c3f4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f","minter":"system:node:worker-1","client":"10.0.1.11","hops":1,"serviceaccount":{"namespace":"payments","name":"api"},"jti":"j1","bound_pod":{"name":"api-1","uid":"uid-api"},"bound_kind":"Pod","code":201,"user_agent":"kubectl/v1.32.0"}"#,
    ),
    (
        "node",
        r#"worker-1"#,
        r#"{"name":"worker-1","addresses":["10.0.1.11"],"pod_cidrs":["10.244.1.0/24"],"os":null,"learned":false}"#,
    ),
    (
        "node",
        r#"worker-2"#,
        r#"{"name":"worker-2","addresses":["10.0.1.12"],"pod_cidrs":["10.244.2.0/24"],"os":null,"learned":false}"#,
    ),
    (
        "node",
        r#"worker-3"#,
        r#"{"name":"worker-3","addresses":["10.0.1.13"],"pod_cidrs":["10.244.3.0/24"],"os":null,"learned":false}"#,
    ),
    ("agent", r#"worker-1"#, r#"{"covers_from":"2026-03-01T10:00:00Z","reported_until":"2026-03-01T10:00:00Z"}"#),
    (
        "window",
        r#"0"#,
        r#"{"first":0,"ids":[18382175605923435099,15377368890351002951,10648821646581191275,8569560976613929611,8772617330458290055],"slots":[[1,0,false],[1,0,false],[1,0,false],[2,0,false],[1,0,false]]}"#,
    ),
    (
        "rest",
        r#""#,
        r#"{"window":{"capacity":1048576,"pushed":5},"held":[],"unresolved_pods":[],"failures":[],"accesses":[],"secret_reads":[],"secret_reads_elsewhere":[],"hops":{"hops":[["10.244.1.12",[{"namespace":"payments","name":"api"}]]]},"stats":{"observations":11,"token_uses":5,"duplicate_stages":0,"pod_accesses_dropped":0},"latest":"2026-03-01T10:40:00Z","logged":"2026-03-01T10:40:00Z","token_reads_dropped":0}"#,
    ),
];

fn report_json(engine: &mut Engine) -> String {
    let r = engine.report();
    serde_json::to_string(&(&r.findings, &r.usage, &r.legacy_tokens, &r.coverage)).unwrap()
}

fn restore(entries: &[(String, Vec<u8>)]) -> Engine {
    Engine::from_entries(EngineConfig::default(), entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap()
}

fn live(changes: Vec<Change>) -> Vec<(String, Vec<u8>)> {
    changes.into_iter().filter_map(|c| Some((c.key, c.value?))).collect()
}

#[test]
fn a_changelog_written_as_json_by_the_version_before_restores_the_same_state() {
    let (mut straight, written) = story_changes();
    let json: Vec<(String, Vec<u8>)> =
        JSON_CHANGELOG.iter().map(|(s, k, v)| (entry_key(s, k), v.as_bytes().to_vec())).collect();
    assert_eq!(json.len(), written.len(), "the fixture has every entry the story writes");
    let mut old = restore(&json);
    assert_eq!(old.state_size(), straight.state_size());
    let expected = report_json(&mut straight);
    assert!(expected.contains("token-used-off-cluster"), "the story must make findings");
    assert!(report_json(&mut old) == expected, "the JSON entries restored another report");
    assert!(old.changes().is_empty(), "entries left untouched stay as they were written");

    // A group used again is rewritten in format 1: the same bytes as the group that never
    // went through JSON, so nothing of it was lost on the way.
    let api = pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let again = use_of("payments/api").bound_to(&api, "j1").from("10.244.1.12").at(50.0).audit_id("again").obs();
    old.observe(again.clone());
    straight.observe(again);
    let (old_changes, straight_changes) = (old.changes(), straight.changes());
    let group = |changes: &[Change]| changes.iter().find(|c| c.key.starts_with("use\t")).cloned().unwrap();
    let rewritten = group(&old_changes);
    assert_eq!(rewritten.value.as_ref().unwrap()[0], 1, "rewritten in format 1");
    assert_eq!(rewritten, group(&straight_changes));
    assert!(report_json(&mut old) == report_json(&mut straight));
}

/// Format 1's bytes of [`story`]'s use groups and TokenRequest, as hex: a change to a persisted
/// type's shape changes them, and must come with a new format byte (and a reader of this one).
const FORMAT_1: &[(&str, &str)] = &[
    ("use\t{\"serviceaccount\":{\"namespace\":\"payments\",\"name\":\"api\"},\"credential\":{\"PodBound\":{\"pod_uid\":\"uid-api\",\"jti\":\"j1\"}},\"client\":\"10.244.1.12\"}", "010480bcdac1f1fca50680c8ceb40d0400000f8c7d2e5b1a4c3d9e8fa1b2c3d4e5f080aaea55000f8c7d2e5b1a4c3d9e8fa1b2c3d4e5f180acb2fb0c000f8c7d2e5b1a4c3d9e8fa1b2c3d4e5f280c8ceb40d010c6e6f742d612d757569642d3101076170702f312e300103676574010a636f6e6669676d61707300000001c8010101137569642d6f662d7061796d656e74732f61706901056170692d310108776f726b65722d3101018084a9f6fefca506000100010c6e6f742d612d757569642d3101076170702f312e300103676574010a636f6e6669676d61707300000001c8010100cb007132018084a9f6fefca506000100010c6e6f742d612d757569642d3101076170702f312e300103676574010a636f6e6669676d61707300000001c80101fffbd91a80a0c21e3a04000103013401020101036170700080bcdac1f1fca5068084a9f6fefca50604"),
    ("use\t{\"serviceaccount\":{\"namespace\":\"payments\",\"name\":\"api\"},\"credential\":{\"PodBound\":{\"pod_uid\":\"uid-api\",\"jti\":\"j1\"}},\"client\":\"198.51.100.7\"}", "01018080a7f982fda506000100012430463843374432452d354231412d344333442d394538462d413142324333443445354639010a6375726c2f382e352e300103676574010a636f6e6669676d61707300000001c8010101137569642d6f662d7061796d656e74732f61706901056170692d310108776f726b65722d31000001046375726c008080a7f982fda5068080a7f982fda50601"),
    ("attested\tuid-api/4420353830476899083", "0180a0be88f1fca506"),
    ("pod\tuid-api", "01077569642d617069087061796d656e7473056170692d310108776f726b65722d310103617069010080a0be88f1fca5068080a7f982fda5060001000af4010c80a0be88f1fca5060001"),
    ("mint\t5d0c3f4e-1a2b-4c5d-8e9f-0a1b2c3d4e5f", "0180a0be88f1fca5062435643063336634652d316132622d346335642d386539662d3061316232633364346535661473797374656d3a6e6f64653a776f726b65722d3101000a00010b01087061796d656e74730361706901026a3101056170692d3101077569642d6170690103506f6401c901010f6b75626563746c2f76312e33322e30"),
    ("window\t0", "010005dba4abafa1eaa68dff01c7ca8e8c87f1d8b3d501eba4d987e2db8de493018be5fda0e0c9ccf67687cf9ba3b99fa6df7905010000010000010000020000010000"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn format_1_values_are_written_byte_for_byte_as_pinned() {
    let (_, written) = story_changes();
    let mut pinned: Vec<(String, String)> = written
        .iter()
        .filter(|c| ["use\t", "mint\t", "pod\t", "attested\t", "window\t"].iter().any(|s| c.key.starts_with(s)))
        .map(|c| (c.key.clone(), hex(c.value.as_ref().unwrap())))
        .collect();
    // Use groups come in the order of their map.
    pinned.sort();
    let mut expected: Vec<(String, String)> = FORMAT_1.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    expected.sort();
    assert_eq!(pinned, expected);
    // And they read back: the state of the JSON story.
    let mut restored = restore(&live(written));
    let (mut straight, _) = story_changes();
    assert!(report_json(&mut restored) == report_json(&mut straight));
}

#[test]
fn a_used_credentials_entries_take_under_1000_bytes() {
    // The synthetic cluster of `changelog_cost`: 100 pods, 8 credentials each, 3 uses each.
    let pods = 100;
    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    for o in synthetic::nodes().into_iter().chain((0..pods).flat_map(|p| synthetic::pod(p, 3))) {
        engine.observe(o);
    }
    let credentials = pods * synthetic::ROTATIONS;
    let entries = live(engine.changes());
    let values: usize = entries.iter().map(|(_, v)| v.len()).sum();
    let with_keys: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    let per = |bytes: usize| bytes / credentials as usize;
    // JSON values took ~1,400 bytes a credential (~1,600 with keys).
    assert!(per(with_keys) < 1000, "{} bytes a credential with keys ({} without)", per(with_keys), per(values));
    assert!(per(values) < 600, "{} bytes of values a credential", per(values));
}
