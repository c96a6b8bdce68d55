//! The serde shapes of the Kubernetes objects we read: Pods, Nodes, ServiceAccounts, Secrets,
//! Bindings, DeleteOptions and TokenRequests, as they appear in `kubectl get -o json` dumps and
//! in audit events' `requestObject` / `responseObject`.
//!
//! Only the fields the engine needs are declared; serde skips the rest without allocating.
//! A Secret's `data` and `stringData` and a TokenRequest's `status` (which holds the token at
//! audit level RequestResponse) are deliberately absent.

use serde::Deserialize;
use tokentrail_proto::IpNet;

use crate::json::{pick_keys, Str};

/// `metadata` of any object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObjectMeta<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub creation_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub deletion_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub annotations: Option<ObjectAnnotations<'a>>,
    #[serde(borrow)]
    pub labels: Option<ObjectLabels<'a>>,
}

/// The annotation `tokentrail collect` writes on a token Secret in place of its data: the
/// SHA-256 of the token, in hex (the literal is repeated in [`ObjectAnnotations`], which needs it
/// as a pattern; a test keeps the two equal).
pub const TOKEN_SHA256_ANNOTATION: &str = "tokentrail.io/token-sha256";

pick_keys!(
    /// Object annotations we read (never `last-applied-configuration`, which can hold a
    /// Secret's data).
    ObjectAnnotations {
        service_account_name: ["kubernetes.io/service-account.name"],
        /// [`TOKEN_SHA256_ANNOTATION`].
        token_sha256: ["tokentrail.io/token-sha256"],
    }
);

pick_keys!(
    /// Object labels we read: the legacy-token tracking labels of token Secrets.
    ObjectLabels {
        legacy_token_last_used: ["kubernetes.io/legacy-token-last-used"],
        legacy_token_invalid_since: ["kubernetes.io/legacy-token-invalid-since"],
    }
);

/// A Pod (or a patch of one, as the kubelet's `pods/status` patch).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Pod<'a> {
    #[serde(borrow)]
    pub metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow)]
    pub spec: Option<PodSpec<'a>>,
    #[serde(borrow)]
    pub status: Option<PodStatus<'a>>,
}

/// `Pod.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodSpec<'a> {
    #[serde(borrow)]
    pub node_name: Option<Str<'a>>,
    #[serde(borrow)]
    pub service_account_name: Option<Str<'a>>,
    /// Deprecated alias of `serviceAccountName`, still set by old clients.
    #[serde(borrow)]
    pub service_account: Option<Str<'a>>,
    pub host_network: Option<bool>,
    #[serde(borrow)]
    pub volumes: Option<Vec<Volume<'a>>>,
}

impl PodSpec<'_> {
    /// Names of the Secrets mounted as volumes, directly or through a projected volume.
    pub fn secret_volumes(&self) -> Vec<String> {
        let mut names = Vec::new();
        for v in self.volumes.iter().flatten() {
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                names.push(name.to_string());
            }
            let sources = v.projected.as_ref().and_then(|p| p.sources.as_ref());
            for name in sources.into_iter().flatten().filter_map(|s| s.secret.as_ref()?.name.as_deref()) {
                names.push(name.to_string());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// `serviceAccountName`, falling back to the deprecated `serviceAccount`.
    pub fn serviceaccount(&self) -> Option<String> {
        self.service_account_name
            .as_deref()
            .or(self.service_account.as_deref())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// One entry of `Pod.spec.volumes`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Volume<'a> {
    #[serde(borrow)]
    pub secret: Option<SecretVolumeSource<'a>>,
    #[serde(borrow)]
    pub projected: Option<ProjectedVolumeSource<'a>>,
}

/// `volumes[].secret`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretVolumeSource<'a> {
    #[serde(borrow)]
    pub secret_name: Option<Str<'a>>,
}

/// `volumes[].projected`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProjectedVolumeSource<'a> {
    #[serde(borrow)]
    pub sources: Option<Vec<ProjectionSource<'a>>>,
}

