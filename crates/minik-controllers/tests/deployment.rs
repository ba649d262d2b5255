//! End-to-end tests of the Deployment controller against a real API server, with the test
//! marking pods Ready as nodes would: rolling updates watched for their invariants, Recreate,
//! rollback as `kubectl rollout undo` does it, scaling, pausing, and progress deadlines.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::{Event, Pod};
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_client::{resource_of, ApiExt, ListParams, WatchEventType};
use serde_json::{json, Value};

use common::*;
use minik_testkit::manifest::deployment as deployment_manifest;
use minik_testkit::{wait_for, DEADLINE};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// The pod-template-hash label of a ReplicaSet (empty without one).
fn template_hash(rs: &ReplicaSet) -> String {
    rs.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default()
}

fn image_of(rs: &ReplicaSet) -> Option<&str> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn revision_of(
    meta: &minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.annotations
        .as_ref()?
        .get("deployment.kubernetes.io/revision")
        .cloned()
}

/// Waits until the Deployment has rolled out `image` completely: every replica updated and
/// available, the spec observed, and only the ReplicaSet of `image` scaled up.
/// A cluster whose nodes run the Deployment `web` of `replicas` nginx:1.25 pods, rolled out;
/// and that rollout's ReplicaSet.
async fn web_rolled_out(replicas: i32) -> (Cluster, ReplicaSet) {
    let mut cluster = start().await;
    cluster.run_nodes();
    cluster
        .create(deployment_manifest("web", replicas, "nginx:1.25"))
        .await;
    let (_, rs) = rolled_out(&cluster, "web", "nginx:1.25").await;
    (cluster, rs)
}

async fn rolled_out(cluster: &Cluster, name: &str, image: &str) -> (Deployment, ReplicaSet) {
    wait_for(&format!("{name} to roll out {image}"), DEADLINE, || async {
        let d = cluster.deployment(name).await?;
        let replicas = d.spec.as_ref()?.replicas?;
        let status = d.status.clone()?;
        let rss = cluster.replica_sets(&format!("app={name}")).await;
        let active: Vec<&ReplicaSet> = rss.iter().filter(|rs| replicas_of(rs) > 0).collect();
        let done = status.observed_generation == d.metadata.generation
            && status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
            && active.len() == 1
            && image_of(active[0]) == Some(image)
            && active[0]
                .status
                .as_ref()
                .is_some_and(|s| s.replicas == replicas);
        done.then(|| (d.clone(), active[0].clone()))
    })
    .await
}

/// What a watcher of the Deployment's pods saw go wrong, if anything.
type Violations = Arc<Mutex<Vec<String>>>;

/// The pods a watcher has seen so far: name to readiness.
type Seen = Arc<Mutex<HashMap<String, bool>>>;

/// Watches the pods labelled `app=<name>` from now on and records every moment at which more
/// than `max_pods` exist or fewer than `min_ready` are ready. Returns the record and the pods
/// as the watcher last saw them.
async fn watch_invariants(
    cluster: &mut Cluster,
    name: &str,
    max_pods: usize,
    min_ready: usize,
) -> (Violations, Seen) {
    let params = ListParams::labels(format!("app={name}"));
    let (list, mut events) = list_and_watch_pods(cluster.api.as_ref(), &params).await;
    let mut pods: HashMap<String, bool> = HashMap::new();
    for item in list.items {
        if let Ok(pod) = serde_json::from_value::<Pod>(item) {
            pods.insert(
                pod.metadata.name.clone().unwrap_or_default(),
                is_ready(&pod),
            );
        }
    }
    let violations: Violations = Arc::default();
    let seen: Seen = Arc::default();
    let (v, s) = (violations.clone(), seen.clone());
    cluster.spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            let Ok(pod) = serde_json::from_value::<Pod>(event.object) else {
                continue;
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match event.kind {
                WatchEventType::Added | WatchEventType::Modified => {
                    pods.insert(pod_name.clone(), is_ready(&pod));
                }
                WatchEventType::Deleted => {
                    pods.remove(&pod_name);
                }
                WatchEventType::Bookmark => continue,
            }
            let ready = pods.values().filter(|r| **r).count();
            let rv = pod.metadata.resource_version.clone().unwrap_or_default();
            if let Ok(mut v) = v.lock() {
                if pods.len() > max_pods {
                    v.push(format!(
                        "at {rv}: {} pods, more than {max_pods}",
                        pods.len()
                    ));
                }
                if ready < min_ready {
                    v.push(format!("at {rv}: {ready} ready, fewer than {min_ready}"));
                }
            }
            if let Ok(mut s) = s.lock() {
                *s = pods.clone();
            }
        }
    });
    (violations, seen)
}

