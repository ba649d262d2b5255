//! ControllerRevisions (apps/v1): the history of DaemonSets and StatefulSets, written by their
//! controllers. The table is kubectl's: the controlling owner (`daemonset.apps/NAME`) and the
//! revision number.

use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, arr, col, name_cell, s, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    ControllerRevision,
    defaults::controller_revision,
    validation::controller_revision,
    validation::controller_revision_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const CONTROLLER_REVISIONS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "Controller of the object"),
    col(
        "Revision",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// The controlling owner as kubectl prints it: `kind.group/name` lower-cased kind, or
/// `<none>`.
fn controller(obj: &Value) -> String {
    let Some(owner) = arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".into();
    };
    let kind = s(owner, "/kind");
    let group = s(owner, "/apiVersion")
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = s(owner, "/name");
    if kind.is_empty() && group.is_empty() {
        return name.to_owned();
    }
    let kind = kind.to_lowercase();
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(controller(obj)),
        json!(obj.get("revision").and_then(Value::as_i64).unwrap_or(0)),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_controller_with_its_group() {
        let cr = json!({
            "metadata": {"name": "agent-7c9f", "creationTimestamp": "2024-01-01T00:00:00Z",
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                     "uid": "u", "controller": true}
                ]},
            "revision": 2
        });
        let row = cells(&cr, 1_704_067_200 + 5);
        assert_eq!(
            row,
            vec![
                json!("agent-7c9f"),
                json!("daemonset.apps/agent"),
                json!(2),
                json!("5s")
            ]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(cells(&orphan, 0)[1], json!("<none>"));
    }
}
