//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/apps/v1`), `/version` and the health
//! endpoints, generated from the table of served kinds so they can never disagree with it.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minik_api::resources::{ResourceInfo, RESOURCES};
use minik_api::ApiError;
use serde_json::{json, Value};

use crate::answer::HttpError;

/// The Kubernetes version whose API minik serves.
pub const KUBERNETES_MINOR: &str = "33";

pub async fn ok() -> &'static str {
    "ok"
}

/// Ready while the store takes writes: not while its disk is too full (until space is freed)
/// or after a write failed on disk (until a restart). The answer says which.
pub async fn readyz(
    axum::extract::State(server): axum::extract::State<std::sync::Arc<crate::ApiServer>>,
) -> Response {
    if let Err(e) = server.registry.store().writable() {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
    }
    "ok".into_response()
}

pub async fn not_found() -> Response {
    HttpError(ApiError::NoSuchPath(
        "the server could not find the requested resource".into(),
    ))
    .into_response()
}

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-minik.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    }))
}

/// The architecture as Go (and so Kubernetes) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`: the legacy `APIVersions`, or the core group's aggregated discovery when asked for.
pub async fn api_versions(headers: HeaderMap) -> Response {
    if let Some(version) = aggregated_version(&headers) {
        return aggregated(version, &[""]);
    }
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
    .into_response()
}

/// The named groups served, each once, in the order their first kind is listed.
fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

/// `/apis`: the legacy `APIGroupList`, or every named group's aggregated discovery when asked
/// for.
pub async fn api_groups(headers: HeaderMap) -> Response {
    if let Some(version) = aggregated_version(&headers) {
        return aggregated(version, &groups());
    }
    let groups: Vec<Value> = groups().into_iter().map(group_doc).collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

/// The version of aggregated discovery (`apidiscovery.k8s.io`) the client asks for first in its
/// `Accept` header (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`, as
/// kubectl 1.26+ sends it, with `v2beta1` and plain JSON after it); `None` when it asks for none
/// or prefers another media type.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !media.eq_ignore_ascii_case("application/json") {
            // Another media type preferred first (kubectl asks for JSON only).
            if media == "*/*" || media.starts_with("application/") {
                return None;
            }
            continue;
        }
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| *v)
        };
        if params.is_empty() {
            return None;
        }
        if param("g") == Some("apidiscovery.k8s.io") && param("as") == Some("APIGroupDiscoveryList")
        {
            match param("v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
    }
    None
}

/// The verbs and kind of a subresource, as the legacy documents and aggregated discovery list
/// them: (kind, group of the kind if not the resource's, verbs).
fn subresource_kind(
    info: &ResourceInfo,
    sub: &str,
) -> (&'static str, Option<&'static str>, &'static [&'static str]) {
    match sub {
        "binding" => ("Binding", None, &["create"]),
        // kubectl drain evicts when /api/v1 lists pods/eviction with its group and version
        // (kubectl's CheckEvictionSupport); the policy group itself need not be served.
        "eviction" => ("Eviction", Some("policy"), &["create"]),
        "finalize" => ("Namespace", None, &["update"]),
        "log" => ("Pod", None, &["get"]),
        "portforward" => ("PodPortForwardOptions", None, &["create", "get"]),
        "exec" => ("PodExecOptions", None, &["create", "get"]),
        "attach" => ("PodAttachOptions", None, &["create", "get"]),
        "scale" => ("Scale", Some("autoscaling"), &["get", "patch", "update"]),
        "token" => ("TokenRequest", Some("authentication.k8s.io"), &["create"]),
        _ => (info.kind, None, &["get", "patch", "update"]),
    }
}

