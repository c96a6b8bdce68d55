//! A finding as a record of the findings topic: the value in the configured format, and the
//! headers downstream routes on. Shared by the correlator and `tokentrail standalone`.

use rdkafka::message::{Header, OwnedHeaders};
use tokentrail_correlator_core::ocsf::{detection_finding, Activity};
use tokentrail_correlator_core::Finding;

use super::FindingFormat;

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
