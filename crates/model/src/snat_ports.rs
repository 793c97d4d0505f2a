//! Which source ports flows SNATed to the node's address get (docs/datapath.md "SNAT"):
//! `--snat-port-range` when given, else the widest gap of 1024-65535 that neither the NodePort
//! range nor the kernel's ephemeral range (`net.ipv4.ip_local_port_range`) touches. Decided
//! without I/O: the agent and `switchyard doctor` read the sysctl and pass it in.
//!
//! Why the widest gap: a closed flow's port stays live for its closing timeout (10 s), so the
//! range bounds the new connections per second to one backend (~ports / 10 s); with Linux's
//! defaults the gap below the NodePort range (1024-29999, 28,976 ports) is 6.4 times the old
//! fixed 61000-65535. Why outside the ephemeral range: Linux hands those ports to the node's own
//! connections without knowing our flows; the datapath skips ports a local socket already holds
//! (`sy_snat_port_has_socket`), but not the other way round. Why not the decapsulation port
//! (GUE / FOU, when the node decapsulates directors' traffic): no socket holds it (a TC program
//! takes its packets), so the datapath cannot see it taken, and the replies of a UDP flow
//! SNATed to it would be taken for encapsulated traffic and dropped (a lab test lost one flow's
//! every answer so, 2026-12-07).

use std::fmt;

use crate::config::PortRange;

/// The lowest port chosen automatically: below are the privileged ports node daemons listen on.
pub const AUTO_FLOOR: u16 = 1024;

/// Linux's default `net.ipv4.ip_local_port_range`, assumed when the sysctl cannot be read.
pub const LINUX_LOCAL_PORTS: PortRange = PortRange { first: 32_768, last: 60_999 };

/// The SNAT source ports and why they were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatPorts {
    /// The ports.
    pub range: PortRange,
    /// Where they come from.
    pub source: SnatPortsSource,
    /// The ephemeral range they were checked against.
    pub local: PortRange,
    /// `local` was not read but assumed ([`LINUX_LOCAL_PORTS`]).
    pub local_assumed: bool,
    /// The decapsulation port the range was kept clear of, if the node decapsulates.
    pub decap_port: Option<u16>,
}

/// Where the SNAT ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnatPortsSource {
    /// `--snat-port-range`.
    Flag,
    /// The widest gap of 1024-65535 outside the NodePort range and the ephemeral range.
    Gap,
    /// The ephemeral range leaves no gap: the widest outside the NodePort range alone.
    NodePortsOnly,
}

/// Why no SNAT range can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnatPortsError {
    /// A SNATed flow on a NodePort number would catch the replies meant for another Service's
    /// clients.
    #[error(
        "--snat-port-range {snat_ports} overlaps the NodePort range {node_port_range} \
         (--node-port-range); choose SNAT ports outside it"
    )]
    OverlapsNodePorts {
        /// The SNAT source ports asked for.
        snat_ports: PortRange,
        /// The cluster's NodePort range.
        node_port_range: PortRange,
    },
    /// The replies of a UDP flow SNATed to the decapsulation port would be taken for a
    /// director's encapsulated packets (and dropped as not from a director).
    #[error(
        "--snat-port-range {snat_ports} holds the decapsulation port {decap_port} (--gue-port); \
         choose SNAT ports without it"
    )]
    HoldsDecapPort {
        /// The SNAT source ports asked for.
        snat_ports: PortRange,
        /// The UDP port the node's decapsulation takes.
        decap_port: u16,
    },
    /// The NodePort range covers 1024-65535.
    #[error(
        "the NodePort range {node_port_range} leaves no port of {AUTO_FLOOR}-65535 for SNAT; \
         give --snat-port-range"
    )]
    NoPorts {
        /// The cluster's NodePort range.
        node_port_range: PortRange,
    },
}

