//! Secrets (v1): like ConfigMaps, but for credentials, with a `type` whose rules say which
//! keys it needs. `stringData` is merged into `data` on every write and never stored. Tables
//! show how many keys a Secret has, never what they hold. Defaults and validation in
//! [`crate::defaults::secret`] and [`crate::validation::secret`].

use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};

use super::config_map::key_count;
use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, name_cell, s, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    Secret,
    defaults::secret,
    validation::secret,
    validation::secret_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const SECRETS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(s(obj, "/type")),
        json!(key_count(obj, "/data")),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
