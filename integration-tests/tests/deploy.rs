//! `deploy/helm/tokentrail` as a platform team uses it: the chart lints clean; it renders with
//! every environment's values file and every feature variant (`ci/*-values.yaml`); every object
//! it renders is valid against the Kubernetes OpenAPI schemas (of the oldest and newest supported
//! Kubernetes), the Strimzi KafkaTopic and KafkaUser schemas and the prometheus-operator
//! ServiceMonitor and PodMonitor schemas, offline; every configuration file it generates passes
//! `tokentrail <component> --check-config` with the flags the pod passes, every file it names
//! mounted; every probe reaches a listener that the configuration or flags enable; and the
//! NetworkPolicies let the probes, the scrapes and the agents' attestations through.
//!
//! The tools (helm, kubeconform, the schemas) come from `.ci/deploy-setup.sh`, which
//! `.ci/setup.sh` calls; run it once by hand before `cargo test -p tokentrail-integration-tests
//! --test deploy`. Without them this test fails and says so: it does not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tokentrail_integration_tests::tokentrail_binary as binary;

/// Kubernetes releases validated against: the oldest whose audit events carry the credential
/// and node extras by default (docs/kubernetes.md §2), and the newest the schemas cover.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Environments that must have a values file: one per environment docs/deploy.md describes.
const ENVIRONMENTS: [&str; 4] = ["self-managed", "eks", "aks", "gke"];

/// Feature variants that must exist under the chart's `ci/`.
const FEATURES: [&str; 7] =
    ["kafka-tls", "sasl-scram", "oauth", "strimzi", "servicemonitor", "standalone", "token-reads"];

/// The namespace the chart is rendered into.
const NAMESPACE: &str = "tokentrail";

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/tokentrail")
}

/// Where `.ci/deploy-setup.sh` put the tools; a clear failure when it has not run.
fn tools() -> PathBuf {
    let dir = std::env::var_os("TOKENTRAIL_DEPLOY_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("$HOME")).join(".cache/tokentrail/deploy-tools")
    });
    for needed in [
        "bin/helm",
        "bin/kubeconform",
        "schemas/crds/kafka.strimzi.io/kafkatopic_v1beta2.json",
        "schemas/crds/kafka.strimzi.io/kafkauser_v1beta2.json",
        "schemas/crds/monitoring.coreos.com/servicemonitor_v1.json",
        "schemas/crds/monitoring.coreos.com/podmonitor_v1.json",
    ] {
        assert!(
            dir.join(needed).exists(),
            "{} is missing: run `bash .ci/deploy-setup.sh` (it installs helm, kubeconform and the \
             Kubernetes, Strimzi and prometheus-operator schemas into {}; set $TOKENTRAIL_DEPLOY_TOOLS \
             to use another place)",
            dir.join(needed).display(),
            dir.display()
        );
    }
    dir
}

/// One way of installing the chart: a name and the values files given to helm, in order.
struct Variant {
    name: String,
    values: Vec<PathBuf>,
}

/// Every environment's values file, and every feature variant under `ci/`; the required ones
/// must be there.
fn variants() -> Vec<Variant> {
    let chart = chart();
    let mut found = Vec::new();
    for environment in ENVIRONMENTS {
        let file = chart.join(format!("values-{environment}.yaml"));
        assert!(file.exists(), "{} is missing", file.display());
        found.push(Variant { name: environment.to_string(), values: vec![file] });
    }
    let mut features: Vec<PathBuf> = std::fs::read_dir(chart.join("ci")).unwrap().map(|e| e.unwrap().path()).collect();
    features.sort();
    for feature in FEATURES {
        assert!(
            features.iter().any(|f| f.ends_with(format!("{feature}-values.yaml"))),
            "deploy/helm/tokentrail/ci/{feature}-values.yaml is missing"
        );
    }
    for file in features {
        let name = file.file_name().unwrap().to_string_lossy().trim_end_matches("-values.yaml").to_string();
        found.push(Variant { name, values: vec![file] });
    }
    found
}

