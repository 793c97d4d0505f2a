//! The API source against a fake API server speaking the real list/watch protocol over HTTP:
//! first-list gating, selectors, watch events, bookmarks, reconnects and relists after 410 Gone,
//! and our own kinds with or without their CRDs installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::ByteString;
use serde_json::json;
use switchyard_k8s::api::{ApiOptions, ApiUpdate, ApiWatcher, InitialList};
use switchyard_model::{Change, ClusterState, ObjectKey};
use switchyard_testing::fake_api::{FakeApi, GoneStyle, Resource, node, service, slice};

const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(10);

fn options(initial_list: InitialList) -> ApiOptions {
    ApiOptions {
        initial_list,
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..ApiOptions::new(NODE)
    }
}

fn start(api: &FakeApi, initial_list: InitialList) -> ApiWatcher {
    ApiWatcher::start_with(api.client(), options(initial_list), Duration::from_secs(5))
}

async fn next(watcher: &mut ApiWatcher) -> ApiUpdate {
    tokio::time::timeout(WAIT, watcher.next())
        .await
        .expect("no update in time")
        .expect("watch ended")
}

/// Applies updates until `done` holds for the state.
async fn until(
    watcher: &mut ApiWatcher,
    state: &mut ClusterState,
    done: impl Fn(&ClusterState) -> bool,
) -> Vec<Change> {
    let mut seen = Vec::new();
    while !done(state) {
        let update = next(watcher).await;
        for change in update.changes {
            seen.push(change.clone());
            state.apply(change);
        }
    }
    seen
}

