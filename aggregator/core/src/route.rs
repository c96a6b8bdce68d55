//! Which partition of the observations topic each observation goes to (pure: in the core so that
//! the correlator's tests route evidence exactly as the aggregator does).
//!
//! The correlator runs one engine per partition (docs/design.md §1), so an observation must land where
//! every rule that needs it runs. The record key is `cluster/namespace/serviceaccount`, and the
//! choice for each kind is:
//!
//! * **About one service account** (key = that account): token uses, mints (the account the
//!   token is for), ServiceAccount objects, agents' credential facts and foreign reads of token
//!   files (the account of the token read), token Secrets whose `service-account.name`
//!   annotation names their account.
//! * **About a pod**: exec/attach/port-forward go to the pod's service account. A pod's create
//!   event and the agents' attestations name it; its exec events do not, so the [`Directory`]
//!   remembers `pod → service account` (bounded) from the facts that named it. Pod facts
//!   themselves are broadcast (below): who held an address is part of every account's verdicts.
//! * **Secret reads**: a `get` of a token Secret the directory knows goes to that Secret's
//!   account, next to the Secret's fact.
//! * **Broadcast** (one copy on every partition, key `cluster/~broadcast/<kind>`, header
//!   `BROADCAST_HEADER`): what every partition's engine needs or what cannot be placed: node
//!   facts (cluster networks and node addresses are part of every verdict), pod facts (so are
//!   pods' addresses), 401s (a revoked
//!   token's replay is matched by address against any account's uses), and pod facts, exec
//!   events, token Secrets and Secret reads whose account is not known (a cold directory after a
//!   restart, a `list` of Secrets). Exactly one copy of each broadcast, on the partition the key
//!   hashes to by [`home_partition`], carries `HOME_HEADER`: a correlator that raises findings
//!   from broadcast copies raises them from the home copy only, so one event is one finding.
//!   The other copies still reach what only their partition knows: a Secret read is judged in
//!   every partition against the token Secrets that partition holds (a `list` of a namespace
//!   returns the tokens of every account in it, and each account's token Secrets are keyed to
//!   its own partition), under the finding id the home copy would use.
//!   Both headers are part of the contract, in `tokentrail_proto::wire`.
//!
//! Pods keep their service account for life, and StatefulSets reuse a name with the same
//! template, so the directory's `(cluster, namespace, pod name)` key is safe to reuse.

use std::collections::HashMap;

use tokentrail_proto::observation::{FactSource, Observation, ServiceAccountRef};

/// Where one observation goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// One record with this key (`cluster/namespace/serviceaccount`).
    Key(String),
    /// One record on every partition, with this key.
    Broadcast(String),
}

impl Route {
    /// The record key.
    pub fn key(&self) -> &str {
        match self {
            Route::Key(k) | Route::Broadcast(k) => k,
        }
    }
}

/// The key of a service account in a cluster.
pub fn sa_key(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/{namespace}/{name}")
}

fn broadcast(cluster: &str, kind: &str) -> Route {
    Route::Broadcast(format!("{cluster}/~broadcast/{kind}"))
}

/// The partition of `partitions` that a record keyed `key` goes to: CRC-32 of the key modulo
/// the partition count, librdkafka's consistent partitioner (its default for keyed records), so
/// the aggregator, which places its batches itself, keeps every key where aggregators that let
/// librdkafka place single records sent it: a rolling upgrade splits no service account.
pub fn key_partition(key: &str, partitions: i32) -> i32 {
    let mut crc = flate2::Crc::new();
    crc.update(key.as_bytes());
    let n = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(crc.sum() % n).unwrap_or(0)
}

/// The partition of `partitions` that holds the home copy of a broadcast with `key`: FNV-1a,
/// stable across processes and releases (it is part of the contract with the correlator).
pub fn home_partition(key: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let n = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(h % n).unwrap_or(0)
}

/// What the aggregator remembers to place observations that do not name their service account:
/// pods and token Secrets by `(cluster, namespace, name)`. Bounded: when full it starts over,
/// and what it forgot is broadcast until it is learned again.
#[derive(Debug)]
pub struct Directory {
    pods: HashMap<(String, String, String), String>,
    secrets: HashMap<(String, String, String), String>,
    /// `(cluster, pod uid) → node`, from audit facts only (binding, create, status): the
    /// attestation node check's ground truth.
    nodes: HashMap<(String, String), String>,
    capacity: usize,
}

