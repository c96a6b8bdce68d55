//! A progress bar on stderr, drawn only when stderr is a terminal and the input is large.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokentrail_correlator::forensic::Progress;

/// Inputs smaller than this finish before a bar would be worth drawing.
const WORTH_A_BAR: u64 = 64 << 20;

/// A redraw at most every this long.
const REDRAW: Duration = Duration::from_millis(200);

/// Draws `[#####     ] 45%  450/1000 MiB  120 MiB/s` on one line of stderr.
pub struct Bar {
    enabled: bool,
    total: AtomicU64,
    state: Mutex<(Instant, Instant)>,
}

impl Bar {
    /// A bar that draws only if stderr is a terminal.
    pub fn for_stderr() -> Bar {
        let now = Instant::now();
        Bar { enabled: std::io::stderr().is_terminal(), total: AtomicU64::new(0), state: Mutex::new((now, now)) }
    }

    fn draw(&self, done: u64, total: u64, started: Instant) {
        let frac = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
        let filled = (frac * 30.0) as usize;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let _ = write!(
            std::io::stderr(),
            "\r[{}{}] {:>3.0}%  {:.0}/{:.0} MiB  {:.0} MiB/s ",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            frac * 100.0,
            mib(done),
            mib(total),
            mib(done) / secs,
        );
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            *s = (Instant::now(), Instant::now());
        }
    }

    fn update(&self, done: u64) {
        let total = self.total.load(Ordering::Relaxed);
        if !self.enabled || total < WORTH_A_BAR {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        if s.1.elapsed() >= REDRAW {
            s.1 = Instant::now();
            self.draw(done, total, s.0);
        }
    }

    fn finish(&self) {
        let total = self.total.load(Ordering::Relaxed);
        if self.enabled && total >= WORTH_A_BAR {
            // Clear the bar's line so the report starts clean.
            let _ = write!(std::io::stderr(), "\r{}\r", " ".repeat(72));
        }
    }
}
