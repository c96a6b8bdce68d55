//! What real clusters do that generated evidence did not: the shapes that raised false alarms or
//! hid an attack, each next to the attack it must still catch. Knowledge before severity: a
//! verdict that rests on what the evidence lacks is at most medium.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod common;

use common::*;
use tokentrail_correlator_core::{Observation, Severity};

fn operator() -> PodSpec {
    pod("openshift-dns-operator/dns-operator-7d9f8-0x2lq", "uid-dns").on_node("master-0").running_as("dns-operator")
}

// --- knowledge before severity ----------------------------------------------------------------

#[test]
fn off_cluster_rests_on_known_networks_and_is_medium_without_them() {
    // No dumps, no kubelet in the log: a routable address may be the cluster's own NAT gateway.
    let p = api();
    let report = run(vec![use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(1.0).obs()]);
    let f = only(&report, "token-used-off-cluster");
    assert_eq!(f.len(), 1, "{:?}", fired(&report));
    assert_eq!(f[0].severity, Severity::Medium);
    assert!(f[0].explanation.contains("nodes.json"), "{}", f[0].explanation);
}

#[test]
fn off_cluster_is_critical_when_every_node_talks_from_a_private_address() {
    // The kubelets' own requests show the nodes reach the apiserver privately: so do the pods.
    let p = api();
    let report = run(vec![
        kubelet_seen("worker-1", "10.0.1.11"),
        kubelet_seen("worker-2", "10.0.1.12"),
        use_of("payments/api").bound_to(&p, "j1").from("203.0.113.50").at(1.0).obs(),
    ]);
    let f = only(&report, "token-used-off-cluster");
    assert_eq!(f[0].severity, Severity::Critical, "{}", f[0].explanation);
    assert!(f[0].explanation.contains("learned from the log"), "says what it stands on: {}", f[0].explanation);
}

#[test]
fn a_routable_address_beside_routable_nodes_is_not_called_off_cluster() {
    // A cluster on a public /24: a control-plane machine whose kubelet is not in this log.
    let report = run(vec![
        kubelet_seen("worker-0", "198.51.100.10"),
        use_of("openshift-etcd-operator/etcd-operator")
            .legacy("etcd-operator-token-x9k2")
            .from("198.51.100.21")
            .at(1.0)
            .obs(),
    ]);
    assert_eq!(fired(&report), ["legacy-token-use@198.51.100.21"]);
}

#[test]
fn a_legacy_token_from_the_internet_without_known_networks_is_medium() {
    let report = run(vec![
        kubelet_seen("worker-0", "198.51.100.10"),
        use_of("ops/exporter").legacy("exporter-token-abcde").from("192.0.2.99").at(1.0).obs(),
    ]);
    let f = only(&report, "legacy-token-foreign-ip");
    assert_eq!(f[0].severity, Severity::Medium, "{:?}", fired(&report));
}

#[test]
fn another_nodes_address_is_high_only_when_the_pods_node_addresses_are_known() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-1").running_as("web");
    let unknown_node = run(vec![
        kubelet_seen("worker-2", "10.0.1.12"),
        use_of("shop/web").bound_to(&p, "j1").from("10.0.1.12").at(1.0).obs(),
    ]);
    let f = only(&unknown_node, "token-used-from-other-workload");
    assert_eq!(f[0].severity, Severity::Medium, "{:?}", fired(&unknown_node));
    let known_node = run(vec![
        kubelet_seen("worker-1", "10.0.1.11"),
        kubelet_seen("worker-2", "10.0.1.12"),
        use_of("shop/web").bound_to(&p, "j1").from("10.0.1.12").at(1.0).obs(),
    ]);
    assert_eq!(only(&known_node, "token-used-from-other-workload")[0].severity, Severity::High);
}

#[test]
fn loopback_is_unexpected_for_a_pod_in_its_own_network_namespace() {
    // A pod that is not host-network cannot reach the apiserver host's loopback: someone there
    // holds a copy of its token.
    let p = pod("shop/web-1", "uid-web").on_node("worker-1").with_ip("10.244.1.5").running_as("web");
    let report = run(with_nodes(vec![
        p.observed(),
        use_of("shop/web").bound_to(&p, "j1").from("10.244.1.5").at(1.0).obs(),
        use_of("shop/web").bound_to(&p, "j1").from("127.0.0.1").at(2.0).obs(),
    ]));
    assert_eq!(fired(&report), ["token-used-from-other-workload@127.0.0.1"]);
}

