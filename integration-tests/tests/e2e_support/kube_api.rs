//! A Kubernetes API server for the agents, on loopback: just enough of the list/watch protocol
//! for kube-rs watchers of pods (`fieldSelector=spec.nodeName=<node>`) and of one node
//! (`fieldSelector=metadata.name=<node>`). The scenario adds and deletes pods; every change gets
//! the next resourceVersion and is kept, so a watch resuming from any version misses nothing.
//! The agent processes reach it through a kubeconfig file, as they would reach a real one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The API's objects and their history.
#[derive(Default)]
struct Store {
    version: u64,
    pods: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
    /// (resourceVersion, ADDED|MODIFIED|DELETED, pod)
    pod_events: Vec<(u64, &'static str, Value)>,
}

/// A running fake API server; dropping it leaves the server running until the test ends.
#[derive(Clone)]
pub struct KubeApi {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    changed: Arc<Notify>,
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = KubeApi { addr: listener.local_addr().unwrap(), store: Arc::default(), changed: Arc::default() };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(socket));
            }
        });
        api
    }

    /// A kubeconfig that points a client at this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": format!("http://{}", self.addr)}}],
            "users": [{"name": "agent", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}]
        });
        std::fs::write(&path, config.to_string()).unwrap();
        path
    }

    pub fn put_node(&self, node: Value) {
        let mut s = self.store.lock().unwrap();
        s.version += 1;
        let mut node = node;
        node["metadata"]["resourceVersion"] = json!(s.version.to_string());
        let name = node["metadata"]["name"].as_str().unwrap().to_string();
        s.nodes.insert(name, node);
    }

    /// Adds (or replaces) a pod, keyed by uid.
    pub fn put_pod(&self, pod: Value) {
        self.change(pod, false);
    }

    /// Deletes a pod: the watch's DELETED event carries its last state.
    pub fn delete_pod(&self, pod: Value) {
        self.change(pod, true);
    }

    fn change(&self, mut pod: Value, delete: bool) {
        let mut s = self.store.lock().unwrap();
        s.version += 1;
        pod["metadata"]["resourceVersion"] = json!(s.version.to_string());
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        let kind = if delete {
            s.pods.remove(&uid);
            "DELETED"
        } else if s.pods.insert(uid, pod.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let version = s.version;
        s.pod_events.push((version, kind, pod));
        drop(s);
        self.changed.notify_waiters();
    }

    /// Serves HTTP/1.1 requests on one connection, one after the other (kube-rs keeps
    /// connections alive); a watch holds the connection until the client goes away.
    async fn serve(self, socket: TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut request = String::new();
            if read.read_line(&mut request).await.unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut header = String::new();
                if read.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let param =
                |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).map(decode);
            let selector = param("fieldSelector").unwrap_or_default();
            let watch = param("watch").as_deref() == Some("true");
            let from: u64 = param("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let ok = match path {
                "/api/v1/pods" => {
                    let node = selector.strip_prefix("spec.nodeName=").unwrap_or("").to_string();
                    if watch {
                        self.watch_pods(&mut write, &node, from).await;
                        return;
                    }
                    self.list_pods(&mut write, &node).await
                }
                "/api/v1/nodes" => {
                    if watch {
                        // Nodes do not change in these tests: the watch stays open and quiet.
                        let _ = write.write_all(CHUNKED_OK).await;
                        std::future::pending::<()>().await;
                    }
                    self.list_nodes(&mut write, selector.strip_prefix("metadata.name=").unwrap_or("")).await
                }
                _ => write.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await.is_ok(),
            };
            if !ok {
                return;
            }
        }
    }

    async fn list_pods(&self, write: &mut OwnedWriteHalf, node: &str) -> bool {
        let (version, items) = {
            let s = self.store.lock().unwrap();
            let items: Vec<Value> = s.pods.values().filter(|p| p["spec"]["nodeName"] == node).cloned().collect();
            (s.version, items)
        };
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": version.to_string()}, "items": items});
        respond(write, &list).await
    }

    async fn list_nodes(&self, write: &mut OwnedWriteHalf, name: &str) -> bool {
        let (version, items) = {
            let s = self.store.lock().unwrap();
            (s.version, s.nodes.get(name).cloned().into_iter().collect::<Vec<_>>())
        };
        let list = json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": version.to_string()}, "items": items});
        respond(write, &list).await
    }

    /// Streams every pod event of `node` after resourceVersion `from`, as they happen.
    async fn watch_pods(&self, write: &mut OwnedWriteHalf, node: &str, mut from: u64) {
        if write.write_all(CHUNKED_OK).await.is_err() {
            return;
        }
        loop {
            let changed = self.changed.notified();
            let due: Vec<(u64, String)> = {
                let s = self.store.lock().unwrap();
                s.pod_events
                    .iter()
                    .filter(|(v, _, p)| *v > from && p["spec"]["nodeName"] == node)
                    .map(|(v, kind, p)| (*v, format!("{}\n", json!({"type": kind, "object": p}))))
                    .collect()
            };
            for (version, line) in due {
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                if write.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                from = version;
            }
            changed.await;
        }
    }
}

const CHUNKED_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

async fn respond(write: &mut OwnedWriteHalf, body: &Value) -> bool {
    let body = body.to_string();
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    write.write_all(head.as_bytes()).await.is_ok() && write.write_all(body.as_bytes()).await.is_ok()
}

/// Percent-decoding of a query parameter (`spec.nodeName%3Dworker-1`).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
