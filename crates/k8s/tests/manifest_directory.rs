//! Reading a manifest directory: merging files, reporting problems, keeping last good versions.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use switchyard_k8s::manifest::{ManifestDirectory, ManifestError};
use switchyard_model::{Change, ObjectKey, ObjectKind};

fn service(name: &str, port: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  ports:\n  - port: {port}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn service_port(directory: &ManifestDirectory, name: &str) -> Option<i32> {
    let state = directory.state();
    let service = state.services.get(&ObjectKey::new("shop", name))?;
    Some(service.spec.as_ref()?.ports.as_ref()?[0].port)
}

/// A compact view of changes for assertions: (kind, key, deleted?).
fn summary(changes: &[Change]) -> Vec<(ObjectKind, String, bool)> {
    changes.iter().map(|c| (c.kind(), c.key().to_string(), c.is_delete())).collect()
}

#[test]
fn reads_yaml_yml_and_json_recursively_and_skips_hidden_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", "80"));
    write(dir.path(), "sub/deeper/b.yml", &service("b", "81"));
    write(
        dir.path(),
        "c.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c","namespace":"shop"},"spec":{"ports":[{"port":82}]}}"#,
    );
    write(dir.path(), ".hidden.yaml", &service("hidden", "83"));
    write(dir.path(), ".git/d.yaml", &service("d", "84"));
    write(dir.path(), "notes.txt", "kind: Service");
    let directory = ManifestDirectory::load(dir.path());
    assert_eq!(directory.errors(), &[] as &[ManifestError]);
    let names: Vec<String> =
        directory.state().services.keys().map(|k| k.name.to_string()).collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    assert_eq!(directory.file_count(), 3);
}

#[test]
fn broken_document_is_reported_and_valid_objects_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}---\n{}", service("good", "80"), service("bad", "seventy"));
    write(dir.path(), "svc.yaml", &text);
    let directory = ManifestDirectory::load(dir.path());
    assert_eq!(service_port(&directory, "good"), Some(80));
    assert_eq!(service_port(&directory, "bad"), None);
    let errors: Vec<String> = directory.errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1);
    let expected_prefix = format!(
        "{}:17 (document 2): Service shop/bad: spec.ports[0].port:",
        dir.path().join("svc.yaml").display()
    );
    assert!(errors[0].starts_with(&expected_prefix), "{}", errors[0]);
}

#[test]
fn duplicate_object_in_two_files_names_both_and_keeps_the_first_by_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.yaml", &service("web", "81"));
    write(dir.path(), "a.yaml", &service("web", "80"));
    let directory = ManifestDirectory::load(dir.path());
    assert_eq!(service_port(&directory, "web"), Some(80));
    match directory.errors() {
        [ManifestError::Duplicate { kind, key, first, second }] => {
            assert_eq!((*kind, key), (ObjectKind::Service, &ObjectKey::new("shop", "web")));
            assert_eq!(*first.file, *dir.path().join("a.yaml"));
            assert_eq!(*second.file, *dir.path().join("b.yaml"));
        }
        other => panic!("expected one duplicate error, got {other:?}"),
    }
    let message = directory.errors()[0].to_string();
    assert!(message.contains("a.yaml") && message.contains("b.yaml"), "{message}");
}

#[test]
fn same_name_in_different_kinds_or_namespaces_is_not_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("web", "80"));
    write(
        dir.path(),
        "b.yaml",
        &service("web", "80").replace("namespace: shop", "namespace: other"),
    );
    write(
        dir.path(),
        "c.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web\n  namespace: shop\naddressType: IPv4\nendpoints: []\n",
    );
    let directory = ManifestDirectory::load(dir.path());
    assert_eq!(directory.errors(), &[] as &[ManifestError]);
    assert_eq!(directory.applied().len(), 3);
}

