//! API objects to observations, and what a watch's events add to what was sent (pure).
//!
//! An object is converted by the decoder `tokentrail analyze` reads `kubectl get -o json` dumps
//! with (`tokentrail_aggregator_core::decode_value` on the object as JSON): the stream and the
//! forensic mode cannot disagree about what a Pod or a token Secret says.
//!
//! Token Secrets are watched as metadata only ([`secret_metadata`]): the token never reaches the
//! aggregator, so it cannot be logged, kept or sent. The decoder reads nothing else of a Secret
//! (its observations of a dump's Secret carry no data and no hash either).
//!
//! [`Tracker`] remembers a fingerprint of what each object last became, so that a watch's
//! modifications which change nothing the engine reads (a Node's heartbeat, a Pod's condition)
//! and a re-list's copies of unchanged objects send nothing; a re-list that no longer has a pod
//! sends its deletion, as the watch event it missed would have.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::{json, Value};
use tokentrail_aggregator_core::{decode_value, Decoded};
use tokentrail_proto::observation::{FactSource, PodEvent, PodFact};
use tokentrail_proto::{Observation, Timestamp};

/// The kinds the feed watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Pods, all namespaces.
    Pods,
    /// Nodes.
    Nodes,
    /// ServiceAccounts, all namespaces.
    Serviceaccounts,
    /// Secrets of type `kubernetes.io/service-account-token`, metadata only.
    Secrets,
}

impl Kind {
    /// Every kind, in the order the feed starts them.
    pub const ALL: [Kind; 4] = [Kind::Serviceaccounts, Kind::Secrets, Kind::Nodes, Kind::Pods];

    /// The object's `kind`, as a dump writes it.
    pub fn object_kind(self) -> &'static str {
        match self {
            Kind::Pods => "Pod",
            Kind::Nodes => "Node",
            Kind::Serviceaccounts => "ServiceAccount",
            Kind::Secrets => "Secret",
        }
    }

    /// The resource's plural name, as RBAC and the configuration name it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pods => "pods",
            Kind::Nodes => "nodes",
            Kind::Serviceaccounts => "serviceaccounts",
            Kind::Secrets => "secrets",
        }
    }
}

/// The Secret type of legacy service-account tokens, the field selector of the Secret watch.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// An API object (`Pod`, `Node`, `ServiceAccount`) as the dump decoder reads it: serialized
/// with its `kind` and `apiVersion`, which watch events leave out. `managedFields` is dropped
/// (large, and nothing reads it).
pub fn object_json<K: Serialize>(kind: Kind, object: &K) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(object)?;
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), Value::from("v1"));
        map.insert("kind".into(), Value::from(kind.object_kind()));
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.remove("managedFields");
        }
    }
    Ok(value)
}

/// A token Secret from its metadata alone (the watch selects the type): what a dump's Secret
/// is to the decoder, without ever having held the token.
pub fn secret_metadata(metadata: &ObjectMeta) -> Result<Value, serde_json::Error> {
    let mut meta = serde_json::to_value(metadata)?;
    if let Value::Object(m) = &mut meta {
        m.remove("managedFields");
    }
    Ok(json!({"apiVersion": "v1", "kind": "Secret", "type": SERVICE_ACCOUNT_TOKEN_TYPE, "metadata": meta}))
}

/// What the dump decoder makes of one object (observations, and problems to report).
pub fn decode(object: &Value) -> Decoded {
    let mut out = Decoded::new();
    // A Value always serializes; an empty text decodes to nothing.
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    decode_value(&bytes, &mut out);
    out
}

/// Who an object is to the tracker: its uid, else its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    kind: Kind,
    id: String,
}

/// The pod behind a tracked key, to say it is gone when a re-list no longer has it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodName {
    uid: Option<String>,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct Sent {
    fingerprint: u64,
    pod: Option<PodName>,
}

/// What was sent for each object the watches have shown, to send only what changed.
#[derive(Debug, Default)]
pub struct Tracker {
    sent: HashMap<Key, Sent>,
    /// Keys a re-list under way has shown, per kind.
    relisting: HashMap<Kind, HashSet<Key>>,
}

impl Tracker {
    /// An empty tracker: everything the first list shows is sent.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// An object added or modified (`Apply`, or `InitApply` during a re-list): its
    /// observations, or nothing when they are what was last sent for it.
    pub fn apply(&mut self, kind: Kind, meta: &ObjectMeta, observations: Vec<Observation>) -> Vec<Observation> {
        let key = key(kind, meta);
        if let Some(seen) = self.relisting.get_mut(&kind) {
            seen.insert(key.clone());
        }
        let fingerprint = fingerprint(&observations);
        if self.sent.get(&key).is_some_and(|s| s.fingerprint == fingerprint) {
            return Vec::new();
        }
        let pod = (kind == Kind::Pods).then(|| pod_name(meta));
        self.sent.insert(key, Sent { fingerprint, pod });
        observations
    }

