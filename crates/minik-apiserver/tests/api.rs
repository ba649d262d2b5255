//! The REST API over real HTTP on an ephemeral port: verbs, subresources, errors as `Status`.

use minik_testkit::manifest::{deployment, pod, rv};
use minik_testkit::{start, Answer, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn assert_status(answer: &Answer, code: u16, reason: &str) {
    assert_eq!(answer.code, code, "{:#}", answer.body);
    assert_eq!(answer.body["kind"], "Status", "{:#}", answer.body);
    assert_eq!(answer.body["status"], "Failure");
    assert_eq!(answer.body["reason"], reason, "{:#}", answer.body);
    assert_eq!(answer.body["code"], code);
}

#[tokio::test]
async fn discovery_version_and_health() {
    let s = start().await;
    assert_eq!(s.get("/healthz").await.body, "ok");
    assert_eq!(s.get("/readyz").await.code, 200);
    assert_eq!(s.get("/version").await.body["major"], "1");
    assert_eq!(s.get("/api").await.body["versions"], json!(["v1"]));
    assert_eq!(s.get("/apis").await.body["groups"][0]["name"], "apps");
    let core = s.get("/api/v1").await;
    assert_eq!(core.body["kind"], "APIResourceList");
    let apps = s.get("/apis/apps/v1").await;
    assert!(apps.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "deployments/scale"));
    assert_status(&s.get("/api/v1/widgets").await, 404, "NotFound");
    assert_status(&s.get("/apis/autoscaling/v2").await, 404, "NotFound");
}

#[tokio::test]
async fn system_namespaces_exist_from_the_first_start() {
    let s = start().await;
    let list = s.get("/api/v1/namespaces").await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let default = s.get("/api/v1/namespaces/default").await.body;
    assert_eq!(default["status"]["phase"], "Active");
    assert_eq!(
        default["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "default"
    );
}

#[tokio::test]
async fn create_sets_server_fields_and_defaults() {
    let s = start().await;
    let created = s.post(PODS, &pod("web")).await;
    assert_eq!(created.code, 201, "{:#}", created.body);
    let p = created.body;
    assert!(p["metadata"]["uid"].as_str().unwrap().len() >= 32);
    assert!(p["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(p["metadata"]["namespace"], "default");
    assert_eq!(p["metadata"]["generation"], 1);
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(p["status"]["phase"], "Pending");
    let got = s.get(&format!("{PODS}/web")).await;
    assert_eq!(got.body, p);

    let again = s.post(PODS, &pod("web")).await;
    assert_status(&again, 409, "AlreadyExists");
    assert_eq!(again.body["message"], "pods \"web\" already exists");
    assert_eq!(again.body["details"]["name"], "web");
    assert_eq!(again.body["details"]["kind"], "pods");
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let s = start().await;
    let mut body = pod("");
    body["metadata"] = json!({"generateName": "web-"});
    let a = s.post(PODS, &body).await.body;
    let b = s.post(PODS, &body).await.body;
    let (a, b) = (
        a["metadata"]["name"].as_str().unwrap(),
        b["metadata"]["name"].as_str().unwrap(),
    );
    assert!(a.starts_with("web-") && a.len() == 9, "{a}");
    assert_ne!(a, b);
}

#[tokio::test]
async fn bad_objects_are_refused_with_field_paths_and_change_nothing() {
    let s = start().await;
    let before = s.store_revision().await;

    let mut invalid = pod("Bad_Name");
    invalid["spec"]["containers"] = json!([{"name": "main"}, {"name": "main", "image": "x", "ports": [{"containerPort": 70000}]}]);
    let answer = s.post(PODS, &invalid).await;
    assert_status(&answer, 422, "Invalid");
    let fields: Vec<&str> = answer.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    for expected in [
        "metadata.name",
        "spec.containers[0].image",
        "spec.containers[1].name",
        "spec.containers[1].ports[0].containerPort",
    ] {
        assert!(fields.contains(&expected), "{expected} not in {fields:?}");
    }
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Pod \"Bad_Name\" is invalid: ["));

    let mut unknown = pod("web");
    unknown["spec"]["containers"][0]["imagee"] = json!("x");
    let answer = s.post(PODS, &unknown).await;
    assert_status(&answer, 400, "BadRequest");
    assert_eq!(
        answer.body["message"],
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
    );

    let mut wrong_type = deployment("web", 1, "nginx:1.25");
    wrong_type["spec"]["template"]["spec"]["containers"] = json!({"name": "x"});
    let answer = s.post(DEPLOYMENTS, &wrong_type).await;
    assert_status(&answer, 400, "BadRequest");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .ends_with("spec.template.spec.containers: invalid type: map, expected a sequence"),
        "{}",
        answer.body["message"]
    );

    let mut old_version = deployment("web", 1, "nginx:1.25");
    old_version["apiVersion"] = json!("apps/v1beta2");
    let answer = s.post(DEPLOYMENTS, &old_version).await;
    assert_status(&answer, 400, "BadRequest");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("Deployment is served as apps/v1"),
        "{}",
        answer.body["message"]
    );

    let answer = s
        .send(
            "POST",
            PODS,
            "application/json",
            Some("{\"metadata\": ".into()),
        )
        .await;
    assert_status(&answer, 400, "BadRequest");
    let answer = s
        .send("POST", PODS, "text/plain", Some(pod("web").to_string()))
        .await;
    assert_status(&answer, 415, "UnsupportedMediaType");

    let answer = s.post("/api/v1/namespaces/nowhere/pods", &pod("web")).await;
    assert_status(&answer, 404, "NotFound");
    assert_eq!(answer.body["message"], "namespaces \"nowhere\" not found");

    assert_eq!(
        s.store_revision().await,
        before,
        "refused writes change nothing"
    );
}

