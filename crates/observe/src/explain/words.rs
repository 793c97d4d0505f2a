//! `explain`'s words: what flags, decisions and translations mean for the flow.

use switchyard_bpf::Maps;
use switchyard_bpf::abi::{self, Addr, Frontend, Reason};
use switchyard_bpf::maps::names;
use switchyard_bpf::mirror::{self, Counter, Source};
use switchyard_bpf::nodeport_abi::{CtKey, PacketReason, PktConfig};

use super::{Decision, Explanation, Flow, MaglevPick, Path};
use crate::Error;
use crate::kernel::protocol_name;

/// What the frontend's flags mean for a flow on `path`, in words.
pub(super) fn policy(fe: &Frontend, path: Path) -> Vec<String> {
    let mut out = Vec::new();
    let f = fe.flags;
    if f & abi::FE_LOCAL_ONLY != 0 {
        out.push("traffic policy Local: the slots hold node-local endpoints only".into());
    }
    if f & abi::FE_TERMINATING_FALLBACK != 0 {
        out.push("no ready endpoint: the slots hold serving, terminating endpoints".into());
    }
    if f & abi::FE_AFFINITY != 0 {
        out.push(format!(
            "sessionAffinity ClientIP, {} s, keyed by {}",
            fe.affinity_timeout_s,
            if path == Path::Socket { "the client's network namespace" } else { "client address" }
        ));
    }
    if f & abi::FE_MAGLEV != 0 {
        out.push(match path {
            Path::Socket => "Maglev: table slot SipHash-2-4(socket cookie) % M".into(),
            Path::Packet => {
                format!("Maglev: table slot {}(5-tuple) % M", switchyard_maglev::FLOW_HASH_NAME)
            }
        });
    } else {
        out.push("random slot per connection (bpf_get_prandom_u32)".into());
    }
    if f & abi::FE_SOURCE_RANGES != 0 {
        out.push("loadBalancerSourceRanges checked (per-packet path)".into());
    }
    if f & abi::FE_REJECT_EMPTY != 0 {
        out.push("without backends: reject (TCP RST / ICMP port unreachable)".into());
    }
    out
}

/// Why no frontend matched the flow's destination, in words.
pub(super) fn why_no_match(maps: &Maps, flow: &Flow, from_inside: bool) -> Result<String, Error> {
    let ip = flow.destination.ip();
    let port = flow.destination.port();
    let proto = flow.protocol;
    let mut other_protocol = None;
    let mut same_address = Vec::new();
    for entry in maps.frontends.iter() {
        let (key, _) = entry.map_err(|source| {
            Error::Bpf(switchyard_bpf::Error::Map { name: names::FRONTENDS, source })
        })?;
        let key_ip = key.addr.to_ip(key.family);
        if key.addr != Addr::UNSPECIFIED && key_ip == ip {
            if key.port() == port && key.proto != proto {
                other_protocol = Some(protocol_name(key.proto));
            }
            same_address.push(format!("{}/{}", key.port(), protocol_name(key.proto)));
        }
    }
    if let Some(other) = other_protocol {
        return Ok(format!("{ip}:{port} is a frontend for {other}, not {}", protocol_name(proto)));
    }
    if !same_address.is_empty() {
        same_address.sort();
        same_address.dedup();
        return Ok(format!(
            "{ip} is a frontend address, but not port {port}/{}; its ports: {}",
            protocol_name(proto),
            same_address.join(", ")
        ));
    }
    if ip.is_loopback() && !from_inside {
        return Ok("loopback destinations are never NodePort traffic on the per-packet path".into());
    }
    if mirror::addr_is_node_local(maps, ip, true)? {
        return Ok(format!(
            "{ip} is a node address but no NodePort {port}/{} is programmed",
            protocol_name(proto)
        ));
    }
    Ok(format!("no frontend has address {ip}, and it is not one of this node's addresses"))
}

