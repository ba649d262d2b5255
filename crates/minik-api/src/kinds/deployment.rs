//! Deployments (apps/v1): defaults and validation; the Deployment controller does the rest. Scalable with a `LabelSelector`, the common form.

use k8s_openapi::api::apps::v1::Deployment;

use super::{typed_rules, Common, Strategy};
use crate::{defaults, validation};

typed_rules!(
    Deployment,
    defaults::deployment,
    validation::deployment,
    validation::deployment_update
);

/// The common rules of the registry are all of the kind's.
pub(crate) const DEPLOYMENTS: &dyn Strategy = &Common;
