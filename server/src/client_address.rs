//! Which client a connection stands for, as the per-address limits count it: the TCP peer, or
//! the address a trusted reverse proxy names for it, with IPv6 grouped by /64.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Where a connection's client address comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedProxy {
    /// Clients connect directly: the TCP peer is the client.
    #[default]
    None,
    /// Behind fly.io's proxy, which sets `Fly-Client-IP` on every request it passes on.
    Fly,
    /// Behind reverse proxies at these addresses (Caddy, nginx): for a connection from one of
    /// them, the right-most `X-Forwarded-For` entry that is not one of them. Connections from
    /// anywhere else are their own TCP peer, whatever headers they send.
    Forwarding(Vec<IpNet>),
}

/// Why a `--trusted-proxy` value is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not `none`, `fly`, or a comma-separated list of proxy addresses or networks")]
pub struct InvalidTrustedProxy(String);

impl FromStr for TrustedProxy {
    type Err = InvalidTrustedProxy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "none" | "" => Ok(Self::None),
            "fly" => Ok(Self::Fly),
            list => list
                .split(',')
                .map(|entry| parse_network(entry.trim()))
                .collect::<Option<Vec<_>>>()
                .map(Self::Forwarding)
                .ok_or_else(|| InvalidTrustedProxy(text.to_owned())),
        }
    }
}

/// `10.0.0.0/8`, or a bare address meaning just that address.
fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()
}

impl TrustedProxy {
    /// The client behind a connection from `peer` whose request carried `headers`.
    pub(crate) fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddress {
        let named = match self {
            Self::None => None,
            Self::Fly => header_text(headers, "fly-client-ip")
                .and_then(|text| text.trim().parse::<IpAddr>().ok()),
            Self::Forwarding(proxies) if trusts(proxies, peer) => {
                forwarded_client(proxies, headers)
            }
            Self::Forwarding(_) => None,
        };
        ClientAddress::of(named.unwrap_or(peer))
    }
}

fn trusts(proxies: &[IpNet], address: IpAddr) -> bool {
    let address = canonical(address);
    proxies.iter().any(|proxy| proxy.contains(&address))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The right-most `X-Forwarded-For` address that is not a trusted proxy: each proxy appends
/// the address it got the request from, so entries left of it may be made up by the client.
fn forwarded_client(proxies: &[IpNet], headers: &HeaderMap) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for entry in entries.into_iter().rev() {
        let address = entry.trim().parse::<IpAddr>().ok()?;
        if !trusts(proxies, address) {
            return Some(address);
        }
    }
    None
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A client as the per-address limits count it: an IPv4 address, or the /64 an IPv6 address
/// is in (one subscriber commonly gets a whole /64, so counting single IPv6 addresses would
/// give one person 2^64 budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientAddress(IpAddr);

impl ClientAddress {
    pub(crate) fn of(address: IpAddr) -> Self {
        match canonical(address) {
            IpAddr::V6(v6) if !v6.is_loopback() => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self(v4),
        }
    }

    /// The relay's own machine: its in-process virtual clients, or a proxy in front that was
    /// not declared with `--trusted-proxy` (then every member looks like this address).
    pub(crate) fn is_loopback(self) -> bool {
        self.0.is_loopback()
    }
}

impl std::fmt::Display for ClientAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(prefix) if !prefix.is_loopback() => write!(formatter, "{prefix}/64"),
            v4 => write!(formatter, "{v4}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    fn client(proxy: &str, peer: &str, pairs: &[(&'static str, &str)]) -> String {
        let proxy: TrustedProxy = proxy.parse().unwrap();
        proxy
            .client_address(peer.parse().unwrap(), &headers(pairs))
            .to_string()
    }

    #[test]
    fn without_a_trusted_proxy_the_tcp_peer_is_the_client_whatever_the_headers_say() {
        let spoofed = [("x-forwarded-for", "1.2.3.4"), ("fly-client-ip", "5.6.7.8")];
        assert_eq!(client("none", "9.9.9.9", &spoofed), "9.9.9.9");
        assert_eq!(client("10.0.0.0/8", "9.9.9.9", &spoofed), "9.9.9.9");
    }

    #[test]
    fn behind_fly_the_client_is_fly_client_ip() {
        assert_eq!(
            client("fly", "fdaa::3", &[("fly-client-ip", "203.0.113.9")]),
            "203.0.113.9"
        );
        assert_eq!(client("fly", "172.16.0.2", &[]), "172.16.0.2");
        assert_eq!(
            client("fly", "172.16.0.2", &[("fly-client-ip", "junk")]),
            "172.16.0.2"
        );
    }

    #[test]
    fn behind_forwarding_proxies_the_client_is_the_right_most_untrusted_entry() {
        let proxies = "10.0.0.1, 10.1.0.0/16";
        let chain = [
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-forwarded-for", "10.1.2.3"),
        ];
        assert_eq!(client(proxies, "10.0.0.1", &chain), "203.0.113.9");
        assert_eq!(client(proxies, "10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(
            client(proxies, "10.0.0.1", &[("x-forwarded-for", "nonsense")]),
            "10.0.0.1"
        );
        assert_eq!(client(proxies, "::ffff:10.0.0.1", &chain), "203.0.113.9");
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_bit_prefix() {
        assert_eq!(client("none", "2001:db8:1:2::1", &[]), "2001:db8:1:2::/64");
        assert_eq!(
            client("none", "2001:db8:1:2:ffff::9", &[]),
            "2001:db8:1:2::/64"
        );
        assert_eq!(client("none", "::ffff:192.0.2.1", &[]), "192.0.2.1");
    }

    #[test]
    fn loopback_stays_loopback_in_both_families() {
        for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let client = ClientAddress::of(address.parse().unwrap());
            assert!(client.is_loopback(), "{address}");
        }
        assert!(!ClientAddress::of("::2".parse().unwrap()).is_loopback());
    }

    #[test]
    fn trusted_proxy_settings_parse_or_say_what_is_wrong() {
        assert_eq!("fly".parse(), Ok(TrustedProxy::Fly));
        assert_eq!("none".parse(), Ok(TrustedProxy::None));
        assert!("10.0.0.1,fd00::/8".parse::<TrustedProxy>().is_ok());
        assert!("10.0.0.1,caddy".parse::<TrustedProxy>().is_err());
    }
}
