//! The cluster the scenarios run in, as data: nodes, pods and their tokens, and how each looks
//! to the components: a Pod or Node object for the API server, token files in the kubelet's
//! layout for the agent. Times are the wall clock's, because the agents stamp their attestations
//! with it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};
use tokentrail_correlator_core::Timestamp;

/// The wall clock in µs since the Unix epoch.
#[allow(clippy::disallowed_methods)] // a test driver stamps what it produces, like the agent
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// RFC 3339, as the API server writes times.
pub fn rfc3339(micros: i64) -> String {
    Timestamp(micros).to_string()
}

/// A node: its name, its address and the pod network it hands out.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    /// The InternalIP: hostNetwork pods and SNAT'd pod traffic come from here.
    pub ip: String,
    /// `10.244.N.0/24`.
    pub pod_cidr: String,
    n: u8,
}

impl Node {
    /// `worker-N` at `10.0.1.N`, pods in `10.244.N.0/24`.
    pub fn worker(n: u8) -> Node {
        Node { name: format!("worker-{n}"), ip: format!("10.0.1.{n}"), pod_cidr: format!("10.244.{n}.0/24"), n }
    }

    /// A node with the address and pod network it registered with elsewhere (a real apiserver's
    /// node); [`Node::pod_ip`] knows nothing of that network.
    pub fn named(name: &str, ip: &str, pod_cidr: &str) -> Node {
        Node { name: name.into(), ip: ip.into(), pod_cidr: pod_cidr.into(), n: 0 }
    }

    /// The address the node's pod network gives its `host`-th pod.
    pub fn pod_ip(&self, host: u8) -> String {
        format!("10.244.{}.{host}", self.n)
    }

    pub fn api_object(&self) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "uid": format!("node-uid-{}", self.name)},
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}]}
        })
    }
}

/// A pod and where it runs.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub serviceaccount: String,
    pub node: Node,
    /// Its address: a pod-network address, or the node's for a hostNetwork pod.
    pub ip: String,
    pub host_network: bool,
    /// The Secret whose legacy token it mounts, if any.
    pub legacy_secret: Option<String>,
    pub started: i64,
}

impl Pod {
    /// A pod of `namespace/serviceaccount` on `node` at `ip`.
    pub fn new(namespace: &str, name: &str, serviceaccount: &str, node: &Node, ip: &str) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            uid: fresh_uid(name),
            serviceaccount: serviceaccount.into(),
            node: node.clone(),
            ip: ip.into(),
            host_network: false,
            legacy_secret: None,
            started: now(),
        }
    }

    /// A hostNetwork pod: its address is its node's.
    pub fn host_network(namespace: &str, name: &str, serviceaccount: &str, node: &Node) -> Pod {
        Pod { host_network: true, ..Pod::new(namespace, name, serviceaccount, node, &node.ip) }
    }

    /// The same pod, mounting `secret`'s legacy token.
    pub fn mounting_legacy_secret(mut self, secret: &str) -> Pod {
        self.legacy_secret = Some(secret.into());
        self
    }

    pub fn api_object(&self) -> Value {
        let mut volumes = vec![json!({"name": "kube-api-access", "projected": {"sources": []}})];
        if let Some(secret) = &self.legacy_secret {
            volumes.push(json!({"name": "legacy-token", "secret": {"secretName": secret}}));
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                         "creationTimestamp": rfc3339(self.started)},
            "spec": {"nodeName": self.node.name, "serviceAccountName": self.serviceaccount,
                     "hostNetwork": self.host_network, "containers": [{"name": "app", "image": "app"}],
                     "volumes": volumes},
            "status": {"phase": "Running", "podIP": self.ip, "podIPs": [{"ip": self.ip}],
                       "startTime": rfc3339(self.started)}
        })
    }
}

/// A uid no other pod of any run has: pods are keyed by uid, never by name.
pub fn fresh_uid(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{name}-{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A projected service-account token bound to `pod`: what the kubelet writes, claims only.
pub fn pod_token(pod: &Pod, jti: &str) -> String {
    let issued = now() / 1_000_000;
    jwt(&json!({
        "aud": ["https://kubernetes.default.svc"], "iat": issued, "nbf": issued, "exp": issued + 3607,
        "iss": "https://kubernetes.default.svc", "jti": jti,
        "kubernetes.io": {"namespace": pod.namespace,
            "node": {"name": pod.node.name, "uid": format!("node-uid-{}", pod.node.name)},
            "pod": {"name": pod.name, "uid": pod.uid},
            "serviceaccount": {"name": pod.serviceaccount, "uid": format!("sa-uid-{}", pod.serviceaccount)}},
        "sub": format!("system:serviceaccount:{}:{}", pod.namespace, pod.serviceaccount)
    }))
}

/// A legacy Secret-based token of `pod`'s service account, from Secret `secret`.
pub fn legacy_token(pod: &Pod, secret: &str) -> String {
    jwt(&json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": pod.namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": pod.serviceaccount,
        "kubernetes.io/serviceaccount/service-account.uid": format!("sa-uid-{}", pod.serviceaccount),
        "sub": format!("system:serviceaccount:{}:{}", pod.namespace, pod.serviceaccount)
    }))
}

/// A JWT with these claims and a placeholder signature (the agent never checks signatures).
fn jwt(claims: &Value) -> String {
    format!("{}.{}.c2lnbmF0dXJl", b64url(br#"{"alg":"RS256","kid":"test"}"#), b64url(claims.to_string().as_bytes()))
}

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A node's `/var/lib/kubelet/pods`, written the way the kubelet's atomic writer does.
pub struct Kubelet {
    pub root: PathBuf,
    writes: AtomicU64,
}

impl Kubelet {
    pub fn new(root: &Path) -> Kubelet {
        std::fs::create_dir_all(root).unwrap();
        Kubelet { root: root.to_path_buf(), writes: AtomicU64::new(0) }
    }

    /// Writes (or rotates) the pod's projected token.
    pub fn write_projected(&self, pod: &Pod, token: &str) {
        self.write(pod, "kubernetes.io~projected", "kube-api-access", token);
    }

    /// Writes the Secret volume holding a legacy token.
    pub fn write_secret(&self, pod: &Pod, token: &str) {
        self.write(pod, "kubernetes.io~secret", "legacy-token", token);
    }

    /// The pod is gone: the kubelet removes its directory.
    pub fn remove(&self, pod: &Pod) {
        std::fs::remove_dir_all(self.root.join(&pod.uid)).unwrap();
    }

    /// The atomic writer: a new timestamped directory, `..data` swapped to it by rename, the
    /// previous directory removed; `token` is a link through `..data`.
    fn write(&self, pod: &Pod, plugin: &str, volume: &str, token: &str) {
        let dir = self.root.join(&pod.uid).join("volumes").join(plugin).join(volume);
        std::fs::create_dir_all(&dir).unwrap();
        let data = format!("..2026_01_01_00_00_00.{:010}", self.writes.fetch_add(1, Ordering::Relaxed));
        std::fs::create_dir(dir.join(&data)).unwrap();
        std::fs::write(dir.join(&data).join("token"), token).unwrap();
        let previous = std::fs::read_link(dir.join("..data")).ok();
        std::os::unix::fs::symlink(&data, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        if !dir.join("token").exists() {
            std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
        }
        if let Some(previous) = previous {
            std::fs::remove_dir_all(dir.join(previous)).unwrap();
        }
    }
}
