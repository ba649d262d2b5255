//! RuntimeClasses (`node.k8s.io/v1`) over real HTTP: the kind itself (cluster-scoped, its
//! immutable handler, its table, discovery), the RuntimeClass admission of pods (a missing class
//! refuses the pod; the class's overhead, node selector and tolerations are given to it), and
//! that nodes may read RuntimeClasses, as kubelets do.

use std::sync::Arc;

use minik_apiserver::{ApiServer, Auth, AuthConfig, Config};
use minik_testkit::{open_store, serve, start, TestServer, HISTORY};
use serde_json::{json, Value};

const CLASSES: &str = "/apis/node.k8s.io/v1/runtimeclasses";
const PODS: &str = "/api/v1/namespaces/default/pods";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// The RuntimeClass of Kubernetes' documentation.
fn docs_class() -> Value {
    json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "myclass"},
        "handler": "myconfiguration",
    })
}

fn pod_with(name: &str, spec: Value) -> Value {
    let mut pod = minik_testkit::manifest::pod(name);
    if let (Some(target), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    pod
}

async fn create_class(server: &TestServer, class: Value) {
    let created = server.post(CLASSES, &class).await;
    assert_eq!(created.code, 201, "{}", created.body);
}

#[tokio::test]
async fn runtime_classes_are_served_cluster_scoped_with_an_immutable_handler() {
    let server = start().await;
    let created = server.post(CLASSES, &docs_class()).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["apiVersion"], "node.k8s.io/v1");
    assert_eq!(created.body["handler"], "myconfiguration");
    assert!(created.body["metadata"]["namespace"].is_null());
    assert!(created.body["metadata"]["uid"].is_string());

    let got = server.get(&format!("{CLASSES}/myclass")).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert_eq!(got.body["handler"], "myconfiguration");
    let list = server.get(CLASSES).await;
    assert_eq!(list.code, 200, "{}", list.body);
    assert_eq!(list.body["kind"], "RuntimeClassList");
    assert_eq!(list.body["items"][0]["metadata"]["name"], "myclass");
    // No namespaced paths for a cluster-scoped kind.
    let namespaced = server
        .get("/apis/node.k8s.io/v1/namespaces/default/runtimeclasses")
        .await;
    assert_eq!(namespaced.code, 404, "{}", namespaced.body);

    let again = server.post(CLASSES, &docs_class()).await;
    assert_eq!(again.code, 409, "{}", again.body);

    // The handler may not change; the rest may.
    let mut changed = got.body.clone();
    changed["handler"] = json!("kata");
    let refused = server.put(&format!("{CLASSES}/myclass"), &changed).await;
    assert_eq!(refused.code, 422, "{}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(
                "\"myclass\" is invalid: handler: Invalid value: \"kata\": field is immutable"
            )),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["details"]["group"], "node.k8s.io");
    assert_eq!(refused.body["details"]["kind"], "RuntimeClass");
    let mut labelled = got.body.clone();
    labelled["metadata"]["labels"] = json!({"sandbox": "none"});
    let updated = server.put(&format!("{CLASSES}/myclass"), &labelled).await;
    assert_eq!(updated.code, 200, "{}", updated.body);

    let invalid = server
        .post(
            CLASSES,
            &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                    "metadata": {"name": "bad"}, "handler": "Not_A_Label",
                    "overhead": {"podFixed": {"cpu": "-1"}}}),
        )
        .await;
    assert_eq!(invalid.code, 422, "{}", invalid.body);
    let fields: Vec<&str> = invalid.body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["handler", "overhead.limits[cpu]"]);

    let deleted = server.delete(&format!("{CLASSES}/myclass")).await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
}

#[tokio::test]
async fn runtime_classes_have_kubectls_columns_and_are_discovered() {
    let server = start().await;
    create_class(&server, docs_class()).await;
    let answer = server
        .client
        .get(server.url(CLASSES))
        .header("accept", TABLE)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 200);
    let table: Value = answer.json().await.expect("a table");
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Handler", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "myclass");
    assert_eq!(table["rows"][0]["cells"][1], "myconfiguration");

    let groups = server.get("/apis").await;
    let names: Vec<&str> = groups.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(names.contains(&"node.k8s.io"), "{names:?}");
    let group = server.get("/apis/node.k8s.io").await;
    assert_eq!(group.code, 200, "{}", group.body);
    assert_eq!(
        group.body["preferredVersion"]["groupVersion"],
        "node.k8s.io/v1"
    );
    let resources = server.get("/apis/node.k8s.io/v1").await;
    assert_eq!(resources.code, 200, "{}", resources.body);
    assert_eq!(resources.body["groupVersion"], "node.k8s.io/v1");
    let resource = &resources.body["resources"][0];
    assert_eq!(resource["name"], "runtimeclasses");
    assert_eq!(resource["singularName"], "runtimeclass");
    assert_eq!(resource["kind"], "RuntimeClass");
    assert_eq!(resource["namespaced"], false);
    assert_eq!(
        resources.body["resources"].as_array().map(Vec::len),
        Some(1)
    );

    // Aggregated discovery, as kubectl 1.27+ reads it.
    let aggregated: Value = server
        .client
        .get(server.url("/apis"))
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let node_group = aggregated["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "node.k8s.io")
        .expect("node.k8s.io in aggregated discovery");
    assert_eq!(
        node_group["versions"][0]["resources"][0]["scope"],
        "Cluster"
    );

    let openapi = server.get("/openapi/v3").await;
    assert!(
        openapi.body["paths"]["apis/node.k8s.io/v1"].is_object(),
        "{}",
        openapi.body
    );
}

