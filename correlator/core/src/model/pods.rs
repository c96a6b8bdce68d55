//! Pods by UID, with the addresses they held and when they were deleted.
//!
//! Pods are keyed by UID, never by name: a StatefulSet pod recreated under the same name is a
//! different pod with a different token. Audit events that name a pod without its UID (a create
//! request, an exec, some deletes) are kept aside and resolved by name and time once the evidence
//! is in, so the order facts arrive in does not matter.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use crate::changes::Journal;
use crate::hash::FastMap;
use crate::observation::{FactSource, PodEvent, PodFact};
use crate::time::{Timestamp, MINUTE};

/// How far around a pod's known lifetime an address or a name still counts as the pod's: status
/// patches trail the container start by seconds, and deletion takes effect after a grace period.
const LIFETIME_LEEWAY: i64 = 2 * MINUTE;

/// One pod as far as the evidence tells.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    /// UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it was scheduled to.
    pub node: Option<String>,
    /// Service account it runs as.
    pub serviceaccount: Option<String>,
    /// Whether it shares its node's network namespace.
    pub host_network: Option<bool>,
    /// Earliest time any fact places it alive.
    pub first_seen: Timestamp,
    /// Latest time any fact places it alive.
    pub last_seen: Timestamp,
    /// When its deletion was requested.
    pub deleted: Option<Timestamp>,
    /// Addresses it held, with the earliest time each was seen.
    #[serde(with = "crate::pairs")]
    pub addresses: BTreeMap<IpAddr, Timestamp>,
    /// Secrets it mounts as volumes.
    pub secret_volumes: BTreeSet<String>,
    /// Whether an inventory dump or attestation listed it (so its addresses are first-hand).
    pub inventoried: bool,
}

impl Pod {
    /// Whether the pod may have been alive at `t` (with leeway on both ends).
    pub fn alive_at(&self, t: Timestamp) -> bool {
        let start = self.first_seen.plus(-LIFETIME_LEEWAY);
        let end = self.deleted.map_or(Timestamp::MAX, |d| d.plus(LIFETIME_LEEWAY));
        start <= t && t <= end
    }

    /// Whether `ip` was this pod's at `t`: from when the address was first seen (not before: an
    /// address reused minutes after its previous holder was deleted must not be pinned on the
    /// newcomer) until shortly after the pod's deletion.
    pub fn held_at(&self, ip: IpAddr, t: Timestamp) -> bool {
        let Some(&since) = self.addresses.get(&ip) else { return false };
        since <= t && self.deleted.is_none_or(|d| t <= d.plus(LIFETIME_LEEWAY))
    }

    /// How far `t` lies outside the pod's lifetime (0 when inside): used to pick among pods that
    /// shared a name.
    fn distance(&self, t: Timestamp) -> i64 {
        if self.alive_at(t) {
            return 0;
        }
        let to_start = (self.first_seen.0 - t.0).abs();
        let to_end = self.deleted.map_or(i64::MAX, |d| (t.0 - d.0).abs());
        to_start.min(to_end)
    }
}

/// The UIDs of the pods behind one name or address, sorted: almost always one, so a `Vec` (one
/// small allocation) rather than a set (a whole tree node per entry).
type Uids = Vec<String>;

fn add_uid(uids: &mut Uids, uid: &str) {
    if let Err(at) = uids.binary_search_by(|u| u.as_str().cmp(uid)) {
        uids.reserve_exact(1);
        uids.insert(at, uid.to_string());
    }
}

fn remove_uid(uids: &mut Uids, uid: &str) {
    if let Ok(at) = uids.binary_search_by(|u| u.as_str().cmp(uid)) {
        uids.remove(at);
    }
}

/// A pod as its bound token's uses show it: from a use group, not a pod fact.
#[derive(Clone, Copy, Debug)]
pub struct PodSighting<'a> {
    /// UID of the bound pod.
    pub uid: &'a str,
    /// Namespace (the service account's).
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Node at mint time.
    pub node: Option<&'a str>,
    /// First use.
    pub first: Timestamp,
    /// Last use.
    pub last: Timestamp,
}

/// The pods the evidence asks about by name or UID (facts without a UID, exec and attach
/// records, TokenRequests for a pod): the sighted pods that must become pods so the questions
/// find them ([`Pods::note_sightings`]).
#[derive(Debug, Default)]
pub struct PodQuestions {
    /// Names asked about, by namespace.
    names: HashMap<String, HashSet<String>>,
    uids: HashSet<String>,
}