fn helm(tools: &Path, args: &[&str], values: &[PathBuf]) -> Result<String, String> {
    let mut command = Command::new(tools.join("bin/helm"));
    command.args(args).arg(chart());
    for file in values {
        command.arg("--values").arg(file);
    }
    // helm keeps its caches and plugins under $HOME unless told otherwise: none of them is used.
    let home = tempfile::tempdir().unwrap();
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        command.env(var, home.path());
    }
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(text + &String::from_utf8_lossy(&out.stderr))
    }
}

/// `helm template` of the chart with `values`, as YAML.
fn render_yaml(tools: &Path, values: &[PathBuf]) -> String {
    helm(tools, &["template", "tokentrail", "--namespace", NAMESPACE], values)
        .unwrap_or_else(|e| panic!("helm template with {values:?}:\n{e}"))
}

/// Every object of a rendering.
fn objects(rendered: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(rendered).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// The DaemonSets, Deployments and StatefulSets: the objects that run pods.
fn workloads(objects: &[Value]) -> Vec<&Value> {
    objects.iter().filter(|o| ["DaemonSet", "Deployment", "StatefulSet"].contains(&kind(o))).collect()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn pod_labels(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Whether a label selector's `matchLabels` (the only form the chart writes) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(selector.get("matchExpressions").is_none(), "a selector with matchExpressions: {selector}");
    selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
}

/// The port of a listen address such as `0.0.0.0:8080`.
fn listen_port(address: &str) -> u64 {
    address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap_or_else(|| panic!("address {address:?}"))
}

/// A container port given by name or number, as a number.
fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(port_name) => list(&container["ports"])
            .iter()
            .find(|p| p["name"] == *port_name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("container {} has no port named {port_name}", container["name"])),
        other => panic!("port {other}"),
    }
}

/// The value of a container's `--flag=VALUE` argument.
fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    list(&container["args"]).iter().find_map(|a| a.as_str()?.strip_prefix(name)?.strip_prefix('='))
}

/// The configuration file a container reads (`--config=PATH`), from the ConfigMap mounted there.
fn mounted_config<'a>(objects: &'a [Value], workload: &Value, container: &Value) -> Option<(String, &'a str)> {
    let path = flag(container, "--config")?;
    let mount = list(&container["volumeMounts"]).iter().find(|m| m["mountPath"] == path).unwrap_or_else(|| {
        panic!("{}: --config={path} is not mounted", name(workload));
    });
    let volume = list(&pod_spec(workload)["volumes"]).iter().find(|v| v["name"] == mount["name"]).unwrap();
    let config_map = volume["configMap"]["name"].as_str().expect("the config volume is a ConfigMap");
    let key = mount["subPath"].as_str().expect("the config is mounted with subPath");
    let object = objects
        .iter()
        .find(|o| kind(o) == "ConfigMap" && name(o) == config_map)
        .unwrap_or_else(|| panic!("{}: ConfigMap {config_map} is not rendered", name(workload)));
    let text = object["data"][key].as_str().unwrap_or_else(|| panic!("ConfigMap {config_map} has no {key}"));
    Some((key.to_string(), text))
}

/// The volume mounted at the longest mount path that holds `path`, and `path` inside it.
fn volume_of<'a>(workload: &'a Value, container: &Value, path: &'a str) -> Option<(&'a Value, String)> {
    let mount = list(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let at = m["mountPath"].as_str().unwrap();
            path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())?;
    let rest = path[mount["mountPath"].as_str().unwrap().len()..].trim_start_matches('/').to_string();
    let volume = list(&pod_spec(workload)["volumes"]).iter().find(|v| v["name"] == mount["name"]).unwrap();
    Some((volume, rest))
}