#[tokio::test]
async fn yaml_bodies_and_yaml_answers() {
    let s = start().await;
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\n  labels:\n    flag: \"on\"\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let created = s
        .send("POST", PODS, "application/yaml", Some(yaml.into()))
        .await;
    assert_eq!(created.code, 201, "{:#}", created.body);
    let get = |path: &str, accept: &str| s.client.get(s.url(path)).header("accept", accept).send();
    let response = get(&format!("{PODS}/y"), "application/yaml").await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let text = response.text().await.unwrap();
    // `y` is a boolean to YAML 1.1 readers, so it is quoted as kubectl quotes it.
    assert!(text.contains("name: 'y'"), "{text}");
    // Regression: YAML 1.1 readers (kubectl's) take a plain `on` for a boolean.
    assert!(
        text.contains("flag: 'on'") || text.contains("flag: \"on\""),
        "{text}"
    );
    // A list in YAML is made from the whole JSON list, which JSON answers write out a chunk at
    // a time.
    let response = get(PODS, "application/yaml").await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let text = response.text().await.unwrap();
    let list: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(list["kind"].as_str(), Some("PodList"), "{text}");
    let items = list["items"].as_sequence().unwrap();
    assert_eq!(items.len(), 1, "{text}");
    assert_eq!(items[0]["metadata"]["name"].as_str(), Some("y"));
    // The JSON list goes out a chunk at a time, still with its exact length.
    let response = get(PODS, "application/json").await.unwrap();
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(response.headers().get("transfer-encoding").is_none());
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "y");
    let response = get(PODS, "application/vnd.kubernetes.protobuf")
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406);
}

