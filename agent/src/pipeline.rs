//! The agent's main loop (driver): scans, inotify, pod updates and the sender, wired together.
//!
//! One `tokio::select!` loop owns the timing: a full scan at start and every `rescan_interval`,
//! a scan of one pod shortly after inotify reports a change under it (and once more a little
//! later, for volumes mounted after their directory appeared), and pod updates as they arrive.
//! Each change to the node state is diffed into a delta and queued for the sender.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::error::AgentError;
use crate::outbox::Outbox;
use crate::pods::{self, PodUpdate};
use crate::readers::{self, Decision, ReadPolicy, ReadThrottle, Reader};
use crate::scan::{self, ScanLimits, ScanOutcome};
use crate::sender::{self, SenderConfig, Shared, SharedRef};
use crate::state::{self, NodeState};
use crate::telemetry::Metrics;
use crate::token_watch::{self, Events, TokenWatch};
use crate::watch::{Change, Watcher};
use crate::wire;

/// Everything the agent needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The kubelet pods directory (`/var/lib/kubelet/pods`).
    pub kubelet_pods_dir: PathBuf,
    /// This node's name.
    pub node_name: String,
    /// How to reach the aggregator.
    pub sender: SenderConfig,
    /// Full rescan period: the safety net for anything inotify misses.
    pub rescan_interval: Duration,
    /// Wait after an inotify event before scanning, so one write's burst of events is one scan.
    pub debounce: Duration,
    /// Second look at a changed pod, for volumes the kubelet mounts after creating them.
    pub follow_up: Duration,
    /// Capacity of the unacknowledged queue.
    pub queue_capacity: usize,
    /// Bounds on scanned content.
    pub limits: ScanLimits,
    /// Use inotify (otherwise only periodic rescans).
    pub inotify: bool,
    /// On shutdown, how long to keep trying to deliver what is queued.
    pub shutdown_grace: Duration,
    /// How often the agent reports its clock when nothing changed (a heartbeat), so its node's
    /// watermark advances and verdicts that wait on attestations are not held up by a quiet node.
    pub heartbeat_interval: Duration,
    /// Watch opens of token files with fanotify and attest foreign readers (needs
    /// CAP_SYS_ADMIN; off by default).
    pub watch_token_reads: bool,
    /// Who may read token files besides their pod, the kubelet, the runtime and the agent.
    pub read_policy: ReadPolicy,
    /// A reader's opens of one token file are attested at most once per this interval.
    pub read_report_interval: Duration,
}

impl Config {
    /// Defaults for everything but the directory, node and aggregator.
    pub fn new(kubelet_pods_dir: PathBuf, node_name: String, aggregator: String) -> Config {
        Config {
            kubelet_pods_dir,
            node_name,
            sender: SenderConfig {
                endpoint: aggregator,
                connect_timeout: Duration::from_secs(5),
                backoff_base: Duration::from_millis(200),
                backoff_max: Duration::from_secs(30),
                window: 16,
                bearer_token_file: None,
                tls: None,
            },
            rescan_interval: Duration::from_secs(60),
            debounce: Duration::from_millis(20),
            follow_up: Duration::from_secs(2),
            queue_capacity: 4096,
            limits: ScanLimits::default(),
            inotify: true,
            shutdown_grace: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            watch_token_reads: false,
            read_policy: ReadPolicy::default(),
            read_report_interval: Duration::from_secs(60),
        }
    }
}

/// The wall clock, in µs since the Unix epoch: the one place the agent reads it.
#[allow(clippy::disallowed_methods)] // a driver: the cores take time as an argument
pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A per-process random id and jitter seed, from the clock, the pid and std's hash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_micros());
    h.write_u32(std::process::id());
    h.finish()
}

