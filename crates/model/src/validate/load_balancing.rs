//! IPPools, BGPPeers, BGPAdvertisements and L2Advertisements: what parses but cannot work
//! (addresses that are not addresses, overlapping pools, reserved AS numbers, a hold time BGP
//! refuses, pools that do not exist, selectors the API server refuses, interface names Linux
//! refuses).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Finding, Problem, Report};
use crate::crd::{
    AddressRange, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement, parse_community, pool_ranges,
};
use crate::duration::parse_duration;
use crate::input::{ClusterState, ObjectKey, ObjectKind};

/// AS_TRANS (RFC 6793): stands in for a 4-octet ASN on old sessions, never a real AS.
const AS_TRANS: u32 = 23456;

/// Every finding about the Switchyard kinds in `state`.
pub(super) fn check(state: &ClusterState, findings: &mut Vec<Finding>) {
    check_pools(&state.ip_pools, findings);
    for (key, peer) in &state.bgp_peers {
        check_peer(key, peer, findings);
    }
    for (key, advertisement) in &state.bgp_advertisements {
        check_advertisement(key, advertisement, state, findings);
    }
    for (key, advertisement) in &state.l2_advertisements {
        check_l2_advertisement(key, advertisement, state, findings);
    }
}

/// A finding that needs a sentence of its own.
fn rule(report: &mut Report<'_>, field: impl Into<String>, rule: impl Into<String>) {
    report.error(field, Problem::Rule(rule.into()));
}

fn check_pools(pools: &BTreeMap<ObjectKey, IPPool>, findings: &mut Vec<Finding>) {
    // Ranges already claimed by pools earlier in name order: the later pool is the one at fault.
    let mut claimed: Vec<(AddressRange, &ObjectKey, String)> = Vec::new();
    for (key, pool) in pools {
        let mut report = Report { kind: ObjectKind::IPPool, object: key, findings };
        if pool.spec.addresses.is_empty() {
            report.warning(
                "spec.addresses",
                Problem::Rule("empty: this pool hands out nothing".to_owned()),
            );
        }
        for (i, text) in pool.spec.addresses.iter().enumerate() {
            if let Err(err) = AddressRange::parse(text) {
                rule(&mut report, format!("spec.addresses[{i}]"), err.to_string());
            }
        }
        let ranges = pool_ranges(pool);
        for (index, (field, range)) in ranges.iter().enumerate() {
            if let Some((other_field, _)) = ranges[..index].iter().find(|(_, r)| r.overlaps(range))
            {
                rule(
                    &mut report,
                    field.clone(),
                    format!("{range} overlaps {other_field} of this pool"),
                );
            } else if let Some((_, other, other_field)) =
                claimed.iter().find(|(r, _, _)| r.overlaps(range))
            {
                rule(
                    &mut report,
                    field.clone(),
                    format!(
                        "{range} overlaps IPPool {other} ({other_field}): pools may not share addresses"
                    ),
                );
            }
        }
        claimed.extend(ranges.into_iter().map(|(field, range)| (range, key, field)));
        check_selector(&mut report, "spec.serviceSelector", pool.spec.service_selector.as_ref());
        check_selector(
            &mut report,
            "spec.namespaceSelector",
            pool.spec.namespace_selector.as_ref(),
        );
    }
}

fn check_peer(key: &ObjectKey, peer: &BGPPeer, findings: &mut Vec<Finding>) {
    let mut report = Report { kind: ObjectKind::BGPPeer, object: key, findings };
    let spec = &peer.spec;
    if spec.peer_address.parse::<IpAddr>().is_err() {
        report.error("spec.peerAddress", Problem::BadAddress { value: spec.peer_address.clone() });
    }
    for (field, asn) in [("spec.peerASN", spec.peer_asn), ("spec.myASN", spec.my_asn)] {
        if let Some(reason) = asn_rule(asn) {
            rule(&mut report, field, reason);
        }
    }
    if spec.peer_port == 0 {
        report.error("spec.peerPort", Problem::PortOutOfRange { value: 0 });
    }
    let hold = check_seconds(&mut report, "spec.holdTime", &spec.hold_time);
    if let Some(hold) = hold
        && (hold == Duration::from_secs(1) || hold == Duration::from_secs(2))
    {
        rule(&mut report, "spec.holdTime", "must be 0 (no keepalives) or at least 3s (RFC 4271)");
    }
    if let Some(text) = &spec.keepalive_time
        && let Some(keepalive) = check_seconds(&mut report, "spec.keepaliveTime", text)
        && let Some(hold) = hold.filter(|h| !h.is_zero())
        && keepalive >= hold
    {
        rule(
            &mut report,
            "spec.keepaliveTime",
            format!("{text} is not shorter than the hold time {}", spec.hold_time),
        );
    }
    if let Some(bfd) = &spec.bfd
        && let Err((field, reason)) = crate::announce::bfd_settings(bfd, spec.ebgp_multi_hop)
    {
        rule(&mut report, field, reason);
    }
    if let Some(secret) = &spec.password_secret {
        for (field, value) in
            [("name", &secret.name), ("namespace", &secret.namespace), ("key", &secret.key)]
        {
            if value.is_empty() {
                report.error(format!("spec.passwordSecret.{field}"), Problem::Required);
            }
        }
    }
    check_selector(&mut report, "spec.nodeSelector", spec.node_selector.as_ref());
}

