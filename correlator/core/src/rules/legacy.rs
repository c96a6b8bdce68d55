//! Secret-based, non-expiring tokens: `legacy-token-foreign-ip`, `legacy-token-use`,
//! `legacy-token-present`.

use std::collections::BTreeMap;

use super::origin::join;
use super::{credential, sa_name, serviceaccount, Context, Draft};
use crate::finding::{Rule, Severity};
use crate::observation::ServiceAccountRef;
use crate::tally::Tally;
use crate::usage::CredentialKey;
use crate::verdict::Verdict;

pub(crate) fn run(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    let mut by_credential: BTreeMap<(&ServiceAccountRef, &CredentialKey), (Tally, Vec<std::net::IpAddr>)> =
        BTreeMap::new();
    for (key, group, judgement) in &ctx.judged {
        let CredentialKey::Legacy { secret } = &key.credential else { continue };
        let slot = by_credential.entry((&key.serviceaccount, &key.credential)).or_default();
        slot.0.merge(&group.uses);
        slot.1.extend(key.client);
        if judgement.verdict != Verdict::Unexpected {
            continue;
        }
        let mut d = Draft::for_uses(Rule::LegacyTokenForeignIp, ctx, key, group, group.uses.clone());
        if judgement.off_cluster() {
            d.severity = Severity::Critical;
        }
        d.expected_ips = judgement.expected.iter().copied().collect();
        let client = key.client.map(|ip| ip.to_string()).unwrap_or_default();
        let secret = secret
            .clone()
            .map_or_else(|| String::from("(name not logged)"), |s| format!("{}/{s}", key.serviceaccount.namespace));
        let mounting: Vec<String> = ctx
            .judge
            .mounting_pods(&key.serviceaccount, key_secret(&key.credential))
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        d.title = format!("Non-expiring token of Secret {secret} used from {client}");
        d.explanation = format!(
            "The Secret-based token {secret} of service account {} was used {} times from {client}{}, which is not \
             an address of {}. Secret tokens never expire: rotate the Secret.",
            sa_name(&key.serviceaccount),
            group.uses.count,
            if judgement.off_cluster() { " (outside the cluster)" } else { "" },
            if mounting.is_empty() {
                String::from("any pod mounting it (none is known to)")
            } else {
                format!("the pods mounting it ({})", mounting.join(", "))
            },
        );
        d.rest_on(judgement);
        out.push(d);
    }
    for ((sa, key), (tally, clients)) in by_credential {
        let mut d = Draft::about(Rule::LegacyTokenUse, key.stable_name(sa), String::new(), tally);
        d.serviceaccount = Some(serviceaccount(sa, None));
        d.credential = Some(credential(key));
        d.source_ips = clients;
        d.source_ip = (d.source_ips.len() == 1).then(|| d.source_ips[0]);
        let secret =
            key_secret(key).map_or_else(|| String::from("(name not logged)"), |s| format!("{}/{s}", sa.namespace));
        d.title = format!("Non-expiring Secret token {secret} in use");
        d.explanation = format!(
            "The Secret-based token {secret} of service account {} was used {} times from {}. Such tokens never \
             expire and are not bound to a pod; move its users to projected tokens and delete the Secret.",
            sa_name(sa),
            d.tally.count,
            join(&d.source_ips),
        );
        out.push(d);
    }
    present(ctx, out);
}

fn key_secret(key: &CredentialKey) -> Option<&str> {
    match key {
        CredentialKey::Legacy { secret } => secret.as_deref(),
        _ => None,
    }
}

/// `legacy-token-present`: every token Secret in the evidence.
fn present(ctx: &Context<'_>, out: &mut Vec<Draft>) {
    for row in &ctx.legacy {
        if !row.exists {
            continue;
        }
        let mut tally = Tally::default();
        tally.add(row.created, "", None, None);
        let mut d = Draft::about(
            Rule::LegacyTokenPresent,
            format!("secret={}/{}", row.namespace, row.secret),
            String::new(),
            tally,
        );
        if let Some(sa) = &row.serviceaccount {
            d.serviceaccount =
                Some(serviceaccount(&ServiceAccountRef { namespace: row.namespace.clone(), name: sa.clone() }, None));
        }
        d.credential = Some(credential(&CredentialKey::Legacy { secret: Some(row.secret.clone()) }));
        d.title = format!("Non-expiring service-account token Secret {}/{}", row.namespace, row.secret);
        let mut facts = vec![format!("created {}", row.created.date())];
        if let Some(days) = row.age_days {
            facts.push(format!("{days} days before the latest evidence"));
        }
        facts.push(match &row.last_used_label {
            Some(d) => format!("last used {d} by the apiserver's label"),
            None => String::from("no last-used label"),
        });
        if let Some(d) = &row.invalid_since {
            facts.push(format!("invalid since {d}"));
        }
        facts.push(if row.mounted_by.is_empty() {
            String::from("mounted by no known pod")
        } else {
            format!("mounted by {}", row.mounted_by.join(", "))
        });
        if row.uses > 0 {
            facts.push(format!("used {} times in the evidence", row.uses));
        }
        d.explanation = format!(
            "Secret {}/{} holds a non-expiring token for service account {}: {}. Delete it unless something still \
             needs it, and give that a projected token.",
            row.namespace,
            row.secret,
            row.serviceaccount.as_deref().unwrap_or("(unknown)"),
            facts.join(", "),
        );
        out.push(d);
    }
}
