//! The bytes of a changelog entry's value: a format byte, then the value in that format.
//!
//! Format 1 is postcard (serde's data model as varints and length-prefixed bytes, no field
//! names; times as microseconds, addresses as their 4 or 16 bytes: see `Timestamp`'s serde impl).
//! Versions before it wrote JSON, without a format byte; their values are still read, so a
//! deployment upgrades in place: an entry stays JSON in the topic until its key is written again.
//!
//! A binary value says nothing of its fields: reading it takes the exact shape it was written
//! in. So any change to a persisted type's fields (or its order of fields) is a change of
//! format: give it the next byte and keep a reader of the one before, as JSON is kept here. The
//! test `format_1_values_are_written_byte_for_byte_as_pinned` (`tests/changelog_format.rs`)
//! fails when a shape moves.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The first byte of a format-1 value. Format bytes are control characters, which no JSON text
/// starts with (JSON starts with `{`, `[`, `"`, a digit, `-`, a letter or white space).
const FORMAT_1: u8 = 1;

/// Why a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// A value written by an older version, as JSON.
    #[error("json value: {0}")]
    Json(#[from] serde_json::Error),
    /// A format-1 value.
    #[error("binary value: {0}")]
    Binary(#[from] postcard::Error),
    /// A format-1 value longer than its shape: it was written in another.
    #[error("binary value: {0} bytes left over")]
    TrailingBytes(usize),
    /// A format byte this version does not know.
    #[error("value format {0} unknown (written by a newer version?)")]
    UnknownFormat(u8),
}

/// An identifier that is usually a UUID (audit IDs, UIDs) as format 1 writes it: a UUID in its
/// canonical form, lowercase, as its 16 bytes (36 in the text); anything else as it is, so it
/// reads back the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Id<'a> {
    /// A canonical lowercase UUID.
    Uuid([u8; 16]),
    /// Any other text.
    Text(Cow<'a, str>),
}

impl<'a> Id<'a> {
    /// The identifier of `text`.
    pub(crate) fn of(text: &'a str) -> Id<'a> {
        uuid_bytes(text).map_or(Id::Text(Cow::Borrowed(text)), Id::Uuid)
    }

    /// The text it was made of.
    pub(crate) fn into_text(self) -> String {
        match self {
            Id::Uuid(bytes) => {
                let mut text = String::with_capacity(36);
                for (i, b) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        text.push('-');
                    }
                    for digit in [b >> 4, b & 0xf] {
                        text.push(char::from_digit(u32::from(digit), 16).unwrap_or('0'));
                    }
                }
                text
            }
            Id::Text(text) => text.into_owned(),
        }
    }
}

/// The bytes of a UUID written `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex, the form
/// the apiserver gives audit IDs and UIDs; `None` for any other text (upper case included, which
/// would not read back the same).
fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    let text = text.as_bytes();
    if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut digits = text.iter().filter(|&&c| c != b'-').map(|&c| digit(c));
    let mut bytes = [0; 16];
    for b in &mut bytes {
        *b = (digits.next()?? << 4) | digits.next()??;
    }
    Some(bytes)
}

/// A value in this version's format.
pub fn encode(value: &impl Serialize) -> Vec<u8> {
    let bytes = vec![FORMAT_1];
    // Every value written is plain data, which always serializes; an empty value would fail to
    // read back, loudly, rather than be taken for another.
    postcard::to_extend(value, bytes).unwrap_or_default()
}

/// A value of any format this version reads: format 1, or an older version's JSON.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValueError> {
    decode_as::<T, T>(bytes)
}

/// As [`decode`], for a type whose format-1 form is another type `B` (one shaped for size).
pub fn decode_as<T: DeserializeOwned, B: DeserializeOwned + Into<T>>(bytes: &[u8]) -> Result<T, ValueError> {
    match bytes.first() {
        Some(&FORMAT_1) => {
            let (value, rest) = postcard::take_from_bytes::<B>(&bytes[1..])?;
            if rest.is_empty() {
                Ok(value.into())
            } else {
                Err(ValueError::TrailingBytes(rest.len()))
            }
        }
        Some(&b) if b < b' ' && !b.is_ascii_whitespace() => Err(ValueError::UnknownFormat(b)),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn a_value_reads_back_from_this_format_and_from_an_older_versions_json() {
        let t = Timestamp::parse("2026-03-10T14:00:00Z").unwrap();
        let bytes = encode(&(t, Some("x".to_string())));
        assert_eq!(bytes[0], FORMAT_1);
        assert_eq!(bytes.len(), 1 + 8 + 1 + 2, "format byte, the time's varint, Some, the string");
        assert_eq!(decode::<(Timestamp, Option<String>)>(&bytes).unwrap(), (t, Some("x".to_string())));
        let json = serde_json::to_vec(&(t, Some("x"))).unwrap();
        assert_eq!(json, br#"["2026-03-10T14:00:00Z","x"]"#, "JSON outputs still write RFC 3339");
        assert_eq!(decode::<(Timestamp, Option<String>)>(&json).unwrap(), (t, Some("x".to_string())));
    }

    #[test]
    fn an_id_is_16_bytes_when_a_lowercase_uuid_and_always_reads_back_as_written() {
        for (text, uuid) in [
            ("0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f6", true),
            ("0F8C7D2E-5B1A-4C3D-9E8F-A1B2C3D4E5F6", false),
            ("0f8c7d2e5b1a4c3d9e8fa1b2c3d4e5f6abcd", false),
            ("0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5fg", false),
            ("use-00000013-05-0", false),
            ("", false),
        ] {
            let id = Id::of(text);
            assert_eq!(matches!(id, Id::Uuid(_)), uuid, "{text}");
            let bytes = encode(&id);
            assert_eq!(decode::<Id<'static>>(&bytes).unwrap().into_text(), text);
        }
        assert_eq!(encode(&Id::of("0f8c7d2e-5b1a-4c3d-9e8f-a1b2c3d4e5f6")).len(), 1 + 1 + 16);
    }

    #[test]
    fn a_value_of_another_shape_or_an_unknown_format_is_an_error() {
        let bytes = encode(&(1u8, 2u8));
        assert!(matches!(decode::<u8>(&bytes), Err(ValueError::TrailingBytes(1))));
        assert!(matches!(decode::<u8>(&[2, 0]), Err(ValueError::UnknownFormat(2))));
        assert!(matches!(decode::<u8>(b"[1"), Err(ValueError::Json(_))));
    }
}
