//! [`Reports`]: a client's repeated error reports, logged once a while rather than each time.
//!
//! While a broker is away librdkafka reports it on every connection attempt and every poll, and
//! a client that was not polled for a while (a correlator restoring a partition) hands over
//! thousands at once: identical lines that bury the one that says something new.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which reports of each kind to log: the first, then one per interval with the count of those
/// held back in between.
#[derive(Debug)]
pub struct Reports {
    every: Duration,
    kinds: Mutex<HashMap<String, Kind>>,
}

#[derive(Debug)]
struct Kind {
    logged: Instant,
    held_back: u64,
}

impl Default for Reports {
    /// One line per kind every 10 s: librdkafka's own reconnect backoff at its longest.
    fn default() -> Reports {
        Reports::every(Duration::from_secs(10))
    }
}

impl Reports {
    /// At most one line per kind per `every`.
    pub fn every(every: Duration) -> Reports {
        Reports { every, kinds: Mutex::new(HashMap::new()) }
    }

    /// Whether a report of `kind` (an error's text, without the details that vary between
    /// attempts) is to be logged now; `Some(n)`: yes, and `n` of its kind were held back since
    /// the last one logged.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &str, now: Instant) -> Option<u64> {
        // A poisoned lock (a panic while logging) costs only the throttling.
        let Ok(mut kinds) = self.kinds.lock() else { return Some(0) };
        match kinds.get_mut(kind) {
            Some(k) if now.duration_since(k.logged) < self.every => {
                k.held_back += 1;
                None
            }
            Some(k) => {
                let held_back = std::mem::take(&mut k.held_back);
                k.logged = now;
                Some(held_back)
            }
            None => {
                kinds.insert(kind.to_owned(), Kind { logged: now, held_back: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_logged_once_per_interval_with_the_count_held_back() {
        let reports = Reports::every(Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(reports.admit_at("AllBrokersDown", at(0)), Some(0));
        assert_eq!(reports.admit_at("AllBrokersDown", at(0)), None);
        assert_eq!(reports.admit_at("AllBrokersDown", at(9)), None);
        // Another kind is not held back by the first.
        assert_eq!(reports.admit_at("BrokerTransportFailure", at(9)), Some(0));
        assert_eq!(reports.admit_at("AllBrokersDown", at(10)), Some(2));
        assert_eq!(reports.admit_at("AllBrokersDown", at(21)), Some(0));
    }
}
