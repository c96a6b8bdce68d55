//! Client fingerprints: which program a request came from and which operating system it runs
//! on, as its user agent tells.
//!
//! Go clients built on client-go (kubectl, oc, operators, the kubelet) send
//! `program/version (os/arch) kubernetes/commit`; browsers and libraries send other shapes. The
//! user agent is the client's own word and can be forged, so a fingerprint only ever adds
//! suspicion, never takes it away: a replay that claims `linux/amd64` proves nothing, but a pod's
//! token used by a program that says it runs on macOS was not used by the pod, because no
//! Kubernetes node runs macOS.

use std::fmt;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::shared::Shared;
use crate::time::Timestamp;

/// The operating system a user agent names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Linux (most nodes).
    Linux,
    /// Windows (Windows nodes exist, so this is judged against the node's OS).
    Windows,
    /// macOS: a laptop, never a node.
    Darwin,
    /// iOS or Android: a phone or tablet, never a node.
    Mobile,
}

impl Os {
    /// Whether a Kubernetes node can run this OS (the kubelet supports Linux and Windows only).
    pub fn runs_nodes(self) -> bool {
        matches!(self, Os::Linux | Os::Windows)
    }

    /// Reads a node's `status.nodeInfo.operatingSystem` or a user agent's `GOOS`.
    pub fn parse(name: &str) -> Option<Os> {
        // Runs for every request: compared in place, no lowercase copy.
        let name = name.trim().as_bytes();
        let starts = |prefix: &str| name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()));
        if starts("linux") {
            Some(Os::Linux)
        } else if starts("windows") {
            Some(Os::Windows)
        } else if starts("darwin") || starts("macos") {
            Some(Os::Darwin)
        } else if starts("ios") || starts("android") {
            Some(Os::Mobile)
        } else {
            None
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Darwin => "darwin (macOS)",
            Os::Mobile => "a phone or tablet OS",
        })
    }
}

/// What a user agent says about its client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Client<S = String> {
    /// The program: the user agent's first product name (`kubectl`, `oc`, `curl`,
    /// `python-requests`, `my-operator`).
    pub program: S,
    /// The operating system, when the user agent names one.
    pub os: Option<Os>,
}

impl Client<&str> {
    /// An owned copy.
    pub fn into_owned(self) -> Client {
        Client { program: self.program.to_owned(), os: self.os }
    }
}

impl Client {
    /// Borrows the program name.
    pub fn view(&self) -> Client<&str> {
        Client { program: &self.program, os: self.os }
    }
}

/// When a client was seen, and how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// First use.
    pub first: Timestamp,
    /// Last use.
    pub last: Timestamp,
    /// Uses.
    pub count: u64,
}

impl Seen {
    fn add(&mut self, other: Seen) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.count += other.count;
    }
}

/// The clients of a group of requests, each with when it was seen: the `CAP` smallest clients
/// only, sorted. A client in the final set was never dropped (dropping it takes `CAP` smaller
/// ones, which stay), so its figures are whole, and the set does not depend on the order of
/// requests. A vector, not a map: nearly every group has one client. Program names are shared
/// copies ([`crate::shared`]): a flood of groups names the same few programs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients<const CAP: usize> {
    /// Exactly as long as it holds (see [`crate::sample::Smallest`]).
    seen: Box<[(Client<Arc<str>>, Seen)]>,
}

impl<const CAP: usize> Default for Clients<CAP> {
    fn default() -> Self {
        Clients { seen: Box::default() }
    }
}

impl<const CAP: usize> Clients<CAP> {
    /// No clients yet, keeping at most `CAP`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a request by `client` at `t`, its program name shared through `shared`; returns
    /// where the client is kept (for [`Clients::count_again`]), `None` when it is not (it is
    /// not among the `CAP` smallest, and never will be).
    pub fn add(&mut self, client: Client<&str>, t: Timestamp, shared: &mut Shared) -> Option<usize> {
        let program = client.program;
        self.add_seen(client, Seen { first: t, last: t, count: 1 }, || shared.text(program))
    }

    /// Counts another request at `t` by the client [`Clients::add`] put at `at`, with no
    /// other client added since (which could move it).
    pub fn count_again(&mut self, at: usize, t: Timestamp) {
        if let Some((_, seen)) = self.seen.get_mut(at) {
            seen.add(Seen { first: t, last: t, count: 1 });
        }
    }

    fn add_seen(&mut self, client: Client<&str>, seen: Seen, program: impl FnOnce() -> Arc<str>) -> Option<usize> {
        let at = match self.seen.binary_search_by(|(k, _)| Client { program: &*k.program, os: k.os }.cmp(&client)) {
            Ok(found) => {
                self.seen[found].1.add(seen);
                return Some(found);
            }
            Err(at) => at,
        };
        if at >= CAP {
            return None;
        }
        let mut kept = std::mem::take(&mut self.seen).into_vec();
        kept.reserve_exact(1);
        kept.insert(at, (Client { program: program(), os: client.os }, seen));
        kept.truncate(CAP);
        self.seen = kept.into_boxed_slice();
        Some(at)
    }

    /// Takes in another group's clients.
    pub fn merge(&mut self, other: &Clients<CAP>) {
        for (client, seen) in &other.seen {
            let _ =
                self.add_seen(Client { program: &*client.program, os: client.os }, *seen, || client.program.clone());
        }
    }

