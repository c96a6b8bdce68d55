//! Event time: microseconds since the Unix epoch, UTC.
//!
//! Audit timestamps are RFC 3339 with microseconds (`MicroTime`); the engine only ever compares
//! and subtracts them, so an integer is all it needs. Parsing and formatting are written out here
//! (civil-from-days) to keep the core free of date crates and fast on a billion-byte log.

use std::fmt;

/// A point in event time, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// A span of event time, in microseconds.
pub type Micros = i64;

/// One second, in [`Micros`].
pub const SECOND: Micros = 1_000_000;
/// One minute, in [`Micros`].
pub const MINUTE: Micros = 60 * SECOND;

/// The times an audit event can carry: from 2014-01-01 (Kubernetes' first commit was in June
/// 2014, its audit log came later) to 2100-01-01. An event outside them is a broken clock or a
/// forged record, and one such event would otherwise become the engine's latest event time.
pub const AUDIT_ERA: std::ops::Range<Timestamp> = Timestamp(1_388_534_400 * SECOND)..Timestamp(4_102_444_800 * SECOND);

impl Timestamp {
    /// The earliest representable time; used as "since forever".
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable time; used as "until forever".
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// Parses RFC 3339 (`2026-03-01T10:05:00.123456Z`, `+02:00` offsets), and the forms that
    /// log pipelines produce from it: a space instead of `T`, and no zone at all (taken as UTC).
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.trim().as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in b.get(r)? {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let mut digits = 0;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                if digits < 6 {
                    micros = micros * 10 + i64::from(c - b'0');
                }
                digits += 1;
                i += 1;
            }
            for _ in digits..6 {
                micros *= 10;
            }
        }
        let offset_seconds = match b.get(i) {
            None | Some(b'Z') | Some(b'z') => 0,
            Some(&sign @ (b'+' | b'-')) => {
                let h = num(i + 1..i + 3)?;
                let m = if b.get(i + 3) == Some(&b':') { num(i + 4..i + 6)? } else { num(i + 3..i + 5)? };
                let off = h * 3600 + m * 60;
                if sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        Some(Timestamp(seconds * SECOND + micros))
    }

    /// From whole seconds since the epoch (JWT `iat`/`exp`, CloudWatch uses milliseconds: see
    /// [`Timestamp::from_millis`]).
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(SECOND))
    }

    /// From milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms.saturating_mul(1000))
    }

    /// This time plus a span, saturating at the ends of time.
    pub fn plus(self, d: Micros) -> Timestamp {
        Timestamp(self.0.saturating_add(d))
    }

    /// The date part, `YYYY-MM-DD`, as the `legacy-token-last-used` label writes it.
    pub fn date(self) -> String {
        let s = self.to_string();
        s[..10].to_string()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microseconds when there are any, else whole seconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(SECOND);
        let micros = self.0.rem_euclid(SECOND);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

/// Years RFC 3339 can write; outside them (the "since forever" and "until forever" sentinels of
/// empty tallies) a timestamp is written as its number of microseconds.
const WRITABLE: std::ops::Range<i64> = -62_167_219_200_000_000..253_402_300_800_000_000;

/// Human-readable formats (JSON: reports, findings, snapshots) write RFC 3339; binary ones (the
/// streaming correlator's changelog values) the microseconds, a varint of 8 bytes where the text
/// took 22.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if WRITABLE.contains(&self.0) && s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or microseconds since the epoch")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).ok_or_else(|| E::custom(format!("{v:?} is not an RFC 3339 time")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(E::custom)
            }
        }
        // A binary format says nothing of its values' types: it is asked for the number it wrote.
        if d.is_human_readable() {
            d.deserialize_any(Visitor)
        } else {
            d.deserialize_i64(Visitor)
        }
    }
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html).
/// Days since 1970-01-01 of a proleptic Gregorian date (also the agent's, for kubelet volume
/// timestamps).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_audit_micro_time_and_formats_it_back() {
        let t = Timestamp::parse("2026-03-01T10:05:00.004000Z").unwrap();
        assert_eq!(t.to_string(), "2026-03-01T10:05:00.004000Z");
        assert_eq!(Timestamp::parse("1970-01-01T00:00:01Z"), Some(Timestamp(SECOND)));
    }

    #[test]
    fn parses_offsets_spaces_and_missing_zone() {
        let utc = Timestamp::parse("2022-11-29T22:34:06.892Z").unwrap();
        assert_eq!(Timestamp::parse("2022-11-29 22:34:06.892"), Some(utc));
        assert_eq!(Timestamp::parse("2022-11-30T00:34:06.892+02:00"), Some(utc));
        assert_eq!(Timestamp::parse("2022-11-29T22:34:06.8920001Z"), Some(utc));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "yesterday", "2022-13-01T00:00:00Z", "2022-11-29T22:34", "2022-11-29T22:34:06+xx"] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn serde_round_trips_including_the_ends_of_time() {
        for t in [Timestamp::MIN, Timestamp::MAX, Timestamp(0), Timestamp::parse("2026-03-01T10:05:00.004Z").unwrap()] {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t, "{json}");
        }
        assert_eq!(serde_json::to_string(&Timestamp(0)).unwrap(), "\"1970-01-01T00:00:00Z\"");
    }

    #[test]
    fn the_audit_era_starts_in_2014_and_ends_before_2100() {
        assert_eq!(AUDIT_ERA.start.to_string(), "2014-01-01T00:00:00Z");
        assert_eq!(AUDIT_ERA.end.to_string(), "2100-01-01T00:00:00Z");
    }
}
