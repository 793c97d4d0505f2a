//! Writing one annotation of a Node (the director's previous-node record on its own Node):
//! a JSON merge patch of `metadata.annotations`, so nothing else of the object is touched and
//! no resourceVersion is needed.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Sets annotation `key` of Node `node` to `value` (`None` removes it).
pub async fn annotate_node(
    client: &kube::Client,
    node: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), kube::Error> {
    let patch = json!({ "metadata": { "annotations": { key: value } } });
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
