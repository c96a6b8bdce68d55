//! Helpers shared by the integration tests: a minimal file driver and observation filters.
#![allow(dead_code, clippy::unwrap_used)] // shared helpers: not every test uses all; a failed unwrap is a failed test

use std::io::Read;
use std::path::Path;

use tokentrail_aggregator_core::{
    decode_value, decompress, detect_compression, detect_layout, strip_bom, Decoded, Layout,
};
use tokentrail_proto::observation::*;

/// Decodes one value.
pub fn decode(text: &str) -> Decoded {
    let mut out = Decoded::new();
    decode_value(text.as_bytes(), &mut out);
    out
}

/// What a file driver does: decompress, strip the BOM, detect the layout from the first line,
/// then decode each line or the whole document.
pub fn decode_bytes_as_file(raw: &[u8]) -> Decoded {
    let mut bytes = Vec::new();
    decompress(detect_compression(raw), raw).unwrap().read_to_end(&mut bytes).unwrap();
    let text = strip_bom(&bytes);
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut out = Decoded::new();
    match detect_layout(first_line) {
        Layout::Lines => {
            for line in text.split(|&b| b == b'\n') {
                decode_value(line, &mut out);
            }
        }
        Layout::Document => decode_value(text, &mut out),
    }
    out
}

pub fn decode_file(path: &Path) -> Decoded {
    decode_bytes_as_file(&std::fs::read(path).unwrap())
}

pub fn token_uses(out: &Decoded) -> Vec<&TokenUse> {
    out.observations.iter().filter_map(|o| if let Observation::TokenUse(u) = o { Some(u) } else { None }).collect()
}

pub fn mints(out: &Decoded) -> Vec<&TokenMint> {
    out.observations.iter().filter_map(|o| if let Observation::TokenMint(m) = o { Some(m) } else { None }).collect()
}

pub fn pods(out: &Decoded) -> Vec<&PodFact> {
    out.observations.iter().filter_map(|o| if let Observation::Pod(p) = o { Some(p) } else { None }).collect()
}

pub fn nodes(out: &Decoded) -> Vec<&NodeFact> {
    out.observations.iter().filter_map(|o| if let Observation::Node(n) = o { Some(n) } else { None }).collect()
}

pub fn accesses(out: &Decoded) -> Vec<&PodAccess> {
    out.observations.iter().filter_map(|o| if let Observation::PodAccess(a) = o { Some(a) } else { None }).collect()
}

pub fn secret_reads(out: &Decoded) -> Vec<&SecretRead> {
    out.observations.iter().filter_map(|o| if let Observation::SecretRead(r) = o { Some(r) } else { None }).collect()
}

pub fn failures(out: &Decoded) -> Vec<&AuthFailure> {
    out.observations.iter().filter_map(|o| if let Observation::AuthFailure(f) = o { Some(f) } else { None }).collect()
}

pub fn token_secrets(out: &Decoded) -> Vec<&TokenSecretFact> {
    out.observations.iter().filter_map(|o| if let Observation::TokenSecret(s) = o { Some(s) } else { None }).collect()
}

pub fn serviceaccounts(out: &Decoded) -> Vec<&ServiceAccountFact> {
    out.observations
        .iter()
        .filter_map(|o| if let Observation::ServiceAccount(s) = o { Some(s) } else { None })
        .collect()
}

pub fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}