#[test]
fn broken_new_version_keeps_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "svc.yaml", &service("web", "80"));
    let mut directory = ManifestDirectory::load(dir.path());
    assert_eq!(service_port(&directory, "web"), Some(80));

    write(dir.path(), "svc.yaml", &service("web", "not-a-port"));
    let changes = directory.rescan(&BTreeSet::new());
    assert!(changes.is_empty(), "a broken version must not change anything: {changes:?}");
    assert_eq!(service_port(&directory, "web"), Some(80));
    assert_eq!(directory.errors().len(), 1);

    write(dir.path(), "svc.yaml", &service("web", "8080"));
    let changes = directory.rescan(&BTreeSet::new());
    assert_eq!(summary(&changes), vec![(ObjectKind::Service, "shop/web".to_owned(), false)]);
    assert_eq!(service_port(&directory, "web"), Some(8080));
    assert!(directory.errors().is_empty());
}

/// Issue 21: a version the API server would refuse (a cluster IP `10.96.0.300`: it parses as a
/// string, so only the semantic check finds it) keeps the last good version, as a type error
/// does, and the error names file, line, object and field. It used to delete the frontend.
#[test]
fn semantically_broken_new_version_keeps_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let good = service("web", "80") + "  clusterIP: 10.96.0.30\n";
    write(dir.path(), "svc.yaml", &good);
    let mut directory = ManifestDirectory::load(dir.path());
    let cluster_ip = |directory: &ManifestDirectory| {
        let state = directory.state();
        state.services.get(&ObjectKey::new("shop", "web"))?.spec.as_ref()?.cluster_ip.clone()
    };
    assert_eq!(cluster_ip(&directory).as_deref(), Some("10.96.0.30"));

    write(dir.path(), "svc.yaml", &good.replace("10.96.0.30", "10.96.0.300"));
    let changes = directory.rescan(&BTreeSet::new());
    assert!(changes.is_empty(), "a refused version must not change anything: {changes:?}");
    assert_eq!(cluster_ip(&directory).as_deref(), Some("10.96.0.30"));
    let errors: Vec<String> = directory.errors().iter().map(ToString::to_string).collect();
    let expected = format!(
        "{}:9 (document 1): Service shop/web: spec.clusterIP: \"10.96.0.300\" is not an IP address",
        dir.path().join("svc.yaml").display()
    );
    assert_eq!(errors, vec![expected]);
    assert!(matches!(directory.errors(), [ManifestError::Refused { .. }]));

    write(dir.path(), "svc.yaml", &good.replace("10.96.0.30", "10.96.0.31"));
    let changes = directory.rescan(&BTreeSet::new());
    assert_eq!(summary(&changes), vec![(ObjectKind::Service, "shop/web".to_owned(), false)]);
    assert_eq!(cluster_ip(&directory).as_deref(), Some("10.96.0.31"));
    assert!(directory.errors().is_empty());
}

/// Without a last good version a refused object does not apply at all; the other objects of
/// the file do. Every refused field is an error of its own (one line each in `validate`).
#[test]
fn a_refused_object_without_a_good_version_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let bad = service("bad", "70000") + "  clusterIP: 10.96.0.300\n";
    write(dir.path(), "svc.yaml", &format!("{}---\n{bad}", service("good", "80")));
    let directory = ManifestDirectory::load(dir.path());
    assert_eq!(service_port(&directory, "good"), Some(80));
    assert_eq!(service_port(&directory, "bad"), None);
    let errors: Vec<String> = directory.errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains(":17 (document 2): Service shop/bad: spec.ports[0].port"),
        "{errors:#?}"
    );
    assert!(
        errors[1].contains(":18 (document 2): Service shop/bad: spec.clusterIP"),
        "{errors:#?}"
    );
}

#[test]
fn unreadable_document_keeps_everything_its_file_defined() {
    let dir = tempfile::tempdir().unwrap();
    let both = format!("{}---\n{}", service("a", "80"), service("b", "81"));
    write(dir.path(), "svc.yaml", &both);
    let mut directory = ManifestDirectory::load(dir.path());
    // The second document becomes unreadable YAML: we cannot tell which object it was.
    write(dir.path(), "svc.yaml", &format!("{}---\nkind: [unclosed\n", service("a", "80")));
    let changes = directory.rescan(&BTreeSet::new());
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(service_port(&directory, "b"), Some(81));
    assert!(matches!(directory.errors(), [ManifestError::Syntax { .. }]));
}