#[tokio::test]
async fn pods_naming_a_missing_class_are_forbidden() {
    let server = start().await;
    let refused = server
        .post(
            PODS,
            &pod_with("web", json!({"runtimeClassName": "gvisor"})),
        )
        .await;
    assert_eq!(refused.code, 403, "{}", refused.body);
    assert_eq!(refused.body["reason"], "Forbidden");
    assert_eq!(
        refused.body["message"],
        "pods \"web\" is forbidden: pod rejected: RuntimeClass \"gvisor\" not found"
    );
    assert_eq!(server.get(&format!("{PODS}/web")).await.code, 404);

    // An overhead without a class that defines it is refused too.
    let refused = server
        .post(PODS, &pod_with("heavy", json!({"overhead": {"cpu": "1"}})))
        .await;
    assert_eq!(refused.code, 403, "{}", refused.body);
    assert_eq!(
        refused.body["message"],
        "pods \"heavy\" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
    );
}

#[tokio::test]
async fn pods_get_the_overhead_and_scheduling_of_their_class() {
    let server = start().await;
    create_class(
        &server,
        json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "gvisor"}, "handler": "runsc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {
                "nodeSelector": {"sandbox": "gvisor"},
                "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }),
    )
    .await;

    let created = server
        .post(
            PODS,
            &pod_with(
                "web",
                json!({
                    "runtimeClassName": "gvisor",
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
                }),
            ),
        )
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let spec = &created.body["spec"];
    assert_eq!(spec["overhead"], json!({"cpu": "250m", "memory": "64Mi"}));
    assert_eq!(
        spec["nodeSelector"],
        json!({"disk": "ssd", "sandbox": "gvisor"})
    );
    let keys: Vec<&str> = spec["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    // The pod's own, the server's default not-ready and unreachable ones, then the class's.
    assert_eq!(
        keys,
        [
            "dedicated",
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "sandbox"
        ]
    );
    let stored = server.get(&format!("{PODS}/web")).await;
    assert_eq!(stored.body["spec"]["overhead"], spec["overhead"]);

    // The same overhead written otherwise is accepted; another one is not.
    let same = server
        .post(
            PODS,
            &pod_with(
                "same",
                json!({"runtimeClassName": "gvisor", "overhead": {"cpu": "0.25", "memory": "64Mi"}}),
            ),
        )
        .await;
    assert_eq!(same.code, 201, "{}", same.body);
    let other = server
        .post(
            PODS,
            &pod_with(
                "other",
                json!({"runtimeClassName": "gvisor", "overhead": {"cpu": "1"}}),
            ),
        )
        .await;
    assert_eq!(other.code, 403, "{}", other.body);
    assert_eq!(
        other.body["message"],
        "pods \"other\" is forbidden: pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
    );

    let conflict = server
        .post(
            PODS,
            &pod_with(
                "elsewhere",
                json!({"runtimeClassName": "gvisor", "nodeSelector": {"sandbox": "kata"}}),
            ),
        )
        .await;
    assert_eq!(conflict.code, 403, "{}", conflict.body);
    assert_eq!(
        conflict.body["message"],
        "pods \"elsewhere\" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[sandbox] = gvisor; pod.spec.nodeSelector[sandbox] = kata"
    );

    // Only creates are admitted: an update keeps what the pod got.
    let mut update = stored.body.clone();
    update["spec"]["activeDeadlineSeconds"] = json!(600);
    let updated = server.put(&format!("{PODS}/web"), &update).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    assert_eq!(updated.body["spec"]["overhead"], spec["overhead"]);
}

/// Nodes read RuntimeClasses, as kubelets do, and may not write them.
#[tokio::test]
async fn nodes_may_read_runtime_classes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path(), HISTORY);
    let auth = Auth::open(AuthConfig {
        dir: dir.path().join("auth"),
        admin_file: None,
        anonymous_loopback: false,
        ca_fingerprint: None,
    })
    .expect("auth");
    let admin = std::fs::read_to_string(dir.path().join("auth/admin-token")).expect("admin token");
    let admin = admin.trim().to_owned();
    let node = auth
        .join("n1", |_| async { Ok(()) })
        .await
        .expect("join")
        .token;
    let server = ApiServer::secured(Arc::new(store.clone()), Config::default(), auth);
    let s = serve(server, store, dir).await;
    let send = |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = s
            .client
            .request(method, s.url(path))
            .bearer_auth(token.to_owned());
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("answer");
            let code = response.status().as_u16();
            (code, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, body) = send(&admin, reqwest::Method::POST, CLASSES, Some(docs_class())).await;
    assert_eq!(code, 201, "{body}");
    for path in [
        CLASSES.to_owned(),
        format!("{CLASSES}/myclass"),
        format!("{CLASSES}?watch=true&timeoutSeconds=1"),
    ] {
        let (code, body) = send(&node, reqwest::Method::GET, &path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let mut other = docs_class();
    other["metadata"]["name"] = json!("other");
    let (code, body) = send(&node, reqwest::Method::POST, CLASSES, Some(other)).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = send(
        &node,
        reqwest::Method::DELETE,
        &format!("{CLASSES}/myclass"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
}
