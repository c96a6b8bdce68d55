//! Puts the commit the binary was built from into `tokentrail --version` (`0.1.0 (abc1234)`),
//! so a finding can be traced to the code that made it. Outside a git checkout (a source
//! tarball, an image build without `.git`) it says `unknown commit`; `$TOKENTRAIL_COMMIT`
//! overrides both (image builds pass it as a build argument).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOKENTRAIL_COMMIT");
    // A new commit, or a checkout of another branch, changes HEAD or the ref it points to.
    for head in ["../.git/HEAD", "../.git/refs/heads"] {
        println!("cargo:rerun-if-changed={head}");
    }
    let commit = std::env::var("TOKENTRAIL_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !hash.is_empty()).then_some(hash)
    });
    let commit = commit.unwrap_or_else(|| String::from("unknown commit"));
    println!("cargo:rustc-env=TOKENTRAIL_VERSION={} ({commit})", env!("CARGO_PKG_VERSION"));
}
