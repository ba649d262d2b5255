//! End-to-end tests of the ReplicaSet and ReplicationController controllers against a real
//! API server: scaling, replacement of deleted pods, adoption and release, status, and no
//! duplicate creates in a burst.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use minik_api::k8s_openapi::api::core::v1::{Pod, ReplicationController};
use minik_client::{resource_of, ApiExt, ListParams, WatchEventType};
use serde_json::json;

use common::*;
use minik_testkit::manifest::{labeled_pod as pod_manifest, replica_set as replica_set_manifest};
use minik_testkit::{wait_for, DEADLINE};

const RS_PATH: &str = "/apis/apps/v1/namespaces/default/replicasets";
const RC_PATH: &str = "/api/v1/namespaces/default/replicationcontrollers";

/// Waits until the ReplicaSet has exactly `n` pods and says so in an observed status.
async fn settled(cluster: &Cluster, name: &str, n: usize) -> Vec<Pod> {
    wait_for(
        &format!("{name} to settle at {n} pods"),
        DEADLINE,
        || async {
            let rs = cluster.replica_set(name).await?;
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let pods = cluster
                .pods_controlled_by(&format!("app={name}"), &uid)
                .await;
            let status = rs.status?;
            (pods.len() == n
                && status.replicas == n as i32
                && status.observed_generation == rs.metadata.generation)
                .then_some(pods)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_scales_3_then_6_then_2() {
    let cluster = start().await;
    cluster.create(replica_set_manifest("web", 3)).await;
    let pods = settled(&cluster, "web", 3).await;
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let suffix = name.strip_prefix("web-").expect("named after the owner");
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{name}"
        );
        let owner = &pod.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.api_version.as_str(),
                owner.name.as_str()
            ),
            ("ReplicaSet", "apps/v1", "web")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    cluster.scale(RS_PATH, "web", 6).await;
    settled(&cluster, "web", 6).await;
    cluster.scale(RS_PATH, "web", 2).await;
    settled(&cluster, "web", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_replaced() {
    let cluster = start().await;
    cluster.create(replica_set_manifest("web", 3)).await;
    let pods = settled(&cluster, "web", 3).await;
    let victim = pods[0].metadata.name.clone().unwrap_or_default();
    cluster.delete::<Pod>(&victim, None).await;
    let pods = settled(&cluster, "web", 3).await;
    assert!(
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some(victim.as_str())),
        "{victim} was replaced by a new pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_ready_and_available_pods() {
    let mut cluster = start().await;
    cluster.run_nodes();
    cluster.create(replica_set_manifest("web", 3)).await;
    wait_for("3 ready and available replicas", DEADLINE, || async {
        let status = cluster.replica_set("web").await?.status?;
        (status.ready_replicas == Some(3)
            && status.available_replicas == Some(3)
            && status.fully_labeled_replicas == Some(3))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_adopted_and_relabelled_pods_released() {
    let cluster = start().await;
    cluster.create(pod_manifest("stray", "web")).await;
    let rs = cluster.create(replica_set_manifest("web", 2)).await;
    let uid = rs["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pods = settled(&cluster, "web", 2).await;
    assert!(
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("stray")),
        "the matching orphan was adopted instead of creating a second pod"
    );

    // Relabelled, the pod leaves the ReplicaSet, which makes a new one in its place.
    cluster
        .patch::<Pod>("stray", json!({"metadata": {"labels": {"app": "debug"}}}))
        .await;
    settled(&cluster, "web", 2).await;
    let stray = wait_for("the relabelled pod to be released", DEADLINE, || async {
        let pod = cluster
            .api
            .get_as::<Pod>(Some("default"), "stray")
            .await
            .ok()?;
        (!controlled_by(&pod, &uid)).then_some(pod)
    })
    .await;
    assert!(stray
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_created_once() {
    let cluster = start().await;
    // Count every pod the controller ever makes, from before it makes any.
    let added = Arc::new(AtomicUsize::new(0));
    let deleted = Arc::new(AtomicUsize::new(0));
    let mut events = cluster
        .api
        .watch(
            resource_of::<Pod>(),
            Some("default"),
            &ListParams::default(),
            None,
        )
        .await
        .expect("watch");
    let (a, d) = (added.clone(), deleted.clone());
    let mut cluster = cluster;
    cluster.spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            match event.kind {
                WatchEventType::Added => a.fetch_add(1, Ordering::SeqCst),
                WatchEventType::Deleted => d.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
        }
    });
    cluster.create(replica_set_manifest("burst", 60)).await;
    settled(&cluster, "burst", 60).await;
    wait_for("the watch to have seen every pod", DEADLINE, || async {
        (added.load(Ordering::SeqCst) >= 60).then_some(())
    })
    .await;
    assert_eq!(added.load(Ordering::SeqCst), 60, "no pod was created twice");
    assert_eq!(
        deleted.load(Ordering::SeqCst),
        0,
        "no surplus had to be deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_keeps_its_replicas() {
    let cluster = start().await;
    let rc = cluster
        .create(json!({
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "metadata": {"name": "legacy"},
            "spec": {
                "replicas": 2,
                "selector": {"app": "legacy"},
                "template": {
                    "metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
                }
            }
        }))
        .await;
    let uid = rc["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let count = |n: usize| {
        let cluster = &cluster;
        let uid = uid.clone();
        async move {
            wait_for(&format!("legacy to have {n} pods"), DEADLINE, || async {
                let rc = cluster
                    .api
                    .get_as::<ReplicationController>(Some("default"), "legacy")
                    .await
                    .ok()?;
                let pods = cluster.pods_controlled_by("app=legacy", &uid).await;
                (pods.len() == n && rc.status?.replicas == n as i32).then_some(pods)
            })
            .await
        }
    };
    let pods = count(2).await;
    assert!(pods.iter().all(|p| {
        p.metadata.owner_references.as_ref().expect("owned")[0].kind == "ReplicationController"
    }));
    cluster.scale(RC_PATH, "legacy", 4).await;
    count(4).await;
    cluster.scale(RC_PATH, "legacy", 1).await;
    count(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_deleting_pods_is_recorded_in_events() {
    let cluster = start().await;
    cluster.create(replica_set_manifest("web", 1)).await;
    let pods = settled(&cluster, "web", 1).await;
    let pod = pods[0].metadata.name.clone().unwrap_or_default();
    let message = format!("Created pod: {pod}");
    wait_for("a SuccessfulCreate event", DEADLINE, || async {
        let (events, _) = cluster
            .api
            .list_as::<minik_api::k8s_openapi::api::core::v1::Event>(
                Some("default"),
                &ListParams::default(),
            )
            .await
            .ok()?;
        events
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.message.as_deref() == Some(message.as_str())
                    && e.involved_object.kind.as_deref() == Some("ReplicaSet")
            })
            .then_some(())
    })
    .await;
}
