//! How JSON is laid out in a file: one value per line, or one document spanning lines.
//!
//! Decided from content alone (never the file name), so that a driver can stream JSON-lines
//! files line by line and read only real documents whole. A piece of a log cut out by
//! `tail -c` or `split -b` starts and ends mid-line: [`detect_layout_in`] looks past a first
//! line that is cut, blank or garbage, and [`is_whole_line`] tells a driver which lines at the
//! edges of a piece are cut.

/// How the values of a (decompressed) file are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One JSON value per line (audit log files, CloudWatch message exports, a one-line
    /// `{"records":[...]}` batch): decode each line on its own.
    Lines,
    /// One JSON document spanning lines (pretty-printed `EventList`, `kubectl get -o json`,
    /// AKS exports, `gcloud logging read --format=json`, `aws logs filter-log-events`): decode
    /// the whole text at once.
    Document,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The bytes without a leading UTF-8 byte-order mark (AKS exports start with one).
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Given the first line of a (decompressed, BOM-stripped) file, whether the file is one JSON
/// value per line (`Layout::Lines`) or one JSON document spanning lines (`Layout::Document`:
/// pretty-printed EventList, kubectl List dump, AKS `{"records":[...]}` export, a JSON array from
/// `gcloud logging read --format=json`, `aws logs filter-log-events` output...). Detected from
/// content, never the file name.
///
/// The first line is a whole value when it opens an object or array and closes it again
/// (brackets counted outside strings). Anything else, including an empty first line, is a
/// document: [`decode_value`](crate::decode_value) also reads several values in one text, so
/// that choice loses nothing but streaming.
pub fn detect_layout(first_line: &[u8]) -> Layout {
    if is_complete_value(strip_bom(first_line)) {
        Layout::Lines
    } else {
        Layout::Document
    }
}

/// Given the start of a (decompressed, BOM-stripped) text, whether it is one JSON value per
/// line or one document spanning lines. `complete` says whether `head` is the whole text;
/// otherwise its last, unfinished line is not looked at, and a head without any line break is
/// one long value on a line of its own (a pretty-printed document starts with a short line).
///
/// The first non-blank line decides when it holds a complete value ([`Layout::Lines`]).
/// Otherwise (a first line cut by `tail -c` or `split -b`, garbage, or the opening `{` of a
/// pretty-printed document) the other lines decide: JSON lines when most of them are whole
/// values, a document otherwise (pretty-printed lines are `"key": value,` and brackets).
pub fn detect_layout_in(head: &[u8], complete: bool) -> Layout {
    let head = strip_bom(head);
    let looked_at = if complete {
        head
    } else {
        match memchr::memrchr(b'\n', head) {
            Some(end) => &head[..end],
            None => return Layout::Lines,
        }
    };
    let mut lines = looked_at.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else { return Layout::Document };
    if is_complete_value(first) {
        return Layout::Lines;
    }
    let (mut whole, mut other) = (0usize, 0usize);
    for line in lines {
        if is_whole_line(line) {
            whole += 1;
        } else {
            other += 1;
        }
    }
    if whole > other {
        Layout::Lines
    } else {
        Layout::Document
    }
}

/// Whether `line` is exactly one or more complete JSON objects or arrays, nothing before or
/// after them: a line a JSON-lines writer wrote whole. The first or last line of a piece cut
/// out of a log is not (syntax beyond brackets and strings is not checked: the decoder reports
/// that).
pub fn is_whole_line(line: &[u8]) -> bool {
    shape(line) == Shape::Whole
}

/// Whether `line` holds one complete JSON object or array, whatever follows it (a second value
/// on the same line is still line-oriented input).
fn is_complete_value(line: &[u8]) -> bool {
    matches!(shape(line), Shape::Whole | Shape::ClosedEarly)
}

/// How the bracketed values of one line begin and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Does not start with `{` or `[`, or a bracket closes what was never opened.
    NotAValue,
    /// A value opens and does not close on this line.
    Open,
    /// A value closes, and something other than another value follows it.
    ClosedEarly,
    /// Values, each closed, separated by nothing but whitespace.
    Whole,
}

