//! Semantic problems of the objects the agent reads — the checks of `switchyard validate`, run on
//! what the source hands over — logged once per object version.
//!
//! The model is lenient and silently leaves out what it cannot use (a cluster IP that does not
//! parse, a NodePort taken by another Service); without these warnings an operator would only
//! notice the missing frontend. Both sources (manifests and the API server) go through here.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_model::validate::{ValidationOptions, validate};
use switchyard_model::{Change, ClusterState, NodeModel, ObjectKey, ObjectKind, Refusal};
use tracing::{info, warn};

/// One object, as findings name it.
type Object = (ObjectKind, ObjectKey);

/// The objects seen so far and the problems already logged for each.
#[derive(Debug)]
pub(crate) struct Findings {
    state: ClusterState,
    options: ValidationOptions,
    /// Problems logged for the current version of each object (`field: reason`). An object's
    /// entry is dropped when a new version arrives, so its problems are logged again.
    logged: BTreeMap<Object, BTreeSet<String>>,
    /// Whether objects changed since the last [`Findings::report`].
    changed: bool,
}

impl Findings {
    pub(crate) fn new(options: ValidationOptions) -> Self {
        Self { state: ClusterState::default(), options, logged: BTreeMap::new(), changed: false }
    }

    /// Takes in an update's changes (before they go to the model, which consumes them).
    pub(crate) fn record(&mut self, changes: &[Change]) {
        for change in changes {
            self.logged.remove(&(change.kind(), change.key().clone()));
            self.state.apply(change.clone());
            self.changed = true;
        }
    }

    /// Validates everything seen (cross-object rules such as NodePort clashes need it all) and
    /// logs each problem not yet logged for its object's version. Called after the maps are
    /// programmed, so validation never delays programming.
    pub(crate) fn report(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        let mut now: BTreeMap<Object, BTreeSet<String>> = BTreeMap::new();
        for finding in validate(&self.state, &self.options) {
            let object = (finding.kind, finding.object.clone());
            let text = format!("{}: {}", finding.field, finding.problem);
            let known = self.logged.get(&object).is_some_and(|logged| logged.contains(&text));
            if !known && !now.get(&object).is_some_and(|seen| seen.contains(&text)) {
                warn!(
                    kind = %finding.kind,
                    object = %finding.object,
                    field = %finding.field,
                    reason = %finding.problem,
                    severity = %finding.severity,
                    "{finding}; what cannot be used is left out"
                );
            }
            now.entry(object).or_default().insert(text);
        }
        for (object, problems) in &self.logged {
            if !now.contains_key(object) && !problems.is_empty() {
                info!(kind = %object.0, object = %object.1, "object problems resolved");
            }
        }
        self.logged = now;
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
    use switchyard_k8s::manifest::ManifestDirectory;

    use super::*;

    /// The Service of testdata/broken/addresses.yaml, whose cluster IP does not parse.
    fn broken_service() -> Change {
        let state =
            ManifestDirectory::load(std::path::Path::new("../../testdata/broken/addresses.yaml"))
                .state();
        let (key, service) = state.services.into_iter().next().expect("a Service");
        Change::Service(key, Some(Box::new(service)))
    }

    fn logged(findings: &Findings) -> Vec<String> {
        findings.logged.values().flatten().cloned().collect()
    }

    #[test]
    fn problems_are_kept_per_object_version_and_forgotten_with_the_object() {
        let mut findings = Findings::new(ValidationOptions::default());
        findings.record(&[broken_service()]);
        findings.report();
        let problems = logged(&findings);
        assert!(problems.iter().any(|p| p.contains("10.96.100.300")), "{problems:?}");
        // A new version of the object forgets what was logged for the old one.
        findings.record(&[broken_service()]);
        assert!(logged(&findings).is_empty());
        findings.report();
        assert_eq!(logged(&findings), problems);
        let Change::Service(key, _) = broken_service() else { unreachable!() };
        findings.record(&[Change::Service(key, None)]);
        findings.report();
        assert!(logged(&findings).is_empty());
    }
}
