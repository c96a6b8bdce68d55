//! What the client says it is: a pod's token used by a program on an operating system no node of
//! the pod runs (`token-used-off-cluster`, whatever the address), or by a program the pod never
//! ran (`token-client-changed`).
//!
//! Addresses cannot tell a replay through the NAT gateway that the nodes also use from the pod
//! itself; the client can. A user agent is the client's own word, so it only ever adds
//! suspicion: a replay that claims to be the pod's program proves nothing either way.

use std::collections::{BTreeMap, BTreeSet};

use super::{sa_name, Context, Draft, Judged};
use crate::client::Os;
use crate::finding::Rule;
use crate::model::Place;
use crate::time::{Timestamp, MINUTE};
use crate::usage::{CredentialKey, UseKey};
use crate::verdict::Verdict;

/// A program that uses the pod's token only in the pod's first minutes is an init container's.
const INIT_WINDOW: i64 = 10 * MINUTE;

/// The pod a group's credential is bound to.
fn pod_of<'a>(entry: &Judged<'a>) -> Option<&'a str> {
    match &entry.0.credential {
        CredentialKey::PodBound { pod_uid, .. } => Some(pod_uid.as_str()),
        _ => None,
    }
}

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    // Every use group of each pod, across the pod's rotated credentials. In key order a pod's
    // groups sit side by side (pod-bound credentials sort by pod UID first): no map of every pod,
    // which a flood of pods seen once would pay for a million times.
    let same_pod = |a: &Judged<'_>, b: &Judged<'_>| a.0.serviceaccount == b.0.serviceaccount && pod_of(a) == pod_of(b);
    for run in ctx.judged.chunk_by(same_pod) {
        let Some(pod_uid) = pod_of(&run[0]) else { continue };
        let entries: Vec<&Judged<'_>> = run.iter().filter(|e| e.1.clients.iter().next().is_some()).collect();
        if entries.is_empty() {
            continue;
        }
        let off_cluster = foreign_os(ctx, pod_uid, &entries, out);
        changed_client(ctx, pod_uid, &entries, &off_cluster, out);
    }
}

/// The OS a pod's own programs run on: its node's, else the one its uses from its own addresses
/// name (when they agree).
fn home_os(ctx: &Context<'_>, pod_uid: &str, entries: &[&Judged<'_>]) -> Option<Os> {
    let node = entries.iter().find_map(|e| ctx.bound_node(e.0, e.1));
    if let Some(os) = node.and_then(|n| ctx.state.nodes().get(n)).and_then(|n| n.os) {
        return Some(os);
    }
    let own: BTreeSet<Os> = entries
        .iter()
        .filter(|e| from_own_pod(e, pod_uid))
        .flat_map(|e| e.1.clients.iter().filter_map(|(c, _)| c.os))
        .collect();
    (own.len() == 1).then(|| *own.first().expect("one element"))
}

/// Uses from the pod's own address (not its node's, which other processes share).
fn from_own_pod((_, _, j): &&Judged<'_>, pod_uid: &str) -> bool {
    matches!(&j.place, Some(Place::Pod { uid, .. }) if **uid == *pod_uid)
}