/// The flow is the reply of a translated flow (`sy_nat` hit): rewritten back to the client.
pub(super) fn reply(out: &mut Explanation, orig: &CtKey) {
    out.decision = Decision {
        method: "reverse-nat",
        backend: None,
        detail: format!(
            "this tuple is the reply of a translated flow (sy_nat): {}:{} -> {}:{}",
            orig.source(),
            u16::from_be(orig.sport),
            orig.destination(),
            u16::from_be(orig.dport)
        ),
    };
    out.translation.push(format!(
        "source rewritten to the frontend {}:{}, destination to the client {}:{}",
        orig.destination(),
        u16::from_be(orig.dport),
        orig.source(),
        u16::from_be(orig.sport)
    ));
}

/// Why the per-packet program drops the flow, with the counter it is counted under.
pub(super) fn drop_detail(reason: Counter, maglev: Option<&MaglevPick>) -> String {
    let why = match reason {
        Counter::Packet(PacketReason::DropSourceRange) => {
            "source outside loadBalancerSourceRanges".to_owned()
        }
        Counter::Packet(PacketReason::DropNoLocalBackend) => {
            "no local backend (traffic policy Local), another node may have endpoints".to_owned()
        }
        Counter::Packet(PacketReason::DropSnatNoAddr) => {
            "SNAT needed but no SNAT address for the family".to_owned()
        }
        Counter::Shared(Reason::DropNoBackend) => "no backends".to_owned(),
        Counter::Shared(Reason::ErrMaglevMissing) => match maglev {
            Some(m) => format!("Maglev table missing or slot {} empty", m.slot),
            None => "Maglev table missing".to_owned(),
        },
        Counter::Shared(Reason::ErrBackendMissing) => {
            "the chosen backend id is not in sy_backends (or of the other family)".to_owned()
        }
        Counter::Shared(Reason::ErrSlotMissing) => {
            "a slot below backend_count is missing".to_owned()
        }
        other => other.name().replace('_', " "),
    };
    format!("{why}: dropped ({})", reason.name())
}

/// The source rewrite of a translated new flow.
pub(super) fn source_translation(
    source: &Source,
    flow: &Flow,
    settings: Option<&PktConfig>,
) -> String {
    match source {
        Source::Kept => "source kept (the backend sees the client)".into(),
        Source::Snat { addr, hairpin } => {
            let why =
                if *hairpin { "hairpin: the client is the backend" } else { "remote backend" };
            let (min, max) = settings.map_or((0, 0), |c| (c.snat_port_min, c.snat_port_max));
            format!(
                "SNAT ({why}) source {} -> {addr}:<a free port of {min}-{max}, claimed at the \
                 first packet>",
                flow.source
            )
        }
    }
}

/// The translation when the backend is not determined yet (random slot, Maglev without the
/// source port).
pub(super) fn unknown_backend_translation(fe: &Frontend, flow: &Flow) -> String {
    format!(
        "DNAT destination {} -> the chosen backend; {}",
        flow.destination,
        if fe.flags & abi::FE_LOCAL_ONLY != 0 {
            "source kept (traffic policy Local)"
        } else {
            "SNAT to the node unless the backend is local"
        }
    )
}

/// A rejected flow in words, naming the reason as metrics and `status` do (`reject_icmp`).
pub(super) fn reject_detail(reason: PacketReason) -> String {
    let answer =
        if reason == PacketReason::RejectRst { "TCP RST" } else { "ICMP port unreachable" };
    format!("no backends: answered with {answer} ({})", reason.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: explain said `pkt_reject_icmp` where metrics and `status` say `reject_icmp`.
    #[test]
    fn reject_reasons_are_named_as_metrics_name_them() {
        assert_eq!(
            reject_detail(PacketReason::RejectIcmp),
            "no backends: answered with ICMP port unreachable (reject_icmp)"
        );
        assert_eq!(
            reject_detail(PacketReason::RejectRst),
            "no backends: answered with TCP RST (reject_rst)"
        );
    }
}
