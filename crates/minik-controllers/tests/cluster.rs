//! The cluster controllers over a real API server: namespace deletion, ResourceQuota status and
//! a ReplicaSet held back by a quota, and the node lifecycle (a silent node marked Unknown,
//! tainted, its pods evicted; a node that comes back untainted). Nodes are played by the test:
//! it writes their heartbeats, or stops.

mod common;

use std::time::Duration;

use common::quick;
use minik_apiserver::Config;
use minik_testkit::manifest::{
    deployment as deployment_manifest, labeled_pod as pod_manifest,
    replica_set as replica_set_manifest,
};
use minik_testkit::{wait_for, TestServer, DEADLINE, HISTORY};
use serde_json::{json, Value};

/// A server with the controllers in it; dropping it aborts them.
struct Cluster {
    server: TestServer,
}

async fn start(api: Config, controllers: minik_controllers::Config) -> Cluster {
    let mut server = minik_testkit::start_with(api, HISTORY).await;
    server.spawn(minik_controllers::run(server.api.clone(), controllers));
    Cluster { server }
}

impl Cluster {
    async fn get(&self, path: &str) -> Option<Value> {
        let answer = self.server.get(path).await;
        (answer.code == 200).then_some(answer.body)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self.server.post(path, &body).await;
        (answer.code, answer.body)
    }

    /// Posts `body` and fails the test unless it was created.
    async fn create(&self, path: &str, body: Value) {
        let (code, answer) = self.post(path, body).await;
        assert_eq!(code, 201, "POST {path}: {answer:#}");
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self.server.merge_patch(path, &body).await;
        (answer.code, answer.body)
    }

    async fn delete(&self, path: &str) -> u16 {
        self.server.delete(path).await.code
    }

