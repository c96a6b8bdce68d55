//! Reading token files from the kubelet pods directory (the only file I/O of the agent).
//!
//! Every path below the configured root is walked with `openat(…, O_NOFOLLOW)` relative to an
//! already opened directory, so no symlink is ever followed, except the atomic writer's `..data`
//! link, which is read with `readlinkat` and resolved by hand only when it names a sibling
//! directory inside the same volume ([`layout::is_valid_data_target`]). A token file must be a
//! regular file no larger than the configured bound; its bytes live only in a local buffer that
//! is zeroed once the claims are decoded. Hostile or broken content is refused, counted per
//! [`Refusal`] with its location, and the scan goes on.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;

use crate::claims::{self, Claims, ClaimsError};
use crate::layout::{self, Location, VolumeKind};

/// Bounds on what a scan accepts.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// Largest token file read, in bytes (real tokens are 1-2 KiB).
    pub max_token_bytes: u64,
    /// Most pod directories scanned.
    pub max_pods: usize,
    /// Most volumes per plugin per pod.
    pub max_volumes_per_pod: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits { max_token_bytes: 64 * 1024, max_pods: 1024, max_volumes_per_pod: 64 }
    }
}

/// A token file found and decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCredential {
    /// Where it is.
    pub location: Location,
    /// Its claims.
    pub claims: Claims,
    /// When the kubelet last wrote it (µs since the Unix epoch): the `..data` target's name, else
    /// the file's mtime.
    pub written_at_micros: Option<i64>,
}

/// Why a file or directory was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A symlink where none may be, or a `..data` link leading out of its volume.
    Symlink,
    /// The token file is larger than [`ScanLimits::max_token_bytes`].
    TooLarge,
    /// Not a regular file where a token should be (a FIFO, a device), or not a directory where
    /// a directory should be.
    NotAFile,
    /// The content is not a service-account JWT.
    Malformed,
    /// Too many pods or volumes: the rest was skipped.
    OverLimit,
    /// Any other I/O error.
    Io,
}

impl Refusal {
    /// A stable lowercase name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Symlink => "symlink",
            Refusal::TooLarge => "too_large",
            Refusal::NotAFile => "not_a_file",
            Refusal::Malformed => "malformed",
            Refusal::OverLimit => "over_limit",
            Refusal::Io => "io",
        }
    }
}

/// One refused entry: where and why (never what it contained).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Path relative to the kubelet pods directory.
    pub path: String,
    /// Why.
    pub reason: Refusal,
    /// Detail safe to log (an errno, a claims error), never content.
    pub detail: String,
}

/// The result of scanning one pod or the whole directory.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Credentials found, by location.
    pub credentials: BTreeMap<Location, HeldCredential>,
    /// Pod directories seen (uids), including those without tokens.
    pub pods: Vec<String>,
    /// What was refused.
    pub refused: Vec<Refused>,
    /// Entries that vanished while being read (pods torn down mid-scan): normal, not refused.
    pub vanished: u64,
    /// Token files read.
    pub files_read: u64,
}

/// Error opening the kubelet pods directory itself: the scan cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open kubelet pods directory {path}: {source}")]
pub struct RootError {
    /// The configured root.
    pub path: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
const FILE_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::NONBLOCK);

/// Opens the kubelet pods directory (the root itself may be a symlink: it is configuration).
pub fn open_root(root: &Path) -> Result<OwnedFd, RootError> {
    rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| RootError { path: root.display().to_string(), source: e.into() })
}

/// Scans every pod directory under `root`.
pub fn scan_all(root: &Path, limits: &ScanLimits) -> Result<ScanOutcome, RootError> {
    let root_fd = open_root(root)?;
    let mut out = ScanOutcome::default();
    let names = match list_dir(&root_fd) {
        Ok(n) => n,
        Err(e) => return Err(RootError { path: root.display().to_string(), source: e.into() }),
    };
    for name in names {
        if !layout::is_plausible_pod_dir(name.as_bytes()) {
            continue;
        }
        if out.pods.len() >= limits.max_pods {
            out.refused.push(Refused { path: name, reason: Refusal::OverLimit, detail: "max pods".into() });
            continue;
        }
        scan_pod_into(&root_fd, &name, limits, &mut out);
    }
    Ok(out)
}

