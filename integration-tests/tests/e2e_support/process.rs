//! The pipeline's processes: `tokentrail agent`, `aggregator` and `correlator`, started from the
//! real binary with their output in log files, stopped with real signals. A process still
//! running when its handle is dropped (a failed test) is killed, and its log's tail printed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::super::correlator_support::binary;

/// A running `tokentrail` subcommand.
pub struct Process {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// How many times it was started (its log holds every run).
    runs: usize,
}

impl Process {
    /// Starts `tokentrail ARGS...`, its output appended to `<dir>/<name>.log`.
    pub fn start(dir: &Path, name: &str, args: Vec<String>, env: Vec<(String, String)>) -> Process {
        let mut p =
            Process { name: name.into(), child: None, log: dir.join(format!("{name}.log")), args, env, runs: 0 };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log).unwrap();
        let mut command = Command::new(binary());
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // The agents find their API server through $KUBECONFIG, never through an in-cluster
        // environment the test runner might have.
        command.env_remove("KUBERNETES_SERVICE_HOST").env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().unwrap_or_else(|e| panic!("start tokentrail {}: {e}", self.name)));
        self.runs += 1;
    }

    /// Its latest run has taken over its stop signals: every run logs `<component> starting`
    /// once they are (before that, a SIGTERM kills it as any process's default action does).
    fn handles_signals(&self) -> bool {
        let starts =
            self.log().lines().filter(|l| l.contains("tokentrail::startup: ") && l.contains(" starting ")).count();
        starts >= self.runs
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Its memory now, from `/proc/PID/status`.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("reading the status of {}: {e}", self.name));
        // Lines such as `VmRSS:\t   12345 kB`.
        let kib = |field: &str| -> u64 {
            let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("no {field}"));
            line.trim().trim_end_matches("kB").trim().parse().unwrap()
        };
        Memory { rss_kib: kib("VmRSS:"), peak_rss_kib: kib("VmHWM:") }
    }

    /// SIGKILL: no shutdown, nothing flushed or committed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL, and no error if the process already exited (it is called
            // from Drop, where a panic would abort the test run).
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: every thread stops where it is, as in a paused VM or a stopped container; the
    /// broker sees nothing from it, not even a goodbye.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`Process::freeze`].
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGTERM, and waits for a clean exit (status 0) within the chart's grace period (60 s).
    pub fn stop(&mut self) {
        self.stop_within(Duration::from_secs(60));
    }

    /// SIGTERM, and waits up to `limit` for a clean exit (status 0); says how long a slow one
    /// took.
    pub fn stop_within(&mut self, limit: Duration) {
        // A process restarted a moment ago may not have taken over SIGTERM yet (a drill restarts
        // and stops a replica back to back): the stop is sent once it has.
        let starting = Instant::now();
        while !self.handles_signals() && starting.elapsed() < Duration::from_secs(10) {
            if self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Some(mut child) = self.child.take() else { return };
        signal(child.id(), "TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status} after SIGTERM; log: {}", self.name, self.tail());
                if started.elapsed() > Duration::from_secs(10) {
                    eprintln!("e2e: {} took {:.1} s to stop after SIGTERM", self.name, started.elapsed().as_secs_f64());
                }
                return;
            }
            if started.elapsed() > limit {
                let tail = self.tail();
                let _ = child.kill();
                panic!("{} did not stop within {limit:?} of SIGTERM; log: {tail}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again with the same arguments (after [`Process::kill9`] or [`Process::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn();
    }

    /// How it exited, if it has; it can then be [`Process::restart`]ed.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().unwrap())?;
        self.child = None;
        Some(status)
    }

    /// Panics, with the log's tail, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("{} exited with {status}; log: {}", self.name, self.tail());
        }
    }

    /// Its whole log so far (every run of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the process's log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("{}:\n{}", self.log.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            if std::thread::panicking() {
                eprintln!("--- {} ---\n{}", self.name, self.tail());
            }
            self.kill9();
        }
    }
}

/// A process's resident memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (VmRSS), in KiB.
    pub rss_kib: u64,
    /// The most it has been resident since it started (VmHWM, the high-water mark), in KiB.
    pub peak_rss_kib: u64,
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A loopback port free now, for a server the test must be able to restart on the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