/// Checks that every absolute path in a configuration is in a volume the container mounts (and,
/// for a Secret volume that lists its items, is one of them), and stands the Secret files in
/// with files under `root`, as the kubelet would mount them: `--check-config` opens the Kafka
/// security files. Returns the problems.
fn mount_secret_files(workload: &Value, container: &Value, config: &mut Value, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match config {
        Value::String(path) if path.starts_with('/') => match volume_of(workload, container, path) {
            None => problems.push(format!("{path} is in no volume the container mounts")),
            Some((volume, file)) if volume.get("secret").is_some() => {
                let items = list(&volume["secret"]["items"]);
                if !items.is_empty() && !items.iter().any(|i| i["path"] == file.as_str()) {
                    problems.push(format!("{path}: Secret volume {} has no item {file}", volume["name"]));
                }
                let stand_in = root.join(volume["name"].as_str().unwrap()).join(&file);
                std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
                std::fs::write(&stand_in, "stand-in for a mounted Secret\n").unwrap();
                *path = stand_in.to_string_lossy().into_owned();
            }
            Some(_) => {}
        },
        Value::Array(items) => {
            for item in items {
                problems.extend(mount_secret_files(workload, container, item, root));
            }
        }
        Value::Object(fields) => {
            // Paths that are matched, never opened: other processes' executables.
            const NOT_READ: &[&str] = &["token_read_allow_exe"];
            for (_, value) in fields.iter_mut().filter(|(k, _)| !NOT_READ.contains(&k.as_str())) {
                problems.extend(mount_secret_files(workload, container, value, root));
            }
        }
        _ => {}
    }
    problems
}

/// The container's environment as the kubelet would set it: the downward API's pod and node
/// names stood in for, `$(VAR)` references expanded.
fn container_env(workload: &Value, container: &Value) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in list(&container["env"]) {
        let value = if let Some(value) = var["value"].as_str() {
            let mut value = value.to_string();
            for (k, v) in &env {
                value = value.replace(&format!("$({k})"), v);
            }
            value
        } else {
            match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => format!("{}-0", name(workload)),
                Some("spec.nodeName") => "node-a".to_string(),
                other => panic!("{}: env {} from {other:?}", name(workload), var["name"]),
            }
        };
        env.insert(var["name"].as_str().unwrap().to_string(), value);
    }
    env
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

/// Whether a variant runs `tokentrail incidents`: not with standalone, and not with findings as
/// OCSF (AKS's, for Sentinel), which it cannot read.
fn incidents_run(variant: &str) -> bool {
    !matches!(variant, "standalone" | "aks")
}

/// A rendered KafkaTopic's `partitions` and `cleanup.policy`.
fn topic(objects: &[Value], topic: &str) -> (u64, String) {
    let object = objects
        .iter()
        .find(|o| kind(o) == "KafkaTopic" && name(o) == topic)
        .unwrap_or_else(|| panic!("no KafkaTopic {topic}"));
    let spec = &object["spec"];
    (spec["partitions"].as_u64().unwrap(), spec["config"]["cleanup.policy"].as_str().unwrap().to_string())
}

#[test]
fn the_chart_lints_clean_with_every_values_file() {
    let tools = tools();
    for variant in variants() {
        if let Err(report) = helm(&tools, &["lint", "--strict"], &variant.values) {
            panic!("helm lint --strict with {}:\n{report}", variant.name);
        }
    }
}

