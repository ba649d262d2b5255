//! The controllers against an API that refuses some of their writes (issue 23): a refused write
//! is retried with back-off, and a status is written again only when something in it changed,
//! so a few seconds of refusals cost a handful of writes per object, not thousands. Every
//! request of the controllers goes through a layer that counts it (and refuses it, when told to);
//! the tests' own client goes straight to the server.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::{
    Namespace, Pod, ReplicationController, ResourceQuota, Service,
};
use minik_api::request::{DeleteOptions, WriteOptions};
use minik_api::ApiError;
use minik_client::resource_of;
use serde_json::{json, Value};

use common::*;
use minik_testkit::manifest::{
    deployment as deployment_manifest, labeled_pod as pod_manifest,
    replica_set as replica_set_manifest,
};
use minik_testkit::{wait_for, Intercepted, Write, DEADLINE};

/// How long the writes are counted for once the controllers are in their steady state.
const WINDOW: Duration = Duration::from_secs(3);

/// The most writes of one kind to one object (or, for creates, of one owner) in [`WINDOW`]: a
/// back-off doubling from 5 ms allows about a dozen tries in a few seconds; without one they
/// number in the hundreds or thousands.
const MAX_TRIES: usize = 15;

/// Writes per "verb Kind namespace/subject".
type Counts = BTreeMap<String, usize>;

/// Counts a write, and refuses it (403) when `refuse` picks it.
fn count(
    counts: &Mutex<Counts>,
    refuse: fn(verb: &str, kind: &str) -> bool,
    write: &Write<'_>,
) -> Result<(), ApiError> {
    // Pods of one owner differ only in their random suffix, events in their time: count
    // creates per owner and per object they are about.
    let subject = match write.object {
        Some(object) => [
            "/metadata/generateName",
            "/involvedObject/name",
            "/metadata/name",
        ]
        .iter()
        .find_map(|p| object.pointer(p).and_then(Value::as_str))
        .unwrap_or_default(),
        None => write.name,
    };
    let key = format!(
        "{} {} {}/{subject}",
        write.verb,
        write.info.kind,
        write.ns.unwrap_or("")
    );
    if let Ok(mut counts) = counts.lock() {
        *counts.entry(key).or_default() += 1;
    }
    if !refuse(write.verb, write.info.kind) {
        return Ok(());
    }
    // Named as the API server names what it refuses: a create's new name each time.
    let name = if write.name.is_empty() {
        subject
    } else {
        write.name
    };
    Err(ApiError::Forbidden(format!(
        "{} of {name} refused by the test",
        write.verb
    )))
}

/// A cluster whose controllers' writes are counted, and refused when `refuse` says so.
async fn counted_cluster(refuse: fn(&str, &str) -> bool) -> (Cluster, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::new()));
    let shared = counts.clone();
    let cluster = start_with(move |inner| {
        Arc::new(Intercepted::new(inner, move |write: &Write<'_>| {
            count(&shared, refuse, write)
        }))
    })
    .await;
    (cluster, counts)
}

fn snapshot(counts: &Mutex<Counts>) -> Counts {
    counts.lock().map(|c| c.clone()).unwrap_or_default()
}

/// The writes made between two snapshots.
fn since(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

async fn create<K: minik_api::k8s_openapi::Resource>(c: &Cluster, ns: Option<&str>, object: Value) {
    c.api
        .create(resource_of::<K>(), ns, object, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot create a {}: {e}", K::KIND));
}

/// The status of an object of kind `K` in `default`, once it has one.
async fn status_of<K: minik_api::k8s_openapi::Resource>(c: &Cluster, name: &str) -> Option<Value> {
    let object = c
        .api
        .get(resource_of::<K>(), Some("default"), name)
        .await
        .ok()?;
    object.get("status").cloned()
}

fn failing(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .is_some_and(|l| l.iter().any(|c| c["type"] == "ReplicaFailure"))
}

fn rc_manifest(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"app": name},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
            }
        }
    })
}