fn shape(line: &[u8]) -> Shape {
    let line = line.trim_ascii();
    if !matches!(line.first(), Some(b'{' | b'[')) {
        return Shape::NotAValue;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut closed = false;
    for &b in line {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if depth == 0 && closed && !b.is_ascii_whitespace() && !matches!(b, b'{' | b'[') {
            return Shape::ClosedEarly;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = match depth.checked_sub(1) {
                    Some(d) => d,
                    None => return if closed { Shape::ClosedEarly } else { Shape::NotAValue },
                };
                closed |= depth == 0;
            }
            _ => {}
        }
    }
    match (closed, depth) {
        (true, 0) => Shape::Whole,
        // A second value opened on the line and left open: the first one still closed.
        (true, _) => Shape::ClosedEarly,
        (false, _) => Shape::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_line() {
        assert_eq!(detect_layout(br#"{"kind":"Event","auditID":"a"}"#), Layout::Lines);
        assert_eq!(detect_layout(b"{\"records\": [{\"a\": \"}{\"}]}\r\n"), Layout::Lines);
        assert_eq!(detect_layout(b"\xEF\xBB\xBF{\"a\":1}"), Layout::Lines);
        assert_eq!(detect_layout(br#"[{"a":1},{"b":"]"}]"#), Layout::Lines);
    }

    #[test]
    fn documents_spanning_lines() {
        for first in
            [&b"{"[..], b"[", b"\xEF\xBB\xBF{", b"", b"  ", b"{\"records\": [{ \"operationName\": \"x\",", b"garbage"]
        {
            assert_eq!(detect_layout(first), Layout::Document, "{:?}", String::from_utf8_lossy(first));
        }
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        assert_eq!(detect_layout(br#"{"log":"{\"kind\":\"Event\"}"}"#), Layout::Lines);
        assert_eq!(detect_layout(br#"{"log":"\\"}"#), Layout::Lines);
        assert_eq!(detect_layout(br#"{"log":"\"}"#), Layout::Document);
    }

    const EVENT: &str = r#"{"kind":"Event","auditID":"a","user":{"username":"u","groups":["g"]},"verb":"get"}"#;

    /// `n` audit events, one per line, and the same text with `first` in front.
    fn lines_after(first: &str, n: usize) -> String {
        let mut text = String::from(first);
        for _ in 0..n {
            text.push_str(EVENT);
            text.push('\n');
        }
        text
    }

    #[test]
    fn json_lines_are_recognised_whatever_the_first_line() {
        let cut_mid_string = format!("{}\n", &EVENT[30..]);
        let cut_at_nested_object = format!("{}\n", &EVENT[EVENT.find("{\"username").unwrap()..]);
        let cut_in_string_at_brace = "{x y z\": 3}\n";
        for first in
            ["", "\n", "   \n", "\n\n", "garbage\n", &cut_mid_string, &cut_at_nested_object, cut_in_string_at_brace]
        {
            let text = lines_after(first, 3);
            assert_eq!(detect_layout_in(text.as_bytes(), true), Layout::Lines, "first line {first:?}");
            // Cut short by the peek window, mid-line.
            let head = &text.as_bytes()[..text.len() - 10];
            assert_eq!(detect_layout_in(head, false), Layout::Lines, "first line {first:?}, cut head");
        }
        assert_eq!(detect_layout_in(lines_after("x\n", 1).as_bytes(), true), Layout::Lines);
    }

    #[test]
    fn pretty_printed_documents_stay_documents() {
        let docs = [
            "{\n  \"kind\": \"EventList\",\n  \"items\": [\n    {\n      \"a\": 1\n    }\n  ]\n}\n",
            "\n\n[\n  {\n    \"insertId\": \"x\"\n  }\n]\n",
            "[\n{\"a\":1},\n{\"b\":2}\n]\n",
            "{\"items\":[\n{\"a\":1},\n{\"b\":2}\n]}\n",
            "",
            "\n \n",
        ];
        for doc in docs {
            assert_eq!(detect_layout_in(doc.as_bytes(), true), Layout::Document, "{doc:?}");
        }
        // A piece of a pretty-printed document has no whole line either.
        let piece = "      \"verb\": \"get\",\n      \"user\": {\n        \"username\": \"u\"\n      },\n";
        assert_eq!(detect_layout_in(piece.as_bytes(), true), Layout::Document);
    }

    #[test]
    fn a_head_without_a_line_break_is_one_long_line_unless_it_is_everything() {
        assert_eq!(detect_layout_in(b"{\"a\": [1, 2, 3", false), Layout::Lines);
        assert_eq!(detect_layout_in(b"{\"a\": [1, 2, 3", true), Layout::Document);
        assert_eq!(detect_layout_in(b"\xEF\xBB\xBF{\"a\":1}", true), Layout::Lines);
    }

    #[test]
    fn whole_lines_are_values_with_nothing_around_them() {
        for line in [EVENT, "[1,2]", "{} {}", " {\"a\":\"}\"}\r", "[{\"a\":1}]"] {
            assert!(is_whole_line(line.as_bytes()), "{line:?}");
        }
        let cut_at_nested_object = &EVENT[EVENT.find("{\"username").unwrap()..];
        for line in [&EVENT[1..], &EVENT[..EVENT.len() - 1], cut_at_nested_object, "", "x", "{} x", "{}]", "{} {", "}"]
        {
            assert!(!is_whole_line(line.as_bytes()), "{line:?}");
        }
    }

    #[test]
    fn strips_only_a_leading_bom() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(strip_bom(b"{}\xEF\xBB\xBF"), b"{}\xEF\xBB\xBF");
    }
}
