//! ConfigMaps (v1): configuration as keys of text (`data`) or bytes (`binaryData`), read by
//! pods through their environment and volumes. Defaults and validation in
//! [`crate::validation::config_map`].

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, name_cell, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    ConfigMap,
    defaults::config_map,
    validation::config_map,
    validation::config_map_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const CONFIG_MAPS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

/// How many keys a map of the object holds.
pub(crate) fn key_count(obj: &Value, pointer: &str) -> usize {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(key_count(obj, "/data") + key_count(obj, "/binaryData")),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