/// Regression (issue 23): with a quota of one pod, a ReplicaSet of two replicas rewrote its
/// ReplicaFailure condition (a new pod name in its message each time) over a thousand times a
/// second, and said `replicas: 0` while it owned one pod. ReplicationControllers, and the
/// ReplicaSets of Deployments, did the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_held_back_by_a_quota_write_their_status_once() {
    let (c, counts) = counted_cluster(|_, _| false).await;
    create::<ResourceQuota>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
            "spec": {"hard": {"pods": "1"}}}),
    )
    .await;
    // The ReplicaSet first, so that the one pod the quota allows is its own.
    c.create(replica_set_manifest("web", 2)).await;
    wait_for("the ReplicaSet's one pod", DEADLINE, || async {
        (c.pods("app=web").await.len() == 1).then_some(())
    })
    .await;
    create::<ReplicationController>(&c, Some("default"), rc_manifest("legacy", 2)).await;
    c.create(deployment_manifest("app", 2, "nginx:1.25")).await;

    // Every owner reports its refused creates.
    let app_rs = wait_for(
        "the Deployment's ReplicaSet to report its failure",
        DEADLINE,
        || async {
            c.replica_sets("app=app")
                .await
                .into_iter()
                .find(|rs| {
                    rs.status
                        .as_ref()
                        .and_then(|s| serde_json::to_value(s).ok())
                        .is_some_and(|s| failing(&s))
                })
                .and_then(|rs| rs.metadata.name)
        },
    )
    .await;
    wait_for("the ReplicaSet to report its failure", DEADLINE, || async {
        status_of::<ReplicaSet>(&c, "web")
            .await
            .filter(failing)
            .map(drop)
    })
    .await;
    wait_for(
        "the ReplicationController to report its failure",
        DEADLINE,
        || async {
            status_of::<ReplicationController>(&c, "legacy")
                .await
                .filter(failing)
                .map(drop)
        },
    )
    .await;

    // From now on the creates keep failing the same way: nothing in any status changes.
    let before = snapshot(&counts);
    tokio::time::sleep(WINDOW).await;
    let window = since(&before, &snapshot(&counts));
    for owner in [
        "patch-status ReplicaSet default/web".to_owned(),
        "patch-status ReplicationController default/legacy".to_owned(),
        format!("patch-status ReplicaSet default/{app_rs}"),
    ] {
        let n = window.get(&owner).copied().unwrap_or(0);
        assert!(
            n <= 1,
            "{owner}: {n} status writes in {WINDOW:?}: {window:#?}"
        );
    }
    for (key, n) in &window {
        assert!(
            *n <= MAX_TRIES,
            "{key}: {n} writes in {WINDOW:?}: {window:#?}"
        );
    }

    // The status counts the pods there are, failing creates or not.
    let web = status_of::<ReplicaSet>(&c, "web").await.expect("a status");
    assert_eq!(web["replicas"], 1, "{web}");
    assert_eq!(
        c.pods("app=web").await.len(),
        1,
        "the quota still holds the rest back"
    );
    let message = web["conditions"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: pods"), "{message}");
    let legacy = status_of::<ReplicationController>(&c, "legacy")
        .await
        .expect("a status");
    assert_eq!(legacy["replicas"], 0, "{legacy}");
    assert!(failing(&legacy), "{legacy}");
}

/// Every controller, its creates and deletes refused while its patches go through (the shape
/// that loops: a status write that succeeds queues the object again at once): each object is
/// retried with back-off, a handful of times in a few seconds, and no status is written over
/// and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_controller_backs_off_when_its_creates_and_deletes_are_refused() {
    let (c, counts) = counted_cluster(|verb, _| matches!(verb, "create" | "delete")).await;
    // ReplicaSet and ReplicationController: pod creates refused.
    c.create(replica_set_manifest("web", 2)).await;
    create::<ReplicationController>(&c, Some("default"), rc_manifest("legacy", 1)).await;
    // Deployment: its ReplicaSet's create refused.
    c.create(deployment_manifest("app", 1, "nginx:1.25")).await;
    // Garbage collector: the delete of a pod whose owner does not exist refused.
    create::<Pod>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stray", "labels": {"app": "stray"}, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone",
                "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}}),
    )
    .await;
    // Endpoints: the create of a Service's Endpoints refused.
    create::<Service>(
        &c,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    // Namespace: the deletes of what a Terminating namespace holds refused.
    create::<Namespace>(
        &c,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
    )
    .await;
    create::<Pod>(&c, Some("doomed"), pod_manifest("left", "x")).await;
    c.api
        .delete(
            resource_of::<Namespace>(),
            None,
            "doomed",
            DeleteOptions::default(),
        )
        .await
        .expect("delete the namespace");

    // Each controller tries, and is refused.
    wait_for("every controller to be refused", DEADLINE, || async {
        let seen = snapshot(&counts);
        let tried = |prefix: &str| seen.keys().any(|k| k.starts_with(prefix));
        (tried("create Pod default/web-")
            && tried("create Pod default/legacy-")
            && tried("create ReplicaSet default/app-")
            && tried("delete Pod default/stray")
            && tried("create Endpoints default/svc")
            && tried("delete Pod doomed/left"))
        .then_some(())
    })
    .await;

    let before = snapshot(&counts);
    tokio::time::sleep(WINDOW).await;
    let window = since(&before, &snapshot(&counts));
    for (key, n) in &window {
        assert!(
            *n <= MAX_TRIES,
            "{key}: {n} writes in {WINDOW:?}: {window:#?}"
        );
        if key.starts_with("patch-status") {
            assert!(
                *n <= 1,
                "{key}: {n} status writes in {WINDOW:?}: {window:#?}"
            );
        }
    }
    // Nothing got through, and the statuses say what there is.
    let web = status_of::<ReplicaSet>(&c, "web").await.expect("a status");
    assert!(failing(&web), "{web}");
    assert_eq!(web["replicas"], 0, "{web}");
    assert!(c
        .api
        .get(resource_of::<Pod>(), Some("default"), "stray")
        .await
        .is_ok());
    assert!(c
        .api
        .get(resource_of::<Deployment>(), Some("default"), "app")
        .await
        .is_ok());
}
