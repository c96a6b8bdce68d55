//! The kube-rs pod source against an HTTP server on loopback that speaks the Kubernetes
//! list/watch wire format (hand-written responses in the shape the apiserver sends; a real API
//! server arrives with a later issue): the initial list, watch events, a watch that breaks and
//! resumes from the last resourceVersion, and the node's addresses.

#![allow(clippy::unwrap_used)] // test server plumbing: a failed socket operation should panic

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokentrail_agent::pods::PodUpdate;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NODE: &str = "worker-1";

/// What the fake API server does on a pod watch: send this event line, or end the response.
enum WatchStep {
    Event(serde_json::Value),
    Break,
}

#[derive(Clone)]
struct FakeApi {
    requests: Arc<Mutex<Vec<String>>>,
    pods: Arc<Mutex<Vec<serde_json::Value>>>,
    steps: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<WatchStep>>>,
}

fn pod(uid: &str, name: &str, rv: u32, ip: Option<&str>) -> serde_json::Value {
    let mut status = serde_json::json!({"phase": "Running"});
    if let Some(ip) = ip {
        status = serde_json::json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]});
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "payments", "uid": uid, "resourceVersion": rv.to_string()},
        "spec": {"nodeName": NODE, "serviceAccountName": "api", "containers": [{"name": "c", "image": "i"}]},
        "status": status
    })
}

async fn start_api(pods: Vec<serde_json::Value>) -> (SocketAddr, FakeApi, mpsc::UnboundedSender<WatchStep>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let api = FakeApi {
        requests: Arc::default(),
        pods: Arc::new(Mutex::new(pods)),
        steps: Arc::new(tokio::sync::Mutex::new(rx)),
    };
    let server = api.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::spawn(server.clone().connection(sock));
        }
    });
    (addr, api, tx)
}

impl FakeApi {
    /// Serves HTTP/1.1 requests on one connection (kube-rs reuses connections).
    async fn connection(self, sock: TcpStream) {
        let (read, mut write) = sock.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut header = String::new();
                if read.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
            self.requests.lock().unwrap().push(target.clone());
            let watch = target.contains("watch=true");
            if target.starts_with("/api/v1/nodes") {
                if watch {
                    // Nothing changes on the node: hold the watch open.
                    write
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                        )
                        .await
                        .unwrap();
                    std::future::pending::<()>().await;
                }
                let node = serde_json::json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": NODE, "uid": "node-uid-1", "resourceVersion": "5"},
                    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
                    "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.11"}, {"type": "Hostname", "address": NODE}]}
                });
                let list = serde_json::json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "5"}, "items": [node]});
                respond_json(&mut write, &list).await;
            } else if target.starts_with("/api/v1/pods") && !watch {
                let items = self.pods.lock().unwrap().clone();
                let list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": items});
                respond_json(&mut write, &list).await;
            } else if target.starts_with("/api/v1/pods") {
                write
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    )
                    .await
                    .unwrap();
                loop {
                    let step = self.steps.lock().await.recv().await;
                    match step {
                        Some(WatchStep::Event(ev)) => {
                            let line = format!("{ev}\n");
                            write.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await.unwrap();
                        }
                        // The apiserver (or a proxy) ends the watch: the client must resume.
                        Some(WatchStep::Break) | None => {
                            write.write_all(b"0\r\n\r\n").await.unwrap();
                            break;
                        }
                    }
                }
            } else {
                write.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await.unwrap();
            }
        }
    }
}

async fn respond_json(write: &mut tokio::net::tcp::OwnedWriteHalf, body: &serde_json::Value) {
    let body = body.to_string();
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(body.as_bytes()).await.unwrap();
}

async fn next(rx: &mut mpsc::Receiver<PodUpdate>) -> PodUpdate {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an update in time").expect("source running")
}

/// The next pod update, skipping Node updates (the node watch runs concurrently).
async fn next_pod(rx: &mut mpsc::Receiver<PodUpdate>) -> PodUpdate {
    loop {
        match next(rx).await {
            PodUpdate::Node(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn pods_of_this_node_are_listed_watched_and_resumed_after_a_broken_watch() {
    let (addr, api, steps) = start_api(vec![pod("uid-a", "api-0", 9, None)]).await;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(tokentrail_agent::kube_source::run(client, NODE.into(), tx));

    // The initial list is one Replace.
    let PodUpdate::Replace(pods) = next_pod(&mut rx).await else { panic!("expected the initial list") };
    assert_eq!(pods.len(), 1);
    assert_eq!(
        (pods[0].uid.as_str(), pods[0].name.as_str(), pods[0].serviceaccount.as_str()),
        ("uid-a", "api-0", "api")
    );
    assert!(pods[0].ips.is_empty(), "not yet assigned");

    // The kubelet reports the pod's address: a watch MODIFIED event.
    steps
        .send(WatchStep::Event(
            serde_json::json!({"type": "MODIFIED", "object": pod("uid-a", "api-0", 11, Some("10.244.1.12"))}),
        ))
        .unwrap();
    let PodUpdate::Upsert(p) = next_pod(&mut rx).await else { panic!("expected an upsert") };
    assert_eq!(p.ips, ["10.244.1.12".parse::<std::net::IpAddr>().unwrap()]);

    // The watch breaks; the watcher resumes from resourceVersion 11 and sees what follows.
    steps.send(WatchStep::Break).unwrap();
    steps
        .send(WatchStep::Event(
            serde_json::json!({"type": "ADDED", "object": pod("uid-b", "web-0", 12, Some("10.244.1.13"))}),
        ))
        .unwrap();
    let PodUpdate::Upsert(p) = next_pod(&mut rx).await else { panic!("expected pod B") };
    assert_eq!(p.uid, "uid-b");
    steps
        .send(WatchStep::Event(
            serde_json::json!({"type": "DELETED", "object": pod("uid-a", "api-0", 13, Some("10.244.1.12"))}),
        ))
        .unwrap();
    assert_eq!(next_pod(&mut rx).await, PodUpdate::Remove("uid-a".into()));

    let requests = api.requests.lock().unwrap().clone();
    let pod_requests: Vec<&String> = requests.iter().filter(|r| r.starts_with("/api/v1/pods")).collect();
    assert!(
        pod_requests.iter().all(|r| r.contains("fieldSelector=spec.nodeName%3Dworker-1")),
        "scoped to the node: {pod_requests:?}"
    );
    let watches: Vec<&&String> = pod_requests.iter().filter(|r| r.contains("watch=true")).collect();
    assert!(watches.len() >= 2, "{watches:?}");
    assert!(watches[1].contains("resourceVersion=11"), "resumed from the last event: {watches:?}");
    source.abort();
}

#[tokio::test]
async fn the_nodes_addresses_are_reported() {
    let (addr, api, _steps) = start_api(vec![]).await;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(tokentrail_agent::kube_source::run(client, NODE.into(), tx));
    let node = loop {
        if let PodUpdate::Node(n) = next(&mut rx).await {
            break n;
        }
    };
    assert_eq!((node.name.as_str(), node.uid.as_str()), (NODE, "node-uid-1"));
    assert_eq!(node.addresses, [("InternalIP".to_string(), "10.0.1.11".parse().unwrap())]);
    assert_eq!(node.pod_cidrs, ["10.244.1.0/24"]);
    assert!(api
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.starts_with("/api/v1/nodes") && r.contains("fieldSelector=metadata.name%3Dworker-1")));
    source.abort();
}
