//! Rules of one Node on its own: addresses and pod CIDRs.

use k8s_openapi::api::core::v1::Node;

use super::syntax::check_ip;
use super::{Finding, Problem, Report};
use crate::cidr::Cidr;
use crate::input::{ObjectKey, ObjectKind};

/// Validates one Node on its own.
pub fn validate_node(key: &ObjectKey, node: &Node, findings: &mut Vec<Finding>) {
    let mut report = Report { kind: ObjectKind::Node, object: key, findings };
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let mut has_ip = false;
    for (i, address) in addresses.into_iter().flatten().enumerate() {
        let field = format!("status.addresses[{i}]");
        match address.type_.as_str() {
            "InternalIP" | "ExternalIP" => {
                has_ip = true;
                check_ip(&mut report, format!("{field}.address"), &address.address, None);
            }
            "Hostname" | "InternalDNS" | "ExternalDNS" => {}
            other => report.warning(
                format!("{field}.type"),
                Problem::Unsupported {
                    value: other.to_owned(),
                    expected: "InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS",
                },
            ),
        }
    }
    if !has_ip {
        report.warning(
            "status.addresses",
            Problem::Rule(
                "no InternalIP or ExternalIP: this node cannot serve NodePorts".to_owned(),
            ),
        );
    }
    let spec = node.spec.as_ref();
    if let Some(cidr) = spec.and_then(|s| s.pod_cidr.as_deref())
        && let Err(err) = cidr.parse::<Cidr>()
    {
        report.error("spec.podCIDR", err.into());
    }
    for (i, cidr) in spec.and_then(|s| s.pod_cidrs.as_ref()).into_iter().flatten().enumerate() {
        if let Err(err) = cidr.parse::<Cidr>() {
            report.error(format!("spec.podCIDRs[{i}]"), err.into());
        }
    }
}