/// Why an AS number cannot be used on a session, if it cannot.
fn asn_rule(asn: u32) -> Option<&'static str> {
    match asn {
        0 => Some("AS 0 is reserved and may not be used on a session (RFC 7607)"),
        AS_TRANS => Some("AS 23456 is AS_TRANS, a placeholder for 4-octet ASNs (RFC 6793)"),
        u32::MAX => Some("AS 4294967295 is reserved (RFC 7300)"),
        _ => None,
    }
}

/// A duration that BGP carries in whole seconds (at most 65535); `None` when it is unusable.
fn check_seconds(report: &mut Report<'_>, field: &str, text: &str) -> Option<Duration> {
    match parse_duration(text) {
        Err(err) => {
            rule(report, field, err.to_string());
            None
        }
        Ok(d) if d.subsec_nanos() != 0 => {
            rule(
                report,
                field,
                format!("{text:?} is not a whole number of seconds (BGP counts in seconds)"),
            );
            None
        }
        Ok(d) if d.as_secs() > u64::from(u16::MAX) => {
            rule(report, field, format!("{text:?} is longer than BGP's 65535 seconds"));
            None
        }
        Ok(d) => Some(d),
    }
}

/// An advertisement that names a pool which does not exist announces nothing for it: a warning,
/// since the pool may be created next.
fn check_pools_exist(report: &mut Report<'_>, pools: &[String], state: &ClusterState) {
    for (i, pool) in pools.iter().enumerate() {
        if !state.ip_pools.contains_key(&ObjectKey::cluster(pool.clone())) {
            report.warning(
                format!("spec.ipPools[{i}]"),
                Problem::Rule(format!("IPPool {pool} does not exist")),
            );
        }
    }
}

fn check_advertisement(
    key: &ObjectKey,
    advertisement: &BGPAdvertisement,
    state: &ClusterState,
    findings: &mut Vec<Finding>,
) {
    let mut report = Report { kind: ObjectKind::BGPAdvertisement, object: key, findings };
    let spec = &advertisement.spec;
    check_pools_exist(&mut report, &spec.ip_pools, state);
    for (i, peer) in spec.peers.iter().enumerate() {
        if !state.bgp_peers.contains_key(&ObjectKey::cluster(peer.clone())) {
            report.warning(
                format!("spec.peers[{i}]"),
                Problem::Rule(format!("BGPPeer {peer} does not exist")),
            );
        }
    }
    for (i, community) in spec.communities.iter().enumerate() {
        if let Err(reason) = parse_community(community) {
            rule(&mut report, format!("spec.communities[{i}]"), reason);
        }
    }
    for (field, length, max) in [
        ("spec.aggregationLength", spec.aggregation_length, 32),
        ("spec.aggregationLengthV6", spec.aggregation_length_v6, 128),
    ] {
        if let Some(length) = length.filter(|l| *l > max) {
            rule(&mut report, field, format!("{length} is not a prefix length (0-{max})"));
        }
    }
    check_selector(&mut report, "spec.serviceSelector", spec.service_selector.as_ref());
}

fn check_l2_advertisement(
    key: &ObjectKey,
    advertisement: &L2Advertisement,
    state: &ClusterState,
    findings: &mut Vec<Finding>,
) {
    let mut report = Report { kind: ObjectKind::L2Advertisement, object: key, findings };
    let spec = &advertisement.spec;
    check_pools_exist(&mut report, &spec.ip_pools, state);
    check_selector(&mut report, "spec.serviceSelector", spec.service_selector.as_ref());
    for (i, selector) in spec.node_selectors.iter().enumerate() {
        let field = format!("spec.nodeSelectors[{i}]");
        check_selector(&mut report, &field, Some(selector));
        let empty = selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
            && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
        if empty {
            report.warning(
                field,
                Problem::Rule(
                    "empty: selects every node, so the other nodeSelectors change nothing"
                        .to_owned(),
                ),
            );
        }
    }
    for (i, name) in spec.interfaces.iter().enumerate() {
        if let Err(reason) = interface_name(name) {
            rule(&mut report, format!("spec.interfaces[{i}]"), reason);
        }
    }
}

/// The kernel's `dev_valid_name`: 1 to 15 bytes (IFNAMSIZ 16 with the NUL), not `.` or `..`,
/// no `/`, `:` or whitespace. A name it refuses can name no interface, so the advertisement
/// would answer on none.
fn interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty: an interface name has 1 to 15 bytes".to_owned());
    }
    if name.len() > 15 {
        return Err(format!("{name:?} is longer than 15 bytes (IFNAMSIZ): no interface has it"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is no interface name"));
    }
    if let Some(c) = name.chars().find(|c| *c == '/' || *c == ':' || c.is_whitespace()) {
        return Err(format!("{name:?} contains {c:?}, which no interface name contains"));
    }
    Ok(())
}

/// What the API server refuses in a label selector.
fn check_selector(report: &mut Report<'_>, field: &str, selector: Option<&LabelSelector>) {
    let Some(selector) = selector else { return };
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                rule(
                    report,
                    format!("{at}.values"),
                    format!("required for operator {}", expression.operator),
                );
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                rule(
                    report,
                    format!("{at}.values"),
                    format!("must be empty for operator {}", expression.operator),
                );
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => report.error(
                format!("{at}.operator"),
                Problem::Unsupported {
                    value: other.to_owned(),
                    expected: "In, NotIn, Exists, DoesNotExist",
                },
            ),
        }
        if expression.key.is_empty() {
            report.error(format!("{at}.key"), Problem::Required);
        }
    }
}