#[tokio::test]
async fn list_filters_by_labels_and_fields_across_namespaces() {
    let s = start().await;
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await;
    for (ns, name, app) in [
        ("default", "a", "web"),
        ("default", "b", "db"),
        ("other", "c", "web"),
    ] {
        let mut p = pod(name);
        p["metadata"]["labels"] = json!({"app": app});
        assert_eq!(
            s.post(&format!("/api/v1/namespaces/{ns}/pods"), &p)
                .await
                .code,
            201
        );
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = s.get("/api/v1/pods").await.body;
    assert_eq!(all["kind"], "PodList");
    assert_eq!(names(&all), ["a", "b", "c"]);
    assert!(rv(&all) >= 3);
    assert_eq!(
        names(&s.get("/api/v1/pods?labelSelector=app%3Dweb").await.body),
        ["a", "c"]
    );
    assert_eq!(
        names(
            &s.get(&format!("{PODS}?labelSelector=app+in+(db,cache)"))
                .await
                .body
        ),
        ["b"]
    );
    assert_eq!(
        names(
            &s.get("/api/v1/pods?fieldSelector=metadata.namespace%3Dother")
                .await
                .body
        ),
        ["c"]
    );
    assert_eq!(
        names(
            &s.get("/api/v1/pods?fieldSelector=spec.nodeName%3D")
                .await
                .body
        ),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(
            &s.get("/api/v1/pods?fieldSelector=metadata.name!%3Da,status.phase%3DPending")
                .await
                .body
        ),
        ["b", "c"]
    );
    assert_status(
        &s.get("/api/v1/pods?fieldSelector=spec.image%3Dx").await,
        400,
        "BadRequest",
    );
    assert_status(
        &s.get("/api/v1/pods?labelSelector=a+in+(").await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn updates_are_compare_and_swap_and_bump_generation_on_spec_changes() {
    let s = start().await;
    let created = s
        .post(DEPLOYMENTS, &deployment("web", 2, "nginx:1.25"))
        .await
        .body;
    let url = format!("{DEPLOYMENTS}/web");

    let mut changed = created.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    let updated = s.put(&url, &changed).await;
    assert_eq!(updated.code, 200, "{:#}", updated.body);
    assert_eq!(updated.body["metadata"]["generation"], 2);
    assert!(rv(&updated.body) > rv(&created));

    // The same stale write again: 409 Conflict with Kubernetes' message.
    let stale = s.put(&url, &changed).await;
    assert_status(&stale, 409, "Conflict");
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // Without a resourceVersion the update is unconditional; a change of labels only keeps the
    // generation.
    let mut unconditional = updated.body.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["metadata"]["labels"] = json!({"tier": "front"});
    let relabelled = s.put(&url, &unconditional).await;
    assert_eq!(relabelled.code, 200, "{:#}", relabelled.body);
    assert_eq!(relabelled.body["metadata"]["generation"], 2);

    // Writing back what is stored changes nothing, not even the resourceVersion.
    let same = s.put(&url, &relabelled.body).await;
    assert_eq!(rv(&same.body), rv(&relabelled.body));

    // Server-owned fields cannot be changed by a client.
    let mut forged = same.body.clone();
    forged["metadata"]["uid"] = json!("forged");
    forged["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
    let kept = s.put(&url, &forged).await.body;
    assert_eq!(kept["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        kept["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );

    let mut renamed = kept.clone();
    renamed["metadata"]["name"] = json!("other");
    assert_status(&s.put(&url, &renamed).await, 400, "BadRequest");
    assert_status(
        &s.put(
            &format!("{DEPLOYMENTS}/missing"),
            &deployment("missing", 1, "nginx:1.25"),
        )
        .await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn pod_spec_is_immutable_except_images() {
    let s = start().await;
    let created = s.post(PODS, &pod("web")).await.body;
    let mut changed = created.clone();
    changed["spec"]["containers"][0]["command"] = json!(["sleep", "1"]);
    let answer = s.put(&format!("{PODS}/web"), &changed).await;
    assert_status(&answer, 422, "Invalid");
    let mut image = created.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    assert_eq!(s.put(&format!("{PODS}/web"), &image).await.code, 200);
}

#[tokio::test]
async fn patches_merge_strategic_and_json() {
    let s = start().await;
    let mut d = deployment("web", 1, "nginx:1.25");
    d["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "main", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "busybox"}
    ]);
    s.post(DEPLOYMENTS, &d).await;
    let url = format!("{DEPLOYMENTS}/web");

    // Strategic merge: containers merge by name, env by name.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:1.36", "env": [{"name": "B", "value": "2"}]}]}}}});
    let patched = s
        .patch(&url, "application/strategic-merge-patch+json", &patch)
        .await;
    assert_eq!(patched.code, 200, "{:#}", patched.body);
    let containers = &patched.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 2);
    assert_eq!(containers[0]["env"][0]["name"], "A");
    assert_eq!(containers[1]["image"], "busybox:1.36");
    assert_eq!(patched.body["metadata"]["generation"], 2);

    // Merge patch: lists are replaced; null deletes.
    let patch = json!({"metadata": {"labels": {"x": "y"}}, "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "nginx"}]}}}});
    let patched = s
        .patch(&url, "application/merge-patch+json", &patch)
        .await
        .body;
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let patched = s
        .patch(
            &url,
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"x": null}}}),
        )
        .await
        .body;
    assert!(patched["metadata"]["labels"].get("x").is_none());

    // JSON patch.
    let patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]);
    assert_eq!(
        s.patch(&url, "application/json-patch+json", &patch)
            .await
            .body["spec"]["replicas"],
        4
    );
    let patch = json!([{"op": "test", "path": "/spec/replicas", "value": 9}]);
    assert_status(
        &s.patch(&url, "application/json-patch+json", &patch).await,
        400,
        "BadRequest",
    );

    // A patch that makes the object invalid is refused; one with a stale resourceVersion too.
    let answer = s
        .patch(
            &url,
            "application/merge-patch+json",
            &json!({"spec": {"replicas": -1}}),
        )
        .await;
    assert_status(&answer, 422, "Invalid");
    let answer = s
        .patch(
            &url,
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}),
        )
        .await;
    assert_status(&answer, 409, "Conflict");
    assert_status(
        &s.patch(&url, "application/apply-patch+yaml", &json!({}))
            .await,
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &s.patch(&url, "text/plain", &json!({})).await,
        415,
        "UnsupportedMediaType",
    );
}

