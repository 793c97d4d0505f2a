//! Semantic problems of the objects the agent reads — the checks of `switchyard validate`, run on
//! what the source hands over — logged once per object version.
//!
//! The model is lenient and silently leaves out what it cannot use (a cluster IP that does not
//! parse, a NodePort taken by another Service); without these warnings an operator would only
//! notice the missing frontend. Both sources (manifests and the API server) go through here.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_model::validate::{IncrementalValidation, Object, ValidationOptions};
use switchyard_model::{Change, NodeModel, Refusal};
use tracing::{info, warn};

/// The objects seen so far and the problems already logged for each.
#[derive(Debug)]
pub(crate) struct Findings {
    /// Validation kept up to date per update: only what an update touched is validated again.
    validation: IncrementalValidation,
    /// Problems logged for each object (`field: reason`), kept across a new version so that
    /// the version that fixes them is seen to resolve them.
    logged: BTreeMap<Object, BTreeSet<String>>,
    /// Objects with a new version since the last report: their problems are logged again.
    renewed: BTreeSet<Object>,
    /// Objects validated again since the last report (the renewed ones and those reading them).
    dirty: BTreeSet<Object>,
}

impl Findings {
    pub(crate) fn new(options: ValidationOptions) -> Self {
        Self {
            validation: IncrementalValidation::new(options),
            logged: BTreeMap::new(),
            renewed: BTreeSet::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Takes in an update's changes (before they go to the model, which consumes them) and
    /// validates again the objects they touch, with those whose findings depend on them.
    pub(crate) fn record(&mut self, changes: &[Change]) {
        self.renewed.extend(changes.iter().map(|c| (c.kind(), c.key().clone())));
        self.dirty.extend(self.validation.update(changes));
    }

    /// Logs each problem not yet logged for its object's version, and each object whose
    /// problems are all gone, among the objects validated since the last report (the others
    /// kept their findings). Called after the maps are programmed, so validation never delays
    /// programming. Returns the objects whose problems were resolved.
    pub(crate) fn report(&mut self) -> Vec<Object> {
        let renewed = std::mem::take(&mut self.renewed);
        let mut resolved = Vec::new();
        for object in std::mem::take(&mut self.dirty) {
            let mut now = BTreeSet::new();
            let logged = self.logged.remove(&object).unwrap_or_default();
            for finding in self.validation.findings_of(&object) {
                let text = format!("{}: {}", finding.field, finding.problem);
                let known = !renewed.contains(&object) && logged.contains(&text);
                if !known && !now.contains(&text) {
                    warn!(
                        kind = %finding.kind,
                        object = %finding.object,
                        field = %finding.field,
                        reason = %finding.problem,
                        severity = %finding.severity,
                        "{finding}; what cannot be used is left out"
                    );
                }
                now.insert(text);
            }
            if now.is_empty() {
                if !logged.is_empty() {
                    info!(kind = %object.0, object = %object.1, "object problems resolved");
                    resolved.push(object);
                }
            } else {
                self.logged.insert(object, now);
            }
        }
        resolved
    }
}

/// Frontend addresses the model refuses to Services (CVE-2020-8554 and special addresses),
/// each logged once when it appears and once when it is resolved.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    logged: BTreeSet<Refusal>,
}

impl Refusals {
    /// Logs what changed since the last call; returns how many addresses are refused now.
    pub(crate) fn report(&mut self, model: &NodeModel) -> usize {
        let now: BTreeSet<Refusal> = model.refusals().into_iter().cloned().collect();
        for refusal in now.difference(&self.logged) {
            warn!(
                service = %refusal.service,
                kind = %refusal.kind,
                address = %refusal.ip,
                reason = %refusal.reason,
                "frontend refused: {refusal}"
            );
        }
        for refusal in self.logged.difference(&now) {
            info!(service = %refusal.service, address = %refusal.ip, "frontend no longer refused");
        }
        self.logged = now;
        self.logged.len()
    }
}

#[cfg(test)]
mod tests {
    use switchyard_model::ObjectKey;

    use super::*;

    /// A Service whose cluster IP does not parse (as in testdata/broken/addresses.yaml), or
    /// with a good one. Built directly: a manifest directory no longer applies the broken one.
    fn service(cluster_ip: &str) -> Change {
        let service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bad-addresses", "namespace": "broken"},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80}]},
        }))
        .expect("a Service");
        Change::Service(ObjectKey::new("broken", "bad-addresses"), Some(Box::new(service)))
    }

    fn broken_service() -> Change {
        service("10.96.100.300")
    }

    fn logged(findings: &Findings) -> Vec<String> {
        findings.logged.values().flatten().cloned().collect()
    }

    #[test]
    fn problems_are_kept_per_object_version_and_forgotten_with_the_object() {
        let mut findings = Findings::new(ValidationOptions::default());
        findings.record(&[broken_service()]);
        assert!(findings.report().is_empty());
        let problems = logged(&findings);
        assert!(problems.iter().any(|p| p.contains("10.96.100.300")), "{problems:?}");
        // A new version with the same problems: logged again, nothing resolved.
        findings.record(&[broken_service()]);
        assert!(findings.renewed.contains(&object()));
        assert!(findings.report().is_empty());
        assert!(findings.renewed.is_empty());
        assert_eq!(logged(&findings), problems);
        let Change::Service(key, _) = broken_service() else { unreachable!() };
        findings.record(&[Change::Service(key, None)]);
        assert_eq!(findings.report(), vec![object()]);
        assert!(logged(&findings).is_empty());
    }

    fn object() -> Object {
        let Change::Service(key, _) = broken_service() else { unreachable!() };
        (switchyard_model::ObjectKind::Service, key)
    }

    /// Issue 21: the version that fixes an object's problems resolves them (the problems were
    /// dropped when the new version arrived, so "object problems resolved" was never logged).
    #[test]
    fn a_fixed_version_resolves_the_problems_of_the_broken_one() {
        let mut findings = Findings::new(ValidationOptions::default());
        // A slice, so that the fixed Service has no problem at all (not even "no endpoints").
        let slice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bad-addresses-1", "namespace": "broken",
                         "labels": {"kubernetes.io/service-name": "bad-addresses"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .expect("an EndpointSlice");
        let key = ObjectKey::new("broken", "bad-addresses-1");
        findings.record(&[Change::EndpointSlice(key, Some(Box::new(slice))), broken_service()]);
        assert!(findings.report().is_empty());
        assert!(!logged(&findings).is_empty());
        findings.record(&[service("10.96.100.30")]);
        let resolved = findings.report();
        let left = logged(&findings);
        assert_eq!(resolved, vec![object()], "still logged: {left:?}");
        assert!(left.is_empty(), "{left:?}");
    }
}
