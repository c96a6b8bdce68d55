//! The entry point: one JSON value (a line, or a whole document) of any supported shape in,
//! observations, problems and counts out.
//!
//! A value is recognised by its content: a top-level array is walked element by element; each
//! object is read once into [`Event`] and dispatched on the keys it has (`protoPayload`: GKE;
//! `records` / `properties` / `log_s`: AKS; `events` / `message`: CloudWatch; `items`: a
//! webhook `EventList` or a kubectl List; audit fields: an audit event; `kind`: a Kubernetes
//! object). Envelopes that hold the event as a JSON *string* are decoded recursively, so an
//! EventList inside an AKS record works too.
//!
//! Bounds: serde_json refuses nesting deeper than 128 inside one parse; arrays, lists and
//! embedded strings are followed at most [`MAX_DEPTH`] levels deep; a syntax error in an array
//! keeps the records read before it, and a document cut short the whole entries of its list
//! ([`crate::salvage`]). Line length and batch size are the caller's to bound.

use std::cell::Cell;
use std::fmt;

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use tokentrail_proto::Timestamp;

use crate::audit_event::Event;
use crate::decoded::{Decoded, Format, Place};
use crate::json::{describe, Raw};
use crate::layout::strip_bom;
use crate::normalize::{self, Origin};
use crate::salvage::salvage;
use crate::{inventory, providers, scan};

/// How many arrays, lists and embedded JSON strings deep a value is followed.
pub const MAX_DEPTH: u8 = 8;

/// Decodes one JSON value (a line, or a whole document) of any supported shape and appends
/// what it learned.
///
/// Never panics on any input; bounded (line length / nesting / batch size limits are the
/// caller's + serde_json's recursion limit). A leading byte-order mark is skipped. Several
/// values separated by whitespace (a JSON-lines text handed over whole) are all decoded; an
/// empty or all-whitespace value yields nothing.
pub fn decode_value(bytes: &[u8], out: &mut Decoded) {
    let bytes = strip_bom(bytes);
    let lines = LineIndex::new(bytes);
    let ctx = Ctx { lines: Some(&lines), ..Ctx::default() };
    decode_bytes(bytes, &ctx, out);
}

/// Decodes one line of a JSON-lines text, as [`decode_value`] does, for a caller that has
/// already split the text at line breaks: the value cannot span lines, so no problem is placed
/// at a line inside it, and the line is not searched for line breaks again.
pub fn decode_line(bytes: &[u8], out: &mut Decoded) {
    decode_bytes(strip_bom(bytes), &Ctx::default(), out);
}

/// Decodes a JSON value converted from another notation (a YAML document): it has no lines of
/// its own, so every problem is placed at `place`, the document's line.
pub(crate) fn decode_converted(bytes: &[u8], place: Place, out: &mut Decoded) {
    decode_bytes(bytes, &Ctx { fixed: place, ..Ctx::default() }, out);
}

/// Where we are while decoding: how deep, inside which envelope or list, and how to place
/// problems.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ctx<'c> {
    depth: u8,
    /// The envelope audit events found here came in (EventList, EKS, AKS).
    envelope: Option<Format>,
    /// Inside a kubectl List: the kind its items have when they do not say (`Pod` for a
    /// `PodList`), if any.
    list: Option<Option<&'c str>>,
    /// A time from the envelope, for events that carry none of their own.
    fallback_time: Option<Timestamp>,
    /// Line positions of the top-level value; `None` inside an embedded string, where every
    /// problem is placed at the enclosing record (`fixed`).
    lines: Option<&'c LineIndex<'c>>,
    fixed: Place,
    /// Index inside the innermost array.
    record: Option<usize>,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("depth", &self.depth).field("envelope", &self.envelope).finish_non_exhaustive()
    }
}

impl<'c> Ctx<'c> {
    /// Where `slice` (a part of the value being decoded) starts.
    fn place_of(&self, slice: &[u8]) -> Place {
        match self.lines {
            Some(lines) => Place { line: lines.line_of(slice), record: self.record },
            None => Place { line: self.fixed.line, record: self.record.or(self.fixed.record) },
        }
    }

