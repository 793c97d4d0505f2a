//! The BFD control packet (RFC 5880 §4.1), without authentication: 24 bytes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

/// Length of a control packet without authentication.
pub const PACKET_LEN: usize = 24;

/// Destination UDP port of single-hop control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;

/// Session state (RFC 5880 §4.1, `Sta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BfdState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl BfdState {
    fn from_bits(bits: u8) -> BfdState {
        match bits & 3 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }

    /// Lower-case name, as `switchyard bgp` and logs print it.
    pub fn name(self) -> &'static str {
        match self {
            BfdState::AdminDown => "admin-down",
            BfdState::Down => "down",
            BfdState::Init => "init",
            BfdState::Up => "up",
        }
    }
}

impl fmt::Display for BfdState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a session went down (RFC 5880 §4.1, `Diag`; the codes a single-hop session uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    /// The detection time passed without a packet from the peer.
    DetectionTimeExpired,
    /// The peer said it went down.
    NeighborSignaledDown,
    /// We were shut down administratively.
    AdministrativelyDown,
    /// Another code, kept as received.
    Other(u8),
}

impl Diagnostic {
    fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::DetectionTimeExpired => 1,
            Diagnostic::NeighborSignaledDown => 3,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::Other(code) => code & 0x1f,
        }
    }

    fn from_code(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::DetectionTimeExpired,
            3 => Diagnostic::NeighborSignaledDown,
            7 => Diagnostic::AdministrativelyDown,
            other => Diagnostic::Other(other),
        }
    }
}

/// A control packet's fields (intervals in microseconds, as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diagnostic: Diagnostic,
    pub state: BfdState,
    /// Poll: the sender changed parameters and asks for a Final.
    pub poll: bool,
    /// Final: the answer to a Poll.
    pub final_: bool,
    /// Control plane independent (the sender's BFD survives a control-plane restart).
    pub control_plane_independent: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 §6.8.6, before any state is touched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0} bytes: shorter than a control packet (24)")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("length field {length} with {received} bytes received")]
    Length { length: u8, received: usize },
    #[error("authentication present (not configured here)")]
    Authentication,
    #[error("detect multiplier 0")]
    DetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    MyDiscriminator,
    #[error("your discriminator 0 in state {0}")]
    YourDiscriminator(BfdState),
}

impl ControlPacket {
    /// The 24 bytes on the wire.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[0] = (1 << 5) | self.diagnostic.code();
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3);
        out[2] = self.detect_mult;
        out[3] = PACKET_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }

    /// Decodes and applies the checks of RFC 5880 §6.8.6 that need no session.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, PacketError> {
        if bytes.len() < PACKET_LEN {
            return Err(PacketError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let length = bytes[3];
        if usize::from(length) < PACKET_LEN || usize::from(length) > bytes.len() {
            return Err(PacketError::Length { length, received: bytes.len() });
        }
        let flags = bytes[1];
        if flags & 0x04 != 0 {
            return Err(PacketError::Authentication);
        }
        if flags & 0x01 != 0 {
            return Err(PacketError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let packet = ControlPacket {
            diagnostic: Diagnostic::from_code(bytes[0]),
            state: BfdState::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            detect_mult: bytes[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.detect_mult == 0 {
            return Err(PacketError::DetectMult);
        }
        if packet.my_discriminator == 0 {
            return Err(PacketError::MyDiscriminator);
        }
        if packet.your_discriminator == 0
            && !matches!(packet.state, BfdState::Down | BfdState::AdminDown)
        {
            return Err(PacketError::YourDiscriminator(packet.state));
        }
        Ok(packet)
    }
}
