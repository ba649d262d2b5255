//! A real API server on an ephemeral loopback port over a store in a temporary directory, the
//! scheduler running against it, and helpers to create nodes and pods and to wait (with a
//! deadline) for what the scheduler does.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use minik_apiserver::{app, ApiServer, Config};
use minik_client::Api;
use minik_scheduler::Backoff;
use minik_store::{SledStore, StoreConfig};
use serde_json::{json, Value};

/// How long a test waits for something before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub base: String,
    pub client: reqwest::Client,
    /// The in-process API, as the components inside `minik server` reach it.
    pub api: Arc<dyn Api>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every task this cluster started ends with the test, even when it fails.
        for task in &self.tasks {
            task.abort();
        }
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
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(StoreConfig::new(dir.path().join("store"))).expect("open store");
    let server = ApiServer::new(Arc::new(store), Config::default());
    server.registry.bootstrap().await.expect("bootstrap");
    let api: Arc<dyn Api> = Arc::new(server.registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, app(server)).await;
    });
    Cluster {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        api,
        tasks: vec![serve],
        _dir: dir,
    }
}

impl Cluster {
    /// Starts a scheduler over the in-process API.
    pub fn start_scheduler(&mut self, config: minik_scheduler::Config) {
        self.tasks
            .push(tokio::spawn(minik_scheduler::run(self.api.clone(), config)));
    }

    /// Starts a scheduler that reaches the server over HTTP, as a separate process would.
    pub fn start_scheduler_over_http(&mut self, config: minik_scheduler::Config) {
        let api: Arc<dyn Api> =
            Arc::new(minik_client::HttpApi::new(&self.base).expect("an HTTP client"));
        self.tasks
            .push(tokio::spawn(minik_scheduler::run(api, config)));
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let code = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (code, answer) = self
            .send(
                reqwest::Method::POST,
                path,
                Some(("application/json", body)),
            )
            .await;
        assert_eq!(code, 201, "POST {path}: {answer}");
        answer
    }

    pub async fn get(&self, path: &str) -> Value {
        let (code, answer) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(code, 200, "GET {path}: {answer}");
        answer
    }

    pub async fn merge_patch(&self, path: &str, body: Value) -> Value {
        let (code, answer) = self
            .send(
                reqwest::Method::PATCH,
                path,
                Some(("application/merge-patch+json", body)),
            )
            .await;
        assert_eq!(code, 200, "PATCH {path}: {answer}");
        answer
    }

    pub async fn delete(&self, path: &str) {
        let (code, answer) = self.send(reqwest::Method::DELETE, path, None).await;
        assert!(code == 200 || code == 202, "DELETE {path}: {code} {answer}");
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
        let pod = self
            .wait_for(&format!("pod {name} to be bound"), || async {
                let pod = self.get_pod(name).await;
                pod["spec"]["nodeName"].is_string().then_some(pod)
            })
            .await;
        pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the pod's PodScheduled condition is False/Unschedulable with `message`.
    pub async fn wait_unschedulable(&self, name: &str, message: &str) -> Value {
        self.wait_for(
            &format!("pod {name} to be unschedulable with {message:?}"),
            || async {
                let pod = self.get_pod(name).await;
                let condition = pod["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                    .cloned()?;
                (condition["status"] == "False"
                    && condition["reason"] == "Unschedulable"
                    && condition["message"] == message)
                    .then_some(pod)
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

    /// Polls `check` until it gives a value, failing the test after [`DEADLINE`].
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A pod spec asking for this much cpu.
pub fn cpu(request: &str) -> Value {
    json!({"containers": [{"name": "main", "image": "busybox:1.36", "resources": {"requests": {"cpu": request}}}]})
}
