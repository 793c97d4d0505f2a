//! OPEN messages (RFC 4271 §4.2) and the capabilities the speaker uses (RFC 5492).

use std::net::Ipv4Addr;

use super::error::DecodeError;
use super::notification::{code, open};
use super::reader::Reader;
use crate::prefix::Family;

/// `My AS` in OPEN when the real AS does not fit two octets (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The two-octet `My Autonomous System` field (AS_TRANS for four-octet ASes).
    pub my_as: u16,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// BGP identifier.
    pub router_id: Ipv4Addr,
    /// Capabilities, in the order sent.
    pub capabilities: Vec<Capability>,
}

/// Graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartCap {
    /// Restart State (R): the sender has restarted and the receiver should not wait for its EoR.
    pub restarting: bool,
    /// Graceful notification (N, RFC 8538).
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Families, each with the Forwarding State (F) bit: forwarding survived the restart.
    pub families: Vec<(u16, u8, bool)>,
}

/// One capability advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol extensions for one AFI/SAFI (RFC 4760, code 1).
    Multiprotocol {
        /// Address family.
        afi: u16,
        /// Subsequent address family.
        safi: u8,
    },
    /// Route refresh (RFC 2918, code 2).
    RouteRefresh,
    /// Graceful restart (RFC 4724, code 64).
    GracefulRestart(GracefulRestartCap),
    /// Four-octet AS numbers (RFC 6793, code 65) with the real AS.
    FourOctetAs(u32),
    /// Any other capability, kept as bytes.
    Other {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    /// Multiprotocol capability for a family.
    pub fn multiprotocol(family: Family) -> Capability {
        Capability::Multiprotocol { afi: family.afi(), safi: family.safi() }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut value = Vec::new();
        let code = match self {
            Capability::Multiprotocol { afi, safi } => {
                value.extend_from_slice(&afi.to_be_bytes());
                value.extend_from_slice(&[0, *safi]);
                1
            }
            Capability::RouteRefresh => 2,
            Capability::GracefulRestart(gr) => {
                let mut head = gr.restart_time & 0x0fff;
                if gr.restarting {
                    head |= 0x8000;
                }
                if gr.notification {
                    head |= 0x4000;
                }
                value.extend_from_slice(&head.to_be_bytes());
                for (afi, safi, forwarding) in &gr.families {
                    value.extend_from_slice(&afi.to_be_bytes());
                    value.extend_from_slice(&[*safi, if *forwarding { 0x80 } else { 0 }]);
                }
                64
            }
            Capability::FourOctetAs(asn) => {
                value.extend_from_slice(&asn.to_be_bytes());
                65
            }
            Capability::Other { code, value: v } => {
                value.extend_from_slice(v);
                *code
            }
        };
        out.push(code);
        out.push(value.len() as u8);
        out.extend_from_slice(&value);
    }

    fn decode(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
        let bad = || DecodeError::new("malformed capability", code::OPEN, open::UNSPECIFIC);
        let mut r = Reader::new(value, bad);
        let cap = match code {
            1 if value.len() == 4 => {
                let afi = r.u16()?;
                let _reserved = r.u8()?;
                Capability::Multiprotocol { afi, safi: r.u8()? }
            }
            2 if value.is_empty() => Capability::RouteRefresh,
            64 if value.len() >= 2 && (value.len() - 2).is_multiple_of(4) => {
                let head = r.u16()?;
                let mut families = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16()?;
                    let safi = r.u8()?;
                    families.push((afi, safi, r.u8()? & 0x80 != 0));
                }
                Capability::GracefulRestart(GracefulRestartCap {
                    restarting: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            65 if value.len() == 4 => Capability::FourOctetAs(r.u32()?),
            1 | 2 | 64 | 65 => return Err(bad()),
            _ => Capability::Other { code, value: value.to_vec() },
        };
        Ok(cap)
    }
}

impl Open {
    /// The real AS of the sender: the four-octet capability if present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// The families the sender offers (IPv4 unicast when it sends no multiprotocol capability).
    pub fn families(&self) -> Vec<(u16, u8)> {
        let mp: Vec<_> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
                _ => None,
            })
            .collect();
        if mp.is_empty() { vec![(1, 1)] } else { mp }
    }

    /// True when the sender offers this capability kind.
    pub fn has(&self, probe: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(probe)
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(4);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.router_id.octets());
        // One capabilities parameter per capability, as most speakers do; every receiver accepts
        // both this and one parameter holding all of them, which we fall back to when the first
        // form does not fit the one-octet parameters length.
        let mut params = Vec::new();
        let mut all = Vec::new();
        for cap in &self.capabilities {
            let mut one = Vec::new();
            cap.encode(&mut one);
            params.push(2);
            params.push(one.len() as u8);
            params.extend_from_slice(&one);
            all.extend_from_slice(&one);
        }
        if params.len() > 255 {
            params = vec![2, all.len() as u8];
            params.extend_from_slice(&all);
        }
        out.push(params.len() as u8);
        out.extend_from_slice(&params);
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Open, DecodeError> {
        let short = || DecodeError::new("OPEN too short", code::OPEN, open::UNSPECIFIC);
        let mut r = Reader::new(body, short);
        let version = r.u8()?;
        if version != 4 {
            return Err(DecodeError::with_data(
                "BGP version is not 4",
                code::OPEN,
                open::UNSUPPORTED_VERSION,
                4u16.to_be_bytes(),
            ));
        }
        let my_as = r.u16()?;
        let hold_time = r.u16()?;
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::new(
                "hold time of 1 or 2 seconds",
                code::OPEN,
                open::UNACCEPTABLE_HOLD_TIME,
            ));
        }
        let router_id = Ipv4Addr::from(r.u32()?);
        if router_id.is_unspecified() {
            return Err(DecodeError::new("BGP identifier 0", code::OPEN, open::BAD_BGP_ID));
        }
        let params_len = usize::from(r.u8()?);
        let mut params = Reader::new(r.take(params_len)?, short);
        if !r.is_empty() {
            return Err(short());
        }
        let mut capabilities = Vec::new();
        while !params.is_empty() {
            let kind = params.u8()?;
            let len = usize::from(params.u8()?);
            let value = params.take(len)?;
            if kind != 2 {
                return Err(DecodeError::new(
                    "optional parameter other than capabilities",
                    code::OPEN,
                    open::UNSUPPORTED_PARAMETER,
                ));
            }
            let mut caps = Reader::new(value, short);
            while !caps.is_empty() {
                let code = caps.u8()?;
                let len = usize::from(caps.u8()?);
                capabilities.push(Capability::decode(code, caps.take(len)?)?);
            }
        }
        Ok(Open { my_as, hold_time, router_id, capabilities })
    }
}
