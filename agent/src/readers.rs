//! Who opened a token file, and whether they may (pure).
//!
//! The token-read watch ([`crate::token_watch`]) hands over three things the kernel and `/proc`
//! said about one open: the opened file's path, the opener's `/proc/<pid>/cgroup` and its
//! executable. This module turns them into a [`Reader`] (a container of a pod, the kubelet, the
//! container runtime, or some other host process) and decides with a [`ReadPolicy`] whether the
//! read is allowed: by the kubelet, the runtime, the containers of the pod that owns the token,
//! the agent itself, and what the user allows by executable or by pod. Anything else is a
//! foreign read, attested to the aggregator.
//!
//! Cgroup paths of pods, as the kubelet lays them out (cgroup v1 and v2 alike; a v1 node shows
//! the same path in each controller's line):
//! * systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _
//!   for ->.slice/<scope>` (Guaranteed pods sit directly in `kubepods-pod<uid>.slice`), with
//!   containerd's scope `cri-containerd-<id>.scope`, CRI-O's `crio-<id>.scope` (its monitor
//!   `crio-conmon-<id>.scope`) or Docker's `docker-<id>.scope`;
//! * cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (`crio-<id>` under CRI-O).
//!
//! A prefix before `kubepods` (kind's `/kubelet.slice/kubelet-kubepods.slice/…`, a nested
//! runtime) does not matter: the pod is the first component that names one.

use std::collections::{BTreeSet, HashMap};

use crate::layout::{self, Location, VolumeKind};

/// What a process's cgroup says it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CgroupOwner {
    /// A process of a pod: a container's (its id, without the runtime's prefix), or the pod's
    /// own cgroup (`container: None`).
    Pod {
        /// The pod's uid, with dashes.
        uid: String,
        /// The container id.
        container: Option<String>,
    },
    /// The runtime's per-container monitor inside a pod's cgroup (CRI-O's `conmon`).
    RuntimeMonitor,
    /// A systemd unit (`kubelet.service`, `containerd.service`): the last `.service` component.
    Service(String),
    /// Anything else on the host (`/`, `/user.slice/…`, a cgroup the node's tools made).
    Host,
}

/// The cgroup path of a process, from its `/proc/<pid>/cgroup`: the first path that names a pod
/// (a v1 node's controllers disagree only when something moved the process in one of them), else
/// the v2 path, else the v1 `name=systemd` one, else the first line's. `None` for an empty file.
pub fn cgroup_path(proc_cgroup: &str) -> Option<&str> {
    let paths: Vec<(&str, &str)> = proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers, path))
        })
        .collect();
    paths
        .iter()
        .find(|(_, p)| matches!(classify(p), CgroupOwner::Pod { .. } | CgroupOwner::RuntimeMonitor))
        .or_else(|| paths.iter().find(|(c, p)| c.is_empty() && *p != "/"))
        .or_else(|| paths.iter().find(|(c, _)| *c == "name=systemd"))
        .or_else(|| paths.first())
        .map(|(_, p)| *p)
}

/// What a cgroup path says its processes are.
pub fn classify(path: &str) -> CgroupOwner {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(uid) = pod_uid_of(part) else { continue };
        if !parts[..i].iter().any(|p| p.contains("kubepods")) {
            continue;
        }
        return match parts.get(i + 1) {
            None => CgroupOwner::Pod { uid, container: None },
            Some(scope) if is_runtime_monitor(scope) => CgroupOwner::RuntimeMonitor,
            Some(scope) => CgroupOwner::Pod { uid, container: Some(container_id(scope).to_string()) },
        };
    }
    match parts.iter().rev().find(|p| p.ends_with(".service")) {
        Some(unit) => CgroupOwner::Service((*unit).to_string()),
        None => CgroupOwner::Host,
    }
}

/// The pod uid a cgroup component names: `pod<uid>` (cgroupfs) or `…-pod<uid_with_underscores>.slice`
/// (systemd).
fn pod_uid_of(part: &str) -> Option<String> {
    let raw = match part.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod").map(|(_, uid)| uid)?,
        None => part.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let plausible = uid.len() >= 8 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    plausible.then_some(uid)
}

