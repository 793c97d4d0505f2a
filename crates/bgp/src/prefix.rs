//! IP prefixes and the address families (AFI/SAFI) the speaker announces.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address family and subsequent address family (RFC 4760) the speaker can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 unicast (AFI 1, SAFI 1).
    Ipv4Unicast,
    /// IPv6 unicast (AFI 2, SAFI 1).
    Ipv6Unicast,
}

impl Family {
    /// Both families, in wire order.
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// The address family identifier.
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    /// The subsequent address family identifier (unicast).
    pub fn safi(self) -> u8 {
        1
    }

    /// The family of an AFI/SAFI pair, if the speaker knows it.
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4Unicast,
            IpAddr::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// Longest prefix length in this family.
    pub fn max_len(self) -> u8 {
        match self {
            Family::Ipv4Unicast => 32,
            Family::Ipv6Unicast => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
        })
    }
}

/// An IP prefix with its host bits cleared (so equal prefixes compare equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// A prefix length that does not fit its family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The length is longer than the family's addresses.
    #[error("prefix length {len} is longer than {max}")]
    TooLong {
        /// Length asked for.
        len: u8,
        /// Longest allowed.
        max: u8,
    },
    /// The text is not `ADDRESS/LENGTH` or `ADDRESS`.
    #[error("{0:?} is not a prefix (ADDRESS/LENGTH)")]
    Syntax(String),
}

impl Prefix {
    /// The prefix `addr/len`, host bits cleared.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        let max = Family::of(addr).max_len();
        if len > max {
            return Err(PrefixError::TooLong { len, max });
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(Prefix { addr, len })
    }

    /// The host route of one address (/32 or /128).
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix { addr, len: Family::of(addr).max_len() }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for the default route (length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The prefix's family.
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// Bytes of the address that the wire format carries (`ceil(len / 8)`).
    pub(crate) fn wire_bytes(&self) -> usize {
        usize::from(self.len).div_ceil(8)
    }

    /// The address octets (4 or 16).
    pub(crate) fn octets(&self) -> Vec<u8> {
        match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Prefix, PrefixError> {
        let syntax = || PrefixError::Syntax(text.to_owned());
        match text.split_once('/') {
            Some((addr, len)) => {
                Prefix::new(addr.parse().map_err(|_| syntax())?, len.parse().map_err(|_| syntax())?)
            }
            None => Ok(Prefix::host(text.parse().map_err(|_| syntax())?)),
        }
    }
}
