//! The responder of one interface, without I/O: which addresses it owns, what to answer to a
//! received frame, and when to announce an address it gained.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::frame::{self, Mac, Refused, Request};

/// When announcements of a gained address go out, after gaining it: one at once (the failover
/// itself), then two repeats for neighbours that missed it (a lost frame, a busy switch).
pub const ANNOUNCE_AT: [Duration; 3] =
    [Duration::ZERO, Duration::from_millis(500), Duration::from_secs(2)];

/// What a responder did, for the agent's report and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbour advertisements sent in answer to solicitations.
    pub ndp_replies: u64,
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent.
    pub announcements: u64,
    /// Well-formed requests for addresses this node does not own.
    pub not_owned: u64,
    /// Frames refused, by reason.
    pub refused: BTreeMap<String, u64>,
}

/// One interface's responder.
#[derive(Debug, Clone)]
pub struct Responder {
    mac: Mac,
    /// The interface's link-local IPv6 address: the source of unsolicited advertisements.
    link_local: Option<Ipv6Addr>,
    owned: BTreeSet<IpAddr>,
    /// Announcements still to send: (when, address, which of [`ANNOUNCE_AT`]).
    pending: Vec<(Instant, IpAddr, usize)>,
    /// When each owned address was gained.
    gained: BTreeMap<IpAddr, Instant>,
    counters: Counters,
}

impl Responder {
    /// A responder for an interface with `mac`, owning nothing yet.
    pub fn new(mac: Mac, link_local: Option<Ipv6Addr>) -> Responder {
        Responder {
            mac,
            link_local,
            owned: BTreeSet::new(),
            pending: Vec::new(),
            gained: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// The interface's MAC.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Sets the source of unsolicited advertisements (the interface's link-local address; the
    /// advertised address itself while the interface has none).
    pub fn set_link_local(&mut self, link_local: Option<Ipv6Addr>) {
        self.link_local = link_local;
    }

    /// The addresses answered for.
    pub fn owned(&self) -> &BTreeSet<IpAddr> {
        &self.owned
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Owns exactly `owned` from `now` on: gained addresses are announced on the
    /// [`ANNOUNCE_AT`] schedule, lost ones are no longer answered (nor announced). Returns the
    /// gained and the lost addresses.
    pub fn set_owned(
        &mut self,
        owned: BTreeSet<IpAddr>,
        now: Instant,
    ) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let gained: Vec<IpAddr> = owned.difference(&self.owned).copied().collect();
        let lost: Vec<IpAddr> = self.owned.difference(&owned).copied().collect();
        self.pending.retain(|(_, address, _)| owned.contains(address));
        self.gained.retain(|address, _| owned.contains(address));
        for address in &gained {
            self.pending.push((now + ANNOUNCE_AT[0], *address, 0));
            self.gained.insert(*address, now);
        }
        self.owned = owned;
        (gained, lost)
    }

    /// When the next announcement is due.
    pub fn next_announcement(&self) -> Option<Instant> {
        self.pending.iter().map(|(at, _, _)| *at).min()
    }

    /// The announcements due at `now` (gratuitous ARPs, unsolicited advertisements), with the
    /// next ones of each address scheduled.
    pub fn due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut later = Vec::new();
        for (at, address, index) in std::mem::take(&mut self.pending) {
            if at > now {
                later.push((at, address, index));
                continue;
            }
            frames.push(self.announcement(address));
            if let (Some(next), Some(gained)) =
                (ANNOUNCE_AT.get(index + 1), self.gained.get(&address))
            {
                later.push(((*gained + *next).max(now), address, index + 1));
            }
        }
        self.pending = later;
        self.counters.announcements += frames.len() as u64;
        frames
    }

    fn announcement(&self, address: IpAddr) -> Vec<u8> {
        match address {
            IpAddr::V4(v4) => frame::gratuitous_arp(self.mac, v4),
            IpAddr::V6(v6) => {
                frame::unsolicited_advertisement(self.mac, self.link_local.unwrap_or(v6), v6)
            }
        }
    }

    /// The answer to a received frame: `Some(frame)` to send, `None` to stay silent (not a
    /// request for an owned address, or a refused frame — counted by reason).
    pub fn answer(&mut self, received: &[u8]) -> Option<Vec<u8>> {
        let request = match frame::parse(received) {
            Ok(request) => request,
            Err(why) => {
                self.refuse(why);
                return None;
            }
        };
        if !self.owned.contains(&request.target()) {
            self.counters.not_owned += 1;
            return None;
        }
        match request {
            Request::Arp { sender_mac, sender_ip, target } => {
                // Our own gratuitous ARP looped back, or another host's for the address.
                if sender_mac == self.mac || sender_ip == target {
                    return None;
                }
                self.counters.arp_replies += 1;
                Some(frame::arp_reply(self.mac, target, sender_mac, sender_ip))
            }
            Request::Solicitation { reply_mac, sender_ip, target } => {
                if reply_mac == self.mac {
                    return None;
                }
                self.counters.ndp_replies += 1;
                Some(frame::neighbor_advertisement(
                    self.mac, target, target, reply_mac, sender_ip, true,
                ))
            }
        }
    }

    /// Counts a frame refused before parsing finished (or by the caller, e.g. a frame the
    /// socket filter should have kept out).
    pub fn refuse(&mut self, why: Refused) {
        *self.counters.refused.entry(why.to_string()).or_default() += 1;
    }
}
