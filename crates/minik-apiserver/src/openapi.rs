//! The OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/{api/v1,apis/apps/v1}`) that
//! kubectl reads before `apply`, `create -f`, `replace` and `--dry-run=server`: every served
//! path with its operations, their `x-kubernetes-action` and `x-kubernetes-group-version-kind`,
//! and the query parameters each takes. kubectl learns from them that the server validates
//! fields itself (`fieldValidation`) and runs dry runs (`dryRun`), so it sends those instead of
//! validating against a schema on its side.
//!
//! The documents carry no object schemas (`components.schemas` is empty): minik does not ship
//! Kubernetes' schema document, and a partial one would make kubectl's own schema-driven code
//! fail where it falls back cleanly on nothing. For the same reason `PATCH` does not list
//! `application/strategic-merge-patch+json` although minik accepts it: kubectl then computes
//! the strategic merge patch of `apply` from its compiled-in types (its path for built-in
//! kinds), which are the types minik serves. `kubectl explain` needs the schemas and says it
//! cannot find them. See docs/kubernetes-compatibility.md.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use minik_api::resources::{ResourceInfo, RESOURCES};
use minik_api::ApiError;
use serde_json::{json, Map, Value};

use crate::answer::{json_response, HttpError};
use crate::discovery::KUBERNETES_MINOR;

/// The media type in which client-go asks for the OpenAPI v2 document (gnostic's protobuf).
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `GET /openapi/v2`: a Swagger 2.0 document with its version and no paths or definitions.
/// kubectl before 1.29 fetches it before `apply` and fails without it; finding no definition
/// for a kind, it computes patches from its compiled-in types, as with the v3 documents.
/// client-go asks for it as protobuf (gnostic's `openapi_v2.Document`); anything else gets
/// JSON.
pub async fn v2(headers: axum::http::HeaderMap) -> Response {
    let title = "Kubernetes";
    let version = format!("v1.{KUBERNETES_MINOR}.0-minik");
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(OPENAPI_V2_PROTOBUF));
    if !wants_protobuf {
        return json_response(
            StatusCode::OK,
            Bytes::from(
                json!({"swagger": "2.0", "info": {"title": title, "version": version}, "paths": {}})
                    .to_string(),
            ),
        );
    }
    // Document { swagger = 1: "2.0", info = 2: Info { title = 1, version = 2 } }.
    let mut info = Vec::new();
    protobuf_string(&mut info, 1, title);
    protobuf_string(&mut info, 2, &version);
    let mut doc = Vec::new();
    protobuf_string(&mut doc, 1, "2.0");
    protobuf_bytes(&mut doc, 2, &info);
    let mut response = Response::new(axum::body::Body::from(doc));
    // As Kubernetes answers it: Go's media type parser refuses the `@` of the asked type.
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Appends a length-delimited protobuf field (wire type 2).
fn protobuf_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

fn protobuf_string(out: &mut Vec<u8>, field: u8, s: &str) {
    protobuf_bytes(out, field, s.as_bytes());
}

/// The group versions served, as OpenAPI v3 names them: `api/v1`, `apis/apps/v1`.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = RESOURCES.iter().map(|r| (r.group, r.version)).collect();
    gvs.sort();
    gvs.dedup();
    gvs
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash_of(doc: &Value) -> String {
    let mut h = DefaultHasher::new();
    doc.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `GET /openapi/v3`: where each group version's document is.
pub async fn index() -> Response {
    let mut paths = Map::new();
    for (group, version) in group_versions() {
        let path = gv_path(group, version);
        let doc = document(group, version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash_of(&doc))}),
        );
    }
    json_response(
        StatusCode::OK,
        Bytes::from(json!({ "paths": paths }).to_string()),
    )
}