    /// Where a JSON error found while parsing `slice` is.
    fn error_place(&self, slice: &[u8], e: &serde_json::Error) -> Place {
        let mut place = self.place_of(slice);
        if self.lines.is_some() {
            place.line = place.line.map(|l| l + e.line().saturating_sub(1));
        }
        place
    }

    fn deeper(&self) -> Ctx<'c> {
        Ctx { depth: self.depth.saturating_add(1), ..*self }
    }
}

/// Decodes a JSON text embedded as a string in an envelope (`properties.log`, `message`,
/// `log_s`): problems inside it are placed at the enclosing record.
pub(crate) fn embedded(
    text: &str,
    ctx: &Ctx<'_>,
    place: Place,
    envelope: Format,
    fallback_time: Option<Timestamp>,
    out: &mut Decoded,
) {
    let inner = Ctx {
        depth: ctx.depth.saturating_add(1),
        envelope: Some(envelope),
        list: None,
        fallback_time,
        lines: None,
        fixed: place,
        record: None,
    };
    decode_bytes(text.as_bytes(), &inner, out);
}

fn decode_bytes(bytes: &[u8], ctx: &Ctx<'_>, out: &mut Decoded) {
    if ctx.depth > MAX_DEPTH {
        out.problem(
            ctx.place_of(bytes),
            format!("value nested more than {MAX_DEPTH} levels deep (arrays, lists, embedded json): skipped"),
        );
        return;
    }
    let bytes = strip_bom(bytes);
    let Some(start) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return };
    let bytes = &bytes[start..];
    match bytes[0] {
        b'[' => decode_array(bytes, ctx, out),
        b'{' => decode_objects(bytes, ctx, out),
        _ => {
            out.problem(ctx.place_of(bytes), "not json: expected an object or an array (one per line, or one document)")
        }
    }
}

/// One or more objects separated by whitespace: one object, the usual case, by the fast
/// [`scan`] reader when it can; otherwise by serde_json.
fn decode_objects(bytes: &[u8], ctx: &Ctx<'_>, out: &mut Decoded) {
    // Checking the UTF-8 of the whole record at once is much cheaper than serde_json checking
    // each string in it on its own, which it must when reading bytes; invalid UTF-8 is rare
    // and still read (and reported) the slow way.
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut ev = Event::default();
            match scan::read_event(text, &mut ev) {
                Some(()) => dispatch(&ev, ctx, ctx.place_of(bytes), out),
                None => decode_stream(serde_json::Deserializer::from_str(text).into_iter(), bytes, ctx, out),
            }
        }
        Err(_) => decode_stream(serde_json::Deserializer::from_slice(bytes).into_iter(), bytes, ctx, out),
    }
}

fn decode_stream<'de, R: serde_json::de::Read<'de>>(
    mut stream: serde_json::StreamDeserializer<'de, R, Event<'de>>,
    bytes: &'de [u8],
    ctx: &Ctx<'_>,
    out: &mut Decoded,
) {
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(ev)) => {
                let rest = bytes.get(offset..).unwrap_or_default();
                let skip = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
                let place = ctx.place_of(&rest[skip..]);
                dispatch(&ev, ctx, place, out);
            }
            Some(Err(e)) => {
                // A whole document cut short (its first value ends in EOF): what came before
                // the cut, as the rest of an array's elements would be.
                if e.is_eof() && offset == 0 && ctx.depth == 0 && ctx.lines.is_some() {
                    if let Some(kept) = salvage(bytes) {
                        let lines = LineIndex::new(&kept.text);
                        decode_bytes(&kept.text, &Ctx { lines: Some(&lines), ..*ctx }, out);
                        out.problem(
                            ctx.error_place(bytes, &e),
                            format!(
                                "the document is cut short ({}): read up to line {}, its last whole entry; the \
                                 rest is lost",
                                describe(&e),
                                kept.kept_to_line
                            ),
                        );
                        break;
                    }
                }
                out.problem(ctx.error_place(bytes, &e), format!("unreadable json record: {}", describe(&e)));
                // The stream cannot resynchronise inside a broken value.
                break;
            }
        }
    }
}

