//! A directory of manifests as the model sees it: the objects that currently apply, the problems,
//! and the [`Change`]s between one reading and the next.
//!
//! The applied set is a function of the directory's content plus one piece of memory: the objects
//! applied before. That memory is what lets a broken new version of an object keep the last good
//! one, instead of deleting the object (and its traffic) because of a typo.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use switchyard_model::{Change, ClusterState};

use super::error::{Identity, IgnoredDocument, Location, ManifestError, ManifestWarning};
use super::object::{Object, ObjectId, delete_change};
use super::parse::{Document, Format, Outcome, parse_file};

/// An object that currently applies, and the document it comes from.
#[derive(Debug, Clone)]
pub struct Applied {
    pub location: Location,
    pub object: Object,
}

/// What is known about one file from its last reading.
#[derive(Debug)]
struct FileEntry {
    fingerprint: Fingerprint,
    contents: Result<Vec<Document>, ManifestError>,
}

/// Enough metadata to notice that a file changed without reading it. Includes the inode, so an
/// atomic replace (editors, ConfigMap volume symlink swaps) is noticed even with equal size and
/// modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
    changed: (i64, i64),
}

impl Fingerprint {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            device: metadata.dev(),
            inode: metadata.ino(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The manifests under one directory (or one file), read and merged.
#[derive(Debug)]
pub struct ManifestDirectory {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileEntry>,
    applied: BTreeMap<ObjectId, Applied>,
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestWarning>,
    ignored: Vec<IgnoredDocument>,
}

impl ManifestDirectory {
    /// Reads every `*.yaml`, `*.yml` and `*.json` under `root` (recursively; hidden files and
    /// directories are skipped). `root` may also be a single file. Problems are collected in
    /// [`errors`](Self::errors), never returned: the valid objects always apply.
    pub fn load(root: impl Into<PathBuf>) -> Self {
        let mut directory = Self {
            root: root.into(),
            files: BTreeMap::new(),
            applied: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            ignored: Vec::new(),
        };
        directory.rescan(&BTreeSet::new());
        directory
    }

    /// Looks at the directory again, re-reads the files that changed (by metadata, or because
    /// they are in `touched`), and returns the changes to the applied objects.
    pub fn rescan(&mut self, touched: &BTreeSet<PathBuf>) -> Vec<Change> {
        let mut listing_errors = Vec::new();
        let listed = list_manifest_files(&self.root, &mut listing_errors);

        self.files.retain(|path, _| listed.contains_key(path));
        for (path, (format, fingerprint)) in listed {
            let unchanged = self
                .files
                .get(&path)
                .is_some_and(|entry| entry.fingerprint == fingerprint && !touched.contains(&path));
            if !unchanged {
                let contents = read_file(&path, format)
                    .map_err(|reason| ManifestError::Unreadable { file: path.clone(), reason });
                self.files.insert(path, FileEntry { fingerprint, contents });
            }
        }

        let Merged { applied, errors: mut merge_errors, warnings, ignored } = self.merge();
        listing_errors.append(&mut merge_errors);
        let changes = diff(&self.applied, &applied);
        self.applied = applied;
        self.errors = listing_errors;
        self.warnings = warnings;
        self.ignored = ignored;
        changes
    }

    /// Combines the files in path order. The first definition of an object wins; broken
    /// documents keep what applied before.
    fn merge(&self) -> Merged {
        let mut applied: BTreeMap<ObjectId, Applied> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut ignored = Vec::new();
        for (path, entry) in &self.files {
            let documents = match &entry.contents {
                Ok(documents) => documents,
                Err(error) => {
                    errors.push(error.clone());
                    self.keep_previous_from(path, &mut applied);
                    continue;
                }
            };
            let mut unidentified_broken = false;
            for document in documents {
                match &document.outcome {
                    Outcome::Object(id, object, unknown_fields) => match applied.get(id) {
                        Some(first) => errors.push(ManifestError::Duplicate {
                            kind: id.0,
                            key: id.1.clone(),
                            first: first.location.clone(),
                            second: document.location.clone(),
                        }),
                        None => {
                            for (field, line) in unknown_fields {
                                warnings.push(ManifestWarning::UnknownField {
                                    location: Location { line: *line, ..document.location.clone() },
                                    object: identity_of(id),
                                    field: field.clone(),
                                });
                            }
                            let entry = Applied {
                                location: document.location.clone(),
                                object: object.clone(),
                            };
                            applied.insert(id.clone(), entry);
                        }
                    },
                    Outcome::Ignored(identity) => ignored.push(IgnoredDocument {
                        location: document.location.clone(),
                        object: identity.clone(),
                    }),
                    Outcome::Broken { id, error } => {
                        errors.push(error.clone());
                        match id {
                            Some(id) => {
                                if let Some(previous) = self.applied.get(id) {
                                    applied.entry(id.clone()).or_insert_with(|| Applied {
                                        location: document.location.clone(),
                                        object: previous.object.clone(),
                                    });
                                }
                            }
                            None => unidentified_broken = true,
                        }
                    }
                }
            }
            if unidentified_broken {
                // A document we cannot identify may be any object this file defined: keep them
                // all until the file reads cleanly again.
                self.keep_previous_from(path, &mut applied);
            }
        }
        Merged { applied, errors, warnings, ignored }
    }

    fn keep_previous_from(&self, path: &Path, applied: &mut BTreeMap<ObjectId, Applied>) {
        for (id, previous) in &self.applied {
            if previous.location.file == path {
                applied.entry(id.clone()).or_insert_with(|| previous.clone());
            }
        }
    }

    /// The directory this source reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every object that currently applies, by kind and namespace/name.
    pub fn applied(&self) -> &BTreeMap<ObjectId, Applied> {
        &self.applied
    }

    /// Where an applied object is defined; used to point semantic errors at a file.
    pub fn location_of(&self, id: &ObjectId) -> Option<&Location> {
        self.applied.get(id).map(|applied| &applied.location)
    }

    /// Problems from the last reading, in path order.
    pub fn errors(&self) -> &[ManifestError] {
        &self.errors
    }

    /// Suspicious but applied content (unknown fields), in path order.
    pub fn warnings(&self) -> &[ManifestWarning] {
        &self.warnings
    }

    /// Documents of kinds Switchyard does not read.
    pub fn ignored(&self) -> &[IgnoredDocument] {
        &self.ignored
    }

    /// Number of manifest files found.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The applied objects as the model's input.
    pub fn state(&self) -> ClusterState {
        let mut state = ClusterState::default();
        for change in self.changes_from_empty() {
            state.apply(change);
        }
        state
    }

    /// Every applied object as a change from an empty state: the first thing a watcher emits.
    pub fn changes_from_empty(&self) -> Vec<Change> {
        self.applied
            .iter()
            .map(|((_, key), applied)| applied.object.to_change(key.clone()))
            .collect()
    }
}

/// The result of combining every file.
struct Merged {
    applied: BTreeMap<ObjectId, Applied>,
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestWarning>,
    ignored: Vec<IgnoredDocument>,
}

/// How an applied object is named in messages.
fn identity_of((kind, key): &ObjectId) -> Identity {
    Identity {
        api_version: None,
        kind: Some(kind.to_string()),
        namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
        name: Some(key.name.clone()),
    }
}

/// Changes that turn `old` into `new`: removals, additions and modifications, in key order.
fn diff(old: &BTreeMap<ObjectId, Applied>, new: &BTreeMap<ObjectId, Applied>) -> Vec<Change> {
    let mut changes = Vec::new();
    for ((kind, key), _) in old.iter().filter(|(id, _)| !new.contains_key(*id)) {
        changes.push(delete_change(*kind, key.clone()));
    }
    for (id, applied) in new {
        let unchanged =
            old.get(id).is_some_and(|previous| previous.object.same_as(&applied.object));
        if !unchanged {
            changes.push(applied.object.to_change(id.1.clone()));
        }
    }
    changes
}

/// Reads and parses one file; the error is the reason the file could not be read at all.
fn read_file(path: &Path, format: Format) -> Result<Vec<Document>, String> {
    let bytes = fs::read(path).map_err(|err| err.to_string())?;
    let text = String::from_utf8(bytes).map_err(|err| format!("not UTF-8: {err}"))?;
    Ok(parse_file(path, format, &text))
}

/// Every manifest file under `root`, sorted by path, with its format and fingerprint.
fn list_manifest_files(
    root: &Path,
    errors: &mut Vec<ManifestError>,
) -> BTreeMap<PathBuf, (Format, Fingerprint)> {
    let mut files = BTreeMap::new();
    match fs::metadata(root) {
        Ok(metadata) if metadata.is_file() => match Format::of(root) {
            Some(format) => {
                files.insert(root.to_path_buf(), (format, Fingerprint::of(&metadata)));
            }
            None => errors.push(ManifestError::Unreadable {
                file: root.to_path_buf(),
                reason: "not a manifest file (expected .yaml, .yml or .json)".to_owned(),
            }),
        },
        Ok(_) => {
            let mut visited = HashSet::new();
            walk(root, &mut visited, &mut files, errors);
        }
        Err(err) => errors
            .push(ManifestError::Directory { dir: root.to_path_buf(), reason: err.to_string() }),
    }
    files
}

fn walk(
    dir: &Path,
    visited: &mut HashSet<(u64, u64)>,
    files: &mut BTreeMap<PathBuf, (Format, Fingerprint)>,
    errors: &mut Vec<ManifestError>,
) {
    let directory_error = |err: std::io::Error| ManifestError::Directory {
        dir: dir.to_path_buf(),
        reason: err.to_string(),
    };
    // Symlinked directories are followed, but each directory is read once (no loops).
    match fs::metadata(dir) {
        Ok(metadata) if !visited.insert((metadata.dev(), metadata.ino())) => return,
        Ok(_) => {}
        Err(err) => return errors.push(directory_error(err)),
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return errors.push(directory_error(err)),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                // Hidden entries are editor swap files, VCS data, or the `..data` indirection
                // of ConfigMap volumes (whose files also appear under their plain names).
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    paths.push(entry.path());
                }
            }
            Err(err) => errors.push(directory_error(err)),
        }
    }
    paths.sort();
    for path in paths {
        let Ok(metadata) = fs::metadata(&path) else {
            // A dangling symlink or a file that vanished while listing: nothing to read.
            continue;
        };
        if metadata.is_dir() {
            walk(&path, visited, files, errors);
        } else if let Some(format) = Format::of(&path) {
            files.insert(path, (format, Fingerprint::of(&metadata)));
        }
    }
}
