//! The finding record (`tokentrail.finding/v1`, docs/design.md §3.5): rules, severities, ATT&CK mapping.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::observation::Request;
use crate::time::Timestamp;

/// Schema name carried by every finding.
pub const SCHEMA: &str = "tokentrail.finding/v1";

/// How bad a finding is, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing (an inventory item).
    Low,
    /// Worth a look.
    Medium,
    /// Likely misuse.
    High,
    /// Misuse from outside, act now.
    Critical,
}

impl Severity {
    /// All severities, most severe first.
    pub const DESCENDING: [Severity; 4] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low];

    /// The lowercase name used in records and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::DESCENDING.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule catalogue of docs/design.md §3.4. The ids are stable: SIEM rules key on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A pod-bound token used from outside every cluster network.
    TokenUsedOffCluster,
    /// A pod-bound token used from another pod's or node's address.
    TokenUsedFromOtherWorkload,
    /// One credential used from addresses that cannot be one workload.
    TokenMultiOrigin,
    /// A pod-bound credential minted by someone other than its node's kubelet.
    TokenForgedMint,
    /// An old credential still used after its pod rotated to a newer one.
    TokenSupersededUse,
    /// A TokenRequest by a principal that is not a kubelet or control-plane component.
    TokenMintedByUser,
    /// exec/attach into a pod, then that pod's token used from the exec's address or outside.
    ExecThenTokenUse,
    /// Bearer failures from an address that used a since-deleted pod's token.
    TokenAfterPodDeletion,
    /// Client-supplied X-Forwarded-For addresses on a service-account request.
    XffSpoofedSource,
    /// A Secret-based token used away from the pods that mount it.
    LegacyTokenForeignIp,
    /// A Secret-based token in use at all.
    LegacyTokenUse,
    /// A Secret-based token exists.
    LegacyTokenPresent,
    /// Secrets holding service-account tokens read by a non-control-plane principal.
    SaTokenSecretRead,
    /// A pod's token used by a client program the pod never used, from its node's address or
    /// another pod's.
    TokenClientChanged,
    /// A pod's token file opened by another pod's container (a node agent saw it).
    TokenFileReadByOtherPod,
    /// A pod's token file opened by a host process that is not the kubelet or the runtime.
    TokenFileReadOnHost,
    /// A token file read by a foreign reader, then that credential used from anywhere but its
    /// pod.
    TokenHarvestedThenUsed,
    /// The same Secret-based token (by its SHA-256 from `tokentrail collect`) in token Secrets
    /// of two or more clusters.
    LegacyTokenSharedAcrossClusters,
}

/// A MITRE ATT&CK technique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Technique {
    /// Technique id, e.g. `T1550.001`.
    pub id: &'static str,
    /// Technique name.
    pub name: &'static str,
}

const T1528: Technique = Technique { id: "T1528", name: "Steal Application Access Token" };
const T1550_001: Technique =
    Technique { id: "T1550.001", name: "Use Alternate Authentication Material: Application Access Token" };
const T1552_007: Technique = Technique { id: "T1552.007", name: "Unsecured Credentials: Container API" };
const T1078_004: Technique = Technique { id: "T1078.004", name: "Valid Accounts: Cloud Accounts" };
const T1609: Technique = Technique { id: "T1609", name: "Container Administration Command" };
const T1552_001: Technique = Technique { id: "T1552.001", name: "Unsecured Credentials: Credentials In Files" };

impl Rule {
    /// Every rule, in catalogue order.
    pub const ALL: [Rule; 18] = [
        Rule::TokenUsedOffCluster,
        Rule::TokenUsedFromOtherWorkload,
        Rule::TokenMultiOrigin,
        Rule::TokenForgedMint,
        Rule::TokenSupersededUse,
        Rule::TokenMintedByUser,
        Rule::ExecThenTokenUse,
        Rule::TokenAfterPodDeletion,
        Rule::XffSpoofedSource,
        Rule::LegacyTokenForeignIp,
        Rule::LegacyTokenUse,
        Rule::LegacyTokenPresent,
        Rule::SaTokenSecretRead,
        Rule::TokenClientChanged,
        Rule::TokenFileReadByOtherPod,
        Rule::TokenFileReadOnHost,
        Rule::TokenHarvestedThenUsed,
        Rule::LegacyTokenSharedAcrossClusters,
    ];

