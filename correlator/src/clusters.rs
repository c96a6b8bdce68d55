//! Evidence of several clusters in one run: `NAME=PATH` arguments name the cluster a file or
//! directory belongs to, a directory written by `tokentrail collect` names its cluster in its
//! manifest, and a managed cloud's export names its cluster in its records
//! ([`tokentrail_aggregator_core::cluster_names`]); the evidence is grouped by cluster, each
//! group for its own engine.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokentrail_aggregator_core::cluster_names::{clusters_named, NamedBy};
use tokentrail_aggregator_core::Limits;

use crate::evidence::{self, EvidenceError, EvidenceFile, PassedOver};

/// Longest cluster name accepted in `NAME=PATH` (EKS allows 100 characters, GKE 40, AKS 63).
const MAX_NAME: usize = 100;

/// The evidence of one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterEvidence {
    /// The cluster (`None`: plain paths given without `--cluster` whose cluster nothing told).
    pub cluster: Option<String>,
    /// Its files and directories, in the order given.
    pub paths: Vec<PathBuf>,
    /// Files of plain paths, already found (the paths were walked to read each file's start).
    pub files: Vec<PlainFile>,
}

impl ClusterEvidence {
    /// The field that named this cluster in `path`'s own records, if they did.
    pub fn named_by(&self, path: &Path) -> Option<NamedBy> {
        self.files.iter().find(|f| f.file.path == path).and_then(|f| f.named_by)
    }
}

/// A file found under a plain path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainFile {
    /// The file.
    pub file: EvidenceFile,
    /// The field of its records that named its cluster, when they named exactly one.
    pub named_by: Option<NamedBy>,
}

/// Evidence arguments grouped by cluster, with what telling them apart found on the way.
#[derive(Debug, Default)]
pub struct Grouping {
    /// Each cluster's evidence, in cluster-name order (the unnamed first).
    pub clusters: Vec<ClusterEvidence>,
    /// Files whose records name two or more clusters: left unnamed (attribution is per file).
    pub several: Vec<(PathBuf, Vec<String>)>,
    /// Plain paths that could not be walked, or were refused.
    pub errors: Vec<EvidenceError>,
    /// Entries of plain directories passed over (hidden, reached twice).
    pub passed_over: Vec<PassedOver>,
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

/// The evidence arguments, `NAME=PATH` told from plain paths (before any file is read, so a
/// path can still be replaced: `-`, standard input, by its spooled copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arguments {
    /// `NAME=PATH` arguments, in the order given.
    pub named: Vec<(String, PathBuf)>,
    /// Plain paths, in the order given.
    pub plain: Vec<PathBuf>,
}

impl Arguments {
    /// Every path, named or plain.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.named.iter_mut().map(|(_, p)| p).chain(self.plain.iter_mut())
    }
}

/// Tells `NAME=PATH` arguments from plain paths: `NAME=PATH` unless the whole argument names
/// something that exists (a file called `a=b` stays a file).
pub fn arguments(args: &[PathBuf]) -> Arguments {
    arguments_in(Path::new(""), args)
}

fn arguments_in(base: &Path, args: &[PathBuf]) -> Arguments {
    let mut split = Arguments::default();
    for arg in args {
        match split_named(arg.as_os_str()) {
            Some(named) if !exists(&base.join(arg)) => split.named.push(named),
            _ => split.plain.push(arg.clone()),
        }
    }
    split
}

/// Groups evidence by cluster: `NAME=PATH` to cluster NAME; plain paths to `default`
/// (`--cluster`), or without it, to the cluster they name themselves: a directory written by
/// `tokentrail collect` its manifest's (`# cluster:`), any other file the one its first records
/// name (a cloud export; [`assign`] says how files that name none are placed). Plain
/// directories are walked here, so each file is placed on its own; the first MiB of each plain
/// file is read for that (decompressed within `limits`). Groups come in cluster-name order (the
/// unnamed first), so the order of the arguments does not change the report.
pub fn group(arguments: &Arguments, default: Option<&str>, limits: Limits) -> Grouping {
    group_in(Path::new(""), arguments, default, limits)
}

