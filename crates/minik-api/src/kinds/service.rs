//! Services (v1): defaults and validation, what a replacement carries over from the stored
//! Service (its allocated ClusterIPs and node ports), and the allocation of those addresses,
//! which the API server carries out over the stored Services.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::Metadata;

use super::{Admission, Kind, Strategy};
use crate::error::ErrorList;
use crate::{defaults, validation};

impl Kind for Service {
    fn set_defaults(&mut self) {
        defaults::service(self)
    }
    fn carry_over(&mut self, old: &Self) {
        defaults::object_meta_update(self.metadata_mut(), old.metadata());
        defaults::service_update(self, old);
    }
    fn validate(&self) -> ErrorList {
        validation::service(self)
    }
    fn validate_update(&self, old: &Self) -> ErrorList {
        validation::service_update(self, old)
    }
}

#[derive(Debug)]
struct Services;

pub(crate) const SERVICES: &dyn Strategy = &Services;

impl Strategy for Services {
    fn admission(&self) -> &'static [Admission] {
        &[Admission::AllocateServiceAddresses]
    }
}
