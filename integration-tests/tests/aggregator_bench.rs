//! Benchmark of the audit path (not a timed test; `#[ignore]`d): records per second decoded and
//! produced by the aggregator, next to a plain consumer's raw read rate of the same topic on the
//! same broker. Run with
//! `cargo test --release -p tokentrail-integration-tests --test aggregator_bench -- --ignored --nocapture`
//! (`TOKENTRAIL_BENCH_RECORDS`, default 200000). Figures are in `docs/benchmarks.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregator_support;

use std::time::{Duration, Instant};

use aggregator_support::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use tokentrail_aggregator::Metrics;
use tokentrail_integration_tests::{kafka, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see the header"]
async fn audit_path_throughput_against_the_raw_consume_rate() {
    let n: usize = std::env::var("TOKENTRAIL_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let t = Topics::create("agg-bench").await;
    let lines = incident_lines();
    let producer: FutureProducer =
        kafka().client_config().set("linger.ms", "20").set("compression.type", "lz4").create().unwrap();
    let mut futures = Vec::with_capacity(n);
    let mut bytes = 0;
    for i in 0..n {
        let line = &lines[i % lines.len()];
        bytes += line.len();
        loop {
            match producer
                .send_result(FutureRecord::<(), str>::to(&t.raw).payload(line.as_str()).partition((i % 2) as i32))
            {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
    println!("raw topic {}: {n} records, {:.1} MB", t.raw, bytes as f64 / 1e6);

    // Baseline: a plain consumer reading every record and touching its payload.
    let consumer: StreamConsumer = kafka()
        .client_config()
        .set("group.id", unique_name("bench-raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "8388608")
        .create()
        .unwrap();
    consumer.subscribe(&[&t.raw]).unwrap();
    let start = Instant::now();
    let mut seen = 0usize;
    let mut sum = 0usize;
    while seen < n {
        let m = tokio::time::timeout(WAIT, consumer.recv()).await.expect("raw records").unwrap();
        sum += m.payload().map_or(0, <[u8]>::len);
        seen += 1;
    }
    let raw = start.elapsed();
    drop(consumer);
    assert_eq!(sum, bytes);

    // The aggregator's own CPU work, without Kafka: decode, convert, route, encode.
    let start = Instant::now();
    let mut directory = tokentrail_aggregator::route::Directory::new(1_000_000);
    let mut encoded = 0usize;
    for i in 0..n {
        let decoded = tokentrail_aggregator::source::decode_record(lines[i % lines.len()].as_bytes(), 1 << 24);
        for o in &decoded.content.observations {
            let route = directory.route("prod", o);
            let p = tokentrail_proto::wire::to_proto("prod", o);
            encoded += prost::Message::encode_to_vec(&p).len() + route.key().len();
        }
    }
    let cpu = start.elapsed();
    assert!(encoded > 0);

    let start = Instant::now();
    let running = start_aggregator(&t).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Metrics::get(&running.metrics.records_in_total) < n as u64
        || Metrics::get(&running.metrics.commits_total) == 0
    {
        assert!(Instant::now() < deadline, "aggregator did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Finished when the last batch is committed: its observations are acknowledged.
    let mut last = (Metrics::get(&running.metrics.commits_total), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = Metrics::get(&running.metrics.commits_total);
        if c != last.0 {
            last = (c, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let agg = last.1 - start;
    let out = Metrics::get(&running.metrics.observations_out_total);
    running.stop().await;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("raw consume:  {n} records in {:.2} s = {:.0} records/s", raw.as_secs_f64(), rate(raw));
    println!(
        "aggregator:   {n} records in {:.2} s = {:.0} records/s ({out} observation records produced, {:.0}/s)",
        agg.as_secs_f64(),
        rate(agg),
        out as f64 / agg.as_secs_f64()
    );
    println!(
        "in-process decode, convert, route, encode (no Kafka): {:.2} s = {:.0} records/s",
        cpu.as_secs_f64(),
        rate(cpu)
    );
    println!("ratio aggregator / raw consume: {:.2}", rate(agg) / rate(raw));
}

async fn start_aggregator(t: &Topics) -> Running {
    start(t.config()).await
}
