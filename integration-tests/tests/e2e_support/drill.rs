//! What the failure and bad-input drills share: a small cluster, waves of traffic that each
//! carry known replays, and the one assertion every drill ends with.

use serde_json::Value;

use super::audit::Token;
use super::cluster::{Node, Pod};
use super::findings::Subject;
use super::Pipeline;

/// A small cluster: one pod of its own service account on each of three nodes.
pub struct Cluster {
    pub nodes: [Node; 3],
    pub pods: Vec<Pod>,
    pub tokens: Vec<Token>,
}

impl Cluster {
    pub async fn schedule(p: &mut Pipeline) -> Cluster {
        Cluster::schedule_pods(p, 3).await
    }

    /// `pods` pods (at most 200), each of its own service account, spread over the nodes: more
    /// accounts spread over more partitions.
    pub async fn schedule_pods(p: &mut Pipeline, pods: usize) -> Cluster {
        let nodes = [Node::worker(1), Node::worker(2), Node::worker(3)];
        let mut scheduled = Vec::new();
        let mut tokens = Vec::new();
        for i in 0..pods {
            let node = &nodes[i % nodes.len()];
            let pod = Pod::new("shop", &format!("svc{i}-0"), &format!("svc{i}"), node, &node.pod_ip(10 + i as u8));
            tokens.push(p.schedule(&pod, &format!("svc{i}-jti-1")).await);
            scheduled.push(pod);
        }
        Cluster { nodes, pods: scheduled, tokens }
    }

    /// `k` uses of every token from its own pod: traffic that is no finding.
    pub fn benign(&self, k: usize) -> Vec<Value> {
        let mut events = Vec::new();
        for _ in 0..k {
            for (pod, token) in self.pods.iter().zip(&self.tokens) {
                events.push(token.used().from(&pod.ip).event());
            }
        }
        events
    }

    /// Every token replayed from off-cluster address 203.0.113.`n`, each replay with the
    /// finding it must cause.
    pub fn replays(&self, n: u8) -> Vec<(Value, Subject)> {
        let laptop = format!("203.0.113.{n}");
        let replay =
            |token: &Token| (token.used().from(&laptop).event(), subject("token-used-off-cluster", token, &laptop));
        self.tokens.iter().map(replay).collect()
    }

    /// Wave `n`: `benign` uses of every token from its own pod, then two replays, each with
    /// the finding it must cause: pod 0's token from off-cluster address 203.0.113.`n`, and
    /// pod 1's token from pod 2's address (reported once, the first wave it happens in).
    pub fn wave(&self, n: u8, benign: usize) -> (Vec<Value>, Vec<Subject>) {
        let mut events = self.benign(benign);
        let laptop = format!("203.0.113.{n}");
        events.push(self.tokens[0].used().from(&laptop).reading_secrets().event());
        events.push(self.tokens[1].used().from(&self.pods[2].ip).event());
        let expected = vec![
            subject("token-used-off-cluster", &self.tokens[0], &laptop),
            subject("token-used-from-other-workload", &self.tokens[1], &self.pods[2].ip),
        ];
        (events, expected)
    }
}

pub fn subject(rule: &str, token: &Token, ip: &str) -> Subject {
    Subject { rule: rule.into(), credential: token.subject(), source_ip: ip.into() }
}

/// Asserts the settled findings are exactly `expected` (duplicates in it allowed), each created
/// by one record.
pub async fn assert_exactly(p: &mut Pipeline, expected: &[Subject]) {
    let found = p.settled_findings().await;
    let mut want: Vec<&Subject> = expected.iter().collect();
    want.sort();
    want.dedup();
    let mut got: Vec<&Subject> = found.values().map(|f| &f.subject).collect();
    got.sort();
    assert_eq!(got, want, "the findings");
    for f in found.values() {
        assert_eq!(f.creates, 1, "{} ({}) was created {} times", f.subject, f.id, f.creates);
    }
}

/// Waits until `correlator`'s last assignment change in its log (after byte `since`) left it
/// holding partitions.
pub async fn wait_until_assigned(correlator: &super::process::Process, since: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let log = correlator.log();
        if holding(&log[since.min(log.len())..]).is_some_and(|held| !held.is_empty()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no partitions assigned within 90 s:\n{log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The partitions a correlator held after the last assignment change in `log` (its
/// `holding=[...]`), if it logged one.
pub fn holding(log: &str) -> Option<Vec<i32>> {
    let line = log.lines().rev().find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))?;
    let list = line.split("holding=[").nth(1)?.split(']').next()?;
    Some(list.split(',').filter_map(|p| p.trim().parse().ok()).collect())
}
