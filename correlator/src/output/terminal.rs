//! Text that is safe to print on a terminal.
//!
//! Evidence is written by whoever sent the requests: a user agent of `ESC [2K CR ESC [1A` would
//! erase the line above it (a finding's title) when the report is printed, and a bidi override
//! would show a name backwards. Every string from the evidence goes through [`escape`] before
//! the text report or a message on stderr shows it: control characters (C0, DEL, C1) and the
//! Unicode bidi controls are written as `\u{..}` escapes, so they are seen, never obeyed.

use std::borrow::Cow;

/// Whether `c` would act on a terminal (or reorder text) rather than show.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character (line breaks included) and bidi control escaped as
/// `\u{..}`; borrowed when there is none, which is nearly always.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A whole text of lines: as [`escape`], but line breaks stay.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_escaped() {
        assert_eq!(escape("kubectl/v1.30"), "kubectl/v1.30");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("\u{1b}[2K\r\u{1b}[1Aok\u{7}"), "\\u{1b}[2K\\u{d}\\u{1b}[1Aok\\u{7}");
        assert_eq!(escape("a\nb\tc\u{7f}\u{9b}"), "a\\u{a}b\\u{9}c\\u{7f}\\u{9b}");
        assert_eq!(escape("pod-\u{202e}txt.exe"), "pod-\\u{202e}txt.exe");
        assert_eq!(escape("é ü 中"), "é ü 中", "printable text beyond ASCII is kept");
    }

    #[test]
    fn a_text_keeps_its_lines_and_loses_its_controls() {
        assert_eq!(escape_lines("one\ntwo\u{1b}[1A\n"), "one\ntwo\\u{1b}[1A\n");
        assert!(matches!(escape_lines("one\ntwo\n"), Cow::Borrowed(_)));
    }
}
