//! How JSON is laid out in a file: one value per line, or one document spanning lines.
//!
//! Decided from the first line's content alone (never the file name), so that a driver can
//! stream JSON-lines files line by line and read only real documents whole.

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

/// Whether `line` holds one complete JSON object or array (syntax beyond brackets and strings
/// is not checked: the decoder reports that).
fn is_complete_value(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    if !matches!(line.first(), Some(b'{' | b'[')) {
        return false;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
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
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = match depth.checked_sub(1) {
                    Some(d) => d,
                    None => return false,
                };
                if depth == 0 {
                    // Closed: a whole value, whatever follows (a second value on the same line
                    // is still line-oriented input).
                    return true;
                }
            }
            _ => {}
        }
    }
    false
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

    #[test]
    fn strips_only_a_leading_bom() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(strip_bom(b"{}\xEF\xBB\xBF"), b"{}\xEF\xBB\xBF");
    }
}
