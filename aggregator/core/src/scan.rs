//! The fast way to read one top-level object into an [`Event`]: a single forward pass that
//! reads the keys `Event` has and jumps over every other value by its brackets and quotes.
//!
//! serde_json checks each byte of a line against the JSON grammar, including the values it
//! skips, and that was most of what `analyze` spent (see docs/benchmarks.md). Here only what is
//! read is checked fully (strings, numbers, the shape of the objects `Event` looks into); a
//! value that is skipped, or kept raw for later, is checked for closed strings and balanced
//! brackets only, and whoever later reads a raw value parses it with serde_json then. So a
//! corrupt byte inside a value nobody reads no longer costs the whole event; a cut or
//! unbalanced line still does.
//!
//! When the scanner is not sure it would read an object exactly as serde would (an escaped or
//! repeated key, a value of a type the field does not take, several objects on one line), it
//! gives up and returns `None`; the caller then reads the object with serde_json, which yields
//! the same [`Event`] or the same error as before. A test holds the two readers to the same
//! result on every sample and scenario line.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use crate::audit_event::{Event, ObjectRef, ResponseStatus, UserInfo};
use crate::json::{FirstStr, HttpCode, PickKeys, Raw, Str};

/// Reads `text` (one JSON object, surrounded by whitespace at most) into an [`Event`], or
/// `None` when serde_json must decide.
#[cfg(test)]
pub(crate) fn event(text: &str) -> Option<Event<'_>> {
    let mut ev = Event::default();
    read_event(text, &mut ev)?;
    Some(ev)
}

/// [`event`], read into `ev` (a default `Event`) where the caller keeps it: an `Event` is a
/// kilobyte, and this runs for every line. When it gives up, `ev` holds part of the object and
/// is to be thrown away.
pub(crate) fn read_event<'a>(text: &'a str, ev: &mut Event<'a>) -> Option<()> {
    let mut s = Scanner { text, bytes: text.as_bytes(), pos: 0 };
    let mut seen = Seen::default();
    s.object(|s, key| {
        // One arm per field of `Event`, with serde's names and aliases.
        match key {
            "kind" => seen.once(0).and_then(|()| s.set_str(&mut ev.kind)),
            "apiVersion" => seen.once(1).and_then(|()| s.set_str(&mut ev.api_version)),
            "auditID" => seen.once(2).and_then(|()| s.set_str(&mut ev.audit_id)),
            "stage" => seen.once(3).and_then(|()| s.set_str(&mut ev.stage)),
            "requestURI" => seen.once(4).and_then(|()| s.set_str(&mut ev.request_uri)),
            "verb" => seen.once(5).and_then(|()| s.set_str(&mut ev.verb)),
            "user" => seen.once(6).and_then(|()| s.fill(&mut ev.user, Scanner::user)),
            "impersonatedUser" => seen.once(7).and_then(|()| s.set(&mut ev.impersonated_user, Scanner::ignored)),
            "sourceIPs" => seen.once(8).and_then(|()| s.set(&mut ev.source_ips, Scanner::strings)),
            "userAgent" => seen.once(9).and_then(|()| s.set_str(&mut ev.user_agent)),
            "objectRef" => seen.once(10).and_then(|()| s.fill(&mut ev.object_ref, Scanner::object_ref)),
            "responseStatus" => seen.once(11).and_then(|()| s.fill(&mut ev.response_status, Scanner::response_status)),
            "requestObject" => seen.once(12).and_then(|()| s.set_raw(&mut ev.request_object)),
            "responseObject" => seen.once(13).and_then(|()| s.set_raw(&mut ev.response_object)),
            "requestReceivedTimestamp" => seen.once(14).and_then(|()| s.set_str(&mut ev.request_received_timestamp)),
            "stageTimestamp" => seen.once(15).and_then(|()| s.set_str(&mut ev.stage_timestamp)),
            "timestamp" => seen.once(16).and_then(|()| s.set_raw(&mut ev.timestamp)),
            "metadata" => seen.once(17).and_then(|()| s.set_raw(&mut ev.metadata)),
            "annotations" => seen.once(18).and_then(|()| s.fill(&mut ev.annotations, Scanner::picked)),
            "items" => seen.once(19).and_then(|()| s.set_raw(&mut ev.items)),
            "records" => seen.once(20).and_then(|()| s.set_raw(&mut ev.records)),
            "properties" => seen.once(21).and_then(|()| s.set_raw(&mut ev.properties)),
            "category" | "Category" => seen.once(22).and_then(|()| s.set_raw(&mut ev.category)),
            "time" | "TimeGenerated" => seen.once(23).and_then(|()| s.set_raw(&mut ev.time)),
            "log_s" => seen.once(24).and_then(|()| s.set_raw(&mut ev.log_s)),
            "events" | "logEvents" => seen.once(25).and_then(|()| s.set_raw(&mut ev.events)),
            "message" | "@message" => seen.once(26).and_then(|()| s.set_raw(&mut ev.message)),
            "logStreamName" | "@logStream" => seen.once(27).and_then(|()| s.set_raw(&mut ev.log_stream_name)),
            "protoPayload" => seen.once(28).and_then(|()| s.set_raw(&mut ev.proto_payload)),
            "insertId" => seen.once(29).and_then(|()| s.set_raw(&mut ev.insert_id)),
            "labels" => seen.once(30).and_then(|()| s.set_raw(&mut ev.labels)),
            "operation" => seen.once(31).and_then(|()| s.set_raw(&mut ev.operation)),
            "spec" => seen.once(32).and_then(|()| s.set_raw(&mut ev.spec)),
            "status" => seen.once(33).and_then(|()| s.set_raw(&mut ev.status)),
            "type" => seen.once(34).and_then(|()| s.set_raw(&mut ev.type_)),
            "secrets" => seen.once(35).and_then(|()| s.set_raw(&mut ev.secrets)),
            _ => s.skip_value().map(drop),
        }
    })?;
    s.whitespace();
    (s.pos == s.bytes.len()).then_some(())
}