    async fn items(&self, path: &str) -> Vec<Value> {
        self.get(path)
            .await
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn deleting_a_namespace_empties_it_then_removes_it() {
    let c = start(Config::default(), quick()).await;
    let (code, _) = c
        .post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(code, 201);
    let base = "/apis/apps/v1/namespaces/team";
    c.create(
        &format!("{base}/deployments"),
        deployment_manifest("web", 2, "nginx:1.25"),
    )
    .await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    c.create("/api/v1/namespaces/team/services", svc).await;
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "10"}}});
    c.create("/api/v1/namespaces/team/resourcequotas", quota)
        .await;
    wait_for("the deployment's pods", DEADLINE, || async {
        (c.items("/api/v1/namespaces/team/pods").await.len() == 2).then_some(())
    })
    .await;

    assert_eq!(c.delete("/api/v1/namespaces/team").await, 200);
    let ns = c.get("/api/v1/namespaces/team").await;
    assert!(
        ns.is_none()
            || ns
                .as_ref()
                .is_some_and(|n| n["status"]["phase"] == "Terminating"),
        "{ns:?}"
    );
    wait_for("the namespace to be gone", DEADLINE, || async {
        c.get("/api/v1/namespaces/team")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    for path in [
        "/api/v1/namespaces/team/pods",
        "/api/v1/namespaces/team/services",
        "/api/v1/namespaces/team/resourcequotas",
        "/api/v1/namespaces/team/events",
        "/apis/apps/v1/namespaces/team/deployments",
        "/apis/apps/v1/namespaces/team/replicasets",
    ] {
        assert!(c.items(path).await.is_empty(), "{path} left behind");
    }
    // The controllers do not recreate anything there.
    assert_eq!(
        c.post("/api/v1/namespaces/team/pods", pod_manifest("late", "web"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn a_replica_set_held_back_by_quota_reports_it_and_recovers() {
    let c = start(Config::default(), quick()).await;
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": "1"}}});
    c.create("/api/v1/namespaces/default/resourcequotas", quota)
        .await;
    c.create(
        "/apis/apps/v1/namespaces/default/replicasets",
        replica_set_manifest("web", 3),
    )
    .await;
    let condition = wait_for("the ReplicaFailure condition", DEADLINE, || async {
        let rs = c
            .get("/apis/apps/v1/namespaces/default/replicasets/web")
            .await?;
        rs["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ReplicaFailure")
            .cloned()
    })
    .await;
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "FailedCreate");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pods \"web-") && message.ends_with("is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1"),
        "{message}"
    );
    // The event and the condition are separate writes: wait for the event too.
    wait_for("the FailedCreate event", DEADLINE, || async {
        let events = c.items("/api/v1/namespaces/default/events").await;
        events
            .iter()
            .any(|e| {
                e["reason"] == "FailedCreate"
                    && e["involvedObject"]["name"] == "web"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Error creating: pods"))
            })
            .then_some(())
    })
    .await;
    assert_eq!(c.items("/api/v1/namespaces/default/pods").await.len(), 1);

    // Raising the quota lets the ReplicaSet finish, and the condition goes.
    let (code, _) = c
        .patch(
            "/api/v1/namespaces/default/resourcequotas/pods",
            json!({"spec": {"hard": {"pods": "3"}}}),
        )
        .await;
    assert_eq!(code, 200);
    wait_for("three pods and no failure", DEADLINE, || async {
        let rs = c
            .get("/apis/apps/v1/namespaces/default/replicasets/web")
            .await?;
        let failing = rs["status"]["conditions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["type"] == "ReplicaFailure"));
        (c.items("/api/v1/namespaces/default/pods").await.len() == 3 && !failing).then_some(())
    })
    .await;
    wait_for("the quota to count three pods", DEADLINE, || async {
        let q = c
            .get("/api/v1/namespaces/default/resourcequotas/pods")
            .await?;
        (q["status"]["used"]["pods"] == "3" && q["status"]["hard"]["pods"] == "3").then_some(())
    })
    .await;

    // Deleting the ReplicaSet (and so its pods) gives the usage back.
    assert_eq!(
        c.delete("/apis/apps/v1/namespaces/default/replicasets/web")
            .await,
        200
    );
    wait_for("the quota to count no pods", DEADLINE, || async {
        let q = c
            .get("/api/v1/namespaces/default/resourcequotas/pods")
            .await?;
        (q["status"]["used"]["pods"] == "0").then_some(())
    })
    .await;
}

fn node(name: &str, heartbeat: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [ready_condition(heartbeat)],
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    })
}

fn ready_condition(heartbeat: &str) -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2024-01-01T00:00:00Z"})
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    minik_api::k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Plays a node agent's heartbeat until it is aborted, or the cluster dropped.
fn heartbeat(c: &mut Cluster, name: &str) -> tokio::task::AbortHandle {
    let http = c.server.client.clone();
    let url = c.server.url(&format!("/api/v1/nodes/{name}/status"));
    c.server.spawn(async move {
        loop {
            let body = json!({"status": {"conditions": [ready_condition(&now())]}});
            let _ = http
                .patch(&url)
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string())
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn bound_pod(name: &str, node: &str, tolerations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "main", "image": "nginx:1.25"}]}
    })
}

