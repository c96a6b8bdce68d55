//! Shared by the tests of the probe listener (`aggregator_health.rs`, `metrics_endpoint.rs`):
//! plain-HTTP GETs against a real process, and reading its `/metrics` (Prometheus text
//! exposition 0.0.4).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a process has to answer as expected.
pub const WAIT: Duration = Duration::from_secs(60);

/// `GET path`: the status code, the headers (lower-cased names) and the body, or the
/// connection error.
pub async fn get_with_headers(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

/// `GET path`: the status code and body, or the connection error.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    get_with_headers(addr, path).await.map(|(status, _, body)| (status, body))
}

/// Polls `path` until it answers `status`; the body.
pub async fn wait_for(addr: SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = get(addr, path).await;
        if let Ok((s, body)) = &answer {
            if *s == status {
                return body.clone();
            }
        }
        assert!(Instant::now() < deadline, "{addr}{path} never answered {status}: last {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free port on 127.0.0.1 for a process to listen on.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// One scrape of `/metrics`, parsed.
#[derive(Debug)]
pub struct Scrape {
    /// `# TYPE` of each metric family.
    pub types: BTreeMap<String, String>,
    /// The whole text, for messages.
    pub text: String,
}

impl Scrape {
    /// `GET /metrics`, which must answer 200 with the text format's content type.
    pub async fn of(addr: SocketAddr) -> Scrape {
        let (status, headers, text) = get_with_headers(addr, "/metrics").await.unwrap();
        assert_eq!(status, 200, "/metrics: {text}");
        assert!(headers.contains("content-type: text/plain; version=0.0.4"), "{headers}");
        let types = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_string(), kind.to_string()))
            .collect();
        Scrape { types, text }
    }

    /// The sum of `name`'s samples (all label sets), `None` when it has none.
    pub fn value(&self, name: &str) -> Option<f64> {
        let samples: Vec<f64> = self
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!samples.is_empty()).then(|| samples.iter().sum())
    }

    /// Every name in `names` is exposed with a `# TYPE` line saying counter (names ending in
    /// `_total`) or gauge, and a value.
    pub fn assert_exposes(&self, names: &[String]) {
        assert!(!names.is_empty());
        for name in names {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            assert_eq!(self.types.get(name).map(String::as_str), Some(kind), "# TYPE of {name} in\n{}", self.text);
            assert!(self.value(name).is_some(), "no sample of {name} in\n{}", self.text);
        }
    }
}

/// The metric names a component registers: the `"<prefix>..."` string literals of its
/// `telemetry.rs` (`path` from the workspace root), less `except` (instruments with attributes
/// that have no point until something happened).
pub fn registered(path: &str, prefix: &str, except: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let source = std::fs::read_to_string(root.join(path)).unwrap();
    let names: Vec<String> = source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with(prefix) && !except.contains(s))
        .map(str::to_string)
        .collect();
    assert!(!names.is_empty(), "{path}: no {prefix}... names");
    names
}
