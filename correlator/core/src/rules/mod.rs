//! The rule catalogue (docs/design.md §3.4), evaluated over the folded evidence.
//!
//! One module per family of evidence: [`origin`] (where a credential was used from),
//! [`fingerprint`] (what the client says it is), [`lineage`]
//! (how it was minted and rotated), [`access`] (what happened around it: exec, deletion, Secret
//! reads), [`legacy`] (Secret-based tokens), [`harvest`] (token files read on the node by who may
//! not, and what became of them). Each appends [`Finding`]s; a finding is one rule, one
//! credential and one client address, with counts, never one per request.

pub(crate) mod access;
pub(crate) mod fingerprint;
pub(crate) mod harvest;
pub(crate) mod legacy;
pub(crate) mod lineage;
pub(crate) mod origin;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::EngineConfig;
use crate::finding::{
    finding_id, Finding, FindingCredential, FindingPod, FindingServiceAccount, Rule, Severity, Status, SCHEMA,
};
use crate::legacy_tokens::LegacyTokenRow;
use crate::observation::ServiceAccountRef;
use crate::state::State;
use crate::tally::Tally;
use crate::usage::{CredentialKey, UseGroup, UseKey};
use crate::verdict::{Judge, Judgement, Verdict};

pub(crate) use crate::verdict::Judged;

/// Everything the rules read: the folded evidence, the settings and the judgement of every use
/// group.
pub(crate) struct Context<'a> {
    pub state: &'a State,
    pub config: &'a EngineConfig,
    pub judge: &'a Judge<'a>,
    /// Every use group with its judgement, in key order.
    pub judged: Vec<Judged<'a>>,
    /// The legacy token inventory, made once: the report shows it and `legacy-token-present`
    /// reads it.
    pub legacy: Vec<LegacyTokenRow>,
}

impl<'a> Context<'a> {
    // `judged` is sorted by service account, then credential, then client: the groups of one
    // service account, or of one of its credentials, sit side by side and need no map to gather.

    /// The use groups of each service account, one slice per account, in key order.
    pub fn by_serviceaccount(&self) -> impl Iterator<Item = &[Judged<'a>]> {
        self.judged.chunk_by(|a, b| a.0.serviceaccount == b.0.serviceaccount)
    }

    /// The use groups of each credential of each service account, one slice per credential, in
    /// key order.
    pub fn by_credential(&self) -> impl Iterator<Item = &[Judged<'a>]> {
        // Neighbours mostly share their service account and differ in credential: comparing
        // credentials first settles most pairs sooner.
        self.judged.chunk_by(|a, b| a.0.credential == b.0.credential && a.0.serviceaccount == b.0.serviceaccount)
    }

    /// The use groups of one service account, in key order.
    pub fn of_serviceaccount(&self, sa: &ServiceAccountRef) -> &[Judged<'a>] {
        let start = self.judged.partition_point(|(k, _, _)| k.serviceaccount < *sa);
        let len = self.judged[start..].partition_point(|(k, _, _)| k.serviceaccount == *sa);
        &self.judged[start..start + len]
    }

    /// The finding's view of the pod a pod-bound credential belongs to.
    pub fn bound_pod(&self, key: &UseKey, group: &UseGroup) -> Option<FindingPod> {
        let CredentialKey::PodBound { pod_uid, .. } = &key.credential else { return None };
        let pod = self.state.pods().get(pod_uid);
        Some(FindingPod {
            namespace: key.serviceaccount.namespace.clone(),
            name: group.pod_name.as_deref().or_else(|| pod.map(|p| p.name.as_str())).unwrap_or_default().to_string(),
            uid: Some(pod_uid.clone()),
            node: group.node.as_deref().or_else(|| pod.and_then(|p| p.node.as_deref())).map(str::to_string),
        })
    }

    /// The node of the pod a pod-bound credential belongs to: as its uses tell, else as the
    /// pod's facts do.
    pub fn bound_node<'k>(&'k self, key: &'k UseKey, group: &'k UseGroup) -> Option<&'k str> {
        let CredentialKey::PodBound { pod_uid, .. } = &key.credential else { return None };
        group.node.as_deref().or_else(|| self.state.pods().get(pod_uid)?.node.as_deref())
    }
}

/// A finding being put together.
pub(crate) struct Draft {
    pub rule: Rule,
    pub severity: Severity,
    pub title: String,
    pub explanation: String,
    /// Stable name of the credential (or subject), for the id.
    pub subject: String,
    /// Stable name of the client address, for the id; empty when the finding spans addresses.
    pub client: String,
    pub serviceaccount: Option<FindingServiceAccount>,
    pub credential: Option<FindingCredential>,
    pub pod: Option<FindingPod>,
    pub source_ip: Option<IpAddr>,
    pub source_ips: Vec<IpAddr>,
    pub expected_ips: Vec<IpAddr>,
    pub tally: Tally,
}

