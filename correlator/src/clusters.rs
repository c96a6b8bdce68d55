//! Evidence of several clusters in one run: `NAME=PATH` arguments name the cluster a file or
//! directory belongs to, and the evidence is grouped by cluster, each group for its own engine.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest cluster name accepted in `NAME=PATH` (EKS allows 100 characters, GKE 40, AKS 63).
const MAX_NAME: usize = 100;

/// The evidence of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEvidence {
    /// The cluster (`None`: plain paths given without `--cluster`).
    pub cluster: Option<String>,
    /// Its files and directories, in the order given.
    pub paths: Vec<PathBuf>,
}

/// Whether `name` can be a cluster name in `NAME=PATH`: an ASCII letter or digit, then letters,
/// digits, `-`, `_` or `.`, at most [`MAX_NAME`] long. No `/`, so `./a=b` or `/x/a=b` is always a
/// path.
pub fn is_cluster_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Splits a `NAME=PATH` argument at its first `=`, when NAME is a cluster name and PATH is not
/// empty; else `None` (a plain path).
pub fn split_named(arg: &OsStr) -> Option<(String, PathBuf)> {
    let bytes = arg.as_bytes();
    let eq = memchr::memchr(b'=', bytes)?;
    let name = std::str::from_utf8(&bytes[..eq]).ok()?;
    let path = &bytes[eq + 1..];
    (is_cluster_name(name) && !path.is_empty()).then(|| (name.to_string(), PathBuf::from(OsStr::from_bytes(path))))
}

/// The manifest `tokentrail collect` writes beside its dumps, with a `# cluster: NAME` line.
pub const COLLECT_MANIFEST: &str = "MANIFEST.sha256";

/// How much of a manifest is read for its `# cluster:` line (it comes in the first few lines).
const MANIFEST_HEAD: u64 = 4096;

/// Groups evidence arguments by cluster: `NAME=PATH` to cluster NAME, unless the whole argument
/// names something that exists (a file called `a=b` stays a file); plain paths to `default`
/// (`--cluster`). Without `default`, a directory written by `tokentrail collect` names its
/// cluster (its manifest's `# cluster:` line): when the plain paths' directories name one
/// cluster, every plain path is that cluster's (an audit log names none, and belongs with its
/// dumps); when they name several, each such directory is its cluster's and the other plain
/// paths stay unnamed. Groups come in cluster-name order (the unnamed first), so the order of
/// the arguments does not change the report.
pub fn group(args: &[PathBuf], default: Option<&str>) -> Vec<ClusterEvidence> {
    group_in(Path::new(""), args, default)
}

/// [`group`], relative paths taken from `base` (the empty path: the current directory).
fn group_in(base: &Path, args: &[PathBuf], default: Option<&str>) -> Vec<ClusterEvidence> {
    let mut groups: BTreeMap<Option<String>, Vec<PathBuf>> = BTreeMap::new();
    let mut plain: Vec<(&PathBuf, Option<String>)> = Vec::new();
    for arg in args {
        match split_named(arg.as_os_str()) {
            Some((name, path)) if !exists(&base.join(arg)) => groups.entry(Some(name)).or_default().push(path),
            _ => plain.push((arg, default.is_none().then(|| collected_cluster(&base.join(arg))).flatten())),
        }
    }
    let recognised: BTreeSet<&str> = plain.iter().filter_map(|(_, c)| c.as_deref()).collect();
    let only = match recognised.iter().collect::<Vec<_>>()[..] {
        [one] => Some(one.to_string()),
        _ => None,
    };
    for (arg, recognised) in plain {
        let cluster = default.map(str::to_string).or_else(|| only.clone()).or(recognised);
        groups.entry(cluster).or_default().push(arg.clone());
    }
    groups.into_iter().map(|(cluster, paths)| ClusterEvidence { cluster, paths }).collect()
}

/// The cluster a directory written by `tokentrail collect` names in its manifest, when it is one
/// and the name can be a cluster name ([`is_cluster_name`]).
pub fn collected_cluster(dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut head = String::new();
    let file = std::fs::File::open(dir.join(COLLECT_MANIFEST)).ok()?;
    file.take(MANIFEST_HEAD).read_to_string(&mut head).ok()?;
    let name = head.lines().find_map(|l| l.strip_prefix("# cluster: "))?.trim();
    is_cluster_name(name).then(|| name.to_string())
}

