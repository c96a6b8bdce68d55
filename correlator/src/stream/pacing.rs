//! How often a replica commits when its state is large.
//!
//! Every commit judges the state of each partition that moved (`PartitionState::due`): the
//! offsets it commits are then always of judged evidence, and a reader that sees them has seen
//! the findings of everything before them. A judgement reads the partition's whole state, so its
//! cost grows with the state: ~6 ms per 1,000 credentials (docs/scale.md). Committed every
//! 250 ms, a partition of 100,000 credentials would spend all its time judging and fall ever
//! further behind its input. So the next commit waits until judging has taken no more than a
//! `share` of the time: after a judgement that took `t`, `t / share` after it began. Small
//! states commit every interval as before (2 ms of judging allows the next after 8 ms); large
//! ones commit, and report findings, less often, in larger transactions, and keep up with their
//! input. A replica killed in between loses nothing: its successor redoes the input since the
//! last commit, as after any crash.
//!
//! Pure: the loop hands in the instants.

use std::time::{Duration, Instant};

/// The earliest start of the next commit after a judgement that began at `began` and took
/// `took`, for judging to take at most `share` of the time (`share` in (0, 1]; smaller ones
/// are held to it). A share so small that the wait has no end waits a year instead.
pub(crate) fn next_judgement(began: Instant, took: Duration, share: f64) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let share = share.clamp(f64::MIN_POSITIVE, 1.0);
    let wait = Duration::try_from_secs_f64(took.as_secs_f64() / share).unwrap_or(YEAR).min(YEAR);
    began + wait
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_judgement_spaces_the_next_to_keep_the_share() {
        let began = Instant::now();
        // Judging for a second at a quarter of the time: the next no sooner than 4 s after.
        assert_eq!(next_judgement(began, 1000 * MS, 0.25), began + 4000 * MS);
    }

    #[test]
    fn a_quick_judgement_leaves_the_commit_interval_in_charge() {
        let began = Instant::now();
        // The next commit comes a commit interval (250 ms by default) later anyway.
        assert!(next_judgement(began, 2 * MS, 0.25) < began + 250 * MS);
    }

    #[test]
    fn a_share_of_one_waits_only_for_the_judgement_itself() {
        let began = Instant::now();
        assert_eq!(next_judgement(began, 100 * MS, 1.0), began + 100 * MS);
        assert_eq!(next_judgement(began, 100 * MS, 7.0), began + 100 * MS, "held to at most 1");
    }

    #[test]
    fn a_vanishing_share_waits_a_year_rather_than_overflowing() {
        let began = Instant::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(next_judgement(began, MS, 1e-300), began + year);
        assert_eq!(next_judgement(began, MS, 0.0), began + year);
        assert_eq!(next_judgement(began, MS, -1.0), began + year);
        assert_eq!(next_judgement(began, MS, f64::NAN), began + year);
    }
}
