//! Persisted state: an engine snapshotted at any point and restored continues exactly as if it
//! had never stopped. The correlator relies on this to survive being killed mid-stream.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation};

fn evidence() -> Vec<Observation> {
    let api = pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let exporter =
        pod("monitoring/exp-0", "uid-exp").on_node("worker-2").with_ip("10.244.2.5").mounting("exp-token-abcde");
    let mut obs = cluster();
    obs.extend([api.observed(), exporter.observed(), token_secret("monitoring", "exp-token-abcde", "exp")]);
    obs.push(bound(mint("j1", "payments/api", "system:node:worker-1", "10.0.1.11", 0.0), &api));
    // Its agent saw j1 (j2, minted later, it never reports: a forged-mint verdict to restore).
    obs.push(attested(&api, "j1", 0.0));
    obs.push(bound(mint("j2", "payments/api", "system:node:worker-1", "10.0.1.11", 48.0), &api));
    obs.extend(use_of("payments/api").bound_to(&api, "j1").from("10.244.1.12").every_minute(0.5, 48));
    obs.push(exec_into(&api, "alice", "198.51.100.23", 30.0));
    // A foreign read of api's token file, then the token used from outside: the harvest chain
    // must survive a restore like everything else.
    let thief = pod("default/debug", "uid-debug").on_node("worker-1").with_ip("10.244.1.99");
    obs.extend([thief.observed(), token_read(&api, "j1", Some(&thief), "/bin/cat", 31.0)]);
    obs.extend(
        use_of("payments/api").bound_to(&api, "j1").via(&["10.244.1.12", "203.0.113.50"]).every_minute(33.0, 40),
    );
    obs.extend(use_of("payments/api").bound_to(&api, "j2").from("10.244.1.12").every_minute(48.3, 30));
    obs.extend(use_of("monitoring/exp").legacy("exp-token-abcde").from("198.51.100.77").every_minute(10.0, 3));
    obs.push(secret_list("alice", "monitoring", "198.51.100.23", 31.0));
    obs.push(api.deleted_at(100.0));
    obs.push(auth_failure("203.0.113.50", 101.0));
    obs
}

fn report_json(engine: &mut Engine) -> String {
    let r = engine.report();
    serde_json::to_string(&(&r.findings, &r.usage, &r.legacy_tokens, &r.coverage)).unwrap()
}

#[test]
fn a_restored_engine_continues_exactly_where_the_snapshot_left_off() {
    let obs = evidence();
    let mut straight = Engine::new(EngineConfig::default());
    for o in obs.clone() {
        straight.observe(o);
    }
    let expected = report_json(&mut straight);
    assert!(expected.contains("token-used-off-cluster"), "the scenario must make findings");
    assert!(expected.contains("token-harvested-then-used"), "the scenario must read a token file");

    for cut in [0, 1, obs.len() / 3, obs.len() / 2, obs.len() - 1, obs.len()] {
        let mut first = Engine::new(EngineConfig::default());
        for o in obs[..cut].iter().cloned() {
            first.observe(o);
        }
        let snapshot = first.snapshot().unwrap();
        drop(first);
        let mut resumed = Engine::restore(EngineConfig::default(), &snapshot).unwrap();
        for o in obs[cut..].iter().cloned() {
            resumed.observe(o);
        }
        assert!(report_json(&mut resumed) == expected, "restoring after {cut} observations changed the report");
    }
}

#[test]
fn a_replayed_duplicate_after_restore_is_still_folded() {
    // A crash between processing and committing makes the stream deliver some records again;
    // the restored dedup window must recognise their audit IDs.
    let p = pod("shop/web-1", "uid-web").on_node("worker-1").with_ip("10.244.1.5");
    let u = use_of("shop/web").bound_to(&p, "j1").from("203.0.113.9").at(1.0).audit_id("same-request").obs();
    let mut engine = Engine::new(EngineConfig::default());
    engine.observe(u.clone());
    let mut resumed = Engine::restore(EngineConfig::default(), &engine.snapshot().unwrap()).unwrap();
    resumed.observe(u);
    assert_eq!(resumed.report().coverage.token_uses, 1);
}