#[tokio::test]
async fn status_subresource_changes_only_status() {
    let s = start().await;
    let created = s.post(PODS, &pod("web")).await.body;
    let url = format!("{PODS}/web");

    let mut with_status = created.clone();
    with_status["status"]["phase"] = json!("Running");
    with_status["metadata"]["labels"]["extra"] = json!("ignored");
    let main = s.put(&url, &with_status).await.body;
    assert_eq!(
        main["status"]["phase"], "Pending",
        "the main resource ignores status"
    );

    let mut status_update = main.clone();
    status_update["status"]["phase"] = json!("Running");
    status_update["spec"]["containers"][0]["image"] = json!("ignored");
    let updated = s.put(&format!("{url}/status"), &status_update).await.body;
    assert_eq!(updated["status"]["phase"], "Running");
    assert_eq!(updated["spec"]["containers"][0]["image"], "busybox:1.36");

    let patched = s
        .patch(
            &format!("{url}/status"),
            "application/merge-patch+json",
            &json!({"status": {"podIP": "127.0.0.1"}}),
        )
        .await;
    assert_eq!(patched.code, 200, "{:#}", patched.body);
    assert_eq!(patched.body["status"]["podIP"], "127.0.0.1");
    assert_eq!(patched.body["status"]["phase"], "Running");
}

