//! What the decoders make of evidence survives the wire: every observation of the example
//! incident comes back from `tokentrail.observation.v1` as it went in. (The conversions and
//! their own tests are in `tokentrail_proto::wire`; this test needs the decoders, which the
//! contract crate must not depend on.)

use tokentrail_aggregator_core::{decode_line, decode_value, Decoded};
use tokentrail_proto::wire::{from_proto, to_proto};

/// Every observation the decoders make of the example incident survives the round trip.
#[test]
fn example_incident_round_trips() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/incident");
    let mut out = Decoded::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json" || e == "log") {
            let text = std::fs::read(&path).unwrap();
            if path.extension().is_some_and(|e| e == "log") {
                text.split(|b| *b == b'\n').for_each(|line| decode_line(line, &mut out));
            } else {
                decode_value(&text, &mut out);
            }
        }
    }
    assert!(out.observations.len() > 20, "{} observations", out.observations.len());
    let kinds: std::collections::BTreeSet<_> =
        out.observations.iter().map(std::mem::discriminant).map(|d| format!("{d:?}")).collect();
    assert!(kinds.len() >= 5, "{kinds:?}");
    for o in &out.observations {
        let back = from_proto(&to_proto("prod", o)).unwrap();
        assert_eq!(back, ("prod".to_string(), o.clone()));
    }
}