    /// The stable rule id.
    pub fn id(self) -> &'static str {
        match self {
            Rule::TokenUsedOffCluster => "token-used-off-cluster",
            Rule::TokenUsedFromOtherWorkload => "token-used-from-other-workload",
            Rule::TokenMultiOrigin => "token-multi-origin",
            Rule::TokenForgedMint => "token-forged-mint",
            Rule::TokenSupersededUse => "token-superseded-use",
            Rule::TokenMintedByUser => "token-minted-by-user",
            Rule::ExecThenTokenUse => "exec-then-token-use",
            Rule::TokenAfterPodDeletion => "token-after-pod-deletion",
            Rule::XffSpoofedSource => "xff-spoofed-source",
            Rule::LegacyTokenForeignIp => "legacy-token-foreign-ip",
            Rule::LegacyTokenUse => "legacy-token-use",
            Rule::LegacyTokenPresent => "legacy-token-present",
            Rule::SaTokenSecretRead => "sa-token-secret-read",
            Rule::TokenClientChanged => "token-client-changed",
            Rule::TokenFileReadByOtherPod => "token-file-read-by-other-pod",
            Rule::TokenFileReadOnHost => "token-file-read-on-host",
            Rule::TokenHarvestedThenUsed => "token-harvested-then-used",
            Rule::LegacyTokenSharedAcrossClusters => "legacy-token-shared-across-clusters",
        }
    }

    /// The catalogue severity (`legacy-token-foreign-ip` is raised to critical off-cluster by the rule).
    pub fn severity(self) -> Severity {
        match self {
            Rule::TokenUsedOffCluster
            | Rule::ExecThenTokenUse
            | Rule::TokenFileReadByOtherPod
            | Rule::TokenHarvestedThenUsed => Severity::Critical,
            Rule::TokenFileReadOnHost
            | Rule::TokenUsedFromOtherWorkload
            | Rule::TokenMultiOrigin
            | Rule::TokenForgedMint
            | Rule::TokenSupersededUse
            | Rule::TokenAfterPodDeletion
            | Rule::LegacyTokenForeignIp
            | Rule::LegacyTokenSharedAcrossClusters => Severity::High,
            Rule::TokenMintedByUser
            | Rule::XffSpoofedSource
            | Rule::LegacyTokenUse
            | Rule::SaTokenSecretRead
            | Rule::TokenClientChanged => Severity::Medium,
            Rule::LegacyTokenPresent => Severity::Low,
        }
    }

    /// ATT&CK techniques the rule evidences.
    pub fn attack(self) -> &'static [Technique] {
        match self {
            Rule::TokenUsedOffCluster
            | Rule::TokenUsedFromOtherWorkload
            | Rule::TokenMultiOrigin
            | Rule::TokenClientChanged => &[T1550_001, T1528, T1078_004],
            Rule::ExecThenTokenUse => &[T1609, T1552_007, T1528, T1550_001],
            Rule::XffSpoofedSource => &[T1550_001],
            Rule::LegacyTokenForeignIp | Rule::LegacyTokenUse => &[T1550_001, T1078_004],
            Rule::LegacyTokenPresent => &[T1078_004],
            // A copy of a credential is a credential in more places: misuse of one is of all.
            Rule::LegacyTokenSharedAcrossClusters => &[T1078_004, T1550_001],
            Rule::SaTokenSecretRead => &[T1552_007, T1528],
            Rule::TokenForgedMint | Rule::TokenMintedByUser => &[T1528, T1078_004],
            Rule::TokenSupersededUse | Rule::TokenAfterPodDeletion => &[T1550_001, T1528],
            Rule::TokenFileReadByOtherPod | Rule::TokenFileReadOnHost => &[T1528, T1552_001],
            Rule::TokenHarvestedThenUsed => &[T1528, T1552_001, T1550_001],
        }
    }

    /// The Microsoft Threat Matrix for Kubernetes technique, where one fits.
    pub fn k8s_matrix(self) -> Option<&'static str> {
        match self {
            Rule::ExecThenTokenUse => Some("Exec into container; Container service account"),
            Rule::SaTokenSecretRead => Some("List Kubernetes secrets"),
            Rule::LegacyTokenPresent | Rule::LegacyTokenSharedAcrossClusters => None,
            _ => Some("Container service account"),
        }
    }

    /// What a responder does about a finding of this rule, in a sentence or two for a ticket.
    pub fn remediation(self) -> &'static str {
        match self {
            Rule::TokenUsedOffCluster => {
                "Treat the token as stolen: delete the pod (its bound tokens die with it), find how the token left \
                 the pod, and review what the client address did with the service account's permissions."
            }
            Rule::TokenUsedFromOtherWorkload => {
                "Treat the token as stolen by the workload that held the client address: delete the token's pod \
                 (its bound tokens die with it), inspect that other pod or node, and review its requests."
            }
            Rule::TokenMultiOrigin => {
                "Find which addresses are not the workload's own, delete the pod (its bound tokens die with it), and \
                 review the requests made from the others."
            }
            Rule::TokenForgedMint => {
                "Remove the minter's create permission on serviceaccounts/token, find how it got it, and delete the \
                 pod the minted token is bound to so that the token stops working."
            }
            Rule::TokenSupersededUse => {
                "Someone kept a copy of a rotated-out token: delete the pod (all its bound tokens die with it) and \
                 investigate the client address that still used the old one."
            }
            Rule::TokenMintedByUser => {
                "Check that this principal should mint tokens for the service account; if not, remove its create \
                 permission on serviceaccounts/token, and recreate the service account to void what it minted."
            }
            Rule::ExecThenTokenUse => {
                "Someone reached into the pod and then used its token: delete the pod, review who may create \
                 pods/exec, pods/attach or pods/portforward on it, and investigate the exec's principal and address."
            }
            Rule::TokenAfterPodDeletion => {
                "The client kept a copy of a deleted pod's token (now invalid): investigate that client address and \
                 what it did with the token while the pod lived."
            }
            Rule::XffSpoofedSource => {
                "Find who adds X-Forwarded-For: a proxy in front of the apiserver belongs in --trusted-proxy; \
                 otherwise treat the requests as an attempt to hide their origin."
            }
            Rule::LegacyTokenForeignIp => {
                "Delete the Secret to revoke the long-lived token, move its pods to projected (bound) tokens, and \
                 investigate the client address."
            }
            Rule::LegacyTokenUse => {
                "Move the users of this Secret-based token to projected (bound) tokens, then delete the Secret: it \
                 never expires."
            }
            Rule::LegacyTokenPresent => {
                "Delete the Secret if nothing uses it (no legacy-token-use finding): a Secret-based token never \
                 expires."
            }
            Rule::SaTokenSecretRead => {
                "Check that the principal needs to read these Secrets; otherwise remove get, list and watch on \
                 Secrets from its roles, and revoke the tokens it read by deleting their Secrets."
            }
            Rule::TokenClientChanged => {
                "Find which program used the token from this address; if it is not one of the pod's own, treat the \
                 token as stolen and delete the pod (its bound tokens die with it)."
            }
            Rule::TokenFileReadByOtherPod => {
                "Treat the token as stolen: delete its pod (its bound tokens die with it), then inspect the reader \
                 pod: how it reaches the host's kubelet directory (hostPath, hostPID, privileged) and what it did \
                 since. A node agent that reads every token by design belongs in the agent's allow-list."
            }
            Rule::TokenFileReadOnHost => {
                "Treat the token as stolen: delete its pod (its bound tokens die with it) and investigate the host \
                 process and who runs it on the node. A host tool that reads tokens by design belongs in the \
                 agent's allow-list (--token-read-allow-exe)."
            }
            Rule::TokenHarvestedThenUsed => {
                "The token was taken from its file and used: delete its pod now (its bound tokens die with it), \
                 contain the reader, and review every request the client address made with the service account."
            }
            Rule::LegacyTokenSharedAcrossClusters => {
                "One non-expiring token authenticates in every cluster listed: find how it was copied (by hand, a \
                 GitOps repository, a shared signing key), treat a compromise of one cluster as one of all, and \
                 delete every copy of the Secret (then rotate the service-account signing keys if they are shared)."
            }
        }
    }

    /// Parses a rule id.
    pub fn parse(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let id = String::deserialize(d)?;
        Rule::parse(&id).ok_or_else(|| serde::de::Error::unknown_variant(&id, &[]))
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A service account as a finding names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FindingServiceAccount {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, when the evidence gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The credential a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FindingCredential {
    /// `pod-bound`, `unbound`, `legacy-secret` or `unknown` ([`CREDENTIAL_KINDS`]).
    #[serde(deserialize_with = "read::kind")]
    pub kind: read::Fixed,
    /// `JTI=<uuid>`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Secret's name, for legacy tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Every [`FindingCredential::kind`].
pub const CREDENTIAL_KINDS: [&str; 4] = ["pod-bound", "unbound", "legacy-secret", "unknown"];

/// Whether a finding still stands. A stream reports as evidence arrives, and later evidence can
/// explain what an earlier report called suspicious (a `kubectl` dump that names a pod's second
/// address, sent after the log): the finding is then sent again, same id, as withdrawn.
/// `tokentrail analyze` sees all the evidence at once and never withdraws anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The evidence supports it (not written: every finding of a report is active).
    #[default]
    Active,
    /// Sent before, and later evidence explains it: no longer a finding.
    Withdrawn,
}

impl Status {
    /// Whether the finding stands.
    pub fn is_active(&self) -> bool {
        *self == Status::Active
    }
}

/// The pod a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FindingPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Node it ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One request as a finding shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct FindingRequest {
    /// Verb.
    pub verb: String,
    /// Resource (with `/subresource` when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Response code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

impl From<&Request> for FindingRequest {
    fn from(r: &Request) -> Self {
        let resource = match (&r.resource, &r.subresource) {
            (Some(res), Some(sub)) => Some(format!("{res}/{sub}")),
            (res, _) => res.clone(),
        };
        FindingRequest {
            verb: r.verb.clone(),
            resource,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            code: r.code,
        }
    }
}

/// A finding: one rule, one credential, one client address, however many requests.
///
/// Read back from its JSON record too (the findings topic, for `tokentrail incidents`): the
/// record says everything the finding holds; what is fixed per rule (ATT&CK) is the rule's.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Finding {
    /// Always [`SCHEMA`].
    #[serde(deserialize_with = "read::schema")]
    pub schema: read::Fixed,
    /// Stable id: a hash of rule, cluster, credential and client address.
    pub id: String,
    /// Which rule fired.
    pub rule: Rule,
    /// How bad.
    pub severity: Severity,
    /// One line for a human.
    pub title: String,
    /// Cluster label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The service account whose token it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serviceaccount: Option<FindingServiceAccount>,
    /// The credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<FindingCredential>,
    /// The pod the credential is bound to (or mounted in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<FindingPod>,
    /// The client address (the trusted one, docs/design.md §3.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// `sourceIPs` as logged, when more than one address is involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<IpAddr>,
    /// The addresses the credential was expected to come from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<IpAddr>,
    /// First event time the rule matched.
    pub first_seen: Timestamp,
    /// Last event time the rule matched.
    pub last_seen: Timestamp,
    /// How many requests (or objects) it covers.
    pub count: u64,
    /// Client user agents seen (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<String>,
    /// Requests made (bounded, distinct).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<FindingRequest>,
    /// The first few audit IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_ids: Vec<String>,
    /// ATT&CK techniques.
    #[serde(default, deserialize_with = "read::attack")]
    pub attack: &'static [Technique],
    /// Why this fired, in a sentence for a ticket.
    pub explanation: String,
    /// `withdrawn` on a stream's correction of a finding it sent; absent while it stands.
    #[serde(default, skip_serializing_if = "Status::is_active")]
    pub status: Status,
    /// The token Secrets that hold the same token, in every cluster
    /// (`legacy-token-shared-across-clusters`); empty for every other rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<SecretCopy>,
}

/// One token Secret among those holding the same token.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct SecretCopy {
    /// The cluster it is in.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Secret name.
    pub secret: String,
    /// The service account its token authenticates as, when the Secret says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serviceaccount: Option<String>,
}

