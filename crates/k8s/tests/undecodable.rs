//! Objects the typed watch cannot decode (possible with a version skew: a real API server
//! validates Services, EndpointSlices and Nodes) are named in the log — kind, namespace/name,
//! the serde error — instead of an unnamed watch error, and everything else is served
//! (issue 16). Against the fake API server (real list/watch over HTTP), with streaming lists
//! and with LIST+WATCH.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use switchyard_k8s::api::{ApiOptions, ApiWatcher, InitialList};
use switchyard_model::ClusterState;
use switchyard_testing::fake_api::{FakeApi, Resource, node, service, slice};

const WAIT: Duration = Duration::from_secs(10);

/// Every log line of this test binary (one global subscriber: the watch runs in tasks).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&sink);
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&writer)))
            .init();
        sink
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines that contain every one of `texts`.
fn lines_with(texts: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    text.lines().filter(|l| texts.iter().all(|t| l.contains(t))).map(str::to_owned).collect()
}

fn names(map: &std::collections::BTreeMap<switchyard_model::ObjectKey, impl Sized>) -> Vec<String> {
    map.keys().map(ToString::to_string).collect()
}

#[tokio::test]
async fn undecodable_objects_are_named_and_the_rest_is_served() {
    log();
    for (initial_list, ns) in [(InitialList::Streaming, "stream"), (InitialList::ListWatch, "list")]
    {
        let api = FakeApi::start().await;
        api.put(service(ns, "web", json!({}), "10.96.0.10", 80));
        api.put(slice(ns, "web-abc", "web", json!({}), &["10.0.0.1"]));
        api.put(node("node-a", "192.168.1.10", "zone-1"));
        // One object of each kind no client can decode.
        let mut bad_service = service(ns, "broken-svc", json!({}), "10.96.0.11", 80);
        bad_service["spec"]["ports"] = json!("eighty");
        api.put(bad_service);
        let mut bad_slice = slice(ns, "broken-slice", "web", json!({}), &["10.0.0.2"]);
        bad_slice["endpoints"] = json!([{"addresses": "10.0.0.2"}]);
        api.put(bad_slice);
        let mut bad_node = node(&format!("broken-node-{ns}"), "192.168.1.11", "zone-1");
        bad_node["status"]["addresses"] = json!("none");
        api.put(bad_node);

        let options = ApiOptions {
            initial_list,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..ApiOptions::director()
        };
        let mut watcher = ApiWatcher::start_with(api.client(), options, Duration::from_secs(5));
        let mut state = ClusterState::default();
        let served = until(&mut watcher, &mut state, |s| {
            !s.services.is_empty() && !s.endpoint_slices.is_empty() && !s.nodes.is_empty()
        })
        .await;
        assert!(served, "{initial_list:?}: the good objects were not served");
        assert_eq!(names(&state.services), [format!("{ns}/web")], "{initial_list:?}");
        assert_eq!(names(&state.endpoint_slices), [format!("{ns}/web-abc")], "{initial_list:?}");
        assert_eq!(names(&state.nodes), ["node-a"], "{initial_list:?}");

        let expected = [
            ("Service", format!("{ns}/broken-svc"), "invalid type: string \"eighty\""),
            ("EndpointSlice", format!("{ns}/broken-slice"), "invalid type: string \"10.0.0.2\""),
            ("Node", format!("broken-node-{ns}"), "invalid type: string \"none\""),
        ];
        let deadline = tokio::time::Instant::now() + WAIT;
        for (kind, object, error) in &expected {
            let want = [*kind, object.as_str(), *error, "cannot be decoded"];
            while lines_with(&want).is_empty() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{initial_list:?}: {kind} {object} not named with {error:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // Fixed, the Service is served; deleted, it goes.
        api.put(service(ns, "broken-svc", json!({}), "10.96.0.11", 80));
        let key = format!("{ns}/broken-svc");
        let fixed = until(&mut watcher, &mut state, |s| names(&s.services).contains(&key)).await;
        assert!(fixed, "{initial_list:?}: the fixed Service was not served");
        api.delete(Resource::Services, ns, "broken-svc");
        let gone = until(&mut watcher, &mut state, |s| !names(&s.services).contains(&key)).await;
        assert!(gone, "{initial_list:?}: the deleted Service stayed");
        assert_eq!(names(&state.services), [format!("{ns}/web")], "{initial_list:?}");
    }
}

/// Applies updates until `done` holds for the state (false after [`WAIT`]).
async fn until(
    watcher: &mut ApiWatcher,
    state: &mut ClusterState,
    done: impl Fn(&ClusterState) -> bool,
) -> bool {
    tokio::time::timeout(WAIT, async {
        while !done(state) {
            for change in watcher.next().await.unwrap().changes {
                state.apply(change);
            }
        }
    })
    .await
    .is_ok()
}