/// [`group`], relative paths taken from `base` (the empty path: the current directory).
fn group_in(base: &Path, arguments: &Arguments, default: Option<&str>, limits: Limits) -> Grouping {
    let mut clusters: BTreeMap<Option<String>, ClusterEvidence> = BTreeMap::new();
    for (name, path) in &arguments.named {
        evidence_of(&mut clusters, Some(name.clone())).paths.push(path.clone());
    }
    let mut grouping = Grouping::default();
    if let Some(default) = default {
        // `--cluster` names the plain paths' cluster: nothing of theirs is read to tell it.
        evidence_of(&mut clusters, Some(default.to_string())).paths.extend(arguments.plain.iter().cloned());
    } else {
        let mut said = Vec::new();
        let mut collected_dirs = Vec::new();
        let mut walked = Vec::new();
        for path in &arguments.plain {
            match collected_cluster(&base.join(path)) {
                Some(name) => {
                    said.push(Said { names: BTreeSet::from([name]) });
                    collected_dirs.push(path.clone());
                }
                None => walked.push(base.join(path)),
            }
        }
        let found = evidence::collect(&walked);
        let mut files = Vec::new();
        for file in found.files {
            let named = evidence::head(&file.path, limits)
                .map(|h| clusters_named(&h.text, h.layout, h.complete))
                .unwrap_or_default();
            if named.len() > 1 {
                grouping.several.push((file.path.clone(), named.keys().cloned().collect()));
            }
            let named_by = match &named.iter().collect::<Vec<_>>()[..] {
                [(_, by)] => Some(**by),
                _ => None,
            };
            said.push(Said { names: named.into_keys().collect() });
            files.push(PlainFile { file, named_by });
        }
        let placed = assign(&said);
        let (dirs_placed, files_placed) = placed.split_at(collected_dirs.len());
        for (dir, cluster) in collected_dirs.into_iter().zip(dirs_placed) {
            evidence_of(&mut clusters, cluster.clone()).paths.push(dir);
        }
        for (file, cluster) in files.into_iter().zip(files_placed) {
            evidence_of(&mut clusters, cluster.clone()).files.push(file);
        }
        grouping.errors = found.errors;
        grouping.passed_over = found.passed_over;
    }
    grouping.clusters = clusters.into_values().collect();
    grouping
}

fn evidence_of(
    clusters: &mut BTreeMap<Option<String>, ClusterEvidence>,
    cluster: Option<String>,
) -> &mut ClusterEvidence {
    clusters.entry(cluster.clone()).or_insert_with(|| ClusterEvidence { cluster, ..ClusterEvidence::default() })
}

/// What a plain path's file, or a collect directory, says of its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Said {
    /// The clusters it names: a collect directory's, or those its first records name.
    names: BTreeSet<String>,
}

