//! What a streaming correlator holds over a day and more of event time: a cluster of pods whose
//! tokens rotate every ~48 minutes, as the kubelet rotates them, each rotation minted (a
//! TokenRequest in the audit log) and attested by the node's agent, and one pod in five calling
//! the apiserver every two minutes (controllers, operators; the rest never do).
//!
//! ```sh
//! cargo run --release -p tokentrail-correlator-core --example retention_day [PODS] [HOURS]
//! ```
//!
//! Every simulated hour the correlator's commit is made (report, expiry, the changes written to
//! a compacted changelog), and a row says what the state holds: use groups, TokenRequests and
//! attestations, and the live changelog bytes per section and per pod. Defaults: 2,000 pods,
//! 30 hours (past the 25-hour credential retention, so the plateau shows).

#[allow(dead_code)] // each example uses its part of the generator
mod synthetic;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use synthetic::{nodes, NODES, START};
use tokentrail_correlator_core::changes::Change;
use tokentrail_correlator_core::observation::{
    AttestationDetails, BoundPod, Credential, CredentialEvent, CredentialFact, FactSource, PodEvent, PodFact, Request,
    ServiceAccountRef, Stage, TokenMint, TokenUse,
};
use tokentrail_correlator_core::time::MINUTE;
use tokentrail_correlator_core::{Engine, EngineConfig, Observation, Timestamp};

/// The kubelet's refresh of a 3607-second token: at 80% of its life.
const ROTATION_MINUTES: i64 = 48;
/// One pod in this many calls the apiserver.
const CALLERS_ONE_IN: u32 = 5;
const CALL_EVERY_MINUTES: i64 = 2;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u32>().expect("a number"));
    let pods = args.next().unwrap_or(2_000);
    let hours = args.next().unwrap_or(30);
    let cluster: Vec<Pod> = (0..pods).map(Pod::new).collect();

    let mut engine = Engine::new(EngineConfig::default());
    engine.track_changes();
    for o in nodes().into_iter().chain(cluster.iter().map(Pod::fact)) {
        engine.observe(o);
    }
    let mut log: HashMap<String, Vec<u8>> = HashMap::new();
    println!("{pods} pods, tokens rotated every {ROTATION_MINUTES} minutes, one pod in {CALLERS_ONE_IN} calling the apiserver every {CALL_EVERY_MINUTES} minutes");
    println!("| hour | use groups | TokenRequests | attestations | changelog entries | changelog KiB (use / mint / attested / other) | bytes per pod |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for minute in 0..i64::from(hours) * 60 {
        for p in &cluster {
            p.minute(minute, &mut |o| engine.observe(o));
        }
        if minute % 60 == 59 {
            engine.report_without_incidents();
            engine.expire();
            commit(&mut engine, &mut log);
            row((minute + 1) / 60, &engine, &log, pods);
        }
    }
    // The process's peak resident memory: the engine, and the test's own copy of the changelog.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: unknown");
    println!(
        "peak RSS (engine and this example's copy of the changelog): {}",
        peak.trim_start_matches("VmHWM:").trim()
    );
}

/// One pod: its name, node, address, and when in the rotation cycle its token is rewritten.
struct Pod {
    n: u32,
    uid: String,
    node: String,
    ip: IpAddr,
    /// Minutes into each 48-minute cycle the pod's rotation falls on (pods started at
    /// different times rotate at different times).
    offset: i64,
    calls: bool,
}

impl Pod {
    fn new(n: u32) -> Pod {
        Pod {
            n,
            uid: format!("uid-{n:08}"),
            node: format!("node-{}", n % NODES),
            ip: IpAddr::V4(Ipv4Addr::new(10, 64, (n % NODES) as u8, (n / NODES) as u8 + 2)),
            offset: i64::from(n) * 7 % ROTATION_MINUTES,
            calls: n % CALLERS_ONE_IN == 0,
        }
    }

    fn sa(&self) -> ServiceAccountRef {
        ServiceAccountRef { namespace: format!("team-{}", self.n % 40), name: format!("app-{}", self.n % 97) }
    }

    fn name(&self) -> String {
        format!("app-{}", self.n)
    }

    fn fact(&self) -> Observation {
        Observation::Pod(PodFact {
            time: Timestamp(START),
            event: Some(PodEvent::Observed),
            source: Some(FactSource::Inventory),
            uid: Some(self.uid.clone()),
            namespace: self.sa().namespace,
            name: self.name(),
            node: Some(self.node.clone()),
            serviceaccount: Some(self.sa().name),
            host_network: Some(false),
            ips: vec![self.ip],
            secret_volumes: vec![],
        })
    }

