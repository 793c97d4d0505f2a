//! Turning route changes into as few UPDATE messages as fit: prefixes that share attributes share
//! a message, and each message stays within 4096 bytes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::{DEFAULT_LOCAL_PREF, RouteAttributes};
use crate::prefix::{Family, Prefix};
use crate::wire::{
    AS_TRANS, AsSegment, Attribute, Codec, HEADER_LEN, MAX_MESSAGE_LEN, Message, MpReach, Origin,
    Update,
};

/// What the attributes of our routes depend on, fixed for the life of an established session.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) local_as: u32,
    pub(crate) ebgp: bool,
    pub(crate) codec: Codec,
    pub(crate) next_hop_v4: Option<Ipv4Addr>,
    pub(crate) next_hop_v6: Option<Ipv6Addr>,
}

/// Bytes of an UPDATE that are not attributes or prefixes: header and the two length fields.
const FIXED: usize = HEADER_LEN + 4;

impl Outbound {
    /// Path attributes of one route of `family`, without the prefixes (MP_REACH gets them later).
    fn attributes(&self, family: Family, route: &RouteAttributes) -> Vec<Attribute> {
        let mut attrs = vec![Attribute::Origin(Origin::Igp)];
        let path = if self.ebgp {
            vec![AsSegment { sequence: true, asns: vec![self.local_as] }]
        } else {
            vec![]
        };
        let needs_as4 =
            self.ebgp && !self.codec.four_octet_as && self.local_as > u32::from(u16::MAX);
        if needs_as4 {
            attrs.push(Attribute::AsPath(vec![AsSegment {
                sequence: true,
                asns: vec![u32::from(AS_TRANS)],
            }]));
        } else {
            attrs.push(Attribute::AsPath(path.clone()));
        }
        if family == Family::Ipv4Unicast
            && let Some(hop) = self.next_hop_v4
        {
            attrs.push(Attribute::NextHop(hop));
        }
        if !self.ebgp {
            attrs.push(Attribute::LocalPref(route.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)));
        }
        if !route.communities.is_empty() {
            attrs.push(Attribute::Communities(route.communities.clone()));
        }
        if needs_as4 {
            attrs.push(Attribute::As4Path(path));
        }
        if !route.large_communities.is_empty() {
            attrs.push(Attribute::LargeCommunities(route.large_communities.clone()));
        }
        attrs
    }

    fn next_hop(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::Ipv4Unicast => self.next_hop_v4.map(IpAddr::V4),
            Family::Ipv6Unicast => self.next_hop_v6.map(IpAddr::V6),
        }
    }

    /// UPDATEs announcing `routes` (prefixes grouped by family and attributes).
    pub(crate) fn announce<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a Prefix, &'a RouteAttributes)>,
    ) -> Vec<Update> {
        let mut groups: BTreeMap<(Family, &RouteAttributes), Vec<Prefix>> = BTreeMap::new();
        for (prefix, attrs) in routes {
            groups.entry((prefix.family(), attrs)).or_default().push(*prefix);
        }
        let mut updates = Vec::new();
        for ((family, route), prefixes) in groups {
            let Some(next_hop) = self.next_hop(family) else { continue };
            let attributes = self.attributes(family, route);
            let mut base = Vec::new();
            Message::Update(Update { attributes: attributes.clone(), ..Update::default() })
                .encode(self.codec, &mut base);
            match family {
                Family::Ipv4Unicast => {
                    for chunk in prefixes.chunks(room(base.len(), 5)) {
                        updates.push(Update {
                            attributes: attributes.clone(),
                            nlri: chunk.to_vec(),
                            ..Update::default()
                        });
                    }
                }
                Family::Ipv6Unicast => {
                    // MP_REACH_NLRI: 4 header (extended length), 5 AFI/SAFI/hop length/reserved, hop.
                    for chunk in prefixes.chunks(room(base.len() + 4 + 5 + 16, 17)) {
                        let mut attrs = attributes.clone();
                        let reach =
                            MpReach { family, next_hops: vec![next_hop], nlri: chunk.to_vec() };
                        let at =
                            attrs.iter().position(|a| a.type_code() > 14).unwrap_or(attrs.len());
                        attrs.insert(at, Attribute::MpReach(reach));
                        updates.push(Update { attributes: attrs, ..Update::default() });
                    }
                }
            }
        }
        updates
    }

    /// UPDATEs withdrawing `prefixes`.
    pub(crate) fn withdraw(&self, prefixes: &[Prefix]) -> Vec<Update> {
        let (v4, v6): (Vec<Prefix>, Vec<Prefix>) =
            prefixes.iter().partition(|p| p.family() == Family::Ipv4Unicast);
        let mut updates: Vec<Update> = v4
            .chunks(room(FIXED, 5))
            .map(|chunk| Update { withdrawn: chunk.to_vec(), ..Update::default() })
            .collect();
        // MP_UNREACH_NLRI: 4 header (extended length), 3 AFI/SAFI.
        updates.extend(v6.chunks(room(FIXED + 7, 17)).map(|chunk| Update {
            attributes: vec![Attribute::MpUnreach(Family::Ipv6Unicast, chunk.to_vec())],
            ..Update::default()
        }));
        updates
    }
}

/// How many prefixes of at most `per_prefix` bytes fit beside `used` bytes in one message.
fn room(used: usize, per_prefix: usize) -> usize {
    (MAX_MESSAGE_LEN.saturating_sub(used) / per_prefix).max(1)
}