/// The SNAT ports for `flag` (`--snat-port-range`), the NodePort range, the ephemeral range
/// (`None`: unreadable, Linux's default assumed) and the decapsulation port (`None`: the node
/// decapsulates nothing). A flag overlapping the NodePort range or holding the decapsulation
/// port is refused; one overlapping the ephemeral range is used, with [`SnatPorts::warning`].
pub fn choose_snat_ports(
    flag: Option<PortRange>,
    node_ports: PortRange,
    local: Option<PortRange>,
    decap_port: Option<u16>,
) -> Result<SnatPorts, SnatPortsError> {
    let (local, local_assumed) = match local {
        Some(local) => (local, false),
        None => (LINUX_LOCAL_PORTS, true),
    };
    let chosen = |range, source| SnatPorts { range, source, local, local_assumed, decap_port };
    if let Some(range) = flag {
        if overlap(range, node_ports).is_some() {
            return Err(SnatPortsError::OverlapsNodePorts {
                snat_ports: range,
                node_port_range: node_ports,
            });
        }
        if let Some(port) = decap_port.filter(|p| (range.first..=range.last).contains(p)) {
            return Err(SnatPortsError::HoldsDecapPort { snat_ports: range, decap_port: port });
        }
        return Ok(chosen(range, SnatPortsSource::Flag));
    }
    let decap: Vec<PortRange> =
        decap_port.map(|port| PortRange { first: port, last: port }).into_iter().collect();
    if let Some(gap) = widest_gap(&[&[node_ports, local][..], &decap].concat()) {
        return Ok(chosen(gap, SnatPortsSource::Gap));
    }
    widest_gap(&[&[node_ports][..], &decap].concat())
        .map(|gap| chosen(gap, SnatPortsSource::NodePortsOnly))
        .ok_or(SnatPortsError::NoPorts { node_port_range: node_ports })
}

impl SnatPorts {
    /// How many ports the range holds.
    pub fn port_count(&self) -> u32 {
        u32::from(self.range.last) - u32::from(self.range.first) + 1
    }