/// Waits until the client has a watch open for every kind (after a list, watches start a moment
/// later than the first update).
async fn watches_open(api: &FakeApi) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.open_watches() < 7 {
        assert!(tokio::time::Instant::now() < deadline, "watches not opened in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(namespace, name)
}

fn names(map: &std::collections::BTreeMap<ObjectKey, impl Sized>) -> Vec<String> {
    map.keys().map(ToString::to_string).collect()
}

/// The usual cluster: one Service with a slice, one for another proxy, one headless, two nodes.
fn populate(api: &FakeApi) {
    api.put(service("default", "web", json!({}), "10.96.0.10", 80));
    api.put(slice("default", "web-abc", "web", json!({}), &["10.0.0.1", "10.0.0.2"]));
    let other = json!({ "service.kubernetes.io/service-proxy-name": "other-proxy" });
    api.put(service("default", "elsewhere", other.clone(), "10.96.0.11", 80));
    api.put(slice("default", "elsewhere-abc", "elsewhere", other, &["10.0.1.1"]));
    let headless = json!({ "service.kubernetes.io/headless": "" });
    api.put(service("default", "db", headless.clone(), "10.96.0.12", 5432));
    api.put(slice("default", "db-abc", "db", headless, &["10.0.2.1"]));
    api.put(node(NODE, "192.168.1.10", "zone-1"));
    api.put(node("node-b", "192.168.1.11", "zone-2"));
}

#[tokio::test]
async fn first_update_waits_for_every_kind_and_holds_only_what_the_selectors_admit() {
    for initial_list in [InitialList::Streaming, InitialList::ListWatch] {
        let api = FakeApi::start().await;
        populate(&api);
        api.hold(Resource::Nodes);
        let mut watcher = start(&api, initial_list);
        let early = tokio::time::timeout(Duration::from_millis(500), watcher.next()).await;
        assert!(early.is_err(), "{initial_list:?}: an update came out before Nodes were listed");
        api.release(Resource::Nodes);
        let mut state = ClusterState::default();
        for change in next(&mut watcher).await.changes {
            state.apply(change);
        }
        assert_eq!(names(&state.services), ["default/web"], "{initial_list:?}");
        assert_eq!(names(&state.endpoint_slices), ["default/web-abc"], "{initial_list:?}");
        // Every Node: L2 mode chooses among all of them.
        assert_eq!(names(&state.nodes), [NODE, "node-b"], "{initial_list:?}");
        let own = &state.nodes[&ObjectKey::cluster(NODE)];
        let address = &own.status.as_ref().unwrap().addresses.as_ref().unwrap()[0].address;
        assert_eq!(address, "192.168.1.10");
    }
}

#[tokio::test]
async fn the_director_scope_watches_every_node_this_proxys_services_and_bgp_peers() {
    let api = FakeApi::start().await;
    populate(&api);
    let options = ApiOptions {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..ApiOptions::director()
    };
    let mut watcher = ApiWatcher::start_with(api.client(), options, Duration::from_secs(5));
    let mut state = ClusterState::default();
    for change in next(&mut watcher).await.changes {
        state.apply(change);
    }
    assert_eq!(names(&state.services), ["default/web"]);
    assert_eq!(names(&state.endpoint_slices), ["default/web-abc"]);
    assert_eq!(names(&state.nodes), [NODE, "node-b"], "every Node, not one");
    // A Node added later arrives as a change.
    api.put(node("node-c", "192.168.1.12", "zone-3"));
    until(&mut watcher, &mut state, |s| s.nodes.contains_key(&ObjectKey::cluster("node-c"))).await;
    // The director announces its VIPs: BGPPeers, and the Secret a peer names, arrive too.
    api.put(secret("kube-system", "bgp", "s3cret"));
    api.put(bgp_peer("tor", Some(("kube-system", "bgp"))));
    until(&mut watcher, &mut state, |s| {
        s.bgp_peers.contains_key(&ObjectKey::cluster("tor"))
            && s.secrets.contains_key(&key("kube-system", "bgp"))
    })
    .await;
}

#[tokio::test]
async fn selectors_are_sent_to_the_api_server_in_the_query() {
    let api = FakeApi::start().await;
    populate(&api);
    let mut watcher = start(&api, InitialList::ListWatch);
    next(&mut watcher).await;
    watches_open(&api).await;
    let requests = api.requests();
    let expected_labels =
        "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";
    for resource in [Resource::Services, Resource::EndpointSlices] {
        let of_kind: Vec<_> = requests.iter().filter(|r| r.resource == Some(resource)).collect();
        assert!(of_kind.iter().any(|r| r.is_list()), "{resource:?}: no list");
        for request in of_kind {
            assert_eq!(
                request.query.get("labelSelector").map(String::as_str),
                Some(expected_labels),
                "{resource:?}"
            );
        }
    }
    let node_requests: Vec<_> =
        requests.iter().filter(|r| r.resource == Some(Resource::Nodes)).collect();
    assert!(!node_requests.is_empty());
    // Every Node: L2 mode chooses the node answering for an address among all of them.
    for request in node_requests {
        assert_eq!(request.query.get("fieldSelector"), None, "{request:?}");
    }
    let watches: Vec<_> = requests.iter().filter(|r| r.is_watch()).collect();
    assert!(!watches.is_empty());
    assert!(
        watches
            .iter()
            .all(|r| r.query.get("allowWatchBookmarks").map(String::as_str) == Some("true"))
    );
}

#[tokio::test]
async fn named_proxy_selects_only_services_labelled_with_its_name() {
    let api = FakeApi::start().await;
    populate(&api);
    let options = ApiOptions {
        proxy_name: Some("other-proxy".to_owned()),
        ..options(InitialList::Streaming)
    };
    let mut watcher = ApiWatcher::start_with(api.client(), options, Duration::from_secs(5));
    let mut state = ClusterState::default();
    for change in next(&mut watcher).await.changes {
        state.apply(change);
    }
    assert_eq!(names(&state.services), ["default/elsewhere"]);
    assert_eq!(names(&state.endpoint_slices), ["default/elsewhere-abc"]);
}

#[tokio::test]
async fn watch_events_after_the_first_list_become_changes() {
    let api = FakeApi::start().await;
    populate(&api);
    let mut watcher = start(&api, InitialList::Streaming);
    let mut state = ClusterState::default();
    until(&mut watcher, &mut state, |s| s.services.len() == 1).await;

    api.put(service("default", "api", json!({}), "10.96.0.20", 443));
    until(&mut watcher, &mut state, |s| s.services.contains_key(&key("default", "api"))).await;

    api.put(slice("default", "web-abc", "web", json!({}), &["10.0.0.9"]));
    until(&mut watcher, &mut state, |s| {
        s.endpoint_slices[&key("default", "web-abc")].endpoints[0].addresses == ["10.0.0.9"]
    })
    .await;

    api.delete(Resource::EndpointSlices, "default", "web-abc");
    until(&mut watcher, &mut state, |s| s.endpoint_slices.is_empty()).await;

    // Labelled for another proxy: it leaves the selector, which the API server reports as a deletion.
    let other = json!({ "service.kubernetes.io/service-proxy-name": "other-proxy" });
    api.put(service("default", "api", other, "10.96.0.20", 443));
    until(&mut watcher, &mut state, |s| !s.services.contains_key(&key("default", "api"))).await;

    // Every node's changes arrive (L2 mode chooses among all Nodes).
    api.put(node("node-b", "192.168.1.99", "zone-2"));
    api.put(node(NODE, "192.168.1.20", "zone-1"));
    let address = |s: &ClusterState, node: &str| {
        s.nodes[&ObjectKey::cluster(node)].status.as_ref().unwrap().addresses.as_ref().unwrap()[0]
            .address
            .clone()
    };
    until(&mut watcher, &mut state, |s| {
        address(s, NODE) == "192.168.1.20" && address(s, "node-b") == "192.168.1.99"
    })
    .await;
}

/// The Cilium bug (cilium#48050): the watch breaks, an EndpointSlice is deleted meanwhile and the
/// history is compacted, so the client must relist — and must then report the deletion.
#[tokio::test]
async fn endpointslice_deleted_while_the_watch_was_down_is_deleted_after_the_relist() {
    let cases = [
        (InitialList::Streaming, GoneStyle::ErrorEvent),
        (InitialList::Streaming, GoneStyle::Http),
        (InitialList::ListWatch, GoneStyle::ErrorEvent),
        (InitialList::ListWatch, GoneStyle::Http),
    ];
    for (initial_list, gone) in cases {
        let case = format!("{initial_list:?} / 410 as {gone:?}");
        let api = FakeApi::start().await;
        api.set_gone_style(gone);
        populate(&api);
        api.put(slice("default", "web-def", "web", json!({}), &["10.0.0.3"]));
        let mut watcher = start(&api, initial_list);
        let mut state = ClusterState::default();
        until(&mut watcher, &mut state, |s| s.endpoint_slices.len() == 2).await;
        let requests_before = api.requests().len();

        api.outage(|outage| {
            outage.delete(Resource::EndpointSlices, "default", "web-abc");
            outage.put(slice("default", "web-def", "web", json!({}), &["10.0.0.4"]));
            outage.compact();
        });
        let seen = until(&mut watcher, &mut state, |s| {
            !s.endpoint_slices.contains_key(&key("default", "web-abc"))
                && s.endpoint_slices[&key("default", "web-def")].endpoints[0].addresses
                    == ["10.0.0.4"]
        })
        .await;
        let deletions: Vec<_> =
            seen.iter().filter(|c| c.is_delete()).map(|c| c.key().to_string()).collect();
        assert_eq!(deletions, ["default/web-abc"], "{case}");
        // Nothing that did not change comes again: the Service and the node are not in the relist diff.
        assert!(seen.iter().all(|c| c.key().name.starts_with("web-")), "{case}: {seen:?}");
        assert_eq!(names(&state.services), ["default/web"], "{case}");

        // It really relisted after a 410 on a resumed watch.
        let after = &api.requests()[requests_before..];
        let resumed_gone = after.iter().any(|r| {
            r.resource == Some(Resource::EndpointSlices)
                && r.is_watch()
                && !r.streams_initial_events()
        });
        let relisted = after.iter().any(|r| {
            r.resource == Some(Resource::EndpointSlices)
                && (r.is_list() || r.streams_initial_events())
        });
        assert!(resumed_gone && relisted, "{case}: {after:?}");

        // And the watch goes on afterwards.
        api.put(slice("default", "web-ghi", "web", json!({}), &["10.0.0.5"]));
        until(&mut watcher, &mut state, |s| {
            s.endpoint_slices.contains_key(&key("default", "web-ghi"))
        })
        .await;
    }
}

#[tokio::test]
async fn reconnect_without_compaction_resumes_and_misses_nothing() {
    let api = FakeApi::start().await;
    populate(&api);
    let mut watcher = start(&api, InitialList::Streaming);
    let mut state = ClusterState::default();
    until(&mut watcher, &mut state, |s| s.endpoint_slices.len() == 1).await;
    let requests_before = api.requests().len();
    api.outage(|outage| {
        outage.delete(Resource::EndpointSlices, "default", "web-abc");
        outage.put(service("default", "api", json!({}), "10.96.0.20", 443));
    });
    let seen = until(&mut watcher, &mut state, |s| {
        s.endpoint_slices.is_empty() && s.services.contains_key(&key("default", "api"))
    })
    .await;
    assert_eq!(seen.len(), 2, "each change once: {seen:?}");
    let after = &api.requests()[requests_before..];
    assert!(
        after.iter().all(|r| r.is_watch() && !r.streams_initial_events()),
        "no relist: {after:?}"
    );
}

#[tokio::test]
async fn bookmarks_move_the_resume_point_past_compacted_history() {
    let api = FakeApi::start().await;
    populate(&api);
    let mut watcher = start(&api, InitialList::ListWatch);
    let mut state = ClusterState::default();
    until(&mut watcher, &mut state, |s| s.services.len() == 1).await;
    watches_open(&api).await;
    // History moves on with objects this client does not see (headless), then a bookmark.
    let headless = json!({ "service.kubernetes.io/headless": "" });
    for i in 0..5 {
        api.put(service("default", &format!("hidden-{i}"), headless.clone(), "10.96.1.1", 80));
    }
    let bookmark = api.bookmark();
    // Give the client a moment to read the bookmark; then only history before it is compacted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests_before = api.requests().len();
    api.outage(|outage| outage.compact_below(bookmark));
    api.put(service("default", "api", json!({}), "10.96.0.20", 443));
    until(&mut watcher, &mut state, |s| s.services.contains_key(&key("default", "api"))).await;
    let after = &api.requests()[requests_before..];
    assert!(after.iter().all(|r| r.is_watch()), "resumed without a relist: {after:?}");
    let services_resume = after.iter().find(|r| r.resource == Some(Resource::Services)).unwrap();
    assert_eq!(services_resume.resource_version(), Some(bookmark.to_string().as_str()));
}

#[tokio::test]
async fn refused_streaming_list_falls_back_to_list_and_watch() {
    let api = FakeApi::start().await;
    api.refuse_streaming_lists();
    populate(&api);
    let mut watcher = start(&api, InitialList::Streaming);
    let mut state = ClusterState::default();
    until(&mut watcher, &mut state, |s| s.services.len() == 1 && s.nodes.len() == 2).await;
    let requests = api.requests();
    for resource in [Resource::Services, Resource::EndpointSlices, Resource::Nodes] {
        let of_kind: Vec<_> = requests.iter().filter(|r| r.resource == Some(resource)).collect();
        assert!(of_kind[0].streams_initial_events(), "{resource:?} tried streaming first");
        assert!(of_kind.iter().any(|r| r.is_list()), "{resource:?} then listed");
    }
}

#[tokio::test]
async fn ignored_streaming_list_falls_back_to_list_and_watch_after_the_timeout() {
    let api = FakeApi::start().await;
    api.ignore_streaming_lists();
    populate(&api);
    let mut watcher = ApiWatcher::start_with(
        api.client(),
        options(InitialList::Streaming),
        Duration::from_secs(1),
    );
    let started = tokio::time::Instant::now();
    let mut state = ClusterState::default();
    for change in next(&mut watcher).await.changes {
        state.apply(change);
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "not before the streaming timeout");
    assert_eq!(names(&state.services), ["default/web"]);
    assert_eq!(names(&state.endpoint_slices), ["default/web-abc"]);
    assert_eq!(names(&state.nodes), [NODE, "node-b"]);
    let requests = api.requests();
    for resource in [Resource::Services, Resource::EndpointSlices, Resource::Nodes] {
        let of_kind: Vec<_> = requests.iter().filter(|r| r.resource == Some(resource)).collect();
        assert!(of_kind[0].streams_initial_events(), "{resource:?} tried streaming first");
        assert!(of_kind.iter().any(|r| r.is_list()), "{resource:?} then listed");
    }
}

fn ip_pool(name: &str, cidr: &str) -> serde_json::Value {
    json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "IPPool",
        "metadata": {"name": name}, "spec": {"addresses": [cidr]},
    })
}

