//! What can be wrong with a manifest directory, and where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_model::{ObjectKey, ObjectKind};

/// Where a document sits: file, 1-based document number within the file, first line of the
/// document, and for `kind: List` documents the index of the item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Shared by every document and object of the file (issue 20: a copy of the path per
    /// object, twice, was 2.5 MB at 20,000 objects).
    pub file: Arc<Path>,
    /// 1-based, counted over every `---`-separated document of the file, empty ones included, so
    /// the number matches what an editor shows between separators.
    pub document: usize,
    /// 1-based line: of the offending field in errors and warnings when it could be found,
    /// otherwise (and for applied objects) the document's first line with content.
    pub line: usize,
    /// 0-based index into `items` of a `kind: List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (document {}", self.file.display(), self.line, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        f.write_str(")")
    }
}

/// What a document says it is, as far as it could be read. Used to name broken documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_deref().unwrap_or("object of unknown kind"))?;
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) if !ns.is_empty() => write!(f, " {ns}/{name}"),
            (_, Some(name)) => write!(f, " {name}"),
            (_, None) => f.write_str(" (no name)"),
        }
    }
}

/// A problem with the manifest directory. Each one names the file, the document and, when it
/// could be read, the object, so an operator can go straight to the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The directory (or a subdirectory) could not be listed.
    #[error("{dir}: cannot list directory: {reason}")]
    Directory { dir: PathBuf, reason: String },

    /// A file could not be read at all (permissions, not UTF-8, vanished mid-read).
    #[error("{file}: cannot read file: {reason}")]
    Unreadable { file: PathBuf, reason: String },

    /// A document is not valid YAML/JSON, so not even its kind and name are known.
    #[error("{location}: {reason}")]
    Syntax { location: Location, reason: String },

    /// A document of a kind Switchyard reads could not be turned into that object.
    #[error("{location}: {object}: {reason}")]
    Invalid { location: Location, object: Identity, reason: String },

    /// An object the API server would refuse (a field's value breaks a rule of its kind, such
    /// as a cluster IP `10.96.0.300`). It does not apply: the last good version stays.
    #[error("{location}: {object}: {field}: {reason}")]
    Refused { location: Location, object: Identity, field: String, reason: String },

    /// The same object is defined twice. The first definition (in path order) is used.
    #[error("{second}: {kind} {key} is already defined in {first}; that first definition is used")]
    Duplicate { kind: ObjectKind, key: ObjectKey, first: Location, second: Location },
}

impl ManifestError {
    /// The file the problem is in, when there is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Directory { .. } => None,
            Self::Unreadable { file, .. } => Some(file),
            Self::Syntax { location, .. }
            | Self::Invalid { location, .. }
            | Self::Refused { location, .. } => Some(&*location.file),
            Self::Duplicate { second, .. } => Some(&*second.file),
        }
    }
}

/// A well-formed document of a kind Switchyard does not read (a Deployment, a ConfigMap, …).
/// Not an error: manifest directories often hold whole applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredDocument {
    pub location: Location,
    pub object: Identity,
}

impl fmt::Display for IgnoredDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_version = self.object.api_version.as_deref().unwrap_or("?");
        write!(
            f,
            "{}: {} ({api_version}): not read by Switchyard, ignored",
            self.location, self.object
        )
    }
}

/// Something legal but suspicious in a document that was read. Not an error: the object applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestWarning {
    /// A field the object's kind does not have, most often a typo (`nodeport`, `targetport`).
    /// Kubernetes rejects it (kubectl's strict field validation); Switchyard ignores the field.
    #[error("{location}: {object}: unknown field {field:?} (ignored)")]
    UnknownField { location: Location, object: Identity, field: String },
}