/// The fields already set: serde refuses a struct with a repeated field, so the scanner gives
/// such an object to serde_json, which reports it.
#[derive(Default)]
struct Seen(u64);

impl Seen {
    fn once(&mut self, field: u32) -> Option<()> {
        let bit = 1u64 << field;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

/// A position in the text. Every method returns `None` to give up on the whole object.
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// serde_json refuses values nested deeper than this; so does the scanner, by giving up.
const MAX_NESTING: usize = 128;

impl<'a> Scanner<'a> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.whitespace();
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// Consumes `null` if it is next.
    fn null(&mut self) -> bool {
        let found = self.peek() == Some(b'n') && self.bytes[self.pos..].starts_with(b"null");
        if found {
            self.pos += 4;
        }
        found
    }

    /// Walks an object, calling `entry` with each key; `entry` must consume the value.
    fn object(&mut self, mut entry: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.sequence(b'{', b'}', |s, _| {
            let key = s.key()?;
            s.expect(b':')?;
            entry(s, key)
        })
    }

    /// Walks an array, calling `element` with each index; `element` must consume the value.
    fn array(&mut self, element: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.sequence(b'[', b']', element)
    }

    /// The commas and brackets of an object or array: `item` reads each member, by index.
    fn sequence(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.expect(open)?;
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        for index in 0.. {
            item(self, index)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b if b == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
        None
    }

    /// A key without escapes (an escaped key could spell a field's name: serde's business).
    fn key(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let (start, end, escaped) = self.string_span()?;
        (!escaped).then(|| &self.text[start..end])
    }

    /// Consumes a string, at its opening quote; returns where its contents start and end and
    /// whether it holds escapes. A raw control character (which JSON forbids) gives up.
    ///
    /// Strings here are short (names, addresses, timestamps), so they are searched eight bytes
    /// at a time for a quote, a backslash or a control character at once, with word
    /// arithmetic, rather than by a vector search that costs more to start than to run.
    fn string_span(&mut self) -> Option<(usize, usize, bool)> {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        /// High bit set in (at least) the lowest byte of `x` that is zero.
        fn zero_byte(x: u64) -> u64 {
            x.wrapping_sub(ONES) & !x & HIGHS
        }
        let start = self.pos + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            let found = match self.bytes.get(at..at + 8) {
                Some(word) => {
                    let x = u64::from_le_bytes(word.try_into().ok()?);
                    let special = zero_byte(x ^ (ONES * u64::from(b'"')))
                        | zero_byte(x ^ (ONES * u64::from(b'\\')))
                        | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
                    if special == 0 {
                        at += 8;
                        continue;
                    }
                    at + (special.trailing_zeros() / 8) as usize
                }
                None => at + self.bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?,
            };
            match self.bytes[found] {
                b'"' => {
                    self.pos = found + 1;
                    return Some((start, found, escaped));
                }
                b'\\' => {
                    escaped = true;
                    at = found + 2;
                }
                _ => return None,
            }
        }
    }

    /// A string, checked as serde_json checks it; unescaped by serde_json when it must be.
    fn string(&mut self) -> Option<Str<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let (start, end, escaped) = self.string_span()?;
        if escaped {
            let quoted = &self.text[start - 1..=end];
            return serde_json::from_str::<String>(quoted).ok().map(|s| Str(Cow::Owned(s)));
        }
        Some(Str(Cow::Borrowed(&self.text[start..end])))
    }

