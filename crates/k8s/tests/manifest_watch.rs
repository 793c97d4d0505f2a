//! Watching a manifest directory: file writes become debounced model changes.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use switchyard_k8s::manifest::{ManifestUpdate, ManifestWatcher, WatchOptions};
use switchyard_model::{Change, ObjectKind};

const WAIT: Duration = Duration::from_secs(10);

fn options() -> WatchOptions {
    WatchOptions {
        debounce: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        ..WatchOptions::default()
    }
}

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn summary(update: &ManifestUpdate) -> Vec<(ObjectKind, String, bool)> {
    update.changes.iter().map(|c| (c.kind(), c.key().to_string(), c.is_delete())).collect()
}

fn port_of(change: &Change) -> Option<i32> {
    match change {
        Change::Service(_, Some(service)) => Some(service.spec.as_ref()?.ports.as_ref()?[0].port),
        _ => None,
    }
}

/// Waits for the next update whose changes or errors are non-empty (editors may cause more
/// than one event group per write; an update is only emitted when something changed).
fn next(watcher: &mut ManifestWatcher) -> ManifestUpdate {
    watcher.next_timeout(WAIT).expect("no update from the watcher")
}

/// Writes atomically (hidden temporary file, then rename), as editors and deploy tools do, so
/// the watcher never sees a half-written file however the scheduler delays this thread.
fn write(dir: &Path, file: &str, text: &str) {
    let temporary = dir.join(format!(".{file}.tmp"));
    fs::write(&temporary, text).unwrap();
    fs::rename(temporary, dir.join(file)).unwrap();
}

#[test]
fn first_update_is_the_full_initial_reading() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", 80));
    write(dir.path(), "b.yaml", "kind: [broken\n");
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    let update = next(&mut watcher);
    assert_eq!(summary(&update), vec![(ObjectKind::Service, "default/a".to_owned(), false)]);
    assert_eq!(update.errors.len(), 1);
}

#[test]
fn writing_a_file_emits_a_change_for_the_changed_object_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", 80));
    write(dir.path(), "b.yaml", &service("b", 80));
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    next(&mut watcher);

    write(dir.path(), "a.yaml", &service("a", 8080));
    let update = next(&mut watcher);
    assert_eq!(summary(&update), vec![(ObjectKind::Service, "default/a".to_owned(), false)]);
    assert_eq!(port_of(&update.changes[0]), Some(8080));
    assert!(update.errors.is_empty());
}

#[test]
fn new_file_in_a_new_subdirectory_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    assert!(next(&mut watcher).changes.is_empty());
    fs::create_dir(dir.path().join("team")).unwrap();
    // Give the recursive watch a moment to add the new directory before the file appears.
    std::thread::sleep(Duration::from_millis(100));
    write(&dir.path().join("team"), "c.yaml", &service("c", 80));
    let mut seen = Vec::new();
    while seen.is_empty() {
        seen = summary(&next(&mut watcher));
    }
    assert_eq!(seen, vec![(ObjectKind::Service, "default/c".to_owned(), false)]);
}

#[test]
fn deleting_a_file_emits_deletes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", 80));
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    next(&mut watcher);
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let update = next(&mut watcher);
    assert_eq!(summary(&update), vec![(ObjectKind::Service, "default/a".to_owned(), true)]);
}

#[test]
fn broken_write_reports_the_error_and_keeps_the_object() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", 80));
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    next(&mut watcher);
    write(dir.path(), "a.yaml", &service("a", 80).replace("port: 80", "port: [80"));
    let update = next(&mut watcher);
    assert!(update.changes.is_empty(), "{:?}", update.changes);
    assert_eq!(update.errors.len(), 1);
    assert!(update.errors[0].to_string().contains("a.yaml"), "{}", update.errors[0]);

    write(dir.path(), "a.yaml", &service("a", 81));
    let update = next(&mut watcher);
    assert_eq!(port_of(&update.changes[0]), Some(81));
    assert!(update.errors.is_empty());
}

