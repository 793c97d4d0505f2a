//! Which BGPPeers this node peers with, and each one's settings as a session needs them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::inputs::BgpInputs;
use crate::crd::{BGPPeerSpec, SecretKeyRef};
use crate::duration::parse_duration;
use crate::input::ObjectKey;
use crate::labels::selects_optional;

/// One session this node runs, as its BGPPeer and this node's addresses define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// `spec.peerAddress`.
    pub address: IpAddr,
    /// `spec.peerPort`.
    pub port: u16,
    /// `spec.peerASN`.
    pub peer_asn: u32,
    /// `spec.myASN`.
    pub my_asn: u32,
    /// `spec.holdTime`.
    pub hold_time: Duration,
    /// `spec.keepaliveTime` (`None`: a third of the negotiated hold time).
    pub keepalive_time: Option<Duration>,
    /// `spec.gracefulRestart`.
    pub graceful_restart: bool,
    /// `spec.ebgpMultiHop`: TTL 255 instead of 1.
    pub ebgp_multi_hop: bool,
    /// The TCP MD5 key from `spec.passwordSecret`.
    pub password: Option<Md5Password>,
    /// BGP identifier: the node's IPv4 address, else one derived from its name.
    pub router_id: Ipv4Addr,
    /// Next hop of IPv4 routes: the node's own IPv4 address.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop of IPv6 routes: the node's own IPv6 address.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Where the session starts from: the node's address of the peer's family.
    pub source: Option<IpAddr>,
    /// `spec.bfd`: run BFD beside the session.
    pub bfd: Option<BfdSettings>,
}

/// A BFD session's timers (`spec.bfd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSettings {
    /// Desired transmit and required receive interval once Up.
    pub interval: Duration,
    /// Packets the peer may miss.
    pub detect_multiplier: u8,
}

/// Shortest `spec.bfd.interval` accepted: below this a busy speaker flaps.
pub const BFD_MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest `spec.bfd.interval` accepted.
pub const BFD_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// `spec.bfd` checked, or the field and reason it is refused.
pub fn bfd_settings(
    spec: &crate::crd::BfdSpec,
    ebgp_multi_hop: bool,
) -> Result<BfdSettings, (&'static str, String)> {
    if ebgp_multi_hop {
        return Err((
            "spec.bfd",
            "BFD runs single hop (RFC 5881); it cannot be used with ebgpMultiHop".to_owned(),
        ));
    }
    let interval =
        parse_duration(&spec.interval).map_err(|e| ("spec.bfd.interval", e.to_string()))?;
    if !(BFD_MIN_INTERVAL..=BFD_MAX_INTERVAL).contains(&interval) {
        return Err((
            "spec.bfd.interval",
            format!("{} is not between 10ms and 60s", spec.interval),
        ));
    }
    if spec.detect_multiplier == 0 {
        return Err(("spec.bfd.detectMultiplier", "must be at least 1".to_owned()));
    }
    Ok(BfdSettings { interval, detect_multiplier: spec.detect_multiplier })
}

/// A TCP MD5 key (RFC 2385): 1 to 80 bytes, the kernel's limit. Its `Debug` hides the bytes, so
/// no log line shows a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Password(Vec<u8>);

/// Longest TCP MD5 key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

impl Md5Password {
    /// The key's bytes, for `setsockopt(TCP_MD5SIG)`.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Md5Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Password({} bytes)", self.0.len())
    }
}

/// Why this node runs no session with a BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPeering {
    /// `spec.nodeSelector` does not select this node.
    NotSelected,
    /// A director peers only with BGPPeers that select it by label; this one has no
    /// `spec.nodeSelector` (it is for every node).
    NoDirectorSelector,
    /// A field is unusable (validate reports it too): which, and why.
    Invalid {
        /// The field, e.g. `spec.holdTime`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for NotPeering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPeering::NotSelected => f.write_str("spec.nodeSelector does not select this node"),
            NotPeering::NoDirectorSelector => f.write_str(
                "spec.nodeSelector is unset (every node); a director peers only when it selects the director's labels",
            ),
            NotPeering::Invalid { field, reason } => write!(f, "{field}: {reason}"),
        }
    }
}