/// Scans one pod directory. A pod directory that does not exist gives an empty outcome.
pub fn scan_pod(root: &Path, pod_uid: &str, limits: &ScanLimits) -> Result<ScanOutcome, RootError> {
    let root_fd = open_root(root)?;
    let mut out = ScanOutcome::default();
    if layout::is_plausible_pod_dir(pod_uid.as_bytes()) {
        scan_pod_into(&root_fd, pod_uid, limits, &mut out);
    }
    Ok(out)
}

fn scan_pod_into(root_fd: &OwnedFd, pod_uid: &str, limits: &ScanLimits, out: &mut ScanOutcome) {
    let pod_fd = match open_dir(root_fd, pod_uid) {
        Ok(fd) => fd,
        Err(e) => return note_error(out, pod_uid.to_string(), e, "pod directory"),
    };
    out.pods.push(pod_uid.to_string());
    let volumes_fd = match open_dir(&pod_fd, "volumes") {
        Ok(fd) => fd,
        // A pod directory without volumes is ordinary (static pods, teardown in progress).
        Err(Errno::NOENT) => return,
        Err(e) => return note_error(out, format!("{pod_uid}/volumes"), e, "volumes directory"),
    };
    for kind in VolumeKind::ALL {
        let plugin_path = format!("{pod_uid}/volumes/{}", kind.dir_name());
        let plugin_fd = match open_dir(&volumes_fd, kind.dir_name()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => {
                note_error(out, plugin_path, e, "plugin directory");
                continue;
            }
        };
        let names = match list_dir(&plugin_fd) {
            Ok(n) => n,
            Err(e) => {
                note_error(out, plugin_path, e, "plugin directory");
                continue;
            }
        };
        for (i, volume) in names.into_iter().filter(|n| layout::is_plausible_volume_dir(n.as_bytes())).enumerate() {
            let location =
                Location { pod_uid: pod_uid.to_string(), kind, volume, file: layout::TOKEN_FILE.to_string() };
            if i >= limits.max_volumes_per_pod {
                out.refused.push(Refused {
                    path: location.to_string(),
                    reason: Refusal::OverLimit,
                    detail: "max volumes".into(),
                });
                continue;
            }
            read_volume(&plugin_fd, location, limits, out);
        }
    }
}

