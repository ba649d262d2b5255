//! DaemonSets (apps/v1): defaults and validation; the DaemonSet controller does the rest. The
//! table is kubectl's: desired, current, ready, up-to-date and available pods, the template's
//! node selector, and (wide) the containers, images and selector.

use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, col, int, labels_string, n, name_cell, or_none, wide, workload_wide, Column, Table,
    AGE, NAME, WORKLOAD_WIDE,
};
use crate::{defaults, validation};

typed_rules!(
    DaemonSet,
    defaults::daemon_set,
    validation::daemon_set,
    validation::daemon_set_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const DAEMON_SETS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    int("Desired", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    int("Current", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    int("Ready", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    int("Up-to-date", "The total number of nodes that are running updated daemon pod"),
    int("Available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    AGE,
    WORKLOAD_WIDE[0],
    WORKLOAD_WIDE[1],
    wide(col("Selector", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors")),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let mut cells = vec![
        name_cell(obj),
        json!(n(obj, "/status/desiredNumberScheduled")),
        json!(n(obj, "/status/currentNumberScheduled")),
        json!(n(obj, "/status/numberReady")),
        json!(n(obj, "/status/updatedNumberScheduled")),
        json!(n(obj, "/status/numberAvailable")),
        json!(or_none(&labels_string(
            obj.pointer("/spec/template/spec/nodeSelector")
        ))),
        age_cell(obj, now),
    ];
    cells.extend(workload_wide(obj));
    cells
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_counts_and_the_node_selector() {
        let ds = json!({
            "metadata": {"name": "agent", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"spec": {
                    "nodeSelector": {"disk": "ssd"},
                    "containers": [{"name": "a", "image": "busybox"}]
                }}
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 2,
                       "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}
        });
        let now = 1_704_067_200 + 90;
        let row = cells(&ds, now);
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(
            row,
            vec![
                json!("agent"),
                json!(3),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("disk=ssd"),
                json!("90s"),
                json!("a"),
                json!("busybox"),
                json!("app=agent"),
            ]
        );
        let bare = json!({"metadata": {"name": "x"}});
        assert_eq!(cells(&bare, now)[6], json!("<none>"));
        let names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }
}
