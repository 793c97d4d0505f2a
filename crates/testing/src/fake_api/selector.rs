//! Label and field selectors as the fake API server applies them to LISTs and WATCHes.

use serde_json::Value;

use super::{name_of, namespace_of};

/// Label and field selectors, the subset kube-proxy-like clients use.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
}

impl Selector {
    /// Parses `labelSelector` and `fieldSelector` query values; the error is the API's message.
    pub fn parse(labels: &str, fields: &str) -> Result<Self, String> {
        let mut selector = Self::default();
        for term in labels.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.to_owned())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.to_owned(), v.to_owned())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.to_owned(), v.to_owned())
            } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(term.to_owned())
            } else {
                return Err(format!("unable to parse requirement: {term:?}"));
            };
            selector.labels.push(requirement);
        }
        for term in fields.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v) =
                term.split_once('=').ok_or_else(|| format!("invalid field selector {term:?}"))?;
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(format!("field label not supported: {k}"));
            }
            selector.fields.push((k.to_owned(), v.to_owned()));
        }
        Ok(selector)
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::Equals(k, v) => label(k) == Some(v),
            Requirement::NotEquals(k, v) => label(k) != Some(v),
        });
        let fields_ok = self.fields.iter().all(|(k, v)| match k.as_str() {
            "metadata.name" => name_of(object) == *v,
            _ => namespace_of(object) == *v,
        });
        labels_ok && fields_ok
    }
}
