//! BIRD 2 as the lab's router: it runs in the router namespace with a config, control socket and
//! pid file of its own (under the lab's run directory), accepts BGP sessions from the nodes
//! (passive, so the nodes' speakers connect), and puts what it learns into the router's kernel
//! table with `merge paths on` (ECMP over every node that announces an address). Or, as a
//! routing daemon already on a node, in that node's namespace without a kernel table. Killed by
//! pid on drop.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command};

use crate::{Lab, LabError};

/// The router's AS number in the lab.
pub const ROUTER_ASN: u32 = 64500;

/// One BGP neighbour of the router: a node's address on its link to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The router's own address on the link (the node's `peerAddress`).
    pub local: IpAddr,
    /// The node's address.
    pub address: IpAddr,
    /// The node's AS number.
    pub asn: u32,
    /// The port BIRD listens on for this neighbour: 179, or others to run several sessions with
    /// one node (BIRD tells them apart by its local port; the same number as the neighbour's
    /// port keeps BIRD's per-neighbour lock apart too, and BIRD never connects: it is passive).
    pub port: u16,
    /// TCP MD5 password of the session (RFC 2385).
    pub password: Option<String>,
    /// The neighbour is not on a directly connected network (BGP multihop).
    pub multihop: bool,
    /// Run BFD with the neighbour (100 ms × 3, as the BGPPeer's `spec.bfd` defaults): BIRD takes
    /// the session down when BFD does.
    pub bfd: bool,
}

impl Neighbor {
    /// A directly connected neighbour on port 179, without a password.
    pub fn new(local: IpAddr, address: IpAddr, asn: u32) -> Neighbor {
        Neighbor { local, address, asn, port: 179, password: None, multihop: false, bfd: false }
    }
}

/// Where BIRD runs and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdOptions {
    /// The lab namespace (`fabric` for the router, or a node's name).
    pub namespace: String,
    /// BIRD's router id.
    pub router_id: Ipv4Addr,
    /// BIRD's AS number.
    pub asn: u32,
    /// Proposed hold time.
    pub hold_seconds: u16,
    /// Export what it learns to the namespace's kernel table (ECMP, `merge paths on`).
    pub kernel: bool,
}

impl BirdOptions {
    /// The lab router: namespace `fabric`, AS [`ROUTER_ASN`], learned routes in its kernel table.
    pub fn router(hold_seconds: u16) -> BirdOptions {
        BirdOptions {
            namespace: "fabric".to_owned(),
            router_id: Ipv4Addr::new(10, 100, 255, 1),
            asn: ROUTER_ASN,
            hold_seconds,
            kernel: true,
        }
    }
}

/// A running BIRD in a lab's router namespace.
#[derive(Debug)]
pub struct Bird {
    child: Child,
    dir: PathBuf,
    namespace: String,
}

impl Bird {
    /// One neighbour per lab node (its IPv4 link, carrying IPv4 and IPv6 unicast), every node in
    /// AS `node_asn`; hold time `hold_seconds`; graceful restart on (as the helper: BIRD keeps a
    /// restarting node's routes until its End-of-RIB or the restart time).
    pub fn for_nodes(lab: &Lab, node_asn: u32, hold_seconds: u16) -> Result<Bird, LabError> {
        let neighbors: Vec<Neighbor> = lab
            .nodes()
            .iter()
            .map(|n| Neighbor::new(n.router_ipv4.into(), n.ipv4.into(), node_asn))
            .collect();
        Bird::start(lab, &neighbors, hold_seconds)
    }

    /// BIRD on the lab router peered with `neighbors`.
    pub fn start(lab: &Lab, neighbors: &[Neighbor], hold_seconds: u16) -> Result<Bird, LabError> {
        Bird::start_with(lab, &BirdOptions::router(hold_seconds), neighbors)
    }

    /// BIRD as `options` say, peered with `neighbors`.
    pub fn start_with(
        lab: &Lab,
        options: &BirdOptions,
        neighbors: &[Neighbor],
    ) -> Result<Bird, LabError> {
        let dir = lab.plan().run_dir.join(format!("bird-{}", options.namespace));
        std::fs::create_dir_all(&dir)
            .map_err(LabError::io(format!("creating {}", dir.display())))?;
        let BirdOptions { router_id, asn, hold_seconds, .. } = options;
        let mut conf = format!("router id {router_id};\nprotocol device {{}}\n");
        if options.kernel {
            conf.push_str(
                "protocol kernel k4 { ipv4 { export all; import none; }; merge paths on; }\n\
                 protocol kernel k6 { ipv6 { export all; import none; }; merge paths on; }\n",
            );
        }
        let _ = write!(
            conf,
            "template bgp nodes {{ local as {asn}; passive on;\n\
             \x20 hold time {hold_seconds};\n\
             \x20 graceful restart on; ipv4 {{ import all; export none; }};\n\
             \x20 ipv6 {{ import all; export none; }}; }}\n"
        );
        for (i, n) in neighbors.iter().enumerate() {
            let mut extra = String::new();
            if let Some(password) = &n.password {
                let _ = write!(extra, " password \"{password}\";");
            }
            if n.multihop {
                extra.push_str(" multihop;");
            }
            if n.bfd {
                extra.push_str(" bfd on;");
            }
            let _ = writeln!(
                conf,
                "protocol bgp node{i} from nodes {{ local {} port {port} as {asn}; \
                 neighbor {} port {port} as {};{extra} }}",
                n.local,
                n.address,
                n.asn,
                port = n.port
            );
        }
        if neighbors.iter().any(|n| n.bfd) {
            // BIRD's defaults (10 ms receive, multiplier 5) made explicit as the BGPPeer's.
            conf.push_str(
                "protocol bfd { interface \"*\" { min rx interval 100 ms; \
                 min tx interval 100 ms; idle tx interval 1000 ms; multiplier 3; }; }\n",
            );
        }
        let path = dir.join("bird.conf");
        std::fs::write(&path, conf).map_err(LabError::io(format!("writing {}", path.display())))?;
        let mut command = Command::new("bird");
        command.arg("-f").arg("-c").arg(&path).arg("-s").arg(dir.join("bird.ctl"));
        command.arg("-P").arg(dir.join("bird.pid"));
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let child = lab.spawn_in(&options.namespace, command)?;
        Ok(Bird { child, dir, namespace: options.namespace.clone() })
    }

    /// BIRD's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `birdc` against this BIRD; its output.
    pub fn birdc(&self, lab: &Lab, args: &[&str]) -> Result<String, LabError> {
        let mut command = Command::new("birdc");
        command.arg("-s").arg(self.dir.join("bird.ctl")).args(args);
        let out = lab.output_in(&self.namespace, command)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Route updates BIRD imported over all its sessions (`Import updates: received`, summed):
    /// what the nodes' UPDATE messages announced or withdrew.
    pub fn updates_received(&self, lab: &Lab) -> Result<u64, LabError> {
        let text = self.birdc(lab, &["show", "protocols", "all"])?;
        Ok(text
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                line.starts_with("Import updates:") || line.starts_with("Import withdraws:")
            })
            .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next hops of the router's kernel route to `prefix` (`ip route show`); empty without one.
pub fn router_next_hops(lab: &Lab, prefix: &str) -> Result<BTreeSet<IpAddr>, LabError> {
    let mut command = Command::new("ip");
    if prefix.contains(':') {
        command.arg("-6");
    }
    command.args(["route", "show", prefix]);
    let out = lab.output_in("fabric", command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    Ok(words.windows(2).filter(|w| w[0] == "via").filter_map(|w| w[1].parse().ok()).collect())
}
