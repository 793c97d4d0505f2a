//! What deploy/'s manifests grant a container, read from the files themselves, so a test that
//! runs a role with "exactly the DaemonSet's capabilities" cannot drift from the DaemonSet.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository's deploy/ directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The capabilities the DaemonSet `daemon_set` in deploy/`file` adds to its container
/// `container` after dropping all, in setpriv's syntax (`+bpf,+net_admin`).
pub fn daemon_set_capabilities(file: &str, daemon_set: &str, container: &str) -> String {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let found = serde_norway::Deserializer::from_str(&text)
        .map(|document| serde_json::Value::deserialize(document).unwrap())
        .find(|object| object["kind"] == "DaemonSet" && object["metadata"]["name"] == daemon_set)
        .unwrap_or_else(|| panic!("{}: no DaemonSet {daemon_set}", path.display()));
    let containers = found["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    let found = containers
        .iter()
        .find(|c| c["name"] == container)
        .unwrap_or_else(|| panic!("{}: no container {container}", path.display()));
    let capabilities = &found["securityContext"]["capabilities"];
    assert_eq!(capabilities["drop"], serde_json::json!(["ALL"]), "{container} drops all");
    let added: Vec<String> = capabilities["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("+{}", c.as_str().unwrap().to_lowercase()))
        .collect();
    assert!(!added.is_empty(), "{container} adds capabilities");
    added.join(",")
}
