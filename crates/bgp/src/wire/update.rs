//! UPDATE messages (RFC 4271 §4.3) with the path attributes an announcing speaker needs:
//! ORIGIN, AS_PATH (two- and four-octet, RFC 6793), NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES
//! (RFC 1997), MP_REACH/MP_UNREACH_NLRI (RFC 4760) and LARGE_COMMUNITIES (RFC 8092).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::DecodeError;
use super::notification::{code, update};
use super::reader::Reader;
use crate::prefix::{Family, Prefix};

/// An UPDATE: IPv4 withdrawals, path attributes, IPv4 reachability. Other families travel in
/// [`Attribute::MpReach`] and [`Attribute::MpUnreach`]; an UPDATE with nothing but an empty
/// MP_UNREACH (or nothing at all, for IPv4) is an End-of-RIB marker (RFC 4724 §2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 prefixes.
    pub withdrawn: Vec<Prefix>,
    /// Path attributes in wire order.
    pub attributes: Vec<Attribute>,
    /// Announced IPv4 prefixes.
    pub nlri: Vec<Prefix>,
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Learned by an interior protocol (what we announce: we originate the route).
    Igp = 0,
    /// Learned by EGP.
    Egp = 1,
    /// Learned some other way.
    Incomplete = 2,
}

/// A large community (RFC 8092): global administrator and two local data parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    /// Global administrator (an AS number).
    pub global: u32,
    /// First local data part.
    pub local1: u32,
    /// Second local data part.
    pub local2: u32,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    /// True for AS_SEQUENCE, false for AS_SET.
    pub sequence: bool,
    /// The AS numbers.
    pub asns: Vec<u32>,
}

/// Reachable prefixes of one family with their next hops (MP_REACH_NLRI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    /// Family of the prefixes.
    pub family: Family,
    /// Next hop (one address; IPv6 may add a link-local second one).
    pub next_hops: Vec<IpAddr>,
    /// The prefixes.
    pub nlri: Vec<Prefix>,
}

/// A path attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// ORIGIN (type 1).
    Origin(Origin),
    /// AS_PATH (type 2).
    AsPath(Vec<AsSegment>),
    /// NEXT_HOP for IPv4 NLRI (type 3).
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC (type 4).
    Med(u32),
    /// LOCAL_PREF, iBGP only (type 5).
    LocalPref(u32),
    /// COMMUNITIES (type 8).
    Communities(Vec<u32>),
    /// MP_REACH_NLRI (type 14).
    MpReach(MpReach),
    /// MP_UNREACH_NLRI (type 15): withdrawn prefixes of one family.
    MpUnreach(Family, Vec<Prefix>),
    /// AS4_PATH (type 17), for peers without four-octet AS support.
    As4Path(Vec<AsSegment>),
    /// LARGE_COMMUNITY (type 32).
    LargeCommunities(Vec<LargeCommunity>),
    /// Any other attribute, kept as bytes (flags without the extended-length bit).
    Other {
        /// Flags (optional, transitive, partial).
        flags: u8,
        /// Type code.
        code: u8,
        /// Value.
        value: Vec<u8>,
    },
}

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED: u8 = 0x10;

fn malformed() -> DecodeError {
    DecodeError::new(
        "attribute or route lengths do not add up",
        code::UPDATE,
        update::MALFORMED_ATTRIBUTE_LIST,
    )
}

fn invalid_network() -> DecodeError {
    DecodeError::new("malformed prefix", code::UPDATE, update::INVALID_NETWORK)
}

/// Flags (optional, transitive) each known type code must carry.
fn expected_flags(type_code: u8) -> Option<u8> {
    match type_code {
        1 | 2 | 3 | 5 | 6 => Some(TRANSITIVE),
        4 | 14 | 15 => Some(OPTIONAL),
        7 | 8 | 17 | 32 => Some(OPTIONAL | TRANSITIVE),
        _ => None,
    }
}

