//! The per-object merge against the whole-directory merge it replaced (kept here as the
//! reference): same applied objects and locations, same errors, warnings and ignored
//! documents, after every step of random edits, broken documents included.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::files::*;
use super::*;

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
            if *old.location.file == *path {
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
                            Applied { location: document.location.clone(), object: object.clone() },
                        );
                    }
                },
                Outcome::Ignored(_) => {}
                Outcome::Broken { id, errors: broken } => {
                    errors.extend(broken.iter().cloned());
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
                let temporary =
                    parent.join(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
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
