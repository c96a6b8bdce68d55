//! What happened around a token: `exec-then-token-use`, `token-after-pod-deletion`,
//! `sa-token-secret-read`.

use std::collections::BTreeSet;

use super::{sa_name, serviceaccount, Context, Draft};
use crate::activity::SecretReads;
use crate::finding::Rule;
use crate::observation::ServiceAccountRef;
use crate::principals::{is_control_plane, kubelet_node};
use crate::time::MINUTE;
use crate::usage::CredentialKey;
use crate::verdict::Verdict;

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    exec_then_use(ctx, out);
    after_deletion(ctx, out);
    secret_reads(ctx, out);
}

/// `exec-then-token-use`: exec/attach into pod P by X from A, then P's token used from A or from
/// outside the cluster within the exec window.
fn exec_then_use(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    let window = ctx.config.exec_window;
    let mut accesses: Vec<_> = ctx.state.accesses().iter().filter(|a| a.access.code.is_none_or(|c| c < 400)).collect();
    // Earliest exec first, so a token use that follows several is tied to the first.
    accesses.sort_by(|a, b| (a.access.time, &a.access.audit_id).cmp(&(b.access.time, &b.access.audit_id)));
    let mut reported = BTreeSet::new();
    for access in accesses {
        let a = &access.access;
        let Some(uid) = ctx.state.pods().uid_by_name(&a.namespace, &a.pod_name, a.time) else { continue };
        let until = a.time.plus(window);
        for (key, group, judgement) in &ctx.judged {
            let CredentialKey::PodBound { pod_uid, .. } = &key.credential else { continue };
            if *pod_uid != uid || key.client.is_none() || !group.uses.overlaps(a.time, until) {
                continue;
            }
            let from_exec_address = key.client == access.client;
            if !(from_exec_address || judgement.off_cluster()) || !reported.insert((*key).clone()) {
                continue;
            }
            let client = key.client.map(|ip| ip.to_string()).unwrap_or_default();
            let mut d = Draft::for_uses(Rule::ExecThenTokenUse, ctx, key, group, group.uses.clone());
            d.expected_ips = judgement.expected.iter().copied().collect();
            let minutes = (group.first().0.max(a.time.0) - a.time.0) / MINUTE;
            d.title = format!(
                "{} into pod {}/{} by {}, then its token used from {client}",
                access.what(),
                a.namespace,
                a.pod_name,
                a.principal
            );
            d.explanation = format!(
                "{} ran {} into pod {}/{} from {} at {}; within {minutes} minutes the pod's token (service account {}) \
                 was used from {client}{}, {} times. Someone took the token out of the pod.",
                a.principal,
                access.what(),
                a.namespace,
                a.pod_name,
                access.client.map(|ip| ip.to_string()).unwrap_or_else(|| String::from("an unknown address")),
                a.time,
                sa_name(&key.serviceaccount),
                if from_exec_address { " (the exec's own address)" } else { " (outside the cluster)" },
                group.uses.count,
            );
            if !from_exec_address {
                d.rest_on(judgement);
            }
            out.push(d);
        }
    }
}

/// `token-after-pod-deletion`: bearer failures (401) from an address that used a pod's token,
/// not being that pod or its node, soon after the pod was deleted: the token was revoked with the
/// pod and someone kept trying it.
fn after_deletion(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    let window = ctx.config.deletion_window;
    for (key, group, judgement) in &ctx.judged {
        let CredentialKey::PodBound { pod_uid, .. } = &key.credential else { continue };
        if judgement.verdict == Verdict::Expected {
            continue;
        }
        let Some(deleted) = ctx.state.pods().get(pod_uid).and_then(|p| p.deleted) else { continue };
        let Some(failures) = ctx.state.failures_from(&key.client) else { continue };
        if !failures.overlaps(deleted, deleted.plus(window)) {
            continue;
        }
        let mut d = Draft::for_uses(Rule::TokenAfterPodDeletion, ctx, key, group, failures.clone());
        let pod = d.pod.as_ref().map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
        let client = key.client.map(|ip| ip.to_string()).unwrap_or_default();
        d.title = format!("Revoked token of deleted pod {pod} retried from {client}");
        d.explanation = format!(
            "{client} used the token of pod {pod} ({} times, last at {}), the pod was deleted at {deleted}, and then \
             {client} failed bearer authentication {} times. A deleted pod's token stops working; whoever kept \
             sending it had copied it.",
            group.uses.count,
            group.last(),
            failures.count,
        );
        out.push(d);
    }
}