impl Attribute {
    /// The attribute's type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Attribute::Origin(_) => 1,
            Attribute::AsPath(_) => 2,
            Attribute::NextHop(_) => 3,
            Attribute::Med(_) => 4,
            Attribute::LocalPref(_) => 5,
            Attribute::Communities(_) => 8,
            Attribute::MpReach(_) => 14,
            Attribute::MpUnreach(..) => 15,
            Attribute::As4Path(_) => 17,
            Attribute::LargeCommunities(_) => 32,
            Attribute::Other { code, .. } => *code,
        }
    }

    fn encode(&self, four_octet_as: bool, out: &mut Vec<u8>) {
        let mut value = Vec::new();
        match self {
            Attribute::Origin(origin) => value.push(*origin as u8),
            Attribute::AsPath(segments) => encode_as_path(segments, four_octet_as, &mut value),
            Attribute::As4Path(segments) => encode_as_path(segments, true, &mut value),
            Attribute::NextHop(addr) => value.extend_from_slice(&addr.octets()),
            Attribute::Med(v) | Attribute::LocalPref(v) => {
                value.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::Communities(list) => {
                list.iter().for_each(|c| value.extend_from_slice(&c.to_be_bytes()));
            }
            Attribute::LargeCommunities(list) => {
                for c in list {
                    value.extend_from_slice(&c.global.to_be_bytes());
                    value.extend_from_slice(&c.local1.to_be_bytes());
                    value.extend_from_slice(&c.local2.to_be_bytes());
                }
            }
            Attribute::MpReach(reach) => {
                value.extend_from_slice(&reach.family.afi().to_be_bytes());
                value.push(reach.family.safi());
                let hops: Vec<u8> = reach
                    .next_hops
                    .iter()
                    .flat_map(|hop| match hop {
                        IpAddr::V4(a) => a.octets().to_vec(),
                        IpAddr::V6(a) => a.octets().to_vec(),
                    })
                    .collect();
                value.push(hops.len() as u8);
                value.extend_from_slice(&hops);
                value.push(0);
                reach.nlri.iter().for_each(|p| encode_prefix(p, &mut value));
            }
            Attribute::MpUnreach(family, withdrawn) => {
                value.extend_from_slice(&family.afi().to_be_bytes());
                value.push(family.safi());
                withdrawn.iter().for_each(|p| encode_prefix(p, &mut value));
            }
            Attribute::Other { value: v, .. } => value.extend_from_slice(v),
        }
        let mut flags = match self {
            Attribute::Other { flags, .. } => flags & 0xe0,
            other => expected_flags(other.type_code()).unwrap_or(OPTIONAL),
        };
        if value.len() > 255 {
            flags |= EXTENDED;
        }
        out.push(flags);
        out.push(self.type_code());
        if value.len() > 255 {
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            out.push(value.len() as u8);
        }
        out.extend_from_slice(&value);
    }

    fn decode(
        flags: u8,
        type_code: u8,
        value: &[u8],
        four_octet_as: bool,
    ) -> Result<Attribute, DecodeError> {
        let raw = || {
            let mut data = vec![flags, type_code];
            if flags & EXTENDED != 0 {
                data.extend_from_slice(&(value.len() as u16).to_be_bytes());
            } else {
                data.push(value.len() as u8);
            }
            data.extend_from_slice(value);
            data
        };
        if let Some(expected) = expected_flags(type_code)
            && flags & (OPTIONAL | TRANSITIVE) != expected
        {
            return Err(DecodeError::with_data(
                "attribute flags conflict with its type",
                code::UPDATE,
                update::ATTRIBUTE_FLAGS,
                raw(),
            ));
        }
        let length_error = || {
            DecodeError::with_data(
                "attribute length wrong for its type",
                code::UPDATE,
                update::ATTRIBUTE_LENGTH,
                raw(),
            )
        };
        let fixed = |n: usize| if value.len() == n { Ok(()) } else { Err(length_error()) };
        let word = |v: &[u8]| u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        Ok(match type_code {
            1 => {
                fixed(1)?;
                Attribute::Origin(match value[0] {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    _ => {
                        return Err(DecodeError::with_data(
                            "undefined ORIGIN",
                            code::UPDATE,
                            update::INVALID_ORIGIN,
                            raw(),
                        ));
                    }
                })
            }
            2 => Attribute::AsPath(decode_as_path(value, four_octet_as)?),
            17 => Attribute::As4Path(decode_as_path(value, true)?),
            3 => {
                fixed(4)?;
                let addr = Ipv4Addr::from(word(value));
                if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
                    return Err(DecodeError::with_data(
                        "NEXT_HOP is not a unicast address",
                        code::UPDATE,
                        update::INVALID_NEXT_HOP,
                        raw(),
                    ));
                }
                Attribute::NextHop(addr)
            }
            4 => {
                fixed(4)?;
                Attribute::Med(word(value))
            }
            5 => {
                fixed(4)?;
                Attribute::LocalPref(word(value))
            }
            8 => {
                if !value.len().is_multiple_of(4) {
                    return Err(length_error());
                }
                Attribute::Communities(value.chunks_exact(4).map(word).collect())
            }
            32 => {
                if !value.len().is_multiple_of(12) {
                    return Err(length_error());
                }
                Attribute::LargeCommunities(
                    value
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global: word(&c[0..4]),
                            local1: word(&c[4..8]),
                            local2: word(&c[8..12]),
                        })
                        .collect(),
                )
            }
            14 => decode_mp_reach(value)?.map(Attribute::MpReach).unwrap_or_else(|| {
                Attribute::Other { flags: flags & 0xe0, code: 14, value: value.to_vec() }
            }),
            15 => decode_mp_unreach(value)?
                .map(|(family, withdrawn)| Attribute::MpUnreach(family, withdrawn))
                .unwrap_or_else(|| Attribute::Other {
                    flags: flags & 0xe0,
                    code: 15,
                    value: value.to_vec(),
                }),
            _ => Attribute::Other { flags: flags & 0xe0, code: type_code, value: value.to_vec() },
        })
    }
}

