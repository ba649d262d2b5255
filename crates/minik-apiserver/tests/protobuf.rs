//! Writes in Kubernetes' protobuf encoding, as client-go's typed clients (kubectl 1.32+ `create
//! deployment`, `create service`, ...) send them: hand-encoded bodies go through the same
//! admission as JSON and read back as JSON; unknown fields, malformed bodies and protobuf-only
//! `Accept` headers get clear answers.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};

use minik_testkit::{start, TestServer};

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
/// What client-go's typed clients ask for.
const CLIENT_GO_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A varint field.
fn v(number: u64, value: u64) -> Vec<u8> {
    [varint(number << 3), varint(value)].concat()
}

/// A length-delimited field.
fn ld(number: u64, bytes: &[u8]) -> Vec<u8> {
    [
        varint((number << 3) | 2),
        varint(bytes.len() as u64),
        bytes.to_vec(),
    ]
    .concat()
}

fn s(number: u64, text: &str) -> Vec<u8> {
    ld(number, text.as_bytes())
}

/// A `map<string, string>` entry.
fn entry(number: u64, key: &str, value: &str) -> Vec<u8> {
    ld(number, &[s(1, key), s(2, value)].concat())
}

/// `k8s\0` and the `runtime.Unknown` envelope.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    [
        b"k8s\0".to_vec(),
        ld(1, &[s(1, api_version), s(2, kind)].concat()),
        ld(2, raw),
        s(3, ""),
        s(4, ""),
    ]
    .concat()
}

/// ObjectMeta with Go's zero values written out, as client-go sends it.
fn meta(name: &str, resource_version: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut out = [
        s(1, name),
        s(2, ""),
        s(3, ""),
        s(4, ""),
        s(5, ""),
        s(6, resource_version),
        v(7, 0),
        ld(8, &[]),
    ]
    .concat();
    for (k, val) in labels {
        out.extend(entry(11, k, val));
    }
    out
}

/// A Deployment of `image` with `replicas` in its envelope.
fn deployment(name: &str, resource_version: &str, replicas: u64, image: &str) -> Vec<u8> {
    envelope(
        "apps/v1",
        "Deployment",
        &deployment_object(name, resource_version, replicas, image),
    )
}

/// The Deployment message itself, field numbers from k8s.io/api apps/v1 and core/v1.
fn deployment_object(name: &str, resource_version: &str, replicas: u64, image: &str) -> Vec<u8> {
    let container = [s(1, "app"), s(2, image), ld(8, &[]), s(14, ""), v(16, 0)].concat();
    let pod_spec = [ld(2, &container), s(3, ""), v(11, 0)].concat();
    let template = [ld(1, &meta("", "", &[("app", name)])), ld(2, &pod_spec)].concat();
    let spec = [
        v(1, replicas),
        ld(2, &entry(1, "app", name)),
        ld(3, &template),
        ld(4, &[]),
        v(5, 0),
    ]
    .concat();
    [
        ld(1, &meta(name, resource_version, &[("app", name)])),
        ld(2, &spec),
        ld(3, &[v(1, 0), v(2, 0)].concat()),
    ]
    .concat()
}

