//! The pod a `NAME` or `TYPE/NAME` target stands for, as kubectl's `logs`, `port-forward` (and
//! `attach`/`exec`) pick it: the pod itself, or one pod of a deployment, replica set,
//! replication controller or service, chosen among those its selector matches.

use minik_api::resources::ResourceInfo;
use minik_client::{Api, ListParams};
use serde_json::Value;

use super::printers::{s, selector_of};
use super::{fail, resource, CliResult, Client};

/// The pod picked for a target.
pub struct Picked {
    pub pod: Value,
    /// The kind the target named.
    pub kind: &'static ResourceInfo,
    /// The object the target named when it was not a pod (the Service, for its ports).
    pub owner: Option<Value>,
    /// How many pods the owner's selector matched (1 for a pod).
    pub matched: usize,
}

/// Picks the pod `target` stands for. `what` completes the errors: "cannot {what} a configmap",
/// "has no pods to {what}".
pub async fn pod_of_target(client: &Client, target: &str, what: &str) -> CliResult<Picked> {
    let pods = resource("pods")?;
    let ns = client.ns_for(pods);
    let (kind, name) = match target.split_once('/') {
        Some((kind, name)) => (resource(kind)?, name),
        None => (pods, target),
    };
    if name.is_empty() {
        return Err(if target.contains('/') {
            fail!("arguments in resource/name form must have a single resource and name")
        } else {
            fail!("the pod name is empty: name a pod or TYPE/NAME")
        });
    }
    if kind.kind == "Pod" {
        return Ok(Picked {
            pod: client.api.get(pods, ns, name).await?,
            kind,
            owner: None,
            matched: 1,
        });
    }
    if !matches!(
        kind.kind,
        "Deployment" | "ReplicaSet" | "ReplicationController" | "Service"
    ) {
        return Err(fail!(
            "cannot {what} a {}: name a pod, deployment, replica set, replication controller or service",
            kind.singular
        ));
    }
    let owner = client.api.get(kind, client.ns_for(kind), name).await?;
    let selector = selector_of(&owner);
    if selector.is_empty() {
        return Err(fail!(
            "{}/{name} has no selector, so it has no pods to {what}",
            super::qualified_singular(kind)
        ));
    }
    let mut list = client
        .api
        .list(pods, ns, &ListParams::labels(selector))
        .await?
        .items;
    list.sort_by_key(pod_rank);
    let matched = list.len();
    let pod = list.into_iter().next().ok_or_else(|| {
        fail!(
            "no pods found for {}/{name}",
            super::qualified_singular(kind)
        )
    })?;
    Ok(Picked {
        pod,
        kind,
        owner: Some(owner),
        matched,
    })
}

/// How kubectl ranks the pods of a workload to pick one: running and ready first, then the
/// ones created earliest (kubectl's `ActivePods` order, simplified to what minik reports).
fn pod_rank(pod: &Value) -> (u8, String, String) {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True")
        });
    let rank = match (s(pod, "/status/phase"), ready) {
        ("Running", true) => 0,
        ("Running", false) => 1,
        ("Pending", _) => 2,
        _ => 3,
    };
    (
        rank,
        s(pod, "/metadata/creationTimestamp").to_owned(),
        s(pod, "/metadata/name").to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn running_ready_then_oldest_pods_come_first() {
        let pod = |name: &str, phase: &str, ready: bool, created: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created},
                   "status": {"phase": phase, "conditions": [
                       {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
        };
        let mut pods = [
            pod("failed", "Failed", false, "2024-01-01T00:00:00Z"),
            pod("pending", "Pending", false, "2024-01-01T00:00:00Z"),
            pod("unready", "Running", false, "2024-01-01T00:00:00Z"),
            pod("ready-new", "Running", true, "2024-01-02T00:00:00Z"),
            pod("ready-old", "Running", true, "2024-01-01T00:00:00Z"),
        ];
        pods.sort_by_key(pod_rank);
        let names: Vec<&str> = pods.iter().map(|p| s(p, "/metadata/name")).collect();
        assert_eq!(
            names,
            ["ready-old", "ready-new", "unready", "pending", "failed"]
        );
    }
}
