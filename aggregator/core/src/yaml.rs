//! YAML evidence: what `gcloud logging read` prints by default (one `LogEntry` per document,
//! documents separated by `---`), and audit events kept as YAML (one `audit.k8s.io` Event per
//! document, or a list of them).
//!
//! Each document is parsed on its own into a JSON value and handed to the JSON decoders
//! ([`crate::decode`]), so every format they know works as YAML too. Memory is one document at a
//! time (plus the caller's chunk); a document that cannot be parsed is reported at its line and
//! the next one is read. Parser errors are reported by line and column only: the parser's own
//! messages quote the input, which may hold a token.

use crate::decode::decode_converted;
use crate::decoded::{Decoded, Place};

/// Whether a text (its first few kilobytes, after any byte-order mark) is YAML evidence: a
/// document marker, or a first mapping key of an audit event, a log entry or a Kubernetes
/// object. Notes and scripts in an evidence directory are not (`# comments` and blank lines
/// before the first line are passed over).
pub fn looks_like_yaml(head: &[u8]) -> bool {
    const KEYS: [&[u8]; 12] = [
        b"apiVersion:",
        b"kind:",
        b"auditID:",
        b"level:",
        b"protoPayload:",
        b"insertId:",
        b"logName:",
        b"receiveTimestamp:",
        b"resource:",
        b"severity:",
        b"timestamp:",
        b"items:",
    ];
    let Some(line) = head
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii_end)
        .find(|l| !l.trim_ascii().is_empty() && !l.starts_with(b"#"))
    else {
        return false;
    };
    // A list of events: `- ` then a key of the first one.
    let first_key = line.strip_prefix(b"- ").map_or(line, <[u8]>::trim_ascii_start);
    line == b"---" || line.starts_with(b"--- ") || KEYS.iter().any(|k| first_key.starts_with(k))
}

/// Decodes YAML text (one or more documents) into `out`. Problems are placed at lines of
/// `text` (1-based); a record inside a document is placed at the document's first line.
pub fn decode_yaml(text: &[u8], out: &mut Decoded) {
    for (start_line, document) in documents(text) {
        decode_document(document, start_line, out);
    }
}

/// The documents of a YAML text with the line each starts on: split at `---` and `...` lines
/// (only those can end a document at the top level).
fn documents(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut rest = text;
    let mut line = 1usize;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let start_line = line;
            let mut end = 0;
            let mut next = rest.len();
            let mut first = true;
            while end < rest.len() {
                let eol = memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |i| end + i + 1);
                let l = rest[end..eol].trim_ascii_end();
                let marker = l == b"---" || l.starts_with(b"--- ") || l == b"...";
                if marker && !first {
                    next = end;
                    break;
                }
                first = false;
                line += 1;
                end = eol;
            }
            let document = &rest[..end.min(next)];
            rest = &rest[next.min(rest.len())..];
            if document.split(|&b| b == b'\n').any(|l| is_content(l.trim_ascii())) {
                return Some((start_line, document));
            }
        }
        None
    })
}

/// A line that holds data: not blank, not a comment, not a document marker.
fn is_content(l: &[u8]) -> bool {
    !l.is_empty() && !l.starts_with(b"#") && l != b"---" && l != b"..."
}

/// The whole documents of a YAML text's start, each converted to JSON, for readers that look
/// only at a file's first records (the cluster an export names, [`crate::cluster_names`]).
/// `complete`: whether `head` is the whole text (else its last document may be cut, and is
/// left out). Documents that cannot be read are passed over: the decoders report them.
pub fn first_documents_as_json(head: &[u8], complete: bool, at_most: usize) -> Vec<Vec<u8>> {
    let mut docs: Vec<&[u8]> = documents(head).map(|(_, d)| d).take(at_most + 1).collect();
    if !complete || docs.len() > at_most {
        docs.pop();
    }
    docs.into_iter()
        .filter_map(|d| match parse_document(std::str::from_utf8(d).ok()?) {
            Ok(serde_json::Value::Null) | Err(_) => None,
            Ok(value) => serde_json::to_vec(&value).ok(),
        })
        .collect()
}

/// One YAML document as a JSON value, read without quoting the input in errors.
fn parse_document(text: &str) -> Result<serde_json::Value, serde_saphyr::Error> {
    let mut options = serde_saphyr::options::Options::default();
    // Messages must not quote the input (it may hold a token); `yes`, `no` and `0123` stay text.
    options.with_snippet = false;
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    serde_saphyr::from_str_with_options::<serde_json::Value>(text, options)
}

