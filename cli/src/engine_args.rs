//! The engine's flags, declared once and flattened into `tokentrail analyze`, `tokentrail
//! correlator` and `tokentrail standalone`: one type per setting. `analyze`, which has no
//! configuration file, lays them over the engine's defaults ([`EngineArgs::apply`]); the
//! streaming components lay them over their file's `engine` section. Durations follow
//! [`tokentrail_config::duration`].
//!
//! Every flag is optional and its default is the engine's ([`EngineConfig::default`]), so a flag
//! not given leaves what a configuration file said. Serialized, they are the keys of the
//! configuration files' `engine` section (`engine.cluster_networks`, `engine.rotation_grace`, ...;
//! a flag not given is null), which start-up lays over the file.

use std::time::Duration;

use serde::Serialize;
use tokentrail_correlator::stream::config::micros;
use tokentrail_correlator_core::net::BadNetwork;
use tokentrail_correlator_core::time::Micros;
use tokentrail_correlator_core::{EngineConfig, IpNet};

/// The engine settings every subcommand running the engine takes.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct EngineArgs {
    /// A network of the cluster(s) (pods, nodes) beyond what node objects say. Repeatable; adds
    /// to a configuration file's.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    #[serde(rename = "engine.cluster_networks", serialize_with = "nets")]
    pub cluster_network: Vec<IpNet>,
    /// A trusted proxy in front of the apiservers: its forwarded-for entries are believed.
    /// Repeatable; adds to a configuration file's.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    #[serde(rename = "engine.trusted_proxies", serialize_with = "nets")]
    pub trusted_proxy: Vec<IpNet>,
    /// A NAT address pod traffic to the apiserver may come from. Repeatable; adds to a
    /// configuration file's.
    #[arg(long, value_name = "IP|CIDR", value_parser = parse_net)]
    #[serde(rename = "engine.egress_ips", serialize_with = "nets")]
    pub egress_ip: Vec<IpNet>,
    /// How long a pod's old token may still be used after its newer one is [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = tokentrail_config::duration::parse)]
    #[serde(rename = "engine.rotation_grace", serialize_with = "tokentrail_config::duration::serialize_given")]
    pub rotation_grace: Option<Duration>,
}

/// The settings of the streaming engine (`tokentrail correlator`, `tokentrail standalone`):
/// attestation deadlines and how long what is no longer seen is kept (`analyze` keeps all).
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct StreamEngineArgs {
    /// How long (by the node's watermark) a node's agent has to attest a pod-bound credential
    /// after its first use before it counts as minted behind the kubelet's back [default: 2m].
    #[arg(long, value_name = "DURATION", value_parser = tokentrail_config::duration::parse)]
    #[serde(rename = "engine.attestation_grace", serialize_with = "tokentrail_config::duration::serialize_given")]
    pub attestation_grace: Option<Duration>,
    /// How long a credential neither used nor attested is kept, by event time; at least 24h
    /// [default: 25h].
    #[arg(long, value_name = "DURATION", value_parser = tokentrail_config::duration::parse)]
    #[serde(rename = "engine.credential_retention", serialize_with = "tokentrail_config::duration::serialize_given")]
    pub credential_retention: Option<Duration>,
    /// How long a deleted pod is kept, by event time [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = tokentrail_config::duration::parse)]
    #[serde(rename = "engine.pod_retention", serialize_with = "tokentrail_config::duration::serialize_given")]
    pub pod_retention: Option<Duration>,
}

impl EngineArgs {
    /// Lays the flags given over `engine`: networks are added, durations replace.
    pub fn apply(&self, engine: &mut EngineConfig) {
        engine.cluster_networks.extend(self.cluster_network.iter().cloned());
        engine.trusted_proxies.extend(self.trusted_proxy.iter().cloned());
        engine.egress.extend(self.egress_ip.iter().cloned());
        set(&mut engine.rotation_grace, self.rotation_grace);
    }
}

fn set(setting: &mut Micros, flag: Option<Duration>) {
    if let Some(d) = flag {
        *setting = micros(d);
    }
}

