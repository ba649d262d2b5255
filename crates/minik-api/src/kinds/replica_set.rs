//! ReplicaSets (apps/v1): defaults and validation. Scalable with a `LabelSelector`, the common form.

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, int, n, name_cell, replicas, workload_wide, Column, Table, AGE, NAME, WORKLOAD_WIDE,
};
use crate::{defaults, validation};

typed_rules!(
    ReplicaSet,
    defaults::replica_set,
    validation::replica_set,
    validation::replica_set_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const REPLICA_SETS: &dyn Strategy = &Common(TABLE);

/// The table of ReplicaSets and ReplicationControllers, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    int("Desired", "Replicas is the number of desired replicas."),
    int(
        "Current",
        "Replicas is the most recently observed number of replicas.",
    ),
    int(
        "Ready",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    WORKLOAD_WIDE[0],
    WORKLOAD_WIDE[1],
    WORKLOAD_WIDE[2],
];

pub(super) const TABLE: Table = Table::new(COLUMNS, workload_cells);

/// The cells of a ReplicaSet's or a ReplicationController's row.
fn workload_cells(obj: &Value, now: i64) -> Vec<Value> {
    let mut cells = vec![
        name_cell(obj),
        json!(replicas(obj)),
        json!(n(obj, "/status/replicas")),
        json!(n(obj, "/status/readyReplicas")),
        age_cell(obj, now),
    ];
    cells.extend(workload_wide(obj));
    cells
}
