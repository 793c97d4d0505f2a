//! A directory of manifests as the model sees it: the objects that currently apply, the problems,
//! and the [`Change`]s between one reading and the next.
//!
//! The applied set is a function of the directory's content plus one piece of memory: the objects
//! applied before. That memory is what lets a broken new version of an object keep the last good
//! one, instead of deleting the object (and its traffic) because of a typo.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// What is known about one file from its last reading.
#[derive(Debug)]
struct FileEntry {
    fingerprint: Fingerprint,
    contents: Result<Vec<Document>, ManifestError>,
    /// Indices of the documents that name each object, in document order: re-merging one
    /// object looks only at its own documents.
    by_id: HashMap<ObjectId, Vec<usize>>,
    /// Unreadable, or a document that cannot be identified: the file keeps every object it
    /// defined before.
    keeps_all: bool,
    /// The objects this file is registered for in [`ManifestDirectory::claims`]: those its
    /// documents name plus, when it keeps all, those it defined before.
    claimed: Vec<ObjectId>,
}

impl FileEntry {
    fn new(fingerprint: Fingerprint, contents: Result<Vec<Document>, ManifestError>) -> Self {
        let mut by_id: HashMap<ObjectId, Vec<usize>> = HashMap::new();
        let mut keeps_all = contents.is_err();
        for (index, document) in contents.iter().flatten().enumerate() {
            match &document.outcome {
                Outcome::Object(id, ..) | Outcome::Broken { id: Some(id), .. } => {
                    by_id.entry(id.clone()).or_default().push(index);
                }
                Outcome::Broken { id: None, .. } => keeps_all = true,
                Outcome::Ignored(_) => {}
            }
        }
        Self { fingerprint, contents, by_id, keeps_all, claimed: Vec::new() }
    }

    fn documents(&self) -> &[Document] {
        self.contents.as_deref().unwrap_or_default()
    }
}

/// The manifests under one directory (or one file), read and merged.
///
/// Merging is per object: each object knows the files that may define it, so a changed file
/// costs a re-merge of its own objects only, not of the whole directory.
#[derive(Debug)]
pub struct ManifestDirectory {
    root: PathBuf,
    /// The root is a single file (events name its neighbours too).
    single_file: bool,
    files: BTreeMap<PathBuf, FileEntry>,
    /// Directories the last listing walked: a file event anywhere else needs a new listing.
    dirs: BTreeSet<PathBuf>,
    /// For each object, the files that may define it, in path order. A superset: the merge
    /// checks every candidate.
    claims: HashMap<ObjectId, BTreeSet<PathBuf>>,
    applied: BTreeMap<ObjectId, Applied>,
    listing_errors: Vec<ManifestError>,
    /// Errors and warnings of each file that has some, in document order.
    problems: BTreeMap<PathBuf, (Vec<ManifestError>, Vec<ManifestWarning>)>,
    ignored_by_file: BTreeMap<PathBuf, Vec<IgnoredDocument>>,
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestWarning>,
    ignored: Vec<IgnoredDocument>,
}

/// What an event path means for the files this source reads.
enum PathKind {
    /// A manifest file in a directory already listed: read (or forget) just this file.
    Manifest(Format),
    /// Not something that is read (editor temporaries, other extensions).
    Irrelevant,
    /// A directory, a symlink swap, a path outside the listing: list the directory again.
    NeedsListing,
}

impl ManifestDirectory {
    /// Reads every `*.yaml`, `*.yml` and `*.json` under `root` (recursively; hidden files and
    /// directories are skipped). `root` may also be a single file. Problems are collected in
    /// [`errors`](Self::errors), never returned: the valid objects always apply.
    pub fn load(root: impl Into<PathBuf>) -> Self {
        let mut directory = Self {
            root: root.into(),
            single_file: false,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            claims: HashMap::new(),
            applied: BTreeMap::new(),
            listing_errors: Vec::new(),
            problems: BTreeMap::new(),
            ignored_by_file: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            ignored: Vec::new(),
        };
        directory.rescan(&BTreeSet::new());
        directory
    }

