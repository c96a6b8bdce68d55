//! Evidence text cut into records a receiver takes whole: each record at most `max_bytes` and
//! itself valid evidence, since the aggregator decodes every webhook body and raw Kafka record
//! by its content, whatever its shape (`tokentrail_aggregator_core::decode_value`).
//!
//! * JSON lines (audit log files, CloudWatch and GKE line exports): whole lines, as many as fit.
//! * One document with a list (`kubectl get -o json`, an `EventList`, AKS `{"records": [...]}`,
//!   `{"events": [...]}` of `aws logs`): its list cut into chunks, each wrapped in a copy of the
//!   document's other keys (`kind`, `apiVersion`), so every chunk is the same kind of document.
//! * A top-level array: cut into smaller arrays.
//! * A document cut short (a copy that stopped, a file truncated): the caller sends what
//!   [`tokentrail_aggregator_core::salvage`] keeps of it, as `analyze` reads it, and says what
//!   was lost.
//!
//! No I/O here: the caller reads, this decides where records begin and end.

use serde_json::{Map, Value};
use tokentrail_aggregator_core::salvage::LIST_KEYS;

/// JSON lines gathered into records of whole lines.
pub struct LineRecords {
    max_bytes: usize,
    record: Vec<u8>,
    /// The first and last line numbers (1-based) in `record`, and the last line read.
    first_line: u64,
    last_line: u64,
    line: u64,
}

/// A record and the lines of the file it holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// First and last line of the file in it (a document's record: its whole line span).
    pub lines: (u64, u64),
    /// Events or objects in it (lines, or list elements).
    pub entries: u64,
}

impl LineRecords {
    /// Records of at most `max_bytes` (a longer line is a record alone).
    pub fn new(max_bytes: usize) -> LineRecords {
        LineRecords { max_bytes, record: Vec::new(), first_line: 0, last_line: 0, line: 0 }
    }

    /// Adds the next line (without its line break); returns the record it completed, if any.
    pub fn push(&mut self, line: &[u8]) -> Option<Record> {
        self.line += 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            return None;
        }
        let full = !self.record.is_empty() && self.record.len() + 1 + line.len() > self.max_bytes;
        let done = if full { self.take() } else { None };
        if self.record.is_empty() {
            self.first_line = self.line;
        } else {
            self.record.push(b'\n');
        }
        self.record.extend_from_slice(line);
        self.last_line = self.line;
        done
    }

    /// The last, partly filled record.
    pub fn finish(mut self) -> Option<Record> {
        self.take()
    }

    fn take(&mut self) -> Option<Record> {
        if self.record.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.record);
        let entries = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        Some(Record { bytes, lines: (self.first_line, self.last_line), entries })
    }
}

/// Why a document cannot be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// Not JSON: the receiver could not decode it either.
    #[error("not a JSON document: {0}")]
    NotJson(String),
    /// Larger than a record, with no list to cut it at.
    #[error("{bytes} bytes with no list to cut it into records of at most {max_bytes} bytes")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The record limit.
        max_bytes: usize,
    },
    /// One element of its list is larger than a record.
    #[error("list element {index} is {bytes} bytes, more than a record's {max_bytes}")]
    ElementTooLarge {
        /// Its position in the list.
        index: usize,
        /// Its size.
        bytes: usize,
        /// The record limit.
        max_bytes: usize,
    },
}