/// `volumes[].projected.sources[]`: only Secret projections matter here.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProjectionSource<'a> {
    #[serde(borrow)]
    pub secret: Option<NameRef<'a>>,
}

/// Any `{name: ...}` reference.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NameRef<'a> {
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
}

/// `Pod.status`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodStatus<'a> {
    #[serde(borrow)]
    pub phase: Option<Str<'a>>,
    #[serde(borrow, rename = "podIP")]
    pub pod_ip: Option<Str<'a>>,
    #[serde(borrow, rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp<'a>>>,
    #[serde(borrow)]
    pub start_time: Option<Str<'a>>,
    #[serde(borrow, rename = "hostIP")]
    pub host_ip: Option<Str<'a>>,
    #[serde(borrow, rename = "hostIPs")]
    pub host_ips: Option<Vec<PodIp<'a>>>,
}

impl PodStatus<'_> {
    /// The addresses of the pod's node (`hostIPs[].ip`, or `hostIP`); unparseable ones are
    /// left out (the node's own facts report them).
    pub fn host_addresses(&self) -> Vec<std::net::IpAddr> {
        let listed: Vec<&str> = match &self.host_ips {
            Some(list) if !list.is_empty() => list.iter().filter_map(|p| p.ip.as_deref()).collect(),
            _ => self.host_ip.as_deref().into_iter().collect(),
        };
        let mut ips = Vec::new();
        for ip in listed.iter().filter_map(|s| s.trim().parse().ok()) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        ips
    }

    /// `podIPs[].ip`, or `podIP` when the list is absent; unparseable entries are returned
    /// separately so the caller can report them.
    pub fn ips(&self) -> (Vec<std::net::IpAddr>, Vec<String>) {
        let listed: Vec<&str> = match &self.pod_ips {
            Some(list) if !list.is_empty() => list.iter().filter_map(|p| p.ip.as_deref()).collect(),
            _ => self.pod_ip.as_deref().into_iter().collect(),
        };
        let mut ips = Vec::new();
        let mut bad = Vec::new();
        for s in listed.into_iter().filter(|s| !s.is_empty()) {
            match s.trim().parse() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => bad.push(s.to_string()),
            }
        }
        (ips, bad)
    }
}

/// `Pod.status.podIPs[]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PodIp<'a> {
    #[serde(borrow)]
    pub ip: Option<Str<'a>>,
}

/// A Node, as a request or response body carries it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Node<'a> {
    #[serde(borrow)]
    pub metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow)]
    pub spec: Option<NodeSpec<'a>>,
    #[serde(borrow)]
    pub status: Option<NodeStatus<'a>>,
}

/// `Node.spec`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NodeSpec<'a> {
    #[serde(borrow, rename = "podCIDR")]
    pub pod_cidr: Option<Str<'a>>,
    #[serde(borrow, rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<Str<'a>>>,
}

impl NodeSpec<'_> {
    /// The node's pod networks (`podCIDRs`, else the older `podCIDR`), each once, and the entries
    /// that are not networks, for the caller to report.
    pub fn pod_cidrs(&self) -> (Vec<IpNet>, Vec<&str>) {
        let listed: Vec<&str> = match &self.pod_cidrs {
            Some(list) if !list.is_empty() => list.iter().map(|c| &**c).collect(),
            _ => self.pod_cidr.as_deref().into_iter().collect(),
        };
        let (mut networks, mut bad) = (Vec::new(), Vec::new());
        for c in listed.into_iter().filter(|c| !c.is_empty()) {
            match c.parse::<IpNet>() {
                Ok(net) if !networks.contains(&net) => networks.push(net),
                Ok(_) => {}
                Err(_) => bad.push(c),
            }
        }
        (networks, bad)
    }
}

/// `Node.status`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NodeStatus<'a> {
    #[serde(borrow)]
    pub addresses: Option<Vec<NodeAddress<'a>>>,
    #[serde(borrow, rename = "nodeInfo")]
    pub node_info: Option<NodeInfo<'a>>,
}

