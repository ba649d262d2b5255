//! Pods (v1): defaults and validation, the DefaultTolerationSeconds and RuntimeClass
//! admissions, graceful deletion of a pod that runs on a node, the `Completed` condition of
//! finished pods' rows, and what a pod is charged against quotas (Kubernetes' pod evaluator:
//! `pods`, compute requests and limits, scopes, and the compute resources a quota requires it
//! to set).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::{typed_rules, Admission, Deletion, Strategy};
use crate::defaults::DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS;
use crate::printers::{
    age_cell, col, name_cell, or_none, pod_summary, readiness_gates, s, wide, Column, Table, AGE,
    NAME,
};
use crate::quantity::{add_to, Quantity, ResourceList};
use crate::{defaults, validation};

typed_rules!(Pod, defaults::pod, validation::pod, validation::pod_update);

#[derive(Debug)]
struct Pods;

pub(crate) const PODS: &dyn Strategy = &Pods;

impl Strategy for Pods {
    fn table(&self) -> &Table {
        &TABLE
    }

    fn admission(&self) -> &'static [Admission] {
        &[
            Admission::DefaultTolerationSeconds,
            Admission::RuntimeClass,
            Admission::ServiceAccount,
        ]
    }

    /// A pod on a node stops gracefully: its agent sees `deletionTimestamp`, stops the
    /// containers within the grace period and then deletes the pod with grace 0. A pod no
    /// node runs goes at once.
    fn deletion(&self, pod: &Value) -> Deletion {
        let on_node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !on_node {
            return Deletion::Immediate;
        }
        Deletion::Graceful {
            default_seconds: pod
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS),
        }
    }

    /// Kubernetes marks the rows of pods that have finished (`Succeeded`, `Failed`) with a
    /// `Completed` condition, which kubectl uses to hide them unless `--show-all`.
    fn row_conditions(&self, pod: &Value) -> Value {
        match pod.pointer("/status/phase").and_then(Value::as_str) {
            Some(phase @ ("Succeeded" | "Failed")) => json!([{
                "type": "Completed",
                "status": "True",
                "reason": phase,
                "message": if phase == "Succeeded" {
                    "The pod has completed successfully."
                } else {
                    "The pod failed."
                },
            }]),
            _ => Value::Null,
        }
    }

    fn quota_object_count(&self) -> Option<&'static str> {
        Some("pods")
    }

    fn quota_usage(&self, pod: &Value, now: i64) -> Option<ResourceList> {
        if !pod_counts(pod, now) {
            return None;
        }
        Some(pod_compute(pod))
    }

    fn quota_resource(&self, name: &str) -> bool {
        COMPUTE.contains(&name) || name.ends_with("ephemeral-storage")
    }

    fn in_quota_scope(&self, scope: &str, pod: &Value) -> bool {
        let terminating = pod.pointer("/spec/activeDeadlineSeconds").is_some();
        let best_effort =
            pod.pointer("/status/qosClass").and_then(Value::as_str) == Some("BestEffort");
        match scope {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => best_effort,
            "NotBestEffort" => !best_effort,
            _ => false,
        }
    }

    fn quota_unspecified(&self, hard: &ResourceList, pod: &Value) -> Option<String> {
        missing_compute(hard, pod)
    }
}

/// The resources whose quota makes every container of a pod say how much it asks for
/// (Kubernetes' backward-compatibility rule for cpu and memory).
const COMPUTE: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Whether a pod still counts against quota at `now` (seconds since the epoch): not when it
/// finished, nor once it is being deleted and its grace period is over (Kubernetes'
/// `QuotaV1Pod`).
fn pod_counts(pod: &Value, now: i64) -> bool {
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    match pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(crate::time::parse_seconds)
    {
        Some(deadline) => now < deadline,
        None => true,
    }
}