/// A JSON array: every element is decoded on its own, as it is parsed.
pub(crate) fn decode_array(bytes: &[u8], ctx: &Ctx<'_>, out: &mut Decoded) {
    struct Elements<'v, 'c, 's> {
        ctx: &'v Ctx<'c>,
        out: &'s mut Decoded,
    }
    impl<'de> Visitor<'de> for Elements<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut index = 0usize;
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                let element = Ctx { record: Some(index), ..self.ctx.deeper() };
                decode_bytes(raw.get().as_bytes(), &element, self.out);
                index += 1;
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = de.deserialize_seq(Elements { ctx, out: &mut *out }).and_then(|()| de.end());
    if let Err(e) = result {
        out.problem(
            ctx.error_place(bytes, &e),
            format!("unreadable json array (records before this point were read): {}", describe(&e)),
        );
    }
}

/// Decodes an array held in a field (`items`, `records`, `events`).
fn field_array(raw: Raw<'_>, field: &str, ctx: &Ctx<'_>, place: Place, out: &mut Decoded) {
    let bytes = raw.get().as_bytes();
    if bytes.first() == Some(&b'[') {
        decode_array(bytes, ctx, out);
    } else {
        out.problem(place, format!("`{field}` is not an array: record skipped"));
    }
}

/// Decides what one object is and hands it to the decoder for that shape.
fn dispatch(ev: &Event<'_>, ctx: &Ctx<'_>, place: Place, out: &mut Decoded) {
    let within = Ctx { fixed: place, ..*ctx };
    // Provider envelopes never have a `kind`; a core/v1 Event does, and has a `message` too.
    let envelope = ev.kind.is_none();
    if let Some(payload) = ev.proto_payload.filter(|_| envelope) {
        providers::gke_entry(ev, payload, place, out);
    } else if let Some(records) = ev.records.filter(|_| envelope) {
        let inner = Ctx { envelope: Some(Format::AksDiagnostic), ..within.deeper() };
        field_array(records, "records", &inner, place, out);
    } else if envelope && (ev.log_s.is_some() || ev.properties.is_some()) {
        providers::aks_record(ev, &within, place, out);
    } else if let Some(events) = ev.events.filter(|_| envelope) {
        let inner = Ctx { envelope: Some(Format::EksCloudWatch), ..within.deeper() };
        field_array(events, "events", &inner, place, out);
    } else if let Some(message) = ev.message.filter(|_| envelope) {
        providers::cloudwatch_event(ev, message, &within, place, out);
    } else if let Some(items) = ev.items {
        list(ev, items, &within, place, out);
    } else if ev.is_audit_event() || (ev.kind.is_none() && ctx.envelope == Some(Format::EventList)) {
        let origin =
            Origin { format: ctx.envelope.unwrap_or(Format::AuditEvent), fallback_time: ctx.fallback_time, place };
        normalize::audit_event(ev, &origin, out);
    } else if let Some(kind) =
        ev.kind.as_deref().or(ctx.list.flatten()).filter(|_| ev.api_version.is_some() || ctx.list.is_some())
    {
        let format = if ctx.list.is_some() { Format::KubectlList } else { Format::KubernetesObject };
        inventory::object(ev, kind, format, place, out);
    } else {
        out.problem(
            place,
            "unrecognised record: expected an audit event, an event list, an eks, aks or gke export, or a kubernetes object",
        );
    }
}

/// A webhook `EventList` (items are audit events) or a kubectl List (`List`, `PodList`, ...).
fn list(ev: &Event<'_>, items: Raw<'_>, ctx: &Ctx<'_>, place: Place, out: &mut Decoded) {
    let kind = ev.kind.as_deref().unwrap_or("");
    let audit_api = ev.api_version.as_deref().is_none_or(|v| v.starts_with("audit.k8s.io/"));
    let inner = if kind == "EventList" && audit_api {
        Ctx { envelope: Some(Format::EventList), list: None, ..ctx.deeper() }
    } else {
        // `List` items always say their kind; typed lists' items (`PodList` from the API) may not.
        let hint = kind.strip_suffix("List").filter(|k| !k.is_empty());
        Ctx { list: Some(hint), ..ctx.deeper() }
    };
    field_array(items, "items", &inner, place, out);
}

