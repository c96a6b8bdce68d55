//! Records of the requests around token uses: mints, bearer failures, exec/attach, Secret reads.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::changes::Journal;
use crate::hash::FastMap;
use crate::observation::{BoundPod, PodAccess, PodAccessKind, SecretRead, ServiceAccountRef, TokenMint};
use crate::tally::Tally;
use crate::time::Timestamp;

/// One TokenRequest, its stages folded together.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mint {
    /// When it was requested.
    pub time: Timestamp,
    /// Audit ID.
    pub audit_id: String,
    /// Who minted it.
    pub minter: String,
    /// The minter's client address, from the copy of the request with the fewest `sourceIPs`
    /// hops (an aggregated apiserver's copy has one more: see [`crate::dedup`]).
    pub client: Option<IpAddr>,
    /// `sourceIPs` hops of the copy `client` came from.
    #[serde(default)]
    pub hops: u8,
    /// For which service account.
    pub serviceaccount: ServiceAccountRef,
    /// The issued credential's JTI.
    pub jti: Option<String>,
    /// Bound pod named in the request, if logged at Request level.
    pub bound_pod: Option<BoundPod>,
    /// Kind of the bound object.
    pub bound_kind: Option<String>,
    /// Response code.
    pub code: Option<u16>,
    /// User agent.
    pub user_agent: Option<String>,
}

impl Mint {
    /// Whether the mint issued a token (a refused one issued nothing).
    pub fn succeeded(&self) -> bool {
        self.jti.is_some() || self.code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Every TokenRequest seen, by audit ID, so the stages of one request fold into one mint.
///
/// A kubelet's mint for a pod on its own node can never make a finding: the one question rules
/// still ask of it is when it was minted (which of a pod's tokens is the newer). The stream
/// keeps such mints as that time alone, by JTI ([`Mints::compact`]): the kubelet mints every
/// pod's token every ~48 minutes, so they are most of the mints held.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Mints {
    by_audit_id: HashMap<String, Mint>,
    /// Kubelets' mints for pods on their own nodes, compacted: JTI → when minted.
    #[serde(default)]
    minted: HashMap<String, Timestamp>,
    /// Keys of mints changed or dropped since the changes were last taken (when tracking).
    #[serde(skip)]
    changed: Journal<String>,
    /// JTIs of compacted mints added or dropped since the changes were last taken.
    #[serde(skip)]
    changed_minted: Journal<String>,
}

impl Mints {
    /// Records one copy of a mint (a stage, or an aggregated apiserver's entry) whose
    /// `sourceIPs` had `hops` entries beyond trusted proxies. Whatever order the copies come in,
    /// the mint is the same: facts only some copies carry are kept, and where copies differ the
    /// one with the fewest hops, then the smaller value, wins.
    pub fn add(&mut self, m: TokenMint, client: Option<IpAddr>, hops: u8) {
        let key = if m.audit_id.is_empty() { format!("{}#{}", m.time.0, m.minter) } else { m.audit_id.clone() };
        self.changed.note(|| key.clone());
        let entry = self.by_audit_id.entry(key).or_insert_with(|| Mint {
            time: m.time,
            audit_id: m.audit_id.clone(),
            minter: m.minter.clone(),
            client,
            hops,
            serviceaccount: m.serviceaccount.clone(),
            jti: None,
            bound_pod: None,
            bound_kind: None,
            code: None,
            user_agent: None,
        });
        entry.time = entry.time.min(m.time);
        if (hops, client) < (entry.hops, entry.client) {
            entry.hops = hops;
            entry.client = client;
        }
        // Later stages add what earlier ones lacked: the issued JTI and the response code.
        entry.jti = least(entry.jti.take(), m.jti);
        entry.bound_pod = least(entry.bound_pod.take(), m.bound_pod);
        entry.bound_kind = least(entry.bound_kind.take(), m.bound_kind);
        entry.code = least(entry.code, m.code);
        entry.user_agent = least(entry.user_agent.take(), m.user_agent);
    }

    /// Mints indexed by JTI.
    pub fn by_jti(&self) -> FastMap<&str, &Mint> {
        self.by_audit_id.values().filter_map(|m| Some((m.jti.as_deref()?, m))).collect()
    }

    /// Drops the mints `old` selects (given their JTI and time: compacted ones have nothing
    /// else); how many went.
    pub fn retire(&mut self, mut old: impl FnMut(Option<&str>, Timestamp) -> bool) -> usize {
        let before = self.len();
        let changed = &mut self.changed;
        self.by_audit_id.retain(|key, m| {
            let drop = old(m.jti.as_deref(), m.time);
            if drop {
                changed.note(|| key.clone());
            }
            !drop
        });
        let changed = &mut self.changed_minted;
        self.minted.retain(|jti, &mut time| {
            let drop = old(Some(jti), time);
            if drop {
                changed.note(|| jti.clone());
            }
            !drop
        });
        before - self.len()
    }

    /// Keeps the mints `legitimate` selects (a kubelet's, for a pod of its node: see
    /// [`Mints`]) as their time alone; how many. Only mints that issued a JTI and are older than
    /// `settled` (every stage of the request has come) are taken.
    pub fn compact(&mut self, settled: Timestamp, mut legitimate: impl FnMut(&Mint) -> bool) -> usize {
        let (minted, changed, changed_minted) = (&mut self.minted, &mut self.changed, &mut self.changed_minted);
        let before = self.by_audit_id.len();
        self.by_audit_id.retain(|key, m| {
            let Some(jti) = m.jti.as_deref() else { return true };
            if m.time >= settled || !m.succeeded() || !legitimate(m) {
                return true;
            }
            let t = minted.entry(jti.to_string()).or_insert(m.time);
            *t = (*t).min(m.time);
            changed.note(|| key.clone());
            changed_minted.note(|| jti.to_string());
            false
        });
        before - self.by_audit_id.len()
    }

