//! Pod network identity from the Kubernetes API with kube-rs (driver), scoped to this node.
//!
//! Two kube-rs watchers: pods with `spec.nodeName=<node>` and the Node with
//! `metadata.name=<node>`. The watcher lists, then watches from the list's resourceVersion, and
//! relists or resumes by itself when a watch breaks (with kube-rs's default back-off); each
//! relist becomes one [`PodUpdate::Replace`], so pods deleted while the watch was down disappear.
//! Conversion from the API objects ([`pod_info`], [`node_info`]) is pure.

use std::net::IpAddr;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::pods::PodUpdate;
use crate::state::{NodeInfo, PodInfo};

/// Watches this node's pods and Node object, sending [`PodUpdate`]s until the receiver is
/// dropped. Errors of the API are logged and retried with back-off; this never returns early.
pub async fn run(client: Client, node: String, tx: mpsc::Sender<PodUpdate>) {
    let pods = watcher::watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
    )
    .default_backoff();
    let nodes =
        watcher::watcher(Api::<Node>::all(client), watcher::Config::default().fields(&format!("metadata.name={node}")))
            .default_backoff();
    tokio::pin!(pods, nodes);
    let mut relist: Option<Vec<PodInfo>> = None;
    loop {
        let update = tokio::select! {
            () = tx.closed() => return,
            Some(ev) = pods.next() => match ev {
                Ok(Event::Init) => { relist = Some(Vec::new()); None }
                Ok(Event::InitApply(p)) => { relist.get_or_insert_with(Vec::new).extend(pod_info(&p)); None }
                Ok(Event::InitDone) => relist.take().map(PodUpdate::Replace),
                Ok(Event::Apply(p)) => pod_info(&p).map(PodUpdate::Upsert),
                Ok(Event::Delete(p)) => p.metadata.uid.map(PodUpdate::Remove),
                Err(e) => { tracing::warn!(error = %e, "pod watch failed; retrying"); None }
            },
            Some(ev) = nodes.next() => match ev {
                Ok(Event::Apply(n) | Event::InitApply(n)) => Some(PodUpdate::Node(node_info(&n))),
                Ok(_) => None,
                Err(e) => { tracing::warn!(error = %e, "node watch failed; retrying"); None }
            },
        };
        if let Some(update) = update {
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
}

/// The agent's view of a Pod; `None` without a uid (never the case for stored objects).
pub fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().filter_map(|p| p.ip.parse().ok()).collect())
        .unwrap_or_default();
    if ips.is_empty() {
        ips.extend(status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse::<IpAddr>().ok()));
    }
    Some(PodInfo {
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        serviceaccount: spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into()),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        started_at_micros: status
            .and_then(|s| s.start_time.as_ref())
            .or(meta.creation_timestamp.as_ref())
            .map(|t| t.0.as_microsecond()),
        deletion_requested_at_micros: meta.deletion_timestamp.as_ref().map(|t| t.0.as_microsecond()),
        secret_volumes: spec
            .and_then(|s| s.volumes.as_ref())
            .map(|vols| {
                vols.iter().filter_map(|v| Some((v.name.clone(), v.secret.as_ref()?.secret_name.clone()?))).collect()
            })
            .unwrap_or_default(),
    })
}

/// The agent's view of a Node: addresses that are IPs (not `Hostname`), and pod CIDRs.
pub fn node_info(node: &Node) -> NodeInfo {
    let status = node.status.as_ref();
    let spec = node.spec.as_ref();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        addresses: status
            .and_then(|s| s.addresses.as_ref())
            .map(|a| a.iter().filter_map(|a| Some((a.type_.clone(), a.address.parse().ok()?))).collect())
            .unwrap_or_default(),
        pod_cidrs: spec
            .and_then(|s| s.pod_cidrs.clone().or_else(|| s.pod_cidr.clone().map(|c| vec![c])))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pod_identity_is_taken_from_spec_and_status() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "api-0", "namespace": "payments", "uid": "u1",
                         "creationTimestamp": "2026-03-01T10:00:00Z", "deletionTimestamp": "2026-03-01T11:00:00Z"},
            "spec": {"nodeName": "worker-1", "serviceAccountName": "api", "containers": [],
                     "volumes": [{"name": "legacy", "secret": {"secretName": "api-token-x"}}, {"name": "cfg", "configMap": {"name": "c"}}]},
            "status": {"phase": "Running", "podIP": "10.244.1.12", "podIPs": [{"ip": "10.244.1.12"}, {"ip": "fd00::12"}],
                       "startTime": "2026-03-01T10:00:05Z"}
        }));
        let info = pod_info(&p).unwrap();
        assert_eq!(
            (info.uid.as_str(), info.namespace.as_str(), info.name.as_str(), info.serviceaccount.as_str()),
            ("u1", "payments", "api-0", "api")
        );
        assert_eq!(info.ips, ["10.244.1.12".parse::<IpAddr>().unwrap(), "fd00::12".parse().unwrap()]);
        assert_eq!(info.phase, "Running");
        assert_eq!(info.started_at_micros, Some(1_772_359_205_000_000));
        assert_eq!(info.deletion_requested_at_micros, Some(1_772_362_800_000_000));
        assert_eq!(info.secret_volumes, [("legacy".to_string(), "api-token-x".to_string())]);
        assert!(!info.host_network);
    }

    #[test]
    fn host_network_pods_and_the_single_pod_ip_field_are_understood() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "kube-proxy-x", "namespace": "kube-system", "uid": "u2"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"podIP": "10.0.1.11"}
        }));
        let info = pod_info(&p).unwrap();
        assert!(info.host_network);
        assert_eq!(info.ips, ["10.0.1.11".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.serviceaccount, "default");
        assert!(pod_info(&pod(serde_json::json!({"metadata": {"name": "no-uid"}}))).is_none());
    }

    #[test]
    fn node_addresses_keep_ips_only() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1", "uid": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.11"}, {"type": "Hostname", "address": "worker-1"}]}
        }))
        .unwrap();
        let info = node_info(&n);
        assert_eq!(info.addresses, [("InternalIP".to_string(), "10.0.1.11".parse().unwrap())]);
        assert_eq!(info.pod_cidrs, ["10.244.1.0/24"]);
        assert_eq!(info.uid, "n1");
    }
}
