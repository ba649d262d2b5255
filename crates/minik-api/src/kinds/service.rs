//! Services (v1): defaults and validation, what a replacement carries over from the stored
//! Service (its allocated ClusterIPs and node ports), the allocation of those addresses,
//! which the API server carries out over the stored Services, and what a Service is charged
//! against quotas (`services`, `services.nodeports`, `services.loadbalancers`).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::Metadata;
use serde_json::Value;

use super::{Admission, Kind, Strategy};
use crate::error::ErrorList;
use crate::quantity::{Quantity, ResourceList};
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

    fn quota_object_count(&self) -> Option<&'static str> {
        Some("services")
    }

    fn quota_usage(&self, service: &Value, _now: i64) -> Option<ResourceList> {
        let mut usage = ResourceList::new();
        let ports = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        match service.pointer("/spec/type").and_then(Value::as_str) {
            Some("NodePort") => {
                usage.insert(
                    "services.nodeports".into(),
                    Quantity::from_value(ports.len() as i64),
                );
            }
            Some("LoadBalancer") => {
                usage.insert("services.loadbalancers".into(), Quantity::from_value(1));
                let allocate = service
                    .pointer("/spec/allocateLoadBalancerNodePorts")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let node_ports = if allocate {
                    ports.len()
                } else {
                    ports.iter().filter(|p| p.get("nodePort").is_some()).count()
                };
                usage.insert(
                    "services.nodeports".into(),
                    Quantity::from_value(node_ports as i64),
                );
            }
            _ => {}
        }
        Some(usage)
    }

    fn quota_resource(&self, name: &str) -> bool {
        name.starts_with("services.")
    }
}
