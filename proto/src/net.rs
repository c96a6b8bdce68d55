//! Addresses and networks: the trusted client address of a request and cluster networks.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation (`10.244.0.0/16`, `fd00::/64`); a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a network: write it as an address or CIDR, e.g. 10.244.0.0/16")]
pub struct BadNetwork(pub String);

impl IpNet {
    /// The network of one address.
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// The network of `prefix` bits that holds `addr` (a prefix beyond the address's length is
    /// taken as the whole address).
    pub fn around(addr: IpAddr, prefix: u8) -> IpNet {
        let addr = match addr {
            IpAddr::V4(v4) => {
                let prefix = u32::from(prefix.min(32));
                let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let prefix = u32::from(prefix.min(128));
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix: prefix.min(max) }
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses one entry of `sourceIPs`. Entries are addresses; some pipelines append a port or wrap
/// IPv6 in brackets, which we strip rather than lose the request.
pub fn parse_source_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(host, _port)| host.parse().ok())
}

/// The client address of a request: walk `sourceIPs` from the right (the TCP peer, the only entry
/// a client cannot forge) and skip addresses inside trusted proxies. With no trusted proxies this
/// is the last entry. If every entry is a trusted proxy, the leftmost is the best we have.
pub fn client_address(source_ips: &[IpAddr], trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let mut last = None;
    for &ip in source_ips.iter().rev() {
        last = Some(ip);
        if !trusted_proxies.iter().any(|p| p.contains(ip)) {
            return Some(ip);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_membership() {
        let net: IpNet = "10.244.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.244.3.7")));
        assert!(!net.contains(ip("10.245.0.1")));
        assert!(!net.contains(ip("fd00::1")));
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert!(v6.contains(ip("fd00::1")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
        assert_eq!(IpNet::around(ip("198.51.100.77"), 24), "198.51.100.0/24".parse().unwrap());
        assert_eq!(IpNet::around(ip("2001:db8:1:2:3::9"), 64), "2001:db8:1:2::/64".parse().unwrap());
        assert!(IpNet::around(ip("198.51.100.77"), 24).contains(ip("198.51.100.3")));
    }

    #[test]
    fn client_address_is_the_tcp_peer_unless_it_is_a_trusted_proxy() {
        let spoofed = [ip("10.244.1.12"), ip("203.0.113.50")];
        assert_eq!(client_address(&spoofed, &[]), Some(ip("203.0.113.50")));
        let proxy: IpNet = "192.0.2.0/24".parse().unwrap();
        let proxied = [ip("198.51.100.7"), ip("192.0.2.10")];
        assert_eq!(client_address(&proxied, &[proxy]), Some(ip("198.51.100.7")));
        assert_eq!(client_address(&[], &[]), None);
    }

    #[test]
    fn source_ips_with_ports_or_brackets() {
        assert_eq!(parse_source_ip("10.0.0.1:443"), Some(ip("10.0.0.1")));
        assert_eq!(parse_source_ip("[fd00::1]:443"), Some(ip("fd00::1")));
        assert_eq!(parse_source_ip("::1"), Some(ip("::1")));
        assert_eq!(parse_source_ip("garbage"), None);
    }
}