    /// What the operator should know: ports shared with the node's own connections, or an
    /// ephemeral range that was assumed, not read.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.local_assumed {
            parts.push(format!(
                "net.ipv4.ip_local_port_range could not be read; assumed Linux's default {}",
                self.local
            ));
        }
        if let Some(shared) = overlap(self.range, self.local) {
            let why = match self.source {
                SnatPortsSource::NodePortsOnly => format!(
                    "net.ipv4.ip_local_port_range {} leaves no gap outside the NodePort range, so",
                    self.local
                ),
                _ => format!(
                    "--snat-port-range {} overlaps net.ipv4.ip_local_port_range {}:",
                    self.range, self.local
                ),
            };
            parts.push(format!(
                "{why} SNAT ports {shared} may also be handed to the node's own connections (a \
                 new SNATed flow skips a port a local socket holds, but a connection the node \
                 opens later to the same backend and port can collide with a flow); narrow \
                 ip_local_port_range or move --snat-port-range"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

impl fmt::Display for SnatPorts {
    /// `1024-29999 (28976 ports: the widest gap of 1024-65535 outside ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let assumed = if self.local_assumed { " (assumed)" } else { "" };
        let decap = match self.decap_port {
            Some(port) => format!(", the decapsulation port {port}"),
            None => String::new(),
        };
        write!(f, "{} ({} ports: ", self.range, self.port_count())?;
        match self.source {
            SnatPortsSource::Flag => write!(f, "--snat-port-range)"),
            SnatPortsSource::Gap => write!(
                f,
                "the widest gap of {AUTO_FLOOR}-65535 outside the NodePort range{decap} and \
                 net.ipv4.ip_local_port_range {}{assumed})",
                self.local
            ),
            SnatPortsSource::NodePortsOnly => write!(
                f,
                "the widest gap of {AUTO_FLOOR}-65535 outside the NodePort range{decap}; \
                 net.ipv4.ip_local_port_range {}{assumed} leaves none outside both)",
                self.local
            ),
        }
    }
}

/// `net.ipv4.ip_local_port_range`: two numbers separated by white space.
pub fn parse_local_port_range(text: &str) -> Option<PortRange> {
    let mut words = text.split_whitespace();
    let first = words.next()?.parse().ok()?;
    let last = words.next()?.parse().ok()?;
    (words.next().is_none() && first <= last).then_some(PortRange { first, last })
}

/// The ports two ranges share.
pub fn overlap(a: PortRange, b: PortRange) -> Option<PortRange> {
    let first = a.first.max(b.first);
    let last = a.last.min(b.last);
    (first <= last).then_some(PortRange { first, last })
}

/// The widest run of AUTO_FLOOR-65535 that none of `excluded` touches (the lowest of equals).
fn widest_gap(excluded: &[PortRange]) -> Option<PortRange> {
    let mut sorted = excluded.to_vec();
    sorted.sort_by_key(|r| r.first);
    let mut best: Option<(u32, u32)> = None;
    let mut consider = |first: u32, last: u32| {
        if first <= last && best.is_none_or(|(f, l)| last - first > l - f) {
            best = Some((first, last));
        }
    };
    let mut next = u32::from(AUTO_FLOOR);
    for r in sorted {
        if u32::from(r.first) > next {
            consider(next, u32::from(r.first) - 1);
        }
        next = next.max(u32::from(r.last) + 1);
    }
    consider(next, u32::from(u16::MAX));
    let (first, last) = best?;
    Some(PortRange { first: u16::try_from(first).ok()?, last: u16::try_from(last).ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    const NODE_PORTS: PortRange = PortRange { first: 30_000, last: 32_767 };

    #[test]
    fn without_a_flag_the_widest_gap_outside_node_ports_and_ephemeral_ports_is_taken() {
        let cases = [
            // Linux's defaults: below the NodePort range, 6.4x the old 61000-65535.
            (Some(LINUX_LOCAL_PORTS), r(1024, 29_999), SnatPortsSource::Gap),
            (Some(r(10_000, 60_999)), r(1024, 9_999), SnatPortsSource::Gap),
            (Some(r(1024, 29_999)), r(32_768, 65_535), SnatPortsSource::Gap),
            (Some(r(1024, 65_000)), r(65_001, 65_535), SnatPortsSource::Gap),
            // Ephemeral ports everywhere: outside the NodePort range only (with a warning).
            (Some(r(1024, 65_535)), r(32_768, 65_535), SnatPortsSource::NodePortsOnly),
            (Some(r(1, 65_535)), r(32_768, 65_535), SnatPortsSource::NodePortsOnly),
        ];
        for (local, want, source) in cases {
            let got = choose_snat_ports(None, NODE_PORTS, local, None).unwrap();
            assert_eq!((got.range, got.source), (want, source), "local {local:?}");
            assert!(!got.local_assumed);
            let ephemeral = local.unwrap_or(LINUX_LOCAL_PORTS);
            assert_eq!(overlap(got.range, NODE_PORTS), None, "{got}");
            assert_eq!(
                got.warning().is_some(),
                overlap(got.range, ephemeral).is_some(),
                "{got}: {:?}",
                got.warning()
            );
        }
        let linux = choose_snat_ports(None, NODE_PORTS, Some(LINUX_LOCAL_PORTS), None).unwrap();
        assert_eq!(linux.port_count(), 28_976);
        assert_eq!(
            linux.to_string(),
            "1024-29999 (28976 ports: the widest gap of 1024-65535 outside the NodePort range \
             and net.ipv4.ip_local_port_range 32768-60999)"
        );
        let fallback = choose_snat_ports(None, NODE_PORTS, Some(r(1024, 65_535)), None).unwrap();
        let warning = fallback.warning().unwrap();
        assert!(warning.contains("1024-65535 leaves no gap"), "{warning}");
    }

    #[test]
    fn an_unreadable_ephemeral_range_is_assumed_linuxs_default_and_said_so() {
        let got = choose_snat_ports(None, NODE_PORTS, None, None).unwrap();
        assert_eq!(got.range, r(1024, 29_999));
        assert!(got.local_assumed);
        assert!(got.to_string().contains("32768-60999 (assumed)"), "{got}");
        assert!(got.warning().unwrap().contains("could not be read"));
    }

    #[test]
    fn the_flag_wins_is_refused_on_node_ports_and_warned_on_ephemeral_ports() {
        let local = Some(LINUX_LOCAL_PORTS);
        let got = choose_snat_ports(Some(r(61_000, 65_535)), NODE_PORTS, local, None).unwrap();
        assert_eq!((got.range, got.source), (r(61_000, 65_535), SnatPortsSource::Flag));
        assert_eq!(got.warning(), None);
        assert_eq!(got.to_string(), "61000-65535 (4536 ports: --snat-port-range)");

        let err = choose_snat_ports(Some(r(32_000, 40_000)), NODE_PORTS, local, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--snat-port-range 32000-40000 overlaps the NodePort range 30000-32767 \
             (--node-port-range); choose SNAT ports outside it"
        );
        for (snat, node_ports, ok) in [
            (r(20_000, 29_999), NODE_PORTS, true),
            (r(32_767, 40_000), NODE_PORTS, false),
            (r(1000, 30_000), NODE_PORTS, false),
            (r(30_500, 30_600), NODE_PORTS, false),
            (r(61_000, 65_535), r(60_000, 61_000), false),
        ] {
            let result = choose_snat_ports(Some(snat), node_ports, local, None);
            assert_eq!(result.is_ok(), ok, "{snat} against {node_ports}: {result:?}");
        }

        let shared = choose_snat_ports(Some(r(20_000, 40_000)), r(1, 100), local, None).unwrap();
        let warning = shared.warning().unwrap();
        assert!(
            warning.contains(
                "--snat-port-range 20000-40000 overlaps net.ipv4.ip_local_port_range \
                 32768-60999: SNAT ports 32768-40000"
            ),
            "{warning}"
        );
    }

    #[test]
    fn a_node_port_range_covering_every_unprivileged_port_leaves_none() {
        for node_ports in [r(1024, 65_535), r(1, 65_535)] {
            let err =
                choose_snat_ports(None, node_ports, Some(LINUX_LOCAL_PORTS), None).unwrap_err();
            assert_eq!(err, SnatPortsError::NoPorts { node_port_range: node_ports });
            assert!(err.to_string().contains("give --snat-port-range"), "{err}");
        }
    }

    /// The decapsulation port (GUE, 6080 by default) is in no automatic range and in no
    /// accepted flag: no socket holds it, so the datapath cannot skip it, and a UDP flow SNATed
    /// to it would lose every reply to the decapsulation.
    #[test]
    fn the_decapsulation_port_is_kept_out_of_the_snat_ports() {
        let local = Some(LINUX_LOCAL_PORTS);
        let got = choose_snat_ports(None, NODE_PORTS, local, Some(6080)).unwrap();
        assert_eq!((got.range, got.source), (r(6081, 29_999), SnatPortsSource::Gap));
        assert_eq!(
            got.to_string(),
            "6081-29999 (23919 ports: the widest gap of 1024-65535 outside the NodePort range, \
             the decapsulation port 6080 and net.ipv4.ip_local_port_range 32768-60999)"
        );
        // Outside the gap it changes nothing; inside, the wider side is taken.
        for (port, want) in [(61_000, r(1024, 29_999)), (20_000, r(1024, 19_999))] {
            let got = choose_snat_ports(None, NODE_PORTS, local, Some(port)).unwrap();
            assert_eq!(got.range, want, "decapsulation port {port}");
        }
        // Ephemeral ports everywhere: still kept out.
        let got = choose_snat_ports(None, NODE_PORTS, Some(r(1024, 65_535)), Some(40_000)).unwrap();
        assert_eq!((got.range, got.source), (r(1024, 29_999), SnatPortsSource::NodePortsOnly));

        let err =
            choose_snat_ports(Some(r(6000, 7000)), NODE_PORTS, local, Some(6080)).unwrap_err();
        assert_eq!(
            err,
            SnatPortsError::HoldsDecapPort { snat_ports: r(6000, 7000), decap_port: 6080 }
        );
        assert_eq!(
            err.to_string(),
            "--snat-port-range 6000-7000 holds the decapsulation port 6080 (--gue-port); choose \
             SNAT ports without it"
        );
        assert!(choose_snat_ports(Some(r(6081, 7000)), NODE_PORTS, local, Some(6080)).is_ok());
    }

    #[test]
    fn the_sysctl_parses() {
        assert_eq!(parse_local_port_range("32768\t60999\n"), Some(LINUX_LOCAL_PORTS));
        assert_eq!(parse_local_port_range("60999 32768"), None);
        assert_eq!(parse_local_port_range("1 2 3"), None);
        assert_eq!(parse_local_port_range(""), None);
    }
}
