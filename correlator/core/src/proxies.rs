//! The apiservers in front of aggregated apiservers, learned from the log.
//!
//! An aggregated apiserver (openshift-apiserver, oauth-apiserver, metrics-server) is reached
//! through kube-apiserver, which authenticates the client and forwards the request: the
//! aggregated server's own audit entry then reads `sourceIPs: [client, kube-apiserver as seen
//! from it]`. Taken at face value, every such entry would be a forwarded-for header "forged" by
//! its client, and the client address would be the apiserver's.
//!
//! A last hop that many service accounts are forwarded through is such a front: a thief forging
//! `X-Forwarded-For` does it with the one token (or few) they hold. A routable last hop is never
//! taken for one (the apiserver reaches its aggregated servers inside the cluster), nor one a pod
//! is known to hold (a compromised pod forging headers with several stolen tokens).
//!
//! Uses that came through a learned front are judged from the address it forwarded, and are not
//! spoofing. What is learned is order-independent (a set of accounts per hop, capped), so the
//! report does not depend on the order of the evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::hash::FastSet;
use crate::model::{is_global, Model};
use crate::observation::ServiceAccountRef;
use crate::usage::{UseGroup, UseKey};

/// How many distinct service accounts forwarded through one hop make it an apiserver.
pub const ACCOUNTS_FOR_A_FRONT: usize = 3;
/// Hops tracked at most: an aggregated apiserver sees a handful of fronts; a flood of forged
/// hops must not grow the state.
const MAX_HOPS: usize = 4096;

/// Last hops of forwarded service-account requests, with a few of the accounts forwarded
/// through each.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyHops {
    #[serde(with = "crate::pairs")]
    hops: BTreeMap<IpAddr, BTreeSet<ServiceAccountRef>>,
}

impl ProxyHops {
    /// Notes a request of `serviceaccount` whose `sourceIPs` ended in `peer` after other entries.
    pub fn note(&mut self, peer: IpAddr, serviceaccount: ServiceAccountRef<&str>) {
        if self.hops.len() >= MAX_HOPS && !self.hops.contains_key(&peer) {
            return;
        }
        let accounts = self.hops.entry(peer).or_default();
        // The smallest accounts are kept, so what is kept does not depend on order.
        let owned = serviceaccount.into_owned();
        if accounts.len() < ACCOUNTS_FOR_A_FRONT {
            accounts.insert(owned);
        } else if accounts.last().is_some_and(|largest| owned < *largest) && accounts.insert(owned) {
            accounts.pop_last();
        }
    }

    /// Takes in what another engine noted.
    pub fn merge(&mut self, other: ProxyHops) {
        for (peer, accounts) in other.hops {
            for sa in accounts {
                self.note(peer, sa.view());
            }
        }
    }

    /// The hops that are apiservers in front of aggregated apiservers.
    pub fn fronts(&self, model: &Model) -> BTreeSet<IpAddr> {
        self.hops
            .iter()
            .filter(|(ip, accounts)| {
                accounts.len() >= ACCOUNTS_FOR_A_FRONT && !is_global(**ip) && !model.pods.ever_held(**ip)
            })
            .map(|(ip, _)| *ip)
            .collect()
    }
}

/// Use groups whose client is a front, moved to the one address the front forwarded (merged with
/// that address's own group when there is one), with their forwarding no longer counted as
/// spoofing. Returns the moved groups and the keys they replace.
pub fn through_fronts<'a>(
    uses: impl Iterator<Item = (&'a UseKey, &'a UseGroup)> + Clone,
    fronts: &BTreeSet<IpAddr>,
) -> (Vec<(UseKey, UseGroup)>, FastSet<&'a UseKey>) {
    let mut replaced: FastSet<&UseKey> = FastSet::default();
    let mut moved: BTreeMap<UseKey, UseGroup> = BTreeMap::new();
    if fronts.is_empty() {
        return (Vec::new(), replaced);
    }
    for (key, group) in uses.clone() {
        let Some(peer) = key.client.filter(|ip| fronts.contains(ip)) else { continue };
        let behind: Vec<IpAddr> = group.forwarded_ips().filter(|ip| !fronts.contains(ip)).collect();
        // Only a group whose every use came through the front from one address can be moved
        // whole; anything else stays as it is (judged from the front's address, unknown at worst).
        let [client] = behind[..] else { continue };
        if group.forwarded().map_or(0, |f| f.count) != group.uses.count || client == peer {
            continue;
        }
        let mut behind_front = group.clone();
        behind_front.clear_forwarded();
        let moved_key = UseKey { client: Some(client), ..key.clone() };
        match moved.get_mut(&moved_key) {
            Some(g) => g.merge(behind_front),
            None => {
                moved.insert(moved_key, behind_front);
            }
        }
        replaced.insert(key);
    }
    // A moved group joins the group its client had of its own.
    for (key, group) in uses {
        if let Some(m) = moved.get_mut(key) {
            m.merge(group.clone());
            replaced.insert(key);
        }
    }
    (moved.into_iter().collect(), replaced)
}
