//! Turning the text of one manifest file into documents: objects, ignored kinds, or errors.
//!
//! YAML files are split on `---` separator lines *before* parsing (as kubectl does), so a syntax
//! error in one document does not take the other documents of the file down with it.

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_model::crd::{API_VERSION, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use switchyard_model::{ObjectKey, ObjectKind};

use switchyard_model::validate::ValidationOptions;

use super::error::{Identity, Location, ManifestError};
use super::limits::check_yaml_document;
use super::locate::locate_in_text;
use super::object::{Object, ObjectId, StoredObject};
use super::semantic::refused;

/// Namespace used when a namespaced object does not name one, as `kubectl apply` does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One document (or one item of a `kind: List` document) of a file.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub(crate) location: Location,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An object the model reads, and the fields it has that its kind does not (typos such as
    /// `nodeport`, which Kubernetes would reject and Switchyard would silently ignore), each with
    /// its line.
    Object(ObjectId, StoredObject, Vec<(String, usize)>),
    /// A well-formed object of a kind Switchyard does not read.
    Ignored(Identity),
    /// A broken document. `id` is set when kind and name could be read, so the last good version
    /// of that object can be kept. At least one error; several when the object parsed but the
    /// API server would refuse more than one of its fields.
    Broken { id: Option<ObjectId>, errors: Vec<ManifestError> },
}

/// Which parser a file needs, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

impl Format {
    /// `None` for files that are not manifests.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Parses the text of one file. Never fails as a whole: each problem is a document outcome.
/// `options` are those of the semantic checks an object must pass to apply.
pub(crate) fn parse_file(
    path: &Path,
    format: Format,
    text: &str,
    options: &ValidationOptions,
) -> Vec<Document> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = Vec::new();
    let file: Arc<Path> = path.into();
    match format {
        Format::Yaml => {
            for (number, chunk) in split_yaml(text).into_iter().enumerate() {
                let location = Location {
                    file: Arc::clone(&file),
                    document: number + 1,
                    line: chunk.first_content_line,
                    item: None,
                };
                if let Err(reason) = check_yaml_document(chunk.text) {
                    documents.push(syntax_error(location, reason));
                    continue;
                }
                match serde_norway::from_str::<Value>(chunk.text) {
                    Ok(value) => {
                        let source = Source {
                            text: Some(chunk.text),
                            first_line: chunk.start_line,
                            options,
                        };
                        interpret(value, location, source, &mut documents);
                    }
                    Err(err) => {
                        let reason = format!(
                            "YAML syntax error: {}",
                            shift_line_numbers(&err.to_string(), chunk.start_line - 1)
                        );
                        documents.push(syntax_error(location, reason));
                    }
                }
            }
        }
        Format::Json => {
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            let mut number = 0;
            loop {
                let offset = stream.byte_offset();
                let line = line_of_offset(text, offset + leading_whitespace(&text[offset..]));
                let Some(next) = stream.next() else { break };
                number += 1;
                let location =
                    Location { file: Arc::clone(&file), document: number, line, item: None };
                match next {
                    Ok(value) => {
                        let source = Source { text: None, first_line: line, options };
                        interpret(value, location, source, &mut documents);
                    }
                    Err(err) => {
                        documents.push(syntax_error(location, format!("JSON syntax error: {err}")));
                        // The stream cannot resynchronise after a syntax error.
                        break;
                    }
                }
            }
        }
    }
    documents
}

fn syntax_error(location: Location, reason: String) -> Document {
    Document {
        location: location.clone(),
        outcome: Outcome::Broken {
            id: None,
            errors: vec![ManifestError::Syntax { location, reason }],
        },
    }
}

/// One `---`-separated YAML document with content.
#[derive(Debug)]
struct Chunk<'a> {
    text: &'a str,
    /// 1-based line of the chunk's first line (just after the separator).
    start_line: usize,
    /// 1-based line of the first line that is not blank or a comment.
    first_content_line: usize,
}

/// Splits YAML text on separator lines: `---` followed by nothing but blanks or a comment.
/// Documents holding only blanks and comments are dropped.
fn split_yaml(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut first_content_line = None;
    let mut byte = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_number = index + 1;
        if is_separator(line) {
            if let Some(first) = first_content_line.take() {
                chunks.push(Chunk {
                    text: &text[start_byte..byte],
                    start_line,
                    first_content_line: first,
                });
            }
            start_byte = byte + line.len();
            start_line = line_number + 1;
        } else if first_content_line.is_none() && has_content(line) {
            first_content_line = Some(line_number);
        }
        byte += line.len();
    }
    if let Some(first) = first_content_line {
        chunks.push(Chunk { text: &text[start_byte..], start_line, first_content_line: first });
    }
    chunks
}