impl Directory {
    /// An empty directory holding at most `capacity` pods and as many Secrets.
    pub fn new(capacity: usize) -> Directory {
        Directory { pods: HashMap::new(), secrets: HashMap::new(), nodes: HashMap::new(), capacity: capacity.max(1) }
    }

    /// Pods remembered.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// The node the audit log last placed a pod on.
    pub fn node_of(&self, cluster: &str, pod_uid: &str) -> Option<&str> {
        self.nodes.get(&(cluster.to_string(), pod_uid.to_string())).map(String::as_str)
    }

    fn remember<K: std::hash::Hash + Eq>(map: &mut HashMap<K, String>, capacity: usize, key: K, sa: &str) {
        if map.get(&key).is_some_and(|s| s == sa) {
            return;
        }
        if map.len() >= capacity {
            map.clear();
        }
        map.insert(key, sa.to_string());
    }

    fn pod_sa(&self, cluster: &str, namespace: &str, pod: &str) -> Option<&str> {
        self.pods.get(&(cluster.to_string(), namespace.to_string(), pod.to_string())).map(String::as_str)
    }

    /// Where `o`, an observation about `cluster`, goes; learns from it first (a pod fact naming
    /// its account places itself).
    pub fn route(&mut self, cluster: &str, o: &Observation) -> Route {
        match o {
            Observation::TokenUse(u) => sa_route(cluster, &u.serviceaccount),
            Observation::TokenMint(m) => sa_route(cluster, &m.serviceaccount),
            Observation::ServiceAccount(s) => match &s.serviceaccount {
                Some(sa) => sa_route(cluster, sa),
                None => broadcast(cluster, "service-account"),
            },
            Observation::Credential(c) => sa_route(cluster, &c.serviceaccount),
            // Beside the token's own credential facts and uses: the harvest-then-use chain
            // joins them.
            Observation::TokenFileRead(r) => sa_route(cluster, &r.serviceaccount),
            Observation::Node(_) => broadcast(cluster, "node"),
            Observation::Progress(_) => broadcast(cluster, "progress"),
            Observation::AuthFailure(_) => broadcast(cluster, "auth-failure"),
            Observation::Pod(p) => {
                if let (Some(uid), Some(node), Some(FactSource::AuditLog)) = (&p.uid, &p.node, p.source) {
                    Self::remember(&mut self.nodes, self.capacity, (cluster.to_string(), uid.clone()), node);
                }
                let key = (cluster.to_string(), p.namespace.clone(), p.name.clone());
                if let Some(sa) = p.serviceaccount.as_deref().filter(|s| !s.is_empty()) {
                    Self::remember(&mut self.pods, self.capacity, key, sa);
                }
                // Every partition: a pod's addresses are part of the verdicts on every other
                // account's tokens (another pod's address, `token-client-changed` and the holder
                // `token-used-from-other-workload` names), not only its own account's.
                broadcast(cluster, "pod")
            }
            Observation::PodAccess(a) => match self.pod_sa(cluster, &a.namespace, &a.pod_name) {
                Some(sa) => Route::Key(sa_key(cluster, &a.namespace, sa)),
                None => broadcast(cluster, "pod-access"),
            },
            Observation::TokenSecret(s) => match s.serviceaccount.as_deref().filter(|s| !s.is_empty()) {
                Some(sa) => {
                    let key = (cluster.to_string(), s.namespace.clone(), s.name.clone());
                    Self::remember(&mut self.secrets, self.capacity, key, sa);
                    Route::Key(sa_key(cluster, &s.namespace, sa))
                }
                None => broadcast(cluster, "token-secret"),
            },
            Observation::SecretRead(r) => {
                let owner = match (&r.namespace, &r.name) {
                    (Some(ns), Some(name)) => self
                        .secrets
                        .get(&(cluster.to_string(), ns.clone(), name.clone()))
                        .map(|sa| sa_key(cluster, ns, sa)),
                    _ => None,
                };
                owner.map_or_else(|| broadcast(cluster, "secret-read"), Route::Key)
            }
        }
    }
}

