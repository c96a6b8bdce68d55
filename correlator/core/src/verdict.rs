//! Was this use of a credential from where it should be? The per-use-group judgement that the
//! origin rules, the client-address table and coverage all share.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::activity::Mint;
use crate::client::Os;
use crate::config::EngineConfig;
use crate::model::{Model, Place, Pod};
use crate::net::IpNet;
use crate::observation::{ServiceAccountRef, TokenSecretFact};
use crate::usage::{CredentialKey, UseGroup, UseKey};

/// A use group with its judgement.
pub(crate) type Judged<'a> = (&'a UseKey, &'a UseGroup, Judgement);

/// The verdict on the uses of one credential from one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// From the pod (or node, or egress) the credential belongs to.
    Expected,
    /// The evidence does not allow a verdict; [`Judgement::unknown_because`] says why.
    Unknown,
    /// From somewhere the credential does not belong.
    Unexpected,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Expected => "expected",
            Verdict::Unknown => "unknown",
            Verdict::Unexpected => "unexpected",
        })
    }
}

/// Why a use could not be verified. The texts appear in the coverage section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnknownBecause {
    /// No `sourceIPs` on the event.
    NoSourceAddress,
    /// The token kind is not in the evidence (GKE entries, Kubernetes before 1.30).
    NoCredentialInfo,
    /// An unbound TokenRequest token: no pod to compare with.
    Unbound,
    /// Nothing is known of the bound pod's addresses.
    PodAddressesUnknown,
    /// The address is private and the cluster's networks are unknown.
    NetworksUnknown,
    /// No pod is known to mount the legacy token's Secret.
    LegacyMountsUnknown,
    /// From the apiserver's own host (loopback): a host-network pod on a control-plane node.
    ApiserverHost,
}

impl UnknownBecause {
    /// The reason, with what would fix it.
    pub fn text(self) -> &'static str {
        match self {
            UnknownBecause::NoSourceAddress => "no source address in the audit event",
            UnknownBecause::NoCredentialInfo => {
                "no pod binding or credential id in the evidence (GKE audit entries, or Kubernetes before 1.30)"
            }
            UnknownBecause::Unbound => "unbound token (kubectl create token, controllers): no pod to compare with",
            UnknownBecause::PodAddressesUnknown => {
                "bound pod's addresses unknown: add pods.json, or log pods/status at Request level"
            }
            UnknownBecause::NetworksUnknown => {
                "private address outside known pods and nodes: add nodes.json or --cluster-network"
            }
            UnknownBecause::LegacyMountsUnknown => "no pod known to mount the token's Secret: add pods.json",
            UnknownBecause::ApiserverHost => {
                "from the apiserver's own host (loopback): a host-network pod on a control-plane node"
            }
        }
    }
}

/// Knowledge an [`Verdict::Unexpected`] verdict stands on without having it: the address is
/// not the credential's as far as the evidence goes, but the evidence does not go all the way.
/// Findings that rest on missing knowledge are at most medium and say what would settle them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Missing {
    /// The cluster's extent is not known ([`Model::extent_known`]): a routable address may still
    /// be the cluster's own (public node addresses, the NAT gateway that nodes and pods reach a
    /// public apiserver endpoint through).
    ClusterNetworks,
    /// The bound pod's node has no known address: the client may be that node.
    NodeAddresses,
}

impl Missing {
    /// What is missing and which evidence would settle it.
    pub fn text(self) -> &'static str {
        match self {
            Missing::ClusterNetworks => {
                "the cluster's networks are not known (no pod CIDRs, and its nodes are unknown or talk from \
                 routable addresses), and a routable address can be the cluster's own (public node addresses, a \
                 NAT gateway); add nodes.json (pod CIDRs and node addresses) or --cluster-network / --egress-ip \
                 to settle it"
            }
            Missing::NodeAddresses => {
                "the addresses of the pod's node are not known, and the client may be that node; add nodes.json, \
                 or an audit log that includes the node's kubelet requests, to settle it"
            }
        }
    }
}

/// The judgement on one use group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Where the client address sat at the first use.
    pub place: Option<Place>,
    /// Addresses the credential was expected to come from.
    pub expected: BTreeSet<IpAddr>,
    /// Why it could not be verified, for [`Verdict::Unknown`].
    pub unknown_because: Option<UnknownBecause>,
    /// For [`Verdict::Unexpected`]: the knowledge the verdict lacks, if any.
    pub rests_on: Option<Missing>,
    /// The OS a client of the uses named that the credential's node does not run (macOS, a phone,
    /// Windows for a Linux node): used outside the cluster whatever the address.
    pub foreign_os: Option<Os>,
}

