//! Findings as OCSF 1.3 Detection Findings (class_uid 2004), for SIEMs that speak OCSF.
//!
//! Mapping: the finding id is `finding_info.uid`, the rule is the analytic, the client address is
//! `src_endpoint`, the service account is the actor, the pod is a resource, ATT&CK techniques are
//! `finding_info.attacks`; what OCSF has no place for (credential id, expected addresses, audit
//! IDs, requests) goes to `unmapped`.

use serde_json::{json, Map, Value};

use crate::finding::{Finding, Severity};

/// OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.3.0";

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

fn millis(t: crate::Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

/// The OCSF record of a finding.
pub fn detection_finding(f: &Finding, activity: Activity, product_version: &str) -> Value {
    let (activity_id, activity_name) = match activity {
        Activity::Create => (1, "Create"),
        Activity::Update => (2, "Update"),
    };
    let attacks: Vec<Value> =
        f.attack.iter().map(|t| json!({"technique": {"uid": t.id, "name": t.name}, "version": "v15"})).collect();
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
        "status_id": 1,
        "status": "New",
        "time": millis(f.last_seen),
        "count": f.count,
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "tokentrail", "vendor_name": "tokentrail", "version": product_version},
            "uid": f.id,
        },
        "finding_info": {
            "uid": f.id,
            "title": f.title,
            "desc": f.explanation,
            "types": [f.rule.id()],
            "first_seen_time": millis(f.first_seen),
            "last_seen_time": millis(f.last_seen),
            "analytic": {"uid": f.rule.id(), "name": f.rule.id(), "type_id": 1, "type": "Rule"},
            "attacks": attacks,
        },
    });
    let obj = record.as_object_mut().expect("json! built an object");
    if let Some(ip) = f.source_ip {
        obj.insert("src_endpoint".into(), json!({"ip": ip.to_string()}));
        obj.insert(
            "observables".into(),
            json!([{"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip.to_string()}]),
        );
    }
    if let Some(sa) = &f.serviceaccount {
        let mut user = Map::new();
        user.insert("name".into(), json!(format!("system:serviceaccount:{}:{}", sa.namespace, sa.name)));
        user.insert("type_id".into(), json!(3));
        user.insert("type".into(), json!("System"));
        if let Some(uid) = &sa.uid {
            user.insert("uid".into(), json!(uid));
        }
        if let Some(c) = f.credential.as_ref().and_then(|c| c.id.as_ref()) {
            user.insert("credential_uid".into(), json!(c));
        }
        obj.insert("actor".into(), json!({"user": Value::Object(user)}));
    }
    if let Some(pod) = &f.pod {
        let mut r = json!({"type": "Pod", "name": pod.name, "namespace": pod.namespace});
        if let Some(uid) = &pod.uid {
            r["uid"] = json!(uid);
        }
        if let Some(cluster) = &f.cluster {
            r["cloud_partition"] = json!(cluster);
        }
        obj.insert("resources".into(), json!([r]));
    }
    let mut unmapped = Map::new();
    unmapped.insert("schema".into(), json!(f.schema));
    if let Some(c) = &f.cluster {
        unmapped.insert("cluster".into(), json!(c));
    }
    if let Some(c) = &f.credential {
        unmapped.insert("credential".into(), serde_json::to_value(c).unwrap_or(Value::Null));
    }
    if let Some(node) = f.pod.as_ref().and_then(|p| p.node.as_ref()) {
        unmapped.insert("node".into(), json!(node));
    }
    for (key, value) in [
        ("source_ips", serde_json::to_value(&f.source_ips)),
        ("expected_ips", serde_json::to_value(&f.expected_ips)),
        ("user_agents", serde_json::to_value(&f.user_agents)),
        ("requests", serde_json::to_value(&f.requests)),
        ("audit_ids", serde_json::to_value(&f.audit_ids)),
    ] {
        match value {
            Ok(Value::Array(a)) if a.is_empty() => {}
            Ok(v) => {
                unmapped.insert(key.into(), v);
            }
            Err(_) => {}
        }
    }
    obj.insert("unmapped".into(), Value::Object(unmapped));
    record
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
