//! ResourceQuotas (v1): defaults and validation; the API server counts a new quota's first
//! status and charges every create it concerns (`Admission::QuotaStatus`).

use k8s_openapi::api::core::v1::ResourceQuota;

use super::{typed_rules, Admission, Strategy};
use crate::{defaults, validation};

typed_rules!(
    ResourceQuota,
    defaults::resource_quota,
    validation::resource_quota,
    validation::resource_quota_update
);

#[derive(Debug)]
struct ResourceQuotas;

pub(crate) const RESOURCE_QUOTAS: &dyn Strategy = &ResourceQuotas;

impl Strategy for ResourceQuotas {
    fn quota_object_count(&self) -> Option<&'static str> {
        Some("resourcequotas")
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::QuotaStatus]
    }
}
