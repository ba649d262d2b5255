//! A cluster for the controllers' tests: the shared test server (`minik_testkit`) with the
//! controllers running inside it as in `minik server`, an HTTP client, and a stand-in for node
//! agents that marks pods Running and Ready. Every task it starts is aborted when it is dropped,
//! even when a test fails.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::k8s_openapi::api::core::v1::{Pod, ReplicationController};
use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
use minik_client::{
    resource_of, Api, ApiExt, EventStream, HttpApi, ListParams, ObjectList, WatchEventType,
};
use minik_testkit::TestServer;
use serde_json::{json, Value};

pub struct Cluster {
    pub base: String,
    /// A client over HTTP, as a user's.
    pub api: Arc<dyn Api>,
    pub http: reqwest::Client,
    /// The server; its tasks (and the controllers) are aborted when it is dropped.
    server: TestServer,
}

pub async fn start() -> Cluster {
    start_with(|api| api).await
}

/// A cluster whose controllers reach the API through what `wrap` makes of it (a layer that
/// counts or refuses their requests); the tests' own client is not wrapped.
pub async fn start_with(wrap: impl FnOnce(Arc<dyn Api>) -> Arc<dyn Api>) -> Cluster {
    let mut server = minik_testkit::start().await;
    server.spawn(minik_controllers::run(wrap(server.api.clone()), quick()));
    Cluster {
        api: Arc::new(HttpApi::new(&server.base).expect("client")),
        http: server.client.clone(),
        base: server.base.clone(),
        server,
    }
}

/// Controllers that resync often, so that a missed change is caught within a test's deadline.
pub fn quick() -> minik_controllers::Config {
    minik_controllers::Config {
        resync: Duration::from_secs(5),
        ..minik_controllers::Config::default()
    }
}

impl Cluster {
    /// Plays the node agents: every pod that appears is marked Running and Ready.
    pub fn run_nodes(&mut self) {
        let api = self.api.clone();
        self.spawn(async move {
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
        });
    }

    /// Spawns a task that is aborted with the cluster.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.server.spawn(task);
    }

    pub async fn create(&self, object: Value) -> Value {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let info = match kind.as_str() {
            "ReplicaSet" => resource_of::<ReplicaSet>(),
            "ReplicationController" => resource_of::<ReplicationController>(),
            "Deployment" => resource_of::<Deployment>(),
            "PersistentVolumeClaim" => {
                resource_of::<minik_api::k8s_openapi::api::core::v1::PersistentVolumeClaim>()
            }
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

    /// The pods matching `selector` that the object with `uid` controls.
    pub async fn pods_controlled_by(&self, selector: &str, uid: &str) -> Vec<Pod> {
        let mut pods = self.pods(selector).await;
        pods.retain(|p| controlled_by(p, uid));
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

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod is controlled by the object with `uid`.
pub fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The default namespace's pods that `params` selects, and a watch of every change to them
/// after that list.
pub async fn list_and_watch_pods(api: &dyn Api, params: &ListParams) -> (ObjectList, EventStream) {
    let list = api
        .list(resource_of::<Pod>(), Some("default"), params)
        .await
        .expect("list pods");
    let events = api
        .watch(
            resource_of::<Pod>(),
            Some("default"),
            params,
            Some(&list.resource_version),
        )
        .await
        .expect("watch pods");
    (list, events)
}