fn taints(node: &Value) -> Vec<(String, String)> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or_default().to_owned(),
                t["effect"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_silent_node_is_tainted_its_pods_evicted_and_a_returning_one_untainted() {
    let api = Config {
        default_toleration_seconds: 2,
        ..Config::default()
    };
    let controllers = minik_controllers::Config {
        node_monitor_period: Duration::from_millis(100),
        node_monitor_grace_period: Duration::from_secs(3),
        pod_eviction_timeout: Duration::from_secs(2),
        ..quick()
    };
    let mut c = start(api, controllers).await;
    for name in ["n1", "n2"] {
        c.create("/api/v1/nodes", node(name, &now())).await;
    }
    heartbeat(&mut c, "n2");
    let n1_beat = heartbeat(&mut c, "n1");

    // A pod with the default tolerations (2 s here), one that tolerates an unreachable node for
    // an hour, and one on the healthy node.
    let (code, short) = c
        .post(
            "/api/v1/namespaces/default/pods",
            bound_pod("short", "n1", Value::Null),
        )
        .await;
    assert_eq!(code, 201);
    assert!(
        short["spec"]["tolerations"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 2)),
        "{short:#}"
    );
    let patient = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3600}]);
    c.create(
        "/api/v1/namespaces/default/pods",
        bound_pod("patient", "n1", patient),
    )
    .await;
    c.create(
        "/api/v1/namespaces/default/pods",
        bound_pod("elsewhere", "n2", Value::Null),
    )
    .await;

    // n1 goes silent.
    n1_beat.abort();
    let n1 = wait_for("n1 to be Unknown and tainted", DEADLINE, || async {
        let n = c.get("/api/v1/nodes/n1").await?;
        let t = taints(&n);
        (t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())))
        .then_some(n)
    })
    .await;
    let ready = &n1["status"]["conditions"][0];
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(n1["spec"]["taints"][0]["timeAdded"].is_string());

    wait_for(
        "the pod without its own toleration to be evicted",
        DEADLINE,
        || async {
            let pod = c.get("/api/v1/namespaces/default/pods/short").await?;
            pod["metadata"]["deletionTimestamp"]
                .is_string()
                .then_some(())
        },
    )
    .await;
    // The event is written next to the deletion, not before it: wait for it too.
    wait_for("the eviction event", DEADLINE, || async {
        let events = c.items("/api/v1/namespaces/default/events").await;
        events
            .iter()
            .any(|e| {
                e["reason"] == "TaintManagerEviction"
                    && e["message"] == "Marking for deletion Pod default/short"
            })
            .then_some(())
    })
    .await;
    let patient = c
        .get("/api/v1/namespaces/default/pods/patient")
        .await
        .expect("patient pod");
    assert!(
        patient["metadata"]["deletionTimestamp"].is_null(),
        "its toleration lasts an hour"
    );
    let elsewhere = c
        .get("/api/v1/namespaces/default/pods/elsewhere")
        .await
        .expect("pod on n2");
    assert!(elsewhere["metadata"]["deletionTimestamp"].is_null());
    let n2 = c.get("/api/v1/nodes/n2").await.expect("n2");
    assert!(taints(&n2).is_empty(), "{n2:#}");

    // n1 comes back: its agent writes Ready, the controller takes the taints away.
    heartbeat(&mut c, "n1");
    wait_for("n1 to be untainted", DEADLINE, || async {
        let n = c.get("/api/v1/nodes/n1").await?;
        (taints(&n).is_empty() && n["status"]["conditions"][0]["status"] == "True").then_some(())
    })
    .await;
}

#[tokio::test]
async fn when_every_node_is_silent_nothing_is_evicted() {
    let api = Config {
        default_toleration_seconds: 0,
        ..Config::default()
    };
    let controllers = minik_controllers::Config {
        node_monitor_period: Duration::from_millis(100),
        node_monitor_grace_period: Duration::from_secs(1),
        pod_eviction_timeout: Duration::ZERO,
        ..quick()
    };
    let c = start(api, controllers).await;
    c.create("/api/v1/nodes", node("only", "2024-01-01T00:00:00Z"))
        .await;
    c.create(
        "/api/v1/namespaces/default/pods",
        bound_pod("p", "only", Value::Null),
    )
    .await;
    let n = wait_for(
        "the node to be Unknown with NoSchedule",
        DEADLINE,
        || async {
            let n = c.get("/api/v1/nodes/only").await?;
            (n["status"]["conditions"][0]["status"] == "Unknown"
                && taints(&n)
                    .contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())))
            .then_some(n)
        },
    )
    .await;
    // The whole cluster is down: that looks like the control plane's trouble, so no NoExecute
    // taint and no eviction, over several monitor periods.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = c.get("/api/v1/nodes/only").await.expect("node");
        assert!(!taints(&n).iter().any(|(_, e)| e == "NoExecute"), "{n:#}");
        let pod = c
            .get("/api/v1/namespaces/default/pods/p")
            .await
            .expect("pod");
        assert!(pod["metadata"]["deletionTimestamp"].is_null());
    }
    drop(n);
}
