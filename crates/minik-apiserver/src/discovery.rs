//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/apps/v1`), `/version` and the health
//! endpoints, generated from the table of served kinds so they can never disagree with it.

use axum::response::{IntoResponse, Response};
use axum::Json;
use minik_api::resources::{ResourceInfo, RESOURCES};
use minik_api::ApiError;
use serde_json::{json, Value};

use crate::http::HttpError;

/// The Kubernetes version whose API minik serves.
pub const KUBERNETES_MINOR: &str = "33";

pub async fn ok() -> &'static str {
    "ok"
}

/// Ready unless the store failed a write (then only a restart recovers).
pub async fn readyz(
    axum::extract::State(server): axum::extract::State<std::sync::Arc<crate::ApiServer>>,
) -> Response {
    if server.registry.store().failed() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the store failed to write to disk; restart the server",
        )
            .into_response();
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

pub async fn api_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
}

fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    groups
}

fn group_doc(group: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

pub async fn api_groups() -> Json<Value> {
    let groups: Vec<Value> = groups().into_iter().map(group_doc).collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
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
        let (kind, group, verbs): (&str, Option<&str>, &[&str]) = match *sub {
            "binding" => ("Binding", None, &["create"]),
            // kubectl drain evicts when /api/v1 lists pods/eviction with its group and version
            // (kubectl's CheckEvictionSupport); the policy group itself need not be served.
            "eviction" => ("Eviction", Some("policy"), &["create"]),
            "finalize" => ("Namespace", None, &["update"]),
            "log" => ("Pod", None, &["get"]),
            "portforward" => ("PodPortForwardOptions", None, &["create", "get"]),
            "scale" => ("Scale", Some("autoscaling"), &["get", "patch", "update"]),
            _ => (info.kind, None, &["get", "patch", "update"]),
        };
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
        let apps = document("/apis/apps/v1").unwrap().unwrap();
        assert_eq!(apps["groupVersion"], "apps/v1");
        // Eviction's group is not served: minik has none of its kinds, and kubectl's
        // discovery cache refuses a group version that lists no resources.
        assert!(document("/apis/policy/v1").unwrap().is_err());
        assert!(document("/apis/batch/v1").unwrap().is_err());
        assert!(document("/api/v1/pods").is_none());
    }
}
