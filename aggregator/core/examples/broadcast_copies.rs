//! Records per second the aggregator broadcasts about nodes, for a simulated fleet: every node
//! fact on every partition (as before `node_reports`) against the facts that add something plus
//! one progress per interval.
//!
//! `cargo run --release -p tokentrail-aggregator-core --example broadcast_copies -- [NODES]
//! [PARTITIONS] [KUBELET_REQUESTS_PER_NODE_PER_S] [PROGRESS_INTERVAL_S]` (defaults 1000, 24,
//! 0.2, 5): an hour of event time in which every node's agent sends a heartbeat every 30 s and
//! every kubelet's requests name its address (0.2/s is a lease renewal every 10 s plus a status
//! update every 10 s); each node gets a new address once, halfway.

use std::net::{IpAddr, Ipv4Addr};

use tokentrail_aggregator_core::node_reports::NodeReports;
use tokentrail_proto::observation::{FactSource, NodeFact};
use tokentrail_proto::time::SECOND;
use tokentrail_proto::Timestamp;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let nodes: u32 = arg(1, 1000);
    let partitions: u64 = arg(2, 24);
    let kubelet_rate: f64 = arg(3, 0.2);
    let interval_s: i64 = arg(4, 5);
    let hour_s: i64 = 3600;
    let kubelet_every = (1.0 / kubelet_rate).max(0.001);

    // Events in time order: (time, node, source).
    let mut events: Vec<(i64, u32, FactSource)> = Vec::new();
    for n in 0..nodes {
        // Spread the nodes' phases over the period.
        let phase = i64::from(n) * SECOND / i64::from(nodes.max(1));
        let mut t = phase;
        while t < hour_s * SECOND {
            events.push((t, n, FactSource::Attestation));
            t += 30 * SECOND;
        }
        let mut t = phase as f64;
        while t < (hour_s * SECOND) as f64 {
            events.push((t as i64, n, FactSource::AuditLog));
            t += kubelet_every * SECOND as f64;
        }
    }
    events.sort_unstable_by_key(|e| e.0);

    let mut reports = NodeReports::default();
    let (mut before, mut broadcast, mut progress) = (0u64, 0u64, 0u64);
    let mut next_progress = interval_s * SECOND;
    for &(t, n, source) in &events {
        while t >= next_progress {
            progress += reports.take_progress().len() as u64;
            next_progress += interval_s * SECOND;
        }
        // Each node moves to a new address halfway: news that must go out.
        let moved = u32::from(t >= hour_s * SECOND / 2);
        let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n * 2 + moved));
        let fact = NodeFact {
            time: Timestamp(t),
            source: Some(source),
            name: format!("node-{n}"),
            addresses: vec![address],
            ..NodeFact::default()
        };
        before += partitions;
        if reports.offer("prod", &fact) {
            broadcast += partitions;
        }
    }
    progress += reports.take_progress().len() as u64;
    let after = broadcast + progress * partitions;
    let per_s = |records: u64| records as f64 / hour_s as f64;
    println!(
        "{nodes} nodes, {partitions} partitions, heartbeat 30 s, {kubelet_rate} kubelet requests/s per node, \
         progress every {interval_s} s, 1 h of event time"
    );
    println!("node facts in:                {:>10} ({:.1}/s)", events.len(), events.len() as f64 / hour_s as f64);
    println!("records before (every copy):  {before:>10} ({:.1}/s)", per_s(before));
    println!(
        "records after:                {after:>10} ({:.1}/s: {broadcast} node-fact copies, {} progress copies)",
        per_s(after),
        progress * partitions
    );
    println!("ratio before/after:          {:>10.0}x", before as f64 / after.max(1) as f64);
}