#[test]
fn every_variant_renders_and_every_object_is_valid_against_the_schemas() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    for variant in variants() {
        let which = &variant.name;
        let rendered = render_yaml(&tools, &variant.values);
        let objects = objects(&rendered);
        let kinds: Vec<&str> = objects.iter().map(kind).collect();
        let standalone = which == "standalone";
        let mut expected = vec!["DaemonSet", "Deployment", "NetworkPolicy", "ConfigMap"];
        // Standalone is one replica: a PodDisruptionBudget would only block node drains.
        expected.extend(if standalone { vec![] } else { vec!["StatefulSet", "PodDisruptionBudget"] });
        expected.extend(match which.as_str() {
            "strimzi" => vec!["KafkaTopic", "KafkaUser"],
            "servicemonitor" => vec!["ServiceMonitor", "PodMonitor"],
            "podmonitor" => vec!["PodMonitor"],
            "standalone" => vec!["KafkaUser"],
            _ => vec![],
        });
        for kind in expected {
            assert!(kinds.contains(&kind), "{which}: no {kind}");
        }
        if kinds.contains(&"KafkaTopic") {
            // docs/design.md §4: the correlator restores input partition n from changelog partition n.
            let (observations, _) = topic(&objects, "tokentrail.observations");
            let (state, policy) = topic(&objects, "tokentrail.correlator-state");
            assert_eq!((state, policy.as_str()), (observations, "compact"), "{which}: the changelog topic");
            // Each incident id's last record is what a reader needs: compacted.
            assert_eq!(topic(&objects, "tokentrail.incidents").1, "compact", "{which}: the incidents topic");
        }
        if incidents_run(which) {
            // docs/incidents.md: one process groups every finding; never two side by side.
            let incidents = objects
                .iter()
                .find(|o| kind(o) == "Deployment" && name(o).ends_with("-incidents"))
                .unwrap_or_else(|| panic!("{which}: no incidents Deployment"));
            assert_eq!(incidents["spec"]["replicas"], 1, "{which}: incidents replicas");
            assert_eq!(incidents["spec"]["strategy"]["type"], "Recreate", "{which}: incidents strategy");
        }
        let file = dir.path().join(format!("{which}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        for kubernetes in KUBERNETES_VERSIONS {
            match kubeconform(&tools, &file, kubernetes) {
                Ok(summary) => eprintln!("{which}, Kubernetes {kubernetes}: {}", summary.trim()),
                Err(report) => panic!("{which} is not valid for Kubernetes {kubernetes}:\n{report}"),
            }
        }
    }
}

#[test]
fn the_validation_rejects_what_kubernetes_strimzi_and_prometheus_operator_would() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        // A misspelled field: the apiserver would drop it silently, strict validation must not.
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\nautomountServiceAcountToken: false\n",
        // A KafkaTopic whose partitions are not a number.
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata:\n  name: t\nspec:\n  partitions: many\n",
        // A KafkaUser with an authentication Strimzi does not know.
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaUser\nmetadata:\n  name: u\nspec:\n  authentication:\n    \
         type: kerberos\n",
        // A ServiceMonitor with a misspelled field.
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: m\nspec:\n  selector: {}\n  \
         endpoint:\n    - port: http\n",
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
fn every_generated_configuration_passes_check_config_with_its_pods_flags() {
    let tools = tools();
    for variant in variants() {
        let which = &variant.name;
        let objects = objects(&render_yaml(&tools, &variant.values));
        let root = tempfile::tempdir().unwrap();
        let mut checked = Vec::new();
        for workload in workloads(&objects) {
            for container in list(&pod_spec(workload)["containers"]) {
                let args: Vec<&str> = list(&container["args"]).iter().map(|a| a.as_str().unwrap()).collect();
                let (key, text) = mounted_config(&objects, workload, container)
                    .unwrap_or_else(|| panic!("{which}: {} reads no configuration file", name(workload)));
                let component = args[0];
                assert_eq!(key, format!("{component}.json"), "{which}: {component} mounts {key}");
                let mut config: Value =
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{which}: {key} is not JSON: {e}\n{text}"));
                if component == "aggregator" {
                    // The sections whose loss once went unnoticed: the probes' listener, and the
                    // agents' token review when there are agents.
                    assert!(config["health"]["listen"].is_string(), "{which}: aggregator.json has no health listener");
                    if objects.iter().any(|o| kind(o) == "DaemonSet") {
                        assert!(
                            config["grpc"]["agent_token"].is_object(),
                            "{which}: aggregator.json has no agent_token"
                        );
                    }
                }
                let problems = mount_secret_files(workload, container, &mut config, root.path());
                assert!(problems.is_empty(), "{which}: {key}:\n{}", problems.join("\n"));
                let file = root.path().join(&key);
                std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
                // The pod's own arguments, the configuration file checked instead of run.
                let args: Vec<String> = args
                    .iter()
                    .map(|a| match a.strip_prefix("--config=") {
                        Some(_) => format!("--check-config={}", file.display()),
                        None => a.to_string(),
                    })
                    .collect();
                let out = Command::new(binary())
                    .args(&args)
                    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .env_remove("POD_NAME")
                    .env_remove("NODE_NAME")
                    .envs(container_env(workload, container))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{which}: {key} with the pod's flags {args:?} is not a valid {component} configuration:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked.push(component.to_string());
            }
        }
        checked.sort();
        let expected: &[&str] = if which == "standalone" {
            &["agent", "standalone"]
        } else if incidents_run(which) {
            &["agent", "aggregator", "correlator", "incidents"]
        } else {
            &["agent", "aggregator", "correlator"]
        };
        assert_eq!(checked, expected, "{which}: one configuration per component");
    }
}

