//! The semantic checks an object read from a manifest must pass to apply: what the API server
//! would refuse (a cluster IP `10.96.0.300`, a port 70000) never reaches the model, so the
//! object keeps its last good version as it would in a cluster, where the update is refused.
//!
//! Only rules about the object itself: rules between objects (a NodePort claimed twice) depend
//! on which one was read first, so they stay findings of `validate` and the agent's log. A
//! NodePort outside the range alone does not refuse the object either: the range is a setting
//! the proxy may hold differently from the API server, and the model then serves the Service
//! without that NodePort (docs/conformance.md, row 18). It is reported with the other errors of
//! an object refused for another reason, which would otherwise not be reported at all.

use switchyard_model::validate::{
    Finding, Problem, ValidationOptions, validate_endpoint_slice, validate_node, validate_service,
};

use super::object::{Object, ObjectId};

/// The errors (not warnings) the API server would refuse `object` for; empty when it applies.
pub(crate) fn refused(id: &ObjectId, object: &Object, options: &ValidationOptions) -> Vec<Finding> {
    let mut findings = Vec::new();
    let key = &id.1;
    match object {
        Object::Service(service) => validate_service(key, service, options, &mut findings),
        Object::EndpointSlice(slice) => validate_endpoint_slice(key, slice, &mut findings),
        Object::Node(node) => validate_node(key, node, &mut findings),
        Object::IPPool(_)
        | Object::BGPPeer(_)
        | Object::BGPAdvertisement(_)
        | Object::L2Advertisement(_)
        | Object::Namespace(_)
        | Object::Secret(_) => {}
    }
    findings.retain(Finding::is_error);
    let setting_only = findings
        .iter()
        .all(|finding| matches!(finding.problem, Problem::NodePortOutOfRange { .. }));
    if setting_only {
        findings.clear();
    }
    findings
}
