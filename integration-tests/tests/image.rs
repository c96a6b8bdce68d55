//! The tokentrail image as `deploy/image/build.sh` builds it here: `deploy/Containerfile`'s
//! `prebuilt` target on the local runtime base (`deploy/image/base.sh`, Debian bookworm's
//! packages), with this workspace's `tokentrail` binary (the test profile's build, stripped of
//! its debug information: the same code, a tenth of the size). The image is built with buildah in
//! a container storage of the test's own, run with `buildah run`, and checked:
//!
//! * `tokentrail --version` in the image is the binary's, and names its commit (also the
//!   `org.opencontainers.image.revision` label);
//! * it runs as 65532:65532 (the image's user, and the owner of files the process writes);
//! * there is no shell and no package manager in it (`/bin/sh` does not run; no such file);
//! * every library the binary links is in it (build.sh checks with `ldd`; running proves it);
//! * its SBOM, in the image and beside the OCI archive, lists tokentrail, exactly the crates
//!   `cargo tree -p tokentrail -e normal` lists for Linux, rdkafka and librdkafka (statically
//!   linked), OpenSSL (openssl-sys, Debian's libssl3) and every Debian package of the image.
//!
//! Needs root, buildah, mmdebstrap and cargo-cyclonedx: `.ci/image-setup.sh` (called by
//! `.ci/setup.sh`) installs them and caches the base. Without them the test says it skipped and
//! why; under CI (`$CI` set) it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;
use tokentrail_integration_tests::tokentrail_binary;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cache() -> PathBuf {
    std::env::var_os("TOKENTRAIL_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("$HOME")).join(".cache/tokentrail/image"))
}

/// Why the image cannot be built here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = run(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some(format!("not root (uid {}): buildah's vfs storage and chroot isolation need root", uid.trim()));
    }
    let on_path = |tool: &str| Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
    for tool in ["buildah", "mmdebstrap"] {
        if !on_path(tool).status.success() {
            return Some(format!("{tool} is not installed: run `bash .ci/image-setup.sh`"));
        }
    }
    if !cache().join("tools/bin/cargo-cyclonedx").exists() {
        return Some(format!(
            "no cargo-cyclonedx in {}: run `bash .ci/image-setup.sh`",
            cache().join("tools/bin").display()
        ));
    }
    None
}

/// Runs a command that must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// buildah on the test's own container storage.
struct Buildah {
    storage: PathBuf,
}

impl Buildah {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("buildah");
        c.args(["--storage-driver", "vfs", "--root"])
            .arg(self.storage.join("root"))
            .arg("--runroot")
            .arg(self.storage.join("run"))
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        run(&mut self.command(args)).trim().to_string()
    }
}

/// Each crate `cargo tree` says the binary is compiled from on Linux x86-64 (normal
/// dependencies: no build scripts' or tests'), as `name version`.
fn crates_of_tokentrail() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| String::from("cargo"));
    let tree = run(Command::new(cargo).current_dir(repo()).args([
        "tree",
        "--locked",
        "--offline",
        "-p",
        "tokentrail",
        "-e",
        "normal",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]));
    tree.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            (name != "tokentrail").then(|| format!("{name} {}", version.trim_start_matches('v')))
        })
        .collect()
}