#[test]
fn every_probe_reaches_a_listener_its_configuration_or_flags_enable() {
    let tools = tools();
    for variant in variants() {
        let which = &variant.name;
        let objects = objects(&render_yaml(&tools, &variant.values));
        let mut probed = 0;
        for workload in workloads(&objects) {
            for container in list(&pod_spec(workload)["containers"]) {
                let component = container["args"][0].as_str().unwrap();
                // Where the component serves /healthz, /readyz and /metrics: the aggregator's
                // config's health listener, every other component's --metrics-listen.
                let listener = match mounted_config(&objects, workload, container) {
                    Some((_, text)) if component == "aggregator" => {
                        let config: Value = serde_json::from_str(text).unwrap();
                        config["health"]["listen"].as_str().map(listen_port)
                    }
                    _ => flag(container, "--metrics-listen").map(listen_port),
                };
                let listener =
                    listener.unwrap_or_else(|| panic!("{which}: {component} enables no health/metrics listener"));
                for probe in ["readinessProbe", "livenessProbe"] {
                    let get = &container[probe]["httpGet"];
                    assert!(get.is_object(), "{which}: {component} has no HTTP {probe}");
                    let port = container_port(container, &get["port"]);
                    assert_eq!(
                        port, listener,
                        "{which}: {component}'s {probe} is on {port}, its listener on {listener}"
                    );
                    let path = if probe == "readinessProbe" { "/readyz" } else { "/healthz" };
                    assert_eq!(get["path"], path, "{which}: {component}'s {probe}");
                    probed += 1;
                }
                let http = container_port(container, &Value::from("http"));
                assert_eq!(http, listener, "{which}: {component}'s http port is not its listener");
            }
        }
        assert!(probed >= 4, "{which}: only {probed} probes");
    }
}

/// The NetworkPolicies (of `objects`) that select a pod with `labels`, for `direction`
/// (`Ingress` or `Egress`).
fn policies_for<'a>(objects: &'a [Value], labels: &Value, direction: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| kind(o) == "NetworkPolicy")
        .filter(|p| list(&p["spec"]["policyTypes"]).iter().any(|t| t == direction))
        .filter(|p| selects(&p["spec"]["podSelector"], labels))
        .collect()
}

/// The `ingress` or `egress` rules of every NetworkPolicy that selects a pod with `labels`.
fn rules<'a>(objects: &'a [Value], labels: &Value, direction: &str) -> Vec<&'a Value> {
    let key = direction.to_lowercase();
    policies_for(objects, labels, direction).into_iter().flat_map(|p| list(&p["spec"][&key])).collect()
}

/// Whether a NetworkPolicy rule's ports (none: every port) let TCP `port` through.
fn rule_allows_port(rule: &Value, port: u64) -> bool {
    let ports = list(&rule["ports"]);
    ports.is_empty() || ports.iter().any(|p| p["port"].as_u64() == Some(port) && p["protocol"] != "UDP")
}

/// Whether a rule's peers (`from` or `to`; none: everyone) include pods with `labels` in this
/// namespace.
fn rule_allows_peer(rule: &Value, peers: &str, labels: &Value) -> bool {
    let peers = list(&rule[peers]);
    peers.is_empty()
        || peers.iter().any(|peer| {
            peer.get("namespaceSelector").is_none()
                && peer.get("ipBlock").is_none()
                && peer.get("podSelector").is_some_and(|s| selects(s, labels))
        })
}

