//! The HTML report in a real browser: Debian's headless `chromium` renders the example
//! incident's page, and the rendered DOM must hold the findings, the timeline and the tables,
//! with no network request made and nothing blocked by the page's Content-Security-Policy.
//!
//! How "no network request" is checked, and why it would fail if the page fetched anything:
//! * Chromium writes every request its network stack makes to a NetLog (`--log-net-log`).
//!   Requests a document starts carry the document's origin as initiator (`null` for a
//!   `file://` page); the browser's own background traffic (component updates, which
//!   `--disable-background-networking` does not fully stop) says `not an origin`. Any request
//!   with another initiator is a fetch by the page.
//! * The CSP (`default-src 'none'`) blocks every fetch before it reaches the network, `file:`
//!   sub-resources included, and Chromium logs each block to the console: the console must hold
//!   no CSP message.
//! * Both detectors are themselves tested: a canary page with an `<img>` pointing at a listener
//!   of this test shows up in the NetLog (and reaches the listener) without the CSP, and shows
//!   up as a CSP violation (and never reaches the listener) with it.
//!
//! Chromium missing: the tests skip with a loud message on stderr, unless `CI` is set (to
//! anything), where they fail (`.ci/chromium-setup.sh` installs it).
//!
//! `TOKENTRAIL_SCREENSHOT_DIR=docs cargo test -p tokentrail-correlator --test html_chromium`
//! rewrites the screenshots under docs/.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod html_common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use html_common::{analysis_of, example, hostile_evidence, TempDir};
use tokentrail_correlator::output::html;

/// Longest a single Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// The `chromium` on PATH; `None` (after a loud message) when the test should skip.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but chromium is not installed: run .ci/chromium-setup.sh");
        // Straight to stderr, not through eprintln!: the test harness would capture that and
        // show nothing for a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED: chromium is not installed, the HTML report was NOT rendered in a browser.\n\
             !!!!!!!! Install it with .ci/chromium-setup.sh (Debian package chromium); with CI set this fails.\n"
        );
    }
    found
}

/// What one headless Chromium run saw.
struct Rendered {
    /// The DOM after load (`--dump-dom`).
    dom: String,
    /// Chromium's log, console messages included.
    log: String,
    /// Requests the page itself started, from the NetLog.
    page_requests: Vec<String>,
}

/// Loads `page` in headless Chromium with a fresh profile, dumping the DOM (or, with
/// `screenshot`, taking one instead).
fn render(chromium: &Path, page: &Path, screenshot: Option<(&Path, &str)>) -> Rendered {
    let work = TempDir::new("chromium");
    let netlog = work.0.join("netlog.json");
    let mut cmd = Command::new(chromium);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", work.0.join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        // Console messages (CSP violations among them) go to stderr.
        .args(["--enable-logging=stderr", "--v=0", "--no-first-run"])
        // Straight to the canary's listener, whatever proxy the machine is configured with.
        .arg("--no-proxy-server");
    match screenshot {
        Some((png, size)) => cmd
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={size}"))
            .arg("--hide-scrollbars"),
        None => cmd.arg("--dump-dom"),
    };
    let url = format!("file://{}", page.display());
    let mut child = cmd.arg(&url).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Drain both pipes while waiting, so a chatty Chromium cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish {url} within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (dom, log) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "chromium failed on {url}: {status}\n{log}");
    let page_requests = page_requests(&std::fs::read_to_string(&netlog).unwrap_or_default());
    Rendered { dom, log, page_requests }
}

/// URLs of the requests a document started, from a NetLog: those whose initiator is an origin.
/// Chromium's own background requests have none.
fn page_requests(netlog: &str) -> Vec<String> {
    // Chromium may leave the JSON unterminated when it exits; close it before parsing.
    let value: serde_json::Value = serde_json::from_str(netlog)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", netlog.trim_end().trim_end_matches(','))))
        .expect("chromium wrote no readable NetLog");
    let start_job = value["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64().expect("NetLog constants");
    let mut urls: Vec<String> = value["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .collect();
    urls.dedup();
    urls
}

fn csp_messages(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("Content Security Policy")).collect()
}

/// A local HTTP listener counting connections: the canary's target.
fn canary_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, hits)
}

