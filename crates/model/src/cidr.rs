//! IP prefixes (CIDRs), parsed once so the data plane never sees strings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a CIDR string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/` between address and prefix length.
    #[error("{0:?} is not a CIDR: expected ADDRESS/PREFIX-LENGTH")]
    MissingSlash(String),
    /// The address part does not parse.
    #[error("{0:?} is not a CIDR: the address does not parse")]
    BadAddress(String),
    /// The prefix length is not a number up to the family's width (the second field).
    #[error("{0:?} is not a CIDR: the prefix length must be 0-{1}")]
    BadPrefixLength(String, u8),
}

/// An IPv4 or IPv6 prefix such as `10.0.0.0/8` or `2001:db8::/32`. Host bits are cleared when
/// parsed, so two spellings of the same network compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// Builds a prefix, clearing host bits. `None` if the length exceeds the family's width.
    pub fn new(address: IpAddr, prefix_len: u8) -> Option<Self> {
        let network = match address {
            IpAddr::V4(a) if prefix_len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) if prefix_len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
            _ => return None,
        };
        Some(Self { network, prefix_len })
    }

    /// A prefix holding exactly one address.
    pub fn host(address: IpAddr) -> Self {
        let prefix_len = if address.is_ipv4() { 32 } else { 128 };
        Self { network: address, prefix_len }
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// True when `address` lies inside the prefix (never across address families).
    pub fn contains(&self, address: IpAddr) -> bool {
        match Self::new(address, self.prefix_len) {
            Some(other) => other.network == self.network,
            None => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (address, length) =
            trimmed.split_once('/').ok_or_else(|| CidrError::MissingSlash(text.to_owned()))?;
        let address: IpAddr =
            address.parse().map_err(|_| CidrError::BadAddress(text.to_owned()))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let length: u8 = length
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| CidrError::BadPrefixLength(text.to_owned(), max))?;
        Self::new(address, length).ok_or_else(|| CidrError::BadPrefixLength(text.to_owned(), max))
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> Self {
        cidr.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_clears_host_bits_and_rejects_garbage() {
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            ("10.1.2.3/8", Ok("10.0.0.0/8")),
            (" 192.168.1.7/32 ", Ok("192.168.1.7/32")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("2001:db8::1/32", Ok("2001:db8::/32")),
            ("::/0", Ok("::/0")),
            ("10.0.0.0", Err(())),
            ("10.0.0.0/33", Err(())),
            ("2001:db8::/129", Err(())),
            ("banana/8", Err(())),
            ("10.0.0.0/x", Err(())),
        ];
        for (input, expected) in cases {
            let got = input.parse::<Cidr>().map(|c| c.to_string()).map_err(|_| ());
            assert_eq!(got, expected.map(str::to_owned), "input {input:?}");
        }
    }

    #[test]
    fn contains_respects_prefix_and_family() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("192.168.1.7/32", "192.168.1.7", true),
            ("192.168.1.7/32", "192.168.1.8", false),
        ];
        for (cidr, address, expected) in cases {
            let cidr: Cidr = cidr.parse().unwrap();
            assert_eq!(cidr.contains(address.parse().unwrap()), *expected, "{cidr} ∋ {address}");
        }
    }
}
