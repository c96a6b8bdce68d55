//! The bounded queue of unacknowledged attestations (pure).
//!
//! Every message gets the next sequence number when pushed and stays until a cumulative ack
//! covers it, so everything unacknowledged can be resent after a reconnect. When the queue is
//! full the oldest message is dropped and counted: the next snapshot restores the state (it is
//! complete by itself) and reports the gap in history. Pushing a snapshot also discards older
//! unacknowledged snapshots, which the new one supersedes, so a flapping connection cannot fill
//! the queue with snapshots.

use std::collections::VecDeque;

/// One queued message.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<T> {
    /// Its sequence number.
    pub seq: u64,
    /// Whether it is a snapshot.
    pub snapshot: bool,
    /// The message.
    pub message: T,
}

/// Unacknowledged messages, oldest first.
#[derive(Debug)]
pub struct Outbox<T> {
    entries: VecDeque<Entry<T>>,
    capacity: usize,
    next_seq: u64,
    acked: u64,
    dropped_total: u64,
    dropped_since_snapshot: u64,
}

impl<T> Outbox<T> {
    /// An empty outbox holding at most `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            acked: 0,
            dropped_total: 0,
            dropped_since_snapshot: 0,
        }
    }

    /// The sequence number the next pushed message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages dropped because the queue was full, since the last snapshot was pushed: the
    /// caller puts this in that snapshot.
    pub fn dropped_since_snapshot(&self) -> u64 {
        self.dropped_since_snapshot
    }

    /// Messages dropped because the queue was full, ever.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Queue depth.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing is waiting for an ack.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Highest sequence acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Queues a message built from its sequence number (so the message can carry it).
    pub fn push_with(&mut self, snapshot: bool, build: impl FnOnce(u64) -> T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if snapshot {
            self.entries.retain(|e| !e.snapshot);
            self.dropped_since_snapshot = 0;
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
            self.dropped_total += 1;
            // What a snapshot pushes out is older than the snapshot, which covers it.
            if !snapshot {
                self.dropped_since_snapshot += 1;
            }
        }
        self.entries.push_back(Entry { seq, snapshot, message: build(seq) });
        seq
    }

    /// A cumulative ack: forgets every message up to `seq`. Returns how many were released.
    /// Acks for sequence numbers never issued are clamped (a confused server cannot make the
    /// agent forget messages it has not sent yet).
    pub fn ack(&mut self, seq: u64) -> usize {
        let seq = seq.min(self.next_seq - 1);
        if seq <= self.acked {
            return 0;
        }
        self.acked = seq;
        let before = self.entries.len();
        while self.entries.front().is_some_and(|e| e.seq <= seq) {
            self.entries.pop_front();
        }
        before - self.entries.len()
    }

    /// Queued messages with a sequence number of at least `from`, oldest first.
    pub fn from_seq(&self, from: u64) -> impl Iterator<Item = &Entry<T>> {
        self.entries.iter().filter(move |e| e.seq >= from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_start_at_one_and_increase() {
        let mut o = Outbox::new(10);
        assert_eq!(o.push_with(true, |s| s), 1);
        assert_eq!(o.push_with(false, |s| s), 2);
        assert_eq!(o.from_seq(0).map(|e| e.message).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn cumulative_ack_releases_everything_up_to_it() {
        let mut o = Outbox::new(10);
        for _ in 0..5 {
            o.push_with(false, |s| s);
        }
        assert_eq!(o.ack(3), 3);
        assert_eq!(o.ack(2), 0, "stale acks change nothing");
        assert_eq!(o.from_seq(0).map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(o.ack(99), 2, "acks beyond what was issued are clamped");
        assert_eq!(o.acked(), 5);
        assert!(o.is_empty());
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_until_the_next_snapshot() {
        let mut o = Outbox::new(3);
        for _ in 0..5 {
            o.push_with(false, |s| s);
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.from_seq(0).map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((o.dropped_total(), o.dropped_since_snapshot()), (2, 2));
        o.push_with(true, |s| s);
        assert_eq!((o.dropped_total(), o.dropped_since_snapshot()), (3, 0));
    }

    #[test]
    fn a_new_snapshot_supersedes_unacked_older_snapshots_but_not_deltas() {
        let mut o = Outbox::new(10);
        o.push_with(true, |s| s);
        o.push_with(false, |s| s);
        o.push_with(true, |s| s);
        assert_eq!(o.from_seq(0).map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn from_seq_resumes_after_what_was_sent() {
        let mut o = Outbox::new(10);
        for _ in 0..4 {
            o.push_with(false, |s| s);
        }
        assert_eq!(o.from_seq(3).map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    }
}
