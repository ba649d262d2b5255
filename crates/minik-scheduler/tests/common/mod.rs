//! The scheduler's tests: the shared test server (`minik_testkit`) with the scheduler running
//! against it, and helpers to create nodes and pods and to wait (with a deadline) for what the
//! scheduler does.

#![allow(dead_code)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use minik_client::Api;
use minik_scheduler::Backoff;
use minik_testkit::{wait_for, TestServer, DEADLINE};
use serde_json::{json, Value};

/// A server and what runs against it; dropping it aborts them. It derefs to the server (its
/// `base`, `client`, the in-process `api`).
pub struct Cluster {
    server: TestServer,
}

impl Deref for Cluster {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// Back-offs short enough that retries happen well inside a test's deadline.
pub fn test_config() -> minik_scheduler::Config {
    minik_scheduler::Config {
        backoff: Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_unschedulable: Duration::from_secs(300),
        },
        ..minik_scheduler::Config::default()
    }
}

/// An API server and one scheduler.
pub async fn start() -> Cluster {
    let mut cluster = start_server().await;
    cluster.start_scheduler(test_config());
    cluster
}

/// An API server without a scheduler.
pub async fn start_server() -> Cluster {
    Cluster {
        server: minik_testkit::start().await,
    }
}

impl Cluster {
    /// Starts a scheduler over the in-process API.
    pub fn start_scheduler(&mut self, config: minik_scheduler::Config) {
        let api = self.server.api.clone();
        self.server.spawn(minik_scheduler::run(api, config));
    }

    /// Starts a scheduler that reaches the server over HTTP, as a separate process would.
    pub fn start_scheduler_over_http(&mut self, config: minik_scheduler::Config) {
        let api: Arc<dyn Api> =
            Arc::new(minik_client::HttpApi::new(&self.base).expect("an HTTP client"));
        self.server.spawn(minik_scheduler::run(api, config));
    }

    /// POST that must create (201); the object created.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self.server.post(path, &body).await;
        assert_eq!(answer.code, 201, "POST {path}: {}", answer.body);
        answer.body
    }

    /// GET that must find (200).
    pub async fn get(&self, path: &str) -> Value {
        let answer = self.server.get(path).await;
        assert_eq!(answer.code, 200, "GET {path}: {}", answer.body);
        answer.body
    }

    pub async fn merge_patch(&self, path: &str, body: Value) -> Value {
        let answer = self.server.merge_patch(path, &body).await;
        assert_eq!(answer.code, 200, "PATCH {path}: {}", answer.body);
        answer.body
    }

    pub async fn delete(&self, path: &str) {
        let answer = self.server.delete(path).await;
        assert!(
            answer.code == 200 || answer.code == 202,
            "DELETE {path}: {} {}",
            answer.code,
            answer.body
        );
    }

    /// Creates a ready node with this much cpu and memory; `extra` is merged into it (labels,
    /// taints, `spec.unschedulable`, other conditions).
    pub async fn node(&self, name: &str, cpu: &str, memory: &str, extra: Value) -> Value {
        let base = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            }
        });
        self.post(
            "/api/v1/nodes",
            minik_api::patch::merge_patch(&base, &extra),
        )
        .await
    }

    /// Creates a pod in `default` with one container; `spec` is merged into its spec.
    pub async fn pod(&self, name: &str, spec: Value) -> Value {
        self.pod_with_meta(name, json!({}), spec).await
    }

    pub async fn pod_with_meta(&self, name: &str, meta: Value, spec: Value) -> Value {
        let base = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
        });
        let body = minik_api::patch::merge_patch(&base, &json!({"metadata": meta, "spec": spec}));
        self.post("/api/v1/namespaces/default/pods", body).await
    }

    pub async fn get_pod(&self, name: &str) -> Value {
        self.get(&format!("/api/v1/namespaces/default/pods/{name}"))
            .await
    }

    /// Deletes a pod at once (no agent runs here to finish a graceful deletion).
    pub async fn delete_pod(&self, name: &str) {
        self.delete(&format!(
            "/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=0"
        ))
        .await
    }

    /// Waits until the pod is on a node, and returns the node.
    pub async fn wait_bound(&self, name: &str) -> String {
        let pod = wait_for(&format!("pod {name} to be bound"), DEADLINE, || async {
            let pod = self.get_pod(name).await;
            if pod["spec"]["nodeName"].is_string() {
                Ok(pod)
            } else {
                Err(pod["status"].clone())
            }
        })
        .await;
        pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the pod's PodScheduled condition is False/Unschedulable with `message`.
    pub async fn wait_unschedulable(&self, name: &str, message: &str) -> Value {
        wait_for(
            &format!("pod {name} to be unschedulable with {message:?}"),
            DEADLINE,
            || async {
                let pod = self.get_pod(name).await;
                let condition = pod["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                    .cloned()
                    .unwrap_or_default();
                if condition["status"] == "False"
                    && condition["reason"] == "Unschedulable"
                    && condition["message"] == message
                {
                    Ok(pod)
                } else {
                    Err(condition)
                }
            },
        )
        .await
    }

    /// The events about one pod.
    pub async fn events_of(&self, pod: &str) -> Vec<Value> {
        let list = self
            .get(&format!(
                "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={pod}"
            ))
            .await;
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

/// A pod spec asking for this much cpu.
pub fn cpu(request: &str) -> Value {
    json!({"containers": [{"name": "main", "image": "busybox:1.36", "resources": {"requests": {"cpu": request}}}]})
}
