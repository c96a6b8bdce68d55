//! What the agent knows about its node, and the difference between two such states (pure).
//!
//! The driver keeps one [`NodeState`], replaces parts of it after each scan or pod update, and
//! sends [`diff`] of the state before and after as a delta. A snapshot is the state itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::layout::Location;
use crate::scan::HeldCredential;

/// A node's identity and addresses (from the Kubernetes API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `status.addresses` as (type, address).
    pub addresses: Vec<(String, IpAddr)>,
    /// `spec.podCIDRs`, in CIDR notation.
    pub pod_cidrs: Vec<String>,
}

/// A pod's identity and network identity (from the Kubernetes API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.serviceAccountName`.
    pub serviceaccount: String,
    /// `status.podIPs`.
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `status.phase`.
    pub phase: String,
    /// `status.startTime` (µs since the Unix epoch).
    pub started_at_micros: Option<i64>,
    /// `metadata.deletionTimestamp` (µs since the Unix epoch).
    pub deletion_requested_at_micros: Option<i64>,
    /// Secret volumes as (volume name, Secret name).
    pub secret_volumes: Vec<(String, String)>,
}

/// Everything the agent knows about its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The node, once the API said.
    pub node: Option<NodeInfo>,
    /// Pods on the node, by uid.
    pub pods: BTreeMap<String, PodInfo>,
    /// Token files on the node, by location.
    pub credentials: BTreeMap<Location, HeldCredential>,
}

impl NodeState {
    /// Replaces every credential with the given ones (a full scan).
    pub fn replace_all_credentials(&mut self, credentials: BTreeMap<Location, HeldCredential>) {
        self.credentials = credentials;
    }

    /// Replaces the credentials of one pod (a scan of that pod's directory).
    pub fn replace_pod_credentials(&mut self, pod_uid: &str, credentials: BTreeMap<Location, HeldCredential>) {
        self.credentials.retain(|l, _| l.pod_uid != pod_uid);
        self.credentials.extend(credentials.into_iter().filter(|(l, _)| l.pod_uid == pod_uid));
    }
}

/// A credential whose file is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedCredential {
    /// Where it was.
    pub location: Location,
    /// The JTI it held.
    pub jti: Option<String>,
}

/// What changed between two states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// The node, when it changed.
    pub node: Option<NodeInfo>,
    /// Pods new or changed.
    pub pods_upserted: Vec<PodInfo>,
    /// Pods gone (uids).
    pub pods_removed: Vec<String>,
    /// Credentials new or changed at their location (a rotation).
    pub credentials_upserted: Vec<HeldCredential>,
    /// Credentials gone.
    pub credentials_removed: Vec<RemovedCredential>,
}

impl Delta {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.node.is_none()
            && self.pods_upserted.is_empty()
            && self.pods_removed.is_empty()
            && self.credentials_upserted.is_empty()
            && self.credentials_removed.is_empty()
    }

    /// How many credentials were rotated: upserted at a location that held another JTI before.
    pub fn rotations(&self, before: &NodeState) -> usize {
        self.credentials_upserted
            .iter()
            .filter(|c| before.credentials.get(&c.location).is_some_and(|old| old.claims.jti != c.claims.jti))
            .count()
    }
}

/// The changes that turn `old` into `new`, in key order.
pub fn diff(old: &NodeState, new: &NodeState) -> Delta {
    let (pods_upserted, pods_removed) = diff_maps(&old.pods, &new.pods);
    let (credentials_upserted, removed) = diff_maps(&old.credentials, &new.credentials);
    Delta {
        node: if old.node != new.node { new.node.clone() } else { None },
        pods_upserted,
        pods_removed,
        credentials_upserted,
        credentials_removed: removed
            .into_iter()
            .map(|location| {
                let jti = old.credentials.get(&location).and_then(|c| c.claims.jti.clone());
                RemovedCredential { location, jti }
            })
            .collect(),
    }
}

fn diff_maps<K: Ord + Clone, V: PartialEq + Clone>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> (Vec<V>, Vec<K>) {
    let upserted = new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(_, v)| v.clone()).collect();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    (upserted, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Claims, TokenKind};
    use crate::layout::VolumeKind;

    fn cred(pod: &str, volume: &str, jti: &str) -> HeldCredential {
        let location =
            Location { pod_uid: pod.into(), kind: VolumeKind::Projected, volume: volume.into(), file: "token".into() };
        let claims = Claims {
            kind: TokenKind::PodBound,
            jti: Some(jti.into()),
            issuer: "https://kubernetes.default.svc".into(),
            subject: "system:serviceaccount:ns:sa".into(),
            audiences: vec![],
            issued_at: None,
            not_before: None,
            expires_at: None,
            warn_after: None,
            namespace: "ns".into(),
            serviceaccount: None,
            pod: None,
            node: None,
            bound_secret: None,
            legacy_secret_name: None,
        };
        HeldCredential { location, claims, written_at_micros: Some(1) }
    }

    fn state(creds: &[HeldCredential]) -> NodeState {
        NodeState { credentials: creds.iter().map(|c| (c.location.clone(), c.clone())).collect(), ..Default::default() }
    }

    #[test]
    fn identical_states_have_an_empty_delta() {
        let s = state(&[cred("p1", "v", "j1")]);
        assert!(diff(&s, &s.clone()).is_empty());
    }

    #[test]
    fn rotation_is_an_upsert_at_the_same_location() {
        let before = state(&[cred("p1", "v", "j1"), cred("p2", "v", "k1")]);
        let after = state(&[cred("p1", "v", "j2"), cred("p2", "v", "k1")]);
        let d = diff(&before, &after);
        assert_eq!(d.credentials_upserted, vec![cred("p1", "v", "j2")]);
        assert!(d.credentials_removed.is_empty());
        assert_eq!(d.rotations(&before), 1);
    }

    #[test]
    fn a_vanished_token_file_is_removed_with_its_jti() {
        let before = state(&[cred("p1", "v", "j1")]);
        let d = diff(&before, &NodeState::default());
        assert_eq!(
            d.credentials_removed,
            vec![RemovedCredential { location: cred("p1", "v", "j1").location, jti: Some("j1".into()) }]
        );
        assert_eq!(d.rotations(&before), 0);
    }

    #[test]
    fn pods_and_node_changes_are_reported() {
        let mut before = NodeState::default();
        before.pods.insert("p1".into(), PodInfo { uid: "p1".into(), ..Default::default() });
        let mut after =
            NodeState { node: Some(NodeInfo { name: "n".into(), ..Default::default() }), ..Default::default() };
        after.pods.insert("p2".into(), PodInfo { uid: "p2".into(), ..Default::default() });
        let d = diff(&before, &after);
        assert_eq!(d.node.unwrap().name, "n");
        assert_eq!(d.pods_upserted.len(), 1);
        assert_eq!(d.pods_removed, vec!["p1".to_string()]);
    }

    #[test]
    fn replacing_one_pods_credentials_leaves_the_others() {
        let mut s = state(&[cred("p1", "a", "j1"), cred("p1", "b", "j2"), cred("p2", "a", "k1")]);
        let fresh = state(&[cred("p1", "a", "j3"), cred("p2", "a", "ignored")]).credentials;
        s.replace_pod_credentials("p1", fresh);
        let jtis: Vec<_> = s.credentials.values().map(|c| c.claims.jti.clone().unwrap()).collect();
        assert_eq!(jtis, ["j3", "k1"]);
    }
}
