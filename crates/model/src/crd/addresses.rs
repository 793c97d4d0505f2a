//! The addresses of an IP pool: CIDRs and `first-last` ranges, IPv4 and IPv6, as numbers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::{Cidr, CidrError};

/// Why an entry of `spec.addresses` did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRangeError {
    /// A CIDR that does not parse.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// Neither a CIDR nor a range.
    #[error("{0:?} is neither a CIDR (10.0.0.0/24) nor a range (10.0.0.10-10.0.0.20)")]
    Syntax(String),
    /// One end of a range is not an address.
    #[error("{value:?}: {end:?} is not an IP address")]
    BadEnd { value: String, end: String },
    /// A range from IPv4 to IPv6 or back.
    #[error("{0:?}: both ends of a range must be of one family")]
    MixedFamilies(String),
    /// A range whose first address comes after its last.
    #[error("{0:?}: the first address comes after the last")]
    Reversed(String),
}

/// A contiguous block of addresses of one family, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

impl AddressRange {
    /// The range `first..=last`; `None` across families or when `first > last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Option<Self> {
        (first.is_ipv4() == last.is_ipv4() && first <= last).then_some(Self { first, last })
    }

    /// Every address of a prefix, network and broadcast included (a LoadBalancer address is not
    /// a subnet's host, so there is nothing to reserve).
    pub fn of_cidr(cidr: Cidr) -> Self {
        let first = cidr.network();
        let host_bits = u32::from(family_bits(first) - cidr.prefix_len());
        let span = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
        Self { first, last: from_number(first.is_ipv4(), to_number(first) + span) }
    }

    /// Parses `10.0.0.0/24`, `10.0.0.10-10.0.0.20`, `2001:db8::/120` or `2001:db8::1-2001:db8::9`.
    pub fn parse(text: &str) -> Result<Self, AddressRangeError> {
        let trimmed = text.trim();
        if trimmed.contains('/') {
            return Ok(Self::of_cidr(trimmed.parse::<Cidr>()?));
        }
        let Some((first, last)) = trimmed.split_once('-') else {
            return Err(AddressRangeError::Syntax(text.to_owned()));
        };
        let end = |end: &str| {
            end.trim().parse::<IpAddr>().map_err(|_| AddressRangeError::BadEnd {
                value: text.to_owned(),
                end: end.trim().to_owned(),
            })
        };
        let (first, last) = (end(first)?, end(last)?);
        if first.is_ipv4() != last.is_ipv4() {
            return Err(AddressRangeError::MixedFamilies(text.to_owned()));
        }
        Self::new(first, last).ok_or_else(|| AddressRangeError::Reversed(text.to_owned()))
    }

    pub fn first(&self) -> IpAddr {
        self.first
    }

    pub fn last(&self) -> IpAddr {
        self.last
    }

    pub fn is_ipv4(&self) -> bool {
        self.first.is_ipv4()
    }

    /// Number of addresses (at least 1; 2^128 saturates to `u128::MAX`).
    pub fn len(&self) -> u128 {
        (to_number(self.last) - to_number(self.first)).saturating_add(1)
    }

    /// Never true: a range holds at least its first address.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.is_ipv4() && self.first <= address && address <= self.last
    }

    /// True when the two ranges share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.is_ipv4() == other.is_ipv4() && self.first <= other.last && other.first <= self.last
    }

    /// The address `offset` places after the first; `None` past the end.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        let number = to_number(self.first).checked_add(offset)?;
        (number <= to_number(self.last)).then(|| from_number(self.is_ipv4(), number))
    }

    /// Where `address` sits in the range; `None` outside it.
    pub fn offset_of(&self, address: IpAddr) -> Option<u128> {
        self.contains(address).then(|| to_number(address) - to_number(self.first))
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// True for the IPv4 addresses MetalLB's `avoidBuggyIPs` skips: last octet 0 or 255, which some
/// old clients and routers treat as network or broadcast addresses.
pub fn is_buggy(address: IpAddr) -> bool {
    matches!(address, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

fn family_bits(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn to_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_number(ipv4: bool, number: u128) -> IpAddr {
    if ipv4 {
        // Callers stay within the range's IPv4 ends, so the number fits.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(number).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_and_ranges_of_both_families() {
        let cases: &[(&str, &str, &str, u128)] = &[
            ("10.0.0.0/24", "10.0.0.0", "10.0.0.255", 256),
            ("10.0.0.7/32", "10.0.0.7", "10.0.0.7", 1),
            ("10.0.0.9/30", "10.0.0.8", "10.0.0.11", 4),
            ("10.0.0.10-10.0.0.20", "10.0.0.10", "10.0.0.20", 11),
            (" 10.0.0.10 - 10.0.0.10 ", "10.0.0.10", "10.0.0.10", 1),
            ("2001:db8::/120", "2001:db8::", "2001:db8::ff", 256),
            ("2001:db8::1-2001:db8::9", "2001:db8::1", "2001:db8::9", 9),
            ("0.0.0.0/0", "0.0.0.0", "255.255.255.255", 1 << 32),
            ("::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", u128::MAX),
        ];
        for (text, first, last, len) in cases {
            let range = AddressRange::parse(text).unwrap();
            assert_eq!((range.first(), range.last(), range.len()), (ip(first), ip(last), *len));
        }
    }

    #[test]
    fn refuses_what_is_not_a_pool_entry() {
        let cases: &[(&str, &str)] = &[
            ("10.0.0.1", "neither a CIDR"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.x/24", "does not parse"),
            ("10.0.0.1-10.0.0", "\"10.0.0\" is not an IP address"),
            ("10.0.0.1-2001:db8::1", "one family"),
            ("10.0.0.9-10.0.0.1", "comes after the last"),
        ];
        for (text, expected) in cases {
            let message = AddressRange::parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn overlap_contains_and_offsets() {
        let a = AddressRange::parse("10.0.0.0/24").unwrap();
        let b = AddressRange::parse("10.0.0.255-10.0.1.3").unwrap();
        let c = AddressRange::parse("10.0.1.4-10.0.1.9").unwrap();
        let v6 = AddressRange::parse("::a00:0/120").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !b.overlaps(&c));
        assert!(!a.overlaps(&v6), "families never overlap");
        assert_eq!(b.nth(1), Some(ip("10.0.1.0")));
        assert_eq!(b.nth(5), None);
        assert_eq!(b.offset_of(ip("10.0.1.3")), Some(4));
        assert_eq!(b.offset_of(ip("10.0.1.4")), None);
        assert!(is_buggy(ip("10.0.1.0")) && is_buggy(ip("10.0.0.255")));
        assert!(!is_buggy(ip("10.0.0.1")) && !is_buggy(ip("2001:db8::ff")));
    }
}
