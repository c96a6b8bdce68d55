//! What `tokentrail incidents` pays per commit: the feed regroups every finding it holds after
//! each batch, so a commit costs a grouping of all of them.
//!
//! ```sh
//! cargo run --release -p tokentrail-correlator-core --example incident_feed_cost [FINDINGS]
//! ```
//!
//! FINDINGS (default 100,000, the default cap) off-cluster uses, three per credential, spread
//! over 40 hours of event time (inside the 48-hour horizon: nothing is forgotten). Prints the
//! time to fold them all and group them once (a restart's replay), then the time of one commit
//! that adds ten findings (the steady state), and the process's peak resident memory.

use std::time::Instant;

use tokentrail_correlator_core::incident_feed::{Feed, Limits};
use tokentrail_correlator_core::Finding;

fn finding(i: usize, n: usize) -> Finding {
    let minute = i * 40 * 60 / n.max(1);
    let at = |m: usize| format!("2026-03-{:02}T{:02}:{:02}:00Z", 10 + m / (24 * 60), m / 60 % 24, m % 60);
    let record = serde_json::json!({
        "schema": "tokentrail.finding/v1", "id": format!("f{i:08}"), "rule": "token-used-off-cluster",
        "severity": "critical", "title": format!("Token of pod shop/api-{} used from outside the cluster", i / 3),
        "cluster": "prod", "serviceaccount": {"namespace": "shop", "name": "api"},
        "credential": {"kind": "pod-bound", "id": format!("JTI={}", i / 3)},
        "pod": {"namespace": "shop", "name": format!("api-{}", i / 3), "uid": format!("uid-{}", i / 3)},
        "source_ip": format!("203.0.113.{}", i % 250), "expected_ips": ["10.244.1.12"],
        "first_seen": at(minute), "last_seen": at(minute + 1),
        "count": 12, "user_agents": ["curl/8.5.0"],
        "requests": [{"verb": "get", "resource": "secrets", "namespace": "shop", "name": "stripe-api-key", "code": 200}],
        "attack": [], "explanation": "A pod's token used from outside the cluster has been stolen and replayed."
    });
    serde_json::from_value(record).expect("a finding record")
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let findings: Vec<Finding> = (0..n).map(|i| finding(i, n)).collect();
    let mut feed = Feed::new(Limits::default());
    let started = Instant::now();
    for f in findings {
        feed.fold(f);
    }
    let first = feed.changes();
    let replay = started.elapsed();
    let started = Instant::now();
    for i in n..n + 10 {
        feed.fold(finding(i, n));
    }
    let next = feed.changes();
    let commit = started.elapsed();
    println!(
        "{n} findings: folded and grouped into {} incidents in {:.2} s; a commit of 10 more: {:.3} s ({} records)",
        first.len(),
        replay.as_secs_f64(),
        commit.as_secs_f64(),
        next.len()
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM")) {
            println!("peak resident memory: {}", line.trim_start_matches("VmHWM:").trim());
        }
    }
}
