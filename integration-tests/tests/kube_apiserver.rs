//! tokentrail against a real kube-apiserver (etcd, kube-apiserver, the service-account
//! controllers; `kube/cluster.sh`): real tokens signed by the apiserver, a real audit log written
//! with `deploy/audit/policy.yaml`, real replays.
//!
//! The test plays the scheduler and the kubelets through the API, with the nodes' own
//! certificates (so the Node authorizer and NodeRestriction judge them): it registers two nodes,
//! creates and binds pods, reports their status with pod addresses on loopback (127.0.0.x, which
//! Linux routes without setup), and requests each pod's token through TokenRequest as the pod's
//! node, writing it into that node's kubelet directory. Every request "from a pod" leaves from
//! that pod's address, so the apiserver records it as the client. Then the incident: tokens
//! replayed from other addresses, a token minted by a user for someone else's pod, a legacy
//! Secret token used off its pod, a pod deleted and its old token replayed (401).
//!
//! The thieves come from outside every cluster network: addresses of TEST-NET-3 that the harness
//! adds to `lo` (root only; 127.0.0.0/8 is always the apiserver's own host to the engine, so
//! without root the thieves stay on loopback, the off-cluster verdicts are skipped loudly, and
//! their loopback counterparts are expected instead).
//!
//! Both of tokentrail's modes judge the same events:
//! * forensic: `tokentrail analyze` over the real audit log and the `tokentrail collect` output,
//!   and again over the `EventList` batches of the apiserver's audit webhook backend;
//! * streaming: those batches reach a `tokentrail aggregator`'s audit webhook (through a tee in
//!   the test that saves them), one `tokentrail agent` per node watches this apiserver with its
//!   node's own credentials and reads the kubelet directory the test writes, and a `tokentrail
//!   correlator` judges what comes through Kafka (`e2e_support::Pipeline`).
//!
//! What must hold:
//! * each mode finds exactly the expected findings (one set, computed once), and the benign
//!   traffic (each pod from its own address, a pod's token from its node's address, the control
//!   plane) raises nothing;
//! * `tokentrail collect` writes the inventory with a manifest whose hashes match, and never a
//!   token;
//! * the agent's pod source (kube-rs watchers) sees its node's pods and Node, and a deletion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregator_support;
mod correlator_support;
mod e2e_support;
mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_support::cluster::Node;
use e2e_support::{Layout, Pipeline, RealNode};
use kube_support::{field, Api, WebhookSink, Who, HOST};
use serde_json::{json, Value};
use tokentrail_agent::pods::PodUpdate;
use tokentrail_integration_tests::kube::Cluster;

const NS: &str = "shop";

/// One pod of the scenario: where it runs and the address its node reports for it.
struct PodPlan {
    name: &'static str,
    serviceaccount: &'static str,
    node: &'static str,
    ip: &'static str,
    /// A legacy token Secret mounted as a volume.
    secret: Option<&'static str>,
}

const NODE_IPS: [(&str, &str, &str); 2] =
    [("node-a", "127.0.10.1", "127.0.11.0/24"), ("node-b", "127.0.10.2", "127.0.12.0/24")];

const PODS: [PodPlan; 4] = [
    PodPlan { name: "api-0", serviceaccount: "api", node: "node-a", ip: "127.0.11.2", secret: None },
    PodPlan {
        name: "legacy-0",
        serviceaccount: "legacy",
        node: "node-a",
        ip: "127.0.11.3",
        secret: Some("legacy-token"),
    },
    PodPlan { name: "api-1", serviceaccount: "api", node: "node-b", ip: "127.0.12.2", secret: None },
    PodPlan { name: "worker-0", serviceaccount: "worker", node: "node-b", ip: "127.0.12.3", secret: None },
];

/// The thieves' addresses, outside every cluster network (TEST-NET-3): the harness adds them to
/// `lo` when it may.
const OUTSIDE: [Ipv4Addr; 4] = [
    Ipv4Addr::new(203, 0, 113, 6),
    Ipv4Addr::new(203, 0, 113, 7),
    Ipv4Addr::new(203, 0, 113, 8),
    Ipv4Addr::new(203, 0, 113, 9),
];