/// What a finding record holds as text and a finding as one of the fixed values it was made
/// with: a record of another schema is refused, not misread.
pub mod read {
    use serde::{Deserialize, Deserializer};

    use super::{Rule, Technique, CREDENTIAL_KINDS, SCHEMA};

    /// `&'static str` by another name: serde's derive takes a field spelled `&'static str` for
    /// one borrowed from the input, and would read findings only from `'static` input. These
    /// are read by the functions below, which borrow nothing.
    pub type Fixed = &'static str;

    pub(super) fn schema<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let s = String::deserialize(d)?;
        if s == SCHEMA {
            Ok(SCHEMA)
        } else {
            Err(serde::de::Error::custom(format!("schema {s:?} is not {SCHEMA}")))
        }
    }

    pub(super) fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let s = String::deserialize(d)?;
        // A kind added by a later version reads as what this one calls what it does not know.
        Ok(CREDENTIAL_KINDS.into_iter().find(|k| *k == s).unwrap_or("unknown"))
    }

    #[derive(Deserialize)]
    struct Id {
        id: String,
    }

    /// The techniques of the rule that lists these ids (every rule's list is a constant); none
    /// when no rule of this version lists them.
    pub(super) fn attack<'de, D: Deserializer<'de>>(d: D) -> Result<&'static [Technique], D::Error> {
        let ids: Vec<Id> = Vec::deserialize(d)?;
        let same = |list: &[Technique]| list.len() == ids.len() && list.iter().zip(&ids).all(|(t, i)| t.id == i.id);
        Ok(Rule::ALL.into_iter().map(Rule::attack).find(|list| same(list)).unwrap_or(&[]))
    }
}