fn is_runtime_monitor(scope: &str) -> bool {
    scope.starts_with("crio-conmon-")
}

/// A container's id from its cgroup component: without `cri-containerd-`, `crio-`, `docker-`,
/// `cri-o-` and `.scope`.
fn container_id(scope: &str) -> &str {
    let s = scope.strip_suffix(".scope").unwrap_or(scope);
    for prefix in ["cri-containerd-", "crio-", "docker-", "cri-o-", "containerd-"] {
        if let Some(id) = s.strip_prefix(prefix) {
            return id;
        }
    }
    s
}

/// The token file an opened path is, relative to the kubelet pods directory `root`:
/// `<uid>/volumes/<plugin>/<volume>/token` or `…/<volume>/..<timestamp>/token` (the atomic
/// writer's data directory, which is what the kernel names when `..data/token` was opened).
/// `None` for anything else (`ca.crt`, a path outside the root).
pub fn token_location(root: &str, opened: &str) -> Option<Location> {
    let root = root.trim_end_matches('/');
    let rest = opened.strip_prefix(root)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (uid, volume, tail) = match parts.as_slice() {
        [uid, "volumes", plugin, volume, tail @ ..] => {
            let kind = VolumeKind::ALL.into_iter().find(|k| k.dir_name() == *plugin)?;
            ((uid, kind), volume, tail)
        }
        _ => return None,
    };
    let ((uid, kind), volume) = (uid, volume);
    let file_ok = match tail {
        [file] => *file == layout::TOKEN_FILE,
        [dir, file] => dir.starts_with("..") && *file == layout::TOKEN_FILE,
        _ => false,
    };
    let ok =
        file_ok && layout::is_plausible_pod_dir(uid.as_bytes()) && layout::is_plausible_volume_dir(volume.as_bytes());
    ok.then(|| Location {
        pod_uid: (*uid).to_string(),
        kind,
        volume: (*volume).to_string(),
        file: layout::TOKEN_FILE.to_string(),
    })
}

/// Who opened a token file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader {
    /// The opener's process id (as the agent's pid namespace numbers it: the host's, with
    /// `hostPID`).
    pub pid: u32,
    /// `/proc/<pid>/exe`, as the agent's mount namespace names it (a container's binary shows
    /// its path inside the container); `None` when unreadable.
    pub executable: Option<String>,
    /// The cgroup path ([`cgroup_path`]).
    pub cgroup: String,
    /// What the cgroup says the process is.
    pub owner: CgroupOwner,
}

/// A pod a user allows to read every token: `namespace/` (a whole namespace) or
/// `namespace/name-prefix` (a DaemonSet's pods: `monitoring/node-exporter-`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodPattern {
    /// Exact namespace.
    pub namespace: String,
    /// Prefix of the pod name (empty: any pod of the namespace).
    pub name_prefix: String,
}

/// Why a [`PodPattern`] does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not NAMESPACE/ or NAMESPACE/NAME_PREFIX")]
pub struct BadPodPattern(pub String);

impl std::str::FromStr for PodPattern {
    type Err = BadPodPattern;

    fn from_str(s: &str) -> Result<PodPattern, BadPodPattern> {
        match s.split_once('/') {
            Some((ns, prefix)) if !ns.is_empty() && !prefix.contains('/') => {
                Ok(PodPattern { namespace: ns.to_string(), name_prefix: prefix.to_string() })
            }
            _ => Err(BadPodPattern(s.to_string())),
        }
    }
}

impl PodPattern {
    /// Whether a pod matches.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && name.starts_with(&self.name_prefix)
    }
}

/// Who may read every token file on the node besides the token's own pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPolicy {
    /// systemd units of the kubelet and the container runtime.
    pub services: BTreeSet<String>,
    /// Executables allowed by exact path (a node agent that reads every token, in the agent's
    /// mount namespace's view).
    pub executables: BTreeSet<String>,
    /// Pods allowed by namespace and name prefix.
    pub pods: Vec<PodPattern>,
}

/// The units of the kubelet and the runtimes the allow-list knows by default.
pub const DEFAULT_SERVICES: [&str; 8] = [
    "kubelet.service",
    "containerd.service",
    "crio.service",
    "cri-o.service",
    "docker.service",
    "cri-docker.service",
    "k3s.service",
    "k3s-agent.service",
];

