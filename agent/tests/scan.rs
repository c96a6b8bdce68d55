//! Scanning a temporary kubelet pods directory holding real JWTs, including rotation by atomic
//! swap and hostile content: hostile entries are refused and counted, and the scan goes on.

mod common;

use common::{legacy_token, pod_token, Kubelet};
use tokentrail_agent::claims::TokenKind;
use tokentrail_agent::layout::VolumeKind;
use tokentrail_agent::scan::{scan_all, scan_pod, Refusal, ScanLimits};

const POD: &str = "0b7c6a4e-1111-4000-8000-000000000001";
const POD2: &str = "0b7c6a4e-2222-4000-8000-000000000002";

fn limits() -> ScanLimits {
    ScanLimits::default()
}

#[test]
fn projected_and_legacy_tokens_are_found_with_their_claims_and_write_time() {
    let k = Kubelet::new();
    k.projected_token(
        POD,
        "kube-api-access-pls9v",
        &pod_token("jti-1", "payments", "api", "api-0", POD, "worker-1", 1_750_000_000),
        "2025_06_28_09_28_32",
    );
    k.secret_token(
        POD,
        "deployer-token",
        &legacy_token("payments", "deployer", "deployer-token-x7k2"),
        "2024_01_02_03_04_05",
    );
    let out = scan_all(k.root(), &limits()).unwrap();
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    assert_eq!(out.pods, [POD]);
    let creds: Vec<_> = out.credentials.values().collect();
    assert_eq!(creds.len(), 2);

    let projected = creds.iter().find(|c| c.location.kind == VolumeKind::Projected).unwrap();
    assert_eq!(projected.location.volume, "kube-api-access-pls9v");
    assert_eq!(projected.claims.kind, TokenKind::PodBound);
    assert_eq!(projected.claims.jti.as_deref(), Some("jti-1"));
    assert_eq!(projected.claims.pod.as_ref().unwrap().uid, POD);
    assert_eq!(projected.claims.node.as_ref().unwrap().name, "worker-1");
    assert_eq!(projected.claims.warn_after, Some(1_750_003_607));
    assert_eq!(projected.written_at_micros, Some(1_751_102_912_000_000), "the ..data target's name is the write time");

    let legacy = creds.iter().find(|c| c.location.kind == VolumeKind::Secret).unwrap();
    assert_eq!(legacy.claims.kind, TokenKind::LegacySecret);
    assert_eq!(legacy.claims.legacy_secret_name.as_deref(), Some("deployer-token-x7k2"));
}

#[test]
fn rotation_by_atomic_swap_is_seen_by_the_next_scan() {
    let k = Kubelet::new();
    let vol = "kube-api-access-abcde";
    k.projected_token(POD, vol, &pod_token("old", "ns", "sa", "p", POD, "n", 1), "2025_06_28_09_00_00");
    assert_eq!(
        scan_pod(k.root(), POD, &limits()).unwrap().credentials.values().next().unwrap().claims.jti.as_deref(),
        Some("old")
    );
    k.projected_token(POD, vol, &pod_token("new", "ns", "sa", "p", POD, "n", 2), "2025_06_28_09_48_00");
    let out = scan_pod(k.root(), POD, &limits()).unwrap();
    let c = out.credentials.values().next().unwrap();
    assert_eq!(c.claims.jti.as_deref(), Some("new"));
    assert_eq!(out.credentials.len(), 1);
    // The old timestamped directory is gone, as the kubelet removes it.
    let entries = std::fs::read_dir(k.volume_dir(POD, "kubernetes.io~projected", vol)).unwrap().count();
    assert_eq!(entries, 5, "..data, one data dir, three user links");
}

#[test]
fn a_data_link_pointing_outside_the_volume_is_refused() {
    let k = Kubelet::new();
    let outside = k.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("token"), pod_token("stolen", "ns", "sa", "p", POD, "n", 1)).unwrap();
    let vol = k.volume_dir(POD, "kubernetes.io~projected", "evil");
    std::fs::create_dir_all(&vol).unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("..data")).unwrap();
    let vol2 = k.volume_dir(POD, "kubernetes.io~projected", "evil-relative");
    std::fs::create_dir_all(&vol2).unwrap();
    std::os::unix::fs::symlink("../../../../outside", vol2.join("..data")).unwrap();
    k.projected_token(POD, "good", &pod_token("fine", "ns", "sa", "p", POD, "n", 1), "2025_01_01_00_00_00");
    // A stray regular file where pod directories live.
    std::fs::write(k.root().join("0b7c6a4e-3333"), "x").unwrap();

    let out = scan_all(k.root(), &limits()).unwrap();
    assert_eq!(out.credentials.len(), 1, "the good volume is still read");
    assert_eq!(out.credentials.values().next().unwrap().claims.jti.as_deref(), Some("fine"));
    let reasons: Vec<_> = out.refused.iter().map(|r| (r.path.as_str(), r.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("0b7c6a4e-1111-4000-8000-000000000001/volumes/kubernetes.io~projected/evil/token", Refusal::Symlink),
            (
                "0b7c6a4e-1111-4000-8000-000000000001/volumes/kubernetes.io~projected/evil-relative/token",
                Refusal::Symlink
            ),
            ("0b7c6a4e-3333", Refusal::NotAFile),
        ]
    );
}