impl Draft {
    /// A draft about the uses of one credential from one client address.
    pub fn for_uses(rule: Rule, ctx: &Context<'_>, key: &UseKey, group: &UseGroup, tally: Tally) -> Draft {
        Draft {
            rule,
            severity: rule.severity(),
            title: String::new(),
            explanation: String::new(),
            subject: key.credential.stable_name(&key.serviceaccount),
            client: key.client.map(|ip| ip.to_string()).unwrap_or_default(),
            serviceaccount: Some(serviceaccount(
                &key.serviceaccount,
                group.serviceaccount_uid.as_deref().map(str::to_string),
            )),
            credential: Some(credential(&key.credential)),
            pod: ctx.bound_pod(key, group),
            source_ip: key.client,
            source_ips: Vec::new(),
            expected_ips: Vec::new(),
            tally,
        }
    }

    /// Holds the finding to what the evidence can carry: a verdict that rests on missing
    /// knowledge is at most medium, and its explanation says which evidence would settle it.
    pub fn rest_on(&mut self, judgement: &Judgement) {
        let lacking = match (judgement.verdict, judgement.rests_on, judgement.unknown_because) {
            (Verdict::Unexpected, Some(missing), _) => missing.text(),
            (Verdict::Unknown, _, Some(because)) => because.text(),
            _ => return,
        };
        self.severity = self.severity.min(Severity::Medium);
        self.explanation.push_str(" This rests on what the evidence lacks: ");
        self.explanation.push_str(lacking);
        self.explanation.push('.');
    }

    /// A draft about something other than token uses (a mint, a Secret read, an object).
    pub fn about(rule: Rule, subject: String, client: String, tally: Tally) -> Draft {
        Draft {
            rule,
            severity: rule.severity(),
            title: String::new(),
            explanation: String::new(),
            subject,
            client,
            serviceaccount: None,
            credential: None,
            pod: None,
            source_ip: None,
            source_ips: Vec::new(),
            expected_ips: Vec::new(),
            tally,
        }
    }

    /// The finished record.
    pub fn finish(self, cluster: Option<&str>) -> Finding {
        Finding {
            schema: SCHEMA,
            id: finding_id(self.rule, cluster, &self.subject, &self.client),
            rule: self.rule,
            severity: self.severity,
            title: self.title,
            cluster: cluster.map(str::to_string),
            serviceaccount: self.serviceaccount,
            credential: self.credential,
            pod: self.pod,
            source_ip: self.source_ip,
            source_ips: self.source_ips,
            expected_ips: self.expected_ips,
            first_seen: self.tally.first,
            last_seen: self.tally.last,
            count: self.tally.count,
            user_agents: self.tally.user_agent_list(),
            requests: self.tally.request_list(),
            audit_ids: self.tally.audit_id_list(),
            attack: self.rule.attack(),
            explanation: self.explanation,
            status: Status::Active,
            copies: Vec::new(),
        }
    }
}

/// The finding's view of a service account.
pub(crate) fn serviceaccount(sa: &ServiceAccountRef, uid: Option<String>) -> FindingServiceAccount {
    FindingServiceAccount { namespace: sa.namespace.clone(), name: sa.name.clone(), uid }
}

/// The finding's view of a credential.
pub(crate) fn credential(key: &CredentialKey) -> FindingCredential {
    FindingCredential {
        kind: key.kind(),
        id: key.credential_id(),
        secret: match key {
            CredentialKey::Legacy { secret } => secret.clone(),
            _ => None,
        },
    }
}

/// `ns/name` of a service account.
pub(crate) fn sa_name(sa: &ServiceAccountRef) -> String {
    format!("{}/{}", sa.namespace, sa.name)
}

/// Runs every rule; findings come back sorted most severe first, then by time, then by id.
pub(crate) fn run(ctx: &Context<'_>) -> Vec<Finding> {
    let mut drafts = Vec::new();
    origin::run(ctx, &mut drafts);
    fingerprint::run(ctx, &mut drafts);
    lineage::run(ctx, &mut drafts);
    access::run(ctx, &mut drafts);
    legacy::run(ctx, &mut drafts);
    harvest::run(ctx, &mut drafts);
    let cluster = ctx.config.cluster.as_deref();
    // Two rule paths may reach the same (rule, credential, address): keep one, the surest (an
    // off-cluster verdict by address that rests on unknown networks, beside the same verdict by
    // the client's OS, which does not), then with the most evidence.
    let mut by_id: BTreeMap<String, Finding> = BTreeMap::new();
    for d in drafts {
        let f = d.finish(cluster);
        match by_id.get(&f.id) {
            Some(existing) if (existing.severity, existing.count) >= (f.severity, f.count) => {}
            _ => {
                by_id.insert(f.id.clone(), f);
            }
        }
    }
    let mut findings: Vec<Finding> = by_id.into_values().collect();
    findings.sort_by(|a, b| {
        (std::cmp::Reverse(a.severity), a.first_seen, a.rule, &a.id).cmp(&(
            std::cmp::Reverse(b.severity),
            b.first_seen,
            b.rule,
            &b.id,
        ))
    });
    findings
}
