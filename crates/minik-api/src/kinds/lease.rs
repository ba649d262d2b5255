//! Leases (coordination.k8s.io/v1): defaults and validation; nodes renew theirs in `kube-node-lease`.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{age_cell, col, name_cell, or_none, s, Column, Table, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    Lease,
    defaults::lease,
    validation::lease,
    validation::lease_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const LEASES: &dyn Strategy = &Common(TABLE);

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[NAME, col("Holder", "The holder of the lease."), AGE];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(or_none(s(obj, "/spec/holderIdentity"))),
        age_cell(obj, now),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
