//! What the pod-start benchmarks share: pods created through the API, and the moment each is
//! first seen Running by a watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

const PODS: &str = "/api/v1/namespaces/default/pods";

/// When each pod was first seen Running by the watch, and bound to a node.
#[derive(Default)]
pub(crate) struct Seen {
    running: Mutex<HashMap<String, Instant>>,
    bound: Mutex<HashMap<String, Instant>>,
    changed: Notify,
}

impl Seen {
    pub(crate) async fn wait_for(
        &self,
        names: &[String],
        limit: Duration,
    ) -> anyhow::Result<Vec<Instant>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            {
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                let found: Vec<Instant> = names
                    .iter()
                    .filter_map(|n| running.get(n).copied())
                    .collect();
                if found.len() == names.len() {
                    return Ok(found);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                let missing: Vec<&String> =
                    names.iter().filter(|n| !running.contains_key(*n)).collect();
                bail!(
                    "{} of {} pods were not Running within {limit:?} (first: {:?})",
                    missing.len(),
                    names.len(),
                    missing.first()
                );
            }
        }
    }
}

impl Seen {
    /// When each of `names` was first seen Running, in their order; the names not seen so
    /// yet are left out.
    pub(crate) fn running_times(&self, names: &[String]) -> Vec<Instant> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        names
            .iter()
            .filter_map(|n| running.get(n).copied())
            .collect()
    }

    /// When each of `names` was first seen bound to a node; those not seen so are left out.
    pub(crate) fn bound_times(&self, names: &[String]) -> Vec<Instant> {
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        names.iter().filter_map(|n| bound.get(n).copied()).collect()
    }

    /// How many pods whose names start with `prefix` were seen Running, and when the last of
    /// them was first seen so.
    pub(crate) fn running_with_prefix(&self, prefix: &str) -> (usize, Option<Instant>) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let times: Vec<Instant> = running
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, at)| *at)
            .collect();
        (times.len(), times.into_iter().max())
    }
}

/// Follows the pods of `default` and notes when each is first Running.
pub(crate) async fn watch_pods(
    http: reqwest::Client,
    base: String,
    seen: Arc<Seen>,
) -> anyhow::Result<()> {
    let list: Value = http
        .get(format!("{base}{PODS}"))
        .send()
        .await?
        .json()
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let response = http
        .get(format!("{base}{PODS}?watch=true&resourceVersion={rv}"))
        .send()
        .await?;
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let pod = &event["object"];
            if event["type"] != "DELETED" && pod["spec"]["nodeName"].is_string() {
                if let Some(name) = pod["metadata"]["name"].as_str() {
                    seen.bound
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(name.to_owned())
                        .or_insert(at);
                }
            }
            if event["type"] != "DELETED" && pod["status"]["phase"] == "Running" {
                if let Some(name) = pod["metadata"]["name"].as_str() {
                    seen.running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(name.to_owned())
                        .or_insert(at);
                    seen.changed.notify_waiters();
                }
            }
        }
    }
    Ok(())
}

/// Creates the pod; answers its uid.
pub(crate) async fn create(
    http: &reqwest::Client,
    base: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let response = http.post(format!("{base}{PODS}")).json(body).send().await?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(
        status.as_u16() == 201,
        "creating a pod answered {status}: {text}"
    );
    let created: Value = serde_json::from_str(&text).context("the created pod is not JSON")?;
    created["metadata"]["uid"]
        .as_str()
        .map(str::to_owned)
        .context("the created pod has no uid")
}

/// Waits until node `name` says it is Ready, for at most `limit`.
pub(crate) async fn wait_node_ready(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let ready_by = Instant::now() + limit;
    loop {
        let node: Option<Value> = match http.get(format!("{base}/api/v1/nodes/{name}")).send().await
        {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let ready = node
            .as_ref()
            .and_then(|n| n["status"]["conditions"].as_array())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if ready {
            return Ok(());
        }
        ensure!(
            Instant::now() < ready_by,
            "node {name} did not become Ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
