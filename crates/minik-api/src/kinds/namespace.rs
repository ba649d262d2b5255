//! Namespaces (v1): defaults and validation, and how one is deleted: marked `Terminating` at
//! once, emptied by the namespace controller, which then removes its `spec.finalizers`
//! through `namespaces/{name}/finalize`; it goes when nothing holds it. The namespaces every
//! cluster has may not be deleted, nor may all namespaces be deleted at once.

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{json, Value};

use super::{typed_rules, Deletion, Strategy};
use crate::printers::{age_cell, col, name_cell, s, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    Namespace,
    defaults::namespace,
    validation::namespace,
    validation::namespace_update
);

/// Namespaces every cluster has from its first start.
pub const SYSTEM: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    crate::wellknown::NODE_LEASE_NAMESPACE,
];

/// The system namespaces that may never be deleted (all but the nodes' lease namespace).
pub const UNDELETABLE: &[&str] = SYSTEM.split_at(3).0;

#[derive(Debug)]
struct Namespaces;

pub(crate) const NAMESPACES: &dyn Strategy = &Namespaces;

impl Strategy for Namespaces {
    fn table(&self) -> &Table {
        &TABLE
    }

    fn deletion(&self, _namespace: &Value) -> Deletion {
        Deletion::Finalized {
            status: json!({"phase": "Terminating"}),
        }
    }

    fn deletion_held(&self, namespace: &Value) -> bool {
        namespace
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        UNDELETABLE
            .contains(&name)
            .then_some("this namespace may not be deleted")
    }

    fn deletes_collection(&self) -> bool {
        false
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[NAME, col("Status", "The status of the namespace"), AGE];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(s(obj, "/status/phase")),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_finalizers_hold_a_namespace() {
        for (namespace, held) in [
            (json!({}), false),
            (json!({"spec": {"finalizers": []}}), false),
            (json!({"spec": {"finalizers": ["kubernetes"]}}), true),
        ] {
            assert_eq!(NAMESPACES.deletion_held(&namespace), held, "{namespace}");
        }
        assert_eq!(UNDELETABLE, ["default", "kube-system", "kube-public"]);
        assert!(NAMESPACES.undeletable("kube-system").is_some());
        assert!(NAMESPACES.undeletable("kube-node-lease").is_none());
        assert!(NAMESPACES.undeletable("team-a").is_none());
    }
}