impl Default for ReadPolicy {
    fn default() -> Self {
        ReadPolicy {
            services: DEFAULT_SERVICES.iter().map(|s| (*s).to_string()).collect(),
            executables: BTreeSet::new(),
            pods: Vec::new(),
        }
    }
}

/// Why a read is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// By a container (or the cgroup) of the pod that owns the token.
    OwnPod,
    /// By the kubelet or the runtime (its unit, or CRI-O's monitor).
    NodeComponent,
    /// By the agent itself (its scans).
    Agent,
    /// By an executable or pod the user allowed.
    UserAllowed,
}

/// The verdict on one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to report.
    Allowed(Allowed),
    /// Another pod read the token.
    OtherPod,
    /// A host process that is not the kubelet or the runtime read the token.
    Host,
}

/// Decides on one read of `token_pod_uid`'s token by `reader`. `agent_pid` is the agent's own
/// process; `pod_name` names a reader pod (namespace, name) when the agent knows it.
pub fn decide(
    reader: &Reader,
    token_pod_uid: &str,
    agent_pid: u32,
    pod_name: Option<(&str, &str)>,
    policy: &ReadPolicy,
) -> Decision {
    if reader.pid == agent_pid {
        return Decision::Allowed(Allowed::Agent);
    }
    if reader.executable.as_ref().is_some_and(|e| policy.executables.contains(e)) {
        return Decision::Allowed(Allowed::UserAllowed);
    }
    match &reader.owner {
        CgroupOwner::Pod { uid, .. } if uid == token_pod_uid => Decision::Allowed(Allowed::OwnPod),
        CgroupOwner::Pod { .. } => match pod_name {
            Some((ns, name)) if policy.pods.iter().any(|p| p.matches(ns, name)) => {
                Decision::Allowed(Allowed::UserAllowed)
            }
            _ => Decision::OtherPod,
        },
        CgroupOwner::RuntimeMonitor => Decision::Allowed(Allowed::NodeComponent),
        CgroupOwner::Service(unit) if policy.services.contains(unit) => Decision::Allowed(Allowed::NodeComponent),
        CgroupOwner::Service(_) | CgroupOwner::Host => Decision::Host,
    }
}

/// Reports each reader's reads of one token file once per interval: a thief looping over a token
/// is one attestation a minute, not thousands. Bounded: beyond its capacity it forgets
/// everything, and the next read of each pair is reported again.
#[derive(Debug)]
pub struct ReadThrottle {
    last: HashMap<(String, Location), i64>,
    interval_micros: i64,
    capacity: usize,
}

impl ReadThrottle {
    /// Reports a pair at most once per `interval_micros`; remembers at most `capacity` pairs.
    pub fn new(interval_micros: i64, capacity: usize) -> ReadThrottle {
        ReadThrottle { last: HashMap::new(), interval_micros, capacity: capacity.max(1) }
    }

    /// Whether the read of `location` by `reader` at `now_micros` is to be reported.
    pub fn admit(&mut self, reader: &Reader, location: &Location, now_micros: i64) -> bool {
        let key = (reader_key(reader), location.clone());
        if self.last.get(&key).is_some_and(|t| now_micros.saturating_sub(*t) < self.interval_micros) {
            return false;
        }
        if self.last.len() >= self.capacity {
            self.last.clear();
        }
        self.last.insert(key, now_micros);
        true
    }
}