/// `GET /openapi/v3/api/v1`, `GET /openapi/v3/apis/apps/v1`.
pub async fn group_version(Path(path): Path<String>) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let gv = match segments.as_slice() {
        ["api", version] => Some(("", *version)),
        ["apis", group, version] => Some((*group, *version)),
        _ => None,
    };
    let Some((group, version)) = gv.filter(|gv| group_versions().iter().any(|served| served == gv))
    else {
        return HttpError(ApiError::NoSuchPath(format!(
            "no OpenAPI v3 document for {path:?}: served are {}",
            group_versions()
                .iter()
                .map(|(g, v)| gv_path(g, v))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .into_response();
    };
    let mut response = json_response(
        StatusCode::OK,
        Bytes::from(document(group, version).to_string()),
    );
    // The document only changes with the binary; its URL carries its hash.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    response
}

fn query_param(name: &str, description: &str, kind: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": true},
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn dry_run() -> Value {
    query_param(
        "dryRun",
        "When present, indicates that modifications should not be persisted. The only valid value is All.",
        "string",
    )
}

fn field_manager() -> Value {
    query_param(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
        "string",
    )
}

fn field_validation() -> Value {
    query_param(
        "fieldValidation",
        "How the server treats fields it does not know: Ignore, Warn or Strict (the default; the request fails).",
        "string",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        query_param(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
            "string",
        ),
        query_param(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields.",
            "string",
        ),
        query_param(
            "resourceVersion",
            "Where a watch starts; lists are always current.",
            "string",
        ),
        query_param(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
        query_param(
            "allowWatchBookmarks",
            "Requests watch events with type BOOKMARK.",
            "boolean",
        ),
        query_param(
            "timeoutSeconds",
            "Timeout for the list/watch call.",
            "integer",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query_param(
            "gracePeriodSeconds",
            "The duration in seconds before the object should be deleted.",
            "integer",
        ),
        query_param(
            "propagationPolicy",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
            "string",
        ),
    ]
}

/// `listCoreV1NamespacedPod`, `patchAppsV1NamespacedDeploymentScale`: Kubernetes' names.
fn operation_id(verb: &str, info: &ResourceInfo, namespaced: bool, suffix: &str) -> String {
    let mut group = if info.group.is_empty() {
        "Core".to_owned()
    } else {
        info.group.to_owned()
    };
    group[..1].make_ascii_uppercase();
    let mut version = info.version.to_owned();
    version[..1].make_ascii_uppercase();
    let scope = if namespaced { "Namespaced" } else { "" };
    format!("{verb}{group}{version}{scope}{}{suffix}", info.kind)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

struct Op<'a> {
    id: String,
    action: &'a str,
    gvk: Value,
    params: Vec<Value>,
    /// Media types of the request body, if it has one.
    body: &'a [&'a str],
}

fn operation(op: Op) -> Value {
    let mut o = json!({
        "operationId": op.id,
        "description": format!("{} {}", op.action, op.gvk["kind"].as_str().unwrap_or_default()),
        "parameters": op.params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": op.gvk,
    });
    if !op.body.is_empty() {
        let content: Map<String, Value> = op
            .body
            .iter()
            .map(|m| (m.to_string(), json!({"schema": {"type": "object"}})))
            .collect();
        o["requestBody"] = json!({"content": content, "required": true});
    }
    o
}

const WRITE_MEDIA: &[&str] = &["application/json", "application/yaml"];
/// What `PATCH` lists; see the module comment for why strategic merge patch is left out.
const PATCH_MEDIA: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// The paths of one kind: its collection (in a namespace and across namespaces), its objects
/// and their subresources.
fn resource_paths(info: &ResourceInfo, paths: &mut Map<String, Value>) {
    let base = format!("/{}", gv_path(info.group, info.version));
    let kind_gvk = gvk(info.group, info.version, info.kind);
    let name_param = path_param("name", &format!("name of the {}", info.kind));
    let ns_param = path_param(
        "namespace",
        "object name and auth scope, such as for teams and projects",
    );
    let scoped = |rest: &str| {
        if info.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}{rest}", info.plural)
        } else {
            format!("{base}/{}{rest}", info.plural)
        }
    };
    let scope_params = || -> Vec<Value> {
        if info.namespaced {
            vec![ns_param.clone()]
        } else {
            vec![]
        }
    };
    let id = |verb: &str, suffix: &str| operation_id(verb, info, info.namespaced, suffix);
    let write_params = || vec![dry_run(), field_manager(), field_validation()];

    // The collection.
    let mut collection = json!({
        "get": operation(Op { id: id("list", ""), action: "list", gvk: kind_gvk.clone(), params: list_params(), body: &[] }),
        "post": operation(Op { id: id("create", ""), action: "post", gvk: kind_gvk.clone(), params: write_params(), body: WRITE_MEDIA }),
        "parameters": scope_params(),
    });
    if info.strategy.deletes_collection() {
        let mut params = delete_params();
        params.extend(list_params().into_iter().take(2));
        collection["delete"] = operation(Op {
            id: id("deletecollection", ""),
            action: "deletecollection",
            gvk: kind_gvk.clone(),
            params,
            body: &[],
        });
    }
    paths.insert(scoped(""), collection);
    if info.namespaced {
        paths.insert(
            format!("{base}/{}", info.plural),
            json!({
                "get": operation(Op {
                    id: operation_id("list", info, false, "ForAllNamespaces"),
                    action: "list",
                    gvk: kind_gvk.clone(),
                    params: list_params(),
                    body: &[],
                }),
            }),
        );
    }

    // One object.
    let mut object_params = vec![name_param.clone()];
    object_params.extend(scope_params());
    paths.insert(
        scoped("/{name}"),
        json!({
            "get": operation(Op { id: id("read", ""), action: "get", gvk: kind_gvk.clone(), params: vec![], body: &[] }),
            "put": operation(Op { id: id("replace", ""), action: "put", gvk: kind_gvk.clone(), params: write_params(), body: WRITE_MEDIA }),
            "patch": operation(Op { id: id("patch", ""), action: "patch", gvk: kind_gvk.clone(), params: write_params(), body: PATCH_MEDIA }),
            "delete": operation(Op { id: id("delete", ""), action: "delete", gvk: kind_gvk.clone(), params: delete_params(), body: &[] }),
            "parameters": object_params.clone(),
        }),
    );

    for sub in info.subresources {
        let suffix = {
            let mut s = sub.to_string();
            s[..1].make_ascii_uppercase();
            s
        };
        let path = scoped(&format!("/{{name}}/{sub}"));
        let doc = match *sub {
            "status" | "scale" => {
                let gvk = if *sub == "scale" {
                    gvk("autoscaling", "v1", "Scale")
                } else {
                    kind_gvk.clone()
                };
                json!({
                    "get": operation(Op { id: id("read", &suffix), action: "get", gvk: gvk.clone(), params: vec![], body: &[] }),
                    "put": operation(Op { id: id("replace", &suffix), action: "put", gvk: gvk.clone(), params: write_params(), body: WRITE_MEDIA }),
                    "patch": operation(Op { id: id("patch", &suffix), action: "patch", gvk, params: write_params(), body: PATCH_MEDIA }),
                })
            }
            "binding" => json!({
                "post": operation(Op { id: id("create", &suffix), action: "post", gvk: gvk("", "v1", "Binding"), params: write_params(), body: WRITE_MEDIA }),
            }),
            "eviction" => json!({
                "post": operation(Op { id: id("create", &suffix), action: "post", gvk: gvk("policy", "v1", "Eviction"), params: write_params(), body: WRITE_MEDIA }),
            }),
            "token" => json!({
                "post": operation(Op { id: id("create", &suffix), action: "post", gvk: gvk("authentication.k8s.io", "v1", "TokenRequest"), params: write_params(), body: WRITE_MEDIA }),
            }),
            "finalize" => json!({
                "put": operation(Op { id: id("replace", &suffix), action: "put", gvk: kind_gvk.clone(), params: write_params(), body: WRITE_MEDIA }),
            }),
            "log" => json!({
                "get": operation(Op {
                    id: id("read", &suffix),
                    action: "get",
                    gvk: kind_gvk.clone(),
                    params: ["container", "follow", "previous", "tailLines", "sinceSeconds", "timestamps", "limitBytes"]
                        .iter()
                        .map(|p| query_param(p, &format!("the {p} option of the log request"), "string"))
                        .collect(),
                    body: &[],
                }),
            }),
            "exec" => {
                let params: Vec<Value> = [
                    (
                        "command",
                        "The command to run, one argument per value",
                        "string",
                    ),
                    ("container", "The container to run it in", "string"),
                    ("stdin", "Pass stdin to the command", "boolean"),
                    ("stdout", "Pass the command's stdout back", "boolean"),
                    ("stderr", "Pass the command's stderr back", "boolean"),
                    ("tty", "Run the command in a terminal", "boolean"),
                ]
                .iter()
                .map(|(name, what, kind)| query_param(name, what, kind))
                .collect();
                json!({
                    "get": operation(Op { id: id("connectGet", &suffix), action: "connect", gvk: gvk("", "v1", "PodExecOptions"), params: params.clone(), body: &[] }),
                    "post": operation(Op { id: id("connectPost", &suffix), action: "connect", gvk: gvk("", "v1", "PodExecOptions"), params, body: &[] }),
                })
            }
            "attach" => {
                let params: Vec<Value> = [
                    ("container", "The container to attach to", "string"),
                    ("stdin", "Pass stdin to the container", "boolean"),
                    ("stdout", "Pass the container's stdout back", "boolean"),
                    ("stderr", "Pass the container's stderr back", "boolean"),
                    ("tty", "The container runs on a terminal", "boolean"),
                ]
                .iter()
                .map(|(name, what, kind)| query_param(name, what, kind))
                .collect();
                json!({
                    "get": operation(Op { id: id("connectGet", &suffix), action: "connect", gvk: gvk("", "v1", "PodAttachOptions"), params: params.clone(), body: &[] }),
                    "post": operation(Op { id: id("connectPost", &suffix), action: "connect", gvk: gvk("", "v1", "PodAttachOptions"), params, body: &[] }),
                })
            }
            "portforward" => json!({
                "get": operation(Op { id: id("connectGet", &suffix), action: "connect", gvk: gvk("", "v1", "PodPortForwardOptions"), params: vec![query_param("ports", "List of ports to forward", "integer")], body: &[] }),
                "post": operation(Op { id: id("connectPost", &suffix), action: "connect", gvk: gvk("", "v1", "PodPortForwardOptions"), params: vec![query_param("ports", "List of ports to forward", "integer")], body: &[] }),
            }),
            _ => continue,
        };
        let mut doc = doc;
        doc["parameters"] = Value::Array(object_params.clone());
        paths.insert(path, doc);
    }
}

/// The document of one group version.
fn document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    for info in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resource_paths(info, &mut paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0-minik")},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl's query parameter verifier looks for: a PATCH operation for the kind that
    /// lists the parameter.
    fn patch_has_param(doc: &Value, kind: &str, param: &str) -> bool {
        doc["paths"].as_object().unwrap().values().any(|path| {
            let Some(op) = path.get("patch") else {
                return false;
            };
            op["x-kubernetes-group-version-kind"]["kind"] == kind
                && op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == param && p["in"] == "query")
        })
    }

    #[test]
    fn every_served_kind_declares_field_validation_and_dry_run() {
        for info in RESOURCES {
            let doc = document(info.group, info.version);
            for param in ["fieldValidation", "dryRun"] {
                assert!(
                    patch_has_param(&doc, info.kind, param),
                    "{} {param}",
                    info.kind
                );
            }
        }
    }

    #[test]
    fn paths_and_operation_ids_follow_kubernetes() {
        let core = document("", "v1");
        let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pods["patch"]["operationId"], "patchCoreV1NamespacedPod");
        assert_eq!(pods["patch"]["x-kubernetes-action"], "patch");
        assert!(pods["patch"]["requestBody"]["content"]
            .get("application/merge-patch+json")
            .is_some());
        assert_eq!(
            core["paths"]["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            core["paths"]["/api/v1/nodes/{name}"]["get"]["operationId"],
            "readCoreV1Node"
        );
        let eviction = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"];
        assert_eq!(
            eviction["post"]["operationId"],
            "createCoreV1NamespacedPodEviction"
        );
        assert_eq!(
            eviction["post"]["x-kubernetes-group-version-kind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        let apps = document("apps", "v1");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["patch"]["operationId"],
            "patchAppsV1NamespacedDeploymentScale"
        );
        assert_eq!(
            scale["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );
        assert!(apps["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| p.starts_with("/apis/apps/v1/")));
    }

    #[test]
    fn protobuf_fields_are_length_delimited() {
        let mut out = Vec::new();
        protobuf_string(&mut out, 1, "2.0");
        assert_eq!(out, b"\x0a\x032.0");
        let mut long = Vec::new();
        protobuf_bytes(&mut long, 2, &[0; 300]);
        assert_eq!(&long[..3], &[0x12, 0xac, 0x02]);
        assert_eq!(long.len(), 303);
    }

    #[tokio::test]
    async fn index_points_at_every_group_version_by_hash() {
        let response = index().await;
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let index: Value = serde_json::from_slice(&body).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(index["paths"]["api/v1"].is_object());
        let missing = group_version(Path("apis/autoscaling/v2".into())).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
