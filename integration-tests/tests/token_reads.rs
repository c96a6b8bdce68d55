//! The token-read watch for real (issue 22): the real agent binary with `--watch-token-reads`
//! (fanotify) on a kubelet-like directory on a real filesystem, real cgroups (a cgroupfs-driver
//! `kubepods/besteffort/pod<uid>/<container>` tree and a `system.slice/kubelet.service` made under
//! the host's cgroup mount, processes moved in through `cgroup.procs`), and processes that open a
//! pod's token file from inside and outside that pod's cgroup. The agent attests to a real
//! `tokentrail standalone` (gRPC over mTLS), whose engine's findings are asserted: exactly the
//! foreign reads (another pod's container, a host shell) become findings, not the pod's own
//! container, the kubelet or an allow-listed executable; and a use of the harvested token from
//! outside the cluster, posted to the audit webhook afterwards, becomes `token-harvested-then-used`.
//!
//! It needs root, fanotify and a writable cgroup hierarchy: without them it prints why it skipped
//! and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;
mod webhook_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aggregator_support::WAIT;
use base64::Engine as _;
use correlator_support::{binary, stop};
use webhook_support::{post, tls};

const TOKEN_POD: &str = "1a2b3c4d-0000-4000-8000-00000000000a";
const THIEF_POD: &str = "1a2b3c4d-0000-4000-8000-00000000000b";
const JTI: &str = "jti-harvest-1";
const REPLAY_FROM: &str = "203.0.113.77";

/// A projected token of `namespace/sa` bound to pod `pod` on worker-1 (the agent reads claims
/// only; the signature is a placeholder).
fn pod_token(jti: &str, namespace: &str, sa: &str, pod: &str, pod_uid: &str) -> String {
    let claims = serde_json::json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"], "exp": 4_000_000_000_i64, "iat": 1_773_129_600,
        "iss": "https://kubernetes.default.svc.cluster.local", "jti": jti, "nbf": 1_773_129_600,
        "kubernetes.io": {"namespace": namespace, "node": {"name": "worker-1", "uid": "node-uid"},
            "pod": {"name": pod, "uid": pod_uid}, "serviceaccount": {"name": sa, "uid": "sa-uid"}},
        "sub": format!("system:serviceaccount:{namespace}:{sa}")
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.c2ln", b64.encode(br#"{"alg":"RS256","kid":"k"}"#), b64.encode(claims.to_string()))
}

/// The kubelet's atomic-writer layout; the path readers open (`<volume>/token`).
fn write_token(root: &Path, pod_uid: &str, token: &str) -> PathBuf {
    let vol = root.join(pod_uid).join("volumes/kubernetes.io~projected/kube-api-access-abcde");
    let data = vol.join("..2026_03_10_08_00_00.0000000001");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), token).unwrap();
    std::os::unix::fs::symlink("..2026_03_10_08_00_00.0000000001", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", vol.join("token")).unwrap();
    vol.join("token")
}

/// A cgroup hierarchy this test may make directories in and move processes into: cgroup v2's
/// (alone, or `unified` beside v1 controllers), else v1's `pids` controller. `Err`: why not.
fn cgroup_root() -> Result<PathBuf, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Err(format!("not root (effective uid {})", euid.unwrap_or("?")));
    }
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids"] {
        let root = PathBuf::from(candidate);
        let probe = root.join(format!("tokentrail-probe-{}", std::process::id()));
        if root.join("cgroup.procs").exists() && std::fs::create_dir(&probe).is_ok() {
            let _ = std::fs::remove_dir(&probe);
            return Ok(root);
        }
    }
    Err("no writable cgroup hierarchy under /sys/fs/cgroup".into())
}

/// Made cgroups, removed (deepest first) when the test ends.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(&mut self, root: &Path, relative: &str) -> PathBuf {
        let mut path = root.to_path_buf();
        for part in relative.split('/') {
            path.push(part);
            if !path.exists() {
                std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                self.0.push(path.clone());
            }
        }
        path
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A shell that moves itself into `cgroup` (when given), opens `token` on descriptor 3 and
/// reads one line from it (in the shell: no child process, so the opener is this pid), then
/// stays alive for a while so the agent can look it up in /proc. Nothing is printed.
fn reader(shell: &Path, cgroup: Option<&Path>, token: &Path) -> Child {
    let enter = cgroup.map(|c| format!("echo $$ > {}/cgroup.procs && ", c.display())).unwrap_or_default();
    let script = format!("{enter}exec 3< {} && read -r _line <&3; sleep 4", token.display());
    Command::new(shell).args(["-c", &script]).stdout(Stdio::null()).spawn().expect("start a reader")
}

struct Standalone {
    grpc: SocketAddr,
    webhook: SocketAddr,
    child: Child,
}

