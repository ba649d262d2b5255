//! `pods/{name}/log`: the API server finds the pod's node and streams the log from that node's
//! agent, as Kubernetes' API server does with the kubelet.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures::StreamExt;
use minik_api::ApiError;
use serde_json::Value;

use crate::{agent, ApiServer};

/// The query parameters passed on to the agent.
const PASSED_ON: &[&str] = &[
    "follow",
    "tailLines",
    "previous",
    "limitBytes",
    "timestamps",
];

/// Streams the log of a container of a pod from its node's agent.
pub async fn pod_log(
    server: &ApiServer,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let pod = agent::pod(server, ns, name).await?;
    let names = |field: &str| -> Vec<&str> {
        pod.pointer(field)
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default()
    };
    let containers = names("/spec/containers");
    let init_containers = names("/spec/initContainers");
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(&c.as_str()) || init_containers.contains(&c.as_str()) => {
            c.clone()
        }
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None if containers.len() == 1 => containers[0].to_owned(),
        None => {
            // The API server's words, init containers included.
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
            return Err(ApiError::BadRequest(message));
        }
    };
    let agent = agent::pod_agent(server, &pod, name).await?;
    let url = agent.url(&format!("/containerLogs/{ns}/{name}/{container}"));
    let passed: Vec<(&str, &str)> = PASSED_ON
        .iter()
        .filter_map(|k| query.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    let answer = agent
        .authorize(server.nodes.get(&url))
        .query(&passed)
        .send()
        .await
        .map_err(|e| agent.unreachable(e))?;
    let code = answer.status().as_u16();
    if !answer.status().is_success() {
        let message = answer.text().await.unwrap_or_default();
        return Err(match code {
            400 => ApiError::BadRequest(message),
            404 => ApiError::NoSuchPath(message),
            _ => ApiError::Internal(format!("node {} answered {code}: {message}", agent.node)),
        });
    }
    let body = Body::from_stream(
        answer
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other)),
    );
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}