impl Judgement {
    fn unknown(because: UnknownBecause, place: Option<Place>, expected: BTreeSet<IpAddr>) -> Judgement {
        Judgement {
            verdict: Verdict::Unknown,
            place,
            expected,
            unknown_because: Some(because),
            rests_on: None,
            foreign_os: None,
        }
    }

    fn expected(place: Option<Place>, expected: BTreeSet<IpAddr>) -> Judgement {
        Judgement {
            verdict: Verdict::Expected,
            place,
            expected,
            unknown_because: None,
            rests_on: None,
            foreign_os: None,
        }
    }

    fn unexpected(place: Option<Place>, expected: BTreeSet<IpAddr>) -> Judgement {
        Judgement {
            verdict: Verdict::Unexpected,
            place,
            expected,
            unknown_because: None,
            rests_on: None,
            foreign_os: None,
        }
    }

    /// An unexpected verdict that stands on missing knowledge.
    fn unexpected_without(missing: Missing, place: Option<Place>, expected: BTreeSet<IpAddr>) -> Judgement {
        Judgement { rests_on: Some(missing), ..Judgement::unexpected(place, expected) }
    }

    /// Whether the client is outside the cluster: by its address, or by the OS it runs.
    pub fn off_cluster(&self) -> bool {
        self.place == Some(Place::OffCluster) || self.foreign_os.is_some()
    }
}

/// What judging needs besides the use group itself.
pub struct Judge<'a> {
    /// Pods and nodes.
    pub model: &'a Model,
    /// The cluster's networks ([`Model::cluster_networks`]).
    pub networks: &'a [IpNet],
    /// Engine settings.
    pub config: &'a EngineConfig,
    /// Token Secrets by (namespace, name).
    pub token_secrets: &'a std::collections::BTreeMap<(String, String), TokenSecretFact>,
    /// Mints held whole, by JTI.
    pub mints: &'a crate::hash::FastMap<&'a str, &'a Mint>,
    /// Every mint, the compacted ones too.
    pub all_mints: &'a crate::activity::Mints,
}