/// `token-used-off-cluster` by fingerprint: a client on macOS, a phone, or an OS other than the
/// pod's node's.
/// Returns the keys it reported.
fn foreign_os<'a>(
    ctx: &Context<'_>,
    pod_uid: &str,
    entries: &[&'a Judged<'a>],
    out: &mut Vec<Draft>,
) -> BTreeSet<&'a UseKey> {
    let home = home_os(ctx, pod_uid, entries);
    let mut reported = BTreeSet::new();
    for &&(key, group, ref judgement) in entries {
        // The verdict has judged against the node's OS; the pod's own uses stand in for it here
        // when the node's is unknown.
        let foreign = |os: Os| Some(os) == judgement.foreign_os || home.is_some_and(|h| h != os);
        let Some((client, _)) = group.clients.iter().find(|(c, _)| c.os.is_some_and(foreign)) else { continue };
        let os = client.os.expect("found by its OS");
        let mut d = Draft::for_uses(Rule::TokenUsedOffCluster, ctx, key, group, group.uses.clone());
        let pod_name = d.pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
        let ip = key.client.map(|ip| ip.to_string()).unwrap_or_else(|| String::from("an unknown address"));
        let why = if os.runs_nodes() {
            format!("the pod's node runs {}", home.map(|h| h.to_string()).unwrap_or_default())
        } else {
            String::from("no Kubernetes node runs it")
        };
        d.title = format!("Token of pod {pod_name} used by a {os} client ({}) from {ip}", client.program);
        d.explanation = format!(
            "The token bound to pod {pod_name} (service account {}) was used {} times from {ip}, among them by {} on {os}; {why}. \
             Whatever the address (a NAT gateway the nodes share hides it), the token was used outside the cluster: \
             it was stolen and replayed.",
            sa_name(&key.serviceaccount),
            group.uses.count,
            client.program,
        );
        out.push(d);
        reported.insert(key);
    }
    reported
}

/// `token-client-changed`: a program the pod never ran, using the pod's token from the pod's node
/// address or another pod's. A program is the pod's own when it is used from the pod's own
/// address, with more than one of the pod's rotated credentials (a thief copies one), or only in
/// the pod's first minutes (an init container). Without one program known to be the pod's, the
/// rule has nothing to compare with and stays silent.
fn changed_client(
    ctx: &Context<'_>,
    pod_uid: &str,
    entries: &[&Judged<'_>],
    off_cluster: &BTreeSet<&UseKey>,
    out: &mut Vec<Draft>,
) {
    let start = entries.iter().map(|e| e.1.first()).min().unwrap_or(Timestamp::MAX);
    let mut credentials: BTreeMap<&str, BTreeSet<&CredentialKey>> = BTreeMap::new();
    let mut last_use: BTreeMap<&str, Timestamp> = BTreeMap::new();
    let mut own: BTreeSet<&str> = BTreeSet::new();
    for e in entries {
        for (c, seen) in e.1.clients.iter() {
            credentials.entry(c.program).or_default().insert(&e.0.credential);
            let last = last_use.entry(c.program).or_insert(Timestamp::MIN);
            *last = (*last).max(seen.last);
            if from_own_pod(e, pod_uid) {
                own.insert(c.program);
            }
        }
    }
    for (program, creds) in &credentials {
        if creds.len() > 1 || last_use[program] <= start.plus(INIT_WINDOW) {
            own.insert(program);
        }
    }
    if own.is_empty() {
        return;
    }
    for &&(key, group, ref judgement) in entries {
        if off_cluster.contains(key) {
            // Already reported as used outside the cluster: the sharper finding says it all.
            continue;
        }
        let from = match (&judgement.verdict, &judgement.place) {
            (_, Some(Place::Node(n))) => format!("the address of node {n}"),
            (Verdict::Expected, Some(Place::Egress)) => String::from("an egress address"),
            (_, Some(Place::Pod { uid, name })) if **uid != *pod_uid => format!("the address of pod {name}"),
            _ => continue,
        };
        let Some((client, seen)) = group.clients.iter().find(|(c, _)| !own.contains(c.program)) else {
            continue;
        };
        let program = &client.program;
        let mut d = Draft::for_uses(Rule::TokenClientChanged, ctx, key, group, group.uses.clone());
        let pod_name = d.pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
        let ip = key.client.map(|ip| ip.to_string()).unwrap_or_default();
        let usual: Vec<&str> = own.iter().copied().collect();
        d.title = format!("Token of pod {pod_name} used by {program}, a program the pod never ran, from {ip}");
        d.explanation = format!(
            "The token bound to pod {pod_name} (service account {}) was used from {ip} ({from}) by {program}, {} times \
             from {} to {}; the pod's own programs are {}. A new program with a pod's token, from an address other \
             processes share, is how a copied token looks when it is replayed from the node or a neighbour.",
            sa_name(&key.serviceaccount),
            seen.count,
            seen.first,
            seen.last,
            usual.join(", "),
        );
        out.push(d);
    }
}
