//! What the API server makes of what a client sends, over a real socket: YAML shaped to cost
//! the parser the most is refused with a 400 `Status` (issue 23 D), fields given twice follow
//! `fieldValidation` as in Kubernetes, every error answer is a `Status` (405s and 404s of any
//! path included), and `Authorization` is read as RFC 6750 writes it.

use std::sync::Arc;

use minik_apiserver::{ApiServer, Auth, AuthConfig, Config};
use minik_testkit::{open_store, serve, start, TestServer, HISTORY};
use serde_json::{json, Value};

const EVENTS: &str = "/api/v1/namespaces/default/events";
const PODS: &str = "/api/v1/namespaces/default/pods";

/// A body of about `size` bytes made by repeating `unit` after `prefix`.
fn shape(prefix: &str, unit: &str, size: usize) -> String {
    format!(
        "{prefix}{}",
        unit.repeat(size.saturating_sub(prefix.len()) / unit.len())
    )
}

async fn post_yaml(server: &TestServer, path: &str, body: String) -> (u16, Value) {
    let answer = server
        .send("POST", path, "application/yaml", Some(body))
        .await;
    (answer.code, answer.body)
}

fn assert_status(body: &Value, code: u16) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
}

/// The shapes that cost serde_yaml the most, each up to the 3 MiB request limit, as a node's
/// credential could send them to `POST events`: refused with 400 and the reason, and nothing
/// stored. (Before the pre-scan, 160 KB of nested flow sequences took 27 s to refuse.)
#[tokio::test]
async fn the_costliest_yaml_shapes_are_refused_with_a_status() {
    let server = start().await;
    let limit = Config::default().max_body_bytes - 1024;
    let deep = "recursion limit exceeded: the document nests more than 128 collections";
    let block: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    let shapes = [
        (shape("a: ", "[", 64 << 10), deep),
        (shape("a: ", "[", limit), deep),
        (shape("a: ", "{", limit), deep),
        (shape("a: ", "{a: ", limit), deep),
        (shape("a: ", "[{", limit), deep),
        (shape("a: ", "[a, {? ", limit), deep),
        (shape("", "- ", limit), deep),
        (block, deep),
        (shape("a: [", "1,", limit), "send it as JSON"),
        (shape("", "- [x]\n", limit), "send it as JSON"),
    ];
    for (body, expected) in shapes {
        let head: String = body.chars().take(16).collect();
        let (code, answer) = post_yaml(&server, EVENTS, body).await;
        assert_eq!(code, 400, "{head:?}: {answer}");
        assert_status(&answer, 400);
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the request body is not valid: ") && message.contains(expected),
            "{head:?}: {message}"
        );
    }
    // Long anchor names aliased many times cost their length, once each: answered (here, as
    // an Event with unknown fields). Aliases that replay a large node many times are refused.
    let name = "a".repeat(60_000);
    let aliases = vec![format!("*{name}"); 40].join(",");
    let long = format!("x: &{name} [1, 2]\ny: [{aliases}]\n");
    let (code, answer) = post_yaml(&server, EVENTS, long).await;
    assert_eq!(code, 400, "{answer}");
    assert_status(&answer, 400);
    let items = vec!["1"; 20_000].join(",");
    let aliases = vec!["*a"; 20_000].join(",");
    let bomb = format!("x: &a [{items}]\ny: [{aliases}]\n");
    let (code, answer) = post_yaml(&server, EVENTS, bomb).await;
    assert_eq!(code, 400, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("YAML aliases expand"), "{message}");
    let (code, listed) = (server.get(EVENTS).await.code, server.get(EVENTS).await.body);
    assert_eq!(code, 200);
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

fn pod_with_two_names() -> String {
    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","name":"p2"},
        "spec":{"containers":[{"name":"c","image":"busybox","image":"nginx"}]}}"#
        .to_owned()
}

const TWO_NAMES_YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  name: p2\n\
    spec:\n  containers:\n  - name: c\n    image: busybox\n    image: nginx\n";

