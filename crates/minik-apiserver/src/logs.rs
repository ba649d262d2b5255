//! `pods/{name}/log`: the API server finds the pod's node and streams the log from that node's
//! agent, as Kubernetes' API server does with the kubelet.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures::StreamExt;
use minik_api::ApiError;

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
    let container = agent::container_of(
        &pod,
        name,
        query
            .get("container")
            .map(String::as_str)
            .filter(|c| !c.is_empty()),
    )?;
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