fn sa_route(cluster: &str, sa: &ServiceAccountRef) -> Route {
    Route::Key(sa_key(cluster, &sa.namespace, &sa.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokentrail_proto::observation::{
        AuthFailure, Credential, NodeFact, PodAccess, PodAccessKind, PodFact, SecretRead, Stage, TokenSecretFact,
        TokenUse,
    };
    use tokentrail_proto::Timestamp;

    fn pod(name: &str, sa: Option<&str>) -> Observation {
        Observation::Pod(PodFact {
            namespace: "payments".into(),
            name: name.into(),
            serviceaccount: sa.map(Into::into),
            ..Default::default()
        })
    }

    fn secret_read(namespace: &str, name: Option<&str>) -> Observation {
        Observation::SecretRead(SecretRead {
            time: Timestamp(0),
            audit_id: String::new(),
            principal: String::new(),
            source_ips: Vec::new(),
            verb: "get".into(),
            namespace: Some(namespace.into()),
            name: name.map(Into::into),
            code: None,
            user_agent: None,
        })
    }

    #[test]
    fn token_use_is_keyed_by_its_service_account() {
        let use_ = Observation::TokenUse(TokenUse {
            time: Timestamp(0),
            audit_id: String::new(),
            stage: Stage::ResponseComplete,
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            serviceaccount_uid: None,
            credential: Credential::Unknown,
            source_ips: Vec::new(),
            user_agent: None,
            request: Default::default(),
            stale_token: false,
        });
        assert_eq!(Directory::new(10).route("prod", &use_), Route::Key("prod/payments/api".into()));
    }

    #[test]
    fn pod_facts_reach_every_partition_and_exec_follows_the_account_the_create_named() {
        let mut d = Directory::new(10);
        let everywhere = Route::Broadcast("prod/~broadcast/pod".into());
        assert_eq!(d.route("prod", &pod("api-1", None)), everywhere);
        assert_eq!(d.route("prod", &pod("api-1", Some("api"))), everywhere);
        assert_eq!(d.route("prod", &pod("api-1", None)), everywhere);
        let exec = Observation::PodAccess(PodAccess {
            time: Timestamp(0),
            audit_id: String::new(),
            kind: PodAccessKind::Exec,
            principal: String::new(),
            source_ips: Vec::new(),
            namespace: "payments".into(),
            pod_name: "api-1".into(),
            code: None,
        });
        assert_eq!(d.route("prod", &exec), Route::Key("prod/payments/api".into()));
    }

    #[test]
    fn nodes_and_auth_failures_are_broadcast() {
        let mut d = Directory::new(10);
        assert!(matches!(d.route("prod", &Observation::Node(NodeFact::default())), Route::Broadcast(_)));
        let failure = Observation::AuthFailure(AuthFailure {
            time: Timestamp(0),
            audit_id: String::new(),
            source_ips: Vec::new(),
            user_agent: None,
            request: Default::default(),
        });
        assert!(matches!(d.route("prod", &failure), Route::Broadcast(_)));
    }

    #[test]
    fn secret_get_goes_to_the_secrets_account_list_is_broadcast() {
        let mut d = Directory::new(10);
        let secret = Observation::TokenSecret(TokenSecretFact {
            namespace: "payments".into(),
            name: "api-token".into(),
            serviceaccount: Some("api".into()),
            ..Default::default()
        });
        assert_eq!(d.route("prod", &secret), Route::Key("prod/payments/api".into()));
        let get = secret_read("payments", Some("api-token"));
        assert_eq!(d.route("prod", &get), Route::Key("prod/payments/api".into()));
        let list = secret_read("payments", None);
        assert!(matches!(d.route("prod", &list), Route::Broadcast(_)));
    }

    #[test]
    fn full_directory_starts_over() {
        let mut d = Directory::new(2);
        d.route("prod", &pod("a", Some("sa")));
        d.route("prod", &pod("b", Some("sa")));
        d.route("prod", &pod("c", Some("sa")));
        assert_eq!(d.pods(), 1);
    }

    #[test]
    fn keys_go_where_librdkafkas_consistent_partitioner_puts_them() {
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926 (its standard check value).
        assert_eq!(key_partition("123456789", 1_000_000), i32::try_from(0xCBF4_3926_u32 % 1_000_000).unwrap());
        assert_eq!(key_partition("prod/ns/sa", 1), 0);
        let p = key_partition("prod/ns/sa", 24);
        assert!((0..24).contains(&p));
    }

    #[test]
    fn home_partition_is_stable_and_in_range() {
        assert_eq!(home_partition("prod/~broadcast/node", 1), 0);
        let h = home_partition("prod/~broadcast/node", 12);
        assert!((0..12).contains(&h));
        assert_eq!(h, home_partition("prod/~broadcast/node", 12));
    }
}