#[tokio::test]
async fn our_kinds_are_watched_and_a_missing_crd_holds_nothing_back() {
    for initial_list in [InitialList::Streaming, InitialList::ListWatch] {
        let api = FakeApi::start().await;
        api.set_crds_installed(false);
        populate(&api);
        let mut watcher = start(&api, initial_list);
        let mut state = ClusterState::default();
        // Services, slices and the node arrive although no IPPool list can succeed.
        for change in next(&mut watcher).await.changes {
            state.apply(change);
        }
        assert_eq!(names(&state.services), ["default/web"], "{initial_list:?}");
        assert!(state.ip_pools.is_empty());
        let refused =
            api.requests().iter().filter(|r| r.resource == Some(Resource::IPPools)).count();
        assert!(refused >= 1, "{initial_list:?}: IPPools were asked for");

        // The CRD is installed later: pools arrive without a restart, and deletions follow.
        api.set_crds_installed(true);
        api.put(ip_pool("public", "192.0.2.0/24"));
        until(&mut watcher, &mut state, |s| s.ip_pools.contains_key(&ObjectKey::cluster("public")))
            .await;
        api.delete(Resource::IPPools, "", "public");
        until(&mut watcher, &mut state, |s| s.ip_pools.is_empty()).await;

        // The CRD is removed again: what was seen is reported deleted, Services keep flowing.
        api.put(ip_pool("second", "198.51.100.0/24"));
        until(&mut watcher, &mut state, |s| s.ip_pools.len() == 1).await;
        api.set_crds_installed(false);
        until(&mut watcher, &mut state, |s| s.ip_pools.is_empty()).await;
        api.put(service("default", "api", json!({}), "10.96.0.20", 443));
        until(&mut watcher, &mut state, |s| s.services.contains_key(&key("default", "api"))).await;
    }
}

