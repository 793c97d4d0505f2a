//! GoBGP as the lab's router instead of BIRD: `gobgpd` in the router namespace with a config
//! and API socket of its own (under the lab's run directory), passive towards every node, IPv4
//! and IPv6 unicast; `gobgp` reads its RIB. Killed by pid on drop.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command};

use super::bird::ROUTER_ASN;
use crate::{Lab, LabError};

/// A running `gobgpd` in a lab's router namespace.
#[derive(Debug)]
pub struct GoBgp {
    child: Child,
    dir: PathBuf,
}

impl GoBgp {
    /// One neighbour per lab node (its IPv4 link, carrying IPv4 and IPv6 unicast), every node
    /// in AS `node_asn`; the router is AS [`ROUTER_ASN`].
    pub fn for_nodes(lab: &Lab, node_asn: u32) -> Result<GoBgp, LabError> {
        let dir = lab.plan().run_dir.join("gobgp");
        std::fs::create_dir_all(&dir)
            .map_err(LabError::io(format!("creating {}", dir.display())))?;
        let mut conf =
            format!("[global.config]\n  as = {ROUTER_ASN}\n  router-id = \"10.100.255.1\"\n");
        for node in lab.nodes() {
            let _ = write!(
                conf,
                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {node_asn}\n\
                 \x20 [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{}\"\n\
                 \x20 [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n\
                 \x20 [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n",
                node.ipv4, node.router_ipv4
            );
        }
        let path = dir.join("gobgpd.toml");
        std::fs::write(&path, conf).map_err(LabError::io(format!("writing {}", path.display())))?;
        let mut command = Command::new("gobgpd");
        command
            .arg("-f")
            .arg(&path)
            .arg(format!("--api-hosts=unix://{}", dir.join("api.sock").display()))
            .arg("--pprof-disable")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = lab.spawn_in("fabric", command)?;
        Ok(GoBgp { child, dir })
    }

    /// GoBGP's RIB entry of one prefix (`10.0.0.1/32`, `2001:db8::1/128`), as JSON text.
    pub fn rib(&self, lab: &Lab, prefix: &str) -> Result<String, LabError> {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        let mut command = Command::new("gobgp");
        command
            .arg(format!("--target=unix://{}", self.dir.join("api.sock").display()))
            .args(["global", "rib", "-a", family, prefix, "-j"]);
        let out = lab.output_in("fabric", command)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The next hops of GoBGP's paths to `prefix` (one per announcing node).
    pub fn next_hops(&self, lab: &Lab, prefix: &str) -> Result<Vec<String>, LabError> {
        let rib = self.rib(lab, prefix)?;
        let mut hops: Vec<String> = rib
            .split("\"nexthop\":\"")
            .skip(1)
            .filter_map(|rest| Some(rest.split('"').next()?.to_owned()))
            .collect();
        hops.sort();
        Ok(hops)
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