    /// The clients, in order, with when they were seen.
    pub fn iter(&self) -> impl Iterator<Item = (Client<&str>, &Seen)> {
        self.seen.iter().map(|(c, s)| (Client { program: &*c.program, os: c.os }, s))
    }
}

/// Reads a user agent. `None` for an empty one.
pub fn fingerprint(user_agent: &str) -> Option<Client<&str>> {
    let ua = user_agent.trim();
    let end = ua.find(['/', ' ', '(']).unwrap_or(ua.len());
    let program = ua[..end].trim();
    if program.is_empty() {
        return None;
    }
    Some(Client { program, os: os_of(ua) })
}

/// The OS named inside the user agent's first parenthesis: client-go's `(linux/amd64)`, or a
/// browser's `(Macintosh; Intel Mac OS X 10_15_7)` / `(Windows NT 10.0; Win64; x64)`.
fn os_of(ua: &str) -> Option<Os> {
    let open = ua.find('(')?;
    let rest = &ua[open + 1..];
    let inside = &rest[..rest.find(')').unwrap_or(rest.len())];
    // client-go: GOOS before the slash.
    if let Some(os) = inside.split(['/', ';']).next().and_then(Os::parse) {
        return Some(os);
    }
    // Browsers and other libraries: look for the well-known names anywhere inside.
    let lower = inside.to_ascii_lowercase();
    if lower.contains("iphone") || lower.contains("ipad") || lower.contains("android") {
        Some(Os::Mobile)
    } else if lower.contains("mac os x") || lower.contains("macintosh") || lower.contains("darwin") {
        Some(Os::Darwin)
    } else if lower.contains("windows") {
        Some(Os::Windows)
    } else if lower.contains("linux") {
        Some(Os::Linux)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(ua: &str) -> Option<(String, Option<Os>)> {
        fingerprint(ua).map(|c| (c.program.to_string(), c.os))
    }

    #[test]
    fn client_go_user_agents_name_program_and_os() {
        assert_eq!(fp("oc/4.20.0 (darwin/arm64) kubernetes/1a2b3c4"), Some(("oc".into(), Some(Os::Darwin))));
        assert_eq!(fp("kubectl/v1.31.0 (linux/amd64) kubernetes/6fc0a69"), Some(("kubectl".into(), Some(Os::Linux))));
        assert_eq!(
            fp("kubelet/v1.30.2 (windows/amd64) kubernetes/39683505"),
            Some(("kubelet".into(), Some(Os::Windows)))
        );
        assert_eq!(
            fp("cluster-version-operator/v0.0.0 (linux/amd64) kubernetes/$Format"),
            Some(("cluster-version-operator".into(), Some(Os::Linux)))
        );
    }

    #[test]
    fn other_user_agents_name_a_program_and_perhaps_an_os() {
        assert_eq!(fp("curl/8.5.0"), Some(("curl".into(), None)));
        assert_eq!(fp("Go-http-client/2.0"), Some(("Go-http-client".into(), None)));
        assert_eq!(fp("python-requests/2.31.0"), Some(("python-requests".into(), None)));
        assert_eq!(
            fp("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"),
            Some(("Mozilla".into(), Some(Os::Darwin)))
        );
        assert_eq!(fp("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"), Some(("Mozilla".into(), Some(Os::Windows))));
        assert_eq!(
            fp("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
            Some(("Mozilla".into(), Some(Os::Mobile)))
        );
        assert_eq!(fp("OpenAPI-Generator/29.0.0/python"), Some(("OpenAPI-Generator".into(), None)));
        assert_eq!(fp("  "), None);
        assert_eq!(fp("(linux/amd64)"), None);
    }

    #[test]
    fn only_linux_and_windows_run_nodes() {
        assert!(Os::Linux.runs_nodes() && Os::Windows.runs_nodes());
        assert!(!Os::Darwin.runs_nodes() && !Os::Mobile.runs_nodes());
        assert_eq!(Os::parse("linux"), Some(Os::Linux));
        assert_eq!(Os::parse("Windows"), Some(Os::Windows));
        assert_eq!(Os::parse("plan9"), None);
    }

    #[test]
    fn clients_keep_the_smallest_whole_whatever_the_order() {
        let uses = [("kubectl", 5), ("app", 1), ("zz", 9), ("app", 3), ("curl", 2), ("kubectl", 1), ("b", 4)];
        let fold = |order: &mut dyn Iterator<Item = &(&str, i64)>| {
            let (mut c, mut shared) = (Clients::<3>::new(), Shared::default());
            for &(program, t) in order {
                c.add(Client { program, os: None }, Timestamp(t), &mut shared);
            }
            c.iter().map(|(c, s)| (c.program.to_string(), s.first.0, s.last.0, s.count)).collect::<Vec<_>>()
        };
        let forward = fold(&mut uses.iter());
        assert_eq!(fold(&mut uses.iter().rev()), forward);
        assert_eq!(
            forward,
            [("app".to_string(), 1, 3, 2), ("b".to_string(), 4, 4, 1), ("curl".to_string(), 2, 2, 1)],
            "the three smallest programs, each counted whole"
        );
    }
}
