//! Seeing who opens token files: fanotify open events on every token file the agent holds
//! (driver; `--watch-token-reads`).
//!
//! Each token file the scans find gets an inode mark (`FAN_OPEN`, notification class: nothing is
//! ever blocked or delayed). Inode marks, not a mount or filesystem mark: the kubelet mounts a
//! tmpfs over every projected volume, so the token files sit on as many filesystems as there are
//! volumes, and a filesystem mark on the pods directory would see none of them, while one on a
//! tmpfs would report every `ca.crt` read too. A rotation writes a new file (the atomic writer's
//! new `..<timestamp>` directory), which the scan that follows marks; the old file's mark goes
//! with its inode.
//!
//! For each event the kernel hands over a read-only descriptor of the opened file and the
//! opener's pid. The driver only resolves the descriptor's path (`/proc/self/fd/<fd>`) and closes
//! it; it never reads from it. The opener is read from `/proc/<pid>/cgroup` and
//! `/proc/<pid>/exe`; what they mean is [`crate::readers`]' business. A process that exits
//! before the agent reads its `/proc` entry cannot be attributed: it is counted, not reported.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use tokio::io::unix::AsyncFd;

use crate::layout::{self, Location};

/// Why the watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `fanotify_init` refused (no CAP_SYS_ADMIN, or a kernel without fanotify).
    #[error("fanotify_init: {0} (the token-read watch needs CAP_SYS_ADMIN)")]
    Init(#[source] Errno),
    /// The descriptor could not be registered with the runtime.
    #[error("fanotify descriptor: {0}")]
    Register(#[source] std::io::Error),
}

/// One open of a marked file, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The opener's pid.
    pub pid: u32,
    /// The opened file's path, as the agent's mount namespace names it.
    pub path: String,
}

/// What one wait for events gave.
#[derive(Debug, Default)]
pub struct Events {
    /// Opens of marked files.
    pub opens: Vec<Open>,
    /// The kernel's queue overflowed: opens were lost.
    pub overflowed: bool,
    /// Events whose descriptor's path could not be read.
    pub unresolved: u64,
}

/// The fanotify group watching token files.
pub struct TokenWatch {
    fd: AsyncFd<Fanotify>,
    root: PathBuf,
}

impl TokenWatch {
    /// Starts a group; marks come with [`TokenWatch::mark`]. Needs a Tokio runtime with I/O.
    pub fn new(root: &Path) -> Result<TokenWatch, WatchError> {
        let group = Fanotify::init(
            InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(WatchError::Init)?;
        // As in `watch`: the group is moved into the `AsyncFd`, so nothing else can close it while
        // registered; the sound replacement is `unsafe`, which this workspace forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::new(group).map_err(WatchError::Register)?;
        let root = std::path::absolute(root).map_err(WatchError::Register)?;
        Ok(TokenWatch { fd, root })
    }

    /// Marks the token file at `location` (through `..data`, as a reader opens it). A file that
    /// vanished meanwhile is no error: the next scan sees what replaced it.
    pub fn mark(&self, location: &Location) -> Result<(), Errno> {
        let volume =
            self.root.join(&location.pod_uid).join("volumes").join(location.kind.dir_name()).join(&location.volume);
        let path = match std::fs::symlink_metadata(volume.join(layout::DATA_LINK)) {
            Ok(_) => volume.join(layout::DATA_LINK).join(&location.file),
            Err(_) => volume.join(&location.file),
        };
        let group = self.fd.get_ref();
        // DONT_FOLLOW: a `token` that is itself a symlink is not a token the scan accepted. The
        // path is absolute (the root is checked so at start), so the kernel ignores the directory
        // descriptor the call wants: the group's own stands in.
        match group.mark(
            MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_DONT_FOLLOW,
            MaskFlags::FAN_OPEN,
            group,
            Some(path.as_path()),
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits for opens and returns them (never an empty batch).
    pub async fn next(&mut self) -> std::io::Result<Events> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut out = Events::default();
            loop {
                match self.fd.get_ref().read_events() {
                    Ok(events) if events.is_empty() => break,
                    Ok(events) => {
                        for event in events {
                            if event.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                                out.overflowed = true;
                                continue;
                            }
                            let Some(fd) = event.fd() else { continue };
                            // Only the descriptor's name: the file is never read. Dropping the
                            // event closes the descriptor.
                            match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
                                Ok(path) => out.opens.push(Open {
                                    pid: u32::try_from(event.pid()).unwrap_or(0),
                                    path: path.to_string_lossy().into_owned(),
                                }),
                                Err(_) => out.unresolved += 1,
                            }
                        }
                    }
                    Err(Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !out.opens.is_empty() || out.overflowed || out.unresolved > 0 {
                return Ok(out);
            }
        }
    }
}

/// What `/proc` says of a process: its cgroup file and its executable. `None` when the process
/// is gone.
pub fn inspect(pid: u32) -> Option<(String, Option<String>)> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.to_string_lossy().into_owned());
    Some((cgroup, exe))
}