async fn set_image(cluster: &Cluster, name: &str, image: &str) {
    cluster
        .patch::<Deployment>(
            name,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}),
        )
        .await;
}

async fn events_about(cluster: &Cluster, name: &str) -> Vec<String> {
    let (events, _) = cluster
        .api
        .list_as::<Event>(Some("default"), &ListParams::default())
        .await
        .expect("list events");
    events
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some("ScalingReplicaSet")
        })
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_surge_and_unavailability() {
    let mut cluster = start().await;
    cluster.run_nodes();
    let mut manifest = deployment_manifest("web", 4, "nginx:1.25");
    manifest["spec"]["strategy"] = json!({
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
    });
    cluster.create(manifest).await;
    let (d, first) = rolled_out(&cluster, "web", "nginx:1.25").await;
    assert_eq!(
        cluster.replica_sets("app=web").await.len(),
        1,
        "one ReplicaSet"
    );
    assert_eq!(revision_of(&d.metadata).as_deref(), Some("1"));
    let first_name = first.metadata.name.clone().unwrap_or_default();
    let hash = first
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("the ReplicaSet carries the hash");
    assert_eq!(first_name, format!("web-{hash}"));
    for pod in cluster.pods("app=web").await {
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash")),
            Some(&hash)
        );
    }

    let (violations, seen) = watch_invariants(&mut cluster, "web", 5, 3).await;
    set_image(&cluster, "web", "nginx:1.26").await;
    let (d, second) = rolled_out(&cluster, "web", "nginx:1.26").await;
    assert_eq!(revision_of(&d.metadata).as_deref(), Some("2"));
    assert_eq!(revision_of(&second.metadata).as_deref(), Some("2"));
    let second_name = second.metadata.name.clone().unwrap_or_default();
    wait_for("the watcher to see the rollout end", DEADLINE, || async {
        let pods = seen.lock().map(|s| s.clone()).unwrap_or_default();
        (pods.len() == 4
            && pods
                .iter()
                .all(|(name, ready)| *ready && name.starts_with(&format!("{second_name}-"))))
        .then_some(())
    })
    .await;
    let violations = violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(violations.is_empty(), "{violations:#?}");

    let status = d.status.expect("status");
    let conditions = status.conditions.unwrap_or_default();
    let available = conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        progressing.message.clone().unwrap_or_default(),
        format!("ReplicaSet \"{second_name}\" has successfully progressed.")
    );
    let events = wait_for("the scaling events", DEADLINE, || async {
        let events = events_about(&cluster, "web").await;
        events
            .iter()
            .any(|e| e.starts_with(&format!("Scaled down replica set {first_name} to 0 from")))
            .then_some(events)
    })
    .await;
    assert!(
        events.contains(&format!("Scaled up replica set {first_name} to 4")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("Scaled up replica set {second_name} to "))),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_rolls_back_to_the_previous_replica_set() {
    let (cluster, first) = web_rolled_out(3).await;
    set_image(&cluster, "web", "nginx:1.26").await;
    rolled_out(&cluster, "web", "nginx:1.26").await;

    // What `kubectl rollout undo` does: the previous revision's template, without its hash
    // label, replaces the Deployment's.
    let mut template = serde_json::to_value(first.spec.as_ref().and_then(|s| s.template.as_ref()))
        .expect("encode");
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    cluster
        .api
        .patch(
            resource_of::<Deployment>(),
            Some("default"),
            "web",
            Patch {
                kind: PatchKind::Json,
                body: json!([{"op": "replace", "path": "/spec/template", "value": template}]),
            },
            false,
            WriteOptions::default(),
        )
        .await
        .expect("undo");
    let (d, back) = rolled_out(&cluster, "web", "nginx:1.25").await;
    assert_eq!(
        back.metadata.name, first.metadata.name,
        "the old ReplicaSet is reused"
    );
    assert_eq!(revision_of(&back.metadata).as_deref(), Some("3"));
    assert_eq!(revision_of(&d.metadata).as_deref(), Some("3"));
    assert_eq!(
        back.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision-history"))
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(cluster.replica_sets("app=web").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scales_through_the_scale_subresource() {
    let (cluster, rs) = web_rolled_out(3).await;
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    cluster.scale(DEPLOYMENTS, "web", 6).await;
    let (_, rs) = rolled_out(&cluster, "web", "nginx:1.25").await;
    assert_eq!(replicas_of(&rs), 6);
    assert_eq!(cluster.pods("app=web").await.len(), 6);
    cluster.scale(DEPLOYMENTS, "web", 2).await;
    rolled_out(&cluster, "web", "nginx:1.25").await;
    wait_for("2 pods", DEADLINE, || async {
        (cluster.pods("app=web").await.len() == 2).then_some(())
    })
    .await;
    let events = wait_for("the scaling events", DEADLINE, || async {
        let events = events_about(&cluster, "web").await;
        events
            .iter()
            .any(|e| *e == format!("Scaled down replica set {rs_name} to 2 from 6"))
            .then_some(events)
    })
    .await;
    assert!(
        events.contains(&format!("Scaled up replica set {rs_name} to 6 from 3")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_waits_to_roll_out() {
    let (cluster, _) = web_rolled_out(2).await;
    cluster
        .patch::<Deployment>("web", json!({"spec": {"paused": true}}))
        .await;
    set_image(&cluster, "web", "nginx:1.26").await;
    let d = wait_for("the paused change to be observed", DEADLINE, || async {
        let d = cluster.deployment("web").await?;
        let status = d.status.clone()?;
        let paused =
            status.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
            });
        (status.observed_generation == d.metadata.generation && paused).then_some(d)
    })
    .await;
    assert_eq!(
        cluster.replica_sets("app=web").await.len(),
        1,
        "no new ReplicaSet while paused"
    );
    assert_eq!(revision_of(&d.metadata).as_deref(), Some("1"));
    cluster
        .patch::<Deployment>("web", json!({"spec": {"paused": false}}))
        .await;
    rolled_out(&cluster, "web", "nginx:1.26").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_without_ready_pods_exceeds_its_progress_deadline() {
    // No nodes: the pods never become ready.
    let cluster = start().await;
    let mut manifest = deployment_manifest("stuck", 2, "nginx:1.25");
    manifest["spec"]["progressDeadlineSeconds"] = json!(1);
    cluster.create(manifest).await;
    let condition = wait_for("Progressing to turn False", DEADLINE, || async {
        let d = cluster.deployment("stuck").await?;
        d.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    assert_eq!(
        condition.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    let rs = cluster.replica_sets("app=stuck").await;
    let rs_name = rs[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(
        condition.message.unwrap_or_default(),
        format!("ReplicaSet \"{rs_name}\" has timed out progressing.")
    );
    let d = cluster.deployment("stuck").await.expect("deployment");
    let status = d.status.expect("status");
    assert_eq!(status.unavailable_replicas, Some(2));
    let available = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let mut cluster = start().await;
    cluster.run_nodes();
    let mut manifest = deployment_manifest("web", 3, "nginx:1.25");
    manifest["spec"]["strategy"] = json!({"type": "Recreate"});
    cluster.create(manifest).await;
    let (_, first) = rolled_out(&cluster, "web", "nginx:1.25").await;
    let old_hash = template_hash(&first);

    // A watcher that records any moment with pods of both templates.
    let params = ListParams::labels("app=web");
    let (list, mut events) = list_and_watch_pods(cluster.api.as_ref(), &params).await;
    let mut hashes: HashMap<String, String> = list
        .items
        .iter()
        .filter_map(|p| {
            Some((
                p.pointer("/metadata/name")?.as_str()?.to_owned(),
                p.pointer("/metadata/labels/pod-template-hash")?
                    .as_str()?
                    .to_owned(),
            ))
        })
        .collect();
    let mixed: Violations = Arc::default();
    let sink = mixed.clone();
    let last: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let last_seen = last.clone();
    cluster.spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            let name = event
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str);
            let hash = event
                .object
                .pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str);
            let (Some(name), Some(hash)) = (name, hash) else {
                continue;
            };
            match event.kind {
                WatchEventType::Deleted => {
                    hashes.remove(name);
                }
                _ => {
                    hashes.insert(name.to_owned(), hash.to_owned());
                }
            }
            let old = hashes.values().any(|h| *h == old_hash);
            let new = hashes.values().any(|h| *h != old_hash);
            if old && new {
                if let Ok(mut m) = sink.lock() {
                    m.push(format!("{hashes:?}"));
                }
            }
            if let Ok(mut l) = last_seen.lock() {
                *l = hashes.clone();
            }
        }
    });
    set_image(&cluster, "web", "nginx:1.26").await;
    let (_, second) = rolled_out(&cluster, "web", "nginx:1.26").await;
    let new_hash = template_hash(&second);
    wait_for("the watcher to see the new pods", DEADLINE, || async {
        let last = last.lock().map(|l| l.clone()).unwrap_or_default();
        (last.len() == 3 && last.values().all(|h| *h == new_hash)).then_some(())
    })
    .await;
    let mixed = mixed.lock().map(|m| m.clone()).unwrap_or_default();
    assert!(
        mixed.is_empty(),
        "old and new pods ran together: {mixed:#?}"
    );
}