#[test]
fn a_damaged_snapshot_is_an_error_not_a_panic() {
    assert!(Engine::restore(EngineConfig::default(), b"{\"recent\": 7}").is_err());
    assert!(Engine::restore(EngineConfig::default(), b"\xff\xfe").is_err());
}

#[test]
fn a_snapshot_without_held_copies_or_in_another_field_order_restores() {
    let mut engine = Engine::new(EngineConfig::default());
    for o in evidence() {
        engine.observe(o);
    }
    let expected = report_json(&mut engine);
    // Its fields come back sorted by name: the window's among the state's, not first.
    let mut snapshot: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&engine.snapshot().unwrap()).unwrap();
    assert!(snapshot.remove("held").is_some(), "the snapshot lists held copies");
    let mut restored = Engine::restore(EngineConfig::default(), &serde_json::to_vec(&snapshot).unwrap()).unwrap();
    assert!(report_json(&mut restored) == expected, "a snapshot without held copies restored differently");
}

/// A compacted changelog: the last value of each key, deletions applied.
#[derive(Default)]
struct Compacted(std::collections::BTreeMap<String, Vec<u8>>);

impl Compacted {
    /// Writes one commit's records; returns how many.
    fn write(&mut self, engine: &mut Engine) -> usize {
        let changes = engine.changes();
        for c in &changes {
            match &c.value {
                Some(v) => self.0.insert(c.key.clone(), v.clone()),
                None => self.0.remove(&c.key),
            };
        }
        changes.len()
    }

    fn restore(&self) -> Engine {
        Engine::from_entries(EngineConfig::default(), self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap()
    }
}

/// A correlator's commit: the report (which places sighted pods), expiry, then the changes.
fn commit(engine: &mut Engine, log: &mut Compacted) -> usize {
    engine.report();
    engine.expire();
    log.write(engine)
}

#[test]
fn an_engine_restored_from_its_per_key_changelog_continues_exactly() {
    let obs = evidence();
    let mut straight = Engine::new(EngineConfig::default());
    for o in obs.clone() {
        straight.observe(o);
    }
    let expected = report_json(&mut straight);

    for every in [1, 7, 50] {
        for cut in [0, 1, obs.len() / 3, obs.len() / 2, obs.len() - 1, obs.len()] {
            let mut first = Engine::new(EngineConfig::default());
            first.track_changes();
            let mut log = Compacted::default();
            for (i, o) in obs[..cut].iter().cloned().enumerate() {
                first.observe(o);
                if i % every == every - 1 {
                    commit(&mut first, &mut log);
                }
            }
            commit(&mut first, &mut log);
            drop(first);
            let mut resumed = log.restore();
            for (i, o) in obs[cut..].iter().cloned().enumerate() {
                resumed.observe(o);
                if i % every == every - 1 {
                    commit(&mut resumed, &mut log);
                }
            }
            assert!(
                report_json(&mut resumed) == expected,
                "restoring from the changelog after {cut} observations (a commit every {every}) changed the report"
            );
            // And what the changelog holds at the end is the engine again.
            commit(&mut resumed, &mut log);
            assert!(report_json(&mut log.restore()) == expected, "the final changelog after {cut}/{every}");
        }
    }
}

#[test]
fn a_commit_writes_what_changed_and_deletes_what_expired() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-1").with_ip("10.244.1.5");
    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    let mut log = Compacted::default();
    for n in 0..200 {
        let jti = format!("j{n}");
        engine.observe(use_of("shop/web").bound_to(&p, &jti).from("10.244.1.5").at(1.0).audit_id(&jti).obs());
    }
    commit(&mut engine, &mut log);
    let groups = |log: &Compacted| log.0.keys().filter(|k| k.starts_with("use\t")).count();
    assert_eq!(groups(&log), 200, "one entry per use group");
    assert_eq!(commit(&mut engine, &mut log), 0, "nothing changed, nothing written");
    engine.observe(use_of("shop/web").bound_to(&p, "j7").from("10.244.1.5").at(2.0).audit_id("again").obs());
    let written = engine.changes();
    let keys: Vec<&str> = written.iter().map(|c| c.key.split('\t').next().unwrap()).collect();
    assert_eq!(keys, ["use", "window", "rest"], "one group, the window's open segment, the counters");
    for c in written {
        log.0.insert(c.key, c.value.unwrap());
    }
    // A day and more later every one of those credentials expires: their entries are deleted.
    engine.observe(use_of("shop/web").bound_to(&p, "later").from("10.244.1.5").at(60.0 * 30.0).audit_id("x").obs());
    commit(&mut engine, &mut log);
    assert_eq!(groups(&log), 1, "the expired groups' entries deleted, the new one written");
    let mut restored = log.restore();
    assert_eq!(restored.state_size(), engine.state_size());
    assert_eq!(report_json(&mut restored), report_json(&mut engine));
}

