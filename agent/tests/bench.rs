//! Load check, not a timed test (`cargo test -p tokentrail-agent --release --test bench -- --ignored
//! --nocapture`): a node with 110 pods and 250 token files; the initial snapshot, a rotation of
//! every token at once (how long until the aggregator holds every new JTI), and the agent's CPU
//! at steady state (this process: agent plus the in-process test server).

#![allow(clippy::unwrap_used)] // a measurement harness: failing to read /proc should panic

mod common;

use std::sync::Arc;

use std::time::{Duration, Instant};

use common::{config, is_snapshot, jtis_in, pod_token, start, Kubelet, TestServer};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn write_all(k: &Kubelet, generation: u32) {
    let mut n = 0;
    for p in 0..110 {
        let uid = format!("{p:08x}-0000-4000-8000-000000000000");
        // 2 or 3 token volumes per pod: 250 files.
        let vols = if p < 30 { 3 } else { 2 };
        for v in 0..vols {
            let jti = format!("g{generation}-p{p}-v{v}");
            k.projected_token(
                &uid,
                &format!("kube-api-access-{v:05}"),
                &pod_token(&jti, "ns", "sa", "pod", &uid, "worker-1", 1),
                &format!("2025_06_28_{:02}_00_00", generation % 24),
            );
            n += 1;
        }
    }
    assert_eq!(n, 250);
}

#[tokio::test]
#[ignore = "load check: run explicitly with --release --ignored --nocapture"]
async fn node_with_110_pods_and_250_tokens() {
    let k = Arc::new(Kubelet::new());
    write_all(&k, 1);
    let server = TestServer::start().await;
    let rss_before = rss_kib();
    let t0 = Instant::now();
    let agent = start(config(&k, &server));
    server
        .wait_for("snapshot", Duration::from_secs(30), |m| {
            m.iter().any(|(_, _, m)| is_snapshot(m) && jtis_in(m).len() == 250)
        })
        .await;
    println!("initial scan + snapshot of 250 credentials received: {:?}", t0.elapsed());

    // The kubelet writes from its own process: write from a blocking thread, concurrently with
    // the agent on this runtime.
    let t1 = Instant::now();
    let writer = k.clone();
    let written = tokio::task::spawn_blocking(move || {
        write_all(&writer, 2);
        t1.elapsed()
    });
    server
        .wait_for("all rotated", Duration::from_secs(30), |m| {
            let seen: std::collections::HashSet<String> =
                m.iter().flat_map(|(_, _, m)| jtis_in(m)).filter(|j| j.starts_with("g2-")).collect();
            seen.len() == 250
        })
        .await;
    let written = written.await.unwrap();
    println!(
        "rotation of all 250 tokens (writes took {written:?}): every new JTI received {:?} after the first write",
        t1.elapsed()
    );
    let messages = server.messages().len();
    println!("messages for the rotation: {}", messages - 1);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = cpu_seconds();
    let idle = Duration::from_secs(20);
    tokio::time::sleep(idle).await;
    let cpu = cpu_seconds() - cpu0;
    println!(
        "steady state: {:.3}% of a core over {idle:?}; RSS {} KiB (process; {} KiB before the agent started)",
        100.0 * cpu / idle.as_secs_f64(),
        rss_kib(),
        rss_before
    );
    agent.shutdown().await;
}