/// Line numbers of positions inside the top-level value, counted incrementally (records are
/// visited in order, so a whole document costs one pass).
pub(crate) struct LineIndex<'b> {
    base: &'b [u8],
    multiline: bool,
    cursor: Cell<(usize, usize)>,
}

impl<'b> LineIndex<'b> {
    fn new(base: &'b [u8]) -> LineIndex<'b> {
        let body = base.trim_ascii_end();
        LineIndex { base, multiline: memchr::memchr(b'\n', body).is_some(), cursor: Cell::new((0, 1)) }
    }

    /// The 1-based line where `slice` starts, if it lies inside the value and the value spans
    /// lines.
    fn line_of(&self, slice: &[u8]) -> Option<usize> {
        if !self.multiline {
            return None;
        }
        let offset =
            (slice.as_ptr() as usize).checked_sub(self.base.as_ptr() as usize).filter(|&o| o <= self.base.len())?;
        let (mut pos, mut line) = self.cursor.get();
        if offset < pos {
            (pos, line) = (0, 1);
        }
        line += memchr::memchr_iter(b'\n', self.base.get(pos..offset)?).count();
        self.cursor.set((offset, line));
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_incrementally_and_only_for_documents() {
        let text = b"{\n  \"a\": [\n    1,\n    2\n  ]\n}\n";
        let index = LineIndex::new(text);
        let at = |needle: u8| &text[text.iter().position(|&b| b == needle).unwrap()..];
        assert_eq!(index.line_of(at(b'1')), Some(3));
        assert_eq!(index.line_of(at(b'2')), Some(4));
        assert_eq!(index.line_of(&text[..]), Some(1), "seeking back restarts the count");
        assert_eq!(index.line_of(b"elsewhere"), None);
        let one_line = b"{\"a\":1}\n";
        assert_eq!(LineIndex::new(one_line).line_of(one_line), None);
    }

    #[test]
    fn list_kinds_choose_the_item_decoder() {
        let mut out = Decoded::new();
        let event_list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","requestReceivedTimestamp":"2026-03-01T10:00:00Z","user":{"username":"u"}}]}"#;
        decode_value(event_list.as_bytes(), &mut out);
        assert_eq!(out.stats.by_format.get(&Format::EventList), Some(&1));
        let node_list = r#"{"kind":"NodeList","apiVersion":"v1","items":[{"metadata":{"name":"n","creationTimestamp":"2026-03-01T10:00:00Z"}}]}"#;
        decode_value(node_list.as_bytes(), &mut out);
        assert_eq!(out.stats.by_format.get(&Format::KubectlList), Some(&1));
        assert!(out.problems.is_empty(), "{:?}", out.problems);
    }

    #[test]
    fn a_document_cut_short_gives_its_whole_entries_and_says_where_it_was_cut() {
        // As kubectl writes a list (`kind` after `items`), cut inside the third pod.
        let pod = |name: &str, ip: &str| {
            format!(
                r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"shop","uid":"uid-{name}","creationTimestamp":"2026-03-01T10:00:00Z"}},"spec":{{"nodeName":"n1","serviceAccountName":"web"}},"status":{{"podIP":"{ip}"}}}}"#
            )
        };
        let text = format!(
            "{{\n\"apiVersion\": \"v1\",\n\"items\": [\n{},\n{},\n{}\n],\n\"kind\": \"List\"\n}}\n",
            pod("a", "10.0.0.1"),
            pod("b", "10.0.0.2"),
            pod("c", "10.0.0.3")
        );
        let cut = &text[..text.find("uid-c").unwrap()];
        let mut out = Decoded::new();
        decode_value(cut.as_bytes(), &mut out);
        let names: Vec<String> = out
            .observations
            .iter()
            .filter_map(|o| match o {
                tokentrail_proto::observation::Observation::Pod(p) => Some(p.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert!(out.problems[0].message.starts_with("the document is cut short"), "{:?}", out.problems);
        assert!(out.problems[0].message.contains("read up to line 5"), "{:?}", out.problems);

        // The whole document: the three pods, no problem.
        let mut whole = Decoded::new();
        decode_value(text.as_bytes(), &mut whole);
        assert_eq!(whole.observations.len(), 3);
        assert!(whole.problems.is_empty());
    }
}
