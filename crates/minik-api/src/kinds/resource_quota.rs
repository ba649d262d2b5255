//! ResourceQuotas (v1): defaults and validation; the API server counts a new quota's first
//! status and charges every create it concerns (`Admission::QuotaStatus`).

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::{json, Value};

use super::{typed_rules, Admission, Strategy};
use crate::printers::{age_cell, col, name_cell, quota_cells, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    ResourceQuota,
    defaults::resource_quota,
    validation::resource_quota,
    validation::resource_quota_update
);

#[derive(Debug)]
struct ResourceQuotas;

pub(crate) const RESOURCE_QUOTAS: &dyn Strategy = &ResourceQuotas;

impl Strategy for ResourceQuotas {
    fn table(&self) -> &Table {
        &TABLE
    }

    fn quota_object_count(&self) -> Option<&'static str> {
        Some("resourcequotas")
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::QuotaStatus]
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let (request, limit) = quota_cells(obj);
    vec![
        name_cell(obj),
        age_cell(obj, now),
        json!(request),
        json!(limit),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
