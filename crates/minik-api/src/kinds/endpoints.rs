//! Endpoints (v1): defaults and validation; the Endpoints controller writes them.

use k8s_openapi::api::core::v1::Endpoints;

use super::{typed_rules, Common, Strategy};
use crate::{defaults, validation};

typed_rules!(
    Endpoints,
    defaults::endpoints,
    validation::endpoints,
    validation::endpoints_update
);

/// The common rules of the registry are all of the kind's.
pub(crate) const ENDPOINTS: &dyn Strategy = &Common;
