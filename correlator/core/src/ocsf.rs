//! Findings as OCSF 1.3.0 Detection Findings (class_uid 2004), and incidents as Incident Findings
//! (class_uid 2005, [`incident_finding`]), for SIEMs that speak OCSF.
//!
//! Mapping (docs/siem.md has the whole table): the finding id is `finding_info.uid`, the rule is
//! the analytic, ATT&CK techniques are `finding_info.attacks`. What was seen goes where Detection
//! Finding 1.3 puts evidence artifacts, `evidences[]`: the client address as `src_endpoint`, the
//! service account that made the requests as `actor.user`. The cluster, the pod and the service
//! account are the affected `resources[]`. Confidence says whether the verdict stood on the
//! evidence or on what it lacks; `remediation` says what to do. What OCSF has no place for
//! (credential, expected addresses, user agents, requests, audit IDs) goes to `unmapped`.
//! The only profile used is `datetime` (the `*_dt` twins of the timestamps). The records are
//! validated against the official compiled 1.3.0 schema by correlator/tests/ocsf_schema.rs.

use serde_json::{json, Map, Value};

use crate::finding::{Finding, Rule, Severity, Status};
use crate::incident::Incident;

/// OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";

/// The OCSF profiles the records apply (`metadata.profiles`): `datetime` adds `time_dt` and the
/// other RFC 3339 twins of the millisecond timestamps, which SIEMs show without conversion.
pub const PROFILES: &[&str] = &["datetime"];

/// `resources[].type` of the cluster the finding was made in.
///
/// The cluster label is the operator's name for one Kubernetes cluster. OCSF 1.3 has no cluster
/// attribute: `cloud_partition` means an AWS partition (aws, aws-cn, aws-us-gov), `cloud` needs a
/// provider the evidence does not name and brings the `cloud` profile's required attributes,
/// and `metadata.tenant_uid` is a tenant of the product, not where the finding happened. The
/// cluster is where the affected pod and service account live, so it is an affected resource of
/// its own, named by its label.
pub const CLUSTER_RESOURCE_TYPE: &str = "Kubernetes Cluster";

/// `activity_id`: a finding seen for the first time, or an update to one already sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    /// First emission.
    Create,
    /// Count or last-seen changed.
    Update,
}

