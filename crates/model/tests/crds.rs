//! Our kinds: the CRDs in deploy/crds.yaml are the ones the Rust types generate, and every field
//! name the issues spell out is in the schema exactly as spelled.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::{Value, json};
use switchyard_model::crd::{self, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};

fn crds_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds.yaml")
}

/// deploy/crds.yaml as the types generate it.
fn generated() -> String {
    let mut text = String::from(
        "# Generated from crates/model/src/crd by crates/model/tests/crds.rs; do not edit.\n\
         # Regenerate: SWITCHYARD_BLESS=1 cargo test -p switchyard-model --test crds\n",
    );
    for definition in crd::definitions() {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(&definition).unwrap());
    }
    text
}

#[test]
fn committed_crds_equal_the_generated_ones() {
    let expected = generated();
    if std::env::var_os("SWITCHYARD_BLESS").is_some() {
        std::fs::write(crds_file(), &expected).unwrap();
    }
    let committed = std::fs::read_to_string(crds_file()).unwrap_or_default();
    assert!(
        committed == expected,
        "deploy/crds.yaml is out of date; regenerate it with \
         SWITCHYARD_BLESS=1 cargo test -p switchyard-model --test crds"
    );
}

/// The property names of the schema at `path` (dot-separated, through `properties`).
fn properties(definition: &Value, path: &str) -> Vec<String> {
    let mut schema = &definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for part in path.split('.') {
        schema = &schema["properties"][part];
    }
    let mut names: Vec<String> =
        schema["properties"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    names.sort();
    names
}

#[test]
fn kinds_are_cluster_scoped_in_our_group_with_the_field_names_the_issues_spell() {
    let definitions: Vec<Value> =
        crd::definitions().iter().map(|d| serde_json::to_value(d).unwrap()).collect();
    let names: Vec<&str> =
        definitions.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ippools.switchyard.io",
            "bgppeers.switchyard.io",
            "bgpadvertisements.switchyard.io",
            "l2advertisements.switchyard.io"
        ]
    );
    for definition in &definitions {
        assert_eq!(definition["spec"]["group"], "switchyard.io");
        assert_eq!(definition["spec"]["scope"], "Cluster");
        assert_eq!(definition["spec"]["versions"][0]["name"], "v1alpha1");
    }
    assert_eq!(
        properties(&definitions[0], "spec"),
        sorted(&[
            "addresses",
            "avoidBuggyIPs",
            "autoAssign",
            "serviceSelector",
            "namespaceSelector",
            "disabled"
        ])
    );
    assert_eq!(
        properties(&definitions[0], "status"),
        sorted(&["usedIPv4", "availableIPv4", "usedIPv6", "availableIPv6", "conditions"])
    );
    let peer = properties(&definitions[1], "spec");
    for field in [
        "peerAddress",
        "peerASN",
        "myASN",
        "peerPort",
        "holdTime",
        "keepaliveTime",
        "gracefulRestart",
        "passwordSecret",
        "ebgpMultiHop",
        "nodeSelector",
    ] {
        assert!(peer.contains(&field.to_owned()), "BGPPeer spec.{field} missing from {peer:?}");
    }
    let advertisement = properties(&definitions[2], "spec");
    for field in
        ["ipPools", "serviceSelector", "communities", "localPref", "aggregationLength", "peers"]
    {
        assert!(
            advertisement.contains(&field.to_owned()),
            "BGPAdvertisement spec.{field} missing from {advertisement:?}"
        );
    }
    assert_eq!(
        properties(&definitions[3], "spec"),
        sorted(&["ipPools", "serviceSelector", "nodeSelectors", "interfaces", "externalIPs"])
    );
}

#[test]
fn defaults_apply_when_fields_are_left_out() {
    let pool: IPPool = serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": {"addresses": ["192.0.2.0/28"]},
    }))
    .unwrap();
    assert!(pool.spec.auto_assign && !pool.spec.avoid_buggy_ips && !pool.spec.disabled);
    let peer: BGPPeer = serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "BGPPeer", "metadata": {"name": "tor"},
        "spec": {"peerAddress": "192.0.2.1", "peerASN": 65000, "myASN": 65001},
    }))
    .unwrap();
    assert_eq!((peer.spec.peer_port, peer.spec.hold_time.as_str()), (179, "90s"));
    assert!(!peer.spec.graceful_restart && !peer.spec.ebgp_multi_hop);
    let advertisement: BGPAdvertisement = serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "BGPAdvertisement",
        "metadata": {"name": "all"}, "spec": {},
    }))
    .unwrap();
    assert_eq!(advertisement.spec, Default::default());
    let l2: L2Advertisement = serde_json::from_value(json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "L2Advertisement",
        "metadata": {"name": "all"}, "spec": {},
    }))
    .unwrap();
    assert_eq!(l2.spec, Default::default());
}
