//! Pod network identity: the interface between the pipeline and a source of pod facts.
//!
//! A pod source (the Kubernetes API watching pods with `spec.nodeName=<node>`, or a test) sends
//! [`PodUpdate`]s on a channel; the pipeline folds them into the node state and attests the
//! changes. [`crate::kube_source`] is the real source; tests also drive the channel directly.

use crate::state::{NodeInfo, NodeState, PodInfo};

/// One change reported by a pod source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodUpdate {
    /// The node's identity or addresses.
    Node(NodeInfo),
    /// A pod appeared or changed.
    Upsert(PodInfo),
    /// A pod is gone from the API (by uid).
    Remove(String),
    /// A full relist: exactly these pods are on the node.
    Replace(Vec<PodInfo>),
}

/// Applies an update to the state (pure).
pub fn apply(state: &mut NodeState, update: PodUpdate) {
    match update {
        PodUpdate::Node(n) => state.node = Some(n),
        PodUpdate::Upsert(p) => {
            state.pods.insert(p.uid.clone(), p);
        }
        PodUpdate::Remove(uid) => {
            state.pods.remove(&uid);
        }
        PodUpdate::Replace(pods) => state.pods = pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> PodInfo {
        PodInfo { uid: uid.into(), ..Default::default() }
    }

    #[test]
    fn updates_fold_into_the_state() {
        let mut s = NodeState::default();
        apply(&mut s, PodUpdate::Upsert(pod("a")));
        apply(&mut s, PodUpdate::Upsert(pod("b")));
        apply(&mut s, PodUpdate::Remove("a".into()));
        assert_eq!(s.pods.keys().collect::<Vec<_>>(), ["b"]);
        apply(&mut s, PodUpdate::Replace(vec![pod("c")]));
        assert_eq!(s.pods.keys().collect::<Vec<_>>(), ["c"]);
        apply(&mut s, PodUpdate::Node(NodeInfo { name: "n".into(), ..Default::default() }));
        assert_eq!(s.node.unwrap().name, "n");
    }
}
