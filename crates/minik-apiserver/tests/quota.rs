//! ResourceQuota admission and the namespace rules, over real HTTP: Kubernetes' exact refusals
//! and charges that concurrent creates cannot squeeze past.

use serde_json::{json, Value};

/// Asserts that `answer` is a 403 saying `message`.
fn assert_forbidden(answer: &minik_testkit::Answer, message: &str) {
    assert_eq!(answer.code, 403, "{:?}", answer.body);
    assert_eq!(answer.body["message"], message);
}

fn compute_quota(cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "compute-quota"},
        "spec": {"hard": {"requests.cpu": cpu, "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi"}}
    })
}

fn sized_pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": name, "image": "nginx",
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}]}
    })
}

#[tokio::test]
async fn compute_quota_refuses_the_over_limit_pod_with_kubernetes_message() {
    let s = minik_testkit::start().await;
    let created = s
        .post(
            "/api/v1/namespaces/default/resourcequotas",
            &compute_quota("1"),
        )
        .await;
    assert_eq!(created.code, 201, "{:?}", created.body);
    // The quota counts what is there from the start.
    assert_eq!(created.body["status"]["used"]["requests.cpu"], "0");
    assert_eq!(created.body["status"]["hard"]["limits.memory"], "2Gi");

    for name in ["a", "b"] {
        let ok = s
            .post(
                "/api/v1/namespaces/default/pods",
                &sized_pod(name, "500m", "128Mi"),
            )
            .await;
        assert_eq!(ok.code, 201, "{:?}", ok.body);
    }
    let refused = s
        .post(
            "/api/v1/namespaces/default/pods",
            &sized_pod("nginx", "500m", "128Mi"),
        )
        .await;
    assert_forbidden(&refused, "pods \"nginx\" is forbidden: exceeded quota: compute-quota, requested: requests.cpu=500m, used: requests.cpu=1, limited: requests.cpu=1");
    assert_eq!(refused.body["reason"], "Forbidden");
    assert_eq!(
        s.get("/api/v1/namespaces/default/pods/nginx").await.code,
        404,
        "a refused create changes nothing"
    );
    let quota = s
        .get("/api/v1/namespaces/default/resourcequotas/compute-quota")
        .await
        .body;
    assert_eq!(
        quota["status"]["used"],
        json!({"requests.cpu": "1", "requests.memory": "256Mi", "limits.cpu": "1", "limits.memory": "256Mi"})
    );

    // Raising the quota lets the same pod in.
    let mut raised = quota.clone();
    raised["spec"]["hard"]["requests.cpu"] = json!("2");
    assert_eq!(
        s.put(
            "/api/v1/namespaces/default/resourcequotas/compute-quota",
            &raised
        )
        .await
        .code,
        200
    );
    let ok = s
        .post(
            "/api/v1/namespaces/default/pods",
            &sized_pod("nginx", "500m", "128Mi"),
        )
        .await;
    assert_eq!(ok.code, 201, "{:?}", ok.body);
}

#[tokio::test]
async fn pods_without_the_constrained_limits_are_refused_naming_them() {
    let s = minik_testkit::start().await;
    s.post(
        "/api/v1/namespaces/default/resourcequotas",
        &compute_quota("1"),
    )
    .await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx",
            "resources": {"requests": {"cpu": "100m", "memory": "10Mi"}}}]}
    });
    let refused = s.post("/api/v1/namespaces/default/pods", &pod).await;
    assert_forbidden(&refused, "pods \"nginx\" is forbidden: failed quota: compute-quota: must specify limits.cpu for: nginx; limits.memory for: nginx");
    // A quota on something else does not care about pods' resources.
    let other = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "objects"},
        "spec": {"hard": {"services": "1", "count/deployments.apps": "1"}}});
    assert_eq!(
        s.post("/api/v1/namespaces/kube-public/resourcequotas", &other)
            .await
            .code,
        201
    );
    assert_eq!(
        s.post("/api/v1/namespaces/kube-public/pods", &pod)
            .await
            .code,
        201
    );
    assert_eq!(
        s.post(
            "/apis/apps/v1/namespaces/kube-public/deployments",
            &minik_testkit::manifest::deployment("one", 0, "nginx:1.25")
        )
        .await
        .code,
        201
    );
    let second = s
        .post(
            "/apis/apps/v1/namespaces/kube-public/deployments",
            &minik_testkit::manifest::deployment("two", 0, "nginx:1.25"),
        )
        .await;
    assert_forbidden(&second, "deployments.apps \"two\" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1");
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_quota() {
    let s = std::sync::Arc::new(minik_testkit::start().await);
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": "5"}}});
    assert_eq!(
        s.post("/api/v1/namespaces/default/resourcequotas", &quota)
            .await
            .code,
        201
    );
    let creates = (0..20).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.post(
                "/api/v1/namespaces/default/pods",
                &minik_testkit::manifest::pod(&format!("p{i}")),
            )
            .await
            .code
        })
    });
    let codes: Vec<u16> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create task"))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 15, "{codes:?}");
    let pods = s.get("/api/v1/namespaces/default/pods").await.body;
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(5));
    let quota = s
        .get("/api/v1/namespaces/default/resourcequotas/pods")
        .await
        .body;
    assert_eq!(quota["status"]["used"]["pods"], "5");
}

