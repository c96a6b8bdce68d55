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
mod tests {
    use super::*;

    /// What serde_json reads, for comparing.
    fn serde(text: &str) -> Option<Event<'_>> {
        serde_json::from_str(text).ok()
    }

    fn same(text: &str) {
        let fast = event(text).unwrap_or_else(|| panic!("scanner gave up on {text}"));
        assert_eq!(format!("{fast:?}"), format!("{:?}", serde(text).unwrap()), "{text}");
    }

    #[test]
    fn reads_what_serde_reads() {
        same(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete",
            "requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"get",
            "user":{"username":"system:serviceaccount:shop:api","uid":"u","groups":["g"],
              "extra":{"authentication.kubernetes.io/credential-id":["JTI=j"],"authentication.kubernetes.io/pod-name":["p","q"],"authentication.kubernetes.io/pod-uid":"pu","other":["x"]}},
            "sourceIPs":["10.0.1.57", "10.0.0.1"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},
            "responseStatus":{"metadata":{},"code":200},"requestObject":{"huge":[1,2.5e3,-3,true,null,"}{]["],"nested":{"a":[{}]}},
            "requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z","annotations":{"authorization.k8s.io/decision":"allow","authentication.k8s.io/stale-token":"subject: x"}}"#,
        );
        same(
            r#"  { "auditID" : "with \"escapes\" \u00e9" , "user" : null, "sourceIPs": [], "timestamp": 1712345678901 }  "#,
        );
        same(
            r#"{"responseStatus":{"code":401.0},"impersonatedUser":{"username":"x"},"Category":"kube-audit","message":"m"}"#,
        );
        same(r#"{"responseStatus":{"code":"403"}}"#);
        same(r#"{"responseStatus":{"code":70000}}"#);
        same(
            r#"{"user":{"extra":{"authentication.kubernetes.io/pod-name":[["nested"],"x"],"authentication.kubernetes.io/pod-uid":[]}}}"#,
        );
        same(
            r#"{"user":{"extra":{"authentication.kubernetes.io/pod-name":7,"authentication.kubernetes.io/pod-uid":{"a":1}}}}"#,
        );
        same("{}");
    }

    #[test]
    fn gives_up_where_serde_must_decide() {
        for text in [
            r#"{"kind":"Event","kind":"Event"}"#, // repeated field
            r#"{"category":"a","Category":"b"}"#, // repeated through an alias
            r#"{"k\u0069nd":"Event"}"#,           // escaped key
            r#"{"kind":7}"#,                      // wrong type
            r#"{"sourceIPs":["10.0.0.1",null]}"#, // wrong element type
            r#"{"user":["as","a","sequence"]}"#,  // serde reads structs from arrays too
            r#"{"auditID":"a"} {"auditID":"b"}"#, // two objects
            r#"{"auditID":"a",}"#,                // trailing comma
            r#"{"auditID":"a""#,                  // cut
            r#"{"requestObject":{"a":[1,2}]}"#,   // brackets that do not match
            r#"{"requestObject":{"a":"unterminated}"#,
            "{\"auditID\":\"tab\there\"}", // raw control character
            r#"{"level":tru}"#,            // not a literal
            r#"{"responseStatus":{"code":200,"code":201}}"#,
        ] {
            assert!(event(text).is_none(), "{text}");
        }
        let deep = format!(r#"{{"requestObject":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(event(&deep).is_none());
        // Read values too: a picked key's first element is followed into arrays, not forever.
        let deep = format!(
            r#"{{"user":{{"extra":{{"authentication.kubernetes.io/pod-name":{}"p"{}}}}}}}"#,
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        assert!(event(&deep).is_none());
        assert!(serde(&deep).is_none(), "serde_json refuses it too (recursion limit)");
    }

    /// Every object in every sample, scenario and example file (and in the JSON held in their
    /// strings), as written, compact and pretty-printed, and cut or corrupted: wherever both
    /// readers read an object, they read the same [`Event`].
    #[test]
    fn reads_every_sample_object_as_serde_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["tests/data", "../../correlator/tests/golden", "../../examples"] {
            collect_files(&root.join(dir), &mut files);
        }
        let (mut read, mut gave_up, mut lenient) = (0usize, 0usize, 0usize);
        let mut check = |text: &str| match (event(text), serde(text)) {
            (Some(fast), Some(slow)) => {
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{text}");
                read += 1;
            }
            (None, _) => gave_up += 1,
            (Some(_), None) => lenient += 1,
        };
        for path in &files {
            let Ok(text) = decompressed(path) else { continue };
            let mut objects = Vec::new();
            for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
                objects.push(line.to_string());
            }
            for value in
                serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>().map_while(Result::ok)
            {
                walk_objects(&value, &mut objects);
            }
            for (i, object) in objects.iter().enumerate() {
                check(object);
                let trimmed = object.trim_end();
                if trimmed.len() > 2 && serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
                    for cut in [trimmed.len() / 2, trimmed.len() - 1] {
                        if let Some(prefix) = trimmed.get(..cut) {
                            assert!(event(prefix).is_none(), "cut at {cut}: {prefix}");
                        }
                    }
                    // One structural byte swapped in, at a place that varies from object to object.
                    let at = (i * 7919 + trimmed.len() * 31) % trimmed.len();
                    for byte in ["\"", "{", "}", "[", "]", ",", ":", "\\"] {
                        let mut bent = trimmed.to_string();
                        if bent.is_char_boundary(at) && bent.is_char_boundary(at + 1) {
                            bent.replace_range(at..=at, byte);
                            check(&bent);
                        }
                    }
                }
            }
        }
        assert!(files.len() > 50, "sample files found: {}", files.len());
        assert!(read > 1000, "objects read by both: {read}");
        // Corrupted objects mostly break the structure; the few the scanner still reads are
        // broken only inside values it does not read.
        assert!(lenient < gave_up, "read by the scanner only: {lenient}, given up: {gave_up}");
    }

    fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect_files(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    fn decompressed(path: &std::path::Path) -> std::io::Result<String> {
        use std::io::Read as _;
        let bytes = std::fs::read(path)?;
        let mut text = String::new();
        crate::decompress(crate::detect_compression(&bytes), &bytes[..])?.read_to_string(&mut text)?;
        Ok(text.trim_start_matches('\u{feff}').to_string())
    }

    /// Every object in `value`, compact and pretty, including JSON held in strings.
    fn walk_objects(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                out.push(serde_json::to_string(value).unwrap());
                out.push(serde_json::to_string_pretty(value).unwrap());
                map.values().for_each(|v| walk_objects(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk_objects(v, out)),
            serde_json::Value::String(s) if s.trim_start().starts_with('{') => {
                if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                    walk_objects(&inner, out);
                }
            }
            _ => {}
        }
    }

    /// A small deterministic generator (xorshift), so the differential test needs no crate and
    /// fails the same way every run.
    struct Gen {
        state: u64,
        /// Whether the event being made has what the scanner leaves to serde: a repeated or
        /// escaped key, or nesting near serde's limit.
        irregular: bool,
    }

    impl Gen {
        fn next(&mut self) -> u64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn pick<'x>(&mut self, items: &[&'x str]) -> &'x str {
            items[self.below(items.len())]
        }

        /// A JSON string literal, with escapes of every kind now and then.
        fn string(&mut self) -> String {
            let pieces = [
                "a",
                "Event",
                "kubelet/v1.33.2 (linux/amd64)",
                "10.0.1.7",
                "é",
                "日本",
                "😀",
                r#"\""#,
                r"\\",
                r"\/",
                r"\n",
                r"\t",
                r"\u00e9",
                r"\u0000",
                r"\ud83d\ude00",
                "system:serviceaccount:ns:sa",
                " ",
            ];
            let mut out = String::from("\"");
            for _ in 0..self.below(5) {
                out.push_str(self.pick(&pieces));
            }
            out.push('"');
            out
        }

        /// Any JSON value, nested up to `depth` more levels.
        fn value(&mut self, depth: usize) -> String {
            match if depth == 0 { self.below(4) } else { self.below(7) } {
                0 => self.string(),
                1 => self.pick(&["0", "-0", "1.5e3", "200", "-12", "18446744073709551616", "0.000001"]).to_string(),
                2 => self.pick(&["true", "false", "null"]).to_string(),
                3 => self.string(),
                4 | 5 => {
                    let n = self.below(4);
                    let items: Vec<String> = (0..n).map(|_| self.value(depth - 1)).collect();
                    format!("[{}]", items.join(self.pick(&[",", " , ", ",\n  "])))
                }
                _ => {
                    let n = self.below(4);
                    let members: Vec<String> = (0..n)
                        .map(|_| {
                            let key = self.string();
                            self.irregular |= key.contains('\\');
                            format!("{key}:{}", self.value(depth - 1))
                        })
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            }
        }

        /// A value for a key of `Event`: mostly of the type serde expects, sometimes not.
        fn field(&mut self, key: &str) -> String {
            if self.chance(8) {
                // Any type: serde reads a struct from an array, the scanner leaves that to it.
                self.irregular = true;
                return self.value(2);
            }
            match key {
                "user" | "impersonatedUser" => {
                    let extra = format!(
                        r#"{{"authentication.kubernetes.io/pod-name":[{}],"authentication.kubernetes.io/credential-id":[{}],"x":{}}}"#,
                        self.string(),
                        self.string(),
                        self.value(2)
                    );
                    format!(
                        r#"{{"username":{},"uid":{},"groups":[{}],"extra":{extra}}}"#,
                        self.string(),
                        self.string(),
                        self.string()
                    )
                }
                "sourceIPs" => format!("[{},{}]", self.string(), self.string()),
                "objectRef" => format!(
                    r#"{{"resource":{},"namespace":{},"name":{},"subresource":{},"apiGroup":{}}}"#,
                    self.string(),
                    self.string(),
                    self.string(),
                    self.string(),
                    self.string()
                ),
                "responseStatus" => {
                    format!(r#"{{"metadata":{{}},"code":{}}}"#, self.pick(&["200", "403", "401", "null"]))
                }
                "annotations" => {
                    format!(r#"{{"authorization.k8s.io/decision":{},"other":{}}}"#, self.string(), self.string())
                }
                "requestObject" | "responseObject" | "metadata" | "spec" | "status" => {
                    // Deep nesting now and then, around serde_json's limit of 128.
                    if self.chance(5) {
                        self.irregular = true;
                        let depth = 120 + self.below(16);
                        format!("{}{}{}", "[".repeat(depth), self.value(1), "]".repeat(depth))
                    } else {
                        self.value(4)
                    }
                }
                _ => self.string(),
            }
        }

        /// An audit event as its text: keys of `Event` and others, in any order, sometimes
        /// repeated or escaped, with any whitespace.
        fn event(&mut self) -> String {
            let keys = [
                "kind",
                "apiVersion",
                "level",
                "auditID",
                "stage",
                "requestURI",
                "verb",
                "user",
                "impersonatedUser",
                "sourceIPs",
                "userAgent",
                "objectRef",
                "responseStatus",
                "requestObject",
                "responseObject",
                "requestReceivedTimestamp",
                "stageTimestamp",
                "annotations",
                "metadata",
                "spec",
                "status",
                "unknownField",
                "Category",
                "category",
            ];
            let mut members = Vec::new();
            for _ in 0..self.below(12) + 1 {
                let key = self.pick(&keys);
                let written = if self.chance(3) { key.replacen('e', r"\u0065", 1) } else { key.to_string() };
                self.irregular |= written != key;
                members.push(format!("\"{written}\"{}{}", self.pick(&[":", " : ", ":\n"]), self.field(key)));
                if self.chance(3) {
                    // A repeated key: serde refuses a repeated field.
                    self.irregular = true;
                    let again = members[self.below(members.len())].clone();
                    members.push(again);
                }
            }
            format!(
                "{}{{{}}}{}",
                self.pick(&["", " ", "\t"]),
                members.join(self.pick(&[",", ", ", ",\n"])),
                self.pick(&["", " ", "\n"])
            )
        }
    }

    /// Generated events with repeated and escaped keys, escapes of every kind, wrong types and
    /// deep nesting: whatever the scanner reads, serde_json reads the same; where serde_json
    /// reads an event without repeated or escaped keys, the scanner reads it too (it gives up
    /// only where serde must decide); and no cut event is ever read.
    #[test]
    fn reads_generated_events_as_serde_does() {
        let mut g = Gen { state: 0x9e37_79b9_7f4a_7c15, irregular: false };
        let (mut both, mut gave_up, mut refused) = (0, 0, 0);
        for i in 0..20_000 {
            g.irregular = false;
            let text = g.event();
            let slow = serde(&text);
            match (event(&text), &slow) {
                (Some(fast), Some(slow)) => {
                    assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "event {i}: {text}");
                    both += 1;
                }
                (Some(_), None) => panic!("event {i}: the scanner read what serde_json refuses: {text}"),
                (None, Some(_)) => gave_up += 1,
                (None, None) => refused += 1,
            }
            // Near serde_json's nesting limit the scanner may give up a level early: serde then
            // decides, which is slower but the same answer.
            if slow.is_some() && !g.irregular {
                assert!(event(&text).is_some(), "event {i}: gave up on a plain event serde reads: {text}");
            }
            let cut = &text[..text.trim_end().len() - 1];
            if let Some(cut) = text.get(..cut.len()) {
                assert!(event(cut).is_none(), "event {i}: read a cut event: {cut}");
            }
        }
        assert!(
            both > 2_000 && gave_up > 100 && refused > 100,
            "read by both {both}, given up {gave_up}, refused {refused}"
        );
    }

    #[test]
    fn checks_only_the_structure_of_what_it_skips() {
        // serde_json refuses the `01` inside the request body; the event itself is intact.
        let text = r#"{"auditID":"a","requestObject":{"replicas":01}}"#;
        assert!(serde(text).is_none());
        assert_eq!(event(text).unwrap().request_object.unwrap().get(), r#"{"replicas":01}"#);
    }
}
