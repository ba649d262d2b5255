//! End-to-end tests of garbage collection by ownerReferences: cascading deletion of
//! ReplicaSets and Deployments in the Background, Foreground and Orphan modes, and objects
//! whose owner never existed.

mod common;

use std::sync::{Arc, Mutex};

use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::Pod;
use minik_api::k8s_openapi::Metadata;
use minik_api::request::Propagation;
use minik_client::{ApiExt, Change, Informer, InformerConfig, ListParams};
use serde_json::json;

use common::*;
use minik_testkit::manifest::{
    deployment as deployment_manifest, labeled_pod as pod_manifest,
    replica_set as replica_set_manifest,
};
use minik_testkit::{wait_for, DEADLINE};

/// The resourceVersions (store revisions) at which objects of one kind were deleted, by name.
type Deletions = Arc<Mutex<Vec<(String, u64)>>>;

/// Records every deletion of `K` from now on.
fn record_deletions<K>(cluster: &mut Cluster) -> (Deletions, Informer<K>)
where
    K: minik_api::k8s_openapi::Resource
        + Metadata<Ty = minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let informer: Informer<K> = Informer::spawn(cluster.api.clone(), InformerConfig::default());
    let mut changes = informer.subscribe();
    let deletions: Deletions = Arc::default();
    let sink = deletions.clone();
    cluster.spawn(async move {
        while let Some(change) = changes.next().await {
            if let Change::Deleted(object) = change {
                let meta = object.metadata();
                let revision = meta
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if let Ok(mut d) = sink.lock() {
                    d.push((meta.name.clone().unwrap_or_default(), revision));
                }
            }
        }
    });
    (deletions, informer)
}

fn revisions(d: &Deletions) -> Vec<(String, u64)> {
    d.lock().map(|d| d.clone()).unwrap_or_default()
}

