//! ResourceQuotas (v1): defaults and validation; the API server counts a new quota's first
//! status and charges every create it concerns (`Admission::QuotaStatus`).

use k8s_openapi::api::core::v1::ResourceQuota;

use serde_json::Value;

use super::{legacy_quota_count, typed_rules, Admission, Strategy};
use crate::quantity::ResourceList;
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
    fn quota_usage(&self, _object: &Value, _now: i64) -> Option<ResourceList> {
        Some(legacy_quota_count("resourcequotas"))
    }

    fn quota_resource(&self, name: &str) -> bool {
        name == "resourcequotas"
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::QuotaStatus]
    }
}