    /// Lists the whole directory again, re-reads the files that changed (by metadata, or
    /// because they are in `touched`), and returns the changes to the applied objects. This is
    /// the path that cannot miss anything (after lost events, or a directory swapped in).
    pub fn rescan(&mut self, touched: &BTreeSet<PathBuf>) -> Vec<Change> {
        let listing = list_manifest_files(&self.root);
        let mut updates = Vec::new();
        for path in self.files.keys() {
            if !listing.files.contains_key(path) {
                updates.push((path.clone(), None));
            }
        }
        for (path, (format, fingerprint)) in listing.files {
            let unchanged = self
                .files
                .get(&path)
                .is_some_and(|entry| entry.fingerprint == fingerprint && !touched.contains(&path));
            if !unchanged {
                let entry = read_entry(&path, format, fingerprint);
                updates.push((path, Some(entry)));
            }
        }
        self.single_file = listing.single_file;
        self.dirs = listing.dirs;
        self.listing_errors = listing.errors;
        self.apply_file_updates(updates)
    }

    /// Re-reads only the files named in `touched` (paths from file events) and returns the
    /// changes. Falls back to [`rescan`](Self::rescan) when a path needs a listing: a
    /// directory, a new subdirectory, a symlink swapped (ConfigMap volumes), a path outside
    /// the root. Temporary files of atomic writes and other extensions are skipped.
    pub fn update_paths(&mut self, touched: &BTreeSet<PathBuf>) -> Vec<Change> {
        let mut files = Vec::new();
        for path in touched {
            match self.classify(path) {
                PathKind::Manifest(format) => files.push((path, format)),
                PathKind::Irrelevant => {}
                PathKind::NeedsListing => return self.rescan(touched),
            }
        }
        let updates = files
            .into_iter()
            .filter_map(|(path, format)| match fs::metadata(path) {
                Ok(metadata) if metadata.is_file() => {
                    Some((path.clone(), Some(read_entry(path, format, Fingerprint::of(&metadata)))))
                }
                // Gone (or a dangling symlink): whatever it defined goes.
                _ => self.files.contains_key(path).then(|| (path.clone(), None)),
            })
            .collect();
        self.apply_file_updates(updates)
    }

    fn classify(&self, path: &Path) -> PathKind {
        if self.single_file {
            // One stat; also covers the root being replaced by a directory.
            return if path == self.root { PathKind::NeedsListing } else { PathKind::Irrelevant };
        }
        let Ok(relative) = path.strip_prefix(&self.root) else { return PathKind::NeedsListing };
        let (Some(name), Some(parent)) = (relative.file_name(), path.parent()) else {
            return PathKind::NeedsListing;
        };
        let hidden = |name: &std::ffi::OsStr| name.to_string_lossy().starts_with('.');
        if relative.parent().is_some_and(|p| p.iter().any(hidden)) {
            // Inside a hidden directory: never read itself, but a visible symlink may point
            // into it.
            return PathKind::NeedsListing;
        }
        let metadata = fs::symlink_metadata(path);
        if hidden(name) {
            // Temporaries of atomic writes are skipped; a hidden directory or symlink (the
            // `..data` swap of a ConfigMap volume) changes what visible symlinks point at.
            return match metadata {
                Ok(m) if m.is_dir() || m.file_type().is_symlink() => PathKind::NeedsListing,
                _ => PathKind::Irrelevant,
            };
        }
        let is_dir = fs::metadata(path).is_ok_and(|m| m.is_dir());
        let known_dir = self.dirs.contains(path) || self.has_files_under(path);
        match Format::of(path) {
            _ if is_dir || known_dir => PathKind::NeedsListing,
            Some(_) if !self.dirs.contains(parent) => PathKind::NeedsListing,
            Some(format) => PathKind::Manifest(format),
            None => PathKind::Irrelevant,
        }
    }