/// The compute resources one container's requests and limits stand for.
fn container_usage(container: &Value) -> ResourceList {
    let mut usage = ResourceList::new();
    let read = |which: &str, name: &str| -> Option<Quantity> {
        container
            .pointer(&format!("/resources/{which}/{name}"))
            .and_then(Value::as_str)
            .and_then(|s| Quantity::parse(s).ok())
    };
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = read("requests", name) {
            usage.insert(format!("requests.{name}"), q);
            usage.insert(name.to_owned(), q);
        }
        if let Some(q) = read("limits", name) {
            usage.insert(format!("limits.{name}"), q);
        }
    }
    usage
}

/// A pod's compute usage: its containers summed, or its largest init container where that is
/// larger, plus its overhead (Kubernetes' `PodUsageFunc`).
fn pod_compute(pod: &Value) -> ResourceList {
    let mut total = ResourceList::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (name, q) in container_usage(c) {
            add_to(&mut total, &name, q);
        }
    }
    for c in pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (name, q) in container_usage(c) {
            if total.get(&name).is_none_or(|t| q > *t) {
                total.insert(name, q);
            }
        }
    }
    if let Some(overhead) = pod.pointer("/spec/overhead").and_then(Value::as_object) {
        for (name, q) in overhead {
            if let Some(q) = q.as_str().and_then(|s| Quantity::parse(s).ok()) {
                for key in [format!("requests.{name}"), name.clone()] {
                    if total.contains_key(&key) {
                        add_to(&mut total, &key, q);
                    }
                }
                if total.contains_key(&format!("limits.{name}")) {
                    add_to(&mut total, &format!("limits.{name}"), q);
                }
            }
        }
    }
    total
}

/// The containers (regular and init) of a pod that do not set each compute resource the quota
/// limits, as `limits.cpu for: a,b; limits.memory for: a` (Kubernetes' pod `Constraints`).
fn missing_compute(hard: &ResourceList, pod: &Value) -> Option<String> {
    let required: BTreeSet<&str> = hard
        .keys()
        .map(String::as_str)
        .filter(|k| COMPUTE.contains(k))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["/spec/containers", "/spec/initContainers"] {
        for c in pod
            .pointer(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let has = container_usage(c);
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            for r in &required {
                if !has.contains_key(*r) {
                    missing.entry(r).or_default().insert(name.to_owned());
                }
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    Some(
        missing
            .iter()
            .map(|(r, names)| {
                format!(
                    "{r} for: {}",
                    names.iter().cloned().collect::<Vec<_>>().join(",")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "The aggregate status of the containers in this pod."),
    col("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide(col("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.")),
    wide(col("Node", "NodeName is a request to schedule this pod onto a specific node.")),
    wide(col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.")),
    wide(col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.")),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let p = pod_summary(obj, now);
    vec![
        name_cell(obj),
        json!(p.ready),
        json!(p.status),
        json!(p.restarts),
        age_cell(obj, now),
        json!(or_none(s(obj, "/status/podIP"))),
        json!(or_none(s(obj, "/spec/nodeName"))),
        json!(or_none(s(obj, "/status/nominatedNodeName"))),
        json!(readiness_gates(obj)),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pod_on_a_node_is_deleted_gracefully() {
        let cases = [
            (json!({"spec": {}}), Deletion::Immediate),
            (json!({"spec": {"nodeName": ""}}), Deletion::Immediate),
            (
                json!({"spec": {"nodeName": "n1"}}),
                Deletion::Graceful {
                    default_seconds: 30,
                },
            ),
            (
                json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 5}}),
                Deletion::Graceful { default_seconds: 5 },
            ),
        ];
        for (pod, expected) in cases {
            assert_eq!(PODS.deletion(&pod), expected, "{pod}");
        }
    }

    #[test]
    fn finished_pods_rows_are_completed() {
        assert_eq!(
            PODS.row_conditions(&json!({"status": {"phase": "Running"}})),
            Value::Null
        );
        let failed = PODS.row_conditions(&json!({"status": {"phase": "Failed"}}));
        assert_eq!(failed[0]["reason"], "Failed");
        assert_eq!(failed[0]["message"], "The pod failed.");
    }
}
