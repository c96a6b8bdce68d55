//! How credentials were minted and rotated: `token-superseded-use`, `token-forged-mint`,
//! `token-minted-by-user`.

use std::collections::{BTreeMap, BTreeSet};

use super::{credential, origin, sa_name, serviceaccount, Context, Draft, Judged};
use crate::activity::Mint;
use crate::finding::{FindingPod, Rule};
use crate::hash::{FastMap, FastSet};
use crate::principals::{is_control_plane, kubelet_node};
use crate::tally::Tally;
use crate::time::{Timestamp, MINUTE};
use crate::usage::CredentialKey;

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    superseded(ctx, out);
    let forged = forged_mints(ctx, out);
    unattested(ctx, &forged, out);
    minted_by_user(ctx, &forged, out);
}

/// `token-forged-mint`, streaming variant: a pod-bound credential in use that the agent on its
/// pod's node never saw on that pod, once the agent has reported past the first use by the
/// attestation grace. A node without an agent, or uses from before the agent watched, prove
/// nothing and stay silent; so does a credential whose attestation arrives inside the grace.
fn unattested(ctx: &Context<'_>, already: &BTreeSet<&str>, out: &mut Vec<Draft>) {
    let attestations = ctx.state.attestations();
    if !attestations.any() {
        return;
    }
    let grace = ctx.config.attestation_grace;
    // A credential's groups sit side by side in key order: no map of every credential needed.
    for entries in ctx.by_credential() {
        let CredentialKey::PodBound { jti: Some(jti), .. } = &entries[0].0.credential else { continue };
        let jti = jti.as_str();
        if already.contains(jti) {
            continue;
        }
        let Some(pod) = entries.first().and_then(|e| ctx.bound_pod(e.0, e.1)) else { continue };
        let Some(node) = pod.node.clone() else { continue };
        let Some(watermark) = attestations.watermark(&node) else { continue };
        let first_use = entries.iter().map(|e| e.1.first()).min().unwrap_or(Timestamp::MAX);
        if first_use < watermark.covers_from.plus(grace) || watermark.reported_until < first_use.plus(grace) {
            continue;
        }
        let attested_there = pod.uid.as_deref().is_some_and(|uid| attestations.attested_on(jti, &node, uid));
        if attested_there {
            continue;
        }
        // The stream forgets an attestation nobody used for a day (`expiry`). An old token of
        // such a pod, used late, is past its warn-after time, and the apiserver flags every use
        // of it stale: it may be one of the pod's own (`token-superseded-use` reports it). A
        // forged token is new, and its uses in its first hour are not stale.
        let forgotten = pod.uid.as_deref().is_some_and(|uid| attestations.forgot_some(uid));
        if forgotten && entries.iter().all(|e| e.1.stale_uses() == e.1.uses.count) {
            continue;
        }
        let mut tally = Tally::default();
        for e in entries {
            tally.merge(&e.1.uses);
        }
        let (key, group, _) = &entries[0];
        let mut d = Draft::for_uses(Rule::TokenForgedMint, ctx, key, group, tally);
        d.client = String::new();
        d.source_ip = None;
        d.source_ips = entries.iter().filter_map(|e| e.0.client).collect();
        let pod_name = format!("{}/{}", pod.namespace, pod.name);
        d.title = format!("Token bound to pod {pod_name} was never on its node {node}");
        d.explanation = format!(
            "Credential JTI={jti} is bound to pod {pod_name} on node {node} and was used {} times from {} since {first_use}, \
             but the agent on {node}, which has reported up to {}, never saw it in that pod's volumes. The kubelet \
             writes every token it mints for a pod there: this one was minted some other way.",
            d.tally.count,
            origin::join(&d.source_ips),
            watermark.reported_until,
        );
        out.push(d);
    }
}