#[test]
fn image_builds_runs_as_nonroot_without_a_shell_and_carries_its_sbom() {
    if let Some(why) = missing_prerequisite() {
        assert!(std::env::var_os("CI").is_none(), "image test cannot run under CI: {why}");
        eprintln!("image: SKIPPED, the image was not built: {why}");
        return;
    }
    let started = Instant::now();
    let binary = tokentrail_binary();
    let version = run(Command::new(binary).arg("--version")).trim().to_string();
    let commit = version.split(['(', ')']).nth(1).unwrap_or_default().to_string();
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "`tokentrail --version` should name the commit: {version}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let stripped = tmp.path().join("tokentrail");
    run(Command::new("objcopy").arg("--strip-debug").arg(binary).arg(&stripped));
    let buildah = Buildah { storage: tmp.path().join("storage") };
    let out = tmp.path().join("out");
    let tag = "localhost/tokentrail:image-test";
    let build_started = Instant::now();
    run(Command::new("bash")
        .arg(repo().join("deploy/image/build.sh"))
        .arg("--binary")
        .arg(&stripped)
        .arg("--out")
        .arg(&out)
        .args(["--tag", tag])
        .env("TOKENTRAIL_IMAGE_STORAGE", &buildah.storage));
    eprintln!("image: build.sh took {:.1} s", build_started.elapsed().as_secs_f64());

    // The image's configuration: user, entry point, labels.
    let user = buildah.run(&["inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}", tag]);
    assert_eq!(user, "65532:65532");
    let entrypoint = buildah.run(&["inspect", "--type", "image", "--format", "{{.OCIv1.Config.Entrypoint}}", tag]);
    assert_eq!(entrypoint, "[/usr/local/bin/tokentrail]");
    let revision = buildah.run(&[
        "inspect",
        "--type",
        "image",
        "--format",
        "{{index .OCIv1.Config.Labels \"org.opencontainers.image.revision\"}}",
        tag,
    ]);
    assert_eq!(revision, commit);

    let container = buildah.run(&["from", "--quiet", tag]);
    // `--version` in the image: the binary's, commit included, with the image's libraries.
    let in_image = buildah.run(&["run", &container, "--", "/usr/local/bin/tokentrail", "--version"]);
    assert_eq!(in_image, version);

    // The process runs as 65532: the man pages it writes into a mounted directory are its.
    let written = tmp.path().join("written");
    std::fs::create_dir(&written).unwrap();
    run(Command::new("chmod").arg("1777").arg(&written));
    let volume = format!("{}:/written", written.display());
    buildah.run(&["run", "--volume", &volume, &container, "--", "/usr/local/bin/tokentrail", "man", "/written"]);
    let page = written.join("tokentrail.1");
    let meta = std::fs::metadata(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    assert_eq!((meta.uid(), meta.gid()), (65532, 65532), "{} is not the nonroot user's", page.display());

    // No shell: /bin/sh does not run, and no shell or package manager is anywhere in the image.
    let sh = buildah.command(&["run", &container, "--", "/bin/sh", "-c", "true"]).output().unwrap();
    assert!(!sh.status.success(), "/bin/sh ran in the image");
    let rootfs = PathBuf::from(buildah.run(&["mount", &container]));
    let forbidden = ["sh", "bash", "dash", "ash", "busybox", "apt", "apt-get", "dpkg", "su", "sudo"];
    let mut found = Vec::new();
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin"] {
        let Ok(entries) = std::fs::read_dir(rootfs.join(dir)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if forbidden.contains(&name.as_str()) {
                found.push(format!("/{dir}/{name}"));
            }
        }
    }
    assert!(found.is_empty(), "the image has {found:?}");

    // The SBOM: in the image and beside the archive, the same file.
    let archive = out.join(format!("tokentrail-{}-{commit}.oci.tar", version.split_whitespace().nth(1).unwrap()));
    let archive_size = std::fs::metadata(&archive).unwrap_or_else(|e| panic!("{}: {e}", archive.display())).len();
    let sbom_text = std::fs::read_to_string(archive.with_extension("").with_extension("cdx.json")).unwrap();
    assert_eq!(std::fs::read_to_string(rootfs.join("usr/share/doc/tokentrail/sbom.cdx.json")).unwrap(), sbom_text);
    check_sbom(&serde_json::from_str(&sbom_text).unwrap(), &commit, &rootfs);

    buildah.run(&["umount", &container]);
    buildah.run(&["rm", &container]);
    let size = buildah.run(&["images", "--format", "{{.Size}}", tag]);
    eprintln!(
        "image: {tag} is {size} in storage, {} KiB as an OCI archive; whole test {:.1} s",
        archive_size / 1024,
        started.elapsed().as_secs_f64()
    );
    buildah.run(&["rmi", "--all", "--force"]);
}

fn check_sbom(sbom: &Value, commit: &str, rootfs: &Path) {
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let app = &sbom["metadata"]["component"];
    assert_eq!(app["name"], "tokentrail");
    assert!(
        app["properties"].as_array().unwrap().iter().any(|p| p["name"] == "tokentrail:commit" && p["value"] == commit),
        "the SBOM does not name commit {commit}: {app}"
    );
    let components = sbom["components"].as_array().unwrap();
    let named = |name: &str| components.iter().filter(|c| c["name"] == name).collect::<Vec<_>>();

    // The crates: exactly those cargo compiles into the binary.
    let crates: BTreeSet<String> = components
        .iter()
        .filter(|c| c["purl"].as_str().unwrap_or_default().starts_with("pkg:cargo/"))
        .map(|c| format!("{} {}", c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
        .collect();
    let expected = crates_of_tokentrail();
    assert_eq!(
        crates,
        expected,
        "only in the SBOM: {:?}; only in cargo tree: {:?}",
        crates.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&crates).collect::<Vec<_>>()
    );
    for name in ["rdkafka", "rdkafka-sys", "openssl-sys", "tokio", "tonic"] {
        assert_eq!(named(name).len(), 1, "the SBOM should list crate {name} once");
    }
    let rdkafka_sys = named("rdkafka-sys")[0]["version"].as_str().unwrap().to_string();
    let librdkafka = named("librdkafka");
    assert_eq!(librdkafka.len(), 1, "the SBOM should list librdkafka");
    assert_eq!(Some(librdkafka[0]["version"].as_str().unwrap()), rdkafka_sys.split('+').nth(1));

    // The Debian packages: each one of the image's dpkg database, OpenSSL's libssl3 among them.
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    let installed: BTreeSet<&str> = status.lines().filter_map(|l| l.strip_prefix("Package: ")).collect();
    let debs: BTreeSet<&str> = components
        .iter()
        .filter(|c| c["purl"].as_str().unwrap_or_default().starts_with("pkg:deb/debian/"))
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(debs, installed);
    for package in ["libc6", "libgcc-s1", "libssl3", "ca-certificates"] {
        assert!(debs.contains(package), "the SBOM lacks Debian package {package}");
    }
    let libssl3 = named("libssl3")[0];
    assert!(libssl3["properties"].to_string().contains(r#""value":"openssl""#), "libssl3's source: {libssl3}");
    // The binary's dynamic links are its dependencies.
    let app_ref = app["bom-ref"].as_str().unwrap();
    let deps = sbom["dependencies"].as_array().unwrap().iter().find(|d| d["ref"] == app_ref).unwrap();
    for package in ["libc6", "libssl3"] {
        let purl = named(package)[0]["purl"].clone();
        assert!(deps["dependsOn"].as_array().unwrap().contains(&purl), "tokentrail should depend on {purl}");
    }
}
