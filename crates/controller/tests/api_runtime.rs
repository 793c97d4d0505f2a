//! The controller against the fake API server: status and pool status writes, Events, restart
//! stability, write conflicts, leader handover, and a deletion missed during a watch outage.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use switchyard_controller::election::ElectionConfig;
use switchyard_controller::runtime::api::{self, ApiConfig};
use switchyard_k8s::api::ApiOptions;
use switchyard_testing::fake_api::{FakeApi, Resource};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A controller running in a task; dropping the handle's stop sender stops it cleanly, aborting
/// the task is a crash.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(fake: &FakeApi, identity: &str) -> Self {
        let mut election = ElectionConfig::new("kube-system", "switchyard-controller", identity);
        election.lease_duration = Duration::from_millis(1500);
        election.renew_deadline = Duration::from_millis(1000);
        election.retry_period = Duration::from_millis(200);
        let mut config = ApiConfig::new(None, election);
        config.watch = ApiOptions {
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..ApiOptions::controller()
        };
        config.retry_period = Duration::from_millis(100);
        let (stop, stopped) = watch::channel(false);
        let client = fake.client();
        let task = tokio::spawn(async move {
            api::run(client, config, stopped).await.unwrap();
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }

    fn crash(self) {
        self.task.abort();
    }
}

fn pool(name: &str, addresses: &[&str]) -> Value {
    json!({"apiVersion": "switchyard.io/v1alpha1", "kind": "IPPool",
           "metadata": {"name": name, "uid": format!("uid-pool-{name}")},
           "spec": {"addresses": addresses}})
}

