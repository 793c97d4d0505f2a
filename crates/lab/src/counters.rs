//! The kernel's per-namespace IP counters (`/proc/net/snmp`, `/proc/net/netstat`,
//! `/proc/net/snmp6`), so tests can check where traffic went: for instance that the router
//! counted `IpExt.InNoRoutes` when something tried to leave the lab.

use std::collections::BTreeMap;
use std::io;

/// Reads the counters of the calling thread's network namespace (`/proc/thread-self/net`: the
/// plain `/proc/net` follows the main thread, which stays in the host namespace).
pub fn read_snmp() -> io::Result<BTreeMap<String, u64>> {
    let mut counters = parse_snmp(&std::fs::read_to_string("/proc/thread-self/net/snmp")?);
    counters.extend(parse_snmp(&std::fs::read_to_string("/proc/thread-self/net/netstat")?));
    counters.extend(parse_snmp6(&std::fs::read_to_string("/proc/thread-self/net/snmp6")?));
    Ok(counters)
}

/// `/proc/net/snmp` and `/proc/net/netstat`: pairs of lines `Proto: names...` / `Proto: values...` → `Proto.Name`.
pub(crate) fn parse_snmp(text: &str) -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((proto, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(value) = value.parse() {
                counters.insert(format!("{proto}.{name}"), value);
            }
        }
    }
    counters
}

/// `/proc/net/snmp6`: `Ip6InReceives 1` lines → `Ip6.InReceives`.
pub(crate) fn parse_snmp6(text: &str) -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else { continue };
        let Ok(value) = value.parse() else { continue };
        let split = ["Ip6", "Icmp6", "UdpLite6", "Udp6"].iter().find(|p| name.starts_with(*p));
        let key = match split {
            Some(proto) => format!("{proto}.{}", &name[proto.len()..]),
            None => name.to_string(),
        };
        counters.insert(key, value);
    }
    counters
}

/// Packet counters of one link (a line of `/proc/net/dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// Reads the link counters of the calling thread's network namespace.
pub fn read_link_stats() -> io::Result<BTreeMap<String, LinkStats>> {
    Ok(parse_net_dev(&std::fs::read_to_string("/proc/thread-self/net/dev")?))
}

/// `/proc/net/dev`: two header lines, then `name: rx bytes packets errs drop ... tx bytes
/// packets errs drop ...` (8 receive and 8 transmit columns).
pub(crate) fn parse_net_dev(text: &str) -> BTreeMap<String, LinkStats> {
    let mut links = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, values)) = line.split_once(':') else { continue };
        let values: Vec<u64> = values.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if values.len() < 16 {
            continue;
        }
        links.insert(
            name.trim().to_string(),
            LinkStats {
                rx_packets: values[1],
                rx_dropped: values[3],
                tx_packets: values[9],
                tx_dropped: values[11],
            },
        );
    }
    links
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_become_link_stats() {
        let text = "Inter-|   Receive                                                |  Transmit\n                     face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
                    \x20   lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n\
                    \x20 eth0: 5000      40    0    3    0     0          0         0     7000      50    0    1    0     0       0          0\n";
        let links = parse_net_dev(text);
        assert_eq!(
            links["eth0"],
            LinkStats { rx_packets: 40, rx_dropped: 3, tx_packets: 50, tx_dropped: 1 }
        );
        assert_eq!(links["lo"].rx_packets, 2);
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn snmp_pairs_become_proto_dot_name() {
        let text = "Ip: Forwarding InReceives OutNoRoutes\nIp: 1 42 3\nUdp: InDatagrams NoPorts\nUdp: 5 0\n";
        let counters = parse_snmp(text);
        assert_eq!(counters.get("Ip.InReceives"), Some(&42));
        assert_eq!(counters.get("Ip.OutNoRoutes"), Some(&3));
        assert_eq!(counters.get("Udp.NoPorts"), Some(&0));
        assert_eq!(counters.len(), 5);
    }

    #[test]
    fn snmp6_names_split_after_the_protocol() {
        let text = "Ip6InReceives                   \t7\nIcmp6OutDestUnreachs\t2\nUdp6NoPorts 1\nUdpLite6InErrors 0\n";
        let counters = parse_snmp6(text);
        assert_eq!(counters.get("Ip6.InReceives"), Some(&7));
        assert_eq!(counters.get("Icmp6.OutDestUnreachs"), Some(&2));
        assert_eq!(counters.get("Udp6.NoPorts"), Some(&1));
        assert_eq!(counters.get("UdpLite6.InErrors"), Some(&0));
    }

    #[test]
    fn reading_works_in_this_namespace() {
        let counters = read_snmp().unwrap();
        for key in ["Ip.InReceives", "IpExt.InNoRoutes", "Ip6.InReceives", "Ip6.InNoRoutes"] {
            assert!(counters.contains_key(key), "{key} missing");
        }
    }
}
