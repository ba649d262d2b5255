//! `pods/{name}/portforward`: a TCP tunnel from a client, through the API server, to the pod's
//! node agent, which connects to the pod's port — the path Kubernetes takes through the
//! kubelet.
//!
//! The client picks a protocol with `Upgrade`. minik's own, `minik-portforward`, carries one TCP
//! connection to one port (`?ports=N`) as raw bytes after `101 Switching Protocols` (docs/api.md).
//! kubectl's SPDY and WebSocket protocols multiplex several streams over one connection; they
//! would be further [`Protocol`]s that open one agent tunnel per stream, the agent side staying
//! as it is.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use minik_api::ApiError;
use serde_json::Value;

use crate::{agent, ApiServer};

/// The `Upgrade` token of minik's raw tunnel; the agent speaks the same.
pub const RAW_PROTOCOL: &str = "minik-portforward";

/// The tunnel protocols a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// One TCP connection to one port, as raw bytes.
    Raw,
}

impl Protocol {
    fn negotiate(headers: &HeaderMap) -> Result<Protocol, ApiError> {
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let offered: Vec<&str> = upgrade.split(',').map(str::trim).collect();
        if offered.iter().any(|p| p.eq_ignore_ascii_case(RAW_PROTOCOL)) {
            return Ok(Protocol::Raw);
        }
        if upgrade.is_empty() {
            return Err(ApiError::BadRequest("Upgrade request required".into()));
        }
        Err(ApiError::BadRequest(format!(
            "unable to upgrade connection: the protocol {upgrade:?} is not supported; minik serves port-forward over `Upgrade: {RAW_PROTOCOL}` (SPDY and WebSocket streams are not served yet)"
        )))
    }
}

/// The port asked for: `ports=N` (Kubernetes' name) or `port=N`; the raw protocol takes one.
fn requested_port(query: &HashMap<String, String>) -> Result<u16, ApiError> {
    let raw = query
        .get("ports")
        .or_else(|| query.get("port"))
        .map(String::as_str)
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::BadRequest(
            "ports: a port to forward to is required (?ports=N)".into(),
        ));
    }
    if raw.contains(',') {
        return Err(ApiError::BadRequest(format!(
            "ports: {RAW_PROTOCOL} forwards one port per connection, not {raw:?}"
        )));
    }
    match raw.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ApiError::BadRequest(format!(
            "ports: invalid port {raw:?}: must be a number between 1 and 65535"
        ))),
    }
}

/// Opens a tunnel to `port` of pod `ns/name` and, once the agent has connected to the pod,
/// switches the client's connection to it.
pub async fn pod_port_forward(
    server: &ApiServer,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let protocol = Protocol::negotiate(headers)?;
    let port = requested_port(query)?;
    let on_upgrade = on_upgrade.ok_or_else(|| {
        ApiError::BadRequest("unable to upgrade connection: the request cannot be upgraded".into())
    })?;
    let pod = agent::pod(server, ns, name).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::BadRequest(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let node_agent = agent::pod_agent(server, &pod, name).await?;
    let url = node_agent.url(&format!("/portForward/{ns}/{name}"));
    let answer = server
        .nodes
        .post(&url)
        .query(&[("port", port.to_string())])
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, RAW_PROTOCOL)
        .send()
        .await
        .map_err(|e| node_agent.unreachable(e))?;
    let code = answer.status().as_u16();
    if code != 101 {
        let message = answer.text().await.unwrap_or_default();
        return Err(match code {
            400 => ApiError::BadRequest(message),
            404 => ApiError::NotFound(minik_api::ObjectRef::new("", "pods", name)),
            _ => ApiError::ServiceUnavailable(format!(
                "error forwarding port {port} to pod {name}: {message}"
            )),
        });
    }
    let mut agent = answer.upgrade().await.map_err(|e| {
        ApiError::ServiceUnavailable(format!(
            "the agent of node {} did not upgrade: {e}",
            node_agent.node
        ))
    })?;
    match protocol {
        Protocol::Raw => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => {
                        let mut client = hyper_util::rt::TokioIo::new(client);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "port-forward client upgrade failed"),
                }
            });
        }
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(RAW_PROTOCOL));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ports_are_checked() {
        let mut headers = HeaderMap::new();
        assert!(Protocol::negotiate(&headers)
            .unwrap_err()
            .to_string()
            .contains("Upgrade request required"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(Protocol::negotiate(&headers)
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        headers.insert(
            header::UPGRADE,
            HeaderValue::from_static("websocket, minik-portforward"),
        );
        assert_eq!(Protocol::negotiate(&headers).unwrap(), Protocol::Raw);

        let q = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert_eq!(requested_port(&q("ports", "8080")).unwrap(), 8080);
        assert_eq!(requested_port(&q("port", "80")).unwrap(), 80);
        for bad in ["0", "70000", "http", "80,81"] {
            assert_eq!(requested_port(&q("ports", bad)).unwrap_err().code(), 400);
        }
        assert_eq!(requested_port(&HashMap::new()).unwrap_err().code(), 400);
    }
}