fn bgp_peer(name: &str, secret: Option<(&str, &str)>) -> serde_json::Value {
    let mut spec = json!({"peerAddress": "192.168.1.1", "peerASN": 64500, "myASN": 64512});
    if let Some((namespace, name)) = secret {
        spec["passwordSecret"] = json!({"namespace": namespace, "name": name});
    }
    json!({
        "apiVersion": "switchyard.io/v1alpha1", "kind": "BGPPeer",
        "metadata": {"name": name}, "spec": spec,
    })
}

fn secret(namespace: &str, name: &str, password: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        // Data as the API server holds it (base64, which ByteString writes).
        "data": {"password": ByteString(password.as_bytes().to_vec())},
    })
}

#[tokio::test]
async fn only_the_secrets_bgp_peers_name_are_watched_each_by_name() {
    let api = FakeApi::start().await;
    populate(&api);
    api.put(secret("kube-system", "bgp", "s3cret"));
    api.put(secret("default", "bgp", "same name, other namespace"));
    api.put(secret("kube-system", "unrelated", "never read"));
    api.put(bgp_peer("tor", Some(("kube-system", "bgp"))));
    let mut watcher = start(&api, InitialList::Streaming);
    let mut state = ClusterState::default();
    let named = key("kube-system", "bgp");
    until(&mut watcher, &mut state, |s| s.secrets.contains_key(&named)).await;
    let password = &state.secrets[&named].data.as_ref().unwrap()["password"];
    assert_eq!(password.0, b"s3cret");

    // A peer naming another Secret: it is watched too; a changed Secret arrives.
    api.put(bgp_peer("tor2", Some(("default", "bgp"))));
    until(&mut watcher, &mut state, |s| s.secrets.len() == 2).await;
    api.put(secret("kube-system", "bgp", "changed"));
    until(&mut watcher, &mut state, |s| {
        s.secrets[&named].data.as_ref().unwrap()["password"].0 == b"changed"
    })
    .await;

    // No peer names it any more: it is forgotten (a deletion) and its watch stops.
    api.put(bgp_peer("tor", None));
    until(&mut watcher, &mut state, |s| !s.secrets.contains_key(&named)).await;
    assert!(state.secrets.contains_key(&key("default", "bgp")));
    assert!(!state.secrets.contains_key(&key("kube-system", "unrelated")));

    // Every Secret request named one Secret in one namespace: no Secret list of a namespace
    // or of the cluster, so RBAC's resourceNames can hold the agent to the named ones.
    let requests: Vec<_> =
        api.requests().into_iter().filter(|r| r.resource == Some(Resource::Secrets)).collect();
    assert!(!requests.is_empty());
    for request in &requests {
        let fields = request.query.get("fieldSelector").map(String::as_str);
        assert!(matches!(fields, Some("metadata.name=bgp")), "{request:?}");
    }
}
