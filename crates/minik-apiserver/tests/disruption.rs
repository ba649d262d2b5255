//! PodDisruptionBudgets over real HTTP: their validation and table, and the eviction
//! subresource spending them — refused with a 429 when no disruption is allowed, recorded in
//! `status.disruptedPods` when one is. No controller runs here: the tests write the budgets'
//! status themselves, as the disruption controller would.

use minik_testkit::manifest::{pod, rv};
use minik_testkit::{start, Answer, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn eviction(name: &str, delete_options: Value) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": "default"},
        "deleteOptions": delete_options,
    })
}

async fn evict(s: &TestServer, name: &str) -> Answer {
    s.post(
        &format!("{PODS}/{name}/eviction"),
        &eviction(name, json!({})),
    )
    .await
}

/// A pod labelled `app: web` bound to a node and running, ready or not.
async fn running_pod(s: &TestServer, name: &str, ready: bool) -> Value {
    let created = s.post(PODS, &pod(name)).await;
    assert_eq!(created.code, 201, "{:#}", created.body);
    let bound = s
        .post(
            &format!("{PODS}/{name}/binding"),
            &json!({"metadata": {"name": name}, "target": {"name": "n1"}}),
        )
        .await;
    assert_eq!(bound.code, 201, "{:#}", bound.body);
    let mut current = s.get(&format!("{PODS}/{name}")).await.body;
    current["status"] = json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    });
    let updated = s.put(&format!("{PODS}/{name}/status"), &current).await;
    assert_eq!(updated.code, 200, "{:#}", updated.body);
    updated.body
}

