//! Token uses folded by service account, credential and client address.
//!
//! This is what keeps `analyze` in constant memory per credential: a token replayed ten thousand
//! times from one address is one [`UseGroup`], not ten thousand records. Everything a rule needs
//! about the uses (times, counts, samples, forged-header and stale-token sightings) is kept here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::observation::{Credential, ServiceAccountRef, TokenUse};
use crate::tally::Tally;
use crate::time::Timestamp;

/// A credential, as the key of its uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CredentialKey {
    /// Bound to a pod; before 1.30 there is no JTI and the pod stands for the credential.
    PodBound {
        /// UID of the bound pod.
        pod_uid: String,
        /// JTI, when the evidence has it.
        jti: Option<String>,
    },
    /// TokenRequest token without a pod.
    Unbound {
        /// JTI.
        jti: String,
    },
    /// Secret-based token.
    Legacy {
        /// Secret name, when the evidence has it (1.29+).
        secret: Option<String>,
    },
    /// Kind unknown.
    Unknown,
}

impl CredentialKey {
    /// The key of a credential.
    pub fn of(c: &Credential) -> CredentialKey {
        match c {
            Credential::PodBound { jti, pod_uid, .. } => {
                CredentialKey::PodBound { pod_uid: pod_uid.clone(), jti: jti.clone() }
            }
            Credential::Unbound { jti } => CredentialKey::Unbound { jti: jti.clone() },
            Credential::LegacySecret { secret } => CredentialKey::Legacy { secret: secret.clone() },
            Credential::Unknown => CredentialKey::Unknown,
        }
    }

    /// `pod-bound`, `unbound`, `legacy-secret` or `unknown`, as findings say it.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialKey::PodBound { .. } => "pod-bound",
            CredentialKey::Unbound { .. } => "unbound",
            CredentialKey::Legacy { .. } => "legacy-secret",
            CredentialKey::Unknown => "unknown",
        }
    }

    /// `JTI=<uuid>`, when there is one.
    pub fn credential_id(&self) -> Option<String> {
        match self {
            CredentialKey::PodBound { jti: Some(j), .. } | CredentialKey::Unbound { jti: j } => {
                Some(format!("JTI={j}"))
            }
            _ => None,
        }
    }

    /// A stable text naming the credential, for finding ids.
    pub fn stable_name(&self, sa: &ServiceAccountRef) -> String {
        match self {
            CredentialKey::PodBound { jti: Some(j), .. } | CredentialKey::Unbound { jti: j } => format!("JTI={j}"),
            CredentialKey::PodBound { pod_uid, jti: None } => format!("pod-uid={pod_uid}"),
            CredentialKey::Legacy { secret: Some(s) } => format!("secret={}/{s}", sa.namespace),
            CredentialKey::Legacy { secret: None } => format!("legacy-sa={}/{}", sa.namespace, sa.name),
            CredentialKey::Unknown => format!("sa={}/{}", sa.namespace, sa.name),
        }
    }
}

/// Which uses fold together.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UseKey {
    /// The service account.
    pub serviceaccount: ServiceAccountRef,
    /// The credential.
    pub credential: CredentialKey,
    /// The trusted client address (DESIGN §3.2); `None` when the event had no `sourceIPs`.
    pub client: Option<IpAddr>,
}

/// The uses of one credential from one client address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UseGroup {
    /// Every use.
    pub uses: Tally,
    /// ServiceAccount UID (`user.uid`).
    pub serviceaccount_uid: Option<String>,
    /// Bound pod's name.
    pub pod_name: Option<String>,
    /// Bound pod's node at mint time.
    pub node: Option<String>,
    /// Uses whose `sourceIPs` carried client-supplied addresses other than the peer.
    pub forwarded: Tally,
    /// The client-supplied addresses seen (bounded).
    pub forwarded_ips: BTreeSet<IpAddr>,
    /// Uses the apiserver flagged with `authentication.k8s.io/stale-token`.
    pub stale: Tally,
}

const FORWARDED_IPS_KEPT: usize = 8;

impl UseGroup {
    /// Adds one use; `forged` lists the client-supplied addresses that differ from the peer.
    pub fn add(&mut self, u: &TokenUse, forged: &[IpAddr]) {
        let ua = u.user_agent.as_deref();
        self.uses.add(u.time, &u.audit_id, ua, Some(&u.request));
        if self.serviceaccount_uid.is_none() {
            self.serviceaccount_uid.clone_from(&u.serviceaccount_uid);
        }
        if let Credential::PodBound { pod_name, node, .. } = &u.credential {
            if self.pod_name.is_none() {
                self.pod_name = Some(pod_name.clone());
            }
            if self.node.is_none() {
                self.node.clone_from(node);
            }
        }
        if !forged.is_empty() {
            self.forwarded.add(u.time, &u.audit_id, ua, Some(&u.request));
            for &ip in forged {
                if self.forwarded_ips.len() < FORWARDED_IPS_KEPT {
                    self.forwarded_ips.insert(ip);
                }
            }
        }
        if u.stale_token {
            self.stale.add(u.time, &u.audit_id, ua, Some(&u.request));
        }
    }

    /// First use.
    pub fn first(&self) -> Timestamp {
        self.uses.first
    }

    /// Last use.
    pub fn last(&self) -> Timestamp {
        self.uses.last
    }
}