impl Judge<'_> {
    /// When the credential `jti` was minted, if its TokenRequest is held.
    pub fn minted_at(&self, jti: &str) -> Option<crate::time::Timestamp> {
        self.all_mints.minted_at(jti, self.mints)
    }

    /// Judges the uses of `key.credential` from `key.client`.
    pub fn judge(&self, key: &UseKey, group: &UseGroup) -> Judgement {
        let Some(ip) = key.client else {
            return Judgement::unknown(UnknownBecause::NoSourceAddress, None, BTreeSet::new());
        };
        let place = self.model.place(ip, group.first(), self.networks, self.config);
        match &key.credential {
            CredentialKey::PodBound { pod_uid, .. } => self.judge_pod_bound(ip, place, pod_uid, group),
            CredentialKey::Legacy { secret } => self.judge_legacy(ip, place, &key.serviceaccount, secret.as_deref()),
            CredentialKey::Unbound { jti } => {
                // The minter's own address is where an unbound token is expected (a controller
                // minting for itself); anything else cannot be judged without a binding.
                let minted_from = self.mints.get(jti.as_str()).and_then(|m| m.client);
                let expected: BTreeSet<IpAddr> = minted_from.into_iter().collect();
                if expected.contains(&ip) {
                    Judgement::expected(Some(place), expected)
                } else {
                    Judgement::unknown(UnknownBecause::Unbound, Some(place), expected)
                }
            }
            CredentialKey::Unknown => {
                Judgement::unknown(UnknownBecause::NoCredentialInfo, Some(place), BTreeSet::new())
            }
        }
    }

    fn judge_pod_bound(&self, ip: IpAddr, place: Place, pod_uid: &str, group: &UseGroup) -> Judgement {
        let expected = self.model.expected_for_pod(pod_uid, group.node.as_deref());
        let pod = self.model.pods.get(pod_uid);
        let node = group.node.as_deref().or_else(|| pod.and_then(|p| p.node.as_deref()));
        // The client's own word that it runs where no node of this pod does outweighs any address:
        // a laptop behind the NAT gateway the nodes share looks like a node by address alone.
        let node_os = node.and_then(|n| self.model.nodes.get(n)).and_then(|n| n.os);
        let foreign_os = group
            .clients
            .iter()
            .find_map(|(c, _)| c.os.filter(|&os| !os.runs_nodes() || node_os.is_some_and(|n| n != os)));
        if let Some(os) = foreign_os {
            return Judgement { foreign_os: Some(os), ..Judgement::unexpected(Some(place), expected) };
        }
        if expected.contains(&ip) || self.config.is_egress(ip) {
            return Judgement::expected(Some(place), expected);
        }
        let pod_addresses_known = pod.is_some_and(|p| !p.addresses.is_empty());
        // A pod's own node's address is the pod's (hostNetwork, SNAT): while the node's addresses
        // are unknown, any address the pod is not known to lack could be the node's.
        let node_addresses_known = node.and_then(|n| self.model.nodes.get(n)).is_some_and(|n| !n.addresses.is_empty());
        let unexpected = |place: Place| {
            if node_addresses_known {
                Judgement::unexpected(Some(place), expected.clone())
            } else {
                Judgement::unexpected_without(Missing::NodeAddresses, Some(place), expected.clone())
            }
        };
        match &place {
            Place::OffCluster if !self.model.extent_known(self.networks) => {
                Judgement::unexpected_without(Missing::ClusterNetworks, Some(place), expected)
            }
            Place::OffCluster => Judgement::unexpected(Some(place), expected),
            Place::Pod { uid, .. } if **uid == *pod_uid => Judgement::expected(Some(place), expected),
            // Another pod held the address then: that is evidence, not absence of it.
            Place::Pod { .. } => Judgement::unexpected(Some(place), expected),
            // Another node's address is damning only if we know which node the pod was on.
            Place::Node(_) if node.is_some() => unexpected(place),
            Place::Node(_) => Judgement::unknown(UnknownBecause::PodAddressesUnknown, Some(place), expected),
            Place::Egress => Judgement::expected(Some(place), expected),
            // The apiserver's own host: a hostNetwork pod on a control-plane node talks from there
            // (OpenShift's operators use localhost), and which node that is the log does not say.
            // A pod in its own network namespace cannot reach the host's loopback at all.
            Place::Loopback if pod.is_some_and(|p| p.host_network == Some(false)) => unexpected(place),
            Place::Loopback => Judgement::unknown(UnknownBecause::ApiserverHost, Some(place), expected),
            Place::InCluster if pod_addresses_known => unexpected(place),
            Place::InCluster => Judgement::unknown(UnknownBecause::PodAddressesUnknown, Some(place), expected),
            Place::Unknown => Judgement::unknown(UnknownBecause::NetworksUnknown, Some(place), expected),
        }
    }

    fn judge_legacy(&self, ip: IpAddr, place: Place, sa: &ServiceAccountRef, secret: Option<&str>) -> Judgement {
        let mounting = self.mounting_pods(sa, secret);
        let mut expected = BTreeSet::new();
        for pod in &mounting {
            expected.extend(self.model.expected_for_pod(&pod.uid, pod.node.as_deref()));
        }
        if expected.contains(&ip) || self.config.is_egress(ip) {
            return Judgement::expected(Some(place), expected);
        }
        if place == Place::OffCluster && !self.model.extent_known(self.networks) {
            return Judgement::unexpected_without(Missing::ClusterNetworks, Some(place), expected);
        }
        if place == Place::Loopback && !mounting.iter().all(|p| p.host_network == Some(false)) {
            // A host-network pod mounting it may run on the apiserver's host (every pod, when
            // none is known to mount it).
            return Judgement::unknown(UnknownBecause::ApiserverHost, Some(place), expected);
        }
        if place == Place::OffCluster || !mounting.is_empty() || self.model.pods.have_inventory() {
            // With an inventory of pods, a token no listed pod mounts has left its Secret.
            return Judgement::unexpected(Some(place), expected);
        }
        Judgement::unknown(UnknownBecause::LegacyMountsUnknown, Some(place), expected)
    }

    /// Pods that mount the legacy token's Secret; without the Secret's name (before 1.29), pods
    /// mounting any token Secret of the service account.
    pub fn mounting_pods(&self, sa: &ServiceAccountRef, secret: Option<&str>) -> Vec<&Pod> {
        match secret {
            Some(s) => self.model.pods.mounting(&sa.namespace, s),
            None => self
                .token_secrets
                .values()
                .filter(|s| s.namespace == sa.namespace && s.serviceaccount.as_deref() == Some(sa.name.as_str()))
                .flat_map(|s| self.model.pods.mounting(&s.namespace, &s.name))
                .collect(),
        }
    }
}