#[test]
fn removing_an_object_or_a_file_deletes_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &format!("{}---\n{}", service("a", "80"), service("b", "81")));
    write(dir.path(), "c.yaml", &service("c", "82"));
    let mut directory = ManifestDirectory::load(dir.path());

    write(dir.path(), "a.yaml", &service("a", "80"));
    fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let changes = directory.rescan(&BTreeSet::new());
    assert_eq!(
        summary(&changes),
        vec![
            (ObjectKind::Service, "shop/b".to_owned(), true),
            (ObjectKind::Service, "shop/c".to_owned(), true),
        ]
    );
}

#[test]
fn rescan_without_changes_reports_nothing_and_touched_files_are_reread() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", "80"));
    let mut directory = ManifestDirectory::load(dir.path());
    assert!(directory.rescan(&BTreeSet::new()).is_empty());
    let touched = BTreeSet::from([dir.path().join("a.yaml")]);
    assert!(directory.rescan(&touched).is_empty(), "re-reading equal content is no change");
}

#[test]
fn fixing_a_duplicate_switches_nothing_and_deleting_the_first_promotes_the_second() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("web", "80"));
    write(dir.path(), "b.yaml", &service("web", "81"));
    let mut directory = ManifestDirectory::load(dir.path());
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let changes = directory.rescan(&BTreeSet::new());
    assert_eq!(summary(&changes), vec![(ObjectKind::Service, "shop/web".to_owned(), false)]);
    assert_eq!(service_port(&directory, "web"), Some(81));
    assert!(directory.errors().is_empty());
}

#[test]
fn unsupported_kinds_are_listed_as_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\n{}",
            service("web", "80")
        ),
    );
    let directory = ManifestDirectory::load(dir.path());
    assert!(directory.errors().is_empty());
    assert_eq!(directory.ignored().len(), 1);
    let message = directory.ignored()[0].to_string();
    assert!(message.contains("Deployment web") && message.contains("ignored"), "{message}");
}

#[test]
fn missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let directory = ManifestDirectory::load(dir.path().join("nope"));
    assert!(matches!(directory.errors(), [ManifestError::Directory { .. }]));
    assert!(directory.applied().is_empty());
}

#[test]
fn a_single_file_can_be_the_root() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", "80"));
    write(dir.path(), "b.yaml", &service("b", "80"));
    let directory = ManifestDirectory::load(dir.path().join("a.yaml"));
    assert_eq!(directory.applied().len(), 1);
    assert_eq!(service_port(&directory, "a"), Some(80));
}

#[test]
fn location_of_points_at_the_defining_document() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &format!("{}---\n{}", service("a", "80"), service("b", "81")));
    let directory = ManifestDirectory::load(dir.path());
    let location =
        directory.location_of(&(ObjectKind::Service, ObjectKey::new("shop", "b"))).unwrap();
    assert_eq!((location.document, location.line), (2, 10));
}

#[test]
fn unknown_fields_are_warnings_and_the_object_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        &service("web", "80").replace("  - port: 80\n", "  - port: 80\n    targetport: 8080\n"),
    );
    let directory = ManifestDirectory::load(dir.path());
    assert!(directory.errors().is_empty());
    assert_eq!(service_port(&directory, "web"), Some(80));
    let warnings: Vec<String> = directory.warnings().iter().map(ToString::to_string).collect();
    let expected = format!(
        "{}:9 (document 1): Service shop/web: unknown field \"spec.ports[0].targetport\" (ignored)",
        dir.path().join("a.yaml").display()
    );
    assert_eq!(warnings, vec![expected]);
}