pub(crate) fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim();
        rest.is_empty() || rest.starts_with('#')
    })
}

fn has_content(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#') && line != "..."
}

/// The YAML parser counts lines from the start of the chunk; the operator needs file lines.
fn shift_line_numbers(message: &str, offset: usize) -> String {
    if offset == 0 {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(position) = rest.find("line ") {
        let (before, after) = rest.split_at(position + "line ".len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(line) => out.push_str(&(line + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn string_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut value = value;
    for key in path {
        value = value.get(key)?;
    }
    value.as_str()
}

fn identity_of(value: &Value) -> Identity {
    Identity {
        api_version: string_at(value, &["apiVersion"]).map(str::to_owned),
        kind: string_at(value, &["kind"]).map(str::to_owned),
        namespace: string_at(value, &["metadata", "namespace"]).map(str::to_owned),
        name: string_at(value, &["metadata", "name"]).map(str::to_owned),
    }
}

/// The apiVersion Switchyard reads for each kind it knows.
fn supported_kind(kind: &str) -> Option<(ObjectKind, &'static str)> {
    match kind {
        "Service" => Some((ObjectKind::Service, "v1")),
        "EndpointSlice" => Some((ObjectKind::EndpointSlice, "discovery.k8s.io/v1")),
        "Node" => Some((ObjectKind::Node, "v1")),
        "IPPool" => Some((ObjectKind::IPPool, API_VERSION)),
        "BGPPeer" => Some((ObjectKind::BGPPeer, API_VERSION)),
        "BGPAdvertisement" => Some((ObjectKind::BGPAdvertisement, API_VERSION)),
        "L2Advertisement" => Some((ObjectKind::L2Advertisement, API_VERSION)),
        "Namespace" => Some((ObjectKind::Namespace, "v1")),
        "Secret" => Some((ObjectKind::Secret, "v1")),
        _ => None,
    }
}

/// The text a document was parsed from, to point errors at the line of a field.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    /// Block-style YAML text of the document; `None` for JSON.
    text: Option<&'a str>,
    /// 1-based file line of the text's first line.
    first_line: usize,
    /// What an object must pass to apply.
    options: &'a ValidationOptions,
}

impl Source<'_> {
    /// 1-based line of `field`, or `fallback` when it cannot be found.
    fn line_of(&self, field: &str, fallback: usize) -> usize {
        self.text
            .and_then(|text| locate_in_text(text, field))
            .map_or(fallback, |offset| self.first_line + offset)
    }
}

/// Turns one parsed document into outcomes (several for a `kind: List`).
fn interpret(value: Value, location: Location, source: Source<'_>, out: &mut Vec<Document>) {
    if value.is_null() {
        return;
    }
    let identity = identity_of(&value);
    let invalid =
        |location: Location, identity: Identity, id: Option<ObjectId>, reason: String| Document {
            location: location.clone(),
            outcome: Outcome::Broken {
                id,
                errors: vec![ManifestError::Invalid { location, object: identity, reason }],
            },
        };
    if !value.is_object() {
        let found = match value {
            Value::Array(_) => "a list",
            Value::String(_) => "a string",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Null | Value::Object(_) => "something else",
        };
        let reason = format!(
            "expected a Kubernetes object (a mapping with apiVersion and kind), found {found}"
        );
        out.push(invalid(location, identity, None, reason));
        return;
    }
    let Some(kind) = identity.kind.clone() else {
        out.push(invalid(location, identity, None, "missing kind".to_owned()));
        return;
    };
    let Some(api_version) = identity.api_version.clone() else {
        out.push(invalid(location, identity, None, "missing apiVersion".to_owned()));
        return;
    };

    if kind == "List" || (kind.ends_with("List") && value.get("items").is_some()) {
        if location.item.is_some() {
            out.push(invalid(
                location,
                identity,
                None,
                "a List inside a List is not supported".to_owned(),
            ));
            return;
        }
        let Some(Value::Array(items)) = value.get("items") else {
            out.push(invalid(location, identity, None, "a List needs an items array".to_owned()));
            return;
        };
        for (index, item) in items.iter().enumerate() {
            let item_location = Location { item: Some(index), ..location.clone() };
            // Field lines inside list items are not located (paths are relative to the item).
            let source = Source { text: None, ..source };
            interpret(item.clone(), item_location, source, out);
        }
        return;
    }

    let Some((object_kind, expected_version)) = supported_kind(&kind) else {
        out.push(Document { location, outcome: Outcome::Ignored(identity) });
        return;
    };

    let namespace = if object_kind.is_cluster_scoped() {
        String::new()
    } else {
        identity
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
    };
    let name = identity.name.clone().filter(|name| !name.is_empty());
    let id = name.clone().map(|name| (object_kind, ObjectKey::new(namespace.clone(), name)));
    // Name broken objects with the namespace they would get, so errors match other messages.
    let named = Identity {
        namespace: (!namespace.is_empty()).then(|| namespace.clone()),
        ..identity.clone()
    };

    if api_version != expected_version {
        let reason = format!(
            "apiVersion {api_version} is not supported for {kind}; Switchyard reads {expected_version}"
        );
        out.push(invalid(location, named, id, reason));
        return;
    }
    let Some(id) = id else {
        let reason = if string_at(&value, &["metadata", "generateName"]).is_some() {
            "metadata.name is required (generateName only works through the API server)"
        } else {
            "metadata.name is required"
        };
        out.push(invalid(location, named, None, reason.to_owned()));
        return;
    };

    let mut unknown_fields = Vec::new();
    let unknown = &mut unknown_fields;
    let parsed = match object_kind {
        ObjectKind::Service => deserialize::<Service>(value, unknown).map(|mut o| {
            o.metadata.namespace = Some(namespace);
            Object::Service(Arc::new(o))
        }),
        ObjectKind::EndpointSlice => deserialize::<EndpointSlice>(value, unknown).map(|mut o| {
            o.metadata.namespace = Some(namespace);
            Object::EndpointSlice(Arc::new(o))
        }),
        ObjectKind::Node => deserialize::<Node>(value, unknown).map(|mut o| {
            o.metadata.namespace = None;
            Object::Node(Arc::new(o))
        }),
        ObjectKind::IPPool => deserialize::<IPPool>(value, unknown).map(|mut o| {
            o.metadata.namespace = None;
            Object::IPPool(Arc::new(o))
        }),
        ObjectKind::BGPPeer => deserialize::<BGPPeer>(value, unknown).map(|mut o| {
            o.metadata.namespace = None;
            Object::BGPPeer(Arc::new(o))
        }),
        ObjectKind::BGPAdvertisement => {
            deserialize::<BGPAdvertisement>(value, unknown).map(|mut o| {
                o.metadata.namespace = None;
                Object::BGPAdvertisement(Arc::new(o))
            })
        }
        ObjectKind::L2Advertisement => {
            deserialize::<L2Advertisement>(value, unknown).map(|mut o| {
                o.metadata.namespace = None;
                Object::L2Advertisement(Arc::new(o))
            })
        }
        ObjectKind::Namespace => deserialize::<Namespace>(value, unknown).map(|mut o| {
            o.metadata.namespace = None;
            Object::Namespace(Arc::new(o))
        }),
        ObjectKind::Secret => deserialize::<Secret>(value, unknown).map(|mut o| {
            o.metadata.namespace = Some(namespace);
            Object::Secret(Arc::new(o))
        }),
    };
    match parsed {
        Ok(object) => {
            // What the API server would refuse does not apply: the last good version stays.
            let refusals = refused(&id, &object, source.options);
            if !refusals.is_empty() {
                let mut errors: Vec<ManifestError> = refusals
                    .into_iter()
                    .map(|finding| ManifestError::Refused {
                        location: Location {
                            line: source.line_of(&finding.field, location.line),
                            ..location.clone()
                        },
                        object: named.clone(),
                        field: finding.field,
                        reason: finding.problem.to_string(),
                    })
                    .collect();
                // In the order of the file, as a compiler prints.
                errors.sort_by_key(|error| match error {
                    ManifestError::Refused { location, .. } => location.line,
                    _ => 0,
                });
                out.push(Document { location, outcome: Outcome::Broken { id: Some(id), errors } });
                return;
            }
            let stored = match StoredObject::store(&object) {
                Ok(stored) => stored,
                Err(err) => {
                    let error = ManifestError::Invalid {
                        location: location.clone(),
                        object: named,
                        reason: format!("cannot be kept: {err}"),
                    };
                    let errors = vec![error];
                    out.push(Document {
                        location,
                        outcome: Outcome::Broken { id: Some(id), errors },
                    });
                    return;
                }
            };
            let unknown_fields = unknown_fields
                .into_iter()
                .map(|field| {
                    let line = source.line_of(&field, location.line);
                    (field, line)
                })
                .collect();
            out.push(Document { location, outcome: Outcome::Object(id, stored, unknown_fields) })
        }
        Err((field, reason)) => {
            let line = field.map_or(location.line, |field| source.line_of(&field, location.line));
            let error = ManifestError::Invalid {
                location: Location { line, ..location.clone() },
                object: named,
                reason,
            };
            let errors = vec![error];
            out.push(Document { location, outcome: Outcome::Broken { id: Some(id), errors } });
        }
    }
}

/// Deserialises with the path of the offending field in the error (`spec.ports[0].port: …`),
/// collecting the paths of fields the type does not know into `unknown`.
/// The error is the path of the offending field (when inside the object) and the message.
fn deserialize<T: DeserializeOwned>(
    value: Value,
    unknown: &mut Vec<String>,
) -> Result<T, (Option<String>, String)> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
    let result = serde_ignored::deserialize(tracked, |path| {
        let field = field_path(&path);
        // kube's CustomResource types take apiVersion and kind without keeping them; both were
        // checked before the object was deserialised.
        if field != "apiVersion" && field != "kind" {
            unknown.push(field);
        }
    });
    result.map_err(|err| {
        let path = track.path().to_string();
        if path == "." {
            (None, err.to_string())
        } else {
            (Some(path.clone()), format!("{path}: {err}"))
        }
    })
}

/// `spec.ports[0].nodeport`, the way kubectl names fields.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_yaml(text: &str) -> Vec<Document> {
        parse_file(Path::new("f.yaml"), Format::Yaml, text, &ValidationOptions::default())
    }

    fn error_text(doc: &Document) -> String {
        match &doc.outcome {
            Outcome::Broken { errors, .. } => {
                errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
            }
            other => panic!("expected a broken document, got {other:?}"),
        }
    }

    const SERVICE: &str =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n";

    #[test]
    fn deep_flow_nesting_is_refused_with_a_clear_error_and_other_documents_still_apply() {
        // 400 kB of `[` took the YAML parser over a minute.
        let text = format!("a: {}\n---\n{SERVICE}", "[".repeat(400_000));
        let docs = parse_yaml(&text);
        assert_eq!(docs.len(), 2);
        let error = error_text(&docs[0]);
        assert!(
            error.contains("flow nesting ([ and {) deeper than 64 levels at line 1"),
            "{error}"
        );
        assert!(matches!(docs[1].outcome, Outcome::Object(..)), "{:?}", docs[1].outcome);
    }

    #[test]
    fn splits_on_separator_lines_and_skips_empty_documents() {
        let text = format!(
            "# leading comment\n---\n{SERVICE}---\n\n--- # empty\n# only a comment\n---\n{}",
            SERVICE.replace("web", "api")
        );
        let docs = parse_yaml(&text);
        let names: Vec<_> = docs
            .iter()
            .map(|d| match &d.outcome {
                Outcome::Object((_, key), _, _) => {
                    (d.location.document, d.location.line, key.to_string())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            vec![(1, 3, "default/web".to_owned()), (2, 15, "default/api".to_owned())]
        );
    }

    #[test]
    fn separator_with_trailing_text_is_not_a_separator() {
        assert!(is_separator("---\n"));
        assert!(is_separator("---   # comment\n"));
        assert!(is_separator("---"));
        assert!(!is_separator("--- kind: Service\n"));
        assert!(!is_separator("----\n"));
    }

    #[test]
    fn syntax_error_in_one_document_leaves_the_others_readable() {
        let text = format!(
            "{SERVICE}---\nkind: Service\n  bad: [indent\n---\n{}",
            SERVICE.replace("web", "api")
        );
        let docs = parse_yaml(&text);
        assert_eq!(docs.len(), 3);
        assert!(matches!(docs[0].outcome, Outcome::Object(..)));
        let message = error_text(&docs[1]);
        assert!(message.starts_with("f.yaml:9 (document 2): YAML syntax error"), "{message}");
        // The line number inside the reason is a file line, not a line of the document.
        assert!(message.contains("line 10") || message.contains("line 9"), "{message}");
        assert!(matches!(docs[2].outcome, Outcome::Object(..)));
    }

    #[test]
    fn type_error_names_object_and_field_path() {
        let text = SERVICE.replace("port: 80", "port: eighty");
        let docs = parse_yaml(&text);
        let message = error_text(&docs[0]);
        assert!(
            message.starts_with("f.yaml:7 (document 1): Service default/web: spec.ports[0].port:"),
            "{message}"
        );
        match &docs[0].outcome {
            Outcome::Broken { id: Some((kind, key)), .. } => {
                assert_eq!(
                    (*kind, key.to_string()),
                    (ObjectKind::Service, "default/web".to_owned())
                );
            }
            other => panic!("broken object should keep its identity, got {other:?}"),
        }
    }

    #[test]
    fn documents_that_are_not_objects_are_reported() {
        let cases: &[(&str, &str)] = &[
            ("- a\n- b\n", "found a list"),
            ("apiVersion: v1\nmetadata:\n  name: x\n", "missing kind"),
            ("kind: Service\nmetadata:\n  name: x\n", "missing apiVersion"),
            ("apiVersion: v1\nkind: Service\nmetadata:\n  generateName: web-\n", "generateName"),
            ("apiVersion: v1\nkind: Service\nmetadata: {}\n", "metadata.name is required"),
            (
                "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: x\naddressType: IPv4\nendpoints: []\n",
                "apiVersion discovery.k8s.io/v1beta1 is not supported",
            ),
        ];
        for (text, expected) in cases {
            let docs = parse_yaml(text);
            assert_eq!(docs.len(), 1, "{text}");
            let message = error_text(&docs[0]);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn unknown_fields_are_collected_with_their_path() {
        let text = SERVICE.replace("  - port: 80\n", "  - port: 80\n    nodeport: 30080\n")
            + "  tpye: NodePort\n";
        let docs = parse_yaml(&text);
        match &docs[0].outcome {
            Outcome::Object(_, _, unknown) => {
                let expected =
                    [("spec.ports[0].nodeport".to_owned(), 8), ("spec.tpye".to_owned(), 9)];
                assert_eq!(unknown, &expected);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_kinds_are_ignored_not_errors() {
        let docs = parse_yaml("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n");
        assert!(
            matches!(&docs[0].outcome, Outcome::Ignored(identity) if identity.kind.as_deref() == Some("Deployment"))
        );
    }

    #[test]
    fn namespace_defaults_for_namespaced_kinds_and_is_cleared_for_nodes() {
        let docs = parse_yaml(&format!(
            "{SERVICE}---\napiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  namespace: stray\n"
        ));
        let typed = |outcome: &Outcome| match outcome {
            Outcome::Object(id, stored, _) => stored.object().map(|o| (id.clone(), o)).ok(),
            _ => None,
        };
        match (typed(&docs[0].outcome), typed(&docs[1].outcome)) {
            (
                Some(((_, service_key), Object::Service(service))),
                Some(((_, node_key), Object::Node(node))),
            ) => {
                assert_eq!(service_key, ObjectKey::new("default", "web"));
                assert_eq!(service.metadata.namespace.as_deref(), Some("default"));
                assert_eq!(node_key, ObjectKey::cluster("n1"));
                assert_eq!(node.metadata.namespace, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_file_with_a_list_yields_each_item() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"x"},"spec":{"ports":[{"port":80}]}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"b"},"spec":{"ports":[{"port":"http"}]}}
        ]}"#;
        let docs =
            parse_file(Path::new("f.json"), Format::Json, text, &ValidationOptions::default());
        assert_eq!(docs.len(), 2);
        assert!(
            matches!(&docs[0].outcome, Outcome::Object((_, key), _, _) if key == &ObjectKey::new("x", "a"))
        );
        let message = error_text(&docs[1]);
        assert!(
            message.starts_with(
                "f.json:1 (document 1, items[1]): Service default/b: spec.ports[0].port"
            ),
            "{message}"
        );
    }

    #[test]
    fn json_syntax_error_names_the_line() {
        let text = "\n\n{\"kind\": \"Service\",\n  oops}";
        let docs =
            parse_file(Path::new("f.json"), Format::Json, text, &ValidationOptions::default());
        let message = error_text(&docs[0]);
        assert!(message.starts_with("f.json:3 (document 1): JSON syntax error"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn shift_line_numbers_moves_every_line_reference() {
        assert_eq!(
            shift_line_numbers("bad at line 2 column 3, while parsing at line 1 column 1", 10),
            "bad at line 12 column 3, while parsing at line 11 column 1"
        );
    }
}
