//! PodDisruptionBudgets (policy/v1): defaults, validation and the table kubectl prints
//! (`NAME  MIN AVAILABLE  MAX UNAVAILABLE  ALLOWED DISRUPTIONS  AGE`). The status is the
//! disruption controller's and the eviction subresource's to write: a create starts without.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, int, n, name_cell, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    PodDisruptionBudget,
    defaults::pod_disruption_budget,
    validation::pod_disruption_budget,
    validation::pod_disruption_budget_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const POD_DISRUPTION_BUDGETS: &dyn Strategy = &Common(TABLE);

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "The maximum number of pods that may be unavailable.",
    ),
    int(
        "Allowed Disruptions",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

const TABLE: Table = Table::new(COLUMNS, cells);

/// An int-or-string as Kubernetes prints it (`2`, `50%`), `N/A` when absent.
fn int_or_string(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "N/A".into(),
    }
}

fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(int_or_string(obj, "/spec/minAvailable")),
        json!(int_or_string(obj, "/spec/maxUnavailable")),
        json!(n(obj, "/status/disruptionsAllowed")),
        age_cell(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_like_kubectl() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        let obj = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"minAvailable": "50%"},
            "status": {"disruptionsAllowed": 1},
        });
        let now = 1_704_067_200 + 90;
        assert_eq!(
            cells(&obj, now),
            vec![
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(1),
                json!("90s")
            ]
        );
        let obj = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": 1}});
        assert_eq!(cells(&obj, now)[1..4], [json!("N/A"), json!("1"), json!(0)]);
    }
}
