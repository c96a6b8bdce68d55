//! What is left of a JSON document cut short (a copy that stopped, a download broken off, a
//! file truncated by a full disk): the whole elements of its list, the document closed after
//! the last of them. `analyze`, the aggregator's receivers and `replay` read such a document
//! the same way: what came before the cut, and a problem saying where it was cut.
//!
//! kubectl writes `apiVersion`, `items`, `kind`, `metadata` in that order, so a cut list has
//! lost its `kind`: the items still say theirs (or are audit events, recognised by their
//! fields).

/// The keys whose array is a document's list of events or objects, in the order looked for.
pub const LIST_KEYS: [&str; 3] = ["items", "records", "events"];

/// What is left of a document cut short: its text up to the last whole element of its list,
/// closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Salvaged {
    /// The closed document.
    pub text: Vec<u8>,
    /// The line (1-based) of the last whole element's end: what follows it is lost.
    pub kept_to_line: u64,
}

/// The whole elements of a JSON document cut short: a top-level array, or the list of a
/// top-level object (`items`, `records`, `events`), up to its last whole element, the brackets
/// still open closed after it. `None` when there is no such list or nothing of it is whole.
///
/// A byte scanner, not a parser: it follows strings (with their escapes) and nesting only, to
/// find where the list's elements end; the result is parsed again by the caller.
pub fn salvage(text: &[u8]) -> Option<Salvaged> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        /// Before the list: reading the top-level object's keys.
        Before,
        /// Inside the list, whose elements sit at this depth.
        InList(usize),
        /// The list closed: the document was cut after it.
        After,
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut state = State::Before;
    // The last key read at depth 1 (the top-level object's), and where the current string began.
    let mut key: Option<&[u8]> = None;
    let mut string_start = 0;
    let mut last_string: Option<&[u8]> = None;
    // Where the list's last whole element ends (exclusive), and where the list closed.
    let mut element_end: Option<usize> = None;
    let mut list_end: Option<usize> = None;
    let mut top_is_array = false;
    for (i, &b) in text.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    last_string = Some(&text[string_start..i]);
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b':' if depth == 1 => key = last_string.take(),
            b'{' | b'[' => {
                if depth == 0 {
                    top_is_array = b == b'[';
                    if top_is_array {
                        state = State::InList(1);
                    }
                } else if depth == 1
                    && b == b'['
                    && state == State::Before
                    && key.is_some_and(|k| LIST_KEYS.iter().any(|l| l.as_bytes() == k))
                {
                    state = State::InList(2);
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                match state {
                    State::InList(d) if depth == d => element_end = Some(i + 1),
                    State::InList(d) if depth + 1 == d => {
                        state = State::After;
                        list_end = Some(i + 1);
                    }
                    _ => {}
                }
            }
            b',' => {
                if let State::InList(d) = state {
                    if depth == d {
                        // A scalar element ends at its comma.
                        element_end = Some(element_end.map_or(i, |e| e.max(i)));
                    }
                }
            }
            _ => {}
        }
    }
    let (cut, closing): (usize, &[u8]) = match (state, list_end, element_end) {
        (State::After, Some(end), _) if !top_is_array => (end, b"}"),
        (State::InList(_), _, Some(end)) if top_is_array => (end, b"]"),
        (State::InList(_), _, Some(end)) => (end, b"]}"),
        _ => return None,
    };
    let mut closed = text[..cut].to_vec();
    closed.extend_from_slice(closing);
    serde_json::from_slice::<serde::de::IgnoredAny>(&closed).ok()?;
    let kept_to_line = text[..cut].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    Some(Salvaged { text: closed, kept_to_line })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_cut_documents_whole_elements_are_salvaged_and_closed() {
        // Brackets, braces and escaped quotes inside strings, nested lists inside elements.
        let head = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#;
        let elements = [r#"{"auditID":"a","x":"}],\""}"#, r#"{"auditID":"b","y":[1,{"z":2}]}"#, r#"{"auditID":"c"}"#];
        let full = format!("{head}\n{},\n{},\n{}\n],\"metadata\":{{}}}}", elements[0], elements[1], elements[2]);
        let mut ends = Vec::new();
        let mut at = head.len();
        for e in elements {
            at += 1 + e.len();
            ends.push(at);
            at += 1;
        }
        // Cut everywhere: what is kept is always JSON, and always the whole elements before the cut.
        for cut in 0..full.len() {
            let Some(s) = salvage(&full.as_bytes()[..cut]) else {
                assert!(cut < ends[0], "nothing salvaged from a cut at {cut}");
                continue;
            };
            let doc: Value = serde_json::from_slice(&s.text).unwrap();
            let ids: Vec<&str> =
                doc["items"].as_array().unwrap().iter().map(|e| e["auditID"].as_str().unwrap()).collect();
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(ids, ["a", "b", "c"][..whole], "cut at {cut}");
            assert_eq!(doc["kind"], "EventList");
        }
        let s = salvage(&full.as_bytes()[..ends[1] + 5]).unwrap();
        assert_eq!(s.kept_to_line, 3, "b ends on line 3");
        // A top-level array.
        let array = br#"[{"a":1},{"b":2},{"c""#;
        assert_eq!(salvage(array).unwrap().text, br#"[{"a":1},{"b":2}]"#);
        // Nothing whole, or no list: nothing to salvage.
        assert_eq!(salvage(br#"{"items":[{"cut"#), None);
        assert_eq!(salvage(br#"{"kind":"Pod","metadata":{"na"#), None);
        assert_eq!(salvage(br#"{"other":[{"a":1},{"b"#), None, "not a list of events or objects");
    }
}
