//! Rules of one EndpointSlice on its own: address type, endpoints, ports.

use std::collections::BTreeMap;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::service::PROTOCOLS;
use super::syntax::{check_dns1123_label, check_dns1123_subdomain, check_service_ip};
use super::{Finding, Problem, Report};
use crate::input::{ObjectKey, ObjectKind};

/// Validates one EndpointSlice on its own.
pub fn validate_endpoint_slice(
    key: &ObjectKey,
    slice: &EndpointSlice,
    findings: &mut Vec<Finding>,
) {
    let mut report = Report { kind: ObjectKind::EndpointSlice, object: key, findings };
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(true),
        "IPv6" => Some(false),
        "FQDN" => None,
        other => {
            report.error(
                "addressType",
                Problem::Unsupported { value: other.to_owned(), expected: "IPv4, IPv6, FQDN" },
            );
            return;
        }
    };
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let field = format!("endpoints[{i}]");
        if endpoint.addresses.is_empty() {
            report.error(format!("{field}.addresses"), Problem::Required);
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            let address_field = format!("{field}.addresses[{j}]");
            match family {
                Some(is_v4) => check_service_ip(&mut report, address_field, address, Some(is_v4)),
                None => check_dns1123_subdomain(&mut report, address_field, address, "FQDN"),
            }
        }
        let hints = endpoint.hints.as_ref();
        for (j, zone) in hints.and_then(|h| h.for_zones.as_ref()).into_iter().flatten().enumerate()
        {
            if zone.name.is_empty() {
                report.error(format!("{field}.hints.forZones[{j}].name"), Problem::Required);
            }
        }
        for (j, node) in hints.and_then(|h| h.for_nodes.as_ref()).into_iter().flatten().enumerate()
        {
            if node.name.is_empty() {
                report.error(format!("{field}.hints.forNodes[{j}].name"), Problem::Required);
            }
        }
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        let field = format!("ports[{i}]");
        if let Some(number) = port.port
            && !(1..=65535).contains(&number)
        {
            report.error(format!("{field}.port"), Problem::PortOutOfRange { value: number.into() });
        }
        if let Some(protocol) = port.protocol.as_deref()
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            report.error(
                format!("{field}.protocol"),
                Problem::Unsupported { value: protocol.to_owned(), expected: PROTOCOLS },
            );
        }
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            check_dns1123_label(&mut report, format!("{field}.name"), name, "port name");
        }
        if let Some(first) = names.insert(name, i) {
            report.error(
                format!("{field}.name"),
                Problem::Duplicate {
                    what: "port name",
                    value: name.to_owned(),
                    other_field: format!("ports[{first}]"),
                },
            );
        }
    }
}