/// The aggregated discovery document (`APIGroupDiscoveryList`) of `groups` ("" is the core
/// group), built from the same table as the legacy documents.
fn aggregated_document(version: &str, groups: &[&str]) -> Value {
    let items: Vec<Value> = groups
        .iter()
        .map(|group| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == *group)
                .map(|r| {
                    let subresources: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|sub| {
                            let (kind, kind_group, verbs) = subresource_kind(r, sub);
                            let (g, v) = match kind_group {
                                Some(g) => (g, "v1"),
                                None => (r.group, r.version),
                            };
                            json!({
                                "subresource": sub,
                                "responseKind": {"group": g, "version": v, "kind": kind},
                                "verbs": verbs,
                            })
                        })
                        .collect();
                    let mut doc = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": ALL_VERBS,
                    });
                    if !r.short_names.is_empty() {
                        doc["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        doc["categories"] = json!(r.categories);
                    }
                    if !subresources.is_empty() {
                        doc["subresources"] = json!(subresources);
                    }
                    doc
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({
                "metadata": metadata,
                "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated(version: &str, groups: &[&str]) -> Response {
    let body = aggregated_document(version, groups).to_string();
    let content_type =
        format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_docs(info: &ResourceInfo) -> Vec<Value> {
    let mut docs = vec![json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": ALL_VERBS,
        "shortNames": info.short_names,
        "categories": info.categories,
    })];
    for sub in info.subresources {
        let (kind, group, verbs) = subresource_kind(info, sub);
        let mut doc = json!({
            "name": format!("{}/{sub}", info.plural),
            "singularName": "",
            "namespaced": info.namespaced,
            "kind": kind,
            "verbs": verbs,
        });
        if let Some(group) = group {
            doc["group"] = json!(group);
            doc["version"] = json!("v1");
        }
        docs.push(doc);
    }
    docs
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(resource_docs)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The discovery document at `path`, if `path` is one (`/api/v1`, `/apis/apps`, `/apis/apps/v1`).
pub fn document(path: &str) -> Option<Result<Value, ApiError>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let missing = || {
        Err(ApiError::NoSuchPath(
            "the server could not find the requested resource".into(),
        ))
    };
    match segments.as_slice() {
        ["api", version] => Some(resource_list("", version).map_or_else(missing, Ok)),
        ["apis", group] => Some(if groups().contains(group) {
            let mut doc = group_doc(group);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            Ok(doc)
        } else {
            missing()
        }),
        ["apis", group, version] => Some(resource_list(group, version).map_or_else(missing, Ok)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn aggregated_discovery_is_served_when_asked_for_first() {
        // What kubectl 1.28-1.33 sends.
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(&accept(kubectl)), Some("v2"));
        let beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(&accept(beta)), Some("v2beta1"));
        for legacy in [
            "application/json",
            "*/*",
            "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
        ] {
            assert_eq!(aggregated_version(&accept(legacy)), None, "{legacy}");
        }
        assert_eq!(aggregated_version(&HeaderMap::new()), None);

        let core = aggregated_document("v2", &[""]);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let item = &core["items"][0];
        assert!(
            item["metadata"].get("name").is_none(),
            "the core group is unnamed"
        );
        let version = &item["versions"][0];
        assert_eq!(version["version"], "v1");
        assert_eq!(version["freshness"], "Current");
        let pods = version["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["shortNames"], json!(["po"]));
        let eviction = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .unwrap();
        assert_eq!(
            eviction["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
        let nodes = version["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "nodes")
            .unwrap();
        assert_eq!(nodes["scope"], "Cluster");

        // /apis: every named group, and the same kinds as the legacy documents.
        let named = aggregated_document("v2", &groups());
        let names: Vec<&str> = named["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, groups());
        for item in named["items"].as_array().unwrap() {
            let group = item["metadata"]["name"].as_str().unwrap();
            let legacy = document(&format!("/apis/{group}/v1")).unwrap().unwrap();
            let legacy: Vec<&str> = legacy["resources"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["name"].as_str())
                .filter(|n| !n.contains('/'))
                .collect();
            let aggregated: Vec<&str> = item["versions"][0]["resources"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|r| r["resource"].as_str())
                .collect();
            assert_eq!(legacy, aggregated, "{group}");
        }
    }

    #[test]
    fn discovery_lists_every_served_kind_and_subresource() {
        let core = document("/api/v1").unwrap().unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for n in [
            "pods",
            "pods/status",
            "pods/binding",
            "services",
            "nodes",
            "namespaces",
            "events",
            "endpoints",
            "resourcequotas",
            "replicationcontrollers/scale",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        // What kubectl drain looks for before it evicts rather than deletes.
        let eviction = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(
            (
                &eviction["kind"],
                &eviction["group"],
                &eviction["version"],
                &eviction["verbs"]
            ),
            (
                &json!("Eviction"),
                &json!("policy"),
                &json!("v1"),
                &json!(["create"])
            )
        );
        // Each group once, though the kinds of a group need not be listed together.
        let names = groups();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        let apps = document("/apis/apps/v1").unwrap().unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        // Groups are served with their kinds: policy (PodDisruptionBudget), batch (Job,
        // CronJob); a group minik has no kind of is not (kubectl's discovery cache refuses a
        // group version that lists no resources).
        let policy = document("/apis/policy/v1").unwrap().unwrap();
        assert!(policy["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "poddisruptionbudgets"));
        assert!(document("/apis/batch/v1").unwrap().is_ok());
        assert!(document("/apis/autoscaling/v2").unwrap().is_err());
        assert!(document("/api/v1/pods").is_none());
    }
}