fn severity_id(s: Severity) -> u8 {
    match s {
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

/// `confidence_id` and its caption. A finding held below its rule's severity rests on what the
/// evidence lacks (docs/rules.md, "Knowledge before severity"): low. A client program named by a
/// user agent is the client's own word: medium. Every other verdict stands on the evidence: high.
fn confidence(f: &Finding) -> (u8, &'static str) {
    if f.severity < f.rule.severity() {
        (1, "Low")
    } else if f.rule == Rule::TokenClientChanged {
        (2, "Medium")
    } else {
        (3, "High")
    }
}

/// Whether the finding's service account is the one that acted (its token made the requests),
/// rather than only the one acted upon (`token-minted-by-user`: someone minted its tokens;
/// `legacy-token-present`: a Secret holds its token; `legacy-token-shared-across-clusters`:
/// Secrets of several clusters hold it).
fn serviceaccount_acted(rule: Rule) -> bool {
    !matches!(rule, Rule::TokenMintedByUser | Rule::LegacyTokenPresent | Rule::LegacyTokenSharedAcrossClusters)
}

fn millis(t: crate::Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

/// An ATT&CK entry: a sub-technique (`T1550.001`, named `Parent: Sub-technique` as ATT&CK writes
/// it) under its parent technique.
fn attack(t: &crate::finding::Technique) -> Value {
    match (t.id.split_once('.'), t.name.split_once(": ")) {
        (Some((parent, _)), Some((parent_name, name))) => json!({
            "technique": {"uid": parent, "name": parent_name},
            "sub_technique": {"uid": t.id, "name": name},
            "version": "v15",
        }),
        (Some((parent, _)), None) => json!({
            "technique": {"uid": parent},
            "sub_technique": {"uid": t.id, "name": t.name},
            "version": "v15",
        }),
        (None, _) => json!({"technique": {"uid": t.id, "name": t.name}, "version": "v15"}),
    }
}

/// The OCSF record of a finding.
pub fn detection_finding(f: &Finding, activity: Activity, product_version: &str) -> Value {
    let (activity_id, activity_name) = match activity {
        Activity::Create => (1, "Create"),
        Activity::Update => (2, "Update"),
    };
    let (confidence_id, confidence) = confidence(f);
    // A withdrawn finding (sent before, explained by later evidence: crate::emit) is an update
    // whose status is Suppressed, OCSF's "determined to be benign or a false positive".
    let (status_id, status) = match f.status {
        Status::Active => (1, "New"),
        Status::Withdrawn => (3, "Suppressed"),
    };
    let mut record = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity_name}"),
        "severity_id": severity_id(f.severity),
        "severity": capitalise(f.severity.as_str()),
        "status_id": status_id,
        "status": status,
        "confidence_id": confidence_id,
        "confidence": confidence,
        "time": millis(f.last_seen),
        "time_dt": f.last_seen.to_string(),
        "start_time": millis(f.first_seen),
        "start_time_dt": f.first_seen.to_string(),
        "end_time": millis(f.last_seen),
        "end_time_dt": f.last_seen.to_string(),
        // OCSF's `count` is a 32-bit integer_t; a credential replayed more often than that keeps
        // its exact count in `unmapped.count`.
        "count": i32::try_from(f.count).unwrap_or(i32::MAX),
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": PROFILES,
            "product": {"name": "tokentrail", "vendor_name": "tokentrail", "version": product_version},
        },
        "finding_info": finding_info(f),
        "remediation": {"desc": f.rule.remediation()},
    });
    let obj = record.as_object_mut().expect("json! built an object");
    if f.status == Status::Withdrawn {
        obj.insert("status_detail".into(), json!("withdrawn: later evidence explains it"));
    }
    let mut evidence = Map::new();
    let mut observables = Vec::new();
    if let Some(ip) = f.source_ip {
        evidence.insert("src_endpoint".into(), json!({"ip": ip.to_string()}));
        observables.push(json!({
            "name": "evidences.src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip.to_string(),
        }));
    }
    if let Some(sa) = f.serviceaccount.as_ref().filter(|_| serviceaccount_acted(f.rule)) {
        let name = format!("system:serviceaccount:{}:{}", sa.namespace, sa.name);
        let mut user = Map::new();
        user.insert("name".into(), json!(name));
        user.insert("type_id".into(), json!(3));
        user.insert("type".into(), json!("System"));
        if let Some(uid) = &sa.uid {
            user.insert("uid".into(), json!(uid));
        }
        if let Some(c) = f.credential.as_ref().and_then(|c| c.id.as_ref()) {
            user.insert("credential_uid".into(), json!(c));
        }
        evidence.insert("actor".into(), json!({"user": Value::Object(user)}));
        observables.push(json!({
            "name": "evidences.actor.user.name", "type_id": 4, "type": "User Name", "value": name,
        }));
    }
    if !evidence.is_empty() {
        obj.insert("evidences".into(), json!([Value::Object(evidence)]));
    }
    if !observables.is_empty() {
        obj.insert("observables".into(), Value::Array(observables));
    }
    let mut resources = Vec::new();
    if let Some(cluster) = &f.cluster {
        resources.push(json!({"type": CLUSTER_RESOURCE_TYPE, "name": cluster}));
    }
    // A finding of several clusters (`legacy-token-shared-across-clusters`) affects each.
    let copied_in: std::collections::BTreeSet<&str> =
        f.copies.iter().map(|c| c.cluster.as_str()).filter(|c| !c.is_empty()).collect();
    for cluster in copied_in {
        resources.push(json!({"type": CLUSTER_RESOURCE_TYPE, "name": cluster}));
    }
    if let Some(pod) = &f.pod {
        let mut r = json!({"type": "Pod", "name": pod.name, "namespace": pod.namespace});
        if let Some(uid) = &pod.uid {
            r["uid"] = json!(uid);
        }
        resources.push(r);
    }
    if let Some(sa) = &f.serviceaccount {
        let mut r = json!({"type": "ServiceAccount", "name": sa.name, "namespace": sa.namespace});
        if let Some(uid) = &sa.uid {
            r["uid"] = json!(uid);
        }
        resources.push(r);
    }
    if !resources.is_empty() {
        obj.insert("resources".into(), Value::Array(resources));
    }
    let mut unmapped = Map::new();
    unmapped.insert("schema".into(), json!(f.schema));
    if i32::try_from(f.count).is_err() {
        unmapped.insert("count".into(), json!(f.count));
    }
    if let Some(c) = &f.credential {
        unmapped.insert("credential".into(), serde_json::to_value(c).unwrap_or(Value::Null));
    }
    if let Some(node) = f.pod.as_ref().and_then(|p| p.node.as_ref()) {
        unmapped.insert("node".into(), json!(node));
    }
    insert_lists(
        &mut unmapped,
        [
            ("source_ips", serde_json::to_value(&f.source_ips)),
            ("expected_ips", serde_json::to_value(&f.expected_ips)),
            ("user_agents", serde_json::to_value(&f.user_agents)),
            ("requests", serde_json::to_value(&f.requests)),
            ("audit_ids", serde_json::to_value(&f.audit_ids)),
            ("copies", serde_json::to_value(&f.copies)),
        ],
    );
    obj.insert("unmapped".into(), Value::Object(unmapped));
    record
}