#[test]
fn network_policies_let_probes_scrapes_and_attestations_through() {
    let tools = tools();
    for variant in variants() {
        let which = &variant.name;
        let objects = objects(&render_yaml(&tools, &variant.values));
        let workloads = workloads(&objects);
        for workload in &workloads {
            let labels = pod_labels(workload);
            let container = &list(&pod_spec(workload)["containers"])[0];
            let component = container["args"][0].as_str().unwrap();
            // Denied by default, in and out: otherwise nothing below would mean anything.
            for direction in ["Ingress", "Egress"] {
                assert!(
                    !policies_for(&objects, labels, direction).is_empty(),
                    "{which}: {component}: no {direction} policy"
                );
            }
            let http = container_port(container, &Value::from("http"));
            let ingress: Vec<&Value> = rules(&objects, labels, "Ingress");
            assert!(
                ingress.iter().any(|rule| rule_allows_port(rule, http)),
                "{which}: {component}: no NetworkPolicy lets probes and scrapes reach port {http}"
            );
        }
        // Agents → the aggregator's (or standalone's) gRPC port, both ways.
        let agent = workloads.iter().find(|w| kind(w) == "DaemonSet").expect("the agent DaemonSet");
        let url = {
            let container = &list(&pod_spec(agent)["containers"])[0];
            let (_, text) = mounted_config(&objects, agent, container).unwrap();
            let config: Value = serde_json::from_str(text).unwrap();
            config["aggregator"].as_str().unwrap().to_string()
        };
        let service_name = url.trim_start_matches("https://").split('.').next().unwrap();
        let service = objects
            .iter()
            .find(|o| kind(o) == "Service" && name(o) == service_name)
            .unwrap_or_else(|| panic!("{which}: agents attest to {url}: no Service {service_name}"));
        let service_port = list(&service["spec"]["ports"])
            .iter()
            .find(|p| p["port"].as_u64() == Some(listen_port(url.trim_end_matches('/'))))
            .unwrap_or_else(|| panic!("{which}: Service {service_name} has no port for {url}"));
        let server = workloads
            .iter()
            .find(|w| selects(&serde_json::json!({ "matchLabels": service["spec"]["selector"] }), pod_labels(w)))
            .unwrap_or_else(|| panic!("{which}: Service {service_name} selects no pods"));
        let server_container = &list(&pod_spec(server)["containers"])[0];
        let grpc = container_port(server_container, &service_port["targetPort"]);
        // The port the Service sends agents to is the one the server listens on.
        let listens = match mounted_config(&objects, server, server_container) {
            Some((_, text)) => serde_json::from_str::<Value>(text).unwrap()["grpc"]["listen"].as_str().map(listen_port),
            None => flag(server_container, "--grpc-listen").map(listen_port),
        };
        assert_eq!(listens, Some(grpc), "{which}: agents reach {service_name} on {grpc}, it listens on {listens:?}");
        let egress: Vec<&Value> = rules(&objects, pod_labels(agent), "Egress");
        assert!(
            egress.iter().any(|r| rule_allows_port(r, grpc) && rule_allows_peer(r, "to", pod_labels(server))),
            "{which}: no NetworkPolicy lets agents out to {service_name}:{grpc}"
        );
        let ingress: Vec<&Value> = rules(&objects, pod_labels(server), "Ingress");
        assert!(
            ingress.iter().any(|r| rule_allows_port(r, grpc) && rule_allows_peer(r, "from", pod_labels(agent))),
            "{which}: no NetworkPolicy lets agents into {service_name}:{grpc}"
        );
    }
}