    fn has_files_under(&self, dir: &Path) -> bool {
        self.files
            .range::<Path, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded))
            .next()
            .is_some_and(|(path, _)| path.starts_with(dir))
    }

    /// Replaces (or removes) files and re-merges exactly the objects they define or defined.
    fn apply_file_updates(&mut self, updates: Vec<(PathBuf, Option<FileEntry>)>) -> Vec<Change> {
        let mut affected: BTreeSet<ObjectId> = BTreeSet::new();
        let mut dirty: BTreeSet<PathBuf> = BTreeSet::new();
        for (path, entry) in updates {
            let old_claimed = self.files.remove(&path).map(|old| old.claimed).unwrap_or_default();
            for id in &old_claimed {
                if let Some(files) = self.claims.get_mut(id) {
                    files.remove(&path);
                    if files.is_empty() {
                        self.claims.remove(id);
                    }
                }
            }
            self.ignored_by_file.remove(&path);
            if let Some(mut entry) = entry {
                let mut claimed: Vec<ObjectId> = entry.by_id.keys().cloned().collect();
                if entry.keeps_all {
                    // Everything the file defined before is among what it claimed before.
                    for id in &old_claimed {
                        if !entry.by_id.contains_key(id)
                            && self.applied.get(id).is_some_and(|a| a.location.file == path)
                        {
                            claimed.push(id.clone());
                        }
                    }
                }
                for id in &claimed {
                    self.claims.entry(id.clone()).or_default().insert(path.clone());
                }
                affected.extend(claimed.iter().cloned());
                entry.claimed = claimed;
                let ignored: Vec<IgnoredDocument> = entry
                    .documents()
                    .iter()
                    .filter_map(|document| match &document.outcome {
                        Outcome::Ignored(identity) => Some(IgnoredDocument {
                            location: document.location.clone(),
                            object: identity.clone(),
                        }),
                        _ => None,
                    })
                    .collect();
                if !ignored.is_empty() {
                    self.ignored_by_file.insert(path.clone(), ignored);
                }
                self.files.insert(path.clone(), entry);
            }
            affected.extend(old_claimed);
            dirty.insert(path);
        }

        // Deletions first, then additions and modifications, each in key order.
        let mut changes = Vec::new();
        let mut upserts = Vec::new();
        for id in &affected {
            match self.resolve(id) {
                Some(new) => {
                    let changed = self
                        .applied
                        .get(id)
                        .is_none_or(|previous| !previous.object.same_as(&new.object));
                    if changed {
                        upserts.push(new.object.to_change(id.1.clone()));
                    }
                    self.applied.insert(id.clone(), new);
                }
                None => {
                    if self.applied.remove(id).is_some() {
                        changes.push(delete_change(id.0, id.1.clone()));
                    }
                }
            }
            // Duplicates and warnings of every file naming the object may have changed.
            if let Some(files) = self.claims.get(id) {
                dirty.extend(files.iter().cloned());
            }
        }
        changes.append(&mut upserts);

        for path in dirty {
            let problems = self
                .files
                .get(&path)
                .map(|entry| self.problems_of(entry))
                .filter(|(errors, warnings)| !errors.is_empty() || !warnings.is_empty());
            match problems {
                Some(problems) => self.problems.insert(path, problems),
                None => self.problems.remove(&path),
            };
        }
        self.errors = self.listing_errors.clone();
        self.errors.extend(self.problems.values().flat_map(|(errors, _)| errors.iter().cloned()));
        self.warnings =
            self.problems.values().flat_map(|(_, warnings)| warnings.iter().cloned()).collect();
        self.ignored = self.ignored_by_file.values().flatten().cloned().collect();
        changes
    }

    /// The version of `id` that applies: the first definition in path (then document) order
    /// wins; a broken definition keeps what applied before, and so does a file that cannot be
    /// read or has a document that cannot be identified, for the objects it defined.
    ///
    /// Taken to its fixed point, so reading the same files again changes nothing: a broken
    /// document before a good one keeps, once something applied, that version.
    fn resolve(&self, id: &ObjectId) -> Option<Applied> {
        let mut current = self.resolve_once(id, self.applied.get(id));
        // Converges in at most two more steps: the first definition that can keep something
        // keeps it from then on.
        for _ in 0..3 {
            let next = self.resolve_once(id, current.as_ref());
            let stable = match (&current, &next) {
                (Some(a), Some(b)) => a.location == b.location && a.object.same_as(&b.object),
                (None, None) => true,
                _ => false,
            };
            current = next;
            if stable {
                break;
            }
        }
        current
    }

    fn resolve_once(&self, id: &ObjectId, previous: Option<&Applied>) -> Option<Applied> {
        for path in self.claims.get(id)? {
            let Some(entry) = self.files.get(path) else { continue };
            for &index in entry.by_id.get(id).into_iter().flatten() {
                let document = &entry.documents()[index];
                match &document.outcome {
                    Outcome::Object(_, object, _) => {
                        return Some(Applied {
                            location: document.location.clone(),
                            object: object.clone(),
                        });
                    }
                    Outcome::Broken { .. } => {
                        if let Some(previous) = previous {
                            return Some(Applied {
                                location: document.location.clone(),
                                object: previous.object.clone(),
                            });
                        }
                    }
                    Outcome::Ignored(_) => {}
                }
            }
            if entry.keeps_all
                && let Some(previous) = previous
                && previous.location.file == *path
            {
                return Some(previous.clone());
            }
        }
        None
    }

    /// Errors and warnings of one file, given what applies: a definition that is not the one
    /// applied is a duplicate of it; unknown fields are reported for applied definitions.
    fn problems_of(&self, entry: &FileEntry) -> (Vec<ManifestError>, Vec<ManifestWarning>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if let Err(error) = &entry.contents {
            errors.push(error.clone());
        }
        for document in entry.documents() {
            match &document.outcome {
                Outcome::Object(id, _, unknown_fields) => match self.applied.get(id) {
                    Some(first) if first.location != document.location => {
                        errors.push(ManifestError::Duplicate {
                            kind: id.0,
                            key: id.1.clone(),
                            first: first.location.clone(),
                            second: document.location.clone(),
                        });
                    }
                    _ => {
                        for (field, line) in unknown_fields {
                            warnings.push(ManifestWarning::UnknownField {
                                location: Location { line: *line, ..document.location.clone() },
                                object: identity_of(id),
                                field: field.clone(),
                            });
                        }
                    }
                },
                Outcome::Broken { error, .. } => errors.push(error.clone()),
                Outcome::Ignored(_) => {}
            }
        }
        (errors, warnings)
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

/// How an applied object is named in messages.
fn identity_of((kind, key): &ObjectId) -> Identity {
    Identity {
        api_version: None,
        kind: Some(kind.to_string()),
        namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
        name: Some(key.name.clone()),
    }
}

/// Reads and parses one file; an error is the reason the file could not be read at all.
fn read_entry(path: &Path, format: Format, fingerprint: Fingerprint) -> FileEntry {
    let contents = fs::read(path)
        .map_err(|err| err.to_string())
        .and_then(|bytes| String::from_utf8(bytes).map_err(|err| format!("not UTF-8: {err}")))
        .map(|text| parse_file(path, format, &text))
        .map_err(|reason| ManifestError::Unreadable { file: path.to_path_buf(), reason });
    FileEntry::new(fingerprint, contents)
}

/// What one listing of the root found.
#[derive(Debug, Default)]
struct Listing {
    /// Every manifest file, with its format and fingerprint.
    files: BTreeMap<PathBuf, (Format, Fingerprint)>,
    /// Every directory walked.
    dirs: BTreeSet<PathBuf>,
    single_file: bool,
    errors: Vec<ManifestError>,
}

/// Every manifest file under `root`, sorted by path.
fn list_manifest_files(root: &Path) -> Listing {
    let mut listing = Listing::default();
    match fs::metadata(root) {
        Ok(metadata) if metadata.is_file() => {
            listing.single_file = true;
            match Format::of(root) {
                Some(format) => {
                    listing.files.insert(root.to_path_buf(), (format, Fingerprint::of(&metadata)));
                }
                None => listing.errors.push(ManifestError::Unreadable {
                    file: root.to_path_buf(),
                    reason: "not a manifest file (expected .yaml, .yml or .json)".to_owned(),
                }),
            }
        }
        Ok(_) => {
            let mut visited = HashSet::new();
            walk(root, &mut visited, &mut listing);
        }
        Err(err) => listing
            .errors
            .push(ManifestError::Directory { dir: root.to_path_buf(), reason: err.to_string() }),
    }
    listing
}

fn walk(dir: &Path, visited: &mut HashSet<(u64, u64)>, listing: &mut Listing) {
    let directory_error = |err: std::io::Error| ManifestError::Directory {
        dir: dir.to_path_buf(),
        reason: err.to_string(),
    };
    // Symlinked directories are followed, but each directory is read once (no loops).
    match fs::metadata(dir) {
        Ok(metadata) if !visited.insert((metadata.dev(), metadata.ino())) => return,
        Ok(_) => {}
        Err(err) => return listing.errors.push(directory_error(err)),
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return listing.errors.push(directory_error(err)),
    };
    listing.dirs.insert(dir.to_path_buf());
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
            Err(err) => listing.errors.push(directory_error(err)),
        }
    }
    paths.sort();
    for path in paths {
        let Ok(metadata) = fs::metadata(&path) else {
            // A dangling symlink or a file that vanished while listing: nothing to read.
            continue;
        };
        if metadata.is_dir() {
            walk(&path, visited, listing);
        } else if let Some(format) = Format::of(&path) {
            listing.files.insert(path, (format, Fingerprint::of(&metadata)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The per-object merge against the whole-directory merge it replaced (kept here as the
    //! reference): same applied objects and locations, same errors, warnings and ignored
    //! documents, after every step of random edits, broken documents included.

    use super::*;
    use proptest::prelude::*;

    /// The whole-directory merge: files in path order, the first definition wins, broken
    /// documents keep what applied before.
    fn reference(
        files: &BTreeMap<PathBuf, FileEntry>,
        previous: &BTreeMap<ObjectId, Applied>,
    ) -> (BTreeMap<ObjectId, Applied>, Vec<ManifestError>, Vec<ManifestWarning>) {
        let mut applied: BTreeMap<ObjectId, Applied> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let keep_from = |path: &Path, applied: &mut BTreeMap<ObjectId, Applied>| {
            for (id, old) in previous {
                if old.location.file == path {
                    applied.entry(id.clone()).or_insert_with(|| old.clone());
                }
            }
        };
        for (path, entry) in files {
            let documents = match &entry.contents {
                Ok(documents) => documents,
                Err(error) => {
                    errors.push(error.clone());
                    keep_from(path, &mut applied);
                    continue;
                }
            };
            let mut unidentified = false;
            for document in documents {
                match &document.outcome {
                    Outcome::Object(id, object, unknown) => match applied.get(id) {
                        Some(first) => errors.push(ManifestError::Duplicate {
                            kind: id.0,
                            key: id.1.clone(),
                            first: first.location.clone(),
                            second: document.location.clone(),
                        }),
                        None => {
                            for (field, line) in unknown {
                                warnings.push(ManifestWarning::UnknownField {
                                    location: Location { line: *line, ..document.location.clone() },
                                    object: identity_of(id),
                                    field: field.clone(),
                                });
                            }
                            applied.insert(
                                id.clone(),
                                Applied {
                                    location: document.location.clone(),
                                    object: object.clone(),
                                },
                            );
                        }
                    },
                    Outcome::Ignored(_) => {}
                    Outcome::Broken { id, error } => {
                        errors.push(error.clone());
                        match id {
                            Some(id) => {
                                if let Some(old) = previous.get(id) {
                                    applied.entry(id.clone()).or_insert_with(|| Applied {
                                        location: document.location.clone(),
                                        object: old.object.clone(),
                                    });
                                }
                            }
                            None => unidentified = true,
                        }
                    }
                }
            }
            if unidentified {
                keep_from(path, &mut applied);
            }
        }
        (applied, errors, warnings)
    }

    /// The reference merge repeated until reading the same files again changes nothing (the
    /// whole-directory merge could flip once: a broken document before a good one keeps the
    /// good one's version only from the second reading on).
    fn reference_fixpoint(
        files: &BTreeMap<PathBuf, FileEntry>,
        mut previous: BTreeMap<ObjectId, Applied>,
    ) -> (BTreeMap<ObjectId, Applied>, Vec<ManifestError>, Vec<ManifestWarning>) {
        for _ in 0..8 {
            let (applied, errors, warnings) = reference(files, &previous);
            if same(&applied, &previous) {
                return (applied, errors, warnings);
            }
            previous = applied;
        }
        panic!("the reference merge does not settle");
    }

    const FILES: [&str; 4] = ["a.yaml", "b/c.yaml", "b/d.json", "e.yaml"];
    const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

    #[derive(Debug, Clone)]
    enum Doc {
        Service {
            name: usize,
            port: u16,
        },
        /// Identifiable, but the port is not a number.
        BrokenService {
            name: usize,
        },
        /// Unknown field `nodeport`.
        Typo {
            name: usize,
        },
        /// Cannot be identified (YAML syntax error; JSON files get a broken identity instead).
        Syntax,
        Deployment,
    }

    fn yaml(doc: &Doc) -> String {
        let service = |name: usize, port: &str, extra: &str| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  ports:\n  - port: {port}\n{extra}",
                NAMES[name]
            )
        };
        match doc {
            Doc::Service { name, port } => service(*name, &port.to_string(), ""),
            Doc::BrokenService { name } => service(*name, "\"oops\"", ""),
            Doc::Typo { name } => service(*name, "80", "    nodeport: 30080\n"),
            Doc::Syntax => "kind: [Service\n".to_owned(),
            Doc::Deployment => {
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n".to_owned()
            }
        }
    }

    fn json(doc: &Doc) -> String {
        let service = |name: usize, port: &str| {
            format!(
                r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{}"}},"spec":{{"ports":[{{"port":{port}}}]}}}}"#,
                NAMES[name]
            )
        };
        match doc {
            Doc::Service { name, port } => service(*name, &port.to_string()),
            Doc::BrokenService { name } | Doc::Typo { name } => service(*name, "\"oops\""),
            Doc::Syntax => r#"{"kind": "Service", "metadata": {"name": "x"}}"#.to_owned(),
            Doc::Deployment => {
                r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"w"}}"#.to_owned()
            }
        }
    }

    /// A file's content: documents, or bytes that are not UTF-8.
    #[derive(Debug, Clone)]
    enum Content {
        Docs(Vec<Doc>),
        NotUtf8,
    }

    fn doc() -> impl Strategy<Value = Doc> {
        let name = 0..NAMES.len();
        prop_oneof![
            6 => (name.clone(), 1..4u16).prop_map(|(name, port)| Doc::Service { name, port }),
            1 => name.clone().prop_map(|name| Doc::BrokenService { name }),
            1 => name.prop_map(|name| Doc::Typo { name }),
            1 => Just(Doc::Syntax),
            1 => Just(Doc::Deployment),
        ]
    }

    fn content() -> impl Strategy<Value = Option<Content>> {
        prop::option::weighted(
            0.8,
            prop_oneof![
                12 => prop::collection::vec(doc(), 0..4).prop_map(Content::Docs),
                1 => Just(Content::NotUtf8),
            ],
        )
    }

    /// One step: a new content for some files (`None` inside: delete), the others untouched.
    fn step() -> impl Strategy<Value = Vec<Option<Option<Content>>>> {
        prop::collection::vec(prop::option::weighted(0.5, content()), FILES.len())
    }

    /// Writes the step's files atomically (hidden temporary, then rename) and returns the paths
    /// a watcher would have reported, temporaries included.
    fn write(dir: &Path, step: &[Option<Option<Content>>]) -> BTreeSet<PathBuf> {
        let mut touched = BTreeSet::new();
        for (file, change) in FILES.iter().zip(step) {
            let Some(content) = change else { continue };
            let path = dir.join(file);
            touched.insert(path.clone());
            match content {
                None => {
                    let _ = fs::remove_file(&path);
                }
                Some(content) => {
                    let parent = path.parent().unwrap();
                    fs::create_dir_all(parent).unwrap();
                    let bytes = match content {
                        Content::NotUtf8 => vec![0xff, 0xfe, b'\n'],
                        Content::Docs(docs) if file.ends_with(".json") => {
                            docs.iter().map(json).collect::<Vec<_>>().join("\n").into_bytes()
                        }
                        Content::Docs(docs) => {
                            docs.iter().map(yaml).collect::<Vec<_>>().join("---\n").into_bytes()
                        }
                    };
                    let temporary = parent
                        .join(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
                    fs::write(&temporary, bytes).unwrap();
                    fs::rename(&temporary, &path).unwrap();
                    touched.insert(temporary);
                }
            }
        }
        touched
    }

    fn same(a: &BTreeMap<ObjectId, Applied>, b: &BTreeMap<ObjectId, Applied>) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((ida, x), (idb, y))| {
                ida == idb && x.location == y.location && x.object.same_as(&y.object)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn per_file_updates_merge_like_the_whole_directory(
            first in prop::collection::vec(content(), FILES.len()),
            steps in prop::collection::vec(step(), 1..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), &first.into_iter().map(Some).collect::<Vec<_>>());
            let mut directory = ManifestDirectory::load(dir.path());
            let (applied, errors, warnings) = reference_fixpoint(&directory.files, BTreeMap::new());
            prop_assert!(same(directory.applied(), &applied));
            prop_assert_eq!(directory.errors(), errors.as_slice());
            prop_assert_eq!(directory.warnings(), warnings.as_slice());
            for step in &steps {
                let touched = write(dir.path(), step);
                let previous = directory.applied().clone();
                let mut state = directory.state();
                for change in directory.update_paths(&touched) {
                    state.apply(change);
                }
                let (applied, errors, warnings) = reference_fixpoint(&directory.files, previous);
                prop_assert!(same(directory.applied(), &applied), "applied differs from the reference");
                prop_assert_eq!(directory.errors(), errors.as_slice());
                prop_assert_eq!(directory.warnings(), warnings.as_slice());
                let fresh = directory.state();
                prop_assert!(
                    state.services == fresh.services,
                    "the changes do not carry the old state to the new"
                );
            }
        }
    }
}