/// `token-superseded-use`: a pod's old JTI still in use more than the rotation grace after a
/// newer JTI of the same pod was in use, or a use the apiserver flagged as stale.
fn superseded(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    // A credential someone other than a kubelet minted is no link in the pod's rotation
    // (token-forged-mint reports it); letting it in would make the pod's own token look
    // superseded. Such mints are few: a set of them is quicker to ask than every credential's mint.
    let not_by_kubelet: FastSet<&str> =
        ctx.judge.mints.iter().filter(|(_, m)| kubelet_node(&m.minter).is_none()).map(|(jti, _)| *jti).collect();
    // Each pod-bound use group by pod and JTI, in UID order: one flat list rather than a map per
    // pod, which a flood of pods seen once would pay for a million times. The sort is stable, so
    // a JTI's groups stay in key order.
    let mut links: Vec<(&str, &str, &Judged<'_>)> = ctx
        .judged
        .iter()
        .filter_map(|entry| match &entry.0.credential {
            CredentialKey::PodBound { pod_uid, jti: Some(jti) } if !not_by_kubelet.contains(jti.as_str()) => {
                Some((pod_uid.as_str(), jti.as_str(), entry))
            }
            _ => None,
        })
        .collect();
    links.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let grace = ctx.config.rotation_grace;
    for pod_links in links.chunk_by(|a, b| a.0 == b.0) {
        let mut jtis: BTreeMap<&str, Vec<&Judged<'_>>> = BTreeMap::new();
        for &(_, jti, entry) in pod_links {
            jtis.entry(jti).or_default().push(entry);
        }
        // Credentials in the order the kubelet minted them. A mint in the log gives the order
        // outright. A credential whose mint is not in the log, while a sibling's is, was minted
        // before that sibling (its own mint would be in the log otherwise): a log that starts
        // just before a rotation holds the successor's mint, and the predecessor, used for the
        // first time in the log only later, is still the older. With no mint logged at all
        // (an audit policy that drops TokenRequests), first use is the best order there is.
        let first_use =
            |entries: &Vec<&Judged<'_>>| entries.iter().map(|e| e.1.first()).min().unwrap_or(Timestamp::MAX);
        let minted = |jti: &str| ctx.judge.minted_at(jti);
        let earliest_logged_mint = jtis.keys().filter_map(|jti| minted(jti)).min();
        let mut ordered: Vec<(Timestamp, Timestamp, &str, &Vec<&Judged<'_>>)> = jtis
            .iter()
            .map(|(jti, entries)| {
                let used = first_use(entries);
                let order = match (minted(jti), earliest_logged_mint) {
                    (Some(mint), _) => mint,
                    (None, Some(earliest)) => used.min(earliest.plus(-1)),
                    (None, None) => used,
                };
                (order, used, *jti, entries)
            })
            .collect();
        ordered.sort_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
        for (i, (_, _, jti, entries)) in ordered.iter().enumerate() {
            // The successor is in use from its first use.
            let successor = ordered.get(i + 1).map(|s| (s.1, s.2));
            for (key, group, _) in entries.iter().copied() {
                let late = successor.filter(|s| group.last() > s.0.plus(grace));
                if late.is_none() && group.stale_uses() == 0 {
                    continue;
                }
                let mut d = Draft::for_uses(Rule::TokenSupersededUse, ctx, key, group, group.uses.clone());
                let pod = d.pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
                let client = key.client.map(|ip| ip.to_string()).unwrap_or_default();
                d.title = format!("Superseded token of pod {pod} still used from {client}");
                let mut why = Vec::new();
                if let Some((next_in_use, next)) = late {
                    why.push(format!(
                        "its last use at {} came {} minutes after the pod's newer credential JTI={next} was in use \
                         (grace {} minutes)",
                        group.last(),
                        (group.last().0 - next_in_use.0) / MINUTE,
                        grace / MINUTE,
                    ));
                }
                if group.stale_uses() > 0 {
                    why.push(format!(
                        "the apiserver flagged {} of its uses as stale (past the token's warn-after time)",
                        group.stale_uses()
                    ));
                }
                d.explanation = format!(
                    "Credential JTI={jti} of pod {pod} was used {} times from {client}; {}. The kubelet rotates a \
                     pod's token every ~48 minutes and the pod switches within about a minute: an old token that \
                     lives on is a copy.",
                    group.uses.count,
                    why.join("; and "),
                );
                out.push(d);
            }
        }
    }
}

/// `token-forged-mint`: a pod-bound credential minted by anyone but the kubelet of the pod's
/// node. Returns the JTIs it flagged.
fn forged_mints<'a>(ctx: &'a Context<'_>, out: &mut Vec<Draft>) -> BTreeSet<&'a str> {
    // What the uses say about each minted pod-bound JTI: its pod and node, and its use groups
    // (their tallies are merged only for the few mints that turn out forged). Only minted JTIs:
    // a map of every credential used would cost more than the rest of the report.
    let mut uses: FastMap<&str, Vec<&Judged<'_>>> = FastMap::default();
    for entry in &ctx.judged {
        if let CredentialKey::PodBound { jti: Some(jti), .. } = &entry.0.credential {
            if ctx.judge.mints.contains_key(jti.as_str()) {
                uses.entry(jti.as_str()).or_default().push(entry);
            }
        }
    }
    let mut flagged = BTreeSet::new();
    // Every finding has its own JTI, so the order mints are looked at in does not matter.
    for (jti, mint) in ctx.judge.mints.iter() {
        if !mint.succeeded() {
            continue;
        }
        let used = uses.get(jti);
        let pod_bound = mint.bound_kind.as_deref() == Some("Pod") || mint.bound_pod.is_some() || used.is_some();
        if !pod_bound {
            continue;
        }
        // The pod's node, as the uses tell or else the pod the mint request names. Only the few
        // mints that turn out forged get the finding's copy of the pod.
        let first_use = used.and_then(|entries| entries.first());
        let requested_uid = if first_use.is_none() { requested_pod_uid(ctx, mint) } else { None };
        let node = match first_use {
            Some(e) => ctx.bound_node(e.0, e.1),
            None => requested_uid.as_deref().and_then(|u| ctx.state.pods().get(u)).and_then(|p| p.node.as_deref()),
        };
        let legitimate = match (kubelet_node(&mint.minter), node) {
            (Some(minter_node), Some(pod_node)) => minter_node == pod_node,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if legitimate {
            continue;
        }
        let pod = match first_use {
            Some(e) => ctx.bound_pod(e.0, e.1),
            None => mint.bound_pod.as_ref().map(|b| FindingPod {
                namespace: mint.serviceaccount.namespace.clone(),
                name: b.name.clone(),
                uid: requested_uid,
                node: node.map(str::to_string),
            }),
        };
        let node = node.map(str::to_string);
        let mut tally = Tally::default();
        tally.add(mint.time, &mint.audit_id, mint.user_agent.as_deref(), None);
        let mut used_tally = Tally::default();
        for e in used.into_iter().flatten() {
            used_tally.merge(&e.1.uses);
        }
        tally.merge(&used_tally);
        let credential_key = CredentialKey::PodBound {
            pod_uid: pod.as_ref().and_then(|p| p.uid.clone()).unwrap_or_default(),
            jti: Some((*jti).to_string()),
        };
        let mut d = Draft::about(Rule::TokenForgedMint, format!("JTI={jti}"), String::new(), tally);
        d.serviceaccount = Some(serviceaccount(&mint.serviceaccount, None));
        d.credential = Some(credential(&credential_key));
        d.source_ip = mint.client;
        let pod_name = pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
        let expected_minter =
            node.as_deref().map_or(String::from("the kubelet of its node"), |n| format!("system:node:{n}"));
        d.pod = pod;
        d.title = format!("Token bound to pod {pod_name} minted by {}", mint.minter);
        d.explanation = format!(
            "{} minted credential JTI={jti} for service account {} bound to pod {pod_name} at {}{}; only {expected_minter} \
             mints that pod's tokens. Its uses look exactly like the pod's own.",
            mint.minter,
            sa_name(&mint.serviceaccount),
            mint.time,
            if used_tally.count > 0 { format!(", and it was used {} times", used_tally.count) } else { String::new() },
        );
        out.push(d);
        flagged.insert(*jti);
    }
    flagged
}

/// The UID of the pod a TokenRequest names (logged at Request level only): as the request gives
/// it, or the pod of that name at the time.
fn requested_pod_uid(ctx: &Context<'_>, mint: &Mint) -> Option<String> {
    let b = mint.bound_pod.as_ref()?;
    b.uid.clone().or_else(|| ctx.state.pods().uid_by_name(&mint.serviceaccount.namespace, &b.name, mint.time))
}

/// `token-minted-by-user`: TokenRequests by principals that are neither kubelets nor the control
/// plane, one finding per minter and service account (a pod-bound forged mint is already flagged).
fn minted_by_user(ctx: &Context<'_>, forged: &BTreeSet<&str>, out: &mut Vec<Draft>) {
    let mut by_minter: BTreeMap<(&str, &crate::observation::ServiceAccountRef), (Tally, BTreeSet<std::net::IpAddr>)> =
        BTreeMap::new();
    for mint in ctx.state.mints().iter() {
        if !mint.succeeded() || kubelet_node(&mint.minter).is_some() || is_control_plane(&mint.minter) {
            continue;
        }
        if mint.jti.as_deref().is_some_and(|j| forged.contains(j)) {
            continue;
        }
        let slot = by_minter.entry((mint.minter.as_str(), &mint.serviceaccount)).or_default();
        slot.0.add(mint.time, &mint.audit_id, mint.user_agent.as_deref(), None);
        slot.1.extend(mint.client);
    }
    for ((minter, sa), (tally, clients)) in by_minter {
        let count = tally.count;
        let mut d = Draft::about(Rule::TokenMintedByUser, format!("{minter}->{}", sa_name(sa)), String::new(), tally);
        d.serviceaccount = Some(serviceaccount(sa, None));
        d.source_ips = clients.into_iter().collect();
        d.source_ip = (d.source_ips.len() == 1).then(|| d.source_ips[0]);
        d.title = format!("{minter} minted tokens for service account {}", sa_name(sa));
        d.explanation = format!(
            "{minter} requested {count} token(s) for service account {} through the TokenRequest API. Tokens are \
             normally minted by kubelets for their pods; a token minted by a person or another workload carries \
             the account's permissions wherever it is taken.",
            sa_name(sa),
        );
        out.push(d);
    }
}
