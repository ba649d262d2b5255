//! A cluster for the tests: a real API server on an ephemeral loopback port over a store in a
//! temporary directory, the controllers running inside it as in `minik server`, an HTTP client,
//! and a stand-in for node agents that marks pods Running and Ready. Every task it starts is
//! aborted when it is dropped, even when a test fails.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::{Pod, ReplicationController};
use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
use minik_apiserver::{app, ApiServer, Config};
use minik_client::{resource_of, Api, ApiExt, HttpApi, ListParams, WatchEventType};
use minik_store::{SledStore, StoreConfig};
use serde_json::{json, Value};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub base: String,
    /// A client over HTTP, as a user's.
    pub api: Arc<dyn Api>,
    pub http: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub async fn start() -> Cluster {
    start_with(|api| api).await
}

/// A cluster whose controllers reach the API through what `wrap` makes of it (a layer that
/// counts or refuses their requests); the tests' own client is not wrapped.
pub async fn start_with(wrap: impl FnOnce(Arc<dyn Api>) -> Arc<dyn Api>) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(StoreConfig::new(dir.path().join("store"))).expect("open store");
    let server = ApiServer::new(Arc::new(store), Config::default());
    server.registry.bootstrap().await.expect("bootstrap");
    let in_process: Arc<dyn Api> = Arc::new(server.registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, app(server)).await;
    });
    let config = minik_controllers::Config {
        // Short, so that a missed change is caught within a test's deadline.
        resync: Duration::from_secs(5),
        ..minik_controllers::Config::default()
    };
    let controllers = tokio::spawn(minik_controllers::run(wrap(in_process), config));
    let base = format!("http://{addr}");
    Cluster {
        api: Arc::new(HttpApi::new(&base).expect("client")),
        http: reqwest::Client::new(),
        base,
        tasks: vec![serve, controllers],
        _dir: dir,
    }
}

impl Cluster {
    /// Plays the node agents: every pod that appears is marked Running and Ready.
    pub fn run_nodes(&mut self) {
        let api = self.api.clone();
        self.tasks.push(tokio::spawn(async move {
            let params = ListParams::default();
            loop {
                let Ok(mut events) = api
                    .watch(resource_of::<Pod>(), Some("default"), &params, None)
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while let Some(Ok(event)) = events.next().await {
                    if event.kind != WatchEventType::Added {
                        continue;
                    }
                    let Ok(pod) = serde_json::from_value::<Pod>(event.object) else {
                        continue;
                    };
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    // A pod deleted meanwhile is no longer there to mark.
                    let _ = mark_ready(api.as_ref(), &name).await;
                }
            }
        }));
    }

    /// Spawns a task that is aborted with the cluster.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    pub async fn create(&self, object: Value) -> Value {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let info = match kind.as_str() {
            "ReplicaSet" => resource_of::<ReplicaSet>(),
            "ReplicationController" => resource_of::<ReplicationController>(),
            "Deployment" => resource_of::<Deployment>(),
            _ => resource_of::<Pod>(),
        };
        self.api
            .create(info, Some("default"), object, WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot create a {kind}: {e}"))
    }

    pub async fn pods(&self, selector: &str) -> Vec<Pod> {
        let params = ListParams::labels(selector);
        let (pods, _) = self
            .api
            .list_as::<Pod>(Some("default"), &params)
            .await
            .expect("list pods");
        pods
    }

    pub async fn replica_set(&self, name: &str) -> Option<ReplicaSet> {
        self.api
            .get_as::<ReplicaSet>(Some("default"), name)
            .await
            .ok()
    }

    pub async fn replica_sets(&self, selector: &str) -> Vec<ReplicaSet> {
        let params = ListParams::labels(selector);
        let (items, _) = self
            .api
            .list_as::<ReplicaSet>(Some("default"), &params)
            .await
            .expect("list replica sets");
        items
    }

    pub async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.api
            .get_as::<Deployment>(Some("default"), name)
            .await
            .ok()
    }

    /// A merge patch of an object (not its status).
    pub async fn patch<K: minik_api::k8s_openapi::Resource>(&self, name: &str, body: Value) {
        self.api
            .patch(
                resource_of::<K>(),
                Some("default"),
                name,
                Patch {
                    kind: PatchKind::Merge,
                    body,
                },
                false,
                WriteOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot patch {} {name}: {e}", K::KIND));
    }

    /// Sets `spec.replicas` through the `scale` subresource, as `kubectl scale` does.
    pub async fn scale(&self, plural_path: &str, name: &str, replicas: i32) {
        let url = format!("{}{plural_path}/{name}/scale", self.base);
        let response = self
            .http
            .patch(url)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"spec": {"replicas": replicas}}).to_string())
            .send()
            .await
            .expect("scale request");
        assert!(
            response.status().is_success(),
            "scale answered {}",
            response.status()
        );
    }

    pub async fn delete<K: minik_api::k8s_openapi::Resource>(
        &self,
        name: &str,
        propagation: Option<Propagation>,
    ) -> Value {
        self.api
            .delete(
                resource_of::<K>(),
                Some("default"),
                name,
                DeleteOptions {
                    propagation,
                    ..DeleteOptions::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("cannot delete {} {name}: {e}", K::KIND))
    }
}

/// Marks a pod Running and Ready through its status, as its node would.
pub async fn mark_ready(api: &dyn Api, name: &str) -> Result<Value, minik_api::ApiError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let now = minik_api::k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
    }});
    api.patch(
        resource_of::<Pod>(),
        Some("default"),
        name,
        Patch {
            kind: PatchKind::Merge,
            body: status,
        },
        true,
        WriteOptions::default(),
    )
    .await
}

/// Polls `check` until it gives a value, failing the test after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn replica_set_manifest(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
            }
        }
    })
}

pub fn pod_manifest(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}
    })
}

pub fn deployment_manifest(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
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

/// Whether a pod is controlled by the object with `uid`.
pub fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}