#[test]
fn loopback_is_a_control_plane_hosts_own_and_unknown() {
    // OpenShift's control-plane operators run host-network on the masters and use localhost.
    let p = operator().host_network();
    let report = run(vec![
        kubelet_seen("master-0", "10.0.0.3"),
        p.observed(),
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("127.0.0.1").at(1.0).obs(),
    ]);
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

// --- token-multi-origin -----------------------------------------------------------------------

#[test]
fn unseen_pod_address_and_the_pods_own_node_address_are_one_workload() {
    let p = operator();
    let report = run([
        vec![kubelet_seen("master-0", "10.0.0.3")],
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("10.128.0.15").every_minute(0.0, 5),
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("10.0.0.3").every_minute(0.5, 5),
    ]
    .concat());
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

#[test]
fn two_unseen_addresses_beside_the_node_are_a_medium_multi_origin() {
    let p = operator();
    let report = run(vec![
        kubelet_seen("master-0", "10.0.0.3"),
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("10.128.0.15").at(1.0).obs(),
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("10.131.7.40").at(2.0).obs(),
        use_of("openshift-dns-operator/dns-operator").bound_to(&p, "j1").from("10.0.0.3").at(3.0).obs(),
    ]);
    let f = only(&report, "token-multi-origin");
    assert_eq!(f.len(), 1, "{:?}", fired(&report));
    assert_eq!(f[0].severity, Severity::Medium);
}

#[test]
fn an_unbound_token_from_two_known_pods_is_a_high_multi_origin() {
    // No pod to judge against, so no sharper rule: the evidence names two workloads.
    let b = pod("shop/cart-1", "uid-cart-1").on_node("worker-2").with_ip("10.244.2.9").running_as("cart");
    let c = pod("shop/db-1", "uid-db-1").on_node("worker-3").with_ip("10.244.3.4").running_as("db");
    let report = run(with_nodes(vec![
        b.observed(),
        c.observed(),
        use_of("shop/deployer").unbound("j1").from("10.244.2.9").at(1.0).obs(),
        use_of("shop/deployer").unbound("j1").from("10.244.3.4").at(2.0).obs(),
    ]));
    let f = only(&report, "token-multi-origin");
    assert_eq!(f.len(), 1, "{:?}", fired(&report));
    assert_eq!(f[0].severity, Severity::High);
}

// --- client fingerprints ----------------------------------------------------------------------

#[test]
fn a_pod_token_from_a_mac_behind_the_nodes_nat_is_off_cluster() {
    // Every kubelet and every pod reaches the public endpoint through one NAT address.
    let p = pod("ci/runner-5b7f9d-qx8zt", "uid-runner").on_node("node-b").running_as("runner");
    let report = run([
        vec![kubelet_seen("node-a", "203.0.113.7"), kubelet_seen("node-b", "203.0.113.7")],
        use_of("ci/runner")
            .bound_to(&p, "j1")
            .from("203.0.113.7")
            .by("ci-runner/1.8 (linux/amd64)")
            .every_minute(0.0, 10),
        vec![use_of("ci/runner")
            .bound_to(&p, "j1")
            .from("203.0.113.7")
            .by("oc/4.20.0 (darwin/arm64) kubernetes/7f0a1b2")
            .at(5.5)
            .obs()],
    ]
    .concat());
    let f = only(&report, "token-used-off-cluster");
    assert_eq!(f.len(), 1, "{:?}", fired(&report));
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(f[0].explanation.contains("darwin"), "{}", f[0].explanation);
    assert_eq!(report.coverage.unexpected, 11);
}

#[test]
fn a_windows_client_of_a_linux_nodes_pod_is_off_cluster_and_a_windows_nodes_own_is_not() {
    let p = pod("shop/web-1", "uid-web").on_node("worker-1").running_as("web");
    let uses = |node_os: &str| -> Vec<Observation> {
        vec![
            node_running("worker-1", "10.0.1.11", node_os),
            use_of("shop/web").bound_to(&p, "j1").from("10.0.1.11").by("web/1.0 (windows/amd64)").at(1.0).obs(),
        ]
    };
    assert_eq!(fired(&run(uses("linux"))), ["token-used-off-cluster@10.0.1.11"]);
    assert!(run(uses("windows")).findings.is_empty());
}

#[test]
fn a_new_program_with_a_pods_token_from_its_node_is_a_changed_client() {
    let p = pod("billing/invoicer-1", "uid-inv").on_node("worker-3").running_as("invoicer");
    let mut obs = vec![kubelet_seen("worker-3", "10.0.1.13")];
    // The controller and its sidecar use both of the pod's credentials, through the node (SNAT).
    for (jti, start) in [("j1", 0.0), ("j2", 48.0)] {
        obs.extend(
            use_of("billing/invoicer")
                .bound_to(&p, jti)
                .from("10.0.1.13")
                .by("invoicer/3.2 (linux/amd64)")
                .every_minute(start, 40),
        );
        obs.push(
            use_of("billing/invoicer")
                .bound_to(&p, jti)
                .from("10.0.1.13")
                .by("pilot-agent/1.22 (linux/amd64)")
                .at(start + 20.0)
                .obs(),
        );
    }
    let quiet = run(obs.clone());
    assert!(quiet.findings.is_empty(), "sidecars are the pod's own: {:?}", fired(&quiet));
    obs.push(
        use_of("billing/invoicer")
            .bound_to(&p, "j2")
            .from("10.0.1.13")
            .by("kubectl/v1.33.1 (linux/amd64)")
            .at(70.0)
            .listing_secrets("billing")
            .obs(),
    );
    let report = run(obs);
    let f = only(&report, "token-client-changed");
    assert_eq!(f.len(), 1, "{:?}", fired(&report));
    assert_eq!(f[0].severity, Severity::Medium);
    assert!(f[0].explanation.contains("kubectl"), "{}", f[0].explanation);
}

#[test]
fn a_program_seen_only_in_the_pods_first_minutes_is_an_init_container() {
    let p = pod("billing/invoicer-1", "uid-inv").on_node("worker-3").running_as("invoicer");
    let mut obs = vec![kubelet_seen("worker-3", "10.0.1.13")];
    obs.extend(
        use_of("billing/invoicer")
            .bound_to(&p, "j1")
            .from("10.0.1.13")
            .by("kubectl/v1.33.1 (linux/amd64)")
            .every_minute(0.0, 2),
    );
    for (jti, start) in [("j1", 0.0), ("j2", 48.0)] {
        obs.extend(
            use_of("billing/invoicer")
                .bound_to(&p, jti)
                .from("10.0.1.13")
                .by("invoicer/3.2 (linux/amd64)")
                .every_minute(start, 40),
        );
    }
    let report = run(obs);
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
}

// --- aggregated apiservers --------------------------------------------------------------------

#[test]
fn requests_forwarded_by_the_apiserver_to_an_aggregated_apiserver_are_not_spoofed() {
    // openshift-apiserver's own log: [client, kube-apiserver as seen from the pod network].
    let mut obs = with_nodes(vec![]);
    for (n, sa) in ["a/one", "b/two", "c/three", "d/four"].iter().enumerate() {
        let p =
            pod(&format!("{sa}-0"), &format!("uid-{n}")).on_node("worker-1").with_ip(&format!("10.244.1.{}", 10 + n));
        obs.push(p.observed());
        obs.push(
            use_of(sa)
                .bound_to(&p, &format!("j{n}"))
                .via(&[&format!("10.244.1.{}", 10 + n), "10.244.0.2"])
                .at(1.0)
                .obs(),
        );
    }
    let report = run(obs);
    assert!(report.findings.is_empty(), "{:?}", fired(&report));
    assert_eq!(report.coverage.expected, 4);
}

#[test]
fn a_thief_forging_forwarded_for_with_one_token_is_still_spoofing() {
    let p = api();
    let report = run(with_nodes(vec![
        p.observed(),
        use_of("payments/api").bound_to(&p, "j1").via(&["10.244.1.12", "10.244.2.77"]).at(1.0).obs(),
    ]));
    assert!(fired(&report).contains(&String::from("xff-spoofed-source@10.244.2.77")), "{:?}", fired(&report));
}

fn api() -> PodSpec {
    pod("payments/api-7d9f8-xk2lq", "uid-api").on_node("worker-1").with_ip("10.244.1.12").running_as("api")
}

fn with_nodes(mut extra: Vec<Observation>) -> Vec<Observation> {
    let mut all = cluster();
    all.append(&mut extra);
    all
}