fn optional_error(reason: &'static str) -> DecodeError {
    DecodeError::new(reason, code::UPDATE, update::OPTIONAL_ATTRIBUTE)
}

/// MP_REACH_NLRI; `None` for a family the speaker does not know (kept as an opaque attribute).
fn decode_mp_reach(value: &[u8]) -> Result<Option<MpReach>, DecodeError> {
    let mut r = Reader::new(value, || optional_error("MP_REACH_NLRI too short"));
    let afi = r.u16()?;
    let safi = r.u8()?;
    let Some(family) = Family::from_afi_safi(afi, safi) else { return Ok(None) };
    let hop_len = usize::from(r.u8()?);
    let hops = r.take(hop_len)?;
    let next_hops = match hops.len() {
        4 => vec![IpAddr::V4(Ipv4Addr::from([hops[0], hops[1], hops[2], hops[3]]))],
        16 | 32 => hops
            .chunks_exact(16)
            .map(|c| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(octets))
            })
            .collect(),
        _ => return Err(optional_error("MP_REACH_NLRI next hop length")),
    };
    let _reserved = r.u8()?;
    let nlri = decode_prefixes(r.rest(), family)?;
    Ok(Some(MpReach { family, next_hops, nlri }))
}

fn decode_mp_unreach(value: &[u8]) -> Result<Option<(Family, Vec<Prefix>)>, DecodeError> {
    let mut r = Reader::new(value, || optional_error("MP_UNREACH_NLRI too short"));
    let afi = r.u16()?;
    let safi = r.u8()?;
    let Some(family) = Family::from_afi_safi(afi, safi) else { return Ok(None) };
    Ok(Some((family, decode_prefixes(r.rest(), family)?)))
}

fn encode_as_path(segments: &[AsSegment], four_octet_as: bool, out: &mut Vec<u8>) {
    for segment in segments {
        out.push(if segment.sequence { 2 } else { 1 });
        out.push(segment.asns.len() as u8);
        for asn in &segment.asns {
            if four_octet_as {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                let two = u16::try_from(*asn).unwrap_or(super::open::AS_TRANS);
                out.extend_from_slice(&two.to_be_bytes());
            }
        }
    }
}

fn decode_as_path(value: &[u8], four_octet_as: bool) -> Result<Vec<AsSegment>, DecodeError> {
    let bad = || DecodeError::new("malformed AS_PATH", code::UPDATE, update::MALFORMED_AS_PATH);
    let mut r = Reader::new(value, bad);
    let mut segments = Vec::new();
    while !r.is_empty() {
        let sequence = match r.u8()? {
            1 => false,
            2 => true,
            _ => return Err(bad()),
        };
        let count = usize::from(r.u8()?);
        if count == 0 {
            return Err(bad());
        }
        let asns = (0..count)
            .map(|_| if four_octet_as { r.u32() } else { r.u16().map(u32::from) })
            .collect::<Result<_, _>>()?;
        segments.push(AsSegment { sequence, asns });
    }
    Ok(segments)
}

