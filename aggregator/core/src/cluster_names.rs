//! The cluster a managed cloud's audit export names (docs/kubernetes.md §7), so evidence given
//! without `NAME=` can be attributed to its cluster:
//!
//! * GKE Cloud Logging entries: `resource.labels.cluster_name` (of `resource.type`
//!   `k8s_cluster`);
//! * EKS CloudWatch subscription records (and Firehose deliveries of them): `logGroup`, which is
//!   `/aws/eks/<cluster>/cluster`. `aws logs filter-log-events` output does not name its log
//!   group, so it names no cluster;
//! * AKS diagnostic records (storage account, Event Hubs): `resourceId`,
//!   `/SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<name>`.
//!
//! Read from the start of a file (its first lines, the whole entries of a document's start, or
//! its first YAML documents, as `gcloud logging read` prints them), with serde skipping
//! everything else; the audit events themselves are not read here.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::layout::Layout;
use crate::salvage::salvage;
use crate::yaml::{first_documents_as_json, looks_like_yaml};

/// YAML documents read from a head: the cluster is named in every entry, so a few suffice, and
/// YAML is slow to parse.
const YAML_DOCUMENTS: usize = 32;

/// The field a cluster's name was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NamedBy {
    /// GKE: `resource.labels.cluster_name` of a `k8s_cluster` entry.
    GkeClusterName,
    /// EKS: a subscription record's `logGroup`, `/aws/eks/<name>/cluster`.
    EksLogGroup,
    /// AKS: a diagnostic record's `resourceId`, `.../managedClusters/<name>`.
    AksResourceId,
}

impl NamedBy {
    /// The provider and field, as a responder would look for them in the file.
    pub fn field(self) -> &'static str {
        match self {
            NamedBy::GkeClusterName => "GKE resource.labels.cluster_name",
            NamedBy::EksLogGroup => "EKS logGroup",
            NamedBy::AksResourceId => "AKS resourceId",
        }
    }
}

/// The longest cluster name taken (EKS allows 100 characters, AKS 63, GKE 40).
const MAX_NAME: usize = 100;

/// The fields of an export record (or its envelope) that name a cluster.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Record {
    resource: Option<Resource>,
    log_group: Option<String>,
    resource_id: Option<String>,
    /// An AKS batch (`{"records":[...]}`).
    records: Option<Vec<Record>>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    kind: Option<String>,
    labels: Option<Labels>,
}

#[derive(Deserialize)]
struct Labels {
    cluster_name: Option<String>,
}