/// Runs the agent until `shutdown` resolves, then tries for `shutdown_grace` to deliver what is
/// still queued. `pod_updates` is the pod source, when there is one.
pub async fn run(
    config: Config,
    mut pod_updates: Option<mpsc::Receiver<PodUpdate>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    if config.node_name.is_empty() {
        return Err(AgentError::Config("node name is empty".into()));
    }
    let root = config.kubelet_pods_dir.clone();
    let initial = scan::scan_all(&root, &config.limits)?;
    let agent_id = format!("{:016x}", random_u64());
    tracing::info!(agent_id, node = %config.node_name, dir = %root.display(), "agent starting");
    let shared: SharedRef = Arc::new(Mutex::new(Shared {
        state: NodeState::default(),
        outbox: Outbox::new(config.queue_capacity),
        sender: wire::Sender { agent_id, node_name: config.node_name.clone() },
    }));
    let wake = Arc::new(Notify::new());
    let mut watcher = if config.inotify {
        match Watcher::new(&root) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable: relying on periodic rescans");
                None
            }
        }
    } else {
        None
    };
    let reads = if config.watch_token_reads {
        let watch = TokenWatch::new(&root)?;
        // The kernel names opened files by their real path: a root reached through a symlink
        // (`/var/lib/kubelet` on another disk) is compared in that form.
        let root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone()).to_string_lossy().into_owned();
        let interval = i64::try_from(config.read_report_interval.as_micros()).unwrap_or(i64::MAX);
        Some(Reads { watch, root, throttle: ReadThrottle::new(interval, 65_536), agent_pid: std::process::id() })
    } else {
        None
    };
    let mut driver =
        Driver { config: &config, shared: shared.clone(), wake: wake.clone(), metrics: metrics.clone(), reads };
    driver.initial(initial, watcher.as_mut());
    if driver.reads.is_some() {
        let files = sender::lock(&shared).state.credentials.len();
        tracing::info!(files, "watching opens of token files");
    }
    let sender_task = tokio::spawn(sender::run(
        config.sender.clone(),
        shared.clone(),
        wake.clone(),
        metrics.clone(),
        now_micros,
        random_u64(),
    ));

    tokio::pin!(shutdown);
    let mut rescan = tokio::time::interval_at(Instant::now() + config.rescan_interval, config.rescan_interval);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval_at(Instant::now() + config.heartbeat_interval, config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut dirty_at: Option<Instant> = None;
    let mut follow_ups: Vec<(Instant, String)> = Vec::new();
    let far = Duration::from_secs(86_400);
    loop {
        let next_dirty = dirty_at.unwrap_or_else(|| Instant::now() + far);
        let next_follow_up = follow_ups.iter().map(|(t, _)| *t).min().unwrap_or_else(|| Instant::now() + far);
        tokio::select! {
            () = &mut shutdown => break,
            _ = rescan.tick() => driver.full_scan(watcher.as_mut()),
            _ = heartbeat.tick() => driver.heartbeat(),
            changes = next_change(watcher.as_mut()) => match changes {
                Ok(changes) => {
                    for change in changes {
                        match change {
                            Change::Pod(uid) => { dirty.insert(uid); }
                            Change::Root | Change::Overflow => { dirty.insert(String::new()); }
                        }
                    }
                    dirty_at.get_or_insert_with(|| Instant::now() + config.debounce);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "inotify failed: relying on periodic rescans");
                    watcher = None;
                }
            },
            () = tokio::time::sleep_until(next_dirty), if dirty_at.is_some() => {
                dirty_at = None;
                let pods = std::mem::take(&mut dirty);
                if pods.contains("") {
                    driver.full_scan(watcher.as_mut());
                } else {
                    driver.pod_scans(&pods, watcher.as_mut());
                }
                let later = Instant::now() + config.follow_up;
                follow_ups.extend(pods.into_iter().filter(|p| !p.is_empty()).map(|p| (later, p)));
            },
            () = tokio::time::sleep_until(next_follow_up), if !follow_ups.is_empty() => {
                let now = Instant::now();
                let due: Vec<String> = follow_ups.iter().filter(|(t, _)| *t <= now).map(|(_, p)| p.clone()).collect();
                follow_ups.retain(|(t, _)| *t > now);
                driver.pod_scans(&due.into_iter().collect(), watcher.as_mut());
            },
            events = next_reads(driver.reads.as_mut()) => match events {
                Ok(events) => driver.token_reads(events),
                Err(e) => {
                    // Asked for and now blind: say so loudly; attestation goes on.
                    tracing::error!(error = %e, "token-read watch failed: foreign reads are no longer seen");
                    driver.reads = None;
                }
            },
            update = next_update(pod_updates.as_mut()) => match update {
                Some(update) => driver.change(|s| pods::apply(s, update)),
                None => pod_updates = None,
            },
        }
    }

    tracing::info!("shutting down: delivering what is queued");
    let deadline = Instant::now() + config.shutdown_grace;
    while !sender::lock(&shared).outbox.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sender_task.abort();
    let left = sender::lock(&shared).outbox.len();
    if left > 0 {
        tracing::warn!(unacknowledged = left, "stopped with unacknowledged attestations");
    }
    Ok(())
}

