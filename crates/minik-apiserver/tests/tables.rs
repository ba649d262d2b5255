//! What kubectl asks of the server besides objects, over real HTTP: `Table` answers for lists,
//! single objects and watches (with `includeObject`), and the OpenAPI documents.

use futures::StreamExt;
use serde_json::Value;

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn get_as(server: &minik_testkit::TestServer, path: &str, accept: &str) -> (u16, Value) {
    let r = server
        .client
        .get(server.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

#[tokio::test]
async fn lists_objects_and_watches_answer_tables() {
    let server = minik_testkit::start().await;
    for name in ["a", "b"] {
        let created = server
            .post(
                "/api/v1/namespaces/default/pods",
                &minik_testkit::manifest::pod(name),
            )
            .await;
        assert_eq!(created.code, 201, "{:?}", created.body);
    }

    let (code, list) = get_as(&server, "/api/v1/namespaces/default/pods", TABLE).await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "Table");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    let columns: Vec<&str> = list["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(list["columnDefinitions"][5]["priority"], 1);
    let rows = list["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"][0], "a");
    assert_eq!(rows[0]["cells"][2], "Pending");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["metadata"]["namespace"], "default");
    assert!(list["metadata"]["resourceVersion"].as_str().is_some());

    let (_, full) = get_as(
        &server,
        "/api/v1/namespaces/default/pods?includeObject=Object",
        TABLE,
    )
    .await;
    assert_eq!(full["rows"][1]["object"]["kind"], "Pod");
    assert_eq!(
        full["rows"][1]["object"]["spec"]["containers"][0]["name"],
        "main"
    );
    let (_, bare) = get_as(
        &server,
        "/api/v1/namespaces/default/pods?includeObject=None",
        TABLE,
    )
    .await;
    assert!(bare["rows"][0].get("object").is_none());
    let (code, bad) = get_as(
        &server,
        "/api/v1/namespaces/default/pods?includeObject=Some",
        TABLE,
    )
    .await;
    assert_eq!(code, 400, "{bad}");

    let (code, one) = get_as(&server, "/api/v1/namespaces/default/pods/b", TABLE).await;
    assert_eq!(code, 200);
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one["rows"][0]["cells"][0], "b");
    let (code, missing) = get_as(&server, "/api/v1/namespaces/default/pods/zz", TABLE).await;
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));

    // Plain JSON first, or no Accept: the objects themselves.
    let (_, plain) = get_as(
        &server,
        "/api/v1/namespaces/default/pods",
        "application/json",
    )
    .await;
    assert_eq!(plain["kind"], "PodList");

    // A watch: every event's object is a one-row Table, the first with the columns.
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = server
        .client
        .get(server.url(&format!(
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}"
        )))
        .header("accept", TABLE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    server
        .patch(
            "/api/v1/namespaces/default/pods/a",
            "application/merge-patch+json",
            &serde_json::json!({"metadata": {"labels": {"x": "1"}}}),
        )
        .await;
    server.delete("/api/v1/namespaces/default/pods/b").await;
    let mut text = String::new();
    while text.lines().count() < 2 {
        let chunk = body.next().await.expect("watch ended").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert_eq!(events[0]["object"]["rows"][0]["cells"][0], "a");
    assert_eq!(events[0]["object"]["columnDefinitions"][0]["name"], "Name");
    assert_eq!(events[1]["type"], "DELETED");
    assert_eq!(events[1]["object"]["rows"][0]["cells"][0], "b");
    assert_eq!(
        events[1]["object"]["columnDefinitions"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn openapi_documents_are_served() {
    let server = minik_testkit::start().await;
    let index = server.get("/openapi/v3").await;
    assert_eq!(index.code, 200);
    let url = index.body["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let apps = server.get(&url).await;
    assert_eq!(apps.code, 200);
    assert_eq!(apps.body["openapi"], "3.0.0");
    let patch =
        &apps.body["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    assert!(patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert_eq!(
        server.get("/openapi/v3/apis/autoscaling/v2").await.code,
        404
    );

    let v2 = server.get("/openapi/v2").await;
    assert_eq!((v2.code, v2.body["swagger"].as_str()), (200, Some("2.0")));
    let pb = server
        .client
        .get(server.url("/openapi/v2"))
        .header(
            "accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pb.headers()["content-type"], "application/octet-stream");
    assert!(pb.bytes().await.unwrap().starts_with(b"\x0a\x032.0\x12"));
}
