//! Regenerates `proto/src/gen/*.rs` from `proto/proto/**/*.proto`.
//!
//! `cargo run -p tokentrail-proto --example regen --features regen` rewrites the checked-in code;
//! with `-- --check` it fails instead when the checked-in code is stale (for CI or a pre-commit
//! hook). The `.proto` files are compiled by protox (pure Rust), so neither this nor any normal
//! build needs `protoc`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const FILES: &[&str] = &["tokentrail/agent/v1/attestation.proto", "tokentrail/observation/v1/observation.proto"];

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match regen(root, check) {
        Ok(stale) if check && !stale.is_empty() => {
            eprintln!("regen: stale generated code: {}", stale.join(", "));
            eprintln!("regen: run `cargo run -p tokentrail-proto --example regen --features regen`");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Generates into a scratch directory, then copies (or, with `check`, compares) each file.
fn regen(root: &Path, check: bool) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let includes = root.join("proto");
    let fds = protox::compile(FILES, [&includes])?;
    let scratch: PathBuf = std::env::temp_dir().join(format!("tokentrail-proto-regen-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    tonic_prost_build::configure()
        // The proto crate is the wire contract only: no transport, so it needs only tonic's
        // `codegen` feature; the agent and aggregator bring their own channel and server.
        .build_transport(false)
        .out_dir(&scratch)
        .compile_fds(fds)?;
    let gen_dir = root.join("src/gen");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&scratch)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let fresh = std::fs::read_to_string(entry.path())?;
        let target = gen_dir.join(&name);
        let old = std::fs::read_to_string(&target).unwrap_or_default();
        if old != fresh {
            stale.push(name);
            if !check {
                std::fs::write(&target, fresh)?;
            }
        }
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(stale)
}