/// Cuts one JSON document (`lines` lines long) into records of at most `max_bytes`.
pub fn document_records(text: &[u8], lines: u64, max_bytes: usize) -> Result<Vec<Record>, DocumentError> {
    let whole = |entries| Record { bytes: text.trim_ascii().to_vec(), lines: (1, lines), entries };
    let document: Value = serde_json::from_slice(text).map_err(|e| DocumentError::NotJson(e.to_string()))?;
    let (list, wrapper) = match document {
        Value::Array(items) => (items, None),
        Value::Object(mut map) => {
            let key = LIST_KEYS.into_iter().find(|k| map.get(*k).is_some_and(Value::is_array));
            match key.and_then(|k| map.remove(k).map(|list| (k, list))) {
                Some((key, Value::Array(items))) => (items, Some((key, map))),
                _ if text.len() <= max_bytes => return Ok(vec![whole(1)]),
                _ => return Err(DocumentError::TooLarge { bytes: text.len(), max_bytes }),
            }
        }
        _ => return Ok(vec![whole(1)]),
    };
    if text.len() <= max_bytes {
        return Ok(vec![whole(list.len() as u64)]);
    }
    let wrap = |chunk: Vec<Value>| -> Vec<u8> {
        let value = match &wrapper {
            None => Value::Array(chunk),
            Some((key, rest)) => {
                let mut map: Map<String, Value> = rest.clone();
                map.insert((*key).to_string(), Value::Array(chunk));
                Value::Object(map)
            }
        };
        serde_json::to_vec(&value).unwrap_or_default()
    };
    let overhead = wrap(Vec::new()).len();
    let mut records = Vec::new();
    let mut chunk = Vec::new();
    let mut size = overhead;
    for (index, item) in list.into_iter().enumerate() {
        let bytes = serde_json::to_vec(&item).map(|b| b.len()).unwrap_or(0) + 1;
        if overhead + bytes > max_bytes {
            return Err(DocumentError::ElementTooLarge { index, bytes, max_bytes });
        }
        if size + bytes > max_bytes {
            let entries = chunk.len() as u64;
            records.push(Record { bytes: wrap(std::mem::take(&mut chunk)), lines: (1, lines), entries });
            size = overhead;
        }
        size += bytes;
        chunk.push(item);
    }
    if !chunk.is_empty() {
        let entries = chunk.len() as u64;
        records.push(Record { bytes: wrap(chunk), lines: (1, lines), entries });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, max: usize) -> Vec<(String, (u64, u64), u64)> {
        let mut r = LineRecords::new(max);
        let mut out: Vec<Record> = text.split('\n').filter_map(|l| r.push(l.as_bytes())).collect();
        out.extend(r.finish());
        out.into_iter().map(|r| (String::from_utf8(r.bytes).unwrap(), r.lines, r.entries)).collect()
    }

    #[test]
    fn lines_are_gathered_whole_up_to_the_limit_blank_lines_skipped() {
        let got = lines("{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}\n", 16);
        assert_eq!(got, [("{\"a\":1}\n{\"b\":2}".to_string(), (1, 3), 2), ("{\"c\":3}".to_string(), (4, 4), 1)]);
        // A line longer than a record is a record alone, never cut.
        let got = lines("{\"a\":1}\n{\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{\"c\":3}", 16);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, "{\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}");
    }

    #[test]
    fn a_small_document_is_one_record_as_written() {
        let text = b"{\"kind\": \"List\",\n \"items\": [{\"kind\": \"Pod\"}]}\n";
        let got = document_records(text, 2, 1 << 20).unwrap();
        assert_eq!(got, [Record { bytes: text.trim_ascii().to_vec(), lines: (1, 2), entries: 1 }]);
    }

    #[test]
    fn a_large_list_is_cut_into_documents_of_the_same_kind() {
        let items: Vec<Value> =
            (0..100).map(|i| serde_json::json!({"kind": "Pod", "metadata": {"name": format!("p{i}")}})).collect();
        let text =
            serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})).unwrap();
        let got = document_records(&text, 1, 600).unwrap();
        assert!(got.len() > 3, "{}", got.len());
        let mut names = Vec::new();
        for record in &got {
            assert!(record.bytes.len() <= 600, "{}", record.bytes.len());
            let doc: Value = serde_json::from_slice(&record.bytes).unwrap();
            assert_eq!((doc["kind"].as_str(), doc["apiVersion"].as_str()), (Some("List"), Some("v1")));
            assert_eq!(doc["items"].as_array().unwrap().len() as u64, record.entries);
            names.extend(doc["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()));
        }
        assert_eq!(names, items.iter().map(|i| i["metadata"]["name"].clone()).collect::<Vec<_>>());
        // A top-level array is cut into arrays, an AKS export at its records.
        let array = serde_json::to_vec(&items).unwrap();
        assert!(document_records(&array, 1, 600).unwrap().iter().all(|r| r.bytes.starts_with(b"[")));
        let aks = serde_json::to_vec(&serde_json::json!({"records": items})).unwrap();
        assert!(document_records(&aks, 1, 600).unwrap().iter().all(|r| r.bytes.starts_with(b"{\"records\":[")));
    }

    #[test]
    fn what_cannot_be_cut_small_enough_is_an_error_not_a_truncated_record() {
        let big = serde_json::to_vec(&serde_json::json!({"message": "x".repeat(100)})).unwrap();
        assert_eq!(document_records(&big, 1, 50), Err(DocumentError::TooLarge { bytes: big.len(), max_bytes: 50 }));
        let list = serde_json::to_vec(&serde_json::json!({"items": [{"a": 1}, {"message": "x".repeat(100)}]})).unwrap();
        assert!(matches!(document_records(&list, 1, 60), Err(DocumentError::ElementTooLarge { index: 1, .. })));
        assert!(matches!(document_records(b"{\"cut\": [1, 2", 1, 60), Err(DocumentError::NotJson(_))));
    }
}
