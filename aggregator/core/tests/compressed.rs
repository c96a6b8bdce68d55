//! Compressed evidence end to end: detected by magic bytes, decompressed, decoded.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod common;

use std::io::Write;

use common::*;
use tokentrail_aggregator_core::{detect_compression, Compression, Format};
use tokentrail_proto::observation::Credential;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

#[test]
fn zstd_file_from_the_reference_cli_with_two_frames() {
    let raw = fixture("compressed/audit-two-frames.jsonl.zst");
    assert_eq!(detect_compression(&raw), Compression::Zstd);
    let out = decode_bytes_as_file(&raw);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(token_uses(&out).len(), 1, "first frame");
    assert!(matches!(token_uses(&out)[0].credential, Credential::PodBound { .. }));
    assert_eq!(failures(&out).len(), 1, "second frame");
}

#[test]
fn gzip_round_trip_of_a_real_sample() {
    let original = fixture("public-audit-samples/panther-eks/eks_audit_events_from_panther_rule_tests.jsonl");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&original).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(detect_compression(&gz), Compression::Gzip);
    let plain = decode_bytes_as_file(&original);
    let unzipped = decode_bytes_as_file(&gz);
    assert_eq!(unzipped.observations, plain.observations);
    assert_eq!(unzipped.stats, plain.stats);
    assert_eq!(unzipped.stats.by_format[&Format::AuditEvent], 11);
}

#[test]
fn gzip_of_a_bom_document() {
    let original = fixture("public-audit-samples/sysdig-aks-audit-log/sample_EventHubs_event.json");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&original).unwrap();
    let out = decode_bytes_as_file(&gz.finish().unwrap());
    assert_eq!(out.stats.by_format[&Format::AksDiagnostic], 1);
}
