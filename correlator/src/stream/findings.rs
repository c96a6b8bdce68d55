//! A finding as a record of the findings topic: the value in the configured format, and the
//! headers downstream routes on. Shared by the correlator and `tokentrail standalone`.

use rdkafka::message::{Header, OwnedHeaders};
use tokentrail_correlator_core::ocsf::{detection_finding, Activity};
use tokentrail_correlator_core::Finding;

use super::FindingFormat;

/// The findings partition of a finding raised from input partition `input`: the same number,
/// modulo the findings topic's partitions. A replica's transaction then writes findings only to
/// the partitions of its own input partitions, so a replica frozen inside an open transaction
/// (until `transaction.timeout` aborts it) holds back the read_committed readers of those
/// findings partitions only, never another replica's findings (with at least as many findings
/// partitions as input partitions, as deploy/ creates them). And every version of one
/// finding (create, updates, withdrawal) comes from one input partition, so it stays in order
/// on one findings partition.
pub fn partition(input: i32, findings_partitions: i32) -> i32 {
    input.rem_euclid(findings_partitions.max(1))
}

/// The record's value: `tokentrail.finding/v1` JSON or an OCSF Detection Finding.
pub fn value(finding: &Finding, activity: Activity, format: FindingFormat) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        FindingFormat::Json => serde_json::to_vec(finding),
        FindingFormat::Ocsf => serde_json::to_vec(&detection_finding(finding, activity, env!("CARGO_PKG_VERSION"))),
    }
}

/// Headers `rule`, `severity` and `activity` (`create` or `update`).
pub fn headers(finding: &Finding, activity: Activity) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header { key: "rule", value: Some(finding.rule.id()) })
        .insert(Header { key: "severity", value: Some(finding.severity.as_str()) })
        .insert(Header { key: "activity", value: Some(if activity == Activity::Create { "create" } else { "update" }) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_findings_partition_per_input_partition() {
        assert_eq!((0..4).map(|p| super::partition(p, 24)).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!((22..26).map(|p| super::partition(p, 24)).collect::<Vec<_>>(), [22, 23, 0, 1]);
        assert_eq!(super::partition(5, 0), 0);
    }
}
