//! What the components' configurations share, below every component crate: a [`Problem`] (what
//! is wrong, at which key path), the reader that reports every problem of a document at once
//! ([`check`]), the one [`duration`] grammar of every flag and configuration file, and the one
//! [`kafka`] security section of every Kafka client.
//!
//! Reading files, `--check-config` and laying flags over a file are the `tokentrail` binary's
//! start-up (`cli/src/startup/config_file.rs`); the components validate their own settings into
//! [`Problem`]s.
//!
//! serde stops at the first error. To go on, [`parse`] records the error with its path
//! (`serde_path_to_error`), removes the offending key from the document and deserializes again,
//! until the rest deserializes: a wrong type or an unknown key is one problem each, however many
//! there are. A key that is missing cannot be removed: its object is removed instead, and the
//! consequential "missing" reports about removed objects are not repeated. Checks serde cannot
//! express (an empty topic name, two settings that exclude each other) then run on what is left,
//! through [`check`], and problems under a removed key are dropped as already reported.

#![deny(missing_docs)]

pub mod duration;
pub mod kafka;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path, e.g. `kafka.audit_topics[0].topic`; empty for the whole document.
    pub path: String,
    /// What is wrong, in lowercase.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A document can hold at most this many structural problems before reading stops (each one
/// costs a deserialization of the document; configuration files are small).
const MAX_PROBLEMS: usize = 100;

/// Deserializes a JSON document (JSON is YAML, so a ConfigMap holds it as written), collecting
/// every structural problem. Returns the value deserialized from what remained after removing
/// the offending keys (`None` when nothing usable remained), the problems, and the removed
/// paths.
pub fn parse<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<Problem>, Vec<String>) {
    match document(text) {
        Ok(document) => parse_value(document),
        Err(problem) => (None, vec![problem], Vec::new()),
    }
}

/// The JSON document in `text`, or the syntax error as a problem naming its line and column.
pub fn document(text: &str) -> Result<Value, Problem> {
    serde_json::from_str(text).map_err(|e| {
        let at = format!("line {} column {}", e.line(), e.column());
        Problem::new("", format!("{at}: not valid JSON: {e}"))
    })
}

/// [`parse`] of a document already read.
pub fn parse_value<T: DeserializeOwned>(mut document: Value) -> (Option<T>, Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, T>(document.clone()) {
            Ok(value) => return (Some(value), problems, removed),
            Err(e) => e,
        };
        let mut segments: Vec<Segment> = error.path().iter().cloned().collect();
        let message = error.inner().to_string();
        // "unknown field `x`" and "missing field `x`" may be reported at the enclosing object.
        let named = field_in(&message, "unknown field `").or_else(|| field_in(&message, "missing field `"));
        let missing = message.starts_with("missing field `");
        if let Some(name) = named {
            if !matches!(segments.last(), Some(Segment::Map { key }) if *key == name) {
                segments.push(Segment::Map { key: name });
            }
        }
        let path = render(&segments);
        let already_reported = missing && removed.contains(&path);
        if !already_reported {
            let message = if missing { "is required".to_string() } else { message };
            problems.push(Problem::new(path.clone(), message));
        }
        // A missing key is not in the document: remove the object that lacks it.
        let target = if missing { &segments[..segments.len() - 1] } else { &segments[..] };
        if target.is_empty() || !remove(&mut document, target) {
            return (None, problems, removed);
        }
        removed.push(render(target));
    }
    problems.push(Problem::new("", "too many problems: stopped reading"));
    (None, problems, removed)
}

/// [`parse`], then `validate` on what was read; problems under removed keys are left out, as
/// their cause is already reported. `Ok` only when there is no problem at all.
pub fn check<T: DeserializeOwned>(text: &str, validate: impl FnOnce(&T) -> Vec<Problem>) -> Result<T, Vec<Problem>> {
    check_value(document(text).map_err(|p| vec![p])?, validate)
}

/// [`check`] of a document already read.
pub fn check_value<T: DeserializeOwned>(
    document: Value,
    validate: impl FnOnce(&T) -> Vec<Problem>,
) -> Result<T, Vec<Problem>> {
    let (value, mut problems, removed) = parse_value::<T>(document);
    let Some(value) = value else { return Err(problems) };
    let under_removed = |p: &Problem| {
        removed
            .iter()
            .any(|r| p.path == *r || p.path.starts_with(&format!("{r}.")) || p.path.starts_with(&format!("{r}[")))
    };
    problems.extend(validate(&value).into_iter().filter(|p| !under_removed(p)));
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

/// The problems on one line, for a start-up error message.
pub fn one_line(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn field_in(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.find('`').map(|end| rest[..end].to_string())
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Removes the value at `path`; false when the path does not lead to a removable value.
fn remove(document: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut at = document;
    for s in parents {
        at = match (s, at) {
            (Segment::Map { key }, Value::Object(m)) => match m.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at) {
        (Segment::Map { key }, Value::Object(m)) => m.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct Root {
        name: String,
        #[serde(default)]
        size: usize,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read by serde only
    struct Inner {
        topic: String,
        #[serde(default)]
        count: u32,
    }

    fn paths(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.path.clone()).collect()
    }

    #[test]
    fn every_wrong_type_and_unknown_key_is_reported_with_its_path() {
        let (value, problems, _) = parse::<Root>(
            r#"{"name": "a", "size": "big", "colour": 1,
                "inner": {"topic": "t", "count": -1, "extra": true},
                "list": [{"topic": "x"}, {"topic": 3}]}"#,
        );
        assert!(value.is_some(), "{problems:?}");
        let mut got = paths(&problems);
        got.sort();
        assert_eq!(got, ["colour", "inner.count", "inner.extra", "list[1].topic", "size"]);
    }

    #[test]
    fn a_missing_key_is_reported_once_and_what_lacks_it_is_not_reported_again() {
        let (value, problems, removed) = parse::<Root>(r#"{"name": "a", "inner": {"count": 1}}"#);
        assert!(value.is_some());
        assert_eq!(problems, vec![Problem::new("inner.topic", "is required")]);
        assert_eq!(removed, ["inner"]);
        let (value, problems, _) = parse::<Root>(r#"{"size": 1, "inner": {"count": "x"}}"#);
        assert!(value.is_none());
        assert_eq!(paths(&problems), ["inner.count", "inner.topic", "name"]);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let (value, problems, _) = parse::<Root>("{\"name\": \"a\",\n \"size\": }");
        assert!(value.is_none());
        assert!(problems[0].message.starts_with("line 2 column"), "{problems:?}");
    }

    #[test]
    fn semantic_problems_under_removed_keys_are_not_repeated() {
        let validate = |r: &Root| {
            let mut p = vec![Problem::new("name", "must not be a")];
            if r.inner.is_none() {
                p.push(Problem::new("inner.topic", "is empty"));
            }
            p
        };
        let err = check::<Root>(r#"{"name": "a", "inner": {"count": 1}}"#, validate).unwrap_err();
        assert_eq!(err, vec![Problem::new("inner.topic", "is required"), Problem::new("name", "must not be a")]);
        assert!(check::<Root>(r#"{"name": "b"}"#, |_| Vec::new()).is_ok());
    }
}
