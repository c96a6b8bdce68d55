//! `deploy/` as a platform team uses it: every overlay renders with kustomize, every object it
//! renders is valid against the Kubernetes OpenAPI schemas (of the oldest and newest supported
//! Kubernetes) and the Strimzi KafkaTopic schema, offline, and every configuration file the
//! manifests mount passes `tokentrail <component> --check-config`.
//!
//! The tools (kustomize, kubeconform, the schemas) come from `.ci/deploy-setup.sh`, which
//! `.ci/run` calls; run it once by hand before `cargo test -p tokentrail-integration-tests
//! --test deploy`. Without them this test fails and says so: it does not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Kubernetes releases validated against: the oldest whose audit events carry the credential
/// and node extras by default (docs/kubernetes.md §2), and the newest the schemas cover.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Overlays that must exist: one per environment docs/deploy.md describes.
const REQUIRED_OVERLAYS: [&str; 4] = ["self-managed", "eks", "aks", "gke"];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where `.ci/deploy-setup.sh` put the tools; a clear failure when it has not run.
fn tools() -> PathBuf {
    let dir = std::env::var_os("TOKENTRAIL_DEPLOY_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("$HOME")).join(".cache/tokentrail/deploy-tools")
    });
    for needed in ["bin/kustomize", "bin/kubeconform", "schemas/crds/kafka.strimzi.io/kafkatopic_v1beta2.json"] {
        assert!(
            dir.join(needed).exists(),
            "{} is missing: run `bash .ci/deploy-setup.sh` (it installs kustomize, kubeconform and the \
             Kubernetes and Strimzi schemas into {}; set $TOKENTRAIL_DEPLOY_TOOLS to use another place)",
            dir.join(needed).display(),
            dir.display()
        );
    }
    dir
}

/// The `tokentrail` binary, built once for this test run (integration tests live in another
/// package, so cargo does not build it for them).
fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
        let status =
            Command::new(cargo).args(["build", "--quiet", "-p", "tokentrail"]).current_dir(repo()).status().unwrap();
        assert!(status.success(), "cargo build -p tokentrail failed");
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/deploy-<hash> → target/<profile>/tokentrail
        exe.parent().and_then(|deps| deps.parent()).unwrap().join("tokentrail")
    })
}

fn overlays() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    found.sort();
    for required in REQUIRED_OVERLAYS {
        assert!(found.iter().any(|p| p.ends_with(required)), "deploy/overlays/{required} is missing");
    }
    found
}

fn kustomize_build(tools: &Path, dir: &Path) -> String {
    let out = Command::new(tools.join("bin/kustomize")).arg("build").arg(dir).output().unwrap();
    assert!(out.status.success(), "kustomize build {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs kubeconform in strict mode (unknown fields are errors; a kind without a schema is an
/// error, not a skip) on `manifests`; the summary line on success, kubeconform's report if not.
fn kubeconform(tools: &Path, manifests: &Path, kubernetes: &str) -> Result<String, String> {
    let schemas = tools.join("schemas");
    let out = Command::new(tools.join("bin/kubeconform"))
        .args(["-strict", "-summary", "-kubernetes-version", kubernetes, "-schema-location"])
        .arg(format!(
            "{}/v{kubernetes}-standalone-strict/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            schemas.display()
        ))
        .arg("-schema-location")
        .arg(format!(
            "{}/crds/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            schemas.display()
        ))
        .arg(manifests)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && report.contains("Invalid: 0, Errors: 0, Skipped: 0") {
        Ok(report)
    } else {
        Err(report)
    }
}

/// The `data` entries of every ConfigMap in kustomize's output, as (ConfigMap, key, value).
///
/// kustomize writes a multi-line value as a `|` block scalar indented under its key; a value in
/// any other form fails the test, so a config file cannot slip past the check unread.
fn config_map_files(rendered: &str) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    for doc in rendered.split("\n---\n") {
        if !doc.lines().any(|l| l == "kind: ConfigMap") {
            continue;
        }
        let name = doc.lines().find_map(|l| l.strip_prefix("  name: ")).unwrap().to_string();
        let mut lines = doc.lines().skip_while(|l| *l != "data:").skip(1).peekable();
        while let Some(line) = lines.next() {
            let Some(entry) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else { break };
            let (key, style) = entry.split_once(": ").unwrap_or_else(|| panic!("ConfigMap {name}: {line:?}"));
            assert!(style.starts_with('|'), "ConfigMap {name} key {key}: expected a block scalar, got {style:?}");
            let mut value = String::new();
            while let Some(body) = lines.peek().and_then(|l| l.strip_prefix("    ")) {
                value.push_str(body);
                value.push('\n');
                lines.next();
            }
            files.push((name.clone(), key.to_string(), value));
        }
    }
    files
}

/// A rendered KafkaTopic's `partitions` and `cleanup.policy`.
fn topic(rendered: &str, name: &str) -> (u32, String) {
    let doc = rendered
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == "kind: KafkaTopic") && d.lines().any(|l| l == format!("  name: {name}")))
        .unwrap_or_else(|| panic!("no KafkaTopic {name}"));
    let field = |prefix: &str| doc.lines().find_map(|l| l.trim_start().strip_prefix(prefix)).map(str::to_string);
    let partitions = field("partitions: ").and_then(|p| p.parse().ok()).expect("partitions");
    (partitions, field("cleanup.policy: ").expect("cleanup.policy"))
}

