//! Addresses no Service may answer on and no endpoint may be: they belong to every host at once.
//!
//! A frontend on 127.0.0.1 or 169.254.169.254 (the cloud metadata service) would capture traffic
//! the node's own processes send to themselves or to the metadata service; an endpoint there would
//! send a Service's traffic into the proxying host. The API server refuses these in Services and
//! EndpointSlices (`ValidateNonSpecialIP`); a manifest directory can still hold them, so the model
//! refuses them itself.

use std::fmt;
use std::net::IpAddr;

/// Why an address is special.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecialAddress {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `169.254.0.0/16` (incl. the metadata service 169.254.169.254), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `::ffff:0:0/96`: an IPv4 address in IPv6 clothing, which the data plane's 16-byte form
    /// would confuse with the IPv4 address itself.
    Ipv4Mapped,
}

impl SpecialAddress {
    /// Whether `ip` is special, and why.
    pub fn of(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_unspecified() {
                    Some(Self::Unspecified)
                } else if v4.is_loopback() {
                    Some(Self::Loopback)
                } else if v4.is_link_local() {
                    Some(Self::LinkLocal)
                } else if v4.is_multicast() {
                    Some(Self::Multicast)
                } else if v4.is_broadcast() {
                    Some(Self::Broadcast)
                } else {
                    None
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_unspecified() {
                    Some(Self::Unspecified)
                } else if v6.is_loopback() {
                    Some(Self::Loopback)
                } else if v6.is_unicast_link_local() {
                    Some(Self::LinkLocal)
                } else if v6.is_multicast() {
                    Some(Self::Multicast)
                } else if v6.to_ipv4_mapped().is_some() {
                    Some(Self::Ipv4Mapped)
                } else {
                    None
                }
            }
        }
    }
}

impl fmt::Display for SpecialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified (0.0.0.0, ::)",
            Self::Loopback => "loopback (127.0.0.0/8, ::1)",
            Self::LinkLocal => "link-local (169.254.0.0/16, fe80::/10)",
            Self::Multicast => "multicast (224.0.0.0/4, ff00::/8)",
            Self::Broadcast => "the broadcast address",
            Self::Ipv4Mapped => "IPv4-mapped IPv6 (::ffff:0:0/96)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_addresses_are_named_and_ordinary_ones_pass() {
        let cases: &[(&str, Option<SpecialAddress>)] = &[
            ("0.0.0.0", Some(SpecialAddress::Unspecified)),
            ("::", Some(SpecialAddress::Unspecified)),
            ("127.0.0.1", Some(SpecialAddress::Loopback)),
            ("127.255.0.9", Some(SpecialAddress::Loopback)),
            ("::1", Some(SpecialAddress::Loopback)),
            ("169.254.169.254", Some(SpecialAddress::LinkLocal)),
            ("fe80::1", Some(SpecialAddress::LinkLocal)),
            ("224.0.0.1", Some(SpecialAddress::Multicast)),
            ("239.1.2.3", Some(SpecialAddress::Multicast)),
            ("ff02::1", Some(SpecialAddress::Multicast)),
            ("255.255.255.255", Some(SpecialAddress::Broadcast)),
            ("::ffff:10.96.0.10", Some(SpecialAddress::Ipv4Mapped)),
            ("10.96.0.10", None),
            ("192.168.1.10", None),
            ("203.0.113.5", None),
            ("fd00::10", None),
            ("2001:db8::5", None),
            ("169.255.0.1", None),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(SpecialAddress::of(ip), *expected, "{text}");
        }
    }
}
