//! Endpoints (v1): defaults and validation; the Endpoints controller writes them.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Value};

use super::{typed_rules, Strategy};
use crate::printers::{age_cell, col, endpoints, name_cell, Column, AGE, NAME};
use crate::{defaults, validation};

typed_rules!(
    Endpoints,
    defaults::endpoints,
    validation::endpoints,
    validation::endpoints_update
);

/// The common rules of the registry, and the kind's table.
#[derive(Debug)]
pub(crate) struct EndpointsStrategy;

pub(crate) const ENDPOINTS: &dyn Strategy = &EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, now: i64) -> Vec<Value> {
        vec![name_cell(obj), json!(endpoints(obj)), age_cell(obj, now)]
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[NAME, col("Endpoints", "Endpoints of the service"), AGE];
