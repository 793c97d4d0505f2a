//! What a manifest directory keeps between readings, counted in live heap bytes by a global
//! allocator (issue 20: the agent holds the directory for as long as it runs), so that keeping
//! objects in a larger form fails here instead of only showing in a benchmark. One test in this
//! binary: the counter is process-wide.
#![allow(clippy::unwrap_used)]

use switchyard_testing::live_heap::{LiveHeap, live};

use switchyard_k8s::manifest::ManifestDirectory;
use switchyard_model::synthetic::{self, SyntheticCluster};

#[global_allocator]
static GLOBAL: LiveHeap = LiveHeap;

/// At 1,000 Services × 25 endpoints (written as the benchmark writes them: `kind: List` files
/// of compact JSON), the directory keeps fewer bytes than its files: the objects compressed,
/// the per-object bookkeeping small. Kept as plain JSON with a `BTreeSet` per object, it kept
/// 1.61× the files (7.4 MB for 4.6 MB); compressed, 0.69×; with each file's documents indexed
/// by position instead of by a copy of each object's id, and one shared path per file (in the
/// object → files index and in every location), 0.48×; with the applied map rebuilt in one
/// pass after the bulk load (full B-tree nodes), 0.43×, 913 B per object where it was 1,020;
/// with the object → files index a B-tree rebuilt the same way instead of a hash table, and
/// its one-path lists without spare capacity, 0.38×, 796 B; with object names that copy
/// without allocating (`switchyard_model::Name`), 0.36×, 755 B (the second check fails above
/// 0.6×, the third above 775 B per object).
#[test]
fn a_directory_keeps_less_than_its_files() {
    let spec = SyntheticCluster { services: 1_000, endpoints_per_slice: 25, ..Default::default() };
    let state = synthetic::generate(&spec);
    let dir = tempfile::tempdir().unwrap();
    let mut objects: Vec<serde_json::Value> = Vec::new();
    objects.extend(state.nodes.values().map(|o| serde_json::to_value(o).unwrap()));
    objects.extend(state.services.values().map(|o| serde_json::to_value(o).unwrap()));
    objects.extend(state.endpoint_slices.values().map(|o| serde_json::to_value(o).unwrap()));
    let count = objects.len();
    let mut file_bytes = 0;
    for (i, chunk) in objects.chunks(500).enumerate() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": chunk});
        let text = serde_json::to_string(&list).unwrap();
        file_bytes += text.len();
        std::fs::write(dir.path().join(format!("cluster-{i:04}.json")), text).unwrap();
    }
    drop((objects, state));

    let before = live();
    let directory = ManifestDirectory::load(dir.path());
    let kept = live().saturating_sub(before);
    assert!(directory.errors().is_empty(), "{:?}", directory.errors());
    assert_eq!(directory.applied().len(), count);
    eprintln!(
        "{count} objects in {file_bytes} B of files; the directory keeps {kept} B ({:.3}×, {} B \
         per object)",
        kept as f64 / file_bytes as f64,
        kept / count
    );
    assert!(kept < file_bytes, "the directory keeps {kept} B for {file_bytes} B of files");
    assert!(
        kept * 10 < file_bytes * 6,
        "the directory keeps {kept} B for {file_bytes} B of files: per-object bookkeeping grew"
    );
    assert!(kept / count <= 775, "the directory keeps {} B per object", kept / count);
}