/// Reads `<volume>/..data/token` (or a plain `<volume>/token`) and decodes it.
fn read_volume(plugin_fd: &OwnedFd, location: Location, limits: &ScanLimits, out: &mut ScanOutcome) {
    let path = location.to_string();
    let vol_fd = match open_dir(plugin_fd, location.volume.as_str()) {
        Ok(fd) => fd,
        Err(e) => return note_error(out, path, e, "volume directory"),
    };
    let (file_fd, written_at) = match rfs::readlinkat(&vol_fd, layout::DATA_LINK, Vec::new()) {
        Ok(target) => {
            let target = target.into_bytes();
            if !layout::is_valid_data_target(&target) {
                let detail = "..data leads out of the volume".to_string();
                return out.refused.push(Refused { path, reason: Refusal::Symlink, detail });
            }
            let data_fd = match open_dir(&vol_fd, target.as_slice()) {
                Ok(fd) => fd,
                Err(e) => return note_error(out, path, e, "..data target"),
            };
            match rfs::openat(&data_fd, layout::TOKEN_FILE, FILE_FLAGS, Mode::empty()) {
                Ok(fd) => (fd, layout::writer_timestamp_micros(&target)),
                // A projected volume without a token (ConfigMaps, downward API only).
                Err(Errno::NOENT) => return,
                Err(e) => return note_error(out, path, e, "token file"),
            }
        }
        // No atomic writer here: accept a plain regular `token` file, never a symlink.
        Err(Errno::NOENT) | Err(Errno::INVAL) => {
            match rfs::openat(&vol_fd, layout::TOKEN_FILE, FILE_FLAGS, Mode::empty()) {
                Ok(fd) => (fd, None),
                Err(Errno::NOENT) => return,
                Err(e) => return note_error(out, path, e, "token file"),
            }
        }
        Err(e) => return note_error(out, path, e, "..data link"),
    };
    let stat = match rfs::fstat(&file_fd) {
        Ok(s) => s,
        Err(e) => return note_error(out, path, e, "token file"),
    };
    if rfs::FileType::from_raw_mode(stat.st_mode) != rfs::FileType::RegularFile {
        return out.refused.push(Refused { path, reason: Refusal::NotAFile, detail: "not a regular file".into() });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if size > limits.max_token_bytes {
        return out.refused.push(Refused { path, reason: Refusal::TooLarge, detail: format!("{size} bytes") });
    }
    let written_at = written_at.or_else(|| Some(stat.st_mtime.saturating_mul(1_000_000)));
    let mut file = std::fs::File::from(file_fd);
    // Read at most one byte past the bound: a file may grow between fstat and read.
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    let read = (&mut file).take(limits.max_token_bytes + 1).read_to_end(&mut buf);
    out.files_read += 1;
    let decoded = match read {
        Ok(_) if buf.len() as u64 > limits.max_token_bytes => {
            Err(Refused { path, reason: Refusal::TooLarge, detail: "grew while read".into() })
        }
        Ok(_) => claims::decode(&buf).map_err(|e: ClaimsError| Refused {
            path,
            reason: Refusal::Malformed,
            detail: e.to_string(),
        }),
        Err(e) => Err(Refused { path, reason: Refusal::Io, detail: e.to_string() }),
    };
    // The token was in `buf`: overwrite it before the allocation is freed.
    buf.fill(0);
    std::hint::black_box(&buf);
    drop(buf);
    match decoded {
        Ok(claims) => {
            out.credentials
                .insert(location.clone(), HeldCredential { location, claims, written_at_micros: written_at });
        }
        Err(refused) => out.refused.push(refused),
    }
}

/// Opens a subdirectory without following a symlink. Linux reports a symlink opened with
/// `O_NOFOLLOW | O_DIRECTORY` as ENOTDIR, like a regular file; this tells them apart so a
/// symlink is reported as one (ELOOP).
fn open_dir<P: rustix::path::Arg + Copy>(parent: &OwnedFd, name: P) -> Result<OwnedFd, Errno> {
    match rfs::openat(parent, name, DIR_FLAGS, Mode::empty()) {
        Err(Errno::NOTDIR) => match rfs::statat(parent, name, rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink => Err(Errno::LOOP),
            _ => Err(Errno::NOTDIR),
        },
        other => other,
    }
}

/// Classifies an errno from walking the tree.
fn note_error(out: &mut ScanOutcome, path: String, e: Errno, what: &str) {
    match e {
        // Torn down between listing and opening: the next scan simply won't see it.
        Errno::NOENT => out.vanished += 1,
        // O_NOFOLLOW on a symlink fails with ELOOP (EMLINK on some BSDs).
        Errno::LOOP | Errno::MLINK => {
            out.refused.push(Refused { path, reason: Refusal::Symlink, detail: format!("{what} is a symlink") })
        }
        Errno::NOTDIR => {
            out.refused.push(Refused { path, reason: Refusal::NotAFile, detail: format!("{what} is not a directory") })
        }
        e => out.refused.push(Refused { path, reason: Refusal::Io, detail: format!("{what}: {e}") }),
    }
}

/// Names in a directory, sorted (deterministic scans), without `.` and `..`.
fn list_dir(fd: &OwnedFd) -> Result<Vec<String>, Errno> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(fd.as_fd())? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        // Kubernetes names are ASCII; a non-UTF-8 name cannot be a pod uid or volume.
        if let Ok(s) = std::str::from_utf8(bytes) {
            names.push(s.to_string());
        }
    }
    names.sort();
    Ok(names)
}