/// Parses a CIDR or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, BadNetwork> {
    s.parse::<IpNet>()
}

fn nets<S: serde::Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(ToString::to_string))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;
    use tokentrail_correlator::stream::config::EngineSection;
    use tokentrail_correlator_core::expiry::Retention;
    use tokentrail_correlator_core::time::{MINUTE, SECOND};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        stream: StreamEngineArgs,
    }

    /// The engine the streaming components get: the flags laid over the file's `engine` section.
    fn engine(file: serde_json::Value, flags: &[&str]) -> Result<EngineConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(flags.iter().copied())).map_err(|e| e.to_string())?;
        let mut document = serde_json::json!({ "engine": file });
        for keys in [serde_json::to_value(&cli.engine).unwrap(), serde_json::to_value(&cli.stream).unwrap()] {
            crate::startup::config_file::layer(&mut document, keys);
        }
        let section: EngineSection = serde_json::from_value(document["engine"].take()).map_err(|e| e.to_string())?;
        Ok(section.into_engine())
    }

    #[test]
    fn every_duration_flag_takes_the_one_grammar() {
        for flag in ["--rotation-grace", "--attestation-grace", "--credential-retention", "--pod-retention"] {
            for good in ["500ms", "90s", "5m", "1h", "1d", "5m30s", "1h 30m", "1.5h"] {
                assert!(engine(serde_json::json!({}), &[flag, good]).is_ok(), "{flag} {good}");
            }
            for bad in ["5", "300", "5x", "-1s", "soon", "1mo", ""] {
                assert!(engine(serde_json::json!({}), &[flag, bad]).is_err(), "{flag} {bad}");
            }
        }
        let e = engine(serde_json::json!({}), &["--rotation-grace", "500ms", "--attestation-grace", "1m30s"]).unwrap();
        assert_eq!((e.rotation_grace, e.attestation_grace), (500_000, 90 * SECOND));
    }

    #[test]
    fn flags_not_given_leave_the_file_and_its_defaults_and_networks_add_up() {
        let defaults = EngineConfig::default();
        let e = engine(serde_json::json!({}), &[]).unwrap();
        assert_eq!((e.rotation_grace, e.attestation_grace), (defaults.rotation_grace, defaults.attestation_grace));
        assert_eq!(e.retention, Retention::default());
        let file =
            serde_json::json!({"cluster_networks": ["10.0.0.0/8"], "pod_retention": "2h", "rotation_grace": "1m"});
        let e = engine(file, &["--cluster-network", "192.168.0.0/16", "--pod-retention", "10m"]).unwrap();
        assert_eq!(e.cluster_networks.len(), 2);
        assert_eq!((e.retention.pods, e.rotation_grace), (10 * MINUTE, MINUTE));
    }

    #[test]
    fn analyze_lays_the_flags_over_the_engine_s_defaults() {
        let cli = Cli::try_parse_from(["t", "--egress-ip", "198.51.100.7", "--rotation-grace", "90s"]).unwrap();
        let mut e =
            EngineConfig { cluster_networks: vec![parse_net("10.0.0.0/8").unwrap()], ..EngineConfig::default() };
        cli.engine.apply(&mut e);
        assert_eq!((e.egress.len(), e.cluster_networks.len(), e.rotation_grace), (1, 1, 90 * SECOND));
    }

    #[test]
    fn serialized_they_are_the_file_keys_with_null_for_flags_not_given() {
        let cli = Cli::try_parse_from(["t", "--egress-ip", "198.51.100.7", "--rotation-grace", "90s"]).unwrap();
        let value = serde_json::to_value(&cli.engine).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"engine.cluster_networks": [], "engine.trusted_proxies": [],
                               "engine.egress_ips": ["198.51.100.7/32"], "engine.rotation_grace": "1m 30s"})
        );
        assert_eq!(serde_json::to_value(&cli.stream).unwrap()["engine.pod_retention"], serde_json::Value::Null);
    }
}
