//! The BGP-4 wire format: the messages an announcing speaker sends and must understand.
//!
//! Hand-written rather than taken from `netgauze-bgp-pkt` (see docs/bgp.md): five message types,
//! the capabilities of RFC 4760/2918/4724/6793 and the attributes we originate. Every malformed
//! input maps to the NOTIFICATION that RFC 4271 §6 prescribes; the decoder is fuzzed
//! ([`crate::fuzz`]) and never panics.

mod error;
pub mod notification;
pub mod open;
mod reader;
pub mod update;

pub use error::DecodeError;
pub use notification::Notification;
pub use open::{AS_TRANS, Capability, GracefulRestartCap, Open};
pub use update::{AsSegment, Attribute, LargeCommunity, MpReach, Origin, Update};

use crate::prefix::Family;
use notification::{code, header};
use reader::Reader;

/// Length of the message header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Longest message (RFC 4271; the extended-messages capability is not offered).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A ROUTE-REFRESH request (RFC 2918) for one AFI/SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    /// Address family.
    pub afi: u16,
    /// Subtype (RFC 7313; 0 = plain request).
    pub subtype: u8,
    /// Subsequent address family.
    pub safi: u8,
}

impl RouteRefresh {
    /// The family asked for, if the speaker knows it.
    pub fn family(&self) -> Option<Family> {
        Family::from_afi_safi(self.afi, self.safi)
    }
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (type 1).
    Open(Open),
    /// UPDATE (type 2).
    Update(Update),
    /// NOTIFICATION (type 3).
    Notification(Notification),
    /// KEEPALIVE (type 4).
    Keepalive,
    /// ROUTE-REFRESH (type 5).
    RouteRefresh(RouteRefresh),
}

/// What the codec must know about the session: AS_PATH numbers are two or four octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    /// Both sides announced the four-octet AS capability.
    pub four_octet_as: bool,
}

impl Message {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => 1,
            Message::Update(_) => 2,
            Message::Notification(_) => 3,
            Message::Keepalive => 4,
            Message::RouteRefresh(_) => 5,
        }
    }

    /// Appends the encoded message to `out`; returns its length.
    pub fn encode(&self, codec: Codec, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&[0, 0, self.type_code()]);
        match self {
            Message::Open(open) => open.encode_body(out),
            Message::Update(update) => update.encode_body(codec.four_octet_as, out),
            Message::Notification(n) => {
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                out.extend_from_slice(&rr.afi.to_be_bytes());
                out.extend_from_slice(&[rr.subtype, rr.safi]);
            }
        }
        let len = out.len() - start;
        out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
        len
    }

    /// Decodes one message from the front of `buf`: `Ok(None)` until a whole message is there,
    /// else the message and how many bytes it used.
    pub fn decode(buf: &[u8], codec: Codec) -> Result<Option<(Message, usize)>, DecodeError> {
        if buf.len() < HEADER_LEN {
            // A wrong marker is reported as soon as it is seen, not when 19 bytes are in.
            if buf.iter().any(|&b| b != 0xff) && buf.len() <= 16 {
                return Err(not_synchronized());
            }
            return Ok(None);
        }
        if buf[..16].iter().any(|&b| b != 0xff) {
            return Err(not_synchronized());
        }
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        let kind = buf[18];
        let bad_length = || {
            DecodeError::with_data(
                "message length out of range",
                code::HEADER,
                header::BAD_LENGTH,
                (len as u16).to_be_bytes(),
            )
        };
        let min = match kind {
            1 => 29,
            2 => 23,
            3 => 21,
            4 | 5 => HEADER_LEN,
            _ => {
                return Err(DecodeError::with_data(
                    "unknown message type",
                    code::HEADER,
                    header::BAD_TYPE,
                    [kind],
                ));
            }
        };
        let exact = match kind {
            4 => Some(HEADER_LEN),
            5 => Some(HEADER_LEN + 4),
            _ => None,
        };
        if len < min || len > MAX_MESSAGE_LEN || exact.is_some_and(|e| e != len) {
            return Err(bad_length());
        }
        if buf.len() < len {
            return Ok(None);
        }
        let body = &buf[HEADER_LEN..len];
        let message = match kind {
            1 => Message::Open(Open::decode_body(body)?),
            2 => Message::Update(Update::decode_body(body, codec.four_octet_as)?),
            3 => Message::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: body[2..].to_vec(),
            }),
            4 => Message::Keepalive,
            _ => {
                let mut r = Reader::new(body, bad_length_route_refresh);
                Message::RouteRefresh(RouteRefresh {
                    afi: r.u16()?,
                    subtype: r.u8()?,
                    safi: r.u8()?,
                })
            }
        };
        Ok(Some((message, len)))
    }
}

fn not_synchronized() -> DecodeError {
    DecodeError::new("marker is not all ones", code::HEADER, header::NOT_SYNCHRONIZED)
}

fn bad_length_route_refresh() -> DecodeError {
    DecodeError::new("ROUTE-REFRESH too short", code::HEADER, header::BAD_LENGTH)
}