/// Whether anything (even a dangling symbolic link) is at `path`.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn paths(args: &[&str]) -> Vec<PathBuf> {
        args.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn name_equals_path_assigns_the_path_to_the_cluster() {
        assert_eq!(
            split_named(OsStr::new("prod-eu=/evidence/eu")),
            Some((String::from("prod-eu"), PathBuf::from("/evidence/eu")))
        );
        // Only the first `=` splits.
        assert_eq!(
            split_named(OsStr::new("us=logs/a=b.log")),
            Some((String::from("us"), PathBuf::from("logs/a=b.log")))
        );
    }

    #[test]
    fn arguments_that_are_not_name_equals_path_are_plain_paths() {
        for arg in ["logs/us.log", "./prod=x", "/tmp/prod=x", "=x", "prod=", "-prod=x", "pr od=x", "-"] {
            assert_eq!(split_named(OsStr::new(arg)), None, "{arg}");
        }
        assert_eq!(split_named(OsStr::new(&format!("{}=x", "a".repeat(MAX_NAME + 1)))), None);
    }

    #[test]
    fn plain_paths_go_to_the_default_cluster_and_groups_come_in_name_order() {
        let groups = group(&paths(&["us=u.log", "dumps.json", "eu=e", "us=u2.log"]), Some("home"));
        assert_eq!(
            groups,
            vec![
                ClusterEvidence { cluster: Some(String::from("eu")), paths: paths(&["e"]) },
                ClusterEvidence { cluster: Some(String::from("home")), paths: paths(&["dumps.json"]) },
                ClusterEvidence { cluster: Some(String::from("us")), paths: paths(&["u.log", "u2.log"]) },
            ]
        );
        let groups = group(&paths(&["a.log", "b.log"]), None);
        assert_eq!(groups, vec![ClusterEvidence { cluster: None, paths: paths(&["a.log", "b.log"]) }]);
    }

    #[test]
    fn a_collect_directory_names_its_cluster_unless_cluster_is_given() {
        let dir = std::env::temp_dir().join(format!("tokentrail-clusters-collect-{}", std::process::id()));
        for (sub, cluster) in [("eu", "prod-eu"), ("us", "prod-us")] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            let manifest = format!("# tokentrail collect: evidence inventory\n# cluster: {cluster}\n# server: x\n");
            std::fs::write(dir.join(sub).join(COLLECT_MANIFEST), manifest).unwrap();
        }
        let one = group_in(&dir, &paths(&["eu", "audit.log"]), None);
        let two = group_in(&dir, &paths(&["eu", "us", "audit.log"]), None);
        let flag = group_in(&dir, &paths(&["eu", "audit.log"]), Some("home"));
        let _ = std::fs::remove_dir_all(&dir);
        // One collected cluster: the log goes with its dumps.
        assert_eq!(
            one,
            vec![ClusterEvidence { cluster: Some(String::from("prod-eu")), paths: paths(&["eu", "audit.log"]) }]
        );
        assert_eq!(
            two,
            vec![
                ClusterEvidence { cluster: None, paths: paths(&["audit.log"]) },
                ClusterEvidence { cluster: Some(String::from("prod-eu")), paths: paths(&["eu"]) },
                ClusterEvidence { cluster: Some(String::from("prod-us")), paths: paths(&["us"]) },
            ]
        );
        assert_eq!(
            flag,
            vec![ClusterEvidence { cluster: Some(String::from("home")), paths: paths(&["eu", "audit.log"]) }]
        );
    }

    #[test]
    fn an_existing_file_whose_name_has_an_equals_sign_is_read_as_a_path() {
        let dir = std::env::temp_dir().join(format!("tokentrail-clusters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prod=audit.log");
        std::fs::write(&file, "{}\n").unwrap();
        let arg = PathBuf::from("prod=audit.log");
        let groups = group_in(&dir, std::slice::from_ref(&arg), None);
        assert_eq!(groups, vec![ClusterEvidence { cluster: None, paths: vec![arg.clone()] }]);
        // Gone, the same argument is cluster `prod`'s `audit.log`.
        std::fs::remove_file(&file).unwrap();
        let groups = group_in(&dir, &[arg], None);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(groups, vec![ClusterEvidence { cluster: Some(String::from("prod")), paths: paths(&["audit.log"]) }]);
    }
}