/// The clusters the records at the start of a text name, each with the field it was read from
/// (the first kind of field that named it). `head` is the text's start (after any byte-order
/// mark), `complete` whether it is the whole text, `layout` how it is laid out (as JSON; a head
/// that is YAML is read as YAML whatever `layout` says). Records that name none add nothing; a
/// name that cannot be a cluster name is passed over.
pub fn clusters_named(head: &[u8], layout: Layout, complete: bool) -> BTreeMap<String, NamedBy> {
    let mut names = BTreeMap::new();
    let starts_like_json = matches!(head.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
    if !starts_like_json && looks_like_yaml(head) {
        for json in first_documents_as_json(head, complete, YAML_DOCUMENTS) {
            named_in_value(&json, &mut names);
        }
        return names;
    }
    match layout {
        Layout::Lines => {
            let mut lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
            if !complete {
                // The last line may be cut by the end of the head.
                lines.pop();
            }
            for line in lines {
                named_in_value(line, &mut names);
            }
        }
        Layout::Document if complete => named_in_value(head, &mut names),
        Layout::Document => {
            if let Some(kept) = salvage(head) {
                named_in_value(&kept.text, &mut names);
            }
        }
    }
    names
}

/// One JSON value: a record, or an array of records.
fn named_in_value(text: &[u8], names: &mut BTreeMap<String, NamedBy>) {
    let text = text.trim_ascii();
    match text.first() {
        Some(b'[') => {
            if let Ok(records) = serde_json::from_slice::<Vec<Record>>(text) {
                records.iter().for_each(|r| named_by(r, names));
            }
        }
        Some(b'{') => {
            if let Ok(record) = serde_json::from_slice::<Record>(text) {
                named_by(&record, names);
            }
        }
        _ => {}
    }
}

fn named_by(record: &Record, names: &mut BTreeMap<String, NamedBy>) {
    let gke = record
        .resource
        .as_ref()
        .filter(|r| r.kind.as_deref() == Some("k8s_cluster"))
        .and_then(|r| r.labels.as_ref()?.cluster_name.clone());
    let eks = record.log_group.as_deref().and_then(eks_cluster);
    let aks = record.resource_id.as_deref().and_then(aks_cluster);
    let found = [(gke, NamedBy::GkeClusterName), (eks, NamedBy::EksLogGroup), (aks, NamedBy::AksResourceId)];
    for (name, by) in found {
        if let Some(name) = name.filter(|n| is_name(n)) {
            names.entry(name).or_insert(by);
        }
    }
    for inner in record.records.iter().flatten() {
        named_by(inner, names);
    }
}

/// `/aws/eks/<cluster>/cluster` to `<cluster>`.
fn eks_cluster(log_group: &str) -> Option<String> {
    let name = log_group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")?;
    Some(name.to_string())
}

/// The name after `MANAGEDCLUSTERS/` in an AKS resource id, in lowercase: Azure writes resource
/// ids upper-cased in diagnostic records (`/SUBSCRIPTIONS/…`), and its resource names are not
/// case-sensitive, so one cluster is one name whichever export (or hand) spelled it.
fn aks_cluster(resource_id: &str) -> Option<String> {
    let mut parts = resource_id.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("managedClusters"))?;
    parts.next().filter(|n| !n.is_empty()).map(str::to_ascii_lowercase)
}