#[test]
fn a_token_file_that_is_a_symlink_is_refused_not_followed() {
    let k = Kubelet::new();
    let secret = k.root().join("host.secret");
    std::fs::write(&secret, pod_token("host", "ns", "sa", "p", POD, "n", 1)).unwrap();
    // Inside a writer directory.
    k.write_volume(POD, "kubernetes.io~projected", "v1", &[("ca.crt", "x")], "2025_01_01_00_00_00");
    let v1 = k.volume_dir(POD, "kubernetes.io~projected", "v1");
    let data = std::fs::read_link(v1.join("..data")).unwrap();
    std::os::unix::fs::symlink(&secret, v1.join(data).join("token")).unwrap();
    // A plain volume (no ..data) whose token is a symlink.
    let v2 = k.volume_dir(POD, "kubernetes.io~secret", "v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::os::unix::fs::symlink(&secret, v2.join("token")).unwrap();
    // A volume directory that is itself a symlink.
    std::os::unix::fs::symlink(k.root().join("host.secret-dir"), k.volume_dir(POD, "kubernetes.io~secret", "v3"))
        .unwrap();

    let out = scan_all(k.root(), &limits()).unwrap();
    assert!(out.credentials.is_empty());
    assert_eq!(out.refused.len(), 3, "{:?}", out.refused);
    assert!(out.refused.iter().all(|r| r.reason == Refusal::Symlink), "{:?}", out.refused);
}

#[test]
fn a_100_mb_token_is_refused_without_being_read() {
    let k = Kubelet::new();
    k.write_volume(POD, "kubernetes.io~projected", "huge", &[("token", "x")], "2025_01_01_00_00_00");
    let vol = k.volume_dir(POD, "kubernetes.io~projected", "huge");
    let data = std::fs::read_link(vol.join("..data")).unwrap();
    // Sparse: 100 MiB by size, no disk used; the agent must refuse it by fstat alone.
    std::fs::OpenOptions::new()
        .write(true)
        .open(vol.join(data).join("token"))
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    k.projected_token(POD2, "ok", &pod_token("ok", "ns", "sa", "p", POD2, "n", 1), "2025_01_01_00_00_00");
    let out = scan_all(k.root(), &limits()).unwrap();
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].reason, Refusal::TooLarge);
    assert_eq!(out.refused[0].detail, "104857600 bytes");
    assert_eq!(out.files_read, 1, "only the good token was read");
    assert_eq!(out.credentials.len(), 1);
}

#[test]
fn malformed_jwts_and_non_service_account_tokens_are_refused_and_counted() {
    let k = Kubelet::new();
    let foreign = common::sign(&serde_json::json!({"sub": "alice@example.com", "iss": "https://idp.example"}));
    for (i, content) in ["not a jwt", "a.b", "aGVsbG8.!!!.c2ln", "eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln", &foreign, ""]
        .iter()
        .enumerate()
    {
        k.projected_token(POD, &format!("bad-{i}"), content, "2025_01_01_00_00_00");
    }
    k.projected_token(POD, "good", &pod_token("fine", "ns", "sa", "p", POD, "n", 1), "2025_01_01_00_00_00");
    let out = scan_all(k.root(), &limits()).unwrap();
    assert_eq!(out.credentials.len(), 1);
    assert_eq!(out.refused.len(), 6, "{:?}", out.refused);
    assert!(out.refused.iter().all(|r| r.reason == Refusal::Malformed));
    assert!(
        out.refused.iter().all(|r| !r.detail.contains("not a jwt") && !r.detail.contains("alice")),
        "{:?}",
        out.refused
    );
}

