//! The one duration grammar of every flag (`--rotation-grace 500ms`) and every configuration file
//! (`"commit_interval": "250ms"`): jiff's "friendly" format, days counted as 24 hours.
//!
//! Accepted: `500ms`, `30s`, `5m`, `1h`, `1d`, combinations (`1h30m`, `5m 30s`), a fraction of
//! the smallest unit (`1.5h`), words (`2 hours`), ISO 8601 (`PT5M`). Refused: a number without a
//! unit (`5`: seconds or minutes?), negative durations (`-1s`, `1s ago`), months and years (not
//! a fixed length).

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};
use serde::Deserialize;

/// Why a duration was refused; the message shows the input and examples.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Not the grammar, or a unit without a fixed length (months, years).
    #[error("invalid duration {input:?} (use e.g. 500ms, 30s, 5m, 1h)")]
    Syntax {
        /// What was written.
        input: String,
        /// jiff's explanation.
        #[source]
        source: jiff::Error,
    },
    /// Below zero.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative {
        /// What was written.
        input: String,
    },
}

/// Parses `s` in the grammar above.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let syntax = |source| DurationError::Syntax { input: s.to_string(), source };
    let span: Span = s.trim().parse().map_err(syntax)?;
    let signed = span.to_duration(SpanRelativeTo::days_are_24_hours()).map_err(syntax)?;
    Duration::try_from(signed).map_err(|_| DurationError::Negative { input: s.to_string() })
}

/// Writes `d` so that [`parse`] reads it back exactly, e.g. `1m 30s 500ms`.
pub fn format(d: Duration) -> String {
    match jiff::SignedDuration::try_from(d) {
        Ok(signed) => format!("{signed:#}"),
        // Beyond 292 billion years: no setting comes near it.
        Err(_) => format!("{}s", d.as_secs()),
    }
}

/// `#[serde(deserialize_with = "tokentrail_config::duration::deserialize")]`: a string in the
/// grammar above.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `#[serde(serialize_with = "tokentrail_config::duration::serialize_given")]`: a flag's duration
/// as [`format`] writes it, null when the flag was not given.
pub fn serialize_given<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format(*d)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn units_combinations_fractions_and_words_are_accepted() {
        let secs = Duration::from_secs;
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("90s", secs(90)),
            ("5m", secs(300)),
            ("1h", secs(3600)),
            ("1d", secs(86_400)),
            ("25h", secs(90_000)),
            ("1m30s", secs(90)),
            ("5m30s", secs(330)),
            ("1h 30m", secs(5400)),
            ("1.5h", secs(5400)),
            ("2 hours", secs(7200)),
            ("PT5M", secs(300)),
            (" 10s ", secs(10)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bare_numbers_negatives_and_calendar_units_are_refused() {
        for bad in ["", "5", "10", "s", "5x", "often", "-1s", "1s ago", "1mo", "1y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("often").unwrap_err().to_string(), "invalid duration \"often\" (use e.g. 500ms, 30s, 5m, 1h)");
        assert!(matches!(parse("-1s"), Err(DurationError::Negative { .. })));
    }

    #[test]
    fn format_reads_back_exactly() {
        for d in [Duration::from_micros(90_500_250), Duration::from_secs(25 * 3600), Duration::ZERO] {
            assert_eq!(parse(&format(d)).unwrap(), d, "{}", format(d));
        }
    }
}
