//! The files under a manifest root: listing them, noticing changes without reading them
//! (fingerprints), and reading one into its parsed documents.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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
    pub(super) fingerprint: Fingerprint,
    pub(super) contents: Result<Vec<Document>, ManifestError>,
    /// Indices of the documents that name each object, in document order: re-merging one
    /// object looks only at its own documents.
    pub(super) by_id: HashMap<ObjectId, Vec<usize>>,
    /// Unreadable, or a document that cannot be identified: the file keeps every object it
    /// defined before.
    pub(super) keeps_all: bool,
    /// The objects this file is registered for in [`ManifestDirectory::claims`]: those its
    /// documents name plus, when it keeps all, those it defined before.
    pub(super) claimed: Vec<ObjectId>,
}

impl FileEntry {
    pub(super) fn new(
        fingerprint: Fingerprint,
        contents: Result<Vec<Document>, ManifestError>,
    ) -> Self {
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

    pub(super) fn documents(&self) -> &[Document] {
        self.contents.as_deref().unwrap_or_default()
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
    FileEntry::new(fingerprint, contents)
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
