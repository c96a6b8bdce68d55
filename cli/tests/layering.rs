//! The crate graph has no arrows back up (docs/architecture.md): every dependency between
//! workspace crates is one the layering allows, read from `cargo metadata` (the manifests as
//! Cargo resolves them, so `workspace = true` and renamed dependencies count too).
//!
//! ```text
//! cli, integration-tests       anything below; nothing depends on them
//! agent, aggregator, correlator   the drivers: their core and the contract
//! kafka                        the Kafka clients' shared security (config only)
//! aggregator-core, correlator-core   the pure cores: the contract only, not each other
//! proto, config                the contract, and the configuration grammar (problems,
//!                              durations): no workspace crate
//! ```
//!
//! A new workspace crate fails this test until it is given its place in [`LAYERS`]. Tried by
//! hand: `tokentrail-correlator-core` added to aggregator-core's dependencies, proto's `wire`
//! enabled in correlator-core, and a dev-dependency of the correlator on `tokentrail` each made
//! it fail, naming the arrow.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

const PROTO: &str = "tokentrail-proto";
const CONFIG: &str = "tokentrail-config";
const KAFKA: &str = "tokentrail-kafka";
const AGGREGATOR_CORE: &str = "tokentrail-aggregator-core";
const CORRELATOR_CORE: &str = "tokentrail-correlator-core";
const AGENT: &str = "tokentrail-agent";
const AGGREGATOR: &str = "tokentrail-aggregator";
const CORRELATOR: &str = "tokentrail-correlator";
const CLI: &str = "tokentrail";
const INTEGRATION_TESTS: &str = "tokentrail-integration-tests";

/// Each workspace crate and the workspace crates it may depend on (normal and build
/// dependencies). `None`: anything except the crates nothing may depend on ([`TOPS`]).
const LAYERS: &[(&str, Option<&[&str]>)] = &[
    (PROTO, Some(&[])),
    // The drivers' configuration files report problems and read durations the one way; the
    // crate lives in cli/config because start-up owns configuration, but it sits at the bottom.
    (CONFIG, Some(&[])),
    // What every Kafka client of the drivers and the cli shares: the security section on a
    // ClientConfig and the OAUTHBEARER token fetch. Below the drivers, above config.
    (KAFKA, Some(&[CONFIG])),
    (AGGREGATOR_CORE, Some(&[PROTO])),
    (CORRELATOR_CORE, Some(&[PROTO])),
    (AGENT, Some(&[PROTO, CONFIG])),
    (AGGREGATOR, Some(&[AGGREGATOR_CORE, PROTO, CONFIG, KAFKA])),
    // `analyze` decodes evidence with the aggregator's decoders (the same ones the aggregator
    // runs), so analyze and the stream cannot disagree about what an audit event means.
    (CORRELATOR, Some(&[CORRELATOR_CORE, AGGREGATOR_CORE, PROTO, CONFIG, KAFKA])),
    (CLI, None),
    (INTEGRATION_TESTS, None),
];

/// What nothing may depend on, not even for its tests.
const TOPS: &[&str] = &[CLI, INTEGRATION_TESTS];

/// Dev-dependencies beyond [`LAYERS`], each for a reason. Looser only here:
/// * proto on itself, with its `wire` feature, so `cargo test -p tokentrail-proto` tests the
///   protobuf side too (a crate on itself is no arrow);
/// * the aggregator's network drills (`aggregator/tests/drill.rs`) run the real agent against
///   the real servers.
const DEV_EXTRA: &[(&str, &[&str])] = &[(PROTO, &[PROTO]), (AGGREGATOR, &[AGENT])];

/// Crates that must not compile protobuf: they depend on the contract without its `wire`
/// feature (protobuf appears only at the Kafka and gRPC edges).
const NO_WIRE: &[&str] = &[AGGREGATOR_CORE, CORRELATOR_CORE];

struct Dep {
    name: String,
    kind: String,
    features: Vec<String>,
}

/// Workspace crates and their dependencies on workspace crates.
fn workspace() -> BTreeMap<String, Vec<Dep>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["name"].as_str().is_some_and(|n| members.contains(n)))
                .map(|d| Dep {
                    name: d["name"].as_str().unwrap_or_default().to_string(),
                    kind: d["kind"].as_str().unwrap_or("normal").to_string(),
                    features: d["features"]
                        .as_array()
                        .map(|f| f.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                })
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

fn allowed(package: &str, dep: &Dep) -> bool {
    if TOPS.contains(&dep.name.as_str()) {
        return false;
    }
    let Some((_, layer)) = LAYERS.iter().find(|(name, _)| *name == package) else { return false };
    let below = layer.is_none_or(|allowed| allowed.contains(&dep.name.as_str()));
    let dev_extra = dep.kind == "dev"
        && DEV_EXTRA.iter().any(|(name, extra)| *name == package && extra.contains(&dep.name.as_str()));
    below || dev_extra
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let unplaced: Vec<String> =
        workspace().into_keys().filter(|name| !LAYERS.iter().any(|(layer, _)| layer == name)).collect();
    assert!(unplaced.is_empty(), "give these crates a place in LAYERS (cli/tests/layering.rs): {unplaced:?}");
}

#[test]
fn no_crate_depends_on_one_above_it() {
    let mut wrong = Vec::new();
    for (package, deps) in workspace() {
        for dep in deps.iter().filter(|d| !allowed(&package, d)) {
            wrong.push(format!("{package} -> {} ({})", dep.name, dep.kind));
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows back up: {wrong:?}. Shared types belong in a crate below both (the contract is \
         tokentrail-proto); see docs/architecture.md"
    );
}

#[test]
fn the_pure_cores_do_not_compile_protobuf() {
    let workspace = workspace();
    for core in NO_WIRE {
        let deps = workspace.get(*core).expect("core crate in the workspace");
        for dep in deps.iter().filter(|d| d.kind == "normal" && d.name == PROTO) {
            assert!(!dep.features.iter().any(|f| f == "wire"), "{core} enables {PROTO}'s `wire` feature");
        }
    }
}