fn load_balancer(name: &str, second: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}"),
                        "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", second / 60, second % 60)},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn ingress(fake: &FakeApi, name: &str) -> Vec<String> {
    let Some(service) = fake.get(Resource::Services, "default", name) else { return Vec::new() };
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            assert_eq!(i["ipMode"], "VIP", "{i}");
            i["ip"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn condition(fake: &FakeApi, name: &str) -> Option<(String, String)> {
    let service = fake.get(Resource::Services, "default", name)?;
    let conditions = service["status"]["conditions"].as_array()?.clone();
    let ours = conditions.iter().find(|c| c["type"] == "switchyard.io/IPAllocated")?;
    Some((ours["status"].as_str()?.to_owned(), ours["reason"].as_str()?.to_owned()))
}

async fn eventually(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn lease_holder(fake: &FakeApi) -> Option<String> {
    let lease = fake.get(Resource::Leases, "kube-system", "switchyard-controller")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

fn status_writes(fake: &FakeApi) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.is_write() && r.resource == Some(Resource::Services))
        .count()
}

#[tokio::test]
async fn writes_status_pool_status_and_events() {
    let fake = FakeApi::start().await;
    fake.put(pool("blue", &["10.0.0.1/32"]));
    fake.put(load_balancer("first", 1));
    fake.put(load_balancer("second", 2));
    let controller = Running::start(&fake, "a");
    eventually("first gets 10.0.0.1", Duration::from_secs(10), || {
        ingress(&fake, "first") == ["10.0.0.1"]
    })
    .await;
    eventually("second is told the pool is full", Duration::from_secs(5), || {
        condition(&fake, "second") == Some(("False".to_owned(), "PoolExhausted".to_owned()))
    })
    .await;
    assert_eq!(condition(&fake, "first"), Some(("True".to_owned(), "Allocated".to_owned())));
    eventually("pool status", Duration::from_secs(5), || {
        fake.get(Resource::IPPools, "", "blue").is_some_and(|p| {
            p["status"]["usedIPv4"] == 1
                && p["status"]["availableIPv4"] == 0
                && p["status"]["conditions"][0]["status"] == "True"
        })
    })
    .await;
    eventually("a Warning Event about the exhausted pool", Duration::from_secs(5), || {
        fake.objects(Resource::Events).iter().any(|e| {
            e["type"] == "Warning"
                && e["reason"] == "PoolExhausted"
                && e["involvedObject"]["name"] == "second"
                && e["involvedObject"]["uid"] == "uid-second"
        })
    })
    .await;

    // Deleting the holder hands the address to the one waiting; a type change releases.
    fake.delete(Resource::Services, "default", "first");
    eventually("second gets the freed address", Duration::from_secs(5), || {
        ingress(&fake, "second") == ["10.0.0.1"]
    })
    .await;
    let mut cluster_ip = fake.get(Resource::Services, "default", "second").unwrap();
    cluster_ip["spec"]["type"] = json!("ClusterIP");
    fake.put(cluster_ip);
    eventually("the ClusterIP Service's status is cleared", Duration::from_secs(5), || {
        ingress(&fake, "second").is_empty() && condition(&fake, "second").is_none()
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn a_restart_moves_no_address() {
    let fake = FakeApi::start().await;
    fake.put(pool("blue", &["10.0.0.0/24"]));
    for i in 0..30 {
        fake.put(load_balancer(&format!("s{i}"), i));
    }
    let first = Running::start(&fake, "a");
    eventually("every Service has an address", Duration::from_secs(15), || {
        (0..30).all(|i| ingress(&fake, &format!("s{i}")).len() == 1)
    })
    .await;
    for i in (0..30).step_by(3) {
        fake.delete(Resource::Services, "default", &format!("s{i}"));
    }
    eventually("the pool counts the releases", Duration::from_secs(5), || {
        fake.get(Resource::IPPools, "", "blue").is_some_and(|p| p["status"]["usedIPv4"] == 20)
    })
    .await;
    first.stop().await;
    let before: Vec<(String, Vec<String>)> =
        (0..30).map(|i| format!("s{i}")).map(|n| (n.clone(), ingress(&fake, &n))).collect();
    let writes_before = status_writes(&fake);

    let second = Running::start(&fake, "b");
    eventually("the new controller leads", Duration::from_secs(5), || {
        lease_holder(&fake).as_deref() == Some("b")
    })
    .await;
    fake.put(load_balancer("fresh", 100));
    eventually("a new Service gets the lowest free address", Duration::from_secs(5), || {
        ingress(&fake, "fresh") == ["10.0.0.0"]
    })
    .await;
    let moved: Vec<&String> = before
        .iter()
        .filter(|(n, addresses)| ingress(&fake, n) != *addresses)
        .map(|(n, _)| n)
        .collect();
    assert!(moved.is_empty(), "moved after a restart: {moved:?}");
    assert_eq!(status_writes(&fake) - writes_before, 1, "only the new Service's status is written");
    second.stop().await;
}

#[tokio::test]
async fn conflicting_writes_are_retried() {
    let fake = FakeApi::start().await;
    fake.put(pool("blue", &["10.0.0.0/30"]));
    fake.conflict_next_writes(Resource::Services, 3);
    fake.put(load_balancer("web", 1));
    let controller = Running::start(&fake, "a");
    eventually("the status lands despite three 409s", Duration::from_secs(10), || {
        ingress(&fake, "web") == ["10.0.0.0"]
    })
    .await;
    assert!(status_writes(&fake) >= 4, "three refused writes and one that landed");
    // Someone else wipes the status: it is written again.
    let mut wiped = fake.get(Resource::Services, "default", "web").unwrap();
    wiped["status"] = json!({});
    fake.put(wiped);
    eventually("the status is restored", Duration::from_secs(5), || {
        ingress(&fake, "web") == ["10.0.0.0"]
    })
    .await;
    controller.stop().await;
}

/// The Lease's `spec.FIELD` as a time (every writer here is this process, one wall clock).
fn lease_time(fake: &FakeApi, field: &str) -> Option<Timestamp> {
    let lease = fake.get(Resource::Leases, "kube-system", "switchyard-controller")?;
    lease["spec"][field].as_str()?.parse().ok()
}

#[tokio::test]
async fn the_follower_takes_over_within_the_lease_duration() {
    let fake = FakeApi::start().await;
    fake.put(pool("blue", &["10.0.0.0/28"]));
    fake.put(load_balancer("before", 1));
    let a = Running::start(&fake, "a");
    eventually("a leads", Duration::from_secs(5), || lease_holder(&fake).as_deref() == Some("a"))
        .await;
    let b = Running::start(&fake, "b");
    eventually("before gets an address", Duration::from_secs(5), || {
        ingress(&fake, "before") == ["10.0.0.0"]
    })
    .await;
    // While a leads, b writes nothing: the Lease stays a's for several of b's reads.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(lease_holder(&fake).as_deref(), Some("a"));

    // a dies between two renewals (every 0.2 s): 0.1 s after one.
    let renewed = lease_time(&fake, "renewTime");
    let start = Instant::now();
    while lease_time(&fake, "renewTime") == renewed {
        assert!(start.elapsed() < Duration::from_secs(5), "a stopped renewing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.crash();
    let crashed = Timestamp::now();
    fake.put(load_balancer("after", 2));
    // A renewal a had in flight may still land: a lived until its last renewal.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lease_holder(&fake).as_deref(), Some("a"), "b took over too early");
    let last_renewal = lease_time(&fake, "renewTime").unwrap();
    let died = crashed.max(last_renewal);
    eventually("b takes over", Duration::from_secs(5), || {
        lease_holder(&fake).as_deref() == Some("b")
    })
    .await;
    let taken_over = lease_time(&fake, "acquireTime").unwrap();
    let handover = Duration::try_from(taken_over.duration_since(died)).unwrap();
    let after_renewal = Duration::try_from(taken_over.duration_since(last_renewal)).unwrap();
    println!(
        "handover after a crash: {handover:?} ({after_renewal:?} after a's last renewal; lease duration 1.5 s)"
    );
    // b dates a's last renewal by its read before it (at most 0.2 s + a read earlier, and no
    // more than lease duration − renew deadline), and takes over one lease duration later.
    assert!(handover <= Duration::from_millis(1500), "handover took {handover:?}");
    assert!(after_renewal >= Duration::from_millis(1000), "b took over after {after_renewal:?}");
    eventually("the new Service is served by b", Duration::from_secs(5), || {
        ingress(&fake, "after") == ["10.0.0.1"]
    })
    .await;
    assert_eq!(ingress(&fake, "before"), ["10.0.0.0"], "the old leader's allocation stands");
    let lease = fake.get(Resource::Leases, "kube-system", "switchyard-controller").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    b.stop().await;
    assert_eq!(lease_holder(&fake), None, "a clean stop releases the Lease");
}

#[tokio::test]
async fn a_deletion_missed_during_an_outage_releases_the_address() {
    let fake = FakeApi::start().await;
    fake.put(pool("blue", &["10.0.0.7/32"]));
    fake.put(load_balancer("holder", 1));
    fake.put(load_balancer("waiting", 2));
    let controller = Running::start(&fake, "a");
    eventually("holder has the only address", Duration::from_secs(10), || {
        ingress(&fake, "holder") == ["10.0.0.7"]
    })
    .await;
    eventually("waiting waits", Duration::from_secs(5), || {
        condition(&fake, "waiting") == Some(("False".to_owned(), "PoolExhausted".to_owned()))
    })
    .await;
    fake.outage(|outage| {
        outage.delete(Resource::Services, "default", "holder");
        outage.compact();
    });
    eventually(
        "the relist finds the deletion and the address moves on",
        Duration::from_secs(10),
        || ingress(&fake, "waiting") == ["10.0.0.7"],
    )
    .await;
    controller.stop().await;
}