#[tokio::test]
async fn a_create_the_store_refuses_is_refunded() {
    let s = minik_testkit::start().await;
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": "2"}}});
    s.post("/api/v1/namespaces/default/resourcequotas", &quota)
        .await;
    assert_eq!(
        s.post(
            "/api/v1/namespaces/default/pods",
            &minik_testkit::manifest::pod("same")
        )
        .await
        .code,
        201
    );
    for _ in 0..3 {
        assert_eq!(
            s.post(
                "/api/v1/namespaces/default/pods",
                &minik_testkit::manifest::pod("same")
            )
            .await
            .code,
            409
        );
    }
    let quota = s
        .get("/api/v1/namespaces/default/resourcequotas/pods")
        .await
        .body;
    assert_eq!(quota["status"]["used"]["pods"], "1");
    assert_eq!(
        s.post(
            "/api/v1/namespaces/default/pods",
            &minik_testkit::manifest::pod("other")
        )
        .await
        .code,
        201
    );
}

#[tokio::test]
async fn terminating_namespaces_refuse_content_and_system_ones_stay() {
    let s = minik_testkit::start().await;
    for ns in ["default", "kube-system", "kube-public"] {
        let refused = s.delete(&format!("/api/v1/namespaces/{ns}")).await;
        assert_forbidden(
            &refused,
            &format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted"),
        );
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    assert_eq!(s.post("/api/v1/namespaces", &ns).await.code, 201);
    assert_eq!(s.delete("/api/v1/namespaces/doomed").await.code, 200);
    let refused = s
        .post(
            "/api/v1/namespaces/doomed/pods",
            &minik_testkit::manifest::pod("late"),
        )
        .await;
    assert_forbidden(&refused, "pods \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated");
}

#[tokio::test]
async fn an_update_that_uses_more_is_checked_and_charged_like_a_create() {
    let s = minik_testkit::start().await;
    let quota = json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "ports"},
        "spec": {"hard": {"services.nodeports": "1", "services": "5"}}
    });
    assert_eq!(
        s.post("/api/v1/namespaces/default/resourcequotas", &quota)
            .await
            .code,
        201
    );
    let service = |name: &str, ports: &[i64]| {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| json!({"name": format!("p{p}"), "port": p}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": ports}})
    };
    let services = "/api/v1/namespaces/default/services";
    assert_eq!(s.post(services, &service("two", &[80, 81])).await.code, 201);
    assert_eq!(s.post(services, &service("one", &[80])).await.code, 201);
    let before = s.get(&format!("{services}/two")).await.body;

    // Turning a two-port Service into a NodePort needs two node ports: refused, in
    // Kubernetes' words, and nothing changes (also not with dryRun).
    let to_node_port = json!({"spec": {"type": "NodePort"}});
    for query in ["", "?dryRun=All"] {
        let refused = s
            .patch(
                &format!("{services}/two{query}"),
                "application/merge-patch+json",
                &to_node_port,
            )
            .await;
        assert_forbidden(&refused, "services \"two\" is forbidden: exceeded quota: ports, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1");
    }
    let after = s.get(&format!("{services}/two")).await.body;
    assert_eq!(
        minik_testkit::manifest::rv(&before),
        minik_testkit::manifest::rv(&after)
    );
    assert_eq!(after["spec"]["type"], "ClusterIP");

    // A one-port Service fits, and is charged at once.
    let fits = s
        .patch(
            &format!("{services}/one"),
            "application/merge-patch+json",
            &to_node_port,
        )
        .await;
    assert_eq!(fits.code, 200, "{:?}", fits.body);
    let quota = s
        .get("/api/v1/namespaces/default/resourcequotas/ports")
        .await
        .body;
    assert_eq!(quota["status"]["used"]["services.nodeports"], "1");
    // Updates that use no more are not charged (nor refused, though the quota is full).
    let label = json!({"metadata": {"labels": {"tier": "web"}}});
    let relabelled = s
        .patch(
            &format!("{services}/one"),
            "application/merge-patch+json",
            &label,
        )
        .await;
    assert_eq!(relabelled.code, 200, "{:?}", relabelled.body);
    // And now the quota is used up for the other one too, with a PUT this time.
    let mut put = s.get(&format!("{services}/two")).await.body;
    put["spec"]["type"] = json!("NodePort");
    put["spec"]["ports"] = json!([{"name": "p80", "port": 80}]);
    let refused = s.put(&format!("{services}/two"), &put).await;
    assert_eq!(refused.code, 403, "{:?}", refused.body);
}