#[test]
fn burst_of_writes_is_debounced_into_fewer_updates_ending_in_the_last_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = ManifestWatcher::start(
        dir.path(),
        WatchOptions {
            debounce: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            ..WatchOptions::default()
        },
    )
    .unwrap();
    next(&mut watcher);
    let writes = 5;
    for port in 1..=writes {
        write(dir.path(), "a.yaml", &service("a", port));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut updates = 0;
    loop {
        let update = next(&mut watcher);
        updates += 1;
        if update.changes.iter().any(|c| port_of(c) == Some(i32::from(writes))) {
            break;
        }
    }
    // Without debouncing every write would be an update; with it, normally exactly one.
    assert!(updates < usize::from(writes), "{updates} updates for {writes} writes");
    assert!(watcher.next_timeout(Duration::from_millis(800)).is_none(), "no update after the last");
}

#[tokio::test]
async fn async_consumers_receive_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    let initial = tokio::time::timeout(WAIT, watcher.next()).await.unwrap().unwrap();
    assert!(initial.changes.is_empty());
    write(dir.path(), "a.yaml", &service("a", 80));
    let update = tokio::time::timeout(WAIT, watcher.next()).await.unwrap().unwrap();
    assert_eq!(summary(&update), vec![(ObjectKind::Service, "default/a".to_owned(), false)]);
}

#[test]
fn a_single_file_root_sees_atomic_replaces_and_ignores_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", 80));
    let mut watcher = ManifestWatcher::start(dir.path().join("a.yaml"), options()).unwrap();
    assert_eq!(
        summary(&next(&mut watcher)),
        vec![(ObjectKind::Service, "default/a".to_owned(), false)]
    );
    write(dir.path(), "b.yaml", &service("b", 80));
    write(dir.path(), "a.yaml", &service("a", 81));
    let update = next(&mut watcher);
    assert_eq!(summary(&update), vec![(ObjectKind::Service, "default/a".to_owned(), false)]);
    assert_eq!(port_of(&update.changes[0]), Some(81));
}

#[test]
fn watching_a_missing_directory_fails_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let error = ManifestWatcher::start(&missing, options()).unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
}

#[test]
fn a_configmap_style_symlink_swap_is_seen_and_temporaries_are_not_read() {
    // The layout of a ConfigMap volume: visible symlinks into `..data`, itself a symlink to a
    // timestamped directory that is swapped atomically. The visible names never change.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("..v1")).unwrap();
    fs::write(root.join("..v1/a.yaml"), service("a", 80)).unwrap();
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/a.yaml", root.join("a.yaml")).unwrap();
    let mut watcher = ManifestWatcher::start(root, options()).unwrap();
    assert_eq!(
        summary(&next(&mut watcher)),
        vec![(ObjectKind::Service, "default/a".to_owned(), false)]
    );

    fs::create_dir(root.join("..v2")).unwrap();
    fs::write(root.join("..v2/a.yaml"), service("a", 81)).unwrap();
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    fs::remove_dir_all(root.join("..v1")).unwrap();
    let mut port = None;
    while port.is_none() {
        port = next(&mut watcher).changes.iter().find_map(port_of);
    }
    assert_eq!(port, Some(81));
}

#[test]
fn removing_a_directory_deletes_what_its_files_defined() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("team")).unwrap();
    write(&dir.path().join("team"), "c.yaml", &service("c", 80));
    write(dir.path(), "a.yaml", &service("a", 80));
    let mut watcher = ManifestWatcher::start(dir.path(), options()).unwrap();
    assert_eq!(next(&mut watcher).changes.len(), 2);
    fs::remove_dir_all(dir.path().join("team")).unwrap();
    let mut deleted = Vec::new();
    while deleted.is_empty() {
        deleted = summary(&next(&mut watcher));
    }
    assert_eq!(deleted, vec![(ObjectKind::Service, "default/c".to_owned(), true)]);
}
