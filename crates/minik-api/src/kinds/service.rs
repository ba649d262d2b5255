//! Services (v1): defaults and validation, what a replacement carries over from the stored
//! Service (its allocated ClusterIPs and node ports), the allocation of those addresses,
//! which the API server carries out over the stored Services, and what a Service is charged
//! against quotas (`services`, `services.nodeports`, `services.loadbalancers`).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::Metadata;
use serde_json::{json, Value};

use super::{Admission, Kind, Strategy};
use crate::error::ErrorList;
use crate::printers::{
    age_cell, col, labels_string, name_cell, or_none, s, service_external_ip, service_ports, wide,
    Column, Table, AGE, NAME,
};
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
    fn table(&self) -> &Table {
        &TABLE
    }

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

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Type", "type determines how the Service is exposed."),
    col("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "The list of ports that are exposed by this service."),
    AGE,
    wide(col("Selector", "Route service traffic to pods with label keys and values matching this selector.")),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(s(obj, "/spec/type")),
        json!(or_none(s(obj, "/spec/clusterIP"))),
        json!(service_external_ip(obj)),
        json!(or_none(&service_ports(obj))),
        age_cell(obj, now),
        json!(or_none(&labels_string(obj.pointer("/spec/selector")))),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