#[test]
fn special_files_are_refused_and_volumes_without_tokens_are_skipped() {
    let k = Kubelet::new();
    k.write_volume(POD, "kubernetes.io~projected", "fifo", &[("ca.crt", "x")], "2025_01_01_00_00_00");
    let vol = k.volume_dir(POD, "kubernetes.io~projected", "fifo");
    let data = std::fs::read_link(vol.join("..data")).unwrap();
    let status = std::process::Command::new("mkfifo").arg(vol.join(data).join("token")).status().unwrap();
    assert!(status.success());
    k.write_volume(POD, "kubernetes.io~projected", "config-only", &[("app.yaml", "a: 1")], "2025_01_01_00_00_00");
    let out = scan_all(k.root(), &limits()).unwrap();
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].reason, Refusal::NotAFile);
    assert!(out.credentials.is_empty());
}

#[test]
fn entries_that_vanish_are_counted_not_refused() {
    let k = Kubelet::new();
    // A `..data` link whose target directory was removed under it: what a scan racing the
    // kubelet's cleanup (or a pod teardown) sees.
    let vol = k.volume_dir(POD, "kubernetes.io~projected", "racing");
    std::fs::create_dir_all(&vol).unwrap();
    std::os::unix::fs::symlink("..2025_01_01_00_00_00.gone", vol.join("..data")).unwrap();
    k.projected_token(POD2, "ok", &pod_token("ok", "ns", "sa", "p", POD2, "n", 1), "2025_01_01_00_00_00");
    let out = scan_all(k.root(), &limits()).unwrap();
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    assert_eq!(out.vanished, 1);
    assert_eq!(out.credentials.len(), 1);
    // A pod directory that is gone entirely scans as empty.
    k.remove_pod(POD2);
    let out = scan_pod(k.root(), POD2, &limits()).unwrap();
    assert!(out.credentials.is_empty() && out.refused.is_empty());
    assert_eq!(out.vanished, 1);
}

#[test]
fn limits_on_pods_and_volumes_are_enforced_and_counted() {
    let k = Kubelet::new();
    for i in 0..3 {
        let uid = format!("pod-{i}");
        for v in 0..3 {
            k.projected_token(
                &uid,
                &format!("v{v}"),
                &pod_token(&format!("j{i}{v}"), "ns", "sa", "p", &uid, "n", 1),
                "2025_01_01_00_00_00",
            );
        }
    }
    let out = scan_all(k.root(), &ScanLimits { max_pods: 2, max_volumes_per_pod: 2, ..ScanLimits::default() }).unwrap();
    assert_eq!(out.credentials.len(), 4);
    assert_eq!(out.refused.iter().filter(|r| r.reason == Refusal::OverLimit).count(), 3, "{:?}", out.refused);
}

#[test]
fn a_missing_root_is_an_error() {
    let err = scan_all(std::path::Path::new("/nonexistent/kubelet/pods"), &limits()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kubelet/pods"));
}

#[test]
fn plain_regular_token_files_without_the_atomic_writer_are_read() {
    let k = Kubelet::new();
    let vol = k.volume_dir(POD, "kubernetes.io~secret", "plain");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("token"), legacy_token("ns", "sa", "s1")).unwrap();
    let out = scan_all(k.root(), &limits()).unwrap();
    let c = out.credentials.values().next().unwrap();
    assert_eq!(c.claims.legacy_secret_name.as_deref(), Some("s1"));
    assert!(c.written_at_micros.unwrap() > 0, "falls back to the file's mtime");
}

#[test]
fn pods_created_and_torn_down_during_scans_never_break_a_scan() {
    let k = std::sync::Arc::new(Kubelet::new());
    k.projected_token(POD, "stable", &pod_token("stable", "ns", "sa", "p", POD, "n", 1), "2025_01_01_00_00_00");
    // Counted, not timed: on a loaded machine a fixed time may hold too few scans to race.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let churn = {
        let (k, stop, changed) = (k.clone(), stop.clone(), changed.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let uid = format!("churn-{}", i % 8);
                if k.root().join(&uid).exists() {
                    k.remove_pod(&uid);
                } else {
                    k.projected_token(
                        &uid,
                        "v",
                        &pod_token(&format!("c{i}"), "ns", "sa", "p", &uid, "n", 1),
                        "2025_01_01_00_00_00",
                    );
                }
                i += 1;
                changed.store(i, std::sync::atomic::Ordering::Relaxed);
            }
            i
        })
    };
    let mut scans = 0;
    let mut vanished = 0;
    while scans < 50 || changed.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        let out = scan_all(k.root(), &limits()).unwrap();
        assert!(out.refused.is_empty(), "a vanishing entry is not hostile: {:?}", out.refused);
        assert!(
            out.credentials.values().any(|c| c.claims.jti.as_deref() == Some("stable")),
            "the stable pod is always seen"
        );
        scans += 1;
        vanished += out.vanished;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = churn.join().unwrap();
    println!("{scans} scans during {changes} pod creations/removals, {vanished} entries vanished mid-scan");
}
