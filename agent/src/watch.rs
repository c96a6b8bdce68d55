//! Noticing token writes quickly: inotify on the kubelet pods directory (driver).
//!
//! inotify is not recursive, so the watcher watches the root (pods come and go), and for each
//! pod its directory, `volumes/`, the two plugin directories and every volume directory (where
//! the atomic writer renames `..data`). An event says which pod changed; the pipeline rescans
//! that pod. Watches are re-synced after every scan of a pod, because the kubelet mounts a tmpfs
//! over each projected volume after creating it, and a watch placed before the mount sees
//! nothing inside it. A queue overflow asks for a full rescan. The periodic rescan in the
//! pipeline remains the safety net for anything inotify misses.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use tokio::io::unix::AsyncFd;

use crate::layout::VolumeKind;

/// What an event batch asks the pipeline to rescan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// A pod directory appeared or went: rescan the pod list.
    Root,
    /// Something under one pod changed.
    Pod(String),
    /// The kernel dropped events: rescan everything.
    Overflow,
}

#[derive(Clone, Debug)]
enum Target {
    Root,
    Pod(String),
}

/// An inotify instance watching a kubelet pods directory.
pub struct Watcher {
    fd: AsyncFd<OwnedFd>,
    root: PathBuf,
    targets: HashMap<i32, Target>,
    buf: Vec<MaybeUninit<u8>>,
}

const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW);

impl Watcher {
    /// Starts watching `root`. Needs a Tokio runtime with I/O enabled.
    pub fn new(root: &Path) -> std::io::Result<Watcher> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let wd = inotify::add_watch(&fd, root, DIR_EVENTS)?;
        let mut targets = HashMap::new();
        targets.insert(wd, Target::Root);
        // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` may close its descriptor
        // while registered; an `OwnedFd` moved into the `AsyncFd` cannot, and the sound
        // replacement (`register`) is `unsafe`, which this workspace forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Watcher { fd, root: root.to_path_buf(), targets, buf: vec![MaybeUninit::uninit(); 64 * 1024] })
    }

    /// Number of active watches.
    pub fn watch_count(&self) -> usize {
        self.targets.len()
    }

    /// Adds (or refreshes) the watches of one pod's directories that exist now.
    pub fn sync_pod(&mut self, pod_uid: &str) {
        let pod = self.root.join(pod_uid);
        let mut dirs = vec![pod.clone(), pod.join("volumes")];
        for kind in VolumeKind::ALL {
            let plugin = pod.join("volumes").join(kind.dir_name());
            if let Ok(entries) = std::fs::read_dir(&plugin) {
                dirs.extend(entries.flatten().map(|e| e.path()));
            }
            dirs.push(plugin);
        }
        for dir in dirs {
            // Missing directories are normal (no secret volumes, teardown); the next event or
            // rescan re-syncs.
            if let Ok(wd) = inotify::add_watch(self.fd.get_ref(), &dir, DIR_EVENTS) {
                self.targets.insert(wd, Target::Pod(pod_uid.to_string()));
            }
        }
    }

    /// Waits for events and returns what they ask to rescan (deduplicated, sorted).
    pub async fn next(&mut self) -> std::io::Result<Vec<Change>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut changes = Vec::new();
            let mut reader = inotify::Reader::new(self.fd.get_ref(), &mut self.buf);
            loop {
                match reader.next() {
                    Ok(ev) => {
                        if ev.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                            changes.push(Change::Overflow);
                            continue;
                        }
                        let target = self.targets.get(&ev.wd()).cloned();
                        if ev.events().contains(ReadFlags::IGNORED) {
                            // The watched directory is gone (or unmounted): forget the wd.
                            self.targets.remove(&ev.wd());
                        }
                        match target {
                            Some(Target::Root) => {
                                changes.push(Change::Root);
                                if let Some(name) = ev.file_name().and_then(|n| n.to_str().ok()) {
                                    changes.push(Change::Pod(name.to_string()));
                                }
                            }
                            Some(Target::Pod(uid)) => changes.push(Change::Pod(uid)),
                            None => {}
                        }
                    }
                    Err(Errno::AGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !changes.is_empty() {
                changes.sort();
                changes.dedup();
                return Ok(changes);
            }
        }
    }
}
