//! ReplicaSets (apps/v1): defaults and validation. Scalable with a `LabelSelector`, the common form.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::{typed_rules, Common, Strategy};
use crate::{defaults, validation};

typed_rules!(
    ReplicaSet,
    defaults::replica_set,
    validation::replica_set,
    validation::replica_set_update
);

/// The common rules of the registry are all of the kind's.
pub(crate) const REPLICA_SETS: &dyn Strategy = &Common;
