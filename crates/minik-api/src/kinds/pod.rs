//! Pods (v1): defaults and validation, the DefaultTolerationSeconds admission, graceful
//! deletion of a pod that runs on a node, and the `Completed` condition of finished pods' rows.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::{typed_rules, Admission, Deletion, Strategy};
use crate::defaults::DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS;
use crate::{defaults, validation};

typed_rules!(Pod, defaults::pod, validation::pod, validation::pod_update);

#[derive(Debug)]
struct Pods;

pub(crate) const PODS: &dyn Strategy = &Pods;

impl Strategy for Pods {
    fn admission(&self) -> &'static [Admission] {
        &[Admission::DefaultTolerationSeconds]
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
}

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