#[test]
fn example_report_renders_with_findings_timeline_and_tables_and_fetches_nothing() {
    let Some(chromium) = chromium() else { return };
    let analysis = analysis_of(&example());
    let report = &analysis.report;
    let dir = TempDir::new("html-report");
    let page = dir.0.join("report.html");
    std::fs::write(&page, html::render(&analysis)).unwrap();
    let r = render(&chromium, &page, None);
    let dom = &r.dom;

    assert!(
        dom.contains("<title>tokentrail report: shop-prod</title>"),
        "not the report:\n{}",
        &dom[..dom.len().min(2000)]
    );
    // Findings, each with its id, in severity order.
    assert_eq!(dom.matches("<article class=\"finding").count(), report.findings.len());
    for f in &report.findings {
        assert!(dom.contains(&format!("id=\"f-{}\"", f.id)), "finding {} not rendered", f.id);
    }
    assert!(dom.contains("token-used-off-cluster") && dom.contains("exec-then-token-use"));
    // The incident, its story drawn as one mark per step.
    assert_eq!(dom.matches("<article class=\"incident").count(), report.incidents.len());
    let steps: usize = report.incidents.iter().map(|i| i.story.len()).sum();
    assert_eq!(dom.matches("<g class=\"m-").count(), steps);
    // The timeline: one chart per service account a finding names, the replay drawn in red.
    assert_eq!(
        dom.matches("<svg class=\"chart\"").count(),
        report.timelines.iter().filter(|t| !t.credentials.is_empty()).count()
    );
    assert!(dom.contains("<g class=\"b-unexpected\"><title>203.0.113.50 (off-cluster)"));
    // Tables: client addresses, legacy tokens, evidence files.
    assert_eq!(dom.matches("<tr class=\"v-").count(), report.usage.len());
    assert!(dom.contains("id=\"legacy-table\"") && dom.contains("legacy-exporter-token-abcde"));
    assert!(dom.contains("id=\"coverage\"") && dom.contains("id=\"files-table\""));
    // Nothing ran, nothing was fetched, nothing was blocked.
    assert!(!dom.contains("<script"), "a script element in the rendered page");
    assert_eq!(r.page_requests, Vec::<String>::new(), "the page made network requests");
    assert_eq!(csp_messages(&r.log), Vec::<&str>::new(), "the page tried to load something");

    // Screenshots for docs/: the page as it opens (incidents), and the timeline section (a
    // headless screenshot cannot scroll, so that one is the page without its incidents and
    // findings sections, which come first and side by side).
    let html = std::fs::read_to_string(&page).unwrap();
    let incidents = html.find("<section id=\"incidents\">").unwrap();
    let findings = html.find("<section id=\"findings\">").unwrap();
    let end = findings + html[findings..].find("</section>").unwrap() + "</section>".len();
    let timeline_page = dir.0.join("timeline.html");
    std::fs::write(&timeline_page, format!("{}{}", &html[..incidents], &html[end..])).unwrap();
    for (name, source, size) in
        [("report-example.png", &page, "1280,1500"), ("report-timeline.png", &timeline_page, "1280,1000")]
    {
        let png = dir.0.join(name);
        let shot = render(&chromium, source, Some((&png, size)));
        assert_eq!(shot.page_requests, Vec::<String>::new());
        assert_eq!(csp_messages(&shot.log), Vec::<&str>::new());
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {name}: {e}\n{}", shot.log));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{name}: {} bytes, blank?", bytes.len());
        if let Some(docs) = std::env::var_os("TOKENTRAIL_SCREENSHOT_DIR") {
            std::fs::write(Path::new(&docs).join(name), &bytes).unwrap();
        }
    }
}

#[test]
fn hostile_evidence_renders_as_text_and_runs_nothing() {
    let Some(chromium) = chromium() else { return };
    let dir = TempDir::new("html-hostile");
    let evidence = dir.0.join("evidence");
    std::fs::create_dir_all(&evidence).unwrap();
    hostile_evidence(&evidence);
    let page = dir.0.join("report.html");
    std::fs::write(&page, html::render(&analysis_of(&evidence))).unwrap();
    let r = render(&chromium, &page, None);
    assert!(r.dom.contains("<title>tokentrail report: shop-prod</title>"), "the injected script changed the title");
    assert!(!r.dom.contains("<script") && !r.dom.contains("<img"), "markup from the evidence became elements");
    assert!(r.dom.contains("&lt;script&gt;document.title="), "the user agent is not shown as text");
    assert_eq!(r.page_requests, Vec::<String>::new());
    assert_eq!(csp_messages(&r.log), Vec::<&str>::new());
}

#[test]
fn the_fetch_detectors_catch_a_fetch() {
    let Some(chromium) = chromium() else { return };
    let (port, hits) = canary_listener();
    let dir = TempDir::new("html-canary");
    let img = format!("<img src=\"http://127.0.0.1:{port}/canary.png\">");
    // Without a CSP the fetch happens: the NetLog shows it and the listener sees it.
    let open = dir.0.join("open.html");
    std::fs::write(&open, format!("<!DOCTYPE html><html><head><title>t</title></head><body>{img}</body></html>"))
        .unwrap();
    let r = render(&chromium, &open, None);
    assert_eq!(r.page_requests, [format!("http://127.0.0.1:{port}/canary.png")], "the NetLog check missed a fetch");
    assert!(hits.load(Ordering::SeqCst) > 0, "the canary listener saw nothing");
    // The report's own policy in front of it: blocked, logged, and nothing reaches the listener.
    let page = html::render(&analysis_of(&example()));
    let with_csp = page.replacen("<main>", &format!("<main>{img}"), 1);
    let guarded = dir.0.join("guarded.html");
    std::fs::write(&guarded, with_csp).unwrap();
    let before = hits.load(Ordering::SeqCst);
    let r = render(&chromium, &guarded, None);
    assert_eq!(r.page_requests, Vec::<String>::new(), "the CSP let a fetch through");
    assert!(!csp_messages(&r.log).is_empty(), "a blocked fetch left no CSP message:\n{}", r.log);
    assert_eq!(hits.load(Ordering::SeqCst), before, "the CSP let a fetch reach the listener");
}