/// The `finding_info` object of a finding: in its Detection Finding, and in the
/// `finding_info_list` of its incident's Incident Finding.
fn finding_info(f: &Finding) -> Value {
    json!({
        "uid": f.id,
        "title": f.title,
        "desc": f.explanation,
        "types": [f.rule.id()],
        "first_seen_time": millis(f.first_seen),
        "first_seen_time_dt": f.first_seen.to_string(),
        "last_seen_time": millis(f.last_seen),
        "last_seen_time_dt": f.last_seen.to_string(),
        "analytic": {"uid": f.rule.id(), "name": f.rule.id(), "type_id": 1, "type": "Rule"},
        "attacks": f.attack.iter().map(attack).collect::<Vec<_>>(),
    })
}

/// The OCSF 1.3.0 Incident Finding (class_uid 2005) of an incident and its member findings (in
/// the incident's order): the members are the `finding_info_list` (as their Detection Findings carry them), the story is `desc`, one step a
/// line. OCSF requires an incident's `assignee` or `assignee_group` (an `at_least_one`
/// constraint): the evidence names no one, so the operator names the group the incidents go to.
/// What OCSF has no place for (the incident's own id, the story's structure, the attacker
/// addresses, principals, credentials, service accounts, clusters) goes to `unmapped`.
pub fn incident_finding(
    i: &Incident,
    members: &[&Finding],
    assignee_group: &str,
    activity: Activity,
    product_version: &str,
) -> Value {
    let (activity_id, activity_name) = match activity {
        Activity::Create => (1, "Create"),
        Activity::Update => (2, "Update"),
    };
    let members: Vec<Value> = members.iter().map(|f| finding_info(f)).collect();
    let desc: Vec<String> = i.story.iter().map(|s| format!("{} {}: {}", s.time, s.kind.as_str(), s.text)).collect();
    let mut unmapped = Map::new();
    unmapped.insert("schema".into(), json!(i.schema));
    unmapped.insert("incident_id".into(), json!(i.id));
    unmapped.insert("story".into(), serde_json::to_value(&i.story).unwrap_or(Value::Null));
    if i.story_left_out > 0 {
        unmapped.insert("story_left_out".into(), json!(i.story_left_out));
    }
    insert_lists(
        &mut unmapped,
        [
            ("clusters", serde_json::to_value(&i.clusters)),
            ("serviceaccounts", serde_json::to_value(&i.serviceaccounts)),
            ("credentials", serde_json::to_value(&i.credentials)),
            ("attacker_ips", serde_json::to_value(&i.attacker_ips)),
            ("principals", serde_json::to_value(&i.principals)),
        ],
    );
    json!({
        "class_uid": 2005,
        "class_name": "Incident Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 200500 + activity_id,
        "type_name": format!("Incident Finding: {activity_name}"),
        "severity_id": severity_id(i.severity),
        "severity": capitalise(i.severity.as_str()),
        "status_id": 1,
        "status": "New",
        // A critical incident is a credential taken and used from elsewhere (crate::incident).
        "is_suspected_breach": i.severity == Severity::Critical,
        "time": millis(i.last_seen),
        "time_dt": i.last_seen.to_string(),
        "start_time": millis(i.first_seen),
        "start_time_dt": i.first_seen.to_string(),
        "end_time": millis(i.last_seen),
        "end_time_dt": i.last_seen.to_string(),
        "message": i.title,
        "desc": desc.join("\n"),
        "assignee_group": {"name": assignee_group},
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": PROFILES,
            "product": {"name": "tokentrail", "vendor_name": "tokentrail", "version": product_version},
        },
        "finding_info_list": members,
        "unmapped": Value::Object(unmapped),
    })
}

