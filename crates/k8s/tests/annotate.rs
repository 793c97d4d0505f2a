//! `annotate_node` against the fake API server: one annotation of a Node set and removed by a
//! merge patch, the rest of the object untouched.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchyard_k8s::api::annotate_node;
use switchyard_testing::fake_api::{FakeApi, Resource};

#[tokio::test]
async fn sets_and_removes_one_annotation_and_leaves_the_rest() {
    let api = FakeApi::start().await;
    api.put(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "dir1", "labels": {"a": "b"}, "annotations": {"other": "kept"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}
    }));
    let client = api.client();
    annotate_node(&client, "dir1", "switchyard.io/director-previous", Some("{\"v\":1}"))
        .await
        .unwrap();
    let node = api.get(Resource::Nodes, "", "dir1").unwrap();
    assert_eq!(node["metadata"]["annotations"]["switchyard.io/director-previous"], "{\"v\":1}");
    assert_eq!(node["metadata"]["annotations"]["other"], "kept");
    assert_eq!(node["metadata"]["labels"]["a"], "b");
    assert_eq!(node["status"]["addresses"][0]["address"], "10.0.0.1");
    let patch = api.requests().into_iter().rfind(|r| r.is_write()).unwrap();
    assert_eq!((patch.method.as_str(), patch.name.as_deref()), ("PATCH", Some("dir1")));
    annotate_node(&client, "dir1", "switchyard.io/director-previous", None).await.unwrap();
    let node = api.get(Resource::Nodes, "", "dir1").unwrap();
    assert!(node["metadata"]["annotations"].get("switchyard.io/director-previous").is_none());
    assert_eq!(node["metadata"]["annotations"]["other"], "kept");
    assert!(annotate_node(&client, "gone", "k", Some("v")).await.is_err(), "a missing Node");
}