/// The thieves' addresses when the harness may not add any: no pod's and no node's, but on
/// loopback, so on the apiserver's own host as far as the engine can tell.
const LOOPBACK_THIEVES: [&str; 4] = ["127.0.66.6", "127.0.66.7", "127.0.66.8", "127.0.66.9"];

/// Where the thieves are.
struct Thieves {
    addrs: [String; 4],
    /// Outside every cluster network (else on loopback).
    off_cluster: bool,
}

impl Thieves {
    fn of(cluster: &Cluster) -> Thieves {
        if cluster.outside_addresses() == OUTSIDE {
            return Thieves { addrs: OUTSIDE.map(|a| a.to_string()), off_cluster: true };
        }
        eprintln!(
            "\n*** kube_apiserver: OFF-CLUSTER VERDICTS SKIPPED: the harness could not add {OUTSIDE:?} to lo \
             (it needs root or CAP_NET_ADMIN, and `ip`; see its warnings above). The thieves use loopback \
             addresses instead, which the engine places on the apiserver's own host, so \
             token-used-off-cluster is not shown by this run. ***\n"
        );
        Thieves { addrs: LOOPBACK_THIEVES.map(String::from), off_cluster: false }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What the scenario made, for the later phases.
struct Made {
    /// Pod name → uid.
    uids: BTreeMap<&'static str, String>,
    /// Pod name → the token its node requested for it.
    tokens: BTreeMap<&'static str, String>,
    legacy_token: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_apiserver_audit_log_yields_exactly_the_expected_findings() {
    // The binary first (a cargo build, minutes on a loaded machine), so that the ports chosen
    // below are bound moments later, not after the build.
    correlator_support::binary();
    let dir = tempfile::tempdir().unwrap();
    // The aggregator's webhook port is chosen now: the apiserver is told of the tee in front of
    // it before the pipeline runs.
    let aggregator_webhook = e2e_support::process::free_port();
    let webhook =
        WebhookSink::start(dir.path().join("webhook"), Some(SocketAddr::from(([127, 0, 0, 1], aggregator_webhook))))
            .await;
    let cluster =
        Cluster::start(dir.path(), Some(&webhook.url), &OUTSIDE).unwrap_or_else(|e| panic!("no kube-apiserver: {e}"));
    let thieves = Thieves::of(&cluster);
    let api = Api::new(&cluster);

    let started = Instant::now();
    let phase = |name: &str| eprintln!("kube_apiserver: {name} after {:.1} s", started.elapsed().as_secs_f64());
    phase("cluster up");
    // The agents report their Node when they start: the kubelets register first.
    for (node, address, cidr) in NODE_IPS {
        register_node(&api, node, address, cidr).await;
    }
    let mut pipeline = Pipeline::start("kube", streaming_layout(&cluster, aggregator_webhook)).await;
    phase("pipeline up");
    let made = set_up_cluster(&api, &cluster).await;
    // Every token a kubelet wrote is attested by its node's agent: only alice's mint is not.
    for token in made.tokens.values() {
        pipeline.attested(&jti_of(token)).await;
    }
    let mut pod_source = PodSourceProbe::start(&cluster, "node-b").await;
    pod_source.expect_pods(&[("api-1", "127.0.12.2"), ("worker-0", "127.0.12.3")], "127.0.10.2").await;

    phase("cluster set up, tokens attested, pod source listed");
    benign_traffic(&api, &made).await;
    incident(&api, &made, &thieves).await;
    delete_pod_then_replay(&api, &cluster, &made, "worker-0", "node-b", &thieves.addrs[2]).await;
    pod_source.expect_removed(&made.uids["worker-0"]).await;
    let uid = made.uids["worker-0"].clone();
    pipeline.observed.wait_for("worker-0's deletion, from its agent", |o| o.pod_deleted(&uid)).await;
    phase("traffic done");

    let evidence = dir.path().join("evidence");
    collect(&cluster, &evidence, &made);
    collect_one_namespace_through_a_named_context(&cluster, &dir.path().join("evidence-shop"));
    phase("collected");
    let expected = expected_findings(&thieves);
    let findings = analyze(&[cluster.audit_log().as_path(), evidence.as_path()]);
    phase("analysed");
    assert_eq!(findings, expected, "findings from the real audit log (left) differ from the expected ones (right)");

    // The same events as the webhook backend sent them (EventList batches, at most 1 s late):
    // once the aggregator has accepted as many as the log holds (the tee saved them first),
    // the batches give the same findings to analyze, and the pipeline the same ones too.
    let logged = std::fs::read_to_string(cluster.audit_log()).unwrap().lines().count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while webhook.forwarded() < logged {
        assert!(
            Instant::now() < deadline,
            "the aggregator accepted {} of {logged} events within 120 s (the tee received {})",
            webhook.forwarded(),
            webhook.events()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let from_webhook = analyze(&[webhook.dir.as_path(), evidence.as_path()]);
    assert_eq!(
        from_webhook, expected,
        "findings from the webhook's batches (left) differ from the expected ones (right)"
    );
    phase("webhook's batches analysed");

    // The pipeline's inventory is what analyze read from the evidence directory: `collect`'s
    // Lists, produced to the raw audit topic, which the aggregator reads like a `kubectl get -o
    // json` dump (the audit policy logs Secrets at Metadata level, so only the inventory says
    // which Secret holds a token).
    let inventory: Vec<Vec<u8>> = ["serviceaccounts.json", "secrets.json", "pods.json", "nodes.json"]
        .iter()
        .map(|file| std::fs::read(evidence.join(file)).unwrap())
        .collect();
    pipeline.produce_raw(&inventory, None).await;
    let streamed: BTreeSet<_> = pipeline.settled_findings().await.values().map(|f| subject_of(&f.value)).collect();
    pipeline.stop();
    phase("pipeline settled");
    assert_eq!(streamed, expected, "findings of the streaming pipeline (left) differ from the expected ones (right)");
}

/// One agent per node, watching the real apiserver as its node; one aggregator, whose audit
/// webhook the apiserver's webhook backend feeds (through the test's tee); one correlator.
fn streaming_layout(cluster: &Cluster, webhook_port: u16) -> Layout {
    let real_nodes = NODE_IPS
        .iter()
        .map(|&(name, address, cidr)| RealNode {
            node: Node::named(name, address, cidr),
            kubeconfig: cluster.kubeconfig(name),
            kubelet_dir: kubelet_pods(cluster, name),
        })
        .collect();
    Layout {
        nodes: Vec::new(),
        real_nodes,
        audit_webhook_port: Some(webhook_port),
        aggregators: 1,
        correlators: 1,
        partitions: 2,
        ..Layout::default()
    }
}

/// The node's `/var/lib/kubelet/pods`, in the cluster's directory.
fn kubelet_pods(cluster: &Cluster, node: &str) -> std::path::PathBuf {
    cluster.dir().join(format!("kubelet/{node}/pods"))
}

/// The `jti` claim of a service-account token (its payload read, its signature not checked).
fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    field(&claims, "jti").to_owned()
}

// --- the cluster ------------------------------------------------------------------------------

async fn set_up_cluster(api: &Api, cluster: &Cluster) -> Made {
    api.admin("POST", "/api/v1/namespaces", Some(&json!({"metadata": {"name": NS}}))).await;
    for sa in ["api", "legacy", "worker"] {
        api.admin(
            "POST",
            &format!("/api/v1/namespaces/{NS}/serviceaccounts"),
            Some(&json!({"metadata": {"name": sa}})),
        )
        .await;
    }
    // A legacy token Secret: the controller-manager's token controller signs and stores it.
    api.admin(
        "POST",
        &format!("/api/v1/namespaces/{NS}/secrets"),
        Some(&json!({"metadata": {"name": "legacy-token", "annotations": {"kubernetes.io/service-account.name": "legacy"}},
                     "type": "kubernetes.io/service-account-token"})),
    )
    .await;
    let (mut uids, mut tokens) = (BTreeMap::new(), BTreeMap::new());
    for plan in &PODS {
        let uid = run_pod(api, plan).await;
        tokens.insert(plan.name, kubelet_token(api, cluster, plan, &uid).await);
        uids.insert(plan.name, uid);
    }
    let secret = api
        .wait_for(
            &format!("/api/v1/namespaces/{NS}/secrets/legacy-token"),
            "the token controller fills the Secret",
            |s| s.pointer("/data/token").is_some(),
        )
        .await;
    let legacy_token = String::from_utf8(base64_decode(field(&secret, "data.token"))).unwrap();
    // The kubelet mounts the Secret into the pods that name it.
    for plan in PODS.iter().filter(|p| p.secret.is_some()) {
        write_volume(cluster, plan.node, &uids[plan.name], "kubernetes.io~secret/legacy", &legacy_token);
    }

    Made { uids, tokens, legacy_token }
}

/// What a kubelet does when it starts: create its Node, then report its addresses.
async fn register_node(api: &Api, node: &str, address: &str, cidr: &str) {
    let me = Who::User(node);
    api.ok(
        HOST,
        me,
        "POST",
        "/api/v1/nodes",
        Some(&json!({"metadata": {"name": node}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await;
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": node}],
                                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    api.ok(HOST, me, "PATCH", &format!("/api/v1/nodes/{node}/status"), Some(&status)).await;
}

/// Creates the pod (as a user would), binds it (as the scheduler would) and reports it running
/// with its address (as its node's kubelet would). Returns its uid.
async fn run_pod(api: &Api, plan: &PodPlan) -> String {
    let mut spec = json!({"serviceAccountName": plan.serviceaccount,
                          "containers": [{"name": "app", "image": "registry.invalid/app:1"}]});
    if let Some(secret) = plan.secret {
        spec["volumes"] = json!([{"name": "legacy", "secret": {"secretName": secret}}]);
    }
    let pod = api
        .admin(
            "POST",
            &format!("/api/v1/namespaces/{NS}/pods"),
            Some(&json!({"metadata": {"name": plan.name}, "spec": spec})),
        )
        .await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": plan.name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": plan.node}});
    api.admin("POST", &format!("/api/v1/namespaces/{NS}/pods/{}/binding", plan.name), Some(&binding)).await;
    let host_ip = NODE_IPS.iter().find(|n| n.0 == plan.node).unwrap().1;
    let status = json!({"status": {"phase": "Running", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                                   "podIP": plan.ip, "podIPs": [{"ip": plan.ip}],
                                   "startTime": field(&pod, "metadata.creationTimestamp"),
                                   "conditions": [{"type": "Ready", "status": "True"}]}});
    api.ok(
        HOST,
        Who::User(plan.node),
        "PATCH",
        &format!("/api/v1/namespaces/{NS}/pods/{}/status", plan.name),
        Some(&status),
    )
    .await;
    field(&pod, "metadata.uid").to_owned()
}

/// The kubelet's TokenRequest for the pod's projected token, and the file it writes for the
/// container (the atomic writer's layout, which the agent reads).
async fn kubelet_token(api: &Api, cluster: &Cluster, plan: &PodPlan, uid: &str) -> String {
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 3607,
                                  "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": plan.name, "uid": uid}}});
    let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/{}/token", plan.serviceaccount);
    let minted = api.ok(HOST, Who::User(plan.node), "POST", &path, Some(&request)).await;
    let token = field(&minted, "status.token").to_owned();
    write_volume(cluster, plan.node, uid, "kubernetes.io~projected/kube-api-access", &token);
    token
}

/// Writes a pod's volume holding `token` into its node's kubelet directory, in the atomic
/// writer's layout: `token` links through `..data` to a timestamped directory.
fn write_volume(cluster: &Cluster, node: &str, uid: &str, plugin_and_volume: &str, token: &str) {
    let volume = kubelet_pods(cluster, node).join(format!("{uid}/volumes/{plugin_and_volume}"));
    let data = volume.join("..2026_01_01_00_00_00.1");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), token).unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", volume.join("token")).unwrap();
}

