//! Borrowing JSON helpers: strings that borrow from the input when they can, lenient values
//! for fields whose type varies between producers, and maps from which a few keys are picked.
//!
//! serde's `Option<Cow<str>>` always allocates, so [`Str`] exists; picking keys (instead of
//! reading a whole `map<string,string>`) keeps large annotations such as
//! `kubectl.kubernetes.io/last-applied-configuration` (which can hold a Secret's data) out of
//! memory entirely.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON string that borrows from the input unless it holds escapes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(PhantomData))
    }
}

struct StrVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
    type Value = Str<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

/// A lenient string: a string, or the first string of an array (`user.extra` values are
/// arrays); anything else (numbers, objects, null) reads as absent instead of failing the
/// whole record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FirstStr<'a>(pub Option<Str<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FirstStr(Some(Str(Cow::Borrowed(v)))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FirstStr(Some(Str(Cow::Owned(v.to_owned())))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(FirstStr(Some(Str(Cow::Owned(v)))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<FirstStr<'a>>()?.and_then(|f| f.0);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstStr(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(FirstStr(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FirstStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FirstStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(FirstStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(FirstStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstStr(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An HTTP status code as logged: a number (sometimes a float or a string after a log
/// pipeline); anything out of range or of another type reads as absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HttpCode(pub Option<u16>);

impl<'de> Deserialize<'de> for HttpCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HttpCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HttpCode, E> {
                Ok(HttpCode(u16::try_from(v).ok()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HttpCode, E> {
                Ok(HttpCode(u16::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HttpCode, E> {
                let ok = v.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(&v);
                // Checked just above: integral and within u16.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(HttpCode(ok.then_some(v as u16)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HttpCode, E> {
                Ok(HttpCode(v.trim().parse().ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<HttpCode, E> {
                Ok(HttpCode(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<HttpCode, E> {
                Ok(HttpCode(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HttpCode, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(HttpCode(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HttpCode, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(HttpCode(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A struct of optional strings picked from an object by key (see [`pick_keys!`]).
pub(crate) trait PickKeys<'a>: Default {
    /// The field a key feeds, if any.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Str<'a>>>;
}

/// Declares a struct of optional strings read from a JSON object by key, ignoring every other
/// key without allocating. Several keys may feed one field (aliases); values are read with
/// [`FirstStr`], so `["value"]` and `"value"` both work.
macro_rules! pick_keys {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: [$($key:literal),+ $(,)?]),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub(crate) struct $name<'a> {
            $($(#[$fmeta])* pub $field: Option<crate::json::Str<'a>>,)*
        }

        impl<'a> crate::json::PickKeys<'a> for $name<'a> {
            fn slot(&mut self, key: &str) -> Option<&mut Option<crate::json::Str<'a>>> {
                match key {
                    $($($key)|+ => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }

        impl<'de: 'a, 'a> serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<crate::json::Str<'de>>()? {
                            match crate::json::PickKeys::slot(&mut out, &key) {
                                Some(slot) => *slot = map.next_value::<crate::json::FirstStr<'a>>()?.0,
                                None => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}
pub(crate) use pick_keys;

/// A JSON value kept as its text, to be read only if it turns out to be needed.
///
/// Like serde_json's `&RawValue`, which it is read through, but it can also be cut out of a
/// line by the [`scan`](crate::scan) reader, which checks a skipped value's brackets and
/// strings but not every byte of it; whoever reads the value parses it then, fully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The text of a value found by the scanner.
    pub(crate) fn new(text: &'a str) -> Raw<'a> {
        Raw(text)
    }

    /// The value's JSON text.
    pub(crate) fn get(self) -> &'a str {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Raw(raw.get()))
    }
}

/// Reads a raw JSON value into `T`, borrowing from it.
pub(crate) fn parse<'a, T: Deserialize<'a>>(raw: Raw<'a>) -> Result<T, serde_json::Error> {
    serde_json::from_str(raw.get())
}

/// The string a raw value holds, if it is a string.
pub(crate) fn raw_str(raw: Raw<'_>) -> Option<Str<'_>> {
    parse::<Str<'_>>(raw).ok()
}

/// Whether a raw value is a JSON object (`{...}`), e.g. not AKS's `"skipped-too-big-size-object"`.
pub(crate) fn is_object(raw: &Raw<'_>) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// Describes a serde_json error for a [`Problem`](crate::Problem): without serde's
/// "at line L column C" (the caller places it) and with long quoted strings elided, because a
/// mistyped field could hold a token.
pub(crate) fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => &text[..i],
        _ => &text[..],
    };
    elide_quoted(text, 32)
}

/// Replaces every `"..."` or `` `...` `` run longer than `max` characters with `"…"`.
pub(crate) fn elide_quoted(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        let mut inner = String::new();
        let mut closed = false;
        let mut escaped = false;
        for d in chars.by_ref() {
            if !escaped && d == c {
                closed = true;
                break;
            }
            escaped = !escaped && d == '\\';
            inner.push(d);
        }
        out.push(c);
        if inner.chars().count() > max {
            out.push('…');
        } else {
            out.push_str(&inner);
        }
        if closed {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pick_keys!(Picked { a: ["a", "alias_a"], b: ["b"] });

    #[test]
    fn str_borrows_unless_escaped() {
        let s: Str<'_> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(s.0, Cow::Borrowed("plain")));
        let s: Str<'_> = serde_json::from_str(r#""with \"quote\"""#).unwrap();
        assert_eq!(&*s, "with \"quote\"");
        assert!(serde_json::from_str::<Str<'_>>("0").is_err());
    }

    #[test]
    fn picks_keys_and_aliases_leniently() {
        let p: Picked<'_> = serde_json::from_str(r#"{"x":{"deep":[1,2]},"alias_a":["first","second"],"b":7}"#).unwrap();
        assert_eq!(p.a.as_deref(), Some("first"));
        assert_eq!(p.b, None);
        let p: Picked<'_> = serde_json::from_str(r#"{"a":"v","b":null}"#).unwrap();
        assert_eq!((p.a.as_deref(), p.b), (Some("v"), None));
    }

    #[test]
    fn http_codes_are_lenient() {
        for (json, want) in [
            ("200", Some(200)),
            ("401.0", Some(401)),
            ("\"403\"", Some(403)),
            ("-1", None),
            ("1e300", None),
            ("70000", None),
            ("{}", None),
            ("[1]", None),
            ("null", None),
        ] {
            assert_eq!(serde_json::from_str::<HttpCode>(json).unwrap().0, want, "{json}");
        }
    }

    #[test]
    fn errors_never_echo_long_strings() {
        let e = serde_json::from_str::<u8>(r#""eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMzQ1Njc4OTAifQ""#).unwrap_err();
        let d = describe(&e);
        assert!(!d.contains("eyJhbGciOi"), "{d}");
        assert!(!d.contains("at line"), "{d}");
        assert_eq!(elide_quoted(r#"a "short" b"#, 32), r#"a "short" b"#);
        assert_eq!(elide_quoted(r#"x "unterminated very long string here""#, 5), r#"x "…""#);
    }
}
