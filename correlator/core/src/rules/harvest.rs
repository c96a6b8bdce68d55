//! The theft itself, as node agents saw it: `token-file-read-by-other-pod`,
//! `token-file-read-on-host`, and the chain `token-harvested-then-used`.
//!
//! An agent reports a read only when the reader is not the kubelet, the container runtime, the
//! token's own pod or on its allow-list (docs/rules.md): every read it reports is a finding. The
//! chain joins a read of a credential to the uses of that same credential after it whose
//! verdict says they did not come from its pod.

use super::{credential, serviceaccount, Context, Draft};
use crate::finding::{FindingPod, Rule};
use crate::tally::Tally;
use crate::token_reads::ReadGroup;
use crate::verdict::Verdict;

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    for group in ctx.state.token_reads().groups() {
        out.push(read_finding(group));
        harvested_then_used(ctx, group, out);
    }
}

/// The reader as a finding's id names it: stable across its processes.
fn reader_id(g: &ReadGroup) -> String {
    match &g.reader.pod_uid {
        Some(uid) => format!("pod-uid={uid}/{}", g.reader.container.as_deref().unwrap_or("")),
        None => format!("host={}:{}", g.node, g.reader.executable.as_deref().unwrap_or("")),
    }
}

fn token_pod(g: &ReadGroup) -> FindingPod {
    FindingPod {
        namespace: g.token_pod.as_ref().map_or_else(|| g.serviceaccount.namespace.clone(), |(ns, _)| ns.clone()),
        name: g.token_pod.as_ref().map(|(_, n)| n.clone()).unwrap_or_default(),
        uid: Some(g.token_pod_uid.clone()),
        node: Some(g.node.clone()),
    }
}

fn token_pod_name(g: &ReadGroup) -> String {
    match &g.token_pod {
        Some((ns, name)) => format!("{ns}/{name}"),
        None => format!("uid {}", g.token_pod_uid),
    }
}

fn draft(rule: Rule, g: &ReadGroup, tally: Tally, client: String) -> Draft {
    let mut d = Draft::about(rule, g.credential.stable_name(&g.serviceaccount), client, tally);
    d.serviceaccount = Some(serviceaccount(&g.serviceaccount, None));
    d.credential = Some(credential(&g.credential));
    d.pod = Some(token_pod(g));
    d
}

/// `token-file-read-by-other-pod` or `token-file-read-on-host`: one per credential and reader.
fn read_finding(g: &ReadGroup) -> Draft {
    let rule = if g.reader.pod_uid.is_some() { Rule::TokenFileReadByOtherPod } else { Rule::TokenFileReadOnHost };
    let tally = Tally { count: g.count, first: g.first, last: g.last, ..Tally::default() };
    let mut d = draft(rule, g, tally, reader_id(g));
    let who = g.reader.describe();
    let exe = g.reader.executable.as_deref().unwrap_or("an executable the agent could not read");
    d.title = format!("{who} read the token file of pod {} on node {}", token_pod_name(g), g.node);
    d.explanation = format!(
        "The node agent on {} saw {who} ({exe}, cgroup {}) open the service-account token file of pod {} \
         (service account {}/{}) at {}, {} time(s) reported until {}. Only the kubelet, the container runtime and \
         the pod's own containers read that file: whoever holds its content can act as the service account.",
        g.node,
        if g.reader.cgroup.is_empty() { "unknown" } else { g.reader.cgroup.as_str() },
        token_pod_name(g),
        g.serviceaccount.namespace,
        g.serviceaccount.name,
        g.first,
        g.count,
        g.last,
    );
    d
}

/// `token-harvested-then-used`: after the read, the same credential used from an address that is
/// not its pod's.
fn harvested_then_used(ctx: &Context<'_>, g: &ReadGroup, out: &mut Vec<Draft>) {
    for (key, group, judgement) in ctx.of_serviceaccount(&g.serviceaccount) {
        if key.credential != g.credential || judgement.verdict != Verdict::Unexpected || group.last() < g.first {
            continue;
        }
        let client = key.client.map(|ip| ip.to_string()).unwrap_or_default();
        let mut d = Draft::for_uses(Rule::TokenHarvestedThenUsed, ctx, key, group, group.uses.clone());
        // One chain per read and client address: two readers of one token are two findings.
        d.client = format!("{client}|{}", reader_id(g));
        d.expected_ips = judgement.expected.iter().copied().collect();
        d.title = format!(
            "token of pod {} read by {} on {}, then used from {client}",
            token_pod_name(g),
            g.reader.describe(),
            g.node
        );
        d.explanation = format!(
            "{} opened the token file of pod {} on node {} at {}; the same credential ({}) was then used from \
             {client}, which is not the pod's address, {} time(s) until {}. The token was harvested from the node \
             and replayed.",
            g.reader.describe(),
            token_pod_name(g),
            g.node,
            g.first,
            g.credential.stable_name(&g.serviceaccount),
            group.uses.count,
            group.last(),
        );
        d.rest_on(judgement);
        out.push(d);
    }
}
