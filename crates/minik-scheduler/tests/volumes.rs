//! The scheduler and PersistentVolumeClaims against a real API server (no agents, no volume
//! controller): the node of a pod goes into its WaitForFirstConsumer claims, a missing claim
//! keeps the pod pending until it appears, and a bound volume's node affinity decides the node.

mod common;

use common::{cpu, start, Cluster};
use minik_testkit::{wait_for, DEADLINE};
use serde_json::{json, Value};

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

async fn local_path_class(c: &Cluster) {
    c.post(
        "/apis/storage.k8s.io/v1/storageclasses",
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "local-path"},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete"
        }),
    )
    .await;
}

/// Creates a claim in `default`; `spec` is merged into its spec.
async fn claim(c: &Cluster, name: &str, spec: Value) -> Value {
    let base = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-path",
            "resources": {"requests": {"storage": "1Gi"}}
        }
    });
    c.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        minik_api::patch::merge_patch(&base, &json!({ "spec": spec })),
    )
    .await
}

async fn get_claim(c: &Cluster, name: &str) -> Value {
    c.get(&format!(
        "/api/v1/namespaces/default/persistentvolumeclaims/{name}"
    ))
    .await
}

/// A pod spec asking for `request` cpu with one volume from claim `claim`.
fn with_claim(request: &str, claim: &str) -> Value {
    let mut spec = cpu(request);
    spec["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]);
    spec["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_gets_the_node_of_its_pod() {
    let c = start().await;
    c.node("n1", "4", "4Gi", json!({})).await;
    c.node("n2", "4", "4Gi", json!({})).await;
    local_path_class(&c).await;
    claim(&c, "data", json!({})).await;
    c.pod("db", with_claim("100m", "data")).await;
    let node = c.wait_bound("db").await;
    let claim = get_claim(&c, "data").await;
    assert_eq!(
        claim["metadata"]["annotations"][SELECTED_NODE], node,
        "{claim}"
    );
    // A second pod of the same claim follows it to that node, though the other is emptier.
    c.pod("reader", with_claim("100m", "data")).await;
    assert_eq!(c.wait_bound("reader").await, node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_waits_for_its_missing_claim() {
    let c = start().await;
    c.node("n1", "4", "4Gi", json!({})).await;
    c.node("n2", "4", "4Gi", json!({})).await;
    local_path_class(&c).await;
    c.pod("app", with_claim("100m", "later")).await;
    let message = "0/2 nodes are available: persistentvolumeclaim \"later\" not found.";
    c.wait_unschedulable("app", message).await;
    let event = wait_for("the FailedScheduling event", DEADLINE, || async {
        c.events_of("app")
            .await
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    assert_eq!(event["message"], message);
    assert_eq!(event["type"], "Warning");
    claim(&c, "later", json!({})).await;
    let node = c.wait_bound("app").await;
    let claim = get_claim(&c, "later").await;
    assert_eq!(claim["metadata"]["annotations"][SELECTED_NODE], node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_volume_takes_the_pod_to_its_node() {
    let c = start().await;
    // n1 is much emptier: only the volume's node affinity sends the pod to n2.
    c.node("n1", "16", "16Gi", json!({})).await;
    c.node("n2", "2", "2Gi", json!({})).await;
    c.post(
        "/api/v1/persistentvolumes",
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pv-on-n2"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "manual",
                "hostPath": {"path": "/var/lib/minik/volumes/pv-on-n2"},
                "claimRef": {"namespace": "default", "name": "bound"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}
                ]}]}}
            }
        }),
    )
    .await;
    claim(
        &c,
        "bound",
        json!({"storageClassName": "manual", "volumeName": "pv-on-n2"}),
    )
    .await;
    c.pod("app", with_claim("500m", "bound")).await;
    assert_eq!(c.wait_bound("app").await, "n2");
    let claim = get_claim(&c, "bound").await;
    assert!(
        claim["metadata"]["annotations"][SELECTED_NODE].is_null(),
        "a bound claim gets no node: {claim}"
    );
    // With n2 cordoned, the pod has nowhere to go and says why.
    c.merge_patch("/api/v1/nodes/n2", json!({"spec": {"unschedulable": true}}))
        .await;
    c.pod(
        "probe",
        json!({"nodeSelector": {"kubernetes.io/hostname": "n1"}}),
    )
    .await;
    c.wait_bound("probe").await;
    c.pod("second", with_claim("500m", "bound")).await;
    c.wait_unschedulable(
        "second",
        "0/2 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable.",
    )
    .await;
}
