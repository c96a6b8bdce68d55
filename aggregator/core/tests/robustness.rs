//! Garbage never panics: random bytes, every prefix of real events, deep nesting, huge numbers,
//! and compressed input that is corrupt.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use std::io::Read;

use common::*;
use tokentrail_aggregator_core::{
    decode_value, decode_yaml, decompress, detect_compression, detect_layout, looks_like_yaml, Compression, Decoded,
};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/public-audit-samples").join(name))
        .unwrap()
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet = b"{}[]\":,\\ 0123456789eE+-.truefalsnul\n\xEF\xBB\xBF\xFF\x00abc";
    for len in [0usize, 1, 2, 3, 7, 64, 1000, 10_000] {
        for _ in 0..200 {
            let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let json_ish: Vec<u8> = (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]).collect();
            for bytes in [&raw, &json_ish] {
                let mut out = Decoded::new();
                decode_value(bytes, &mut out);
                let _ = detect_layout(bytes);
                let _ = decode_bytes_as_file_lossy(bytes);
            }
        }
    }
}

/// YAML garbage: random bytes over YAML's indicators, and every prefix and mutation of a
/// `gcloud logging read` entry and of deeply nested or aliased documents.
#[test]
fn yaml_garbage_never_panics() {
    let mut rng = Rng(0x5EED);
    let alphabet = b"---\n  - : ? | > ' \" # & * ! % @ ` { } [ ] , ... abc 12 true\t\r\xEF\xBB\xBF\xFF\x00";
    for len in [0usize, 1, 3, 16, 200, 2000] {
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]).collect();
            let _ = looks_like_yaml(&bytes);
            decode_yaml(&bytes, &mut Decoded::new());
        }
    }
    let entry = b"---\ninsertId: a\nprotoPayload:\n  '@type': type.googleapis.com/google.cloud.audit.AuditLog\n  authenticationInfo:\n    principalEmail: system:serviceaccount:a:b\n  methodName: io.k8s.core.v1.pods.list\n  requestMetadata:\n    callerIp: 10.0.0.1\ntimestamp: '2026-03-10T10:26:40Z'\n";
    for end in 0..=entry.len() {
        decode_yaml(&entry[..end], &mut Decoded::new());
    }
    for _ in 0..500 {
        let mut m = entry.to_vec();
        let at = (rng.next() % m.len() as u64) as usize;
        m[at] = alphabet[(rng.next() % alphabet.len() as u64) as usize];
        decode_yaml(&m, &mut Decoded::new());
    }
    let deep = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    decode_yaml(deep.as_bytes(), &mut Decoded::new());
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let mut out = Decoded::new();
    decode_yaml(laughs.as_bytes(), &mut out);
    // Refused by the parser's budget, not expanded into millions of values.
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert!(out.problems[0].message.starts_with("unreadable yaml document"), "{:?}", out.problems);
}

/// Like the test driver, but tolerating decompression errors (random bytes can look gzipped).
fn decode_bytes_as_file_lossy(raw: &[u8]) -> Decoded {
    let mut bytes = Vec::new();
    let _ = decompress(detect_compression(raw), raw).and_then(|mut r| r.read_to_end(&mut bytes));
    let mut out = Decoded::new();
    decode_value(&bytes, &mut out);
    out
}

#[test]
fn every_prefix_and_single_byte_mutation_of_real_events() {
    let mut rng = Rng(42);
    for name in [
        "sysdig-aks-audit-log/sample_EventHubs_event.json",
        "falco-k8s-audit-traces/create_nginx_pod_hostnetwork.json",
        "audit2rbac/demo.log",
    ] {
        let bytes = sample(name);
        let bytes = &bytes[..bytes.len().min(4000)];
        for end in 0..bytes.len() {
            let mut out = Decoded::new();
            decode_value(&bytes[..end], &mut out);
        }
        for _ in 0..2000 {
            let mut mutated = bytes.to_vec();
            let at = (rng.next() % mutated.len() as u64) as usize;
            mutated[at] = rng.next() as u8;
            let mut out = Decoded::new();
            decode_value(&mutated, &mut out);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [100usize, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}"), ("{\"items\":[", "]}"), ("{\"records\":[", "]}")] {
            let text = format!("{}{}", open.repeat(depth), close.repeat(depth));
            let out = decode(&text);
            assert!(out.observations.is_empty());
            assert!(!out.problems.is_empty(), "depth {depth} {open}");
        }
    }
    // Embedded strings inside embedded strings (escaping doubles the size at each level, so
    // the test stops at 14, well past the limit).
    let mut text = String::from(
        r#"{"kind":"Event","auditID":"x","user":{"username":"system:serviceaccount:a:b"},"requestReceivedTimestamp":"2026-03-01T10:00:00Z"}"#,
    );
    for _ in 0..14 {
        text = format!(r#"{{"properties":{{"log":{}}}}}"#, serde_json::to_string(&text).unwrap());
    }
    let out = decode(&text);
    assert!(out.observations.is_empty());
    assert_eq!(out.problems.len(), 1);
}

#[test]
fn huge_and_odd_numbers() {
    for code in ["1e400", "-1", "99999999999999999999999", "4.01e2", "null", "\"401\"", "[401]", "{}"] {
        let text = format!(
            r#"{{"kind":"Event","auditID":"x","verb":"get","user":{{"username":"system:serviceaccount:a:b"}},"responseStatus":{{"code":{code}}},"requestReceivedTimestamp":"2026-03-01T10:00:00Z","timestamp":1e999}}"#
        );
        let _ = decode(&text);
    }
    let cloudwatch = r#"{"timestamp":1e308,"message":"{\"kind\":\"Event\",\"auditID\":\"x\",\"user\":{\"username\":\"system:serviceaccount:a:b\"}}"}"#;
    let out = decode(cloudwatch);
    assert_eq!(out.problems.len(), 1, "no time anywhere: {:?}", out.problems);
    let times =
        ["9999-12-31T23:59:59.999999Z", "0000-01-01T00:00:00Z", "2026-02-31T00:00:00Z", "2026-03-01T10:00:00+99:99"];
    for t in times {
        let _ = decode(&format!(
            r#"{{"kind":"Event","auditID":"x","user":{{"username":"system:serviceaccount:a:b"}},"requestReceivedTimestamp":"{t}"}}"#
        ));
    }
}

#[test]
fn invalid_utf8_and_bom_in_odd_places() {
    let mut bytes =
        br#"{"kind":"Event","auditID":"x","verb":"get","user":{"username":"system:serviceaccount:a:b"}}"#.to_vec();
    bytes.insert(30, 0xFF);
    let mut out = Decoded::new();
    decode_value(&bytes, &mut out);
    assert_eq!(out.problems.len(), 1);
    let mut out = Decoded::new();
    decode_value(b"\xEF\xBB\xBF\xEF\xBB\xBF{}", &mut out);
    assert_eq!(out.problems.len(), 1, "only one BOM is skipped");
}

#[test]
fn corrupt_compressed_streams_are_errors() {
    for (c, bytes) in
        [(Compression::Gzip, &b"\x1f\x8b\x08\x00garbage"[..]), (Compression::Zstd, &b"\x28\xb5\x2f\xfd\x00\x00"[..])]
    {
        let mut out = Vec::new();
        assert!(decompress(c, bytes).and_then(|mut r| r.read_to_end(&mut out)).is_err());
    }
}
