//! How fast the engine folds observations on one core, how long a report takes, and how many
//! bytes of persisted state each active credential costs.
//!
//! ```sh
//! cargo run --release -p tokentrail-correlator-core --example engine_throughput [PODS] [USES_PER_CREDENTIAL]
//! ```
//!
//! A synthetic cluster: PODS pods (default 2,000) on 40 nodes, each rotating its token 8 times
//! (one credential per ~48 minutes), each credential used USES_PER_CREDENTIAL times (default
//! 60) from its pod's address, plus a replay from outside for one pod in fifty. Observations are
//! built before the clock starts: only the engine is measured.

#[allow(dead_code)] // each example uses its part of the generator
mod synthetic;

use std::time::Instant;

use synthetic::{cluster, ROTATIONS};
use tokentrail_correlator_core::{Engine, EngineConfig};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>().expect("numbers"));
    let pods = args.next().unwrap_or(2_000);
    let uses_per_credential = args.next().unwrap_or(60);
    let observations = cluster(pods, uses_per_credential);
    let credentials = pods * ROTATIONS;

    let mut engine = Engine::new(EngineConfig::default());
    let started = Instant::now();
    let n = observations.len();
    for o in observations {
        engine.observe(o);
    }
    let fold = started.elapsed();
    let started = Instant::now();
    let report = engine.report();
    let evaluate = started.elapsed();
    let snapshot = engine.snapshot().expect("snapshot");

    println!("observations          {n}");
    println!(
        "fold                  {:.2} s ({:.0} observations/s on one core)",
        fold.as_secs_f64(),
        n as f64 / fold.as_secs_f64()
    );
    println!("report (every rule)   {:.3} s, {} findings", evaluate.as_secs_f64(), report.findings.len());
    println!("active credentials    {credentials}");
    println!(
        "state snapshot        {:.1} MiB ({:.0} bytes per credential)",
        snapshot.len() as f64 / (1 << 20) as f64,
        snapshot.len() as f64 / f64::from(credentials)
    );
}
