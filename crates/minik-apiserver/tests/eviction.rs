//! The Eviction API (`POST pods/{name}/eviction`) over real HTTP: what kubectl drain finds in
//! discovery, the checks of the `Eviction` body, its `deleteOptions`, and a pod deleted exactly
//! as a `DELETE` would delete it.

use minik_testkit::manifest::{pod, rv};
use minik_testkit::{start, Answer, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn assert_status(answer: &Answer, code: u16, reason: &str) {
    assert_eq!(answer.code, code, "{:#}", answer.body);
    assert_eq!(answer.body["kind"], "Status", "{:#}", answer.body);
    assert_eq!(answer.body["status"], "Failure", "{:#}", answer.body);
    assert_eq!(answer.body["reason"], reason, "{:#}", answer.body);
    assert_eq!(answer.body["code"], code);
}

/// What kubectl drain sends: a policy/v1 Eviction named after the pod, with delete options.
fn eviction(name: &str, delete_options: Value) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": null},
        "deleteOptions": delete_options,
    })
}

/// Creates a pod and binds it to a node, so that deleting it is graceful.
async fn pod_on_node(s: &TestServer, name: &str) -> Value {
    let created = s.post(PODS, &pod(name)).await;
    assert_eq!(created.code, 201, "{:#}", created.body);
    let bound = s
        .post(
            &format!("{PODS}/{name}/binding"),
            &json!({"metadata": {"name": name}, "target": {"name": "n1"}}),
        )
        .await;
    assert_eq!(bound.code, 201, "{:#}", bound.body);
    s.get(&format!("{PODS}/{name}")).await.body
}

async fn evict(s: &TestServer, name: &str, body: &Value) -> Answer {
    s.post(&format!("{PODS}/{name}/eviction"), body).await
}

#[tokio::test]
async fn discovery_and_openapi_show_the_eviction_subresource() {
    let s = start().await;
    let core = s.get("/api/v1").await.body;
    let entry = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .unwrap_or_else(|| panic!("no pods/eviction in {core:#}"));
    // kubectl's CheckEvictionSupport needs the kind, the group and the version.
    assert_eq!(
        entry,
        json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "kind": "Eviction",
               "group": "policy", "version": "v1", "verbs": ["create"]})
    );
    // The policy group is served with its PodDisruptionBudgets.
    let groups = s.get("/apis").await.body;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "policy"),
        "{groups:#}"
    );
    let openapi = s.get("/openapi/v3/api/v1").await.body;
    let post = &openapi["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
    assert_eq!(post["operationId"], "createCoreV1NamespacedPodEviction");
    assert_eq!(post["x-kubernetes-group-version-kind"]["group"], "policy");
}

#[tokio::test]
async fn evicting_deletes_the_pod_as_a_delete_would() {
    let s = start().await;
    // On a node: marked with the pod's own grace period, like a DELETE; the answer is
    // Kubernetes' 201 Success.
    pod_on_node(&s, "evicted").await;
    pod_on_node(&s, "deleted").await;
    let answer = evict(&s, "evicted", &eviction("evicted", json!({}))).await;
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    assert_eq!(
        answer.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let deleted = s.delete(&format!("{PODS}/deleted")).await.body;
    let evicted = s.get(&format!("{PODS}/evicted")).await.body;
    assert!(evicted["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        evicted["metadata"]["deletionGracePeriodSeconds"],
        deleted["metadata"]["deletionGracePeriodSeconds"]
    );
    assert_eq!(evicted["metadata"]["deletionGracePeriodSeconds"], 30);

    // Evicting again only shortens the grace period, as deleting again does.
    let shorter = evict(
        &s,
        "evicted",
        &eviction("evicted", json!({"gracePeriodSeconds": 5})),
    )
    .await;
    assert_eq!(shorter.code, 201, "{:#}", shorter.body);
    let evicted = s.get(&format!("{PODS}/evicted")).await.body;
    assert_eq!(evicted["metadata"]["deletionGracePeriodSeconds"], 5);

    // Grace 0 deletes at once; so does evicting a pod no node runs.
    evict(
        &s,
        "evicted",
        &eviction("evicted", json!({"gracePeriodSeconds": 0})),
    )
    .await;
    assert_status(&s.get(&format!("{PODS}/evicted")).await, 404, "NotFound");
    s.post(PODS, &pod("pending")).await;
    let answer = evict(&s, "pending", &eviction("pending", Value::Null)).await;
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    assert_status(&s.get(&format!("{PODS}/pending")).await, 404, "NotFound");
}

#[tokio::test]
async fn older_and_bare_eviction_bodies_are_accepted() {
    let s = start().await;
    for (name, body) in [
        // Clients written for servers older than policy/v1 (Kubernetes 1.22) send v1beta1.
        (
            "beta",
            json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "beta"}}),
        ),
        // curl users leave apiVersion and kind out.
        (
            "bare",
            json!({"metadata": {"name": "bare"}, "deleteOptions": {"gracePeriodSeconds": 0}}),
        ),
    ] {
        pod_on_node(&s, name).await;
        let answer = evict(&s, name, &body).await;
        assert_eq!(answer.code, 201, "{name}: {:#}", answer.body);
    }
    assert!(s.get(&format!("{PODS}/beta")).await.body["metadata"]["deletionTimestamp"].is_string());
    assert_status(&s.get(&format!("{PODS}/bare")).await, 404, "NotFound");

    // A YAML body, as `kubectl create --raw` or curl may send it.
    pod_on_node(&s, "yaml").await;
    let yaml = s
        .send(
            "POST",
            &format!("{PODS}/yaml/eviction"),
            "application/yaml",
            Some("apiVersion: policy/v1\nkind: Eviction\nmetadata:\n  name: yaml\n".into()),
        )
        .await;
    assert_eq!(yaml.code, 201, "{:#}", yaml.body);
}