async fn three_pods(cluster: &Cluster, name: &str) -> (String, Vec<Pod>) {
    let rs = cluster.create(replica_set_manifest(name, 3)).await;
    let uid = rs["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pods = wait_for("3 pods", DEADLINE, || async {
        let pods = cluster
            .pods_controlled_by(&format!("app={name}"), &uid)
            .await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    (uid, pods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_removes_dependents_after_the_owner() {
    let cluster = start().await;
    three_pods(&cluster, "web").await;
    let answer = cluster.delete::<ReplicaSet>("web", None).await;
    assert!(
        answer["metadata"]["deletionTimestamp"].is_null(),
        "gone at once"
    );
    assert!(cluster.replica_set("web").await.is_none());
    wait_for("the pods to be collected", DEADLINE, || async {
        cluster.pods("app=web").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_removes_dependents_first() {
    let mut cluster = start().await;
    let (pod_deletions, _pods) = record_deletions::<Pod>(&mut cluster);
    let (rs_deletions, _rss) = record_deletions::<ReplicaSet>(&mut cluster);
    let (_, pods) = three_pods(&cluster, "web").await;
    let answer = cluster
        .delete::<ReplicaSet>("web", Some(Propagation::Foreground))
        .await;
    assert!(answer["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        answer["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    wait_for("the ReplicaSet to go", DEADLINE, || async {
        cluster.replica_set("web").await.is_none().then_some(())
    })
    .await;
    assert!(cluster.pods("app=web").await.is_empty());
    let rs_gone = wait_for("the ReplicaSet's deletion to be seen", DEADLINE, || async {
        revisions(&rs_deletions).first().map(|(_, rv)| *rv)
    })
    .await;
    let pods_gone = wait_for("the pods' deletions to be seen", DEADLINE, || async {
        let d = revisions(&pod_deletions);
        (d.len() == pods.len()).then_some(d)
    })
    .await;
    for (pod, rv) in pods_gone {
        assert!(
            rv < rs_gone,
            "pod {pod} (at {rv}) went before its owner (at {rs_gone})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_leaves_dependents_without_the_owner() {
    let cluster = start().await;
    let (uid, _) = three_pods(&cluster, "web").await;
    let answer = cluster
        .delete::<ReplicaSet>("web", Some(Propagation::Orphan))
        .await;
    assert_eq!(answer["metadata"]["finalizers"], json!(["orphan"]));
    wait_for("the ReplicaSet to go", DEADLINE, || async {
        cluster.replica_set("web").await.is_none().then_some(())
    })
    .await;
    let pods = cluster.pods("app=web").await;
    assert_eq!(pods.len(), 3, "the pods stay");
    for pod in pods {
        assert!(
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .all(|r| r.uid != uid),
            "{:?} still names its old owner",
            pod.metadata.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_owner_does_not_exist_is_collected() {
    let cluster = start().await;
    let mut pod = pod_manifest("dangling", "none");
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "never",
        "uid": "00000000-0000-0000-0000-000000000000",
    }]);
    cluster.create(pod).await;
    // A pod owned by something minik does not serve is never collected on a guess.
    let mut kept = pod_manifest("kept", "none");
    kept["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1", "kind": "Widget", "name": "w",
        "uid": "11111111-1111-1111-1111-111111111111",
    }]);
    cluster.create(kept).await;
    wait_for("the dangling pod to be collected", DEADLINE, || async {
        let names: Vec<String> = cluster
            .pods("app=none")
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        (names == ["kept"]).then_some(())
    })
    .await;
}

/// PersistentVolumeClaims are followed too (a StatefulSet's retention policy makes it their
/// owner): a claim whose owner goes is deleted, one without owners stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_with_their_owner() {
    let cluster = start().await;
    let owner = cluster
        .create(deployment_manifest("owner", 0, "nginx:1.25"))
        .await;
    let claim = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        })
    };
    let mut owned = claim("data-owned");
    owned["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "owner",
        "uid": owner["metadata"]["uid"],
    }]);
    cluster.create(owned).await;
    cluster.create(claim("data-kept")).await;
    cluster.delete::<Deployment>("owner", None).await;
    wait_for("the owned claim to be collected", DEADLINE, || async {
        let (claims, _) = cluster
            .api
            .list_as::<minik_api::k8s_openapi::api::core::v1::PersistentVolumeClaim>(
                Some("default"),
                &ListParams::default(),
            )
            .await
            .ok()?;
        let names: Vec<String> = claims.into_iter().filter_map(|c| c.metadata.name).collect();
        (names == ["data-kept"]).then_some(())
    })
    .await;
}

/// A Deployment with its ReplicaSet and pods up, for the cascade tests.
async fn deployment_up(cluster: &Cluster) -> String {
    cluster
        .create(deployment_manifest("app", 2, "nginx:1.25"))
        .await;
    wait_for("the deployment's pods", DEADLINE, || async {
        let rss = cluster.replica_sets("app=app").await;
        let pods = cluster.pods("app=app").await;
        (rss.len() == 1 && pods.len() == 2)
            .then(|| rss[0].metadata.name.clone().unwrap_or_default())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_cascades_in_every_mode() {
    let mut cluster = start().await;
    let (rs_deletions, _rss) = record_deletions::<ReplicaSet>(&mut cluster);
    let (pod_deletions, _pods) = record_deletions::<Pod>(&mut cluster);

    // Background: the Deployment goes at once, then its ReplicaSet and pods.
    deployment_up(&cluster).await;
    cluster.delete::<Deployment>("app", None).await;
    wait_for(
        "everything to be collected (background)",
        DEADLINE,
        || async {
            (cluster.replica_sets("app=app").await.is_empty()
                && cluster.pods("app=app").await.is_empty())
            .then_some(())
        },
    )
    .await;

    // Foreground: pods, then the ReplicaSet, then the Deployment.
    let (d_deletions, _ds) = record_deletions::<Deployment>(&mut cluster);
    let rs_name = deployment_up(&cluster).await;
    let pods_before = revisions(&pod_deletions).len();
    let answer = cluster
        .delete::<Deployment>("app", Some(Propagation::Foreground))
        .await;
    assert_eq!(
        answer["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let d_gone = wait_for("the Deployment to go (foreground)", DEADLINE, || async {
        revisions(&d_deletions).first().map(|(_, rv)| *rv)
    })
    .await;
    let rs_gone = wait_for("its ReplicaSet's deletion", DEADLINE, || async {
        revisions(&rs_deletions)
            .into_iter()
            .rev()
            .find(|(n, _)| *n == rs_name)
            .map(|(_, rv)| rv)
    })
    .await;
    let pods_gone = wait_for("its pods' deletions", DEADLINE, || async {
        let d = revisions(&pod_deletions);
        (d.len() == pods_before + 2).then(|| d[pods_before..].to_vec())
    })
    .await;
    assert!(
        rs_gone < d_gone,
        "the ReplicaSet went before the Deployment"
    );
    for (pod, rv) in pods_gone {
        assert!(rv < rs_gone, "pod {pod} went before its ReplicaSet");
    }

    // Orphan: the Deployment goes; its ReplicaSet stays, no longer owned, with its pods.
    deployment_up(&cluster).await;
    cluster
        .delete::<Deployment>("app", Some(Propagation::Orphan))
        .await;
    wait_for("the Deployment to go (orphan)", DEADLINE, || async {
        cluster.deployment("app").await.is_none().then_some(())
    })
    .await;
    let rss = wait_for("the ReplicaSet to be released", DEADLINE, || async {
        let rss = cluster.replica_sets("app=app").await;
        rss.iter()
            .all(|rs| {
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
            })
            .then_some(rss)
    })
    .await;
    assert_eq!(rss.len(), 1);
    assert_eq!(cluster.pods("app=app").await.len(), 2);
}
