//! Deployments (apps/v1): defaults and validation; the Deployment controller does the rest. Scalable with a `LabelSelector`, the common form.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, col, int, n, name_cell, replicas, workload_wide, Column, Table, AGE, NAME,
    WORKLOAD_WIDE,
};
use crate::{defaults, validation};

typed_rules!(
    Deployment,
    defaults::deployment,
    validation::deployment,
    validation::deployment_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const DEPLOYMENTS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "Number of the pod with ready state"),
    int("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    int("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    WORKLOAD_WIDE[0],
    WORKLOAD_WIDE[1],
    WORKLOAD_WIDE[2],
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
        json!(n(obj, "/status/updatedReplicas")),
        json!(n(obj, "/status/availableReplicas")),
        age_cell(obj, now),
    ];
    cells.extend(workload_wide(obj));
    cells
}

const TABLE: Table = Table::new(COLUMNS, cells);