impl PodQuestions {
    /// Asks about the pod named `namespace/name`.
    pub fn name(&mut self, namespace: &str, name: &str) {
        self.names.entry(namespace.to_string()).or_default().insert(name.to_string());
    }

    /// Asks about the pod with this UID.
    pub fn uid(&mut self, uid: &str) {
        self.uids.insert(uid.to_string());
    }

    fn about(&self, s: &PodSighting<'_>) -> bool {
        self.uids.contains(s.uid) || self.names.get(s.namespace).is_some_and(|names| names.contains(s.name))
    }
}

/// All pods, with indexes by name and address.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Pods {
    // Boxed: the map's table then holds pointers, not pods, so a million pods seen only in
    // their tokens' uses cost their own size once rather than the table's spare room over them.
    by_uid: FastMap<String, Box<Pod>>,
    #[serde(with = "crate::pairs")]
    uids_by_name: HashMap<(String, String), Uids>,
    #[serde(with = "crate::pairs")]
    uids_by_ip: HashMap<IpAddr, Uids>,
    unresolved: Vec<PodFact>,
    /// UIDs of pods changed or dropped since the changes were last taken (when tracking).
    #[serde(skip)]
    changed: Journal<String>,
}

impl Pods {
    /// Records a fact. Facts without a UID wait for [`Pods::resolve`].
    pub fn apply(&mut self, fact: PodFact) {
        match fact.uid.clone() {
            Some(uid) if !uid.is_empty() => self.apply_to(&uid, &fact),
            _ => self.unresolved.push(fact),
        }
    }

    /// Records that a pod existed at `t`, as a bound token's claims show.
    pub fn note_bound(&mut self, uid: &str, namespace: &str, name: &str, node: Option<&str>, t: Timestamp) {
        // A known pod only has its lifetime stretched.
        if let Some(pod) = self.by_uid.get_mut(uid) {
            let stretched = t < pod.first_seen || t > pod.last_seen || (pod.node.is_none() && node.is_some());
            if stretched {
                self.changed.note(|| uid.to_string());
                pod.first_seen = pod.first_seen.min(t);
                pod.last_seen = pod.last_seen.max(t);
                if pod.node.is_none() {
                    pod.node = node.map(str::to_string);
                }
            }
            return;
        }
        let fact = PodFact {
            time: t,
            uid: Some(uid.to_string()),
            namespace: namespace.to_string(),
            name: name.to_string(),
            node: node.map(str::to_string),
            ..PodFact::default()
        };
        self.apply_to(uid, &fact);
    }

