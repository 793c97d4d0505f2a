//! The netdev generic netlink family (Linux 6.3+): what a driver says about its XDP support.

use std::io;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload, Nla,
    NlasIterator, Parseable, ParseableParametrized,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use crate::facts::XdpFeatures;

/// `NETDEV_CMD_DEV_GET` (include/uapi/linux/netdev.h).
const CMD_DEV_GET: u8 = 1;
/// `NETDEV_A_DEV_IFINDEX`, u32.
const A_DEV_IFINDEX: u16 = 1;
/// `NETDEV_A_DEV_XDP_FEATURES`, u64 bit set of `enum netdev_xdp_act`.
const A_DEV_XDP_FEATURES: u16 = 3;
/// `ENOENT` from the controller: no family of that name.
const ENOENT: i32 = 2;

/// A message of the netdev family: a command and its attributes.
#[derive(Debug, Clone)]
struct NetdevMessage {
    cmd: u8,
    attrs: Vec<DefaultNla>,
}

impl GenlFamily for NetdevMessage {
    fn family_name() -> &'static str {
        "netdev"
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for NetdevMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for NetdevMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| DefaultNla::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { cmd: header.cmd, attrs })
    }
}

/// The XDP features of the device `ifindex`; `None` when the kernel has no netdev family.
pub(crate) fn xdp_features(ifindex: u32) -> io::Result<Option<XdpFeatures>> {
    let socket = connect()?;
    let Some(family) = resolve_family(&socket, NetdevMessage::family_name())? else {
        return Ok(None);
    };
    let request = NetdevMessage {
        cmd: CMD_DEV_GET,
        attrs: vec![DefaultNla::new(A_DEV_IFINDEX, ifindex.to_ne_bytes().to_vec())],
    };
    let mut message = GenlMessage::from_payload(request);
    message.set_resolved_family_id(family);
    let reply: NetdevMessage = request_one(&socket, message)?.ok_or_else(|| {
        io::Error::other(format!("the netdev family does not know ifindex {ifindex}"))
    })?;
    let features = reply
        .attrs
        .iter()
        .find(|nla| nla.kind() == A_DEV_XDP_FEATURES)
        .and_then(u64_value)
        .ok_or_else(|| io::Error::other("no xdp-features attribute in the reply"))?;
    Ok(Some(XdpFeatures(features)))
}

fn connect() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// The id the kernel gave the family `name`, or `None` when there is no such family.
fn resolve_family(socket: &Socket, name: &str) -> io::Result<Option<u16>> {
    let request = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    });
    let reply: Option<GenlCtrl> = match request_one(socket, request) {
        Err(error) if error.raw_os_error() == Some(ENOENT) => return Ok(None),
        other => other?,
    };
    Ok(reply.and_then(|reply| {
        reply.nlas.iter().find_map(|nla| match nla {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
    }))
}

/// Sends one request and returns the payload of its one reply (`None` for a bare ack).
fn request_one<F>(socket: &Socket, request: GenlMessage<F>) -> io::Result<Option<F>>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut message = NetlinkMessage::from(request);
    message.header.flags = NLM_F_REQUEST;
    message.finalize();
    let mut buffer = vec![0; message.buffer_len()];
    message.serialize(&mut buffer);
    socket.send(&buffer, 0)?;

    let (reply, _) = socket.recv_from_full()?;
    let reply = NetlinkMessage::<GenlMessage<F>>::deserialize(&reply)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
    match reply.payload {
        NetlinkPayload::InnerMessage(message) => Ok(Some(message.payload)),
        NetlinkPayload::Error(error) => match error.code {
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

fn u64_value(nla: &DefaultNla) -> Option<u64> {
    let mut value = vec![0; nla.value_len()];
    nla.emit_value(&mut value);
    Some(u64::from_ne_bytes(value.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NlaBuffer;

    use super::*;

    #[test]
    fn a_dev_get_request_carries_the_ifindex() {
        let message = NetdevMessage {
            cmd: CMD_DEV_GET,
            attrs: vec![DefaultNla::new(A_DEV_IFINDEX, 7u32.to_ne_bytes().to_vec())],
        };
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        let nla = NlaBuffer::new_checked(&bytes[..]).expect("one attribute");
        assert_eq!(nla.kind(), A_DEV_IFINDEX);
        assert_eq!(nla.value(), 7u32.to_ne_bytes());
    }

    #[test]
    fn xdp_features_are_read_as_u64() {
        let nla = DefaultNla::new(A_DEV_XDP_FEATURES, 0x23u64.to_ne_bytes().to_vec());
        assert_eq!(u64_value(&nla), Some(0x23));
        assert_eq!(u64_value(&DefaultNla::new(A_DEV_XDP_FEATURES, vec![1, 2])), None);
    }
}
