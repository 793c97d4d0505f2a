//! The responder against real Linux neighbours (root; two network namespaces of the test's own
//! joined by a veth pair): the kernel of the "client" namespace resolves the addresses the
//! responder owns to the responder's MAC (ARP and NDP, so the frames and checksums are ones
//! Linux accepts), moves a stale cache entry to it on the gratuitous ARP / unsolicited
//! advertisement alone, and gets no answer once the address is lost.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchyard_l2::{L2Runtime, Ownership, ResponderReport, Scope};
use switchyard_lab::{netns, require_root, wait_until};

const VIP: &str = "10.251.0.100";
const VIP6: &str = "2001:db8:251::100";

/// Two namespaces `<name>-c` (client, `vc`) and `<name>-r` (responder, `vr`) joined by a veth
/// pair; removed on drop (with the veth).
struct Pair {
    client: String,
    responder: String,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pair {
    fn up() -> Pair {
        let base = format!("syl2-{}", std::process::id());
        let pair = Pair { client: format!("{base}-c"), responder: format!("{base}-r") };
        ip(&["netns", "add", &pair.client]);
        ip(&["netns", "add", &pair.responder]);
        ip(&[
            "link",
            "add",
            "vc",
            "netns",
            &pair.client,
            "type",
            "veth",
            "peer",
            "name",
            "vr",
            "netns",
            &pair.responder,
        ]);
        for (ns, link, v4, v6) in [
            (&pair.client, "vc", "10.251.0.1/24", "2001:db8:251::1/64"),
            (&pair.responder, "vr", "10.251.0.2/24", "2001:db8:251::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", link]);
            ip(&["-n", ns, "addr", "add", v6, "dev", link, "nodad"]);
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        pair
    }

    /// The client's neighbour entry for `address`: (MAC, state), if any.
    fn neighbour(&self, address: &str) -> Option<(String, String)> {
        let family = if address.contains(':') { "-6" } else { "-4" };
        let text = ip(&["-n", &self.client, family, "neigh", "show", address, "dev", "vc"]);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mac = words.iter().position(|w| *w == "lladdr").map(|i| words[i + 1].to_owned());
        let state = words.last().map(|s| (*s).to_owned())?;
        Some((mac.unwrap_or_default(), state))
    }

    /// The responder's MAC on `vr`.
    fn responder_mac(&self) -> String {
        let text = ip(&["-n", &self.responder, "link", "show", "vr"]);
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "link/ether").unwrap();
        words[at + 1].to_owned()
    }

    /// Sends one UDP datagram from the client to `address` (so its kernel resolves it).
    fn poke(&self, address: &str) {
        let target: IpAddr = address.parse().unwrap();
        netns::run_in(&self.client, || {
            let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = UdpSocket::bind(bind).unwrap();
            let _ = socket.send_to(b"x", (target, 9));
        })
        .unwrap();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.responder] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The responder runtime on a thread inside `namespace`; ownership changes go through the
/// channel, reports come back on request. Ends when the sender drops.
fn start_responder(
    namespace: &str,
) -> (mpsc::Sender<Ownership>, mpsc::Receiver<ResponderReport>, std::thread::JoinHandle<()>) {
    let (own_tx, own_rx) = mpsc::channel::<Ownership>();
    let (report_tx, report_rx) = mpsc::channel();
    let handle = netns::run_in(namespace, move || {
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let l2 = L2Runtime::start();
                let reporter = l2.reporter();
                loop {
                    match own_rx.try_recv() {
                        Ok(ownership) => l2.set(ownership),
                        Err(mpsc::TryRecvError::Empty) => {}
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                    let _ = report_tx.send(reporter.report());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })
    })
    .unwrap();
    (own_tx, report_rx, handle)
}

fn latest(reports: &mpsc::Receiver<ResponderReport>) -> ResponderReport {
    let mut last = reports.recv().unwrap();
    while let Ok(next) = reports.try_recv() {
        last = next;
    }
    last
}

fn owning(addresses: &[&str]) -> Ownership {
    addresses
        .iter()
        .map(|a| (a.parse().unwrap(), Scope::Named(BTreeSet::from(["vr".to_owned()]))))
        .collect()
}

#[test]
fn linux_neighbours_resolve_owned_addresses_follow_announcements_and_forget_lost_ones() {
    if !require_root(
        "linux_neighbours_resolve_owned_addresses_follow_announcements_and_forget_lost_ones",
    ) {
        return;
    }
    let pair = Pair::up();
    let mac = pair.responder_mac();
    let (ownership, reports, thread) = start_responder(&pair.responder);

    // 1. Stale entries pointing elsewhere move to us on the announcements alone (no traffic).
    for address in [VIP, VIP6] {
        ip(&[
            "-n",
            &pair.client,
            "neigh",
            "replace",
            address,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "vc",
            "nud",
            "stale",
        ]);
    }
    let gained = Instant::now();
    ownership.send(owning(&[VIP, VIP6])).unwrap();
    for address in [VIP, VIP6] {
        let moved = wait_until(Duration::from_secs(3), || {
            pair.neighbour(address).is_some_and(|(m, _)| m == mac)
        });
        assert!(
            moved,
            "{address}: client entry {:?}, responder MAC {mac}",
            pair.neighbour(address)
        );
    }
    eprintln!("announcements moved both entries in {:?}", gained.elapsed());

    // 2. From scratch: requests from the client's kernel are answered with our MAC.
    for address in [VIP, VIP6] {
        ip(&["-n", &pair.client, "neigh", "flush", "to", address, "dev", "vc"]);
        let resolved = wait_until(Duration::from_secs(3), || {
            pair.poke(address);
            pair.neighbour(address).is_some_and(|(m, state)| m == mac && state == "REACHABLE")
        });
        assert!(resolved, "{address}: client entry {:?}", pair.neighbour(address));
    }
    // The counters reach the shared report a moment after the answers go out.
    let dad = switchyard_l2::frame::Refused::DuplicateAddressDetection.to_string();
    let mut report = latest(&reports);
    let counted = wait_until(Duration::from_secs(2), || {
        report = latest(&reports);
        report.interfaces.iter().any(|i| {
            i.name == "vr"
                && i.mac == mac
                && i.counters.arp_replies >= 1
                && i.counters.ndp_replies >= 1
                && i.counters.announcements >= 2
        })
    });
    assert!(counted, "{report:?}");
    // The kernel's requests are all valid; the only frames refused are duplicate address
    // detection probes of the client's own link-local address (the interface just came up).
    assert!(
        report.interfaces.iter().all(|i| i.counters.refused.keys().all(|k| *k == dad)),
        "{report:?}"
    );

    // 3. Lost: no answer any more; the client's resolution fails.
    ownership.send(Ownership::new()).unwrap();
    assert!(wait_until(Duration::from_secs(2), || {
        latest(&reports).interfaces.iter().all(|i| i.addresses.is_empty())
    }));
    for address in [VIP, VIP6] {
        ip(&["-n", &pair.client, "neigh", "flush", "to", address, "dev", "vc"]);
        pair.poke(address);
    }
    std::thread::sleep(Duration::from_secs(4));
    for address in [VIP, VIP6] {
        let entry = pair.neighbour(address);
        assert!(
            entry.as_ref().is_none_or(
                |(m, state)| m.is_empty() && (state == "FAILED" || state == "INCOMPLETE")
            ),
            "{address}: still resolved after the address was lost: {entry:?}"
        );
    }
    drop(ownership);
    thread.join().unwrap();
}
