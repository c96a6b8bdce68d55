//! Where a credential was used from: `token-used-off-cluster`, `token-used-from-other-workload`,
//! `token-multi-origin`, `xff-spoofed-source`.
//!
//! `legacy-token-foreign-ip` is the same question for Secret-based tokens and lives in
//! [`super::legacy`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{sa_name, Context, Draft, Judged};
use crate::finding::{Rule, Severity};
use crate::model::Place;
use crate::tally::Tally;
use crate::usage::CredentialKey;
use crate::verdict::Verdict;

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    // Credentials whose unexpected addresses are already explained by a sharper rule.
    let mut explained: BTreeSet<(&CredentialKey, IpAddr)> = BTreeSet::new();
    for (key, group, judgement) in &ctx.judged {
        let (CredentialKey::PodBound { .. }, Some(ip)) = (&key.credential, key.client) else { continue };
        // A client on an OS no node runs is reported by `fingerprint`, whatever its address.
        if judgement.verdict != Verdict::Unexpected || judgement.foreign_os.is_some() {
            continue;
        }
        let pod = ctx.bound_pod(key, group);
        let pod_name = pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
        let rule = if judgement.off_cluster() { Rule::TokenUsedOffCluster } else { Rule::TokenUsedFromOtherWorkload };
        let mut d = Draft::for_uses(rule, ctx, key, group, group.uses.clone());
        d.expected_ips = judgement.expected.iter().copied().collect();
        let expected = if d.expected_ips.is_empty() {
            String::from("no address is known for it")
        } else {
            format!("it was expected from {}", join(&d.expected_ips))
        };
        if rule == Rule::TokenUsedOffCluster {
            d.title = format!("Token of pod {pod_name} used from outside the cluster ({ip})");
            d.explanation = format!(
                "The token bound to pod {pod_name} (service account {}) was used {} times from {ip}, \
                 which is outside every cluster network and egress address; {expected}. \
                 A pod's token used from outside the cluster has been stolen and replayed.",
                sa_name(&key.serviceaccount),
                group.uses.count,
            );
            if ctx.judge.networks.is_empty() && judgement.rests_on.is_none() {
                // Say what the verdict stands on when no network was declared.
                d.explanation.push_str(&format!(
                    " The cluster's extent was learned from the log: its {} known nodes all talk from private addresses.",
                    ctx.state.nodes().len()
                ));
            }
        } else {
            let holder = match &judgement.place {
                Some(Place::Pod { name, .. }) => format!("held by pod {name} at the time"),
                Some(Place::Node(n)) => format!("an address of node {n}"),
                Some(Place::Loopback) => String::from("the apiserver's own host (loopback)"),
                _ => String::from("an in-cluster address that was not its pod's or node's"),
            };
            d.title = format!("Token of pod {pod_name} used from another workload ({ip})");
            d.explanation = format!(
                "The token bound to pod {pod_name} (service account {}) was used {} times from {ip}, {holder}; \
                 {expected}. Another workload holds a copy of this pod's token.",
                sa_name(&key.serviceaccount),
                group.uses.count,
            );
        }
        d.rest_on(judgement);
        explained.insert((&key.credential, ip));
        out.push(d);
    }
    multi_origin(ctx, &explained, out);
    spoofed_forwarding(ctx, out);
}

/// `token-multi-origin`: one credential from addresses that cannot be one workload. Needs no
/// inventory at all: with none, every address is its own workload.
fn multi_origin(ctx: &Context<'_>, explained: &BTreeSet<(&CredentialKey, IpAddr)>, out: &mut Vec<Draft>) {
    for groups in ctx.by_credential() {
        let credential = &groups[0].0.credential;
        // Two workloads take two addresses: most credentials are used from one.
        if groups.len() < 2 || !matches!(credential, CredentialKey::PodBound { .. } | CredentialKey::Unbound { .. }) {
            continue;
        }
        let entries: Vec<(&Judged<'_>, IpAddr)> = groups.iter().filter_map(|e| Some((e, e.0.client?))).collect();
        // While the pod's own addresses are unknown, an address nobody is known to hold may be the
        // pod's: the pod's unseen address and its node's are one workload, not two.
        let home_unknown = match credential {
            CredentialKey::PodBound { pod_uid, .. } => {
                ctx.state.pods().get(pod_uid).is_none_or(|p| p.addresses.is_empty())
            }
            _ => true,
        };
        let all = Workloads::of(entries.iter().map(|&(e, ip)| (e, ip)), home_unknown);
        // Workloads among the addresses no sharper rule explains: an off-cluster replay already
        // reported leaves the pod's own (perhaps unknown) address as the only one, which is
        // no second origin.
        let unexplained = Workloads::of(
            entries.iter().filter(|&&(_, ip)| !explained.contains(&(credential, ip))).map(|&(e, ip)| (e, ip)),
            home_unknown,
        );
        if unexplained.fewest() < 2 {
            continue;
        }
        // Only now, for the few credentials reported, are the uses' samples merged.
        let mut tally = Tally::default();
        for (e, _) in &entries {
            tally.merge(&e.1.uses);
        }
        let (key, group, _) = entries[0].0;
        let mut d = Draft::for_uses(Rule::TokenMultiOrigin, ctx, key, group, tally);
        d.client = String::new();
        d.source_ip = None;
        d.source_ips = entries.iter().map(|&(_, ip)| ip).collect();
        let subject = match &d.pod {
            Some(p) => format!("pod {}/{}", p.namespace, p.name),
            None => format!("service account {}", sa_name(&key.serviceaccount)),
        };
        let count = all.fewest();
        d.title = format!("One token of {subject} used from {count} different workloads");
        d.explanation = format!(
            "Credential {} of {subject} was used from {} (at least {count} workloads that cannot be one), {} requests \
             in all. A token is held by one workload; the same credential from several means it was copied.",
            d.credential.as_ref().and_then(|c| c.id.clone()).unwrap_or_else(|| String::from("(no JTI)")),
            join(&d.source_ips),
            d.tally.count,
        );
        if unexplained.known.len() < 2 {
            // Some of the workloads are only addresses nobody is known to hold.
            d.severity = d.severity.min(Severity::Medium);
            d.explanation.push_str(
                " This rests on what the evidence lacks: who held some of these addresses is not known (a pod's \
                 second address, a node's other interface); add pods.json and nodes.json to settle it.",
            );
        }
        out.push(d);
    }
}

/// The workloads a credential's addresses belong to, as far as the evidence tells.
struct Workloads<'a> {
    /// Workloads the evidence names: the credential's own (its pod, its node, egress), a pod or
    /// a node.
    known: Vec<Workload<'a>>,
    /// Addresses nobody is known to hold.
    anonymous: Vec<IpAddr>,
    /// Whether the credential's own addresses are unknown, so that an anonymous address may be
    /// its own.
    home_unknown: bool,
}