pub(crate) fn encode_prefix(prefix: &Prefix, out: &mut Vec<u8>) {
    out.push(prefix.len());
    out.extend_from_slice(&prefix.octets()[..prefix.wire_bytes()]);
}

/// Prefixes of one family packed as (length, significant octets).
fn decode_prefixes(mut bytes: &[u8], family: Family) -> Result<Vec<Prefix>, DecodeError> {
    let mut prefixes = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        if len > family.max_len() {
            return Err(invalid_network());
        }
        let n = usize::from(len).div_ceil(8);
        if rest.len() < n {
            return Err(invalid_network());
        }
        let addr = match family {
            Family::Ipv4Unicast => {
                let mut octets = [0u8; 4];
                octets[..n].copy_from_slice(&rest[..n]);
                IpAddr::V4(Ipv4Addr::from(octets))
            }
            Family::Ipv6Unicast => {
                let mut octets = [0u8; 16];
                octets[..n].copy_from_slice(&rest[..n]);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        };
        prefixes.push(Prefix::new(addr, len).map_err(|_| invalid_network())?);
        bytes = &rest[n..];
    }
    Ok(prefixes)
}

impl Update {
    /// The End-of-RIB marker of a family (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Update {
        match family {
            Family::Ipv4Unicast => Update::default(),
            family => Update {
                attributes: vec![Attribute::MpUnreach(family, Vec::new())],
                ..Update::default()
            },
        }
    }

    /// The family this UPDATE marks the end of, if it is an End-of-RIB marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some(Family::Ipv4Unicast),
            [Attribute::MpUnreach(family, withdrawn)] if withdrawn.is_empty() => Some(*family),
            _ => None,
        }
    }

    pub(crate) fn encode_body(&self, four_octet_as: bool, out: &mut Vec<u8>) {
        let mut withdrawn = Vec::new();
        self.withdrawn.iter().for_each(|p| encode_prefix(p, &mut withdrawn));
        out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        out.extend_from_slice(&withdrawn);
        let mut attributes = Vec::new();
        self.attributes.iter().for_each(|a| a.encode(four_octet_as, &mut attributes));
        out.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        out.extend_from_slice(&attributes);
        self.nlri.iter().for_each(|p| encode_prefix(p, out));
    }

    pub(crate) fn decode_body(body: &[u8], four_octet_as: bool) -> Result<Update, DecodeError> {
        let mut r = Reader::new(body, malformed);
        let withdrawn_len = usize::from(r.u16()?);
        let withdrawn = decode_prefixes(r.take(withdrawn_len)?, Family::Ipv4Unicast)?;
        let attributes_len = usize::from(r.u16()?);
        let mut attrs = Reader::new(r.take(attributes_len)?, malformed);
        let nlri = decode_prefixes(r.rest(), Family::Ipv4Unicast)?;
        let mut attributes = Vec::new();
        let mut seen = BTreeSet::new();
        while !attrs.is_empty() {
            let flags = attrs.u8()?;
            let type_code = attrs.u8()?;
            let len = if flags & EXTENDED != 0 {
                usize::from(attrs.u16()?)
            } else {
                usize::from(attrs.u8()?)
            };
            let value = attrs.take(len)?;
            if !seen.insert(type_code) {
                return Err(malformed());
            }
            attributes.push(Attribute::decode(flags, type_code, value, four_octet_as)?);
        }
        let update = Update { withdrawn, attributes, nlri };
        update.check_mandatory(&seen)?;
        Ok(update)
    }

    /// RFC 4271 §6.3: ORIGIN, AS_PATH (and NEXT_HOP for IPv4 NLRI) must accompany announcements.
    fn check_mandatory(&self, seen: &BTreeSet<u8>) -> Result<(), DecodeError> {
        let announces = !self.nlri.is_empty()
            || self
                .attributes
                .iter()
                .any(|a| matches!(a, Attribute::MpReach(r) if !r.nlri.is_empty()));
        if !announces {
            return Ok(());
        }
        let mut required = vec![1u8, 2];
        if !self.nlri.is_empty() {
            required.push(3);
        }
        match required.into_iter().find(|code| !seen.contains(code)) {
            Some(missing) => Err(DecodeError::with_data(
                "mandatory attribute missing",
                code::UPDATE,
                update::MISSING_WELL_KNOWN,
                [missing],
            )),
            None => Ok(()),
        }
    }
}