/// What a cluster name may be: a letter or digit, then letters, digits, `-`, `_` and `.`.
fn is_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str, layout: Layout) -> Vec<String> {
        clusters_named(text.as_bytes(), layout, true).into_keys().collect()
    }

    /// A GKE entry as docs/kubernetes.md §7.2 shows it (shortened).
    fn gke(cluster: &str) -> String {
        format!(
            r#"{{"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","methodName":"io.k8s.core.v1.pods.list","serviceName":"k8s.io"}},"insertId":"5a3a3498","resource":{{"type":"k8s_cluster","labels":{{"cluster_name":"{cluster}","location":"us-central1-a","project_id":"acme-prod"}}}},"timestamp":"2024-05-12T05:13:08.760303Z","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity"}}"#
        )
    }

    #[test]
    fn gke_entries_name_their_cluster_in_resource_labels() {
        assert_eq!(named(&format!("{}\n{}\n", gke("shop-prod"), gke("shop-prod")), Layout::Lines), ["shop-prod"]);
        // `gcloud logging read --format json` prints an array; one export may span two clusters.
        let array = format!("[\n{},\n{}\n]\n", gke("shop-prod"), gke("shop-staging"));
        assert_eq!(named(&array, Layout::Document), ["shop-prod", "shop-staging"]);
        // Another monitored resource type's `cluster_name` is not a Kubernetes cluster's.
        let other = gke("x").replace("k8s_cluster", "gce_instance");
        assert!(named(&other, Layout::Lines).is_empty());
    }

    #[test]
    fn eks_subscription_records_name_their_cluster_in_the_log_group() {
        let record = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/checkout-prod/cluster","logStream":"kube-apiserver-audit-1234567890abcdef01234567890abcde","subscriptionFilters":["audit"],"logEvents":[{"id":"1","timestamp":1772359500004,"message":"{}"}]}"#;
        assert_eq!(named(record, Layout::Lines), ["checkout-prod"]);
        // `aws logs filter-log-events` output names no log group: no cluster.
        let filtered = r#"{"events":[{"logStreamName":"kube-apiserver-audit-1","timestamp":1,"message":"{}"}],"searchedLogStreams":[]}"#;
        assert!(named(filtered, Layout::Document).is_empty());
        for group in ["/aws/lambda/f", "/aws/eks/x/other", "/aws/eks//cluster"] {
            assert_eq!(eks_cluster(group).filter(|n| is_name(n)), None, "{group}");
        }
    }

    #[test]
    fn aks_diagnostic_records_name_their_cluster_in_the_resource_id() {
        // The public sample of sysdiglabs/aks-audit-log (`sample_EventHubs_event.json`), cut.
        let sample = "{\n\"operationName\": \"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read\",\n\"category\": \"kube-audit\",\n\"resourceId\": \"/SUBSCRIPTIONS/BFC31CC5-D3BD-4B36-A40E-D13688D546EC/RESOURCEGROUPS/KUBEAUDITLOGTEST/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/KUBEAUDITLOGTESTCLUSTER\",\n\"properties\": {\"log\": \"{}\"}\n}\n";
        assert_eq!(named(sample, Layout::Document), ["kubeauditlogtestcluster"]);
        let batch = format!("{{\"records\": [{}]}}", sample.trim());
        assert_eq!(named(&batch, Layout::Document), ["kubeauditlogtestcluster"]);
        assert_eq!(
            aks_cluster("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"),
            None
        );
    }

    #[test]
    fn a_head_cut_mid_record_names_what_its_whole_records_name() {
        let lines = format!("{}\n{}", gke("a"), &gke("b")[..40]);
        assert_eq!(clusters_named(lines.as_bytes(), Layout::Lines, false).into_keys().collect::<Vec<_>>(), ["a"]);
        let array = format!("[\n{},\n{}", gke("a"), &gke("b")[..60]);
        assert_eq!(clusters_named(array.as_bytes(), Layout::Document, false).into_keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn plain_audit_events_dumps_and_odd_names_name_nothing() {
        let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","requestObject":{"cluster_name":"x","resource":{"type":"k8s_cluster","labels":{"cluster_name":"inner"}}}}"#;
        assert!(named(event, Layout::Lines).is_empty(), "a request body is not an export's envelope");
        assert!(named(r#"{"apiVersion":"v1","kind":"List","items":[]}"#, Layout::Document).is_empty());
        assert!(named(&gke("../../etc"), Layout::Lines).is_empty());
        assert!(named(&gke("a\u{1b}[31m"), Layout::Lines).is_empty());
        assert!(named("not json\n", Layout::Lines).is_empty());
    }

    #[test]
    fn each_name_says_which_field_gave_it() {
        let eks = r#"{"logGroup":"/aws/eks/eks-prod/cluster","logEvents":[]}"#;
        let text = format!("{}\n{eks}\n", gke("gke-prod"));
        let named = clusters_named(text.as_bytes(), Layout::Lines, true);
        assert_eq!(named.get("gke-prod"), Some(&NamedBy::GkeClusterName));
        assert_eq!(named.get("eks-prod"), Some(&NamedBy::EksLogGroup));
        assert_eq!(NamedBy::GkeClusterName.field(), "GKE resource.labels.cluster_name");
    }

    #[test]
    fn gcloud_logging_read_yaml_names_its_cluster_in_resource_labels() {
        // `gcloud logging read` without `--format json`: one entry per document.
        let entry = |cluster: &str| {
            format!(
                "---\ninsertId: 5a3a3498\nprotoPayload:\n  '@type': type.googleapis.com/google.cloud.audit.AuditLog\n  methodName: io.k8s.core.v1.pods.list\nresource:\n  labels:\n    cluster_name: {cluster}\n    location: us-central1-a\n    project_id: acme-prod\n  type: k8s_cluster\ntimestamp: '2024-05-12T05:13:08.760303Z'\n"
            )
        };
        let text = format!("{}{}", entry("shop-prod"), entry("shop-prod"));
        assert_eq!(named(&text, Layout::Document), ["shop-prod"]);
        // A head cut inside the second document names what the first names.
        let cut = format!("{}{}", entry("a"), &entry("b")[..60]);
        let named = clusters_named(cut.as_bytes(), Layout::Lines, false);
        assert_eq!(named.into_keys().collect::<Vec<_>>(), ["a"]);
    }
}
