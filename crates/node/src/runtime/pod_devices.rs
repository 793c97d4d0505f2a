//! `--pod-devices`: the per-packet pod entry point on the host side of pod interfaces, for
//! traffic the socket hooks cannot see (processes outside `--cgroup`, a VM's guest kernel).
//! Interfaces come and go with pods, so the agent lists the namespace's devices every
//! [`RESCAN`] and attaches to new ones whose names match (docs/datapath.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use switchyard_bpf::nodeport::{self, PacketDatapath};
use switchyard_error::ErrorChain;
use tracing::{info, warn};

/// How often the interfaces are listed again: a new pod's traffic outside the hooked cgroup is
/// translated at most this long after its interface appears.
pub(crate) const RESCAN: Duration = Duration::from_secs(1);

/// Checks one `--pod-devices` entry: a device name, or a prefix followed by `*` (`veth*`,
/// `lxc*`, `cali*`: the CNI's naming decides).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    let ok = !name.is_empty()
        && name.len() < 16
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "pod device pattern {pattern:?}: a device name or a prefix and '*', 1-15 characters of [A-Za-z0-9_-]"
        ))
    }
}

/// Does interface `name` match one of `patterns`?
pub fn matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    })
}

/// The pod interfaces the agent attached to, by name and ifindex (an interface deleted and
/// created again under the same name has a new index and needs attaching again).
#[derive(Debug, Default)]
pub(crate) struct PodDevices {
    patterns: Vec<String>,
    /// `--devices`: never treated as pod interfaces, even when a pattern matches.
    devices: Vec<String>,
    attached: BTreeMap<String, u32>,
}

impl PodDevices {
    pub(crate) fn new(patterns: Vec<String>, devices: Vec<String>) -> Self {
        PodDevices { patterns, devices, attached: BTreeMap::new() }
    }

    /// Attaches to every matching interface not attached yet, and removes the pins of pod
    /// interfaces that are gone or no longer match (their links died with the device, or are
    /// detached now). Failures are logged: one pod's interface never stops the agent.
    pub(crate) fn sync(&mut self, datapath: &mut PacketDatapath, bpf_dir: &Path) {
        let interfaces = match nodeport::interfaces() {
            Ok(list) => list,
            Err(err) => {
                warn!(err = %ErrorChain(&err), "pod interfaces not listed");
                return;
            }
        };
        let wanted: BTreeMap<String, u32> = interfaces
            .into_iter()
            .filter(|(_, name)| matches(&self.patterns, name) && !self.devices.contains(name))
            .map(|(index, name)| (name, index))
            .collect();
        for (name, &index) in &wanted {
            if self.attached.get(name) == Some(&index) {
                continue;
            }
            match datapath.attach_pod(name) {
                Ok(()) => {
                    info!(device = %name, "pod programs attached");
                    self.attached.insert(name.clone(), index);
                }
                // The interface may have gone in between: the next scan tells.
                Err(err) => {
                    warn!(device = %name, err = %ErrorChain(&err), "pod programs not attached")
                }
            }
        }
        self.attached.retain(|name, _| wanted.contains_key(name));
        let pinned = match nodeport::attached_pod_devices(bpf_dir) {
            Ok(pinned) => pinned,
            Err(err) => {
                warn!(err = %ErrorChain(&err), "pod interface pins not listed");
                return;
            }
        };
        for name in pinned.iter().filter(|name| !wanted.contains_key(*name)) {
            match nodeport::detach_pod_device(bpf_dir, name) {
                Ok(_) => {
                    info!(device = %name, "pod programs detached (interface gone or no longer matched)")
                }
                Err(err) => {
                    warn!(device = %name, err = %ErrorChain(&err), "pod programs not detached")
                }
            }
        }
    }
}

/// Detaches the pod programs from every pod interface (an agent started without
/// `--pod-devices` after one with it).
pub(crate) fn detach_all(bpf_dir: &Path) {
    let pinned = nodeport::attached_pod_devices(bpf_dir).unwrap_or_default();
    for name in pinned {
        if let Err(err) = nodeport::detach_pod_device(bpf_dir, &name) {
            warn!(device = %name, err = %ErrorChain(&err), "pod programs not detached");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_names_or_prefixes() {
        let patterns = vec!["veth*".to_string(), "tap0".to_string()];
        assert!(matches(&patterns, "veth1"));
        assert!(matches(&patterns, "veth"));
        assert!(matches(&patterns, "tap0"));
        assert!(!matches(&patterns, "tap01"));
        assert!(!matches(&patterns, "eth0"));
        for good in ["veth*", "lxc*", "tap0", "cali_x-1"] {
            assert_eq!(check_pattern(good), Ok(()), "{good}");
        }
        for bad in ["", "*", "ve*th", "a/b*", "averyveryverylongname"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
