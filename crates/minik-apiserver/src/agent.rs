//! Reaching a pod's node agent, for the pod subresources the API server passes on to it (`log`,
//! `portforward`), as Kubernetes' API server reaches the kubelet.

use minik_api::resources;
use minik_api::ApiError;
use serde_json::Value;

use crate::ApiServer;

fn stored(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("a stored object is not JSON: {e}")))
}

/// The stored pod `ns/name` (404 when there is none).
pub(crate) async fn pod(server: &ApiServer, ns: &str, name: &str) -> Result<Value, ApiError> {
    let pods = resources::by_plural("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    stored(&server.registry.get(pods, Some(ns), name).await?.value)
}

/// The agent of a pod's node.
pub(crate) struct PodAgent {
    pub node: String,
    /// `host:port` (an IPv6 host in brackets).
    pub address: String,
    /// What the agent's endpoint requires from the server (`Authorization: Bearer KEY`); none
    /// when the server runs without authentication.
    key: Option<String>,
    /// Whether the agent serves HTTPS (it does when the API server does: it got its
    /// certificate from the cluster CA).
    https: bool,
}

impl PodAgent {
    /// The agent's URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.address)
    }

    /// `request` with the server's credentials for this agent: agents accept only the server.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// The error for a request the agent did not answer.
    pub fn unreachable(&self, e: impl std::fmt::Display) -> ApiError {
        ApiError::ServiceUnavailable(format!(
            "cannot reach the agent of node {} at {}: {e}",
            self.node, self.address
        ))
    }
}

/// The agent of the node that pod `name` is bound to. A pod not bound yet is a bad request; a
/// node that reports no address or agent endpoint is unavailable.
pub(crate) async fn pod_agent(
    server: &ApiServer,
    pod: &Value,
    name: &str,
) -> Result<PodAgent, ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = resources::by_plural("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    let node = stored(&server.registry.get(nodes, None, node_name).await?.value)?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node {node_name} has no InternalIP address"))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node {node_name} reports no agent endpoint"))
        })?;
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_owned()
    };
    let key = match server.auth.as_ref() {
        Some(auth) => Some(auth.agent_key(node_name).ok_or_else(|| {
            ApiError::ServiceUnavailable(format!(
                "node {node_name} has no credential (it did not join), so its agent cannot be reached"
            ))
        })?),
        None => None,
    };
    Ok(PodAgent {
        node: node_name.to_owned(),
        address: format!("{host}:{port}"),
        key,
        https: server.tls.is_some(),
    })
}

/// The names of the containers of `pod` in `field` (`/spec/containers`, ...).
fn names<'a>(pod: &'a Value, field: &str) -> Vec<&'a str> {
    pod.pointer(field)
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// The container a log or an exec is about: the one asked for, which must be the pod's
/// (an app, init or ephemeral container), or the pod's only app container; the API server's
/// words otherwise.
pub(crate) fn container_of(
    pod: &Value,
    name: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    let containers = names(pod, "/spec/containers");
    let init_containers = names(pod, "/spec/initContainers");
    match asked {
        Some(c) => {
            let known = containers
                .iter()
                .chain(&init_containers)
                .chain(&names(pod, "/spec/ephemeralContainers"))
                .any(|k| *k == c);
            if known {
                Ok(c.to_owned())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].to_owned()),
        None if containers.is_empty() => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init_containers.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init_containers.join(" ")
                ));
            }
            Err(ApiError::BadRequest(message))
        }
    }
}