#[tokio::test]
async fn bad_evictions_are_refused_and_change_nothing() {
    let s = start().await;
    let before = pod_on_node(&s, "web").await;
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            eviction("other", json!({})),
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object",
        ),
        (
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {}}),
            400,
            "BadRequest",
            "name in URL does not match name in Eviction object",
        ),
        (
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web", "namespace": "kube-system"}}),
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
            400,
            "BadRequest",
            "the body of pods/eviction must be an Eviction of policy/v1 or policy/v1beta1, not v1 Pod",
        ),
        (
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web"}, "deleteOption": {}}),
            400,
            "BadRequest",
            "Eviction in version \"v1\" cannot be handled as a Eviction: strict decoding error: unknown field \"deleteOption\"",
        ),
        (
            eviction("web", json!({"gracePeriodSeconds": "soon"})),
            400,
            "BadRequest",
            "Eviction in version \"v1\" cannot be handled as a Eviction: deleteOptions.gracePeriodSeconds: invalid type: string \"soon\", expected i64",
        ),
        (
            eviction("web", json!({"gracePeriodSeconds": -1})),
            422,
            "Invalid",
            "DeleteOptions \"web\" is invalid: gracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            eviction("web", json!({"propagationPolicy": "Sideways"})),
            400,
            "BadRequest",
            "deleteOptions.propagationPolicy \"Sideways\" is not valid: use Background, Foreground or Orphan",
        ),
        (
            eviction("web", json!({"dryRun": ["Some"]})),
            400,
            "BadRequest",
            "deleteOptions.dryRun: invalid dry run option \"Some\": the only supported value is \"All\"",
        ),
        (
            eviction("web", json!({"preconditions": {"uid": "not-the-uid"}})),
            409,
            "Conflict",
            "",
        ),
        (
            eviction("web", json!({"preconditions": {"resourceVersion": "1"}})),
            409,
            "Conflict",
            "",
        ),
    ];
    for (body, code, reason, message) in cases {
        let answer = evict(&s, "web", &body).await;
        assert_status(&answer, code, reason);
        if !message.is_empty() {
            assert_eq!(answer.body["message"], message, "{body}");
        }
    }
    let uid = before["metadata"]["uid"].as_str().unwrap();
    let answer = evict(
        &s,
        "web",
        &eviction("web", json!({"preconditions": {"uid": "not-the-uid"}})),
    )
    .await;
    assert_eq!(
        answer.body["message"],
        format!("Operation cannot be fulfilled on pods \"web\": Precondition failed: UID in precondition: not-the-uid, UID in object meta: {uid}")
    );

    // Not an object, not a pod, not a method the subresource has.
    let empty = s
        .send(
            "POST",
            &format!("{PODS}/web/eviction"),
            "application/json",
            Some(String::new()),
        )
        .await;
    assert_status(&empty, 400, "BadRequest");
    assert_status(&evict(&s, "web", &json!([1, 2])).await, 400, "BadRequest");
    let missing = evict(&s, "nope", &eviction("nope", json!({}))).await;
    assert_status(&missing, 404, "NotFound");
    assert_eq!(missing.body["message"], "pods \"nope\" not found");
    assert_eq!(missing.body["details"]["name"], "nope");
    assert_status(
        &s.get(&format!("{PODS}/web/eviction")).await,
        405,
        "MethodNotAllowed",
    );
    assert_status(
        &s.post("/api/v1/nodes/n1/eviction", &eviction("n1", json!({})))
            .await,
        404,
        "NotFound",
    );

    let after = s.get(&format!("{PODS}/web")).await.body;
    assert_eq!(
        rv(&after),
        rv(&before),
        "a refused eviction changed the pod"
    );
    assert!(after["metadata"]["deletionTimestamp"].is_null());
}

#[tokio::test]
async fn dry_run_and_preconditions_are_honoured() {
    let s = start().await;
    let before = pod_on_node(&s, "web").await;
    // A dry run, asked on the request or in the options, checks and changes nothing.
    for (path, options) in [
        (format!("{PODS}/web/eviction?dryRun=All"), json!({})),
        (
            format!("{PODS}/web/eviction"),
            json!({"dryRun": ["All"], "gracePeriodSeconds": 0}),
        ),
    ] {
        let answer = s.post(&path, &eviction("web", options)).await;
        assert_eq!(answer.code, 201, "{:#}", answer.body);
        assert_eq!(answer.body["status"], "Success");
        let now = s.get(&format!("{PODS}/web")).await.body;
        assert_eq!(rv(&now), rv(&before), "a dry run changed the pod");
    }
    assert_status(
        &s.post(
            &format!("{PODS}/web/eviction?dryRun=Some"),
            &eviction("web", json!({})),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &evict(&s, "nope", &eviction("nope", json!({"dryRun": ["All"]}))).await,
        404,
        "NotFound",
    );

    // Preconditions that hold let the eviction through.
    let options = json!({"preconditions": {
        "uid": before["metadata"]["uid"],
        "resourceVersion": before["metadata"]["resourceVersion"],
    }});
    let answer = evict(&s, "web", &eviction("web", options)).await;
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    let marked = s.get(&format!("{PODS}/web")).await.body;
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
}

#[tokio::test]
async fn orphan_propagation_in_the_options_is_kept_on_the_pod() {
    let s = start().await;
    pod_on_node(&s, "web").await;
    let answer = evict(
        &s,
        "web",
        &eviction("web", json!({"propagationPolicy": "Orphan"})),
    )
    .await;
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    let marked = s.get(&format!("{PODS}/web")).await.body;
    assert_eq!(marked["metadata"]["finalizers"], json!(["orphan"]));
}