impl<'a> Workloads<'a> {
    fn of(entries: impl Iterator<Item = (&'a Judged<'a>, IpAddr)>, home_unknown: bool) -> Workloads<'a> {
        let mut w = Workloads { known: Vec::new(), anonymous: Vec::new(), home_unknown };
        // Nearly every credential has one or two addresses: short lists beat sets here.
        for (e, ip) in entries {
            match Workload::of(e) {
                Some(k) if !w.known.contains(&k) => w.known.push(k),
                Some(_) => {}
                None if !w.anonymous.contains(&ip) => w.anonymous.push(ip),
                None => {}
            }
        }
        w
    }

    /// The fewest workloads these addresses can be: each anonymous address its own workload,
    /// except that one per address family may be the credential's own unseen address (a
    /// dual-stack pod has one of each).
    fn fewest(&self) -> usize {
        let mut count = self.known.len() + self.anonymous.len();
        if self.home_unknown {
            let has_home = self.known.contains(&Workload::Home);
            let families =
                [true, false].iter().filter(|&&v4| self.anonymous.iter().any(|ip| ip.is_ipv4() == v4)).count();
            // Each family's unseen address folds into home; home itself counts once.
            count = count - families + usize::from(families > 0 && !has_home);
        }
        count
    }
}

/// The workload an address of a credential belongs to, when the evidence names it: the
/// credential's own (its pod, its node, egress), another pod or another node.
#[derive(Clone, PartialEq)]
enum Workload<'a> {
    Home,
    Pod(&'a str),
    Node(&'a str),
}

impl<'a> Workload<'a> {
    fn of((_, _, j): &'a Judged<'_>) -> Option<Workload<'a>> {
        match (&j.verdict, &j.place) {
            (Verdict::Expected, _) => Some(Workload::Home),
            (_, Some(Place::Pod { uid, .. })) => Some(Workload::Pod(uid)),
            (_, Some(Place::Node(n))) => Some(Workload::Node(n)),
            _ => None,
        }
    }
}

/// `xff-spoofed-source`: client-supplied X-Forwarded-For/X-Real-Ip addresses on a service-account
/// request whose TCP peer is not a trusted proxy.
fn spoofed_forwarding(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    for (key, group, _) in &ctx.judged {
        let Some(forwarded) = group.forwarded() else { continue };
        let mut d = Draft::for_uses(Rule::XffSpoofedSource, ctx, key, group, forwarded.clone());
        let claimed: Vec<IpAddr> = group.forwarded_ips().collect();
        d.source_ips = claimed.iter().copied().chain(key.client).collect();
        let peer = key.client.map(|ip| ip.to_string()).unwrap_or_else(|| String::from("an unknown peer"));
        d.title = format!("Forwarded-for header claims {} on requests from {peer}", join(&claimed));
        d.explanation = format!(
            "{} requests with the token of service account {} came from {peer} (the TCP peer, not a trusted proxy) \
             but carried X-Forwarded-For/X-Real-Ip addresses {}. Only the peer address is real; a client that \
             forges its forwarded address is hiding where it is.",
            d.tally.count,
            sa_name(&key.serviceaccount),
            join(&claimed),
        );
        out.push(d);
    }
}

/// Addresses as a comma-separated list.
pub(crate) fn join(ips: &[IpAddr]) -> String {
    ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
}