/// Who a reader is across its processes: its pod's container, else its executable and cgroup.
fn reader_key(r: &Reader) -> String {
    match &r.owner {
        CgroupOwner::Pod { uid, container } => format!("pod:{uid}/{}", container.as_deref().unwrap_or("")),
        _ => format!("host:{}:{}", r.executable.as_deref().unwrap_or(""), r.cgroup),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5f1a2b3c-0000-4000-8000-00000000abcd";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pod(container: Option<&str>) -> CgroupOwner {
        CgroupOwner::Pod { uid: UID.into(), container: container.map(Into::into) }
    }

    #[test]
    fn systemd_driver_paths_name_the_pod_and_container_of_every_runtime() {
        let u = UID.replace('-', "_");
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope"
            )),
            pod(Some(CID))
        );
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-{CID}.scope"
            )),
            pod(Some(CID))
        );
        // Guaranteed pods sit directly under kubepods.slice.
        assert_eq!(classify(&format!("/kubepods.slice/kubepods-pod{u}.slice/docker-{CID}.scope")), pod(Some(CID)));
        // kind nests the kubelet's hierarchy under its own slice.
        assert_eq!(
            classify(&format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
                 kubelet-kubepods-besteffort-pod{u}.slice/cri-containerd-{CID}.scope"
            )),
            pod(Some(CID))
        );
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-conmon-{CID}.scope"
            )),
            CgroupOwner::RuntimeMonitor
        );
    }

    #[test]
    fn cgroupfs_driver_paths_name_the_pod_and_container() {
        assert_eq!(classify(&format!("/kubepods/burstable/pod{UID}/{CID}")), pod(Some(CID)));
        assert_eq!(classify(&format!("/kubepods/pod{UID}/crio-{CID}")), pod(Some(CID)));
        assert_eq!(classify(&format!("/kubepods/besteffort/pod{UID}")), pod(None));
    }

    #[test]
    fn host_cgroups_are_services_or_host() {
        assert_eq!(classify("/system.slice/kubelet.service"), CgroupOwner::Service("kubelet.service".into()));
        assert_eq!(classify("/system.slice/containerd.service"), CgroupOwner::Service("containerd.service".into()));
        assert_eq!(classify("/user.slice/user-0.slice/session-3.scope"), CgroupOwner::Host);
        assert_eq!(classify("/"), CgroupOwner::Host);
        // A `pod…` component outside any kubepods hierarchy is not a pod.
        assert_eq!(classify(&format!("/mine/pod{UID}/x")), CgroupOwner::Host);
    }

    #[test]
    fn proc_cgroup_of_v2_and_v1_and_hybrid_nodes_gives_the_pod_path() {
        let v2 = format!("0::/kubepods/burstable/pod{UID}/{CID}\n");
        assert_eq!(cgroup_path(&v2), Some(format!("/kubepods/burstable/pod{UID}/{CID}").as_str()));
        // cgroup v1: every controller names the pod; the unified line of a hybrid node is "/".
        let v1 = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{CID}\n4:memory:/kubepods/burstable/pod{UID}/{CID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n0::/\n"
        );
        assert_eq!(cgroup_path(&v1), Some(format!("/kubepods/burstable/pod{UID}/{CID}").as_str()));
        let host_v1 = "9:name=systemd:/system.slice/kubelet.service\n8:pids:/system.slice/kubelet.service\n0::/\n";
        assert_eq!(cgroup_path(host_v1), Some("/system.slice/kubelet.service"));
        assert_eq!(cgroup_path("0::/system.slice/containerd.service\n"), Some("/system.slice/containerd.service"));
        assert_eq!(cgroup_path(""), None);
    }

    #[test]
    fn opened_paths_map_to_token_locations_and_nothing_else() {
        let root = "/var/lib/kubelet/pods";
        let want = Location {
            pod_uid: UID.into(),
            kind: VolumeKind::Projected,
            volume: "kube-api-access-pls9v".into(),
            file: "token".into(),
        };
        let base = format!("{root}/{UID}/volumes/kubernetes.io~projected/kube-api-access-pls9v");
        assert_eq!(token_location(root, &format!("{base}/..2025_06_28_09_28_32.3805414952/token")), Some(want.clone()));
        assert_eq!(token_location(&format!("{root}/"), &format!("{base}/token")), Some(want));
        let secret = format!("{root}/{UID}/volumes/kubernetes.io~secret/legacy/token");
        assert_eq!(token_location(root, &secret).map(|l| l.kind), Some(VolumeKind::Secret));
        for other in [
            format!("{base}/..2025_06_28_09_28_32.3805414952/ca.crt"),
            format!("{base}/sub/token"),
            format!("{root}/{UID}/volumes/kubernetes.io~empty-dir/v/token"),
            format!("/var/lib/kubelet/podsX/{UID}/volumes/kubernetes.io~projected/v/token"),
            "/etc/token".to_string(),
        ] {
            assert_eq!(token_location(root, &other), None, "{other}");
        }
    }

    fn reader(owner: CgroupOwner, exe: &str) -> Reader {
        Reader { pid: 42, executable: Some(exe.into()), cgroup: String::new(), owner }
    }

    #[test]
    fn the_owning_pod_kubelet_runtime_and_agent_may_read_others_may_not() {
        let p = ReadPolicy::default();
        let own = reader(pod(Some(CID)), "/bin/app");
        assert_eq!(decide(&own, UID, 1, None, &p), Decision::Allowed(Allowed::OwnPod));
        let other = reader(CgroupOwner::Pod { uid: "11111111-2222".into(), container: None }, "/bin/cat");
        assert_eq!(decide(&other, UID, 1, Some(("default", "x")), &p), Decision::OtherPod);
        let kubelet = reader(CgroupOwner::Service("kubelet.service".into()), "/usr/bin/kubelet");
        assert_eq!(decide(&kubelet, UID, 1, None, &p), Decision::Allowed(Allowed::NodeComponent));
        assert_eq!(
            decide(&reader(CgroupOwner::RuntimeMonitor, "/usr/bin/conmon"), UID, 1, None, &p),
            Decision::Allowed(Allowed::NodeComponent)
        );
        let sshd = reader(CgroupOwner::Service("ssh.service".into()), "/usr/bin/cat");
        assert_eq!(decide(&sshd, UID, 1, None, &p), Decision::Host);
        // A binary named like the kubelet outside its unit is still a host process.
        let fake = reader(CgroupOwner::Host, "/tmp/kubelet");
        assert_eq!(decide(&fake, UID, 1, None, &p), Decision::Host);
        assert_eq!(decide(&fake, UID, 42, None, &p), Decision::Allowed(Allowed::Agent));
    }

    #[test]
    fn user_allow_list_admits_executables_and_pods_by_prefix() {
        let p = ReadPolicy {
            executables: ["/usr/bin/vector".to_string()].into(),
            pods: vec!["monitoring/node-exporter-".parse().unwrap(), "security/".parse().unwrap()],
            ..ReadPolicy::default()
        };
        let other = CgroupOwner::Pod { uid: "11111111-2222".into(), container: None };
        assert_eq!(
            decide(&reader(CgroupOwner::Host, "/usr/bin/vector"), UID, 1, None, &p),
            Decision::Allowed(Allowed::UserAllowed)
        );
        let r = reader(other, "/bin/cat");
        assert_eq!(
            decide(&r, UID, 1, Some(("monitoring", "node-exporter-abcde")), &p),
            Decision::Allowed(Allowed::UserAllowed)
        );
        assert_eq!(decide(&r, UID, 1, Some(("security", "anything")), &p), Decision::Allowed(Allowed::UserAllowed));
        assert_eq!(decide(&r, UID, 1, Some(("monitoring", "grafana-0")), &p), Decision::OtherPod);
        assert_eq!(decide(&r, UID, 1, None, &p), Decision::OtherPod, "an unknown pod matches no pattern");
        assert!("nope".parse::<PodPattern>().is_err());
        assert!("/x".parse::<PodPattern>().is_err());
    }

    #[test]
    fn a_reader_of_one_file_is_reported_once_per_interval() {
        let mut t = ReadThrottle::new(60_000_000, 100);
        let loc = token_location("/r", &format!("/r/{UID}/volumes/kubernetes.io~projected/v/token")).unwrap();
        let thief = reader(CgroupOwner::Pod { uid: "11111111-2222".into(), container: Some("c".into()) }, "/bin/cat");
        let host = reader(CgroupOwner::Host, "/bin/cat");
        assert!(t.admit(&thief, &loc, 0));
        assert!(!t.admit(&thief, &loc, 59_999_999));
        assert!(t.admit(&host, &loc, 1), "another reader is reported on its own");
        assert!(t.admit(&thief, &loc, 60_000_000));
        let mut small = ReadThrottle::new(60_000_000, 1);
        assert!(small.admit(&thief, &loc, 0));
        assert!(small.admit(&host, &loc, 0));
        assert!(small.admit(&thief, &loc, 0), "over capacity it forgets and reports again");
    }
}