// --- traffic ----------------------------------------------------------------------------------

/// What a workload does with its own credential: discovery (allowed to every authenticated
/// user) and a list it has no RBAC for (403: authentication succeeded, so still a use).
async fn use_token(api: &Api, from: &str, token: &str) {
    let reply = api.call(ip(from), Who::Token(token), "GET", "/apis", None).await;
    assert_eq!(reply.status, 200, "discovery with a valid token from {from}: {}", reply.body);
    let reply =
        api.call(ip(from), Who::Token(token), "GET", &format!("/api/v1/namespaces/{NS}/configmaps"), None).await;
    assert_eq!(reply.status, 403, "a list the service account may not do, from {from}: {}", reply.body);
}

/// Every pod uses its token from its own address; api-0's token is also used from its node's
/// address (a hostNetwork sidecar, or SNAT to the node); legacy-0 uses the legacy token it mounts.
async fn benign_traffic(api: &Api, made: &Made) {
    for plan in &PODS {
        use_token(api, plan.ip, &made.tokens[plan.name]).await;
    }
    use_token(api, NODE_IPS[0].1, &made.tokens["api-0"]).await;
    use_token(api, PODS[1].ip, &made.legacy_token).await;
}

/// The thefts: api-0's token from a thief's address; api-1's token from another pod's address
/// (legacy-0's); the legacy token from a thief's address; a token alice mints for worker-0's
/// service account, bound to worker-0, used by a thief; an unbound token alice mints; worker-0's
/// own token from a thief's address.
async fn incident(api: &Api, made: &Made, thieves: &Thieves) {
    let thief = &thieves.addrs;
    use_token(api, &thief[0], &made.tokens["api-0"]).await;
    use_token(api, PODS[1].ip, &made.tokens["api-1"]).await;
    use_token(api, &thief[3], &made.legacy_token).await;

    let role = json!({"metadata": {"name": "token-minter"},
                      "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]});
    api.admin("POST", &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles"), Some(&role)).await;
    let binding = json!({"metadata": {"name": "alice-token-minter"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "token-minter"},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]});
    api.admin("POST", &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"), Some(&binding))
        .await;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "worker-0", "uid": made.uids["worker-0"]}}});
    let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/worker/token");
    // RBAC takes a moment to see a new binding: retry the mint until it is allowed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let minted = loop {
        let reply = api.call(HOST, Who::User("alice"), "POST", &path, Some(&request)).await;
        if reply.status == 201 {
            break reply.body;
        }
        assert!(
            reply.status == 403 && Instant::now() < deadline,
            "alice's TokenRequest: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    use_token(api, &thief[1], field(&minted, "status.token")).await;
    // And a token of another service account, bound to nothing.
    let unbound = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    api.ok(
        HOST,
        Who::User("alice"),
        "POST",
        &format!("/api/v1/namespaces/{NS}/serviceaccounts/api/token"),
        Some(&unbound),
    )
    .await;

    use_token(api, &thief[2], &made.tokens["worker-0"]).await;
}