    /// An object deleted (`Delete`): a pod's deletion (the decoder's, from
    /// `deletionTimestamp`, else one at `now`); nothing for other kinds, whose deletion the
    /// engine does not model.
    pub fn delete(
        &mut self,
        kind: Kind,
        meta: &ObjectMeta,
        observations: Vec<Observation>,
        now: Timestamp,
    ) -> Vec<Observation> {
        self.sent.remove(&key(kind, meta));
        if kind != Kind::Pods {
            return Vec::new();
        }
        let deleted: Vec<Observation> = observations
            .into_iter()
            .filter(|o| matches!(o, Observation::Pod(p) if p.event == Some(PodEvent::Deleted)))
            .collect();
        if deleted.is_empty() {
            vec![pod_deleted(&pod_name(meta), now)]
        } else {
            deleted
        }
    }

    /// A re-list of `kind` begins (`Init`): the objects it does not show are gone.
    pub fn relist_started(&mut self, kind: Kind) {
        self.relisting.insert(kind, HashSet::new());
    }

    /// The re-list of `kind` is complete (`InitDone`): the deletions of the pods it did not
    /// show (deleted while no watch was open), dated `now`; other kinds are forgotten.
    pub fn relist_done(&mut self, kind: Kind, now: Timestamp) -> Vec<Observation> {
        let Some(seen) = self.relisting.remove(&kind) else { return Vec::new() };
        let mut gone = Vec::new();
        self.sent.retain(|key, sent| {
            if key.kind != kind || seen.contains(key) {
                return true;
            }
            if let Some(pod) = &sent.pod {
                gone.push(pod_deleted(pod, now));
            }
            false
        });
        gone
    }
}

fn key(kind: Kind, meta: &ObjectMeta) -> Key {
    let id = match meta.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(uid) => uid.to_string(),
        None => format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("")),
    };
    Key { kind, id }
}

