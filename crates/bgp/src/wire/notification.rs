//! NOTIFICATION messages (RFC 4271 §4.5) and the error codes the speaker sends and names.

use std::fmt;

/// A NOTIFICATION: an error code, a subcode and diagnostic data; the sender closes the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code (1 header, 2 OPEN, 3 UPDATE, 4 hold timer, 5 FSM, 6 cease).
    pub code: u8,
    /// Error subcode, meaning depends on the code.
    pub subcode: u8,
    /// Diagnostic data (e.g. the offending field).
    pub data: Vec<u8>,
}

/// Error codes (RFC 4271 §4.5, RFC 6608 for the FSM subcodes, RFC 4486 for cease subcodes).
pub mod code {
    /// Message header error.
    pub const HEADER: u8 = 1;
    /// OPEN message error.
    pub const OPEN: u8 = 2;
    /// UPDATE message error.
    pub const UPDATE: u8 = 3;
    /// Hold timer expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite state machine error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH message error (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Subcodes of [`code::HEADER`].
pub mod header {
    /// The marker is not all ones.
    pub const NOT_SYNCHRONIZED: u8 = 1;
    /// The length field is out of range for the message type.
    pub const BAD_LENGTH: u8 = 2;
    /// Unknown message type.
    pub const BAD_TYPE: u8 = 3;
}

/// Subcodes of [`code::OPEN`].
pub mod open {
    /// Unspecific.
    pub const UNSPECIFIC: u8 = 0;
    /// Version is not 4.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// The peer's AS is not the configured one.
    pub const BAD_PEER_AS: u8 = 2;
    /// The BGP identifier is invalid (zero, or ours on iBGP).
    pub const BAD_BGP_ID: u8 = 3;
    /// An optional parameter other than capabilities.
    pub const UNSUPPORTED_PARAMETER: u8 = 4;
    /// Hold time 1 or 2 seconds.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// Subcodes of [`code::UPDATE`].
pub mod update {
    /// Lengths of the withdrawn routes, attributes or NLRI do not add up; duplicated attributes.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// A mandatory well-known attribute is missing.
    pub const MISSING_WELL_KNOWN: u8 = 3;
    /// Attribute flags conflict with the attribute type.
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    /// Attribute length is wrong for its type.
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    /// ORIGIN has an undefined value.
    pub const INVALID_ORIGIN: u8 = 6;
    /// NEXT_HOP is not a valid address.
    pub const INVALID_NEXT_HOP: u8 = 8;
    /// An optional attribute is malformed.
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    /// A prefix in the NLRI or withdrawn routes is malformed.
    pub const INVALID_NETWORK: u8 = 10;
    /// AS_PATH is malformed.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Subcodes of [`code::FSM`] (RFC 6608): which state received an unexpected message.
pub mod fsm {
    /// Unexpected message in OpenSent.
    pub const IN_OPEN_SENT: u8 = 1;
    /// Unexpected message in OpenConfirm.
    pub const IN_OPEN_CONFIRM: u8 = 2;
    /// Unexpected message in Established.
    pub const IN_ESTABLISHED: u8 = 3;
}

/// Subcodes of [`code::CEASE`] (RFC 4486).
pub mod cease {
    /// Administrative shutdown (the speaker was stopped).
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Peer de-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Administrative reset.
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    /// BFD Down (RFC 9384): the BFD session beside this one detected the peer as unreachable.
    pub const BFD_DOWN: u8 = 10;
}

impl Notification {
    /// A notification without data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification { code, subcode, data: Vec::new() }
    }

    /// A notification with diagnostic data.
    pub fn with_data(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Notification {
        Notification { code, subcode, data: data.into() }
    }

    /// The error code's name.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            code::HEADER => "message header error",
            code::OPEN => "OPEN message error",
            code::UPDATE => "UPDATE message error",
            code::HOLD_TIMER_EXPIRED => "hold timer expired",
            code::FSM => "finite state machine error",
            code::CEASE => "cease",
            code::ROUTE_REFRESH => "ROUTE-REFRESH message error",
            _ => "unknown error code",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.code_name(), self.code, self.subcode)
    }
}