/// The pod is deleted the way it is in a cluster (a user's graceful delete, then the kubelet's
/// final one once the containers stopped, its volumes removed); the thief, who used its token
/// before, keeps trying. The apiserver caches successful authentications for 10 s, so the
/// replay is repeated until it is refused.
async fn delete_pod_then_replay(api: &Api, cluster: &Cluster, made: &Made, pod: &str, node: &str, thief: &str) {
    let path = format!("/api/v1/namespaces/{NS}/pods/{pod}");
    api.admin("DELETE", &path, None).await;
    std::fs::remove_dir_all(kubelet_pods(cluster, node).join(&made.uids[pod])).unwrap();
    let last = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": made.uids[pod]}});
    api.ok(HOST, Who::User(node), "DELETE", &path, Some(&last)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = api.call(ip(thief), Who::Token(&made.tokens[pod]), "GET", "/apis", None).await;
        if reply.status == 401 {
            break;
        }
        assert!(
            reply.status == 200 && Instant::now() < deadline,
            "replay of a deleted pod's token: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // And once more, as a thief would.
    assert_eq!(api.call(ip(thief), Who::Token(&made.tokens[pod]), "GET", "/apis", None).await.status, 401);
}

// --- the agent's pod source -------------------------------------------------------------------

/// `tokentrail_agent::kube_source::run` for one node, with the node's own credentials (the
/// Node authorizer lets a node see only its pods and its Node, which is what the watchers ask).
struct PodSourceProbe {
    updates: tokio::sync::mpsc::Receiver<PodUpdate>,
}

impl PodSourceProbe {
    async fn start(cluster: &Cluster, node: &str) -> PodSourceProbe {
        let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig(node)).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let (tx, updates) = tokio::sync::mpsc::channel(64);
        tokio::spawn(tokentrail_agent::kube_source::run(client, node.to_owned(), tx));
        PodSourceProbe { updates }
    }

    async fn next(&mut self, what: &str) -> PodUpdate {
        match tokio::time::timeout(Duration::from_secs(60), self.updates.recv()).await {
            Ok(Some(update)) => update,
            Ok(None) => panic!("the pod source stopped while waiting for {what}"),
            Err(_) => panic!("the pod source sent nothing for 60 s while waiting for {what}"),
        }
    }

    /// The first list: exactly these pods (name, address), and the Node with this address.
    async fn expect_pods(&mut self, pods: &[(&str, &str)], node_ip: &str) {
        let (mut listed, mut node) = (None, None);
        while listed.is_none() || node.is_none() {
            match self.next("the first list of pods and the Node").await {
                PodUpdate::Replace(all) => listed = Some(all),
                PodUpdate::Node(info) => node = Some(info),
                _ => {}
            }
        }
        let mut seen: Vec<(String, Vec<IpAddr>, String)> =
            listed.unwrap().into_iter().map(|p| (p.name, p.ips, p.serviceaccount)).collect();
        seen.sort();
        let want: Vec<(String, Vec<IpAddr>, String)> = pods
            .iter()
            .map(|(name, addr)| {
                let sa = PODS.iter().find(|p| p.name == *name).unwrap().serviceaccount;
                (name.to_string(), vec![ip(addr)], sa.to_string())
            })
            .collect();
        assert_eq!(seen, want, "the pods the agent's source lists for its node");
        let node = node.unwrap();
        assert_eq!(node.addresses, [("InternalIP".to_string(), ip(node_ip))]);
    }

    /// A later event removes the pod with this uid.
    async fn expect_removed(&mut self, uid: &str) {
        loop {
            if let PodUpdate::Remove(removed) = self.next("the deleted pod's removal").await {
                assert_eq!(removed, uid);
                return;
            }
        }
    }
}

// --- collect and analyze ----------------------------------------------------------------------

fn tokentrail(args: &[&str], kubeconfig: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(correlator_support::binary());
    command.args(args);
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command.output().unwrap()
}

/// `tokentrail collect` as the admin: the inventory, a manifest whose hashes match, no token.
fn collect(cluster: &Cluster, out: &Path, made: &Made) {
    let output = tokentrail(&["collect", "--out-dir", out.to_str().unwrap()], Some(&cluster.kubeconfig("admin")));
    assert!(output.status.success(), "tokentrail collect: {}", String::from_utf8_lossy(&output.stderr));
    let check =
        Command::new("sha256sum").args(["--check", "--strict", "MANIFEST.sha256"]).current_dir(out).output().unwrap();
    assert!(check.status.success(), "the manifest's hashes: {}", String::from_utf8_lossy(&check.stdout));
    let manifest = std::fs::read_to_string(out.join("MANIFEST.sha256")).unwrap();
    for file in ["serviceaccounts.json", "secrets.json", "pods.json", "nodes.json"] {
        assert!(manifest.contains(&format!("  {file}\n")), "{file} in the manifest:\n{manifest}");
    }
    assert!(manifest.contains(&format!("# server: {}", cluster.server())), "{manifest}");
    let mut everything = String::new();
    for entry in std::fs::read_dir(out).unwrap() {
        everything.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for token in made.tokens.values().chain([&made.legacy_token]) {
        assert!(!everything.contains(token.as_str()), "a token was written by collect");
    }
    let secrets: Value = serde_json::from_str(&std::fs::read_to_string(out.join("secrets.json")).unwrap()).unwrap();
    let secret = secrets["items"].as_array().unwrap().iter().find(|s| s["metadata"]["name"] == "legacy-token").unwrap();
    assert!(secret.get("data").is_none(), "no data of a token Secret is written: {secret}");
    assert_eq!(
        secret["metadata"]["annotations"]["tokentrail.io/token-sha256"],
        sha256_hex(made.legacy_token.as_bytes()),
        "the Secret's token is known by its hash"
    );
    let pods: Value = serde_json::from_str(&std::fs::read_to_string(out.join("pods.json")).unwrap()).unwrap();
    let names: BTreeSet<&str> = pods["items"].as_array().unwrap().iter().map(|p| field(p, "metadata.name")).collect();
    assert_eq!(names, BTreeSet::from(["api-0", "api-1", "legacy-0"]), "the pods alive at collection");
}

/// `tokentrail collect --context --namespace`: a kubeconfig whose current context names a
/// cluster that is not there, the admin's context asked for by name, and one namespace's
/// service accounts (every namespace has its `default`) with every node.
fn collect_one_namespace_through_a_named_context(cluster: &Cluster, out: &Path) {
    let pki = cluster.kubeconfig("admin").parent().unwrap().join("pki");
    let pki = pki.display();
    let kubeconfig = out.with_extension("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\nclusters:\n\
             - name: nowhere\n  cluster:\n    server: https://127.0.0.1:9\n\
             - name: test\n  cluster:\n    server: {}\n    certificate-authority: {pki}/ca.crt\n\
             users:\n- name: admin\n  user:\n    client-certificate: {pki}/admin.crt\n    client-key: {pki}/admin.key\n\
             contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: admin\n\
             - name: the-test\n  context:\n    cluster: test\n    user: admin\n",
            cluster.server()
        ),
    )
    .unwrap();
    let (kubeconfig, out_dir) = (kubeconfig.to_str().unwrap(), out.to_str().unwrap());
    let unscoped = tokentrail(&["collect", "--out-dir", out_dir, "--kubeconfig", kubeconfig], None);
    assert!(!unscoped.status.success(), "the current context's cluster is not there");
    let args = ["collect", "--out-dir", out_dir, "--kubeconfig", kubeconfig, "--context", "the-test", "-n", NS];
    let output = tokentrail(&args, None);
    assert!(output.status.success(), "tokentrail collect --context: {}", String::from_utf8_lossy(&output.stderr));
    let manifest = std::fs::read_to_string(out.join("MANIFEST.sha256")).unwrap();
    assert!(
        manifest.contains("# cluster: test\n") && manifest.contains(&format!("# namespaces: {NS}\n")),
        "{manifest}"
    );
    let items = |file: &str| -> Vec<Value> {
        let list: Value = serde_json::from_str(&std::fs::read_to_string(out.join(file)).unwrap()).unwrap();
        list["items"].as_array().unwrap().clone()
    };
    let accounts = items("serviceaccounts.json");
    assert!(accounts.iter().any(|a| a["metadata"]["name"] == "default"), "{accounts:?}");
    for object in accounts.iter().chain(&items("pods.json")).chain(&items("secrets.json")) {
        assert_eq!(object["metadata"]["namespace"], NS, "only {NS}'s objects: {object}");
    }
    assert_eq!(items("nodes.json").len(), 2, "nodes are cluster-wide");
}

/// The findings of `tokentrail analyze --format json`, as (rule, pod or secret, client address).
fn analyze(evidence: &[&Path]) -> BTreeSet<(String, String, String)> {
    let mut args = vec!["analyze", "-o", "json"];
    args.extend(evidence.iter().map(|p| p.to_str().unwrap()));
    let output = tokentrail(&args, None);
    assert!(output.status.success(), "tokentrail analyze: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| subject_of(&serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))))
        .collect()
}

/// A finding (tokentrail.finding/v1, the same in both modes) as (rule, pod or secret, client
/// address). A finding about several addresses lists them instead, and is known by its lowest:
/// how many a streamed one lists depends on whether a later use was material enough for an
/// update, while analyze, seeing everything at once, lists them all.
fn subject_of(f: &Value) -> (String, String, String) {
    let subject = f["pod"]["name"].as_str().or(f["credential"]["secret"].as_str()).unwrap_or("");
    let rule = f["rule"].as_str().unwrap_or_else(|| panic!("a finding without a rule: {f}")).to_owned();
    let lowest = || {
        let listed = f["source_ips"].as_array()?.iter().filter_map(|ip| ip.as_str()?.parse::<IpAddr>().ok());
        listed.min().map(|ip| ip.to_string())
    };
    let address = f["source_ip"].as_str().map(str::to_owned).or_else(lowest).unwrap_or_default();
    (rule, subject.to_owned(), address)
}

/// The findings the scenario must raise, and no others: the benign traffic raises nothing.
///
/// A pod-bound token used by a thief is `token-used-off-cluster` when the thief is outside
/// every cluster network; a loopback thief (no root) is on the apiserver's own host as far as
/// the engine can tell, so it is "another workload" (`token-used-from-other-workload`, place:
/// loopback) instead. `token-multi-origin` stays silent because every foreign address is
/// already explained by a sharper finding, and `token-minted-by-user` is not repeated for a mint
/// that `token-forged-mint` reports.
fn expected_findings(thieves: &Thieves) -> BTreeSet<(String, String, String)> {
    let thief = &thieves.addrs;
    let stolen = if thieves.off_cluster { "token-used-off-cluster" } else { "token-used-from-other-workload" };
    [
        // api-0's token from the thief's address.
        (stolen, "api-0", thief[0].as_str()),
        // api-1's token from legacy-0's address.
        ("token-used-from-other-workload", "api-1", PODS[1].ip),
        // alice's token bound to worker-0: minted behind the kubelet's back, used by the thief.
        ("token-forged-mint", "worker-0", HOST_STR),
        (stolen, "worker-0", thief[1].as_str()),
        // alice's unbound token for `api`: a user minting tokens.
        ("token-minted-by-user", "", HOST_STR),
        // worker-0's own token used by the thief, then replayed after the pod was deleted (401).
        (stolen, "worker-0", thief[2].as_str()),
        ("token-after-pod-deletion", "worker-0", thief[2].as_str()),
        // The legacy token: present, in use (one finding per Secret, from its pod first), used
        // off its pod; the admin read the Secret (to hand it to the test, and again through
        // `collect`).
        ("legacy-token-present", "legacy-token", ""),
        ("legacy-token-use", "legacy-token", PODS[1].ip),
        ("legacy-token-foreign-ip", "legacy-token", thief[3].as_str()),
        ("sa-token-secret-read", "", HOST_STR),
    ]
    .into_iter()
    .map(|(rule, subject, ip)| (rule.to_owned(), subject.to_owned(), ip.to_owned()))
    .collect()
}

const HOST_STR: &str = "127.0.0.1";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
