//! Manifests the tests create again and again, as JSON.

use serde_json::{json, Value};

/// A pod labelled `app: web` with one `busybox` container that sleeps.
pub fn pod(name: &str) -> Value {
    labeled_pod(name, "web")
}

/// A pod labelled `app: APP` with one `busybox` container that sleeps.
pub fn labeled_pod(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    })
}

/// A Deployment of `replicas` pods labelled `app: NAME`, running `image`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> Value {
    workload("apps/v1", "Deployment", name, replicas, image)
}

/// A ReplicaSet of `replicas` pods labelled `app: NAME`, running `nginx:1.25`.
pub fn replica_set(name: &str, replicas: i32) -> Value {
    workload("apps/v1", "ReplicaSet", name, replicas, "nginx:1.25")
}

fn workload(api_version: &str, kind: &str, name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    })
}

/// An object's `metadata.resourceVersion` as a number; fails the test if it has none.
pub fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {object}"))
}

/// Whether an object (a node, a pod) has the condition `Ready` at `True`.
pub fn is_ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}
