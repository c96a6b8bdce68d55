//! Helpers shared by the integration tests: a minimal file driver and observation filters.
#![allow(dead_code, clippy::unwrap_used)] // shared helpers: not every test uses all; a failed unwrap is a failed test

use std::io::Read;
use std::path::Path;

use tokentrail_aggregator_core::{
    decode_value, decompress, detect_compression, detect_layout, strip_bom, Layout, Sink,
};
use tokentrail_proto::observation::*;

/// Decodes one value.
pub fn decode(text: &str) -> Sink {
    let mut sink = Sink::new();
    decode_value(text.as_bytes(), &mut sink);
    sink
}

/// What a file driver does: decompress, strip the BOM, detect the layout from the first line,
/// then decode each line or the whole document.
pub fn decode_bytes_as_file(raw: &[u8]) -> Sink {
    let mut bytes = Vec::new();
    decompress(detect_compression(raw), raw).unwrap().read_to_end(&mut bytes).unwrap();
    let text = strip_bom(&bytes);
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut sink = Sink::new();
    match detect_layout(first_line) {
        Layout::Lines => {
            for line in text.split(|&b| b == b'\n') {
                decode_value(line, &mut sink);
            }
        }
        Layout::Document => decode_value(text, &mut sink),
    }
    sink
}

pub fn decode_file(path: &Path) -> Sink {
    decode_bytes_as_file(&std::fs::read(path).unwrap())
}

pub fn token_uses(sink: &Sink) -> Vec<&TokenUse> {
    sink.observations.iter().filter_map(|o| if let Observation::TokenUse(u) = o { Some(u) } else { None }).collect()
}

pub fn mints(sink: &Sink) -> Vec<&TokenMint> {
    sink.observations.iter().filter_map(|o| if let Observation::TokenMint(m) = o { Some(m) } else { None }).collect()
}

pub fn pods(sink: &Sink) -> Vec<&PodFact> {
    sink.observations.iter().filter_map(|o| if let Observation::Pod(p) = o { Some(p) } else { None }).collect()
}

pub fn nodes(sink: &Sink) -> Vec<&NodeFact> {
    sink.observations.iter().filter_map(|o| if let Observation::Node(n) = o { Some(n) } else { None }).collect()
}

pub fn accesses(sink: &Sink) -> Vec<&PodAccess> {
    sink.observations.iter().filter_map(|o| if let Observation::PodAccess(a) = o { Some(a) } else { None }).collect()
}

pub fn secret_reads(sink: &Sink) -> Vec<&SecretRead> {
    sink.observations.iter().filter_map(|o| if let Observation::SecretRead(r) = o { Some(r) } else { None }).collect()
}

pub fn failures(sink: &Sink) -> Vec<&AuthFailure> {
    sink.observations.iter().filter_map(|o| if let Observation::AuthFailure(f) = o { Some(f) } else { None }).collect()
}

pub fn token_secrets(sink: &Sink) -> Vec<&TokenSecretFact> {
    sink.observations.iter().filter_map(|o| if let Observation::TokenSecret(s) = o { Some(s) } else { None }).collect()
}

pub fn serviceaccounts(sink: &Sink) -> Vec<&ServiceAccountFact> {
    sink.observations
        .iter()
        .filter_map(|o| if let Observation::ServiceAccount(s) = o { Some(s) } else { None })
        .collect()
}

pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}