impl NodeStatus<'_> {
    /// `InternalIP` and `ExternalIP` addresses; providers that list DNS names under these types
    /// have them left out.
    pub fn ips(&self) -> Vec<std::net::IpAddr> {
        let mut ips = Vec::new();
        for a in self.addresses.iter().flatten() {
            if !matches!(a.type_.as_deref(), Some("InternalIP" | "ExternalIP")) {
                continue;
            }
            if let Some(ip) = a.address.as_deref().and_then(|s| s.trim().parse().ok()) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        ips
    }

    /// `nodeInfo.operatingSystem`.
    pub fn os(&self) -> Option<String> {
        self.node_info.as_ref().and_then(|i| i.operating_system.as_deref()).map(str::to_string)
    }
}

/// `Node.status.nodeInfo`, of which the OS is read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NodeInfo<'a> {
    #[serde(borrow, rename = "operatingSystem")]
    pub operating_system: Option<Str<'a>>,
}

/// `Node.status.addresses[]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NodeAddress<'a> {
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
    #[serde(borrow)]
    pub address: Option<Str<'a>>,
}

/// A Secret, without its data.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Secret<'a> {
    #[serde(borrow)]
    pub metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow, rename = "type")]
    pub type_: Option<Str<'a>>,
}

/// The Secret type of legacy service-account tokens.
pub(crate) const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// A `pods/binding` request object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Binding<'a> {
    #[serde(borrow)]
    pub metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow)]
    pub target: Option<TargetRef<'a>>,
}

/// `Binding.target`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TargetRef<'a> {
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
}

/// A `delete` request object: `DeleteOptions`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeleteOptions<'a> {
    #[serde(borrow)]
    pub preconditions: Option<Preconditions<'a>>,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Preconditions<'a> {
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
}

/// A TokenRequest request object; its `status` (the token) is never read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenRequest<'a> {
    #[serde(borrow)]
    pub spec: Option<TokenRequestSpec<'a>>,
}

/// `TokenRequest.spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRequestSpec<'a> {
    #[serde(borrow)]
    pub bound_object_ref: Option<BoundObjectRef<'a>>,
}

/// `TokenRequest.spec.boundObjectRef`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BoundObjectRef<'a> {
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
}

/// A ServiceAccount's `secrets[]` entry.
pub(crate) type SecretRefs<'a> = Vec<NameRef<'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_volumes_direct_and_projected() {
        let spec: PodSpec<'_> = serde_json::from_str(
            r#"{"volumes":[{"name":"a","secret":{"secretName":"legacy-tok"}},{"name":"b","projected":{"sources":[{"secret":{"name":"other"}},{"serviceAccountToken":{"path":"token"}}]}},{"name":"c","emptyDir":{}}]}"#,
        )
        .unwrap();
        assert_eq!(spec.secret_volumes(), vec!["legacy-tok".to_string(), "other".to_string()]);
    }

    #[test]
    fn pod_ips_prefer_the_list_and_report_bad_entries() {
        let st: PodStatus<'_> =
            serde_json::from_str(r#"{"podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"},{"ip":"fd00::1"},{"ip":"nope"}]}"#)
                .unwrap();
        let (ips, bad) = st.ips();
        assert_eq!(ips.len(), 2);
        assert_eq!(bad, vec!["nope".to_string()]);
        let st: PodStatus<'_> = serde_json::from_str(r#"{"podIP":"10.0.0.2"}"#).unwrap();
        assert_eq!(st.ips().0, vec!["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]);
    }

    #[test]
    fn a_secret_is_read_without_its_data() {
        let s: Secret<'_> = serde_json::from_str(
            r#"{"type":"kubernetes.io/service-account-token","data":{"token":"ZXlKaGJH"},"metadata":{"name":"t"}}"#,
        )
        .unwrap();
        assert_eq!(s.type_.as_deref(), Some(SERVICE_ACCOUNT_TOKEN_TYPE));
        assert!(!format!("{s:?}").contains("ZXlKaGJH"));
    }
}
