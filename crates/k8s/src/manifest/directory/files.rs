//! The files under a manifest root: listing them, noticing changes without reading them
//! (fingerprints), and reading one into its parsed documents.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use switchyard_model::validate::ValidationOptions;

use crate::manifest::error::ManifestError;
use crate::manifest::limits::MAX_FILE_BYTES;
use crate::manifest::object::ObjectId;
use crate::manifest::parse::{Document, Format, Outcome, parse_file};

/// Enough metadata to notice that a file changed without reading it. Includes the inode, so an
/// atomic replace (editors, ConfigMap volume symlink swaps) is noticed even with equal size and
/// modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub(super) len: u64,
    pub(super) modified: Option<SystemTime>,
    pub(super) device: u64,
    pub(super) inode: u64,
    pub(super) changed: (i64, i64),
}

impl Fingerprint {
    pub(super) fn of(metadata: &fs::Metadata) -> Self {
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
pub(super) struct FileEntry {
    /// Its path, shared with [`ManifestDirectory::claims`](super::ManifestDirectory).
    pub(super) path: Arc<Path>,
    pub(super) fingerprint: Fingerprint,
    pub(super) contents: Result<Vec<Document>, ManifestError>,
    /// Indices of the documents that name an object, ordered by object, then document: re-merging
    /// one object looks only at its own documents. Indices rather than a map keyed by a copy of
    /// each object's id (issue 20: a copy per object and a hash table per file, 4 MB at 20,000
    /// objects).
    by_id: Box<[usize]>,
    /// Unreadable, or a document that cannot be identified: the file keeps every object it
    /// defined before.
    pub(super) keeps_all: bool,
    /// Objects this file keeps without a document naming them (when it keeps all): with the
    /// objects its documents name, those it is registered for in
    /// [`ManifestDirectory::claims`](super::ManifestDirectory).
    pub(super) kept: Vec<ObjectId>,
}

/// The object a document names, if it could be read.
fn document_id(document: &Document) -> Option<&ObjectId> {
    match &document.outcome {
        Outcome::Object(id, ..) | Outcome::Broken { id: Some(id), .. } => Some(id),
        Outcome::Broken { id: None, .. } | Outcome::Ignored(_) => None,
    }
}

impl FileEntry {
    pub(super) fn new(
        path: Arc<Path>,
        fingerprint: Fingerprint,
        contents: Result<Vec<Document>, ManifestError>,
    ) -> Self {
        let documents = contents.as_deref().unwrap_or_default();
        let keeps_all = contents.is_err()
            || documents.iter().any(|d| matches!(d.outcome, Outcome::Broken { id: None, .. }));
        let mut by_id: Vec<usize> =
            (0..documents.len()).filter(|&i| document_id(&documents[i]).is_some()).collect();
        // Stable: a document's index breaks ties between documents naming the same object.
        by_id.sort_by(|&a, &b| document_id(&documents[a]).cmp(&document_id(&documents[b])));
        Self { path, fingerprint, contents, by_id: by_id.into(), keeps_all, kept: Vec::new() }
    }

    pub(super) fn documents(&self) -> &[Document] {
        self.contents.as_deref().unwrap_or_default()
    }

    /// Indices of the documents naming `id`, in document order.
    pub(super) fn documents_naming<'a>(
        &'a self,
        id: &'a ObjectId,
    ) -> impl Iterator<Item = usize> + 'a {
        let documents = self.documents();
        let named = move |index: &usize| document_id(&documents[*index]);
        let start = self.by_id.partition_point(|i| named(i).is_some_and(|named| named < id));
        self.by_id[start..].iter().take_while(move |i| named(i) == Some(id)).copied()
    }

    pub(super) fn names(&self, id: &ObjectId) -> bool {
        self.documents_naming(id).next().is_some()
    }

    /// The objects this file is registered for: those its documents name, each once, then
    /// those it keeps.
    pub(super) fn claimed(&self) -> impl Iterator<Item = &ObjectId> {
        let documents = self.documents();
        let mut previous: Option<&ObjectId> = None;
        (self.by_id.iter())
            .filter_map(|&index| document_id(&documents[index]))
            .filter(move |id| previous.replace(id) != Some(id))
            .chain(&self.kept)
    }
}

/// Reads and parses one file; an error is the reason the file could not be read at all.
pub(super) fn read_entry(
    path: &Path,
    format: Format,
    fingerprint: Fingerprint,
    options: &ValidationOptions,
) -> FileEntry {
    let contents = read_limited(path)
        .and_then(|bytes| String::from_utf8(bytes).map_err(|err| format!("not UTF-8: {err}")))
        .map(|text| parse_file(path, format, &text, options))
        .map_err(|reason| ManifestError::Unreadable { file: path.to_path_buf(), reason });
    FileEntry::new(path.into(), fingerprint, contents)
}

/// The bytes of `path`, refused (naming the limit) above [`MAX_FILE_BYTES`].
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|err| err.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|err| err.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than the limit of {MAX_FILE_BYTES} bytes ({} MiB) for a manifest file; \
             split it",
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// What one listing of the root found.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Every manifest file, with its format and fingerprint.
    pub(super) files: BTreeMap<PathBuf, (Format, Fingerprint)>,
    /// Every directory walked.
    pub(super) dirs: BTreeSet<PathBuf>,
    pub(super) single_file: bool,
    pub(super) errors: Vec<ManifestError>,
}

/// Every manifest file under `root`, sorted by path.
pub(super) fn list_manifest_files(root: &Path) -> Listing {
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
