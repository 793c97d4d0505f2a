//! Properties of re-reading a changing directory: the emitted changes always carry the old state
//! to the new one, and without broken documents the result equals a fresh reading.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use switchyard_k8s::manifest::ManifestDirectory;
use switchyard_model::ClusterState;

const FILES: [&str; 3] = ["a.yaml", "b/c.yaml", "d.json"];
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// One document: a Service `name` with `port`, or a broken one (port not a number).
#[derive(Debug, Clone)]
struct Doc {
    name: usize,
    port: u16,
    broken: bool,
}

fn yaml(doc: &Doc) -> String {
    let port = if doc.broken { "\"oops\"".to_owned() } else { doc.port.to_string() };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  ports:\n  - port: {port}\n",
        NAMES[doc.name]
    )
}

fn json(doc: &Doc) -> String {
    let port = if doc.broken { "\"oops\"".to_owned() } else { doc.port.to_string() };
    format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{}"}},"spec":{{"ports":[{{"port":{port}}}]}}}}"#,
        NAMES[doc.name]
    )
}

/// Writes one version of every file; `None` deletes the file.
fn write_all(dir: &Path, files: &[Option<Vec<Doc>>]) -> BTreeSet<std::path::PathBuf> {
    let mut touched = BTreeSet::new();
    for (file, docs) in FILES.iter().zip(files) {
        let path = dir.join(file);
        touched.insert(path.clone());
        match docs {
            None => {
                let _ = fs::remove_file(&path);
            }
            Some(docs) => {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                let text = if file.ends_with(".json") {
                    docs.iter().map(json).collect::<Vec<_>>().join("\n")
                } else {
                    docs.iter().map(yaml).collect::<Vec<_>>().join("---\n")
                };
                fs::write(&path, text).unwrap();
            }
        }
    }
    touched
}

fn same_state(a: &ClusterState, b: &ClusterState) -> bool {
    a.services == b.services && a.endpoint_slices == b.endpoint_slices && a.nodes == b.nodes
}

fn doc() -> impl Strategy<Value = Doc> {
    (0..NAMES.len(), 1..4u16, prop::bool::weighted(0.15)).prop_map(|(name, port, broken)| Doc {
        name,
        port,
        broken,
    })
}

fn version() -> impl Strategy<Value = Vec<Option<Vec<Doc>>>> {
    prop::collection::vec(
        prop::option::weighted(0.8, prop::collection::vec(doc(), 0..4)),
        FILES.len(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn changes_carry_the_old_state_to_the_new_and_clean_directories_read_the_same_fresh(
        versions in prop::collection::vec(version(), 1..5)
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &versions[0]);
        let mut directory = ManifestDirectory::load(dir.path());
        let mut state = directory.state();
        for version in &versions[1..] {
            let touched = write_all(dir.path(), version);
            let changes = directory.rescan(&touched);
            for change in changes {
                state.apply(change);
            }
            prop_assert!(same_state(&state, &directory.state()), "changes do not reproduce the state");

            let any_broken = version.iter().flatten().flatten().any(|d| d.broken);
            if !any_broken {
                let fresh = ManifestDirectory::load(dir.path());
                prop_assert!(same_state(&directory.state(), &fresh.state()), "incremental differs from fresh");
                prop_assert_eq!(directory.errors(), fresh.errors());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The watcher's path: only the files named by events are read. It must end where a full
    /// listing ends, and where a fresh reading ends when nothing is broken.
    #[test]
    fn per_file_updates_equal_a_full_listing_and_a_fresh_reading(
        versions in prop::collection::vec(version(), 1..6)
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &versions[0]);
        let mut per_file = ManifestDirectory::load(dir.path());
        let mut listed = ManifestDirectory::load(dir.path());
        let mut state = per_file.state();
        for version in &versions[1..] {
            let touched = write_all(dir.path(), version);
            for change in per_file.update_paths(&touched) {
                state.apply(change);
            }
            listed.rescan(&touched);
            prop_assert!(same_state(&state, &per_file.state()), "changes do not reproduce the state");
            prop_assert!(same_state(&per_file.state(), &listed.state()), "per file differs from a listing");
            prop_assert_eq!(per_file.errors(), listed.errors());
            prop_assert_eq!(per_file.warnings(), listed.warnings());

            let any_broken = version.iter().flatten().flatten().any(|d| d.broken);
            if !any_broken {
                let fresh = ManifestDirectory::load(dir.path());
                prop_assert!(same_state(&per_file.state(), &fresh.state()), "per file differs from fresh");
                prop_assert_eq!(per_file.errors(), fresh.errors());
            }
        }
    }
}