/// Inserts each list that is not empty (nor failed to serialise) under its key.
fn insert_lists<const N: usize>(unmapped: &mut Map<String, Value>, lists: [(&str, serde_json::Result<Value>); N]) {
    for (key, value) in lists {
        match value {
            Ok(Value::Array(a)) if a.is_empty() => {}
            Ok(v) => {
                unmapped.insert(key.into(), v);
            }
            Err(_) => {}
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{FindingPod, FindingServiceAccount, SCHEMA};
    use crate::Timestamp;

    fn finding(rule: Rule, severity: Severity) -> Finding {
        Finding {
            schema: SCHEMA,
            id: "f".into(),
            rule,
            severity,
            title: "t".into(),
            cluster: Some("prod-eu-1".into()),
            serviceaccount: Some(FindingServiceAccount { namespace: "shop".into(), name: "web".into(), uid: None }),
            credential: None,
            pod: Some(FindingPod { namespace: "shop".into(), name: "web-1".into(), uid: None, node: None }),
            source_ip: "203.0.113.50".parse().ok(),
            source_ips: Vec::new(),
            expected_ips: Vec::new(),
            first_seen: Timestamp::from_secs(1_772_359_200),
            last_seen: Timestamp::from_secs(1_772_364_600),
            count: 3,
            user_agents: Vec::new(),
            requests: Vec::new(),
            audit_ids: Vec::new(),
            attack: rule.attack(),
            explanation: "e".into(),
            status: crate::finding::Status::Active,
            copies: Vec::new(),
        }
    }

    #[test]
    fn the_cluster_is_an_affected_resource_not_a_cloud_partition() {
        let r = detection_finding(&finding(Rule::TokenUsedOffCluster, Severity::Critical), Activity::Create, "0");
        assert_eq!(r["resources"][0], json!({"type": "Kubernetes Cluster", "name": "prod-eu-1"}));
        assert!(!r.to_string().contains("cloud_partition"));
        assert!(r["unmapped"].get("cluster").is_none(), "mapped, so not unmapped");
    }

    #[test]
    fn the_client_and_the_account_are_evidence_not_top_level() {
        let r = detection_finding(&finding(Rule::TokenUsedOffCluster, Severity::Critical), Activity::Update, "0");
        assert_eq!(r["evidences"][0]["src_endpoint"]["ip"], "203.0.113.50");
        assert_eq!(r["evidences"][0]["actor"]["user"]["name"], "system:serviceaccount:shop:web");
        assert!(r.get("src_endpoint").is_none() && r.get("actor").is_none());
        assert_eq!(r["type_uid"], 200402);
    }

    #[test]
    fn a_withdrawal_is_a_suppressed_update_and_a_standing_finding_stays_new() {
        let mut f = finding(Rule::TokenMultiOrigin, Severity::High);
        let r = detection_finding(&f, Activity::Update, "0");
        assert_eq!((r["status_id"].clone(), r["status"].clone()), (json!(1), json!("New")));
        assert!(r.get("status_detail").is_none());
        f.status = crate::finding::Status::Withdrawn;
        let r = detection_finding(&f, Activity::Update, "0");
        assert_eq!((r["status_id"].clone(), r["status"].clone()), (json!(3), json!("Suppressed")));
        assert_eq!(r["status_detail"], "withdrawn: later evidence explains it");
        assert_eq!((r["finding_info"]["uid"].clone(), r["type_uid"].clone()), (json!("f"), json!(200402)));
    }

    #[test]
    fn an_account_whose_tokens_were_minted_is_a_resource_not_the_actor() {
        let r = detection_finding(&finding(Rule::TokenMintedByUser, Severity::Medium), Activity::Create, "0");
        assert!(r["evidences"][0].get("actor").is_none());
        assert_eq!(r["resources"][2]["type"], "ServiceAccount");
    }

    #[test]
    fn confidence_is_low_when_the_verdict_rests_on_missing_evidence() {
        let confidence = |rule, severity| {
            detection_finding(&finding(rule, severity), Activity::Create, "0")["confidence_id"].as_u64().unwrap()
        };
        assert_eq!(confidence(Rule::TokenUsedOffCluster, Severity::Critical), 3);
        assert_eq!(confidence(Rule::TokenUsedOffCluster, Severity::Medium), 1);
        assert_eq!(confidence(Rule::TokenClientChanged, Severity::Medium), 2);
        // Raised above the catalogue (a legacy token used off-cluster) is still high.
        assert_eq!(confidence(Rule::LegacyTokenForeignIp, Severity::Critical), 3);
    }

    #[test]
    fn every_rule_says_what_to_do_and_names_its_profiles() {
        for rule in Rule::ALL {
            let r = detection_finding(&finding(rule, rule.severity()), Activity::Create, "0");
            assert!(r["remediation"]["desc"].as_str().is_some_and(|d| d.len() > 40), "{rule}");
            assert_eq!(r["metadata"]["profiles"], json!(["datetime"]));
            assert_eq!(r["time_dt"], "2026-03-01T11:30:00Z");
        }
    }

    #[test]
    fn a_count_beyond_ocsfs_32_bits_is_capped_and_kept_exact_in_unmapped() {
        let mut f = finding(Rule::TokenUsedOffCluster, Severity::Critical);
        f.count = 5_000_000_000;
        let r = detection_finding(&f, Activity::Update, "0");
        assert_eq!(r["count"], i32::MAX);
        assert_eq!(r["unmapped"]["count"], 5_000_000_000_u64);
        f.count = 7;
        assert!(detection_finding(&f, Activity::Update, "0")["unmapped"].get("count").is_none());
    }

    #[test]
    fn an_incident_is_an_incident_finding_of_its_members_assigned_to_the_group() {
        let f = finding(Rule::TokenUsedOffCluster, Severity::Critical);
        let other = Finding { id: "g".into(), ..finding(Rule::XffSpoofedSource, Severity::Medium) };
        let i = Incident {
            schema: crate::incident::SCHEMA,
            id: "i".into(),
            severity: Severity::Critical,
            title: "t".into(),
            clusters: vec!["prod-eu-1".into()],
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            serviceaccounts: Vec::new(),
            credentials: Vec::new(),
            attacker_ips: vec!["203.0.113.50".parse().unwrap()],
            principals: Vec::new(),
            findings: vec!["f".into(), "g".into()],
            story: Vec::new(),
            story_left_out: 0,
        };
        let r = incident_finding(&i, &[&f, &other], "k8s-responders", Activity::Create, "0");
        assert_eq!((r["class_uid"].clone(), r["type_uid"].clone()), (json!(2005), json!(200501)));
        assert_eq!(r["assignee_group"], json!({"name": "k8s-responders"}));
        let uids: Vec<&Value> = r["finding_info_list"].as_array().unwrap().iter().map(|fi| &fi["uid"]).collect();
        assert_eq!(uids, [&json!("f"), &json!("g")], "the members, in the incident's order");
        assert_eq!(r["unmapped"]["incident_id"], "i");
        assert_eq!(r["unmapped"]["attacker_ips"], json!(["203.0.113.50"]));
        assert!(r["unmapped"].get("principals").is_none(), "empty lists are left out");
        assert_eq!(r["is_suspected_breach"], true);
    }

    #[test]
    fn sub_techniques_sit_under_their_parent() {
        let r = detection_finding(&finding(Rule::TokenUsedOffCluster, Severity::Critical), Activity::Create, "0");
        let first = &r["finding_info"]["attacks"][0];
        assert_eq!(first["technique"], json!({"uid": "T1550", "name": "Use Alternate Authentication Material"}));
        assert_eq!(first["sub_technique"], json!({"uid": "T1550.001", "name": "Application Access Token"}));
        let plain = &r["finding_info"]["attacks"][1];
        assert_eq!(plain["technique"], json!({"uid": "T1528", "name": "Steal Application Access Token"}));
        assert!(plain.get("sub_technique").is_none());
    }
}