fn decode_document(document: &[u8], start_line: usize, out: &mut Decoded) {
    let place = Place { line: Some(start_line), record: None };
    let Ok(text) = std::str::from_utf8(document) else {
        out.problem(place, "unreadable yaml document: not UTF-8");
        return;
    };
    match parse_document(text) {
        Ok(serde_json::Value::Null) => {}
        Ok(value) => match serde_json::to_vec(&value) {
            Ok(json) => decode_converted(&json, place, out),
            Err(_) => out.problem(place, "yaml document cannot be represented as json: skipped"),
        },
        Err(e) => {
            let (line, where_) = match e.location() {
                Some(l) => (start_line + l.line() as usize - 1, format!(" at column {}", l.column())),
                None => (start_line, String::new()),
            };
            let place = Place { line: Some(line), record: None };
            out.problem(place, format!("unreadable yaml document{where_}: skipped"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_told_from_notes_and_scripts() {
        assert!(looks_like_yaml(b"---\nprotoPayload:\n  '@type': x\n"));
        assert!(looks_like_yaml(b"# exported\n\napiVersion: audit.k8s.io/v1\nkind: Event\n"));
        assert!(looks_like_yaml(b"- apiVersion: audit.k8s.io/v1\n  kind: Event\n"));
        assert!(looks_like_yaml(b"insertId: abc\nlogName: projects/p/logs/x\n"));
        assert!(!looks_like_yaml(b"# tokentrail\n\nAttackers steal tokens: a story.\n"));
        assert!(!looks_like_yaml(b"#!/usr/bin/env python3\nimport json\n"));
        assert!(!looks_like_yaml(b"{\"kind\":\"Event\"}\n"));
        assert!(!looks_like_yaml(b""));
    }

    #[test]
    fn documents_are_split_at_markers_with_their_first_lines() {
        let text = b"---\na: 1\n---\nb: 2\nc: 3\n...\n# only a comment\n---\n\n---\nd: 4\n";
        let docs: Vec<(usize, String)> =
            documents(text).map(|(l, d)| (l, String::from_utf8_lossy(d).into_owned())).collect();
        assert_eq!(docs, [(1, "---\na: 1\n".into()), (3, "---\nb: 2\nc: 3\n".into()), (10, "---\nd: 4\n".into())]);
        let docs: Vec<usize> = documents(b"a: 1\nb: 2").map(|(l, _)| l).collect();
        assert_eq!(docs, [1], "a text without markers is one document");
    }

    /// Shaped like `gcloud logging read` output: `---` first, keys sorted, timestamps and
    /// numeric strings quoted, a long user agent folded over lines, empty maps in flow style.
    #[test]
    fn gcloud_logging_read_entries_decode_as_their_json_does() {
        let yaml = b"---
insertId: 0f8c2d9e-5b1a-4c7e-9d3f-2a6b8e1c4f70
labels:
  authorization.k8s.io/decision: allow
  authorization.k8s.io/reason: 'RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\"
    of ClusterRole \"system:public-info-viewer\" to Group \"system:authenticated\"'
logName: projects/shop-prod/logs/cloudaudit.googleapis.com%2Fdata_access
operation:
  first: true
  id: 0f8c2d9e-5b1a-4c7e-9d3f-2a6b8e1c4f70
  last: true
  producer: k8s.io
protoPayload:
  '@type': type.googleapis.com/google.cloud.audit.AuditLog
  authenticationInfo:
    principalEmail: system:serviceaccount:payments:api
  authorizationInfo:
  - granted: true
    permission: io.k8s.core.v1.secrets.get
    resource: core/v1/namespaces/payments/secrets/payments-db
  methodName: io.k8s.core.v1.secrets.get
  requestMetadata:
    callerIp: 203.0.113.50
    callerSuppliedUserAgent: python-requests/2.31.0 exfil-helper/0.1 (linux; x86_64)
      built-for-the-test
  resourceName: core/v1/namespaces/payments/secrets/payments-db
  serviceName: k8s.io
  status: {}
receiveTimestamp: '2026-03-10T10:26:41.002384121Z'
resource:
  labels:
    cluster_name: shop-prod
    location: europe-west1
    project_id: shop-prod
  type: k8s_cluster
severity: INFO
timestamp: '2026-03-10T10:26:40.118000Z'
---
insertId: 3c1d7a52-8e4b-4f09-a1c6-7b2e9d5f0a18
logName: projects/shop-prod/logs/cloudaudit.googleapis.com%2Fdata_access
protoPayload:
  '@type': type.googleapis.com/google.cloud.audit.AuditLog
  authenticationInfo:
    principalEmail: system:serviceaccount:payments:api
  methodName: io.k8s.core.v1.nodes.list
  requestMetadata:
    callerIp: 203.0.113.50
    callerSuppliedUserAgent: kubectl/v1.30.2 (linux/amd64) kubernetes/3968350
  resourceName: core/v1/nodes
  serviceName: k8s.io
  status:
    code: 7
    message: 'nodes is forbidden: User \"system:serviceaccount:payments:api\" cannot list resource \"nodes\"'
receiveTimestamp: '2026-03-10T10:27:02.514731064Z'
resource:
  labels:
    cluster_name: shop-prod
  type: k8s_cluster
severity: NOTICE
timestamp: '2026-03-10T10:27:01.991000Z'
";
        assert!(looks_like_yaml(yaml));
        let mut out = Decoded::new();
        decode_yaml(yaml, &mut out);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert_eq!(out.stats.by_format.get(&crate::Format::GkeLogEntry), Some(&2));
        let agents: Vec<String> = out
            .observations
            .iter()
            .filter_map(|o| match o {
                tokentrail_proto::Observation::TokenUse(u) => u.user_agent.clone(),
                _ => None,
            })
            .collect();
        assert!(
            agents
                .contains(&String::from("python-requests/2.31.0 exfil-helper/0.1 (linux; x86_64) built-for-the-test")),
            "a folded scalar is one line again: {agents:?}"
        );
    }

    #[test]
    fn a_broken_document_is_reported_at_its_line_and_the_rest_are_read() {
        let text = b"---\napiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n---\napiVersion: audit.k8s.io/v1\nkind: Event\nauditID: a1\nstage: ResponseComplete\nverb: get\nuser:\n  username: alice\nsourceIPs:\n- 198.51.100.23\nrequestReceivedTimestamp: '2026-03-01T10:00:00Z'\n";
        let mut out = Decoded::new();
        decode_yaml(text, &mut out);
        let lines: Vec<Option<usize>> = out.problems.iter().map(|p| p.line_in_value).collect();
        assert_eq!(lines, [Some(5)], "{:?}", out.problems);
        assert_eq!(out.stats.by_format.get(&crate::Format::AuditEvent), Some(&1), "the event after it is read");
        assert!(out.problems.iter().all(|p| !p.message.contains("unclosed")), "input is never quoted");
    }
}