/// The cluster of each plain file or collect directory, `--cluster` not given:
/// * one that names exactly one cluster is that cluster's;
/// * one that names several is no cluster's (a file is the unit: its records are not split);
/// * one that names none (an audit log without an envelope, a kubectl dump) is the cluster
///   every plain path that names one names, when that is one cluster: the dumps beside a
///   cloud export, or an audit log beside its cluster's collect directory, are that cluster's
///   (as before exports were recognised, when all of them were analysed together); else no
///   cluster's, so it is not placed on another cluster's pods.
fn assign(said: &[Said]) -> Vec<Option<String>> {
    let named: BTreeSet<&String> = said.iter().flat_map(|s| &s.names).collect();
    let beside = match named.into_iter().collect::<Vec<_>>()[..] {
        [one] => Some(one.clone()),
        _ => None,
    };
    said.iter()
        .map(|s| match s.names.len() {
            0 => beside.clone(),
            1 => s.names.first().cloned(),
            _ => None,
        })
        .collect()
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

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tokentrail-clusters-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn group_of(base: &Path, args: &[&str], default: Option<&str>) -> Grouping {
        group_in(base, &arguments_in(base, &paths(args)), default, Limits::default())
    }

    /// Each cluster with its paths and the file names of its plain files.
    fn shape(g: &Grouping) -> Vec<(Option<&str>, Vec<String>)> {
        g.clusters
            .iter()
            .map(|c| {
                let mut names: Vec<String> = c.paths.iter().map(|p| p.display().to_string()).collect();
                names.extend(c.files.iter().map(|f| f.file.path.file_name().unwrap().to_string_lossy().into_owned()));
                (c.cluster.as_deref(), names)
            })
            .collect()
    }

    fn gke_entry(cluster: &str) -> String {
        format!(
            r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog"}},"resource":{{"type":"k8s_cluster","labels":{{"cluster_name":"{cluster}"}}}}}}"#
        )
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
        let dir = tempdir("default");
        let g = group_of(&dir, &["us=u.log", "dumps.json", "eu=e", "us=u2.log"], Some("home"));
        assert_eq!(
            shape(&g),
            [
                (Some("eu"), vec![String::from("e")]),
                (Some("home"), vec![String::from("dumps.json")]),
                (Some("us"), vec![String::from("u.log"), String::from("u2.log")]),
            ]
        );
        std::fs::write(dir.join("a.log"), "{}\n").unwrap();
        std::fs::write(dir.join("b.log"), "{}\n").unwrap();
        let g = group_of(&dir, &["a.log", "b.log"], None);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(shape(&g), [(None, vec![String::from("a.log"), String::from("b.log")])]);
    }

    #[test]
    fn a_collect_directory_names_its_cluster_unless_cluster_is_given() {
        let dir = tempdir("collect");
        for (sub, cluster) in [("eu", "prod-eu"), ("us", "prod-us")] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            let manifest = format!("# tokentrail collect: evidence inventory\n# cluster: {cluster}\n# server: x\n");
            std::fs::write(dir.join(sub).join(COLLECT_MANIFEST), manifest).unwrap();
        }
        std::fs::write(dir.join("audit.log"), "{}\n").unwrap();
        let one = group_of(&dir, &["eu", "audit.log"], None);
        let two = group_of(&dir, &["eu", "us", "audit.log"], None);
        let flag = group_of(&dir, &["eu", "audit.log"], Some("home"));
        let _ = std::fs::remove_dir_all(&dir);
        let eu = String::from("eu");
        let log = String::from("audit.log");
        // One collected cluster: the log goes with its dumps.
        assert_eq!(shape(&one), [(Some("prod-eu"), vec![eu.clone(), log.clone()])]);
        assert_eq!(
            shape(&two),
            [
                (None, vec![log.clone()]),
                (Some("prod-eu"), vec![eu.clone()]),
                (Some("prod-us"), vec![String::from("us")])
            ]
        );
        assert_eq!(shape(&flag), [(Some("home"), vec![eu, log])]);
    }

    #[test]
    fn a_cloud_export_given_as_a_plain_path_names_its_cluster() {
        let dir = tempdir("export");
        std::fs::create_dir_all(dir.join("mixed")).unwrap();
        std::fs::write(dir.join("mixed/gke.json"), gke_entry("gke-prod") + "\n").unwrap();
        std::fs::write(dir.join("mixed/eks.json"), r#"{"logGroup":"/aws/eks/eks-prod/cluster","logEvents":[]}"#)
            .unwrap();
        std::fs::write(dir.join("mixed/pods.json"), r#"{"kind":"List","items":[]}"#).unwrap();
        std::fs::write(dir.join("both.json"), format!("{}\n{}\n", gke_entry("a"), gke_entry("b"))).unwrap();
        std::fs::write(dir.join("gke-dumps.json"), r#"{"kind":"List","items":[]}"#).unwrap();
        let mixed = group_of(&dir, &["mixed"], None);
        let alone = group_of(&dir, &["mixed/gke.json", "gke-dumps.json"], None);
        let overridden = group_of(&dir, &["mine=mixed/gke.json", "both.json"], None);
        let _ = std::fs::remove_dir_all(&dir);
        // Each file on its own; the dump names nothing and two clusters are named: it stays unnamed.
        assert_eq!(
            shape(&mixed),
            [
                (None, vec![String::from("pods.json")]),
                (Some("eks-prod"), vec![String::from("eks.json")]),
                (Some("gke-prod"), vec![String::from("gke.json")]),
            ]
        );
        let gke = &mixed.clusters[2];
        assert_eq!(gke.named_by(&gke.files[0].file.path), Some(NamedBy::GkeClusterName));
        // Dumps beside one cluster's export are that cluster's.
        assert_eq!(shape(&alone), [(Some("gke-prod"), vec![String::from("gke.json"), String::from("gke-dumps.json")])]);
        assert_eq!(alone.clusters[0].named_by(&dir.join("gke-dumps.json")), None);
        // `NAME=` wins; a file naming two clusters is no one's, and said.
        assert_eq!(
            shape(&overridden),
            [(None, vec![String::from("both.json")]), (Some("mine"), vec![String::from("mixed/gke.json")])]
        );
        assert_eq!(overridden.several, [(dir.join("both.json"), vec![String::from("a"), String::from("b")])]);
    }

    #[test]
    fn a_file_naming_none_joins_the_one_cluster_the_rest_names() {
        let said = |names: &[&str]| Said { names: names.iter().map(|n| n.to_string()).collect() };
        let one = |n: &str| Some(String::from(n));
        // Beside one cluster's collect directory or export: its.
        assert_eq!(assign(&[said(&["eu"]), said(&["eu"]), said(&[])]), [one("eu"), one("eu"), one("eu")]);
        assert_eq!(assign(&[said(&["gke"]), said(&[])]), [one("gke"), one("gke")]);
        // Beside two clusters: no one's.
        assert_eq!(assign(&[said(&["eu"]), said(&["gke"]), said(&[])]), [one("eu"), one("gke"), None]);
        // A file naming two clusters is no one's, and leaves the silent ones unnamed too.
        assert_eq!(assign(&[said(&["eu"]), said(&["eu", "b"]), said(&[])]), [one("eu"), None, None]);
    }

    #[test]
    fn an_existing_file_whose_name_has_an_equals_sign_is_read_as_a_path() {
        let dir = tempdir("equals");
        let file = dir.join("prod=audit.log");
        std::fs::write(&file, "{}\n").unwrap();
        let arg = PathBuf::from("prod=audit.log");
        let split = arguments_in(&dir, std::slice::from_ref(&arg));
        assert_eq!(split, Arguments { named: Vec::new(), plain: vec![arg.clone()] });
        // Gone, the same argument is cluster `prod`'s `audit.log`.
        std::fs::remove_file(&file).unwrap();
        let split = arguments_in(&dir, &[arg]);
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            split,
            Arguments { named: vec![(String::from("prod"), PathBuf::from("audit.log"))], plain: Vec::new() }
        );
    }
}