/// The session this node runs with `spec`, or why it runs none.
pub(crate) fn peer_settings(
    spec: &BGPPeerSpec,
    inputs: &BgpInputs,
) -> Result<PeerSettings, NotPeering> {
    let (node_name, node, secrets) = (&inputs.node_name, &inputs.node, &inputs.secrets);
    if inputs.role == super::Role::Director && spec.node_selector.is_none() {
        return Err(NotPeering::NoDirectorSelector);
    }
    if !selects_optional(spec.node_selector.as_ref(), &node.labels) {
        return Err(NotPeering::NotSelected);
    }
    let invalid = |field, reason: String| NotPeering::Invalid { field, reason };
    let address: IpAddr = spec.peer_address.trim().parse().map_err(|_| {
        invalid("spec.peerAddress", format!("{:?} is not an IP address", spec.peer_address))
    })?;
    for (field, asn) in [("spec.peerASN", spec.peer_asn), ("spec.myASN", spec.my_asn)] {
        if asn == 0 {
            return Err(invalid(field, "0 is not an AS number".to_owned()));
        }
    }
    let hold_time =
        parse_duration(&spec.hold_time).map_err(|e| invalid("spec.holdTime", e.to_string()))?;
    if hold_time != Duration::ZERO && hold_time < Duration::from_secs(3) {
        return Err(invalid("spec.holdTime", "must be 0 or at least 3s (RFC 4271)".to_owned()));
    }
    if hold_time > Duration::from_secs(u64::from(u16::MAX)) {
        return Err(invalid("spec.holdTime", "must be at most 65535s".to_owned()));
    }
    let keepalive_time = match &spec.keepalive_time {
        None => None,
        Some(text) => {
            let keepalive =
                parse_duration(text).map_err(|e| invalid("spec.keepaliveTime", e.to_string()))?;
            if hold_time != Duration::ZERO && keepalive >= hold_time {
                return Err(invalid(
                    "spec.keepaliveTime",
                    "must be shorter than the hold time".into(),
                ));
            }
            Some(keepalive)
        }
    };
    // Without its key a session would only fail at the router (unanswered SYNs), so none is
    // started and the reason is shown instead.
    let password = match &spec.password_secret {
        None => None,
        Some(secret) => {
            Some(password(secret, secrets).map_err(|e| invalid("spec.passwordSecret", e))?)
        }
    };
    let bfd = match &spec.bfd {
        None => None,
        Some(bfd) => Some(
            bfd_settings(bfd, spec.ebgp_multi_hop)
                .map_err(|(field, reason)| invalid(field, reason))?,
        ),
    };
    let primary = node.primary;
    let source = match address {
        IpAddr::V4(_) => primary.ipv4.map(IpAddr::V4),
        IpAddr::V6(_) => primary.ipv6.map(IpAddr::V6),
    };
    Ok(PeerSettings {
        address,
        port: spec.peer_port,
        peer_asn: spec.peer_asn,
        my_asn: spec.my_asn,
        hold_time,
        keepalive_time,
        graceful_restart: spec.graceful_restart,
        ebgp_multi_hop: spec.ebgp_multi_hop,
        password,
        router_id: primary.ipv4.unwrap_or_else(|| router_id_of(node_name)),
        next_hop_v4: primary.ipv4,
        next_hop_v6: primary.ipv6,
        source,
        bfd,
    })
}

/// The key `secret` names, or why there is none.
fn password(
    secret: &SecretKeyRef,
    secrets: &std::collections::BTreeMap<ObjectKey, super::SecretData>,
) -> Result<Md5Password, String> {
    let key = ObjectKey::new(secret.namespace.clone(), secret.name.clone());
    let data = secrets.get(&key).ok_or_else(|| format!("Secret {key} not found"))?;
    let value =
        data.get(&secret.key).ok_or_else(|| format!("Secret {key} has no key {:?}", secret.key))?;
    if value.is_empty() || value.len() > MD5_MAX_KEY_LEN {
        return Err(format!(
            "key {:?} of Secret {key} holds {} bytes; a TCP MD5 password has 1 to {MD5_MAX_KEY_LEN}",
            secret.key,
            value.len()
        ));
    }
    Ok(Md5Password(value.clone()))
}

/// A stable BGP identifier for a node without IPv4: FNV-1a of its name, never 0.0.0.0 (which
/// RFC 4271 forbids).
fn router_id_of(name: &str) -> Ipv4Addr {
    let hash =
        name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    Ipv4Addr::from(hash | 0x0100_0000)
}