/// `sa-token-secret-read`: get/list/watch of Secrets holding service-account tokens by a
/// principal that is not the control plane.
///
/// Reads this partition is home to are judged against every token Secret it knows and, for a
/// `get`, the autogenerated name; copies whose home is another partition
/// ([`State::secret_reads_elsewhere`](crate::state::State)) only against the token Secrets known
/// here (the home partition judges the names), so the partition that knows a Secret the home
/// does not still reports its read, under the same finding id.
fn secret_reads(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    let token_secrets = ctx.state.token_secrets();
    let home = ctx.state.secret_reads();
    let elsewhere = ctx.state.secret_reads_elsewhere();
    let mut keys: Vec<&(String, Option<String>)> = home.keys().chain(elsewhere.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (principal, namespace) = key;
        if is_control_plane(principal) || kubelet_node(principal).is_some() {
            continue;
        }
        let in_scope = |ns: &str| namespace.as_deref().is_none_or(|n| n == ns);
        let ns = namespace.as_deref().unwrap_or_default();
        let known = |name: &String| token_secrets.contains_key(&(ns.to_string(), name.clone()));
        let mut hit: BTreeSet<String> = BTreeSet::new();
        let mut merged: Option<SecretReads> = None;
        for (reads, by_name) in [(home.get(key), true), (elsewhere.get(key), false)] {
            let Some(reads) = reads else { continue };
            let mut own: BTreeSet<String> = reads
                .names
                .iter()
                .filter(|name| known(name) || (by_name && looks_like_token_secret(name)))
                .map(|name| format!("{ns}/{name}"))
                .collect();
            if reads.listed {
                own.extend(
                    token_secrets.keys().filter(|(ns, _)| in_scope(ns)).map(|(ns, name)| format!("{ns}/{name}")),
                );
            }
            // Copies from elsewhere that disclosed nothing known here add nothing.
            if by_name || !own.is_empty() {
                match &mut merged {
                    None => merged = Some(reads.clone()),
                    Some(m) => {
                        m.reads.merge(&reads.reads);
                        m.names.extend(reads.names.iter().cloned());
                        m.listed |= reads.listed;
                        m.clients.extend(reads.clients.iter().copied());
                    }
                }
            }
            hit.extend(own);
        }
        let Some(reads) = merged.filter(|_| !hit.is_empty()) else { continue };
        let scope = namespace.clone().unwrap_or_else(|| String::from("all namespaces"));
        let mut d =
            Draft::about(Rule::SaTokenSecretRead, format!("{principal}@{scope}"), String::new(), reads.reads.clone());
        d.serviceaccount = ServiceAccountRef::from_username(principal).map(|sa| serviceaccount(&sa, None));
        d.source_ips = reads.clients.iter().copied().collect();
        d.source_ip = (d.source_ips.len() == 1).then(|| d.source_ips[0]);
        let names: Vec<String> = hit.into_iter().take(5).collect();
        d.title = format!("{principal} read service-account token Secrets in {scope}");
        d.explanation = format!(
            "{principal} read Secrets in {scope} {} times ({}), which returns service-account tokens ({}). Reading \
             token Secrets outside the control plane is how non-expiring tokens get stolen.",
            reads.reads.count,
            if reads.listed { "including list/watch" } else { "get" },
            names.join(", "),
        );
        out.push(d);
    }
}

/// Autogenerated token Secrets are named `<serviceaccount>-token-<5 characters>`.
fn looks_like_token_secret(name: &str) -> bool {
    name.rsplit_once("-token-").is_some_and(|(sa, suffix)| {
        !sa.is_empty() && suffix.len() == 5 && suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn autogenerated_token_secret_names() {
        assert!(super::looks_like_token_secret("default-token-x7k2p"));
        assert!(!super::looks_like_token_secret("db-password"));
        assert!(!super::looks_like_token_secret("-token-abcde"));
    }
}