    /// Sets an optional field: `null` is `None`, anything else is read by `read`.
    fn set<T>(&mut self, field: &mut Option<T>, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<()> {
        *field = if self.null() { None } else { Some(read(self)?) };
        Some(())
    }

    /// Sets an optional struct field: `null` is `None`, anything else is read by `read` into a
    /// default value where the field lives (these structs are 150 bytes each; built aside and
    /// moved in, the copies showed in profiles).
    fn fill<T: Default>(
        &mut self,
        field: &mut Option<T>,
        read: impl FnOnce(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        if self.null() {
            *field = None;
            return Some(());
        }
        read(self, field.insert(T::default()))
    }

    fn set_str(&mut self, field: &mut Option<Str<'a>>) -> Option<()> {
        self.set(field, Self::string)
    }

    fn set_raw(&mut self, field: &mut Option<Raw<'a>>) -> Option<()> {
        self.set(field, |s| s.skip_value().map(|(start, end)| Raw::new(&s.text[start..end])))
    }

    fn ignored(&mut self) -> Option<IgnoredAny> {
        self.skip_value().map(|_| IgnoredAny)
    }

    /// An array of strings.
    fn strings(&mut self) -> Option<Vec<Str<'a>>> {
        let mut out = Vec::with_capacity(1);
        self.array(|s, _| {
            out.push(s.string()?);
            Some(())
        })?;
        Some(out)
    }

    fn user(&mut self, user: &mut UserInfo<'a>) -> Option<()> {
        let mut seen = Seen::default();
        self.object(|s, key| match key {
            "username" => seen.once(0).and_then(|()| s.set_str(&mut user.username)),
            "uid" => seen.once(1).and_then(|()| s.set_str(&mut user.uid)),
            "extra" => seen.once(2).and_then(|()| s.fill(&mut user.extra, Scanner::picked)),
            _ => s.skip_value().map(drop),
        })
    }

    fn object_ref(&mut self, o: &mut ObjectRef<'a>) -> Option<()> {
        let mut seen = Seen::default();
        self.object(|s, key| match key {
            "resource" => seen.once(0).and_then(|()| s.set_str(&mut o.resource)),
            "namespace" => seen.once(1).and_then(|()| s.set_str(&mut o.namespace)),
            "name" => seen.once(2).and_then(|()| s.set_str(&mut o.name)),
            "uid" => seen.once(3).and_then(|()| s.set_str(&mut o.uid)),
            "apiGroup" => seen.once(4).and_then(|()| s.set_str(&mut o.api_group)),
            "subresource" => seen.once(5).and_then(|()| s.set_str(&mut o.subresource)),
            _ => s.skip_value().map(drop),
        })
    }

    fn response_status(&mut self, status: &mut ResponseStatus) -> Option<()> {
        let mut seen = Seen::default();
        self.object(|s, key| match key {
            "code" => seen.once(0).and_then(|()| {
                status.code = s.http_code()?;
                Some(())
            }),
            _ => s.skip_value().map(drop),
        })
    }

    /// A status code: plain digits are read here, anything else as [`HttpCode`] reads it.
    fn http_code(&mut self) -> Option<HttpCode> {
        let (start, end) = self.skip_value()?;
        let digits = &self.bytes[start..end];
        let plain =
            digits.iter().all(u8::is_ascii_digit) && digits.len() <= 5 && (digits.len() == 1 || digits[0] != b'0');
        if plain {
            let n: u32 = self.text[start..end].parse().ok()?;
            return Some(HttpCode(u16::try_from(n).ok()));
        }
        serde_json::from_str(&self.text[start..end]).ok()
    }

    /// An object from which a few keys are picked; each picked value is read as [`FirstStr`]
    /// reads it, and a repeated key keeps its last value, as serde does with `pick_keys!`.
    fn picked<P: PickKeys<'a>>(&mut self, picked: &mut P) -> Option<()> {
        self.object(|s, key| match picked.slot(key) {
            Some(field) => {
                *field = s.first_str()?.0;
                Some(())
            }
            None => s.skip_value().map(drop),
        })
    }