/// The aggregator's inventory feed: its configuration and its RBAC follow the chart's switches,
/// and the Lease it is configured with is the one its Role lets it update.
#[test]
fn the_inventory_feed_s_configuration_and_rbac_follow_their_switches() {
    let tools = tools();
    let dir = tempfile::tempdir().unwrap();
    let render = |name: &str, extra: &str| {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, extra).unwrap();
        objects(&render_yaml(&tools, &[chart().join("values-self-managed.yaml"), file]))
    };
    let inventory_of = |objects: &[Value]| -> Value {
        let config =
            objects.iter().find_map(|o| o["data"]["aggregator.json"].as_str()).expect("an aggregator.json ConfigMap");
        serde_json::from_str::<Value>(config).unwrap()["inventory"].clone()
    };
    let cluster_role = |objects: &[Value]| -> Option<Value> {
        objects.iter().find(|o| kind(o) == "ClusterRole" && name(o).ends_with("-aggregator-inventory")).cloned()
    };
    let reads_secrets =
        |role: &Value| list(&role["rules"]).iter().any(|r| list(&r["resources"]).iter().any(|x| x == "secrets"));

    let on = render("on", "{}");
    let inventory = inventory_of(&on);
    let kinds: Vec<&str> = list(&inventory["kinds"]).iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(kinds, ["pods", "nodes", "serviceaccounts", "secrets"]);
    assert_eq!(inventory["lease"]["namespace"], NAMESPACE);
    let role = cluster_role(&on).expect("the inventory's ClusterRole");
    assert!(reads_secrets(&role));
    for rule in list(&role["rules"]) {
        let verbs: Vec<&str> = list(&rule["verbs"]).iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(verbs, ["list", "watch"], "the feed reads, and only lists and watches: {rule}");
    }
    let lease_role =
        on.iter().find(|o| kind(o) == "Role" && name(o).ends_with("-inventory-lease")).expect("the Lease's Role");
    let named = list(&lease_role["rules"]).iter().find(|r| !r["resourceNames"].is_null()).unwrap();
    assert_eq!(list(&named["resourceNames"])[0], inventory["lease"]["name"], "the Role names the configured Lease");
    let bindings = on.iter().filter(|o| {
        ["ClusterRoleBinding", "RoleBinding"].contains(&kind(o)) && name(o).contains("-aggregator-inventory")
    });
    assert_eq!(bindings.count(), 2, "the ClusterRole and the Role are bound to the aggregator");

    let no_secrets = render("no-secrets", "aggregator: {inventory: {secrets: false}}");
    let kinds: Vec<Value> = list(&inventory_of(&no_secrets)["kinds"]).to_vec();
    assert!(!kinds.iter().any(|k| k == "secrets"), "{kinds:?}");
    assert!(!reads_secrets(&cluster_role(&no_secrets).unwrap()), "secrets: false grants no access to Secrets");

    let off = render("off", "aggregator: {inventory: {enabled: false}}");
    assert!(inventory_of(&off).is_null());
    assert!(cluster_role(&off).is_none());
    assert!(!off.iter().any(|o| name(o).contains("-inventory")), "no inventory object without the feed");
}

#[test]
fn the_token_read_watch_s_capabilities_and_configuration_follow_its_switch() {
    let tools = tools();
    let agent_of = |values: Vec<PathBuf>| -> (Value, Value) {
        let objects = objects(&render_yaml(&tools, &values));
        let daemonset = objects.iter().find(|o| kind(o) == "DaemonSet").expect("the agent's DaemonSet").clone();
        let config = objects.iter().find_map(|o| o["data"]["agent.json"].as_str()).expect("an agent.json ConfigMap");
        (daemonset, serde_json::from_str(config).unwrap())
    };
    let capabilities = |ds: &Value| -> Vec<String> {
        let container = &list(&pod_spec(ds)["containers"])[0];
        list(&container["securityContext"]["capabilities"]["add"]).iter().map(|c| c.as_str().unwrap().into()).collect()
    };

    let (off, config) = agent_of(vec![chart().join("values-self-managed.yaml")]);
    assert_eq!(capabilities(&off), ["DAC_READ_SEARCH"], "off by default: no SYS_ADMIN");
    assert!(pod_spec(&off)["hostPID"].is_null());
    assert!(config["watch_token_reads"].is_null());

    let (on, config) =
        agent_of(vec![chart().join("values-self-managed.yaml"), chart().join("ci/token-reads-values.yaml")]);
    assert_eq!(capabilities(&on), ["DAC_READ_SEARCH", "SYS_ADMIN", "SYS_PTRACE"]);
    assert_eq!(pod_spec(&on)["hostPID"], true);
    assert_eq!(config["watch_token_reads"], true);
    assert_eq!(config["token_read_allow_exe"][0], "/usr/bin/vector");
    assert_eq!(config["token_read_allow_pod"][0], "monitoring/node-exporter-");
}