#[tokio::test]
async fn scale_subresource_reads_and_sets_replicas() {
    let s = start().await;
    s.post(DEPLOYMENTS, &deployment("web", 2, "nginx:1.25"))
        .await;
    let scale = s.get(&format!("{DEPLOYMENTS}/web/scale")).await.body;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");

    let patched = s
        .patch(
            &format!("{DEPLOYMENTS}/web/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(patched.body["spec"]["replicas"], 5, "{:#}", patched.body);
    let mut put = patched.body.clone();
    put["spec"]["replicas"] = json!(3);
    assert_eq!(
        s.put(&format!("{DEPLOYMENTS}/web/scale"), &put).await.body["spec"]["replicas"],
        3
    );
    // The Scale's resourceVersion is a precondition.
    assert_status(
        &s.put(&format!("{DEPLOYMENTS}/web/scale"), &put).await,
        409,
        "Conflict",
    );
    let d = s.get(&format!("{DEPLOYMENTS}/web")).await.body;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 3);
    put["spec"]["replicas"] = json!(-1);
    put["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_status(
        &s.put(&format!("{DEPLOYMENTS}/web/scale"), &put).await,
        422,
        "Invalid",
    );
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let s = start().await;
    s.post(PODS, &pod("web")).await;
    let binding = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": node}});
    let first = s.post(&format!("{PODS}/web/binding"), &binding("n1")).await;
    assert_eq!(first.code, 201, "{:#}", first.body);
    assert_eq!(first.body["status"], "Success");
    let second = s.post(&format!("{PODS}/web/binding"), &binding("n2")).await;
    assert_status(&second, 409, "Conflict");
    assert!(second.body["message"]
        .as_str()
        .unwrap()
        .contains("already assigned to node \"n1\""));
    let p = s.get(&format!("{PODS}/web")).await.body;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    assert_eq!(p["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn concurrent_binds_of_one_pod_have_one_winner() {
    let s = start().await;
    s.post(PODS, &pod("web")).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = s.client.clone();
        let url = s.url(&format!("{PODS}/web/binding"));
        tasks.push(tokio::spawn(async move {
            let body = json!({"metadata": {"name": "web"}, "target": {"kind": "Node", "name": format!("n{i}")}});
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 7, "{codes:?}");
}

#[tokio::test]
async fn deleting_pods_is_graceful_once_they_are_on_a_node() {
    let s = start().await;
    // Not on a node: gone at once.
    s.post(PODS, &pod("pending")).await;
    let gone = s.delete(&format!("{PODS}/pending")).await;
    assert_eq!(gone.code, 200);
    assert_status(&s.get(&format!("{PODS}/pending")).await, 404, "NotFound");
    assert_status(&s.delete(&format!("{PODS}/pending")).await, 404, "NotFound");

    // On a node: marked, and gone when the node deletes it with grace 0.
    s.post(PODS, &pod("running")).await;
    s.post(
        &format!("{PODS}/running/binding"),
        &json!({"metadata": {"name": "running"}, "target": {"name": "n1"}}),
    )
    .await;
    let marked = s.delete(&format!("{PODS}/running")).await;
    assert_eq!(marked.code, 200, "{:#}", marked.body);
    assert!(marked.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked.body["metadata"]["deletionGracePeriodSeconds"], 30);
    let shorter = s
        .delete(&format!("{PODS}/running?gracePeriodSeconds=5"))
        .await;
    assert_eq!(shorter.body["metadata"]["deletionGracePeriodSeconds"], 5);
    let longer = s
        .delete(&format!("{PODS}/running?gracePeriodSeconds=60"))
        .await;
    assert_eq!(
        longer.body["metadata"]["deletionGracePeriodSeconds"], 5,
        "grace only shortens"
    );
    assert_eq!(s.get(&format!("{PODS}/running")).await.code, 200);
    let done = s
        .delete(&format!("{PODS}/running?gracePeriodSeconds=0"))
        .await;
    assert_eq!(done.code, 200);
    assert_status(&s.get(&format!("{PODS}/running")).await, 404, "NotFound");
}

#[tokio::test]
async fn delete_propagation_is_kept_for_the_garbage_collector() {
    let s = start().await;
    s.post(DEPLOYMENTS, &deployment("fg", 1, "nginx:1.25"))
        .await;
    let answer = s
        .delete(&format!("{DEPLOYMENTS}/fg?propagationPolicy=Foreground"))
        .await;
    assert_eq!(answer.code, 200, "{:#}", answer.body);
    assert_eq!(
        answer.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(answer.body["metadata"]["deletionTimestamp"].is_string());

    s.post(DEPLOYMENTS, &deployment("orphan", 1, "nginx:1.25"))
        .await;
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"});
    let answer = s
        .send(
            "DELETE",
            &format!("{DEPLOYMENTS}/orphan"),
            "application/json",
            Some(body.to_string()),
        )
        .await;
    assert_eq!(answer.body["metadata"]["finalizers"], json!(["orphan"]));

    // Removing the last finalizer of an object being deleted removes it.
    let patch = json!({"metadata": {"finalizers": null}});
    let answer = s
        .patch(
            &format!("{DEPLOYMENTS}/orphan"),
            "application/merge-patch+json",
            &patch,
        )
        .await;
    assert_eq!(answer.code, 200, "{:#}", answer.body);
    assert_status(
        &s.get(&format!("{DEPLOYMENTS}/orphan")).await,
        404,
        "NotFound",
    );

    s.post(DEPLOYMENTS, &deployment("bg", 1, "nginx:1.25"))
        .await;
    assert_eq!(
        s.delete(&format!("{DEPLOYMENTS}/bg?propagationPolicy=Background"))
            .await
            .code,
        200
    );
    assert_status(
        &s.delete(&format!("{DEPLOYMENTS}/fg?propagationPolicy=Sideways"))
            .await,
        400,
        "BadRequest",
    );
}

#[tokio::test]
async fn a_terminating_namespace_refuses_new_objects() {
    let s = start().await;
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old"}}),
    )
    .await;
    let answer = s.delete("/api/v1/namespaces/old").await;
    assert_eq!(answer.code, 200, "{:#}", answer.body);
    assert_eq!(answer.body["status"]["phase"], "Terminating");
    let refused = s.post("/api/v1/namespaces/old/pods", &pod("web")).await;
    assert_status(&refused, 403, "Forbidden");
    assert_eq!(
        refused.body["message"],
        "pods \"web\" is forbidden: unable to create new content in namespace old because it is being terminated"
    );
    assert_status(
        &s.delete("/api/v1/namespaces/default").await,
        403,
        "Forbidden",
    );
}

#[tokio::test]
async fn dry_run_admits_without_storing() {
    let s = start().await;
    let before = s.store_revision().await;
    let answer = s.post(&format!("{PODS}?dryRun=All"), &pod("web")).await;
    assert_eq!(answer.code, 201);
    assert_eq!(answer.body["spec"]["restartPolicy"], "Always");
    assert_status(&s.get(&format!("{PODS}/web")).await, 404, "NotFound");
    assert_eq!(s.store_revision().await, before);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let s = start().await;
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({"a": "x".repeat(4 << 20)});
    assert_status(&s.post(PODS, &big).await, 413, "RequestEntityTooLarge");
}

trait StoreRevision {
    async fn store_revision(&self) -> u64;
}

impl StoreRevision for TestServer {
    async fn store_revision(&self) -> u64 {
        use minik_store::Store;
        self.store.revision()
    }
}

#[tokio::test]
async fn a_terminating_namespace_survives_updates_and_goes_when_finalized() {
    let s = start().await;
    s.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}),
    )
    .await;
    s.delete("/api/v1/namespaces/ns1").await;
    // Regression: any update of a namespace being deleted used to delete it at once.
    let patched = s
        .patch(
            "/api/v1/namespaces/ns1",
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(patched.code, 200, "{:#}", patched.body);
    let status = s
        .patch(
            "/api/v1/namespaces/ns1/status",
            "application/merge-patch+json",
            &json!({"status": {"phase": "Terminating"}}),
        )
        .await;
    assert_eq!(status.code, 200, "{:#}", status.body);
    assert_eq!(s.get("/api/v1/namespaces/ns1").await.code, 200);
    let mut finalize = s.get("/api/v1/namespaces/ns1").await.body;
    assert_eq!(finalize["spec"]["finalizers"], json!(["kubernetes"]));
    finalize["spec"]["finalizers"] = json!([]);
    let done = s.put("/api/v1/namespaces/ns1/finalize", &finalize).await;
    assert_eq!(done.code, 200, "{:#}", done.body);
    assert_status(&s.get("/api/v1/namespaces/ns1").await, 404, "NotFound");
}

#[tokio::test]
async fn collections_across_namespaces_take_no_writes() {
    let s = start().await;
    s.post(PODS, &pod("web")).await;
    assert_status(
        &s.post("/api/v1/pods", &pod("x")).await,
        405,
        "MethodNotAllowed",
    );
    assert_status(&s.delete("/api/v1/pods").await, 405, "MethodNotAllowed");
    assert_status(
        &s.delete("/api/v1/namespaces").await,
        405,
        "MethodNotAllowed",
    );
    assert_eq!(s.get(&format!("{PODS}/web")).await.code, 200);
}

#[tokio::test]
async fn a_huge_grace_period_does_not_travel_back_in_time() {
    let s = start().await;
    s.post(PODS, &pod("g")).await;
    s.post(
        &format!("{PODS}/g/binding"),
        &json!({"metadata": {"name": "g"}, "target": {"name": "n1"}}),
    )
    .await;
    let marked = s
        .delete(&format!("{PODS}/g?gracePeriodSeconds=9223372036854775807"))
        .await;
    let at = marked.body["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(at.as_str() > "2100", "{at}");
}