#[test]
fn every_overlay_renders_and_every_object_is_valid_against_the_schemas() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    for overlay in overlays() {
        let rendered = kustomize_build(&tools, &overlay);
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        for kind in ["DaemonSet", "Deployment", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy", "KafkaTopic"] {
            assert!(rendered.contains(&format!("\nkind: {kind}\n")), "{name}: no {kind}");
        }
        // docs/design.md §4: the correlator restores input partition n from changelog partition n.
        let (observations, _) = topic(&rendered, "tokentrail.observations");
        let (state, policy) = topic(&rendered, "tokentrail.correlator-state");
        assert_eq!((state, policy.as_str()), (observations, "compact"), "{name}: the changelog topic");
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        for kubernetes in KUBERNETES_VERSIONS {
            match kubeconform(&tools, &file, kubernetes) {
                Ok(summary) => eprintln!("{name}, Kubernetes {kubernetes}: {}", summary.trim()),
                Err(report) => panic!("{name} is not valid for Kubernetes {kubernetes}:\n{report}"),
            }
        }
    }
}

#[test]
fn the_validation_rejects_what_kubernetes_and_strimzi_would() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        // A misspelled field: the apiserver would drop it silently, strict validation must not.
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\nautomountServiceAcountToken: false\n",
        // A KafkaTopic whose partitions are not a number.
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata:\n  name: t\nspec:\n  partitions: many\n",
        // A kind with no schema at all is an error, not a skip.
        "apiVersion: example.com/v1\nkind: Unknown\nmetadata:\n  name: u\n",
    ];
    for (i, manifest) in broken.iter().enumerate() {
        let file = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        assert!(kubeconform(&tools, &file, KUBERNETES_VERSIONS[0]).is_err(), "accepted:\n{manifest}");
    }
}

#[test]
fn every_mounted_configuration_file_passes_check_config() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    for overlay in overlays() {
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        let files = config_map_files(&kustomize_build(&tools, &overlay));
        let mut checked = Vec::new();
        for (config_map, key, value) in files {
            let Some(component) = key.strip_suffix(".json") else { continue };
            assert!(
                ["agent", "aggregator", "correlator"].contains(&component),
                "{name}: ConfigMap {config_map} holds {key}, which no component reads"
            );
            let file = dir.path().join(format!("{name}-{key}"));
            std::fs::write(&file, &value).unwrap();
            let out = Command::new(binary()).args([component, "--check-config"]).arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {key} (ConfigMap {config_map}) is not a valid {component} configuration:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked.push(component.to_string());
        }
        checked.sort();
        assert_eq!(checked, ["agent", "aggregator", "correlator"], "{name}: one configuration per component");
    }
}
