//! Leases (coordination.k8s.io/v1): defaults and validation; nodes renew theirs in `kube-node-lease`.

use k8s_openapi::api::coordination::v1::Lease;

use super::{typed_rules, Common, Strategy};
use crate::{defaults, validation};

typed_rules!(
    Lease,
    defaults::lease,
    validation::lease,
    validation::lease_update
);

/// The common rules of the registry are all of the kind's.
pub(crate) const LEASES: &dyn Strategy = &Common;