/// `{"metadata":{"name":"p1","name":"p2"}}`: refused under `fieldValidation=Strict` (the default)
/// in Kubernetes' words, JSON or YAML; stored with the last value and a `Warning` header per
/// field under `Warn`; stored silently under `Ignore`.
#[tokio::test]
async fn duplicate_fields_follow_field_validation_as_in_kubernetes() {
    let server = start().await;
    let strict = "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: \
                  duplicate field \"metadata.name\", duplicate field \"spec.containers[0].image\"";
    for (query, content_type, body) in [
        ("", "application/json", pod_with_two_names()),
        (
            "?fieldValidation=Strict",
            "application/json",
            pod_with_two_names(),
        ),
        ("", "application/yaml", TWO_NAMES_YAML.to_owned()),
    ] {
        let path = format!("{PODS}{query}");
        let answer = server.send("POST", &path, content_type, Some(body)).await;
        assert_eq!(answer.code, 400, "{}", answer.body);
        assert_status(&answer.body, 400);
        assert_eq!(answer.body["message"], strict);
    }
    for name in ["p1", "p2"] {
        assert_eq!(server.get(&format!("{PODS}/{name}")).await.code, 404);
    }

    let response = server
        .client
        .post(server.url(&format!("{PODS}?fieldValidation=Warn")))
        .header("content-type", "application/json")
        .body(pod_with_two_names())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let warnings: Vec<&str> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        [
            r#"299 - "duplicate field \"metadata.name\"""#,
            r#"299 - "duplicate field \"spec.containers[0].image\"""#
        ]
    );
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["metadata"]["name"], "p2");
    assert_eq!(created["spec"]["containers"][0]["image"], "nginx");

    let body = pod_with_two_names().replace("\"p2\"", "\"p3\"");
    let response = server
        .client
        .post(server.url(&format!("{PODS}?fieldValidation=Ignore")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("warning").is_none());

    // Patches: a merge patch's own duplicates, and a JSON patch operation's.
    let merge = r#"{"metadata":{"labels":{"a":"1","a":"2"}}}"#;
    let answer = server
        .send(
            "PATCH",
            &format!("{PODS}/p2"),
            "application/merge-patch+json",
            Some(merge.into()),
        )
        .await;
    assert_eq!(answer.code, 400, "{}", answer.body);
    assert!(answer.body["message"]
        .as_str()
        .unwrap_or_default()
        .ends_with("strict decoding error: duplicate field \"metadata.labels.a\""));
    let json_patch = r#"[{"op":"add","path":"/metadata/labels","path":"/x","value":{}}]"#;
    let answer = server
        .send(
            "PATCH",
            &format!("{PODS}/p2"),
            "application/json-patch+json",
            Some(json_patch.into()),
        )
        .await;
    assert_eq!(answer.code, 400, "{}", answer.body);
    assert!(answer.body["message"]
        .as_str()
        .unwrap_or_default()
        .ends_with("strict decoding error: json patch duplicate field \"[0].path\""));
    let stored = server.get(&format!("{PODS}/p2")).await.body;
    assert_eq!(
        stored["metadata"].get("labels"),
        None,
        "the refused patches changed nothing"
    );
}

/// Every error answer is a `Status`: a method a path is not served for (405, with `Allow`), an
/// unknown path (404), on Kubernetes' paths and on minik's own.
#[tokio::test]
async fn every_error_answer_is_a_status() {
    let server = start().await;
    let cases = [
        ("PUT", "/version"),
        ("POST", "/version"),
        ("DELETE", "/api"),
        ("PUT", "/api/"),
        ("PATCH", "/apis"),
        ("POST", "/apis/"),
        ("PUT", "/openapi/v2"),
        ("DELETE", "/openapi/v3"),
        ("POST", "/openapi/v3/api/v1"),
        ("PUT", "/healthz"),
        ("POST", "/livez"),
        ("DELETE", "/readyz"),
        ("GET", "/minik/v1/join"),
        ("GET", "/minik/v1/tokens/admin"),
        ("POST", "/minik/v1/nodes/n1/token"),
        ("PUT", "/api/v1/namespaces/default/pods"),
        ("POST", "/api/v1/namespaces/default/pods/p1/log"),
        ("PUT", "/apis/apps/v1"),
    ];
    for (method, path) in cases {
        let response = server
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(path),
            )
            .send()
            .await
            .expect("request");
        let code = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(code, 405, "{method} {path}: {body}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
        assert_status(&body, 405);
        assert_eq!(body["reason"], "MethodNotAllowed", "{method} {path}");
    }
    let response = server
        .client
        .put(server.url("/version"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "PUT is not supported on /version");

    for (method, path) in [
        ("GET", "/nope"),
        ("PUT", "/nope"),
        ("GET", "/api/v2/pods"),
        ("DELETE", "/apis/nope/v1/things"),
        ("GET", "/minik/v1/nope"),
    ] {
        let answer = server.send(method, path, "", None).await;
        assert_eq!(answer.code, 404, "{method} {path}");
        assert_status(&answer.body, 404);
        assert_eq!(answer.body["reason"], "NotFound");
    }
    // The probes still answer in plain text, as Kubernetes' do.
    let healthz = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.text().await.unwrap(), "ok");
}

/// `Authorization: Bearer TOKEN` with one space and nothing after the token; the scheme in any
/// case. Anything else is a 401 `Status`, never the administrator.
#[tokio::test]
async fn bearer_tokens_are_read_as_rfc_6750_writes_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path(), HISTORY);
    let auth = Auth::open(AuthConfig {
        dir: dir.path().join("auth"),
        admin_file: None,
        anonymous_loopback: false,
        ca_fingerprint: None,
    })
    .expect("auth");
    let token = std::fs::read_to_string(dir.path().join("auth/admin-token")).unwrap();
    let token = token.trim().to_owned();
    let server = ApiServer::secured(Arc::new(store.clone()), Config::default(), auth);
    let s = serve(server, store, dir).await;
    let cases = [
        (format!("Bearer {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("BEARER {token}"), 200),
        (format!("Bearer  {token}"), 401),
        (format!("Bearer \t{token}"), 401),
        (format!("Bearer\t{token}"), 401),
        (format!("Bearer {token} {token}"), 401),
        (format!("Bearer {token},x"), 401),
        (format!("Bearer {token}=x"), 401),
        ("Bearer".to_owned(), 401),
        (format!("Basic {token}"), 401),
        (token.to_owned(), 401),
    ];
    for (header, expected) in cases {
        let response = s
            .client
            .get(s.url("/api/v1/namespaces"))
            .header("authorization", &header)
            .send()
            .await
            .expect("request");
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(code, expected, "{header:?}: {body}");
        if expected == 401 {
            assert_status(&body, 401);
            assert_eq!(body["reason"], "Unauthorized");
        }
    }
}
