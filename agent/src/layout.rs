//! The kubelet's on-disk layout, as pure functions and types (no I/O).
//!
//! `<root>/<pod-uid>/volumes/kubernetes.io~projected/<volume>/token` holds a projected token,
//! `kubernetes.io~secret/<volume>/token` a Secret's `token` key (legacy tokens). Both volume
//! plugins use the atomic writer: the real files live in `..YYYY_MM_DD_HH_MM_SS.<random>/`, and
//! `..data` is a symlink to that directory, swapped by rename on every write
//! (docs/kubernetes.md §4.2). The directory name is the UTC time of the last write.

/// The kubelet volume plugin a token file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VolumeKind {
    /// `kubernetes.io~projected`.
    Projected,
    /// `kubernetes.io~secret`.
    Secret,
}

impl VolumeKind {
    /// Every kind the agent scans.
    pub const ALL: [VolumeKind; 2] = [VolumeKind::Projected, VolumeKind::Secret];

    /// The plugin's directory name under `<pod>/volumes/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeKind::Projected => "kubernetes.io~projected",
            VolumeKind::Secret => "kubernetes.io~secret",
        }
    }
}

/// The file name the agent reads in each volume.
pub const TOKEN_FILE: &str = "token";

/// The atomic writer's symlink to the current data directory.
pub const DATA_LINK: &str = "..data";

/// Where a token file is: the key of a credential in the agent's state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The pod directory's name: the pod's uid.
    pub pod_uid: String,
    /// Volume plugin.
    pub kind: VolumeKind,
    /// Volume name.
    pub volume: String,
    /// File name inside the volume.
    pub file: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/volumes/{}/{}/{}", self.pod_uid, self.kind.dir_name(), self.volume, self.file)
    }
}

/// Whether `target`, read from a `..data` link, names a sibling directory the atomic writer
/// could have made: one path component, starting with `..`, not `.`/`..`/`..data`. Anything else
/// (an absolute path, `../x`, `a/b`) would lead out of the volume and is refused.
pub fn is_valid_data_target(target: &[u8]) -> bool {
    target.len() > 2
        && target.starts_with(b"..")
        && target != DATA_LINK.as_bytes()
        && !target.contains(&b'/')
        && !target.contains(&0)
}

/// Whether a directory entry name can be a pod uid (the agent skips anything else).
pub fn is_plausible_pod_dir(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 64 && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// Whether a directory entry name can be a volume name (a DNS-1123 label; escaped `~` allowed).
pub fn is_plausible_volume_dir(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(b".")
        && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The UTC time, in microseconds since the Unix epoch, in an atomic-writer directory name
/// `..2025_06_28_09_28_32.<random>`; `None` if the name is not of that form.
pub fn writer_timestamp_micros(target: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(target.strip_prefix(b"..")?).ok()?;
    let (stamp, random) = s.split_once('.')?;
    if random.is_empty() {
        return None;
    }
    let f: Vec<&str> = stamp.split('_').collect();
    let [y, mo, d, h, mi, se] = f.as_slice() else { return None };
    let num = |v: &str, len: usize| -> Option<i64> {
        (v.len() == len && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse().ok()).flatten()
    };
    let (y, mo, d, h, mi, se) = (num(y, 4)?, num(mo, 2)?, num(d, 2)?, num(h, 2)?, num(mi, 2)?, num(se, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = tokentrail_proto::time::days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + se * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_directory_name_gives_the_utc_write_time() {
        // 2025-06-28T09:28:32Z
        assert_eq!(writer_timestamp_micros(b"..2025_06_28_09_28_32.3805414952"), Some(1_751_102_912_000_000));
        assert_eq!(writer_timestamp_micros(b"..1970_01_01_00_00_00.x"), Some(0));
        for bad in [
            &b"..data"[..],
            b"..2025_06_28_09_28_32",
            b"..2025_13_28_09_28_32.x",
            b"2025_06_28_09_28_32.x",
            b"..25_06_28_09_28_32.x",
        ] {
            assert_eq!(writer_timestamp_micros(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn data_link_targets_outside_the_volume_are_refused() {
        assert!(is_valid_data_target(b"..2025_06_28_09_28_32.123"));
        for bad in [&b"/etc"[..], b"../other", b"..", b".", b"..data", b"..a/../../x", b"x"] {
            assert!(!is_valid_data_target(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn pod_and_volume_names_are_checked() {
        assert!(is_plausible_pod_dir(b"5f1a2b3c-0000-4000-8000-00000000abcd"));
        assert!(!is_plausible_pod_dir(b".."));
        assert!(!is_plausible_pod_dir(b"a b"));
        assert!(is_plausible_volume_dir(b"kube-api-access-pls9v"));
        assert!(!is_plausible_volume_dir(b"..data"));
    }

    #[test]
    fn location_displays_as_a_relative_path() {
        let l = Location { pod_uid: "u".into(), kind: VolumeKind::Secret, volume: "v".into(), file: "token".into() };
        assert_eq!(l.to_string(), "u/volumes/kubernetes.io~secret/v/token");
    }
}
