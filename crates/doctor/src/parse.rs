//! The kernel's and the tools' text formats, read without I/O.

use std::path::PathBuf;

use switchyard_model::PortRange;

use crate::facts::Mount;

/// `major.minor` of a kernel release such as `6.18.44-fc-v1272` or `5.15.0-91-generic`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// The mount points and filesystem types of `/proc/self/mountinfo` (proc(5)); lines that do
/// not parse are skipped.
pub fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            let fs_type = after.split(' ').next()?;
            Some(Mount {
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                fs_type: fs_type.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's `\040`-style escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\').and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Chains the kubelet creates itself; they stay when kube-proxy is gone and are harmless.
const KUBELET_CHAINS: &[&str] = &["KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"];

/// kube-proxy's chains declared in `iptables-save` output (`:KUBE-SERVICES - [0:0]`), sorted
/// and without duplicates; the kubelet's own `KUBE-*` chains are left out.
pub fn kube_proxy_chains(iptables_save: &str) -> Vec<String> {
    let mut chains: Vec<String> = iptables_save
        .lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|chain| chain.starts_with("KUBE-") && !KUBELET_CHAINS.contains(chain))
        .map(str::to_owned)
        .collect();
    chains.sort();
    chains.dedup();
    chains
}

/// kube-proxy's tables in `nft list tables` output (`table ip kube-proxy`), as `FAMILY NAME`.
pub fn kube_proxy_tables(nft_list_tables: &str) -> Vec<String> {
    nft_list_tables
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (Some("table"), Some(family), Some("kube-proxy")) =
                (words.next(), words.next(), words.next())
            else {
                return None;
            };
            Some(format!("{family} kube-proxy"))
        })
        .collect()
}

/// `net.ipv4.ip_local_port_range`: two numbers separated by white space.
pub fn local_port_range(text: &str) -> Option<PortRange> {
    switchyard_model::snat_ports::parse_local_port_range(text)
}

/// `net.ipv4.ip_local_reserved_ports`: a comma-separated list of ports and `FIRST-LAST`
/// ranges, possibly empty.
pub fn reserved_ports(text: &str) -> Option<Vec<PortRange>> {
    text.trim()
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| match item.trim().split_once('-') {
            Some(_) => item.parse().ok(),
            None => item.trim().parse().ok().map(|port| PortRange { first: port, last: port }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_version("6.1"), Some((6, 1)));
        assert_eq!(kernel_version("linux"), None);
        assert_eq!(kernel_version("6"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let text = "\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 24 0:45 / /sys/fs/bpf rw,nosuid shared:20 master:3 - bpf bpf rw,mode=700
51 24 0:46 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage line
";
        let mounts = mountinfo(text);
        assert_eq!(
            mounts,
            vec![
                Mount { mount_point: "/sys/fs/cgroup/unified".into(), fs_type: "cgroup2".into() },
                Mount { mount_point: "/sys/fs/bpf".into(), fs_type: "bpf".into() },
                Mount { mount_point: "/mnt/with space".into(), fs_type: "tmpfs".into() },
            ]
        );
    }

    #[test]
    fn kube_proxy_chains_leave_the_kubelets_out() {
        let text = "\
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-SVC-ABCDEF - [0:0]
-A PREROUTING -j KUBE-SERVICES
COMMIT
*filter
:KUBE-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
COMMIT
";
        assert_eq!(kube_proxy_chains(text), vec!["KUBE-SERVICES", "KUBE-SVC-ABCDEF"]);
        assert!(kube_proxy_chains("*nat\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn kube_proxy_tables_by_family() {
        let text = "table inet filter\ntable ip kube-proxy\ntable ip6 kube-proxy\n";
        assert_eq!(kube_proxy_tables(text), vec!["ip kube-proxy", "ip6 kube-proxy"]);
        assert!(kube_proxy_tables("table inet filter\n").is_empty());
    }

    #[test]
    fn port_ranges_of_sysctls() {
        assert_eq!(
            local_port_range("32768\t60999\n"),
            Some(PortRange { first: 32768, last: 60999 })
        );
        assert_eq!(local_port_range("60999 32768"), None);
        assert_eq!(local_port_range("1 2 3"), None);
        assert_eq!(reserved_ports("\n"), Some(vec![]));
        assert_eq!(
            reserved_ports("30000-32767,40000\n"),
            Some(vec![
                PortRange { first: 30000, last: 32767 },
                PortRange { first: 40000, last: 40000 }
            ])
        );
        assert_eq!(reserved_ports("x"), None);
    }
}
