//! The host's interfaces as the responder needs them: name, index, MAC, link-local address, and
//! whether "every interface" includes it.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::{InterfaceFlags, if_nametoindex};

use crate::frame::Mac;

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
    /// Its first link-local IPv6 address (the source of unsolicited advertisements).
    pub link_local: Option<Ipv6Addr>,
    /// Up, broadcast-capable, doing ARP, not loopback: what "every interface" means.
    pub answers_by_default: bool,
}

/// The interfaces with an Ethernet MAC, by name.
pub fn list() -> nix::Result<BTreeMap<String, Interface>> {
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    let mut link_locals: BTreeMap<String, Ipv6Addr> = BTreeMap::new();
    for entry in getifaddrs()? {
        let Some(address) = entry.address else { continue };
        if let Some(v6) = address.as_sockaddr_in6().map(|a| a.ip()) {
            if v6.is_unicast_link_local() {
                link_locals.entry(entry.interface_name.clone()).or_insert(v6);
            }
            continue;
        }
        let Some(mac) = address.as_link_addr().and_then(|l| l.addr()) else { continue };
        let Ok(index) = if_nametoindex(entry.interface_name.as_str()) else { continue };
        let flags = entry.flags;
        let answers_by_default = flags.contains(InterfaceFlags::IFF_UP)
            && flags.contains(InterfaceFlags::IFF_BROADCAST)
            && !flags.contains(InterfaceFlags::IFF_LOOPBACK)
            && !flags.contains(InterfaceFlags::IFF_NOARP)
            && mac != [0; 6];
        out.insert(
            entry.interface_name.clone(),
            Interface {
                name: entry.interface_name,
                index,
                mac,
                link_local: None,
                answers_by_default,
            },
        );
    }
    for (name, address) in link_locals {
        if let Some(interface) = out.get_mut(&name) {
            interface.link_local = Some(address);
        }
    }
    Ok(out)
}