/// What an older version wrote for attestations: each whole under its JTI in `attested`, and the
/// digests of expired ones in `retired`. They are read back, rewritten as digests by the first
/// commit and tombstoned, and they still vouch for their credentials.
#[test]
fn an_older_changelogs_attestations_are_read_rewritten_and_still_vouch() {
    let p = pod("payments/api-1", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api");
    let n = pod("shop/web-9", "uid-web").on_node("worker-1").with_ip("10.244.1.40").running_as("web");
    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    for o in cluster().into_iter().chain([p.observed(), n.observed(), attested(&n, "j-n1", 0.0)]) {
        engine.observe(o);
    }
    let mut log = Compacted::default();
    commit(&mut engine, &mut log);
    let since = serde_json::to_string(&t(0.0)).unwrap();
    let old = format!(r#"{{"node":"worker-1","pod_uid":"uid-api","since":{since}}}"#);
    log.0.insert("attested\tj-real".into(), old.into_bytes());
    log.0.insert("retired\t12345".into(), since.clone().into_bytes());

    let mut restored = log.restore();
    assert_eq!(restored.state_size().attestations, 3, "j-n1, j-real and the retired digest");
    let rewritten = restored.changes();
    let tombstones: Vec<&str> = rewritten.iter().filter(|c| c.value.is_none()).map(|c| c.key.as_str()).collect();
    assert_eq!(tombstones, ["attested\tj-real", "retired\t12345"]);
    let written: Vec<&str> = rewritten.iter().filter(|c| c.value.is_some()).map(|c| c.key.as_str()).collect();
    assert!(written.contains(&"attested\t/12345"), "a digest of no known pod: {written:?}");
    assert!(written.iter().any(|k| k.starts_with("attested\tuid-api/")), "{written:?}");
    assert_eq!(written.iter().filter(|k| k.starts_with("attested\t")).count(), 2, "{written:?}");
    for c in rewritten {
        match c.value {
            Some(v) => log.0.insert(c.key, v),
            None => log.0.remove(&c.key),
        };
    }
    assert!(restored.changes().is_empty(), "rewritten once");

    // Past the grace by the node's watermark: j-real vouched for by its rewritten digest, a token
    // the agent never saw forged; the same from the rewritten changelog.
    let late = [
        use_of("payments/api").bound_to(&p, "j-real").from("10.244.1.12").at(30.0).obs(),
        use_of("payments/api").bound_to(&p, "j-ghost").from("10.244.1.12").at(30.0).obs(),
        attested(&n, "j-n2", 60.0),
    ];
    let forged = |e: &mut Engine| -> Vec<String> {
        let report = e.report();
        only(&report, "token-forged-mint")
            .iter()
            .map(|f| f.credential.as_ref().and_then(|c| c.id.clone()).unwrap_or_default())
            .collect()
    };
    let mut again = log.restore();
    assert_eq!(again.state_size().attestations, 3);
    assert!(log.0.keys().all(|k| !k.starts_with("retired\t") && k != "attested\tj-real"));
    for e in [&mut restored, &mut again] {
        for o in late.clone() {
            e.observe(o);
        }
        assert_eq!(forged(e), ["JTI=j-ghost"]);
    }
}

#[test]
fn a_damaged_changelog_entry_is_an_error_naming_it() {
    let bad = Engine::from_entries(EngineConfig::default(), [("use\t{\"not\":\"a key\"}", b"{}".as_slice())]);
    assert!(bad.err().is_some_and(|e| e.to_string().starts_with(r#"entry "use\t{"#)));
    let unknown = Engine::from_entries(EngineConfig::default(), [("future\tx", b"{}".as_slice())]);
    assert!(unknown.err().is_some_and(|e| e.to_string().contains("unknown section")));
}