/// Creates a budget selecting `app: web` and writes the status the controller would.
async fn budget(s: &TestServer, name: &str, spec: Value, status: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let created = s
        .post(
            PDBS,
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    assert_eq!(created.code, 201, "{:#}", created.body);
    let mut object = created.body;
    object["status"] = status;
    let written = s.put(&format!("{PDBS}/{name}/status"), &object).await;
    assert_eq!(written.code, 200, "{:#}", written.body);
    written.body
}

fn counts(current: i32, desired: i32, allowed: i32) -> Value {
    json!({"observedGeneration": 1, "currentHealthy": current, "desiredHealthy": desired,
           "expectedPods": 2, "disruptionsAllowed": allowed})
}

fn assert_refused(answer: &Answer) {
    assert_eq!(answer.code, 429, "{:#}", answer.body);
    assert_eq!(answer.body["kind"], "Status");
    assert_eq!(answer.body["reason"], "TooManyRequests");
    assert_eq!(answer.body["message"], REFUSED);
    // The cause names the budget, as Kubernetes' eviction answers.
    let cause = &answer.body["details"]["causes"][0];
    assert_eq!(cause["reason"], "DisruptionBudget", "{:#}", answer.body);
    let message = cause["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("The disruption budget "), "{message}");
}

#[tokio::test]
async fn an_eviction_the_budget_cannot_afford_is_refused() {
    let s = start().await;
    let before = running_pod(&s, "a", true).await;
    running_pod(&s, "b", true).await;
    budget(&s, "web", json!({"minAvailable": 2}), counts(2, 2, 0)).await;
    let answer = evict(&s, "a").await;
    assert_refused(&answer);
    let after = s.get(&format!("{PODS}/a")).await.body;
    assert_eq!(
        rv(&after),
        rv(&before),
        "a refused eviction changed the pod"
    );
    assert!(after["metadata"]["deletionTimestamp"].is_null());
    let pdb = s.get(&format!("{PDBS}/web")).await.body;
    assert!(pdb["status"]["disruptedPods"].is_null(), "{pdb:#}");
}

#[tokio::test]
async fn an_allowed_eviction_spends_the_budget_and_is_recorded() {
    let s = start().await;
    running_pod(&s, "a", true).await;
    running_pod(&s, "b", true).await;
    budget(&s, "web", json!({"minAvailable": 1}), counts(2, 1, 1)).await;

    // A dry run checks the budget and spends nothing.
    let dry = s
        .post(
            &format!("{PODS}/a/eviction?dryRun=All"),
            &eviction("a", json!({})),
        )
        .await;
    assert_eq!(dry.code, 201, "{:#}", dry.body);
    assert_eq!(
        s.get(&format!("{PDBS}/web")).await.body["status"]["disruptionsAllowed"],
        1
    );

    let answer = evict(&s, "a").await;
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    assert_eq!(answer.body["status"], "Success");
    let a = s.get(&format!("{PODS}/a")).await.body;
    assert!(a["metadata"]["deletionTimestamp"].is_string(), "{a:#}");
    let status = s.get(&format!("{PDBS}/web")).await.body["status"].clone();
    assert_eq!(status["disruptionsAllowed"], 0, "{status:#}");
    assert!(
        status["disruptedPods"]["a"].is_string(),
        "the evicted pod is recorded: {status:#}"
    );
    let condition = &status["conditions"][0];
    assert_eq!(condition["type"], "DisruptionAllowed");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InsufficientPods");

    // The budget is spent: the next eviction waits.
    assert_refused(&evict(&s, "b").await);
    // A pod already being deleted may always be evicted again.
    let again = evict(&s, "a").await;
    assert_eq!(again.code, 201, "{:#}", again.body);
}

#[tokio::test]
async fn a_budget_not_yet_computed_for_its_spec_refuses() {
    let s = start().await;
    running_pod(&s, "a", true).await;
    let mut status = counts(2, 1, 1);
    status["observedGeneration"] = json!(0);
    budget(&s, "web", json!({"minAvailable": 1}), status).await;
    assert_refused(&evict(&s, "a").await);
}

#[tokio::test]
async fn a_pod_of_two_budgets_cannot_be_evicted() {
    let s = start().await;
    running_pod(&s, "a", true).await;
    budget(&s, "one", json!({"minAvailable": 0}), counts(1, 0, 1)).await;
    budget(&s, "two", json!({"maxUnavailable": 1}), counts(1, 0, 1)).await;
    let answer = evict(&s, "a").await;
    assert_eq!(answer.code, 500, "{:#}", answer.body);
    assert_eq!(
        answer.body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(s.get(&format!("{PODS}/a")).await.body["metadata"]["deletionTimestamp"].is_null());
}

#[tokio::test]
async fn unhealthy_and_pending_pods_go_as_the_policy_says() {
    let s = start().await;
    running_pod(&s, "sick", false).await;
    running_pod(&s, "well", true).await;
    // IfHealthyBudget (the default): an unhealthy pod may go while the budget is met, without
    // spending it.
    budget(&s, "web", json!({"minAvailable": 1}), counts(1, 1, 0)).await;
    assert_eq!(evict(&s, "sick").await.code, 201);
    let status = s.get(&format!("{PDBS}/web")).await.body["status"].clone();
    assert!(status["disruptedPods"].is_null(), "{status:#}");
    assert_refused(&evict(&s, "well").await);

    // Not met: the unhealthy pod stays, unless the policy is AlwaysAllow.
    let s = start().await;
    running_pod(&s, "sick", false).await;
    budget(&s, "web", json!({"minAvailable": 2}), counts(1, 2, 0)).await;
    assert_refused(&evict(&s, "sick").await);
    let mut pdb = s.get(&format!("{PDBS}/web")).await.body;
    pdb["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    let updated = s.put(&format!("{PDBS}/web"), &pdb).await;
    assert_eq!(updated.code, 200, "{:#}", updated.body);
    assert_eq!(evict(&s, "sick").await.code, 201);

    // A pending pod (no node has started it) ignores its budget.
    s.post(PODS, &pod("pending")).await;
    assert_eq!(evict(&s, "pending").await.code, 201);
}

#[tokio::test]
async fn budgets_are_validated_and_printed() {
    let s = start().await;
    let both = s
        .post(
            PDBS,
            &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "both"},
                    "spec": {"minAvailable": 1, "maxUnavailable": "150%",
                             "unhealthyPodEvictionPolicy": "Never"}}),
        )
        .await;
    assert_eq!(both.code, 422, "{:#}", both.body);
    let causes: Vec<(String, String)> = both.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(causes[0].0, "spec");
    assert!(
        causes[0]
            .1
            .ends_with("minAvailable and maxUnavailable cannot be both set"),
        "{causes:?}"
    );
    assert_eq!(
        causes[1],
        (
            "spec.maxUnavailable".to_owned(),
            "Invalid value: \"150%\": must not be greater than 100%".to_owned()
        )
    );
    assert_eq!(causes[2].0, "spec.unhealthyPodEvictionPolicy");

    budget(&s, "web", json!({"minAvailable": "50%"}), counts(2, 1, 1)).await;
    let table = s
        .client
        .get(s.url(PDBS))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age"
        ]
    );
    let cells = table["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[0..4],
        [json!("web"), json!("50%"), json!("N/A"), json!(1)]
    );
}