async fn next_change(watcher: Option<&mut Watcher>) -> std::io::Result<Vec<Change>> {
    match watcher {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn next_reads(reads: Option<&mut Reads>) -> std::io::Result<Events> {
    match reads {
        Some(r) => r.watch.next().await,
        None => std::future::pending().await,
    }
}

async fn next_update(rx: Option<&mut mpsc::Receiver<PodUpdate>>) -> Option<PodUpdate> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The token-read watch and what judging its events needs.
struct Reads {
    watch: TokenWatch,
    /// The kubelet pods directory as the kernel names it.
    root: String,
    throttle: ReadThrottle,
    agent_pid: u32,
}

/// Applies changes to the shared state and queues their deltas.
struct Driver<'a> {
    config: &'a Config,
    shared: SharedRef,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    reads: Option<Reads>,
}

impl Driver<'_> {
    fn full_scan(&mut self, watcher: Option<&mut Watcher>) {
        match scan::scan_all(&self.config.kubelet_pods_dir, &self.config.limits) {
            Ok(outcome) => self.full_scan_result(outcome, watcher),
            Err(e) => {
                Metrics::add(&self.metrics.files_refused_total, 1);
                tracing::warn!(error = %e, "full scan failed");
            }
        }
    }

    /// The first scan is the state the first snapshot carries, not a change to announce.
    fn initial(&mut self, outcome: ScanOutcome, watcher: Option<&mut Watcher>) {
        self.record(&outcome);
        self.mark(&outcome);
        Metrics::set(&self.metrics.pods_seen, outcome.pods.len() as u64);
        Metrics::set(&self.metrics.credentials_attested, outcome.credentials.len() as u64);
        if let Some(w) = watcher {
            for uid in &outcome.pods {
                w.sync_pod(uid);
            }
        }
        sender::lock(&self.shared).state.replace_all_credentials(outcome.credentials);
    }

    fn full_scan_result(&mut self, outcome: ScanOutcome, watcher: Option<&mut Watcher>) {
        self.record(&outcome);
        self.mark(&outcome);
        Metrics::set(&self.metrics.pods_seen, outcome.pods.len() as u64);
        if let Some(w) = watcher {
            for uid in &outcome.pods {
                w.sync_pod(uid);
            }
        }
        self.change(|s| s.replace_all_credentials(outcome.credentials));
    }

    /// Rescans some pods and attests all their changes as one delta (a rotation of every token
    /// on the node is one message, not one per pod).
    fn pod_scans(&mut self, pod_uids: &BTreeSet<String>, mut watcher: Option<&mut Watcher>) {
        let mut scanned = Vec::new();
        for uid in pod_uids {
            match scan::scan_pod(&self.config.kubelet_pods_dir, uid, &self.config.limits) {
                Ok(outcome) => {
                    self.record(&outcome);
                    self.mark(&outcome);
                    if let Some(w) = watcher.as_deref_mut() {
                        w.sync_pod(uid);
                    }
                    scanned.push((uid, outcome.credentials));
                }
                Err(e) => tracing::warn!(error = %e, "pod scan failed"),
            }
        }
        self.change(|s| {
            for (uid, credentials) in scanned {
                s.replace_pod_credentials(uid, credentials);
            }
        });
    }

    /// Marks the token files a scan found for the token-read watch (a rotated file is a new
    /// inode: marking again after every scan follows it).
    fn mark(&self, outcome: &ScanOutcome) {
        let Some(reads) = &self.reads else { return };
        for location in outcome.credentials.keys() {
            if let Err(e) = reads.watch.mark(location) {
                Metrics::add(&self.metrics.token_marks_failed_total, 1);
                tracing::warn!(%location, error = %e, "cannot watch token file");
            }
        }
    }

    /// Judges a batch of opens of token files and attests the foreign ones, as one message.
    fn token_reads(&mut self, events: Events) {
        let Some(reads) = self.reads.as_mut() else { return };
        if events.overflowed {
            Metrics::add(&self.metrics.token_read_overflows_total, 1);
            tracing::warn!("fanotify queue overflowed: some opens of token files were lost");
        }
        Metrics::add(&self.metrics.token_reads_unattributed_total, events.unresolved);
        let now = now_micros();
        let mut foreign = Vec::new();
        for open in events.opens {
            // The agent's own scans: no need to ask /proc.
            if open.pid == reads.agent_pid {
                Metrics::add(&self.metrics.token_reads_allowed_total, 1);
                continue;
            }
            let Some(location) = readers::token_location(&reads.root, &open.path) else { continue };
            let Some((cgroup_file, executable)) = token_watch::inspect(open.pid) else {
                Metrics::add(&self.metrics.token_reads_unattributed_total, 1);
                tracing::debug!(pid = open.pid, %location, "token file opened by a process already gone");
                continue;
            };
            let cgroup = readers::cgroup_path(&cgroup_file).unwrap_or_default().to_string();
            let reader = Reader { pid: open.pid, executable, owner: readers::classify(&cgroup), cgroup };
            let reader_pod = match &reader.owner {
                readers::CgroupOwner::Pod { uid, .. } => {
                    sender::lock(&self.shared).state.pods.get(uid).map(|p| (p.namespace.clone(), p.name.clone()))
                }
                _ => None,
            };
            let names = reader_pod.as_ref().map(|(ns, n)| (ns.as_str(), n.as_str()));
            match readers::decide(&reader, &location.pod_uid, reads.agent_pid, names, &self.config.read_policy) {
                Decision::Allowed(_) => Metrics::add(&self.metrics.token_reads_allowed_total, 1),
                decision @ (Decision::OtherPod | Decision::Host) => {
                    if !reads.throttle.admit(&reader, &location, now) {
                        Metrics::add(&self.metrics.token_reads_suppressed_total, 1);
                        continue;
                    }
                    tracing::warn!(%location, pid = reader.pid, executable = reader.executable.as_deref().unwrap_or(""),
                        cgroup = %reader.cgroup, other_pod = decision == Decision::OtherPod, "token file opened by a foreign reader");
                    foreign.push((location, reader));
                }
            }
        }
        if foreign.is_empty() {
            return;
        }
        // A file opened before the agent attested it (a pod just started): attest it first, so
        // the aggregator knows whose token it is when the read arrives.
        let unknown: BTreeSet<String> = {
            let g = sender::lock(&self.shared);
            foreign
                .iter()
                .filter(|(l, _)| !g.state.credentials.contains_key(l))
                .map(|(l, _)| l.pod_uid.clone())
                .collect()
        };
        if !unknown.is_empty() {
            self.pod_scans(&unknown, None);
        }
        let mut g = sender::lock(&self.shared);
        let reads: Vec<_> = foreign
            .iter()
            .map(|(location, reader)| wire::token_read(location, g.state.credentials.get(location), reader, now))
            .collect();
        Metrics::add(&self.metrics.token_reads_reported_total, reads.len() as u64);
        let Shared { outbox, sender, .. } = &mut *g;
        let dropped_before = outbox.dropped_total();
        outbox.push_with(false, |seq| sender.message(seq, now, wire::token_reads(reads)));
        Metrics::add(&self.metrics.messages_dropped_total, outbox.dropped_total() - dropped_before);
        Metrics::set(&self.metrics.queue_depth, outbox.len() as u64);
        drop(g);
        self.wake.notify_one();
    }

    /// Logs and counts what a scan refused: locations and reasons, never content.
    fn record(&self, outcome: &ScanOutcome) {
        Metrics::add(&self.metrics.scans_total, 1);
        Metrics::add(&self.metrics.files_refused_total, outcome.refused.len() as u64);
        for r in &outcome.refused {
            tracing::warn!(path = %r.path, reason = r.reason.as_str(), detail = %r.detail, "token file refused");
        }
    }

    /// Queues a heartbeat: a delta carrying only the node (as the API describes it, or just its
    /// name), stamped with the agent's clock. The aggregator turns a delta's node into a node
    /// report, which is what moves the node's watermark in the engine. Skipped while anything
    /// waits for delivery: that message will carry the agent's progress, and heartbeats must
    /// not fill the queue while the aggregator is away.
    fn heartbeat(&mut self) {
        let mut g = sender::lock(&self.shared);
        if !g.outbox.is_empty() {
            return;
        }
        let node = g
            .state
            .node
            .clone()
            .unwrap_or_else(|| state::NodeInfo { name: self.config.node_name.clone(), ..state::NodeInfo::default() });
        let now = now_micros();
        let body = wire::delta(&state::Delta { node: Some(node), ..state::Delta::default() }, now);
        let Shared { outbox, sender, .. } = &mut *g;
        outbox.push_with(false, |seq| sender.message(seq, now, body));
        Metrics::add(&self.metrics.heartbeats_total, 1);
        drop(g);
        self.wake.notify_one();
    }

    /// Changes the state under the lock and queues the delta, if any.
    fn change(&mut self, f: impl FnOnce(&mut NodeState)) {
        let mut g = sender::lock(&self.shared);
        let before = g.state.clone();
        f(&mut g.state);
        let delta = state::diff(&before, &g.state);
        if delta.is_empty() {
            return;
        }
        let rotations = delta.rotations(&before);
        for c in &delta.credentials_upserted {
            let old = before.credentials.get(&c.location).and_then(|o| o.claims.jti.clone());
            tracing::info!(location = %c.location, jti = c.claims.jti.as_deref().unwrap_or(""), previous_jti = old.as_deref().unwrap_or(""),
                subject = %c.claims.subject, "credential attested");
        }
        for r in &delta.credentials_removed {
            tracing::info!(location = %r.location, jti = r.jti.as_deref().unwrap_or(""), "credential gone");
        }
        let now = now_micros();
        let body = wire::delta(&delta, now);
        let Shared { outbox, sender, state } = &mut *g;
        let dropped_before = outbox.dropped_total();
        outbox.push_with(false, |seq| sender.message(seq, now, body));
        Metrics::add(&self.metrics.messages_dropped_total, outbox.dropped_total() - dropped_before);
        Metrics::set(&self.metrics.queue_depth, outbox.len() as u64);
        Metrics::set(&self.metrics.credentials_attested, state.credentials.len() as u64);
        Metrics::add(&self.metrics.rotations_total, rotations as u64);
        drop(g);
        self.wake.notify_one();
    }
}