    /// A value as [`FirstStr`] reads it: a string, the first string of an array, or nothing.
    fn first_str(&mut self) -> Option<FirstStr<'a>> {
        self.first_str_within(MAX_NESTING)
    }

    /// [`Scanner::first_str`] inside at most `depth` more arrays: the first element of an
    /// array is read the same way, and a line of `[[[[...` must not exhaust the stack.
    fn first_str_within(&mut self, depth: usize) -> Option<FirstStr<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|s| FirstStr(Some(s))),
            b'[' => {
                let depth = depth.checked_sub(1)?;
                let mut first = FirstStr(None);
                self.array(|s, index| {
                    if index == 0 {
                        first = s.first_str_within(depth)?;
                    } else {
                        s.skip_value()?;
                    }
                    Some(())
                })?;
                Some(first)
            }
            _ => self.skip_value().map(|_| FirstStr(None)),
        }
    }

    /// Jumps over one value, checking its strings are closed and its brackets balanced and of
    /// matching kinds; returns where it starts and ends.
    fn skip_value(&mut self) -> Option<(usize, usize)> {
        self.whitespace();
        let start = self.pos;
        match self.bytes.get(start)? {
            b'"' => {
                self.string_span()?;
            }
            b'{' | b'[' => self.skip_nested()?,
            _ => self.skip_scalar()?,
        }
        Some((start, self.pos))
    }

    /// A number, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Option<()> {
        let start = self.pos;
        while let Some(b) = self.bytes.get(self.pos) {
            if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
        let token = &self.bytes[start..self.pos];
        let number = token.first().is_some_and(|b| *b == b'-' || b.is_ascii_digit())
            && token.iter().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
        (number || matches!(token, b"true" | b"false" | b"null")).then_some(())
    }

    /// An object or array, at its opening bracket. Open brackets are kept as bits of a
    /// 128-bit stack (1 for `{`), which is also serde_json's nesting limit.
    fn skip_nested(&mut self) -> Option<()> {
        let mut open: u128 = 0;
        let mut depth = 0usize;
        loop {
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    self.string_span()?;
                    continue;
                }
                b @ (b'{' | b'[') => {
                    if depth == MAX_NESTING {
                        return None;
                    }
                    open = (open << 1) | u128::from(b == b'{');
                    depth += 1;
                }
                b @ (b'}' | b']') => {
                    if depth == 0 || (open & 1 == 1) != (b == b'}') {
                        return None;
                    }
                    open >>= 1;
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests;
