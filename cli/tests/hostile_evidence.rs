//! `tokentrail analyze` on evidence built to hurt it: pieces of a log cut mid-line, blank and
//! corrupt lines, FIFOs and devices, symbolic-link loops, decompression bombs. Each test builds
//! its files, runs the real binary, and checks that every event that can be read is, and that
//! every line or path not read is named on stderr. The bombs' peak memory is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of `tokentrail analyze` did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The child's peak resident memory (VmHWM), last sampled before it exited.
    peak_rss_kib: Option<u64>,
}

impl Run {
    /// Records read, from the coverage section of the text report.
    fn records(&self) -> u64 {
        let line =
            self.stdout.lines().find(|l| l.trim_start().starts_with("evidence ")).unwrap_or_else(|| {
                panic!("no evidence line in the report:\n{}\nstderr:\n{}", self.stdout, self.stderr)
            });
        let before = line.split(" records").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

/// Runs `tokentrail analyze ARGS`, sampling the child's peak memory while it runs. A run that
/// has not ended after two minutes is killed and fails the test: it hung.
fn analyze(args: &[&Path]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .arg("analyze")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tokentrail");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_rss_kib = None;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_rss_kib = vm_hwm_kib(&status_file).or(peak_rss_kib);
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tokentrail analyze {args:?} still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run { code: status.code(), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap(), peak_rss_kib }
}

fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn example_log() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/incident/audit.log")).unwrap()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("tokentrail-hostile-").tempdir().unwrap()
}

/// Records in the intact example log.
fn all_records() -> u64 {
    let dir = tempdir();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, example_log()).unwrap();
    let run = analyze(&[&log]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.records()
}

#[test]
fn a_log_whose_first_line_is_cut_is_read_from_its_first_whole_line() {
    let whole = all_records();
    assert!(whole > 300, "the example log must hold its events for this test to mean anything");
    let log = example_log();
    let dir = tempdir();
    // As `tail -c` leaves it: a cut inside the first line, and one at a nested object.
    let nested = log.windows(11).position(|w| w == b"{\"username\"").unwrap();
    for (name, start) in [("tail-c.log", 37), ("nested.log", nested)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &log[start..]).unwrap();
        let run = analyze(&[&path]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert_eq!(run.records(), whole - 1, "{name}: every whole line is read\n{}", run.stderr);
        let first_break = log[start..].iter().position(|&b| b == b'\n').unwrap();
        let expected = format!("{name}:1: starts mid-line");
        assert!(run.stderr.contains(&expected), "{name}: {}", run.stderr);
        let offset = format!("read from byte offset {}", first_break + 1);
        assert!(run.stderr.contains(&offset), "{name}: {}", run.stderr);
    }
}

#[test]
fn a_blank_or_garbage_first_line_does_not_turn_a_log_into_one_document() {
    let whole = all_records();
    let dir = tempdir();
    for (name, first) in [("blank.log", &b"\n"[..]), ("spaces.log", b"   \r\n\n"), ("garbage.log", b"%%garbage%%\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, [first, &example_log()].concat()).unwrap();
        let run = analyze(&[&path]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert_eq!(run.records(), whole, "{name}\n{}", run.stderr);
    }
}

#[test]
fn a_corrupt_line_after_a_blank_first_line_costs_that_line_only() {
    let whole = all_records();
    let text = String::from_utf8(example_log()).unwrap();
    let mut lines: Vec<&str> = vec![""];
    lines.extend(text.lines());
    // File line 102: the blank line is line 1.
    lines.insert(101, "{\"kind\":\"Event\",\"auditID\": this is not json");
    let dir = tempdir();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let run = analyze(&[&path]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.records(), whole, "{}", run.stderr);
    assert!(run.stderr.contains("audit.log:102: "), "{}", run.stderr);
    assert!(!run.stderr.contains("audit.log:103"), "{}", run.stderr);
    assert!(run.stdout.contains("1 bad records skipped"), "{}", run.stdout);
}

#[test]
fn pieces_of_split_b_lose_only_the_lines_cut_at_their_edges_and_say_where() {
    let whole = all_records();
    let log = example_log();
    let dir = tempdir();
    let piece = 64 << 10;
    let mut lost = 0;
    for (i, chunk) in log.chunks(piece).enumerate() {
        std::fs::write(dir.path().join(format!("x{i:02}")), chunk).unwrap();
    }
    let run = analyze(&[dir.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for (i, boundary) in (piece..log.len()).step_by(piece).enumerate() {
        if log[boundary - 1] == b'\n' || log[boundary] == b'\n' {
            continue;
        }
        lost += 1;
        let before = &log[boundary - piece..boundary];
        let start_of_cut = before.iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let ends = format!("x{i:02}:");
        let ends_at = format!(
            "ends mid-line (a piece cut out of a larger log?): its last {} bytes, from byte offset {start_of_cut}",
            piece - start_of_cut
        );
        assert!(run.stderr.lines().any(|l| l.contains(&ends) && l.contains(&ends_at)), "piece {i}: {}", run.stderr);
        let after = &log[boundary..];
        let first_break = after.iter().position(|&b| b == b'\n').unwrap();
        let starts = format!("x{:02}:1: starts mid-line", i + 1);
        let starts_at = format!("read from byte offset {}", first_break + 1);
        assert!(
            run.stderr.lines().any(|l| l.contains(&starts) && l.contains(&starts_at)),
            "piece {}: {}",
            i + 1,
            run.stderr
        );
    }
    assert!(lost > 0, "the pieces must cut lines for this test to mean anything");
    assert_eq!(run.records(), whole - lost, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("{} bad records skipped", 2 * lost)), "{}", run.stdout);
}

#[test]
fn fifos_and_devices_are_refused_by_name_and_never_read() {
    let dir = tempdir();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let run = analyze(&[path]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        let kind = if path == fifo { "a FIFO" } else { "a character device" };
        let expected = format!("{}: {kind}, not a regular file: refused", path.display());
        assert!(run.stderr.contains(&expected), "{}", run.stderr);
        assert!(run.stderr.contains("save the evidence into a file"), "{}", run.stderr);
    }
    // In a directory, beside evidence: the FIFO is named, the evidence read.
    std::fs::write(dir.path().join("audit.log"), example_log()).unwrap();
    let run = analyze(&[dir.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{}: a FIFO", fifo.display())), "{}", run.stderr);
    assert_eq!(run.records(), all_records());
}

#[test]
fn symlink_loops_are_walked_once_each_file_read_once_and_every_path_passed_over_named() {
    let whole = all_records();
    let dir = tempdir();
    std::fs::write(dir.path().join("audit.log"), example_log()).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("x")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("y")).unwrap();
    std::os::unix::fs::symlink("audit.log", dir.path().join("same.log")).unwrap();
    std::fs::write(dir.path().join(".notes"), "hidden").unwrap();
    std::fs::write(dir.path().join("README.txt"), "how this was collected").unwrap();
    let run = analyze(&[dir.path()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.records(), whole, "read once\n{}", run.stderr);
    for link in ["x", "y"] {
        let said = format!("{}: skipped: the directory", dir.path().join(link).display());
        assert_eq!(run.stderr.matches(&said).count(), 1, "{link} said once: {}", run.stderr);
    }
    let same = format!("{}: skipped: the same file as", dir.path().join("same.log").display());
    assert!(run.stderr.contains(&same), "{}", run.stderr);
    // Passed over, and named.
    let hidden = format!("{}: skipped: hidden", dir.path().join(".notes").display());
    assert!(run.stderr.contains(&hidden), "{}", run.stderr);
    let notes = format!("{}: skipped: not JSON or YAML evidence", dir.path().join("README.txt").display());
    assert!(run.stderr.contains(&notes), "{}", run.stderr);
    // The same file named twice on the command line is read once too.
    let log = dir.path().join("audit.log");
    let run = analyze(&[&log, &log]);
    assert_eq!(run.records(), whole, "{}", run.stderr);
}

/// `[{},\n{},\n...]` of about `size` bytes (a document, as the line breaks make it), compressed
/// as `format` (`gzip` or `zstd`) by repeating one compressed megabyte: gzip members and zstd
/// frames concatenate.
fn bomb(format: &str, size: usize) -> Vec<u8> {
    let chunk = b"{},\n".repeat((1 << 20) / 4);
    let compress = |data: &[u8]| match format {
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        _ => ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
    };
    let mut out = compress(b"[\n");
    let packed = compress(&chunk);
    for _ in 0..size / chunk.len() {
        out.extend_from_slice(&packed);
    }
    out.extend(compress(b"{}]"));
    out
}

#[test]
fn decompression_bombs_stop_with_an_error_naming_the_file() {
    let dir = tempdir();
    for format in ["gzip", "zstd"] {
        let path = dir.path().join(format!("bomb.{format}"));
        let packed = bomb(format, 2 << 30);
        std::fs::write(&path, &packed).unwrap();
        let run = analyze(&[&path]);
        let peak = run.peak_rss_kib.unwrap_or(0);
        println!("{format} bomb: {} KiB compressed, 2 GiB expanded: peak RSS {} MiB", packed.len() >> 10, peak >> 10);
        let expected = format!("{}: read failed: {format} data expands more than 200 times", path.display());
        assert!(run.stderr.contains(&expected), "{}", run.stderr);
        assert_eq!(run.code, Some(1), "nothing else to read: {}", run.stderr);
        assert!(peak < 512 << 10, "{format} bomb peaked at {} MiB", peak >> 10);
    }
}

#[test]
fn a_small_bomb_of_bad_records_keeps_a_few_and_counts_the_rest() {
    let dir = tempdir();
    for format in ["gzip", "zstd"] {
        // Under the size at which the ratio is checked: read whole, a problem per record.
        let path = dir.path().join(format!("records.{format}"));
        let packed = bomb(format, 8 << 20);
        std::fs::write(&path, &packed).unwrap();
        // Beside a real log, so there is a report to count the problems in (a run with no audit
        // event at all exits 1 without one).
        let log = dir.path().join("audit.log");
        std::fs::write(&log, example_log()).unwrap();
        let run = analyze(&[&path, &log]);
        let peak = run.peak_rss_kib.unwrap_or(0);
        println!("{format}: {} KiB of [{{}},...] (8 MiB expanded): peak RSS {} MiB", packed.len() >> 10, peak >> 10);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let shown = run.stderr.lines().filter(|l| l.contains("unrecognised record")).count();
        assert_eq!(shown, 10, "{}", run.stderr);
        let bad: u64 = run
            .stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("problems"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(bad > 2_000_000, "every record counted: {bad}");
        let not_shown = format!("{}: {} more bad records not shown", path.display(), bad - 10);
        assert!(run.stderr.contains(&not_shown), "{}", run.stderr);
        assert!(peak < 512 << 10, "{format}: peaked at {} MiB", peak >> 10);
    }
}
