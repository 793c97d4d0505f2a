//! The allocator's decisions as Kubernetes status: `status.loadBalancer.ingress` and the
//! `switchyard.io/IPAllocated` condition of a Service, the counts and `switchyard.io/Valid`
//! condition of an IPPool. Pure functions, so both runtimes (API server, manifest directory)
//! write exactly the same thing.

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchyard_model::crd::IPPoolStatus;

use crate::allocator::{ALLOCATED_CONDITION, Outcome, PoolReport, ServiceStatus, VALID_CONDITION};

/// `ipMode` of every ingress entry: traffic arrives with the address as destination (the node
/// agents program it), so kube-proxy-like proxies may short-circuit it.
pub const IP_MODE: &str = "VIP";

/// True when `service`'s status already says what `desired` says.
pub fn service_matches(service: &Service, desired: &ServiceStatus) -> bool {
    let status = service.status.as_ref();
    let ingress: Vec<(Option<&str>, Option<&str>)> = status
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| (i.ip.as_deref(), i.ip_mode.as_deref()))
        .collect();
    let wanted: Vec<String> = desired.addresses.iter().map(ToString::to_string).collect();
    let wanted: Vec<(Option<&str>, Option<&str>)> =
        wanted.iter().map(|ip| (Some(ip.as_str()), Some(IP_MODE))).collect();
    let ours = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == ALLOCATED_CONDITION);
    let condition_matches = match (&desired.condition, ours) {
        (None, None) => true,
        (Some(outcome), Some(c)) => {
            c.status == status_word(outcome)
                && c.reason == outcome.reason.as_str()
                && c.message == outcome.message
        }
        _ => false,
    };
    ingress == wanted && condition_matches
}

fn status_word(outcome: &Outcome) -> &'static str {
    if outcome.allocated { "True" } else { "False" }
}

/// `service` with its status set to `desired`: our ingress IPs, our condition replaced (its
/// transition time kept while its status stays), other conditions kept.
pub fn apply_service_status(service: &mut Service, desired: &ServiceStatus, now: &Time) {
    let generation = service.metadata.generation;
    let status = service.status.get_or_insert_with(Default::default);
    let ingress: Vec<LoadBalancerIngress> = desired
        .addresses
        .iter()
        .map(|a| LoadBalancerIngress {
            ip: Some(a.to_string()),
            ip_mode: Some(IP_MODE.to_owned()),
            ..Default::default()
        })
        .collect();
    status.load_balancer =
        Some(LoadBalancerStatus { ingress: (!ingress.is_empty()).then_some(ingress) });
    let mut conditions = status.conditions.take().unwrap_or_default();
    let previous = conditions
        .iter()
        .position(|c| c.type_ == ALLOCATED_CONDITION)
        .map(|i| conditions.remove(i));
    if let Some(outcome) = &desired.condition {
        conditions.push(condition(
            ALLOCATED_CONDITION,
            status_word(outcome),
            outcome.reason.as_str(),
            &outcome.message,
            previous.as_ref(),
            generation,
            now,
        ));
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

/// A pool's status from its report (`previous` keeps the condition's transition time).
pub fn pool_status(
    report: &PoolReport,
    previous: Option<&IPPoolStatus>,
    now: &Time,
) -> IPPoolStatus {
    let before = previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == VALID_CONDITION));
    let (status, reason, message) = match &report.problem {
        None => ("True", "Valid", "every address parses and no other pool overlaps"),
        Some((reason, message)) => ("False", reason.as_str(), message.as_str()),
    };
    IPPoolStatus {
        used_ipv4: report.used_ipv4,
        available_ipv4: report.available_ipv4,
        used_ipv6: report.used_ipv6,
        available_ipv6: report.available_ipv6,
        conditions: vec![condition(VALID_CONDITION, status, reason, message, before, None, now)],
    }
}

/// True when `status` already says what `report` says.
pub fn pool_matches(status: Option<&IPPoolStatus>, report: &PoolReport) -> bool {
    let Some(status) = status else { return false };
    let valid = status.conditions.iter().find(|c| c.type_ == VALID_CONDITION);
    let condition_matches = match (&report.problem, valid) {
        (None, Some(c)) => c.status == "True",
        (Some((reason, message)), Some(c)) => {
            c.status == "False" && c.reason == *reason && c.message == *message
        }
        (_, None) => false,
    };
    (status.used_ipv4, status.available_ipv4, status.used_ipv6, status.available_ipv6)
        == (report.used_ipv4, report.available_ipv4, report.used_ipv6, report.available_ipv6)
        && condition_matches
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    previous: Option<&Condition>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let since = previous
        .filter(|p| p.status == status)
        .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocator::Reason;
    use switchyard_model::ObjectKey;

    fn now(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    #[test]
    fn writes_ingress_and_condition_and_keeps_other_conditions() {
        let mut service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 3},
            "status": {"conditions": [{"type": "other", "status": "True", "reason": "R", "message": "m",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let desired = ServiceStatus {
            service: ObjectKey::new("default", "web"),
            addresses: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            condition: Some(Outcome {
                allocated: true,
                reason: Reason::Allocated,
                message: "allocated".to_owned(),
            }),
        };
        assert!(!service_matches(&service, &desired));
        apply_service_status(&mut service, &desired, &now("2026-01-02T00:00:00Z"));
        assert!(service_matches(&service, &desired));
        let value = serde_json::to_value(&service.status).unwrap();
        assert_eq!(
            value["loadBalancer"]["ingress"][1],
            serde_json::json!({"ip": "2001:db8::1", "ipMode": "VIP"})
        );
        assert_eq!(value["conditions"][0]["type"], "other");
        assert_eq!(value["conditions"][1]["observedGeneration"], 3);

        // Same status later: the transition time stays. Released: ingress and condition go.
        apply_service_status(&mut service, &desired, &now("2026-01-03T00:00:00Z"));
        let value = serde_json::to_value(&service.status).unwrap();
        assert_eq!(value["conditions"][1]["lastTransitionTime"], "2026-01-02T00:00:00Z");
        let released = ServiceStatus { addresses: Vec::new(), condition: None, ..desired };
        apply_service_status(&mut service, &released, &now("2026-01-03T00:00:00Z"));
        assert!(service_matches(&service, &released));
        let value = serde_json::to_value(&service.status).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"loadBalancer": {}, "conditions": [
            {"type": "other", "status": "True", "reason": "R", "message": "m",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        );
    }
}