/// The standalone controller's status file is merged into the Services it names; changing it
/// re-emits exactly those Services, and it is never read as a manifest.
#[test]
fn the_status_file_sets_service_status() {
    use switchyard_k8s::manifest::{STATUS_FILE, StatusFile};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "web.yaml", &service("web", "80"));
    write(dir.path(), "api.yaml", &service("api", "81"));
    let mut status = StatusFile::default();
    let ingress = |ip: &str| {
        serde_json::from_value(
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}),
        )
        .unwrap()
    };
    status.services.insert("shop/web".to_owned(), ingress("192.0.2.1"));
    let path = dir.path().join(STATUS_FILE);
    status.write(&path).unwrap();

    let mut directory = ManifestDirectory::load(dir.path());
    assert!(directory.errors().is_empty(), "{:?}", directory.errors());
    let ip_of = |directory: &ManifestDirectory, name: &str| {
        let state = directory.state();
        let service = state.services.get(&ObjectKey::new("shop", name)).cloned().unwrap();
        let ingress = service.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress);
        ingress.and_then(|i| i[0].ip.clone())
    };
    assert_eq!(ip_of(&directory, "web").as_deref(), Some("192.0.2.1"));
    assert_eq!(ip_of(&directory, "api"), None);

    status.services.insert("shop/api".to_owned(), ingress("192.0.2.2"));
    status.write(&path).unwrap();
    let changes = directory.update_paths(&BTreeSet::from([path.clone()]));
    assert_eq!(summary(&changes), [(ObjectKind::Service, "shop/api".to_owned(), false)]);
    assert_eq!(ip_of(&directory, "api").as_deref(), Some("192.0.2.2"));
    // A changed manifest keeps its recorded status; a full rescan finds nothing new.
    write(dir.path(), "web.yaml", &service("web", "8080"));
    let changes = directory.update_paths(&BTreeSet::from([dir.path().join("web.yaml")]));
    assert_eq!(summary(&changes), [(ObjectKind::Service, "shop/web".to_owned(), false)]);
    assert_eq!(ip_of(&directory, "web").as_deref(), Some("192.0.2.1"));
    assert!(directory.rescan(&BTreeSet::new()).is_empty());
}

#[test]
fn namespaces_are_read_for_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let namespace =
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: red\n";
    write(dir.path(), "namespace.yaml", namespace);
    write(dir.path(), "web.yaml", &service("web", "80"));
    let directory = ManifestDirectory::load(dir.path());
    assert!(directory.errors().is_empty(), "{:?}", directory.errors());
    assert!(directory.ignored().is_empty(), "{:?}", directory.ignored());
    let state = directory.state();
    let shop = state.namespaces.get(&ObjectKey::cluster("shop")).unwrap();
    assert_eq!(shop.metadata.labels.as_ref().unwrap()["team"], "red");
    assert_eq!(service_port(&directory, "web"), Some(80));

    // Namespaces are checked like every other kind.
    write(dir.path(), "bad.yaml", "apiVersion: v2\nkind: Namespace\nmetadata:\n  name: other\n");
    let directory = ManifestDirectory::load(dir.path());
    let errors: Vec<String> = directory.errors().iter().map(ToString::to_string).collect();
    assert!(
        errors.len() == 1 && errors[0].contains("apiVersion v2 is not supported for Namespace"),
        "{errors:?}"
    );
    assert_eq!(directory.state().namespaces.len(), 1);
}

/// Issue 18 item 6: a file over the 64 MiB limit is refused by name with the limit, unparsed,
/// and the other files still apply.
#[test]
fn a_file_over_the_size_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &service("a", "80"));
    let huge = dir.path().join("huge.yaml");
    let file = fs::File::create(&huge).unwrap();
    file.set_len(switchyard_k8s::manifest::MAX_FILE_BYTES + 1).unwrap();
    let directory = ManifestDirectory::load(dir.path());
    let errors: Vec<String> = directory.errors().iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("huge.yaml")
            && errors[0].contains("larger than the limit of 67108864 bytes (64 MiB)"),
        "{errors:?}"
    );
    assert_eq!(service_port(&directory, "a"), Some(80));
}
