//! Several observations in one record of the observations topic (`ObservationBatch`).
//!
//! The stream's cost is per Kafka record, not per byte: librdkafka's queues, one acknowledgement
//! each, the correlator's poll of each (docs/benchmarks.md, "Where the aggregator's time goes").
//! So the aggregator writes one record per partition and batch ([`BatchWriter`]), marked with
//! [`BATCH_HEADER`], and readers take every record apart the same way ([`record_observations`]),
//! whether it is a batch or a single observation (as aggregators before batches wrote, and as
//! `kafka.batch_max_bytes: 0` still writes).
//!
//! The writer frames each entry by hand rather than building the generated message: a broadcast
//! observation is encoded once and its bytes copied into every partition's batch, and an entry
//! costs no allocation beyond the batch's own buffer. The generated `ObservationBatch` decodes
//! what it writes (tested below).

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message as _;

use super::observation::v1 as pb;
use super::{BROADCAST_HEADER, HOME_HEADER};

/// Header on a record whose value is an `ObservationBatch` (value `1`).
pub const BATCH_HEADER: &str = "tokentrail-batch";

/// `BatchedObservation`'s field numbers.
const KEY: u32 = 1;
const BROADCAST: u32 = 2;
const HOME: u32 = 3;
const OBSERVATION: u32 = 4;
/// `ObservationBatch.observations`.
const ENTRY: u32 = 1;

/// One partition's batch being filled: the encoded `ObservationBatch` so far.
#[derive(Debug, Default)]
pub struct BatchWriter {
    bytes: Vec<u8>,
    entries: usize,
}

impl BatchWriter {
    /// Appends an observation (`observation`: an encoded `Observation`) routed by `key`;
    /// `broadcast` and `home` say which copy it is, as the single record's headers would.
    pub fn push(&mut self, key: &str, broadcast: bool, home: bool, observation: &[u8]) {
        let flag_len = |on: bool| if on { key_len(BROADCAST) + 1 } else { 0 };
        let key_field = if key.is_empty() { 0 } else { key_len(KEY) + encoded_len_varint(len(key.len())) + key.len() };
        let entry_len = key_field
            + flag_len(broadcast)
            + flag_len(home)
            + key_len(OBSERVATION)
            + encoded_len_varint(len(observation.len()))
            + observation.len();
        let b = &mut self.bytes;
        encode_key(ENTRY, WireType::LengthDelimited, b);
        encode_varint(len(entry_len), b);
        if !key.is_empty() {
            encode_key(KEY, WireType::LengthDelimited, b);
            encode_varint(len(key.len()), b);
            b.extend_from_slice(key.as_bytes());
        }
        for (tag, on) in [(BROADCAST, broadcast), (HOME, home)] {
            if on {
                encode_key(tag, WireType::Varint, b);
                b.push(1);
            }
        }
        encode_key(OBSERVATION, WireType::LengthDelimited, b);
        encode_varint(len(observation.len()), b);
        b.extend_from_slice(observation);
        self.entries += 1;
    }

    /// Observations in the batch.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of the encoded batch so far.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// The encoded batch; the writer is empty again.
    pub fn take(&mut self) -> Vec<u8> {
        self.entries = 0;
        std::mem::take(&mut self.bytes)
    }
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The observations a record of the observations topic carries, in order, each with its key and
/// copy flags: a batch's entries, or the record itself as one entry. `flag(name)` says whether
/// the record has the header `name` with the value `1`.
pub fn record_observations(
    key: &[u8],
    value: &[u8],
    flag: impl Fn(&str) -> bool,
) -> Result<Vec<pb::BatchedObservation>, prost::DecodeError> {
    if flag(BATCH_HEADER) {
        return Ok(pb::ObservationBatch::decode(value)?.observations);
    }
    Ok(vec![pb::BatchedObservation {
        key: String::from_utf8_lossy(key).into_owned(),
        broadcast: flag(BROADCAST_HEADER),
        home: flag(HOME_HEADER),
        observation: Some(pb::Observation::decode(value)?),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(cluster: &str) -> pb::Observation {
        pb::Observation { cluster: cluster.into(), kind: None }
    }

    #[test]
    fn what_the_writer_frames_the_generated_message_decodes() {
        let mut w = BatchWriter::default();
        assert!(w.is_empty());
        let long_key = "k".repeat(300); // a two-byte length
        w.push("a/ns/sa", false, false, &observation("a").encode_to_vec());
        w.push("a/~broadcast/node", true, true, &observation("a").encode_to_vec());
        w.push(&long_key, true, false, &observation(&"c".repeat(200)).encode_to_vec());
        w.push("", false, false, &[]);
        assert_eq!(w.len(), 4);
        let bytes = w.take();
        assert!(w.is_empty() && w.encoded_len() == 0);
        let decoded = pb::ObservationBatch::decode(&bytes[..]).unwrap().observations;
        let summary: Vec<_> = decoded.iter().map(|o| (o.key.as_str(), o.broadcast, o.home)).collect();
        assert_eq!(
            summary,
            [
                ("a/ns/sa", false, false),
                ("a/~broadcast/node", true, true),
                (long_key.as_str(), true, false),
                ("", false, false)
            ]
        );
        assert_eq!(decoded[2].observation, Some(observation(&"c".repeat(200))));
        assert_eq!(decoded[3].observation, Some(pb::Observation::default()));
        // And what the generated message encodes is byte for byte what the writer framed.
        assert_eq!(pb::ObservationBatch { observations: decoded }.encode_to_vec(), bytes);
    }

    #[test]
    fn a_single_record_reads_as_one_entry_with_its_headers_flags() {
        let value = observation("a").encode_to_vec();
        let single = record_observations(b"a/~broadcast/pod", &value, |h| h == BROADCAST_HEADER).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!((single[0].key.as_str(), single[0].broadcast, single[0].home), ("a/~broadcast/pod", true, false));
        assert_eq!(single[0].observation, Some(observation("a")));

        let mut w = BatchWriter::default();
        w.push("a/ns/sa", false, false, &value);
        w.push("a/ns/sb", false, false, &value);
        let batch = record_observations(b"", &w.take(), |h| h == BATCH_HEADER).unwrap();
        assert_eq!(batch.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a/ns/sa", "a/ns/sb"]);

        assert!(record_observations(b"", b"\xff\xff", |h| h == BATCH_HEADER).is_err());
    }
}
