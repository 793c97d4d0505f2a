//! The arguments deploy/director.yaml gives `switchyard director` are ones the binary accepts:
//! each `$(VAR)` replaced by its ConfigMap's value (or, for what the kubelet fills in, a value
//! of the right form), the flags are parsed for real; `--cleanup` then ends the run before
//! anything is loaded (on an empty directory it exits 1, naming it: not clap's usage error).
//! No privileges needed.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic on bad fixtures")]

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use switchyard_testing::deploy::deploy_dir;
use switchyard_testing::fake_api::yaml_objects;

#[test]
fn the_director_daemonsets_arguments_parse() {
    let text = std::fs::read_to_string(deploy_dir().join("director.yaml")).unwrap();
    let objects = yaml_objects(&text);
    let agent =
        yaml_objects(&std::fs::read_to_string(deploy_dir().join("configmap.yaml")).unwrap());
    // What the kubelet fills in: the downward API and the seed's Secret.
    let mut values: BTreeMap<String, String> = [
        ("NODE_NAME", "director-1"),
        ("HOST_IPS", "192.0.2.10,2001:db8::10"),
        ("SEED", "00112233445566778899aabbccddeeff"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into_iter()
    .collect();
    for config_map in objects.iter().chain(&agent).filter(|o| o["kind"] == "ConfigMap") {
        for (key, value) in config_map["data"].as_object().unwrap() {
            values.insert(key.clone(), value.as_str().unwrap().to_owned());
        }
    }
    let daemon_set = objects.iter().find(|o| o["kind"] == "DaemonSet").expect("a DaemonSet");
    let container = &daemon_set["spec"]["template"]["spec"]["containers"][0];
    let empty = tempfile::tempdir().unwrap();
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_str)
        .map(Option::unwrap)
        .map(|arg| substitute(arg, &values))
        // The test's own directory instead of the host's bpffs.
        .map(|arg| {
            if arg.starts_with("--bpf-dir=") {
                format!("--bpf-dir={}", empty.path().display())
            } else {
                arg
            }
        })
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("director"));
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(&args)
        .arg("--cleanup")
        .env("NODE_NAME", "director-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains("nothing to clean up"), "{args:?}: {stderr}");
}

/// `arg` with every `$(VAR)` replaced by its value (a missing one fails the test).
fn substitute(arg: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        let end = rest[start..].find(')').map(|e| e + start).expect("a closing parenthesis");
        let name = &rest[start + 2..end];
        let value = values.get(name).unwrap_or_else(|| panic!("{arg}: {name} undefined"));
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}