/// The stable finding id: a hash of rule, cluster, credential key and client address.
pub fn finding_id(rule: Rule, cluster: Option<&str>, credential: &str, client: &str) -> String {
    let mut h = Sha256::new();
    for part in [rule.id(), cluster.unwrap_or(""), credential, client] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_their_parts() {
        let a = finding_id(Rule::TokenUsedOffCluster, Some("prod"), "JTI=1", "203.0.113.50");
        assert_eq!(a, finding_id(Rule::TokenUsedOffCluster, Some("prod"), "JTI=1", "203.0.113.50"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, finding_id(Rule::TokenUsedOffCluster, Some("prod"), "JTI=1", "203.0.113.51"));
        assert_ne!(a, finding_id(Rule::TokenMultiOrigin, Some("prod"), "JTI=1", "203.0.113.50"));
        // Separators keep "ab"+"c" apart from "a"+"bc".
        assert_ne!(
            finding_id(Rule::TokenMultiOrigin, None, "ab", "c"),
            finding_id(Rule::TokenMultiOrigin, None, "a", "bc")
        );
    }

    #[test]
    fn a_finding_reads_back_from_its_record() {
        let f = Finding {
            schema: SCHEMA,
            id: finding_id(Rule::SaTokenSecretRead, Some("prod"), "u@ns", ""),
            rule: Rule::SaTokenSecretRead,
            severity: Severity::High,
            title: String::from("t"),
            cluster: Some(String::from("prod")),
            serviceaccount: Some(FindingServiceAccount { namespace: "ns".into(), name: "sa".into(), uid: None }),
            credential: Some(FindingCredential { kind: "legacy-secret", id: None, secret: Some("sa-token-x".into()) }),
            pod: None,
            source_ip: Some("203.0.113.5".parse().unwrap()),
            source_ips: vec!["203.0.113.5".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            expected_ips: Vec::new(),
            first_seen: Timestamp::from_secs(1_773_000_000),
            last_seen: Timestamp::from_secs(1_773_000_060),
            count: 3,
            user_agents: vec!["curl/8".into()],
            requests: vec![FindingRequest {
                verb: "get".into(),
                resource: Some("secrets".into()),
                namespace: Some("ns".into()),
                name: Some("sa-token-x".into()),
                code: Some(200),
            }],
            audit_ids: vec!["a".into()],
            attack: Rule::SaTokenSecretRead.attack(),
            explanation: String::from("e"),
            status: Status::Withdrawn,
            copies: vec![SecretCopy {
                cluster: "prod".into(),
                namespace: "ns".into(),
                secret: "s".into(),
                serviceaccount: None,
            }],
        };
        let back: Finding = serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        let mut other = serde_json::to_value(&f).unwrap();
        other["schema"] = "tokentrail.incident/v1".into();
        assert!(serde_json::from_value::<Finding>(other).is_err(), "another schema is refused");
    }

    #[test]
    fn every_rule_round_trips_and_maps_to_attack() {
        for r in Rule::ALL {
            assert_eq!(Rule::parse(r.id()), Some(r));
            assert!(!r.attack().is_empty(), "{r}");
        }
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert!(Severity::Critical > Severity::Low);
    }
}