fn pod_name(meta: &ObjectMeta) -> PodName {
    PodName {
        uid: meta.uid.clone().filter(|u| !u.is_empty()),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// The fact the decoder writes for a deleted pod, dated when the feed learned of it.
fn pod_deleted(pod: &PodName, at: Timestamp) -> Observation {
    Observation::Pod(PodFact {
        time: at,
        event: Some(PodEvent::Deleted),
        source: Some(FactSource::Inventory),
        uid: pod.uid.clone(),
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ..PodFact::default()
    })
}

/// A digest of observations, to tell whether an object changed anything the engine reads.
/// (`Observation` has no `Hash`; its `Debug` text is complete and stable within a process.)
fn fingerprint(observations: &[Observation]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    format!("{observations:?}").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};

    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn running_pod() -> Pod {
        pod(json!({
            "metadata": {"name": "api-0", "namespace": "shop", "uid": "u-1",
                          "creationTimestamp": "2026-01-01T10:00:00Z",
                          "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "node-a", "serviceAccountName": "api",
                      "containers": [{"name": "app"}],
                      "volumes": [{"name": "t", "secret": {"secretName": "legacy-token"}}]},
            "status": {"phase": "Running", "startTime": "2026-01-01T10:00:05Z",
                        "podIP": "10.1.0.7", "podIPs": [{"ip": "10.1.0.7"}],
                        "hostIP": "192.0.2.10", "hostIPs": [{"ip": "192.0.2.10"}]}
        }))
    }

    fn observations_of(kind: Kind, object: &impl Serialize) -> Vec<Observation> {
        let decoded = decode(&object_json(kind, object).unwrap());
        assert!(decoded.problems.is_empty(), "{:?}", decoded.problems);
        decoded.observations
    }

    #[test]
    fn a_watched_pod_becomes_what_the_dump_decoder_makes_of_the_same_pod() {
        let p = running_pod();
        let watched = observations_of(Kind::Pods, &p);
        // The same pod as a `kubectl get pods -o json` List holds it.
        let dump = json!({"apiVersion": "v1", "kind": "List", "items": [serde_json::to_value(&p).unwrap()]});
        let mut from_dump = Decoded::new();
        decode_value(&serde_json::to_vec(&dump).unwrap(), &mut from_dump);
        assert_eq!(watched, from_dump.observations);
        let Observation::Pod(fact) = &watched[0] else { panic!("{watched:?}") };
        assert_eq!(fact.event, Some(PodEvent::Observed));
        assert_eq!(fact.source, Some(FactSource::Inventory));
        assert_eq!((fact.uid.as_deref(), fact.node.as_deref()), (Some("u-1"), Some("node-a")));
        assert_eq!(fact.ips, vec!["10.1.0.7".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(fact.secret_volumes, vec!["legacy-token".to_string()]);
        assert_eq!(fact.time, ts("2026-01-01T10:00:05Z"));
        // The pod's node address, as a dump's pod gives it.
        assert!(matches!(&watched[1], Observation::Node(n) if n.name == "node-a"), "{watched:?}");
    }

    #[test]
    fn managed_fields_are_left_out_and_kind_and_api_version_put_in() {
        let v = object_json(Kind::Pods, &running_pod()).unwrap();
        assert_eq!((v["kind"].as_str(), v["apiVersion"].as_str()), (Some("Pod"), Some("v1")));
        assert!(v["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn nodes_and_serviceaccounts_convert() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-a", "creationTimestamp": "2026-01-01T09:00:00Z"},
            "spec": {"podCIDR": "10.1.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                                      {"type": "Hostname", "address": "node-a"}]}
        }))
        .unwrap();
        let Observation::Node(node) = &observations_of(Kind::Nodes, &n)[0] else { panic!() };
        assert_eq!(node.addresses, vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(node.pod_cidrs.len(), 1);
        let sa: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": "legacy", "namespace": "shop", "uid": "sa-1",
                          "creationTimestamp": "2026-01-01T09:00:00Z"},
            "secrets": [{"name": "legacy-token"}]
        }))
        .unwrap();
        let Observation::ServiceAccount(fact) = &observations_of(Kind::Serviceaccounts, &sa)[0] else { panic!() };
        assert_eq!(fact.serviceaccount.as_ref().map(|s| s.name.as_str()), Some("legacy"));
        assert_eq!(fact.secrets, vec!["legacy-token".to_string()]);
    }

    #[test]
    fn a_token_secret_from_its_metadata_alone() {
        let meta: ObjectMeta = serde_json::from_value(json!({
            "name": "legacy-token", "namespace": "shop", "uid": "s-1",
            "creationTimestamp": "2026-01-01T09:00:00Z",
            "annotations": {"kubernetes.io/service-account.name": "legacy"},
            "labels": {"kubernetes.io/legacy-token-last-used": "2026-01-01"}
        }))
        .unwrap();
        let decoded = decode(&secret_metadata(&meta).unwrap());
        let [Observation::TokenSecret(s)] = &decoded.observations[..] else { panic!("{:?}", decoded.observations) };
        assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "legacy-token"));
        assert_eq!(s.serviceaccount.as_deref(), Some("legacy"));
        assert_eq!(s.last_used.as_deref(), Some("2026-01-01"));
    }

    fn meta(uid: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn unchanged_objects_are_sent_once_and_changes_again() {
        let mut t = Tracker::new();
        let p = running_pod();
        let obs = observations_of(Kind::Pods, &p);
        assert_eq!(t.apply(Kind::Pods, &p.metadata, obs.clone()).len(), 2);
        assert!(t.apply(Kind::Pods, &p.metadata, obs.clone()).is_empty(), "a condition change sends nothing");
        let mut moved = p.clone();
        moved.status.as_mut().unwrap().pod_ip = Some("10.1.0.8".into());
        moved.status.as_mut().unwrap().pod_ips = None;
        assert_eq!(t.apply(Kind::Pods, &moved.metadata, observations_of(Kind::Pods, &moved)).len(), 2);
    }

    #[test]
    fn a_relist_resends_nothing_unchanged_and_deletes_the_pods_it_lost() {
        let mut t = Tracker::new();
        let now = ts("2026-01-01T12:00:00Z");
        let p = running_pod();
        let obs = observations_of(Kind::Pods, &p);
        t.apply(Kind::Pods, &p.metadata, obs.clone());
        t.apply(Kind::Pods, &meta("u-2", "gone-0"), vec![pod_deleted(&pod_name(&meta("u-2", "gone-0")), now)]);
        t.apply(Kind::Serviceaccounts, &meta("sa-1", "api"), Vec::new());
        t.relist_started(Kind::Pods);
        assert!(t.apply(Kind::Pods, &p.metadata, obs).is_empty());
        let gone = t.relist_done(Kind::Pods, now);
        let [Observation::Pod(fact)] = &gone[..] else { panic!("{gone:?}") };
        assert_eq!(
            (fact.uid.as_deref(), fact.name.as_str(), fact.event),
            (Some("u-2"), "gone-0", Some(PodEvent::Deleted))
        );
        assert_eq!(fact.time, now);
        // Other kinds are untouched by a pod re-list; a second InitDone without Init does nothing.
        assert_eq!(t.len(), 2);
        assert!(t.relist_done(Kind::Pods, now).is_empty());
    }

    #[test]
    fn a_deletion_is_the_pods_deletion_and_nothing_for_other_kinds() {
        let mut t = Tracker::new();
        let now = ts("2026-01-01T12:00:00Z");
        let mut p = running_pod();
        t.apply(Kind::Pods, &p.metadata, observations_of(Kind::Pods, &p));
        // Deleted at once (no grace period): no deletionTimestamp, the deletion is dated now.
        let out = t.delete(Kind::Pods, &p.metadata, observations_of(Kind::Pods, &p), now);
        let [Observation::Pod(fact)] = &out[..] else { panic!("{out:?}") };
        assert_eq!((fact.event, fact.time, fact.uid.as_deref()), (Some(PodEvent::Deleted), now, Some("u-1")));
        assert!(t.is_empty());
        // Deleted gracefully: the decoder's deletion, at deletionTimestamp.
        p.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2026-01-01T11:59:30Z")).unwrap());
        let out = t.delete(Kind::Pods, &p.metadata, observations_of(Kind::Pods, &p), now);
        let [Observation::Pod(fact)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(fact.time, ts("2026-01-01T11:59:30Z"));
        assert!(t.delete(Kind::Serviceaccounts, &meta("sa-1", "api"), Vec::new(), now).is_empty());
    }
}
