//! Endpoints (v1): defaults and validation; the Endpoints controller writes them.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, endpoints, name_cell, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    Endpoints,
    defaults::endpoints,
    validation::endpoints,
    validation::endpoints_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const ENDPOINTS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[NAME, col("Endpoints", "Endpoints of the service"), AGE];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![name_cell(obj), json!(endpoints(obj)), age_cell(obj, now)]
}

const TABLE: Table = Table::new(COLUMNS, cells);
