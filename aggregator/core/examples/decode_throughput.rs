//! Decode throughput: streams a (possibly compressed) evidence file through the decoders the
//! way the file driver does, and prints MB/s. Not a test; run it in release:
//!
//! ```text
//! python3 bench/generate_audit_log.py --out bench-out     # ~1M events, 1.3 GB
//! cargo run --release -p tokentrail-aggregator-core --example decode_throughput -- bench-out/audit.log
//! ```
//!
//! Measured on the 2-core development machine (1,000,371 events, 1,341.4 MB, page cache warm):
//! 912-951 MB/s plain at 3cabcd4 (0.68-0.71 M events/s, 7 MB peak RSS; 641-646 MB/s with
//! serde_json reading every line, at 2d84386). Earlier, with serde_json: 370 MB/s from a
//! zstd -1 file, 300 MB/s from a gzip -1 file.
//!
//! Observations are drained every 4096 lines, as a driver feeding the engine would, so memory
//! stays flat; the figure is decoding alone (the engine is not run).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use tokentrail_aggregator_core::{
    decode_line, decode_value, decompress, detect_compression, detect_layout, strip_bom, Decoded, Layout,
};

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: decode_throughput FILE");
        std::process::exit(2);
    };
    let started = Instant::now();
    let mut prefix = [0u8; 4];
    let n = File::open(&path)?.read(&mut prefix)?;
    let reader = decompress(detect_compression(&prefix[..n]), File::open(&path)?)?;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut total = Decoded::new();
    let mut out = Decoded::new();
    let mut line = Vec::with_capacity(1 << 16);
    let (mut bytes, mut lines, mut observations) = (0u64, 0u64, 0u64);
    let mut layout = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        bytes += line.len() as u64;
        let text = if lines == 0 { strip_bom(&line) } else { &line[..] };
        if *layout.get_or_insert_with(|| detect_layout(text)) == Layout::Document {
            // A document: read the rest whole.
            let mut doc = text.to_vec();
            reader.read_to_end(&mut doc)?;
            bytes += (doc.len() - text.len()) as u64;
            decode_value(&doc, &mut out);
            break;
        }
        decode_line(text, &mut out);
        lines += 1;
        if lines % 4096 == 0 {
            observations += out.observations.len() as u64;
            out.observations.clear();
            total.stats.merge(&out.stats);
            total.problems.append(&mut out.problems);
            out.stats = Default::default();
        }
    }
    observations += out.observations.len() as u64;
    total.stats.merge(&out.stats);
    total.problems.append(&mut out.problems);
    let secs = started.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    println!(
        "{path}: {mb:.1} MB, {lines} lines in {secs:.2} s = {:.0} MB/s, {:.0} events/s",
        mb / secs,
        total.stats.events as f64 / secs
    );
    println!(
        "events {} by format {:?}, observations {observations}, ignored {}, problems {}",
        total.stats.events,
        total.stats.by_format,
        total.stats.ignored,
        total.problems.len()
    );
    for p in total.problems.iter().take(5) {
        println!("  problem: {p}");
    }
    Ok(())
}