fn start_standalone() -> Standalone {
    let path = |n: &str| tls(n).to_str().unwrap().to_string();
    let args: Vec<String> = [
        "standalone",
        "--cluster",
        "onprem",
        "--cluster-network",
        "10.0.0.0/8",
        "--webhook-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--webhook-allowed-client",
        "client",
        "--agent-node-dns-name",
        "agent.{node}.test",
        "--findings",
        "-",
        "--emit-interval",
        "200ms",
    ]
    .into_iter()
    .map(String::from)
    .chain(["--tls-cert".into(), path("server.pem"), "--tls-key".into(), path("server.key")])
    .chain(["--webhook-client-ca".into(), path("ca.pem"), "--agent-client-ca".into(), path("ca.pem")])
    .collect();
    let mut child = Command::new(binary())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tokentrail standalone");
    let line = wait_for_line(lines(child.stderr.take().unwrap(), "standalone"), "standalone running");
    let addr = |name: &str| -> SocketAddr {
        let start = line.find(&format!("{name}=Some(")).unwrap() + name.len() + 6;
        line[start..].split(')').next().unwrap().parse().unwrap()
    };
    Standalone { grpc: addr("grpc"), webhook: addr("webhook"), child }
}

/// The lines of a child's output, passed through to the test's stderr.
fn lines(out: impl std::io::Read + Send + 'static, who: &'static str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("[{who}] {line}");
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_for_line(rx: mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The findings so far, each by its latest line (an update repeats its id).
fn findings(seen: &[String]) -> Vec<serde_json::Value> {
    let mut by_id = std::collections::BTreeMap::new();
    for line in seen.iter().filter(|l| l.starts_with('{')) {
        let f: serde_json::Value = serde_json::from_str(line).unwrap();
        by_id.insert(f["id"].as_str().unwrap().to_string(), f);
    }
    by_id.into_values().collect()
}

fn collect_until(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(&findings(seen)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what}: {:#?}", findings(seen));
        if let Ok(line) = rx.recv_timeout(left.min(Duration::from_millis(500))) {
            seen.push(line);
        }
    }
}

fn rules(all: &[serde_json::Value]) -> Vec<String> {
    let mut r: Vec<String> = all.iter().map(|f| f["rule"].as_str().unwrap().to_string()).collect();
    r.sort();
    r
}

/// One audit event: the harvested token used from `REPLAY_FROM` at `time` (RFC 3339).
fn replay_event(time: &str) -> String {
    let extra = format!(
        r#""authentication.kubernetes.io/credential-id":["JTI={JTI}"],"authentication.kubernetes.io/node-name":["worker-1"],"authentication.kubernetes.io/pod-name":["api-1"],"authentication.kubernetes.io/pod-uid":["{TOKEN_POD}"]"#
    );
    let event = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"replay-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/secrets","verb":"list","user":{{"username":"system:serviceaccount:payments:api","uid":"sa-uid","groups":["system:serviceaccounts","system:authenticated"],"extra":{{{extra}}}}},"sourceIPs":["{REPLAY_FROM}"],"userAgent":"curl/8.0","objectRef":{{"resource":"secrets","namespace":"payments","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
    );
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{event}]}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_exactly_the_foreign_reads_of_a_token_file_and_the_harvest_then_use() {
    let cgroup_root = match cgroup_root() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("SKIPPED the_agent_reports_exactly_the_foreign_reads_of_a_token_file: {why}");
            return;
        }
    };
    let work = tempfile::tempdir().unwrap();
    let kubelet = work.path().join("pods");
    let token = pod_token(JTI, "payments", "api", "api-1", TOKEN_POD);
    let token_path = write_token(&kubelet, TOKEN_POD, &token);
    // A second pod on the node, with its own token: the thief's.
    write_token(&kubelet, THIEF_POD, &pod_token("jti-thief", "default", "default", "debug-shell", THIEF_POD));
    // The allow-listed node tool: a copy of the shell under its own path.
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    let allowed_tool = work.path().join("node-agent-tool");
    std::fs::copy(&shell, &allowed_tool).unwrap();

    let tag = format!("tokentrail-test-{}", std::process::id());
    let mut cgroups = Cgroups(Vec::new());
    let own = cgroups.make(&cgroup_root, &format!("{tag}/kubepods/besteffort/pod{TOKEN_POD}/c0ffee01"));
    let thief = cgroups.make(&cgroup_root, &format!("{tag}/kubepods/besteffort/pod{THIEF_POD}/c0ffee02"));
    let kubelet_unit = cgroups.make(&cgroup_root, &format!("{tag}/system.slice/kubelet.service"));

    let mut s = start_standalone();
    let stdout = lines(s.child.stdout.take().unwrap(), "findings");
    let path = |n: &str| tls(n).to_str().unwrap().to_string();
    let mut agent = Command::new(binary())
        .args(["agent", "--node", "worker-1", "--no-kube", "--watch-token-reads", "--rescan-interval", "5s"])
        .args(["--kubelet-dir", kubelet.to_str().unwrap(), "--aggregator", &format!("https://{}", s.grpc)])
        .args(["--tls-ca", &path("ca.pem"), "--tls-cert", &path("client.pem"), "--tls-key", &path("client.key")])
        .args(["--tls-server-name", "aggregator.test", "--token-read-allow-exe", allowed_tool.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tokentrail agent");
    let (agent_log_tx, agent_log) = mpsc::channel();
    let agent_lines = lines(agent.stderr.take().unwrap(), "agent");
    let line = wait_for_line_forwarding(&agent_lines, "watching opens of token files", &agent_log_tx);
    if line.contains("fanotify_init") {
        // The kernel or the sandbox refuses fanotify: the agent said why and stopped.
        eprintln!("SKIPPED the_agent_reports_exactly_the_foreign_reads_of_a_token_file: {line}");
        let _ = agent.wait();
        stop(s.child);
        return;
    }

    // Allowed: the pod's own container, the kubelet, the allow-listed tool. Foreign: another
    // pod's container and a host shell.
    let mut readers = vec![
        reader(&shell, Some(&own), &token_path),
        reader(&shell, Some(&kubelet_unit), &token_path),
        reader(&allowed_tool, None, &token_path),
        reader(&shell, Some(&thief), &token_path),
        reader(&shell, None, &token_path),
    ];

    let mut seen = Vec::new();
    collect_until(&stdout, &mut seen, "findings of both foreign reads", |all| {
        let r = rules(all);
        r.contains(&"token-file-read-by-other-pod".to_string()) && r.contains(&"token-file-read-on-host".to_string())
    });

    // The harvested token, used from outside the cluster after the reads (the agent's clock).
    #[allow(clippy::disallowed_methods)] // the agent stamps reads with the real clock
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let at = tokentrail_proto::Timestamp(i64::try_from(now.as_micros()).unwrap() + 1_000_000).to_string();
    assert_eq!(post(s.webhook, replay_event(&at).as_bytes()).await, 200);
    collect_until(&stdout, &mut seen, "token-harvested-then-used", |all| {
        rules(all).contains(&"token-harvested-then-used".to_string())
    });
    // Let late findings of the allowed readers (there must be none) arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.extend(stdout.try_iter());

    for r in &mut readers {
        let _ = r.kill();
        let _ = r.wait();
    }
    stop(agent);
    stop(s.child);
    // The agent's log, whole: the token never appears in it.
    let mut agent_text: Vec<String> = agent_log.try_iter().collect();
    agent_text.extend(agent_lines.try_iter());
    drop(cgroups);

    let all = findings(&seen);
    assert_eq!(
        rules(&all),
        [
            "token-file-read-by-other-pod",
            "token-file-read-on-host",
            "token-harvested-then-used",
            "token-harvested-then-used",
            "token-used-off-cluster"
        ],
        "exactly the foreign reads, the replay, and one chain per reader: {all:#?}"
    );
    let by_rule = |rule: &str| all.iter().find(|f| f["rule"] == rule).unwrap();
    let other = by_rule("token-file-read-by-other-pod");
    assert_eq!(other["severity"], "critical");
    assert_eq!(other["credential"]["id"], format!("JTI={JTI}"));
    assert_eq!(other["pod"]["uid"], TOKEN_POD);
    assert!(other["title"].as_str().unwrap().contains(THIEF_POD), "{other:#}");
    let host = by_rule("token-file-read-on-host");
    assert_eq!(host["severity"], "high");
    assert!(host["title"].as_str().unwrap().contains(shell.to_str().unwrap()), "{host:#}");
    let chains: Vec<&serde_json::Value> = all.iter().filter(|f| f["rule"] == "token-harvested-then-used").collect();
    for chain in &chains {
        assert_eq!((chain["severity"].as_str(), chain["source_ip"].as_str()), (Some("critical"), Some(REPLAY_FROM)));
    }
    assert!(chains.iter().any(|c| c["title"].as_str().unwrap().contains(THIEF_POD)), "{chains:#?}");
    assert!(chains.iter().any(|c| c["title"].as_str().unwrap().contains("host process")), "{chains:#?}");
    assert!(!agent_text.iter().any(|l| l.contains(&token)), "the agent logged the token");
    assert!(agent_text.iter().any(|l| l.contains("token file opened by a foreign reader")));
}

/// Waits for a line like [`wait_for_line`], keeping every line it passes in `keep`.
fn wait_for_line_forwarding(rx: &mpsc::Receiver<String>, needle: &str, keep: &mpsc::Sender<String>) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no agent log line with {needle:?}"));
        let _ = keep.send(line.clone());
        if line.contains(needle) || line.contains("fanotify_init") {
            return line;
        }
    }
}