    /// When the credential `jti` was minted, whole or compacted.
    pub fn minted_at(&self, jti: &str, whole: &FastMap<&str, &Mint>) -> Option<Timestamp> {
        whole.get(jti).map(|m| m.time).or_else(|| self.minted.get(jti).copied())
    }

    /// How many mints are held, whole or compacted.
    pub fn len(&self) -> usize {
        self.by_audit_id.len() + self.minted.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts noting which mints change, for [`Mints::take_changes`].
    pub fn track_changes(&mut self) {
        self.changed.start();
        self.changed_minted.start();
    }

    /// The mints changed since the last call, by key (`None`: dropped), and the compacted ones
    /// by JTI.
    #[allow(clippy::type_complexity)]
    pub fn take_changes(&mut self) -> (Vec<(String, Option<&Mint>)>, Vec<(String, Option<Timestamp>)>) {
        let whole = self.changed.take_with(|k| self.by_audit_id.get(k));
        let compacted = self.changed_minted.take().into_iter().map(|jti| {
            let at = self.minted.get(&jti).copied();
            (jti, at)
        });
        (whole, compacted.collect())
    }

    /// Puts back a mint a changelog held.
    pub fn insert_restored(&mut self, key: String, mint: Mint) {
        self.by_audit_id.insert(key, mint);
    }

    /// Puts back a compacted mint a changelog held.
    pub fn insert_restored_minted(&mut self, jti: String, at: Timestamp) {
        self.minted.insert(jti, at);
    }

    /// Every mint held whole, in no order (for work that does not need one).
    pub fn unordered(&self) -> impl Iterator<Item = &Mint> {
        self.by_audit_id.values()
    }

    /// Every mint held whole, in time order.
    pub fn iter(&self) -> Vec<&Mint> {
        let mut v: Vec<&Mint> = self.by_audit_id.values().collect();
        v.sort_by(|a, b| (a.time, &a.audit_id).cmp(&(b.time, &b.audit_id)));
        v
    }
}

/// Whichever value is there, the smaller when both are: the same whatever order they come in.
fn least<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An exec, attach or port-forward into a pod.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Access {
    /// The request.
    pub access: PodAccess,
    /// Its trusted client address.
    pub client: Option<IpAddr>,
}

impl Access {
    /// The verb as a responder says it.
    pub fn what(&self) -> &'static str {
        match self.access.kind {
            PodAccessKind::Exec => "exec",
            PodAccessKind::Attach => "attach",
            PodAccessKind::PortForward => "port-forward",
        }
    }
}

/// Secret reads by one principal in one namespace (`None`: cluster-wide).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecretReads {
    /// Every read.
    pub reads: Tally,
    /// Names read with `get` (bounded).
    pub names: BTreeSet<String>,
    /// Whether a list or watch was among them (it returns every Secret of the scope).
    pub listed: bool,
    /// Client addresses (bounded).
    pub clients: BTreeSet<IpAddr>,
}

const KEPT: usize = 16;

impl SecretReads {
    /// Adds one successful read.
    pub fn add(&mut self, r: &SecretRead, client: Option<IpAddr>) {
        let request = crate::observation::Request {
            verb: r.verb.as_str(),
            resource: Some("secrets"),
            subresource: None,
            namespace: r.namespace.as_deref(),
            name: r.name.as_deref(),
            code: r.code,
        };
        self.reads.add(r.time, &r.audit_id, r.user_agent.as_deref(), Some(&request));
        match &r.name {
            Some(n) if self.names.len() < KEPT => {
                self.names.insert(n.clone());
            }
            Some(_) => {}
            None => self.listed = true,
        }
        if let Some(ip) = client.filter(|_| self.clients.len() < KEPT) {
            self.clients.insert(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(from: &[&str], code: Option<u16>, jti: Option<&str>) -> TokenMint {
        TokenMint {
            time: Timestamp(1_000),
            audit_id: String::from("m-1"),
            minter: String::from("system:kube-controller-manager"),
            source_ips: from.iter().map(|a| a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))).collect(),
            serviceaccount: ServiceAccountRef { namespace: String::from("kube-system"), name: String::from("x") },
            jti: jti.map(str::to_owned),
            bound_pod: None,
            bound_kind: None,
            code,
            user_agent: Some(String::from("kube-controller-manager/v1.32.0")),
        }
    }

    #[test]
    fn a_mint_is_the_same_whatever_order_its_copies_come_in() {
        // The stages of the kube-apiserver's own entry (one hop), and an aggregated apiserver's
        // copy (the kube-apiserver's address appended).
        let own = IpAddr::from([127, 0, 0, 1]);
        let copies = [
            (copy(&["127.0.0.1"], None, None), Some(own), 1),
            (copy(&["127.0.0.1"], Some(201), Some("j-1")), Some(own), 1),
            (copy(&["127.0.0.1", "10.0.1.10"], Some(201), Some("j-1")), Some(IpAddr::from([10, 0, 1, 10])), 2),
        ];
        let mut orders = vec![vec![0, 1, 2], vec![2, 1, 0], vec![2, 0, 1], vec![1, 2, 0]];
        let mut reference = None;
        for order in orders.drain(..) {
            let mut mints = Mints::default();
            for i in order {
                let (m, client, hops) = copies[i].clone();
                mints.add(m, client, hops);
            }
            let mint = mints.iter()[0].clone();
            assert_eq!((mint.client, mint.code, mint.jti.as_deref()), (Some(own), Some(201), Some("j-1")));
            assert_eq!(reference.get_or_insert_with(|| mint.clone()), &mint);
        }
    }
}