/// A ClusterIP Service with one port whose targetPort is a name.
fn service(name: &str) -> Vec<u8> {
    let target_port = [v(1, 1), v(2, 0), s(3, "http")].concat();
    let port = [
        s(1, "web"),
        s(2, "TCP"),
        v(3, 80),
        ld(4, &target_port),
        v(5, 0),
    ]
    .concat();
    let spec = [
        ld(1, &port),
        entry(2, "app", name),
        s(3, ""),
        s(4, "ClusterIP"),
    ]
    .concat();
    envelope(
        "v1",
        "Service",
        &[
            ld(1, &meta(name, "", &[])),
            ld(2, &spec),
            ld(3, &ld(1, &[])),
        ]
        .concat(),
    )
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    accept: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let response = server
        .client
        .request(method, server.url(path))
        .header(CONTENT_TYPE, PROTOBUF)
        .header(ACCEPT, accept)
        .body(body)
        .send()
        .await
        .expect("request");
    let code = response.status().as_u16();
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, media, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_deployment_and_service_are_created_and_read_back_as_json() {
    let server = start().await;
    let post = reqwest::Method::POST;

    let (code, media, created) = send(
        &server,
        post.clone(),
        &format!("{DEPLOYMENTS}?fieldManager=kubectl-create&fieldValidation=Strict"),
        CLIENT_GO_ACCEPT,
        deployment("web", "", 2, "nginx:1.27"),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    // client-go accepts JSON too, and reads the answer by its Content-Type.
    assert_eq!(media, "application/json");
    assert_eq!(created["spec"]["replicas"], 2);
    let read = server.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(read.code, 200);
    assert_eq!(read.body, created);
    let container = &read.body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    // Defaults were applied as for JSON: the empty strings Go writes are "not set".
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        read.body["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    assert_eq!(read.body["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(read.body["metadata"]["labels"], json!({"app": "web"}));
    assert!(read.body["metadata"]["uid"].as_str().is_some());

    let (code, _, svc) = send(
        &server,
        post.clone(),
        SERVICES,
        CLIENT_GO_ACCEPT,
        service("web"),
    )
    .await;
    assert_eq!(code, 201, "{svc}");
    let read = server.get(&format!("{SERVICES}/web")).await;
    assert_eq!(read.code, 200);
    assert_eq!(
        read.body["spec"]["ports"],
        json!([{"name": "web", "protocol": "TCP", "port": 80, "targetPort": "http"}])
    );
    assert_eq!(read.body["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(read.body["spec"]["type"], "ClusterIP");
    assert!(
        read.body["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty()),
        "a cluster IP is allocated: {}",
        read.body
    );

    // An update in protobuf (client-go's Update) carries the resourceVersion it read.
    let rv = read_rv(&server, &format!("{DEPLOYMENTS}/web")).await;
    let (code, _, updated) = send(
        &server,
        reqwest::Method::PUT,
        &format!("{DEPLOYMENTS}/web"),
        CLIENT_GO_ACCEPT,
        deployment("web", &rv, 0, "nginx:1.28"),
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    // replicas is a pointer in Go: a zero sent is kept, not defaulted to 1.
    assert_eq!(updated["spec"]["replicas"], 0);
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
}

async fn read_rv(server: &TestServer, path: &str) -> String {
    let read = server.get(path).await;
    read.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_options_in_protobuf_are_honoured() {
    let server = start().await;
    let (code, _, created) = send(
        &server,
        reqwest::Method::POST,
        DEPLOYMENTS,
        CLIENT_GO_ACCEPT,
        deployment("gone", "", 1, "nginx"),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    // preconditions.uid that does not match: the options were read, the delete refused.
    let options = |uid: &str| {
        envelope(
            "meta.k8s.io/v1",
            "DeleteOptions",
            &[ld(2, &s(1, uid)), s(4, "Background")].concat(),
        )
    };
    let (code, _, answer) = send(
        &server,
        reqwest::Method::DELETE,
        &format!("{DEPLOYMENTS}/gone"),
        CLIENT_GO_ACCEPT,
        options("not-the-uid"),
    )
    .await;
    assert_eq!(code, 409, "{answer}");
    let uid = created["metadata"]["uid"].as_str().expect("uid");
    let (code, _, answer) = send(
        &server,
        reqwest::Method::DELETE,
        &format!("{DEPLOYMENTS}/gone"),
        CLIENT_GO_ACCEPT,
        options(uid),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(server.get(&format!("{DEPLOYMENTS}/gone")).await.code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_malformed_bodies_and_protobuf_only_accept() {
    let server = start().await;
    let mut body = deployment("odd", "", 1, "nginx");
    // Field 99 appended to the Deployment message.
    let inner = deployment_object("odd", "", 1, "nginx");
    let extra = v(99, 1);
    let with_extra = envelope("apps/v1", "Deployment", &[inner, extra].concat());

    let (code, _, answer) = send(
        &server,
        reqwest::Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Strict"),
        CLIENT_GO_ACCEPT,
        with_extra.clone(),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field number 99 in message apps.v1.Deployment"),
        "{answer}"
    );
    let (code, _, answer) = send(
        &server,
        reqwest::Method::POST,
        &format!("{DEPLOYMENTS}?fieldValidation=Ignore"),
        CLIENT_GO_ACCEPT,
        with_extra,
    )
    .await;
    assert_eq!(code, 201, "{answer}");

    // Truncated: a clear 400, never a 500.
    body.truncate(body.len() - 7);
    let (code, _, answer) = send(
        &server,
        reqwest::Method::POST,
        DEPLOYMENTS,
        CLIENT_GO_ACCEPT,
        body,
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed"),
        "{answer}"
    );

    // JSON sent as protobuf has no magic number.
    let (code, _, answer) = send(
        &server,
        reqwest::Method::POST,
        DEPLOYMENTS,
        CLIENT_GO_ACCEPT,
        b"{\"kind\":\"Deployment\"}".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{answer}");

    // A client that accepts only protobuf answers is told which types are served.
    let (code, _, answer) = send(
        &server,
        reqwest::Method::POST,
        SERVICES,
        PROTOBUF,
        service("only-pb"),
    )
    .await;
    assert_eq!(code, 406, "{answer}");
}
