//! A directory of manifests as the model sees it: the objects that currently apply, the problems,
//! and the [`Change`]s between one reading and the next.
//!
//! The applied set is a function of the directory's content plus one piece of memory: the objects
//! applied before. That memory is what lets a broken new version of an object keep the last good
//! one, instead of deleting the object (and its traffic) because of a typo.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_model::validate::ValidationOptions;
use switchyard_model::{Change, ClusterState, ObjectKey, ObjectKind};

use super::error::{Identity, IgnoredDocument, Location, ManifestError, ManifestWarning};
use super::object::{ObjectId, StoredObject, delete_change};
use super::parse::{Format, Outcome};
use super::status::{STATUS_FILE, StatusFile};

mod files;

/// A reading that re-merged at least this many objects was a bulk load: the applied map and the
/// claims are rebuilt in one pass afterwards.
const COMPACT_AFTER_OBJECTS: usize = 1000;

use files::{FileEntry, Fingerprint, list_manifest_files, read_entry};

/// An object that currently applies, and the document it comes from.
#[derive(Debug, Clone)]
pub struct Applied {
    pub location: Location,
    pub object: StoredObject,
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
    /// checks every candidate. A B-tree rebuilt after a bulk load, as `applied`: a hash table
    /// had up to twice as many buckets as objects (issue 20: 2.6 MB at 20,000 objects, 1.7
    /// this way).
    claims: BTreeMap<ObjectId, PathSet>,
    applied: BTreeMap<ObjectId, Applied>,
    listing_errors: Vec<ManifestError>,
    /// Errors and warnings of each file that has some, in document order.
    problems: BTreeMap<PathBuf, (Vec<ManifestError>, Vec<ManifestWarning>)>,
    ignored_by_file: BTreeMap<PathBuf, Vec<IgnoredDocument>>,
    errors: Vec<ManifestError>,
    warnings: Vec<ManifestWarning>,
    ignored: Vec<IgnoredDocument>,
    /// The semantic checks an object must pass to apply (the NodePort range).
    options: ValidationOptions,
    /// The standalone controller's status file, merged into Services and IPPools.
    status: StatusFile,
    status_fingerprint: Option<Fingerprint>,
}

/// Files in path order, for [`ManifestDirectory::claims`]: nearly always one, where a
/// `BTreeSet` would allocate a node with room for eleven (issue 20: 5.6 MB of the agent's
/// heap at 20,000 objects).
#[derive(Debug, Default)]
struct PathSet(Vec<Arc<Path>>);

impl PathSet {
    fn insert(&mut self, path: Arc<Path>) {
        if let Err(at) = self.0.binary_search(&path) {
            // Exactly: a first push reserves room for four (issue 20: 1.3 MB at 20,000
            // objects, where one path each takes 0.3).
            self.0.reserve_exact(1);
            self.0.insert(at, path);
        }
    }

