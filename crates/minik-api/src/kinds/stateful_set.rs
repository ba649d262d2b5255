//! StatefulSets (apps/v1): defaults and validation; the StatefulSet controller does the rest.
//! Scalable (`kubectl scale sts`) with a `LabelSelector`, the common form.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, col, n, name_cell, replicas, workload_wide, Column, Table, AGE, NAME, WORKLOAD_WIDE,
};
use crate::{defaults, validation};

typed_rules!(
    StatefulSet,
    defaults::stateful_set,
    validation::stateful_set,
    validation::stateful_set_update
);

/// The common rules of the registry (the default scale selector reads `spec.selector`), and
/// the kind's table.
pub(crate) const STATEFUL_SETS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it: no selector among the wide columns.
const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "Number of the pod with ready state"),
    AGE,
    WORKLOAD_WIDE[0],
    WORKLOAD_WIDE[1],
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let mut cells = vec![
        name_cell(obj),
        json!(format!(
            "{}/{}",
            n(obj, "/status/readyReplicas"),
            replicas(obj)
        )),
        age_cell(obj, now),
    ];
    cells.extend(workload_wide(obj).into_iter().take(2));
    cells
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_ready_over_desired_and_the_containers() {
        let sts = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.27"},
                    {"name": "side", "image": "busybox"},
                ]}},
            },
            "status": {"replicas": 3, "readyReplicas": 2},
        });
        let table = STATEFUL_SETS.table();
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Ready", "Age", "Containers", "Images"]);
        let cells = (table.cells)(&sts, 1_704_067_260);
        assert_eq!(cells.len(), table.columns.len());
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], "60s");
        assert_eq!(cells[3], "nginx,side");
        assert_eq!(cells[4], "nginx:1.27,busybox");
        assert_eq!(STATEFUL_SETS.scale_selector(&sts).unwrap(), "app=nginx");
    }
}