    /// Notes the pods that bound tokens' uses show, where a question needs them.
    ///
    /// A pod-bound use proves its pod existed then. But a million credentials used once are a
    /// million pods, which kept as pods would cost more than the uses themselves (an attacker's
    /// flood, or a big cluster's churn). So such pods stay in their use groups, and become pods
    /// here only when the evidence asks about them: pods known already (their lifetimes stretched
    /// over their uses), and pods that [`PodQuestions`] names. Noting the same sightings twice
    /// changes nothing.
    pub fn note_sightings<'a>(&mut self, sightings: impl IntoIterator<Item = PodSighting<'a>>, asked: &PodQuestions) {
        for s in sightings {
            if self.contains(s.uid) || asked.about(&s) {
                self.note_bound(s.uid, s.namespace, s.name, s.node, s.first);
                self.note_bound(s.uid, s.namespace, s.name, s.node, s.last);
            }
        }
    }

    /// The names facts without a UID gave, waiting for [`Pods::resolve`].
    pub fn unresolved_names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.unresolved.iter().map(|f| (f.namespace.as_str(), f.name.as_str()))
    }

    fn apply_to(&mut self, uid: &str, fact: &PodFact) {
        self.changed.note(|| uid.to_string());
        let pod = self.by_uid.entry(uid.to_string()).or_insert_with(|| {
            Box::new(Pod {
                uid: uid.to_string(),
                namespace: fact.namespace.clone(),
                name: fact.name.clone(),
                first_seen: fact.time,
                last_seen: fact.time,
                ..Pod::default()
            })
        });
        if fact.event == Some(PodEvent::Deleted) {
            pod.deleted = Some(pod.deleted.map_or(fact.time, |d| d.min(fact.time)));
        } else {
            pod.first_seen = pod.first_seen.min(fact.time);
            pod.last_seen = pod.last_seen.max(fact.time);
        }
        if fact.node.is_some() {
            pod.node.clone_from(&fact.node);
        }
        if fact.serviceaccount.is_some() {
            pod.serviceaccount.clone_from(&fact.serviceaccount);
        }
        if fact.host_network.is_some() {
            pod.host_network = fact.host_network;
        }
        if matches!(fact.source, Some(FactSource::Inventory | FactSource::Attestation)) {
            pod.inventoried = true;
        }
        pod.secret_volumes.extend(fact.secret_volumes.iter().cloned());
        for &ip in &fact.ips {
            let since = pod.addresses.entry(ip).or_insert(fact.time);
            *since = (*since).min(fact.time);
            add_uid(self.uids_by_ip.entry(ip).or_default(), uid);
        }
        add_uid(self.uids_by_name.entry((pod.namespace.clone(), pod.name.clone())).or_default(), uid);
    }

    /// Attaches the facts that named a pod without its UID to the pod of that name alive at the
    /// fact's time (or nearest to it). A name no UID-bearing fact mentions gets a placeholder
    /// pod, so its addresses and deletion still count.
    pub fn resolve(&mut self) {
        for fact in std::mem::take(&mut self.unresolved) {
            // A create names the pod about to exist; anything else names one already running.
            let uid = self
                .pick_by_name(&fact.namespace, &fact.name, fact.time, fact.event == Some(PodEvent::Created))
                .unwrap_or_else(|| format!("unknown-uid:{}/{}", fact.namespace, fact.name));
            self.apply_to(&uid, &fact);
        }
    }

    /// The UID of the pod named `namespace/name` at `t`: the one alive then (or nearest), and
    /// between a pod going and its namesake coming, the one already running.
    pub fn uid_by_name(&self, namespace: &str, name: &str, t: Timestamp) -> Option<String> {
        self.pick_by_name(namespace, name, t, false)
    }

    fn pick_by_name(&self, namespace: &str, name: &str, t: Timestamp, newcomer: bool) -> Option<String> {
        let uids = self.uids_by_name.get(&(namespace.to_string(), name.to_string()))?;
        uids.iter()
            .filter_map(|u| self.get(u))
            .min_by_key(|p| {
                let started_later = p.first_seen > t;
                (p.distance(t), started_later != newcomer, if newcomer { p.first_seen.0 } else { -p.first_seen.0 })
            })
            .map(|p| p.uid.clone())
    }

    /// Keeps the pods `keep` selects (and their name and address index entries); how many
    /// were dropped ([`crate::expiry`]).
    pub fn retain(&mut self, mut keep: impl FnMut(&Pod) -> bool) -> usize {
        let mut dropped = Vec::new();
        self.by_uid.retain(|_, p| {
            let k = keep(p);
            if !k {
                dropped.push((
                    p.namespace.clone(),
                    p.name.clone(),
                    p.addresses.keys().copied().collect::<Vec<_>>(),
                    p.uid.clone(),
                ));
            }
            k
        });
        for (namespace, name, ips, uid) in &dropped {
            self.changed.note(|| uid.clone());
            let key = (namespace.clone(), name.clone());
            if let Some(uids) = self.uids_by_name.get_mut(&key) {
                remove_uid(uids, uid);
                if uids.is_empty() {
                    self.uids_by_name.remove(&key);
                }
            }
            for ip in ips {
                if let Some(uids) = self.uids_by_ip.get_mut(ip) {
                    remove_uid(uids, uid);
                    if uids.is_empty() {
                        self.uids_by_ip.remove(ip);
                    }
                }
            }
        }
        dropped.len()
    }

    /// Puts back a pod a changelog held, with its name and address index entries.
    pub fn insert_restored(&mut self, pod: Pod) {
        for &ip in pod.addresses.keys() {
            add_uid(self.uids_by_ip.entry(ip).or_default(), &pod.uid);
        }
        add_uid(self.uids_by_name.entry((pod.namespace.clone(), pod.name.clone())).or_default(), &pod.uid);
        self.by_uid.insert(pod.uid.clone(), Box::new(pod));
    }

    /// Starts noting which pods change, for [`Pods::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed.start();
    }

    /// The pods changed since the last call, by UID (`None`: dropped).
    pub fn take_changes(&mut self) -> Vec<(String, Option<&Pod>)> {
        self.changed.take_with(|uid| self.by_uid.get(uid).map(|p| &**p))
    }

    /// The facts that named a pod without its UID, waiting for [`Pods::resolve`].
    pub fn unresolved(&self) -> &[PodFact] {
        &self.unresolved
    }

    /// Puts back the unresolved facts a changelog held.
    pub fn restore_unresolved(&mut self, facts: Vec<PodFact>) {
        self.unresolved = facts;
    }

    /// Whether a pod with this UID is known.
    pub fn contains(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// The pod with this UID.
    pub fn get(&self, uid: &str) -> Option<&Pod> {
        self.by_uid.get(uid).map(|p| &**p)
    }

    /// Pods that held `ip` at `t`.
    pub fn holders_at(&self, ip: IpAddr, t: Timestamp) -> impl Iterator<Item = &Pod> + '_ {
        self.uids_by_ip.get(&ip).into_iter().flatten().filter_map(|u| self.get(u)).filter(move |p| p.held_at(ip, t))
    }

    /// Whether any pod ever held `ip`.
    pub fn ever_held(&self, ip: IpAddr) -> bool {
        self.uids_by_ip.contains_key(&ip)
    }

    /// Every pod, in UID order.
    pub fn iter(&self) -> impl Iterator<Item = &Pod> {
        let mut pods: Vec<&Pod> = self.by_uid.values().map(|p| &**p).collect();
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        pods.into_iter()
    }

    /// Pods that mount the Secret `namespace/secret`.
    pub fn mounting(&self, namespace: &str, secret: &str) -> Vec<&Pod> {
        self.iter().filter(|p| p.namespace == namespace && p.secret_volumes.contains(secret)).collect()
    }

    /// Whether any pod came from an inventory dump or an attestation.
    pub fn have_inventory(&self) -> bool {
        self.by_uid.values().any(|p| p.inventoried)
    }

    /// Number of pods known.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Whether no pod is known.
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> Timestamp {
        Timestamp(1_800_000_000_000_000 + min * MINUTE)
    }

    fn fact(uid: Option<&str>, name: &str, min: i64, event: PodEvent) -> PodFact {
        PodFact {
            time: t(min),
            event: Some(event),
            uid: uid.map(str::to_string),
            namespace: "shop".into(),
            name: name.into(),
            ..PodFact::default()
        }
    }

    #[test]
    fn a_statefulset_pod_recreated_under_its_name_is_a_new_pod() {
        let mut pods = Pods::default();
        pods.apply(fact(Some("uid-1"), "db-0", 0, PodEvent::Observed));
        pods.apply(fact(None, "db-0", 60, PodEvent::Deleted));
        pods.apply(fact(Some("uid-2"), "db-0", 62, PodEvent::Status));
        pods.resolve();
        assert_eq!(pods.get("uid-1").unwrap().deleted, Some(t(60)));
        assert_eq!(pods.get("uid-2").unwrap().deleted, None);
        assert_eq!(pods.uid_by_name("shop", "db-0", t(30)).as_deref(), Some("uid-1"));
        assert_eq!(pods.uid_by_name("shop", "db-0", t(90)).as_deref(), Some("uid-2"));
    }

    #[test]
    fn an_address_belongs_to_a_pod_only_while_it_lives() {
        let mut pods = Pods::default();
        let ip: IpAddr = "10.244.1.7".parse().unwrap();
        let mut old = fact(Some("old"), "a", 0, PodEvent::Status);
        old.ips = vec![ip];
        pods.apply(old);
        pods.apply(fact(Some("old"), "a", 10, PodEvent::Deleted));
        let mut new = fact(Some("new"), "b", 20, PodEvent::Status);
        new.ips = vec![ip];
        pods.apply(new);
        let at = |m| pods.holders_at(ip, t(m)).map(|p| p.uid.clone()).collect::<Vec<_>>();
        assert_eq!(at(5), ["old"]);
        assert_eq!(at(30), ["new"]);
        assert!(at(19).is_empty(), "the newcomer holds the address only from when it was seen with it");
    }
}