    /// The pod's credential during `minute`: its rotation number.
    fn rotation(&self, minute: i64) -> i64 {
        (minute + ROTATION_MINUTES - self.offset).div_euclid(ROTATION_MINUTES)
    }

    fn jti(&self, rotation: i64) -> String {
        format!("{:08}-{rotation:04}", self.n)
    }

    /// What the pod, its kubelet and its node's agent do in one minute of event time.
    fn minute(&self, minute: i64, observe: &mut impl FnMut(Observation)) {
        let time = Timestamp(START + minute * MINUTE);
        let rotation = self.rotation(minute);
        let jti = self.jti(rotation);
        if minute == 0 || (minute - self.offset).rem_euclid(ROTATION_MINUTES) == 0 {
            observe(Observation::TokenMint(TokenMint {
                time,
                audit_id: format!("mint-{jti}"),
                minter: format!("system:node:{}", self.node),
                source_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, (self.n % NODES) as u8 + 10))],
                serviceaccount: self.sa(),
                jti: Some(jti.clone()),
                bound_pod: Some(BoundPod { name: self.name(), uid: Some(self.uid.clone()) }),
                bound_kind: Some("Pod".into()),
                code: Some(201),
                user_agent: Some("kubelet/v1.32.3".into()),
            }));
            observe(Observation::Credential(CredentialFact {
                time: Timestamp(time.0 + 1_000_000),
                event: CredentialEvent::Held,
                node: self.node.clone(),
                pod_uid: self.uid.clone(),
                serviceaccount: self.sa(),
                credential: Credential::PodBound {
                    jti: Some(jti.clone()),
                    pod_name: self.name(),
                    pod_uid: self.uid.clone(),
                    node: Some(self.node.clone()),
                },
                details: AttestationDetails::default(),
            }));
        }
        if self.calls && (minute + i64::from(self.n)) % CALL_EVERY_MINUTES == 0 {
            let sa = self.sa();
            observe(Observation::TokenUse(TokenUse {
                time: Timestamp(time.0 + 30_000_000),
                audit_id: format!("use-{}-{minute}", self.n),
                stage: Stage::ResponseComplete,
                serviceaccount_uid: Some(format!("sa-uid-{}", sa.name)),
                credential: Credential::PodBound {
                    jti: Some(jti),
                    pod_name: self.name(),
                    pod_uid: self.uid.clone(),
                    node: Some(self.node.clone()),
                },
                source_ips: vec![self.ip],
                user_agent: Some(format!("{}/1.0 (linux/amd64) kubernetes/$Format", sa.name)),
                request: Request {
                    verb: "get".into(),
                    resource: Some("configmaps".into()),
                    namespace: Some(sa.namespace.clone()),
                    name: Some(format!("{}-config", sa.name)),
                    code: Some(200),
                    ..Request::default()
                },
                serviceaccount: sa,
                stale_token: false,
            }));
        }
    }
}

/// One commit's records into the compacted log.
fn commit(engine: &mut Engine, log: &mut HashMap<String, Vec<u8>>) {
    for Change { key, value } in engine.changes() {
        match value {
            Some(v) => log.insert(key, v),
            None => log.remove(&key),
        };
    }
}

fn row(hour: i64, engine: &Engine, log: &HashMap<String, Vec<u8>>, pods: u32) {
    let mut by_section: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, value) in log {
        let section = match key.split('\t').next().unwrap_or_default() {
            s @ ("use" | "mint" | "attested") => s,
            _ => "other",
        };
        *by_section.entry(section).or_default() += key.len() + value.len();
    }
    let kib = |s: &str| by_section.get(s).copied().unwrap_or_default() as f64 / 1024.0;
    let total: usize = by_section.values().sum();
    let size = engine.state_size();
    if std::env::var_os("SECTIONS").is_some() {
        let mut all: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (key, value) in log {
            let e = all.entry(key.split('\t').next().unwrap_or_default()).or_default();
            *e = (e.0 + 1, e.1 + key.len() + value.len());
        }
        eprintln!("{all:?}");
    }
    println!(
        "| {hour} | {} | {} | {} | {} | {:.0} ({:.0} / {:.0} / {:.0} / {:.0}) | {:.0} |",
        size.use_groups,
        size.mints,
        size.attestations,
        log.len(),
        total as f64 / 1024.0,
        kib("use"),
        kib("mint"),
        kib("attested"),
        kib("other"),
        total as f64 / f64::from(pods),
    );
}