    fn remove(&mut self, path: &Path) {
        if let Ok(at) = self.0.binary_search_by(|p| (**p).cmp(path)) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> std::slice::Iter<'_, Arc<Path>> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a PathSet {
    type Item = &'a Arc<Path>;
    type IntoIter = std::slice::Iter<'a, Arc<Path>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
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
    ///
    /// An object the API server would refuse (see [`ManifestError::Refused`]) is checked with
    /// the default NodePort range; [`load_with`](Self::load_with) names another.
    pub fn load(root: impl Into<PathBuf>) -> Self {
        Self::load_with(root, ValidationOptions::default())
    }

    /// As [`load`](Self::load), with the cluster's validation settings.
    pub fn load_with(root: impl Into<PathBuf>, options: ValidationOptions) -> Self {
        let mut directory = Self {
            root: root.into(),
            single_file: false,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            claims: BTreeMap::new(),
            applied: BTreeMap::new(),
            listing_errors: Vec::new(),
            problems: BTreeMap::new(),
            ignored_by_file: BTreeMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            ignored: Vec::new(),
            options,
            status: StatusFile::default(),
            status_fingerprint: None,
        };
        directory.rescan(&BTreeSet::new());
        directory
    }

    /// Where the status file is (`None` when the root is a single file).
    fn status_path(&self) -> Option<PathBuf> {
        (!self.single_file).then(|| self.root.join(STATUS_FILE))
    }

    /// Reads the status file again if it changed, and returns the changes of the applied
    /// Services and IPPools whose status it changed. A broken file keeps the last good status.
    fn reload_status(&mut self) -> Vec<Change> {
        let Some(path) = self.status_path() else { return Vec::new() };
        let fingerprint = fs::metadata(&path).ok().map(|m| Fingerprint::of(&m));
        if fingerprint == self.status_fingerprint {
            return Vec::new();
        }
        self.status_fingerprint = fingerprint;
        let status = match StatusFile::read(&path) {
            Ok(status) => status,
            Err(err) => {
                tracing::warn!(error = %err, "status file unreadable; keeping the last good one");
                return Vec::new();
            }
        };
        let (services, pools) = self.status.differences(&status);
        self.status = status;
        let ids = services
            .into_iter()
            .map(|key| (ObjectKind::Service, key))
            .chain(pools.into_iter().map(|name| (ObjectKind::IPPool, ObjectKey::cluster(name))));
        ids.filter_map(|id| {
            let applied = self.applied.get(&id)?;
            change_of(&id, &applied.object).map(|change| self.status.overlay(change))
        })
        .collect()
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
                let entry = read_entry(&path, format, fingerprint, &self.options);
                updates.push((path, Some(entry)));
            }
        }
        self.single_file = listing.single_file;
        self.dirs = listing.dirs;
        self.listing_errors = listing.errors;
        let status_changes = self.reload_status();
        let mut changes = self.apply_file_updates(updates);
        merge_status_changes(&mut changes, status_changes);
        changes
    }

    /// Re-reads only the files named in `touched` (paths from file events) and returns the
    /// changes. Falls back to [`rescan`](Self::rescan) when a path needs a listing: a
    /// directory, a new subdirectory, a symlink swapped (ConfigMap volumes), a path outside
    /// the root. Temporary files of atomic writes and other extensions are skipped.
    pub fn update_paths(&mut self, touched: &BTreeSet<PathBuf>) -> Vec<Change> {
        let mut files = Vec::new();
        let mut status_changes = Vec::new();
        for path in touched {
            if Some(path) == self.status_path().as_ref() {
                status_changes = self.reload_status();
                continue;
            }
            match self.classify(path) {
                PathKind::Manifest(format) => files.push((path, format)),
                PathKind::Irrelevant => {}
                PathKind::NeedsListing => return self.rescan(touched),
            }
        }
        let updates = files
            .into_iter()
            .filter_map(|(path, format)| match fs::metadata(path) {
                Ok(metadata) if metadata.is_file() => Some((
                    path.clone(),
                    Some(read_entry(path, format, Fingerprint::of(&metadata), &self.options)),
                )),
                // Gone (or a dangling symlink): whatever it defined goes.
                _ => self.files.contains_key(path).then(|| (path.clone(), None)),
            })
            .collect();
        let mut changes = self.apply_file_updates(updates);
        merge_status_changes(&mut changes, status_changes);
        changes
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
            let old_claimed: Vec<ObjectId> = (self.files.remove(&path))
                .map(|old| old.claimed().cloned().collect())
                .unwrap_or_default();
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
                if entry.keeps_all {
                    // Everything the file defined before is among what it claimed before.
                    for id in &old_claimed {
                        if !entry.names(id)
                            && self.applied.get(id).is_some_and(|a| *a.location.file == *path)
                        {
                            entry.kept.push(id.clone());
                        }
                    }
                }
                for id in entry.claimed() {
                    let files = self.claims.entry(id.clone()).or_default();
                    files.insert(Arc::clone(&entry.path));
                    affected.insert(id.clone());
                }
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
                    if changed && let Some(change) = change_of(id, &new.object) {
                        upserts.push(self.status.overlay(change));
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
                dirty.extend(files.iter().map(|path| path.to_path_buf()));
            }
        }
        changes.append(&mut upserts);
        if affected.len() >= COMPACT_AFTER_OBJECTS {
            // Inserted one by one in key order, a B-tree's nodes stay a little over half full
            // (a full node splits into 6 and 5 entries and the left one gets no more); built
            // from a sorted sequence they are full (issue 20: 2 MB at 20,000 objects).
            self.applied = std::mem::take(&mut self.applied).into_iter().collect();
            self.claims = std::mem::take(&mut self.claims).into_iter().collect();
        }

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
            let Some(entry) = self.files.get(&**path) else { continue };
            for index in entry.documents_naming(id) {
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
                && *previous.location.file == **path
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
                Outcome::Broken { errors: broken, .. } => errors.extend(broken.iter().cloned()),
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
            .filter_map(|(id, applied)| change_of(id, &applied.object))
            .map(|change| self.status.overlay(change))
            .collect()
    }
}

/// The change that hands a kept object to the model. It was serialized from its typed form,
/// so reading it back cannot fail short of a bug (the fuzz check counts any); if it does, the
/// model keeps what it had and the log says why.
fn change_of(id: &ObjectId, object: &StoredObject) -> Option<Change> {
    match object.to_change(id.1.clone()) {
        Ok(change) => Some(change),
        Err(err) => {
            tracing::error!(
                kind = %id.0,
                object = %id.1,
                error = %err,
                "a kept object does not read back; the model keeps its previous version"
            );
            None
        }
    }
}

/// Adds the changes a new status file made, except for objects the file updates already
/// changed (their changes carry the new status, or delete them).
fn merge_status_changes(changes: &mut Vec<Change>, status_changes: Vec<Change>) {
    let touched: BTreeSet<(ObjectKind, ObjectKey)> =
        changes.iter().map(|c| (c.kind(), c.key().clone())).collect();
    changes.extend(
        status_changes.into_iter().filter(|c| !touched.contains(&(c.kind(), c.key().clone()))),
    );
}

/// How an applied object is named in messages.
fn identity_of((kind, key): &ObjectId) -> Identity {
    Identity {
        api_version: None,
        kind: Some(kind.to_string()),
        namespace: (!key.namespace.is_empty()).then(|| key.namespace.to_string()),
        name: Some(key.name.to_string()),
    }
}

#[cfg(test)]
mod tests;
