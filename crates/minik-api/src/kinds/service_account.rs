//! ServiceAccounts (v1): the identities pods run as. Every namespace gets `default` from the
//! service account controller. Defaults and validation in
//! [`crate::validation::service_account`].

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, arr, col, name_cell, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    ServiceAccount,
    defaults::service_account,
    validation::service_account,
    validation::service_account_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const SERVICE_ACCOUNTS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(arr(obj, "/secrets").len()),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
