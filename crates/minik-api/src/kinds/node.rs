//! Nodes (v1): defaults and validation; a Node keeps the status it is created with, which its
//! agent reports on registration.

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::{typed_rules, Strategy};
use crate::printers::{
    age_cell, col, name_cell, node_address, node_roles, node_status, or_none, s, wide, Column,
    Table, AGE, NAME,
};
use crate::{defaults, validation};

typed_rules!(
    Node,
    defaults::node,
    validation::node,
    validation::node_update
);

#[derive(Debug)]
struct Nodes;

pub(crate) const NODES: &dyn Strategy = &Nodes;

impl Strategy for Nodes {
    fn table(&self) -> &Table {
        &TABLE
    }

    fn keeps_status_on_create(&self) -> bool {
        true
    }
}

/// The kind's table, as Kubernetes' printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE,
    col("Version", "Kubelet Version reported by the node."),
    wide(col("Internal-IP", "List of addresses reachable to the node.")),
    wide(col("External-IP", "List of addresses reachable to the node.")),
    wide(col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).")),
    wide(col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).")),
    wide(col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).")),
];

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(node_status(obj)),
        json!(node_roles(obj)),
        age_cell(obj, now),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(or_none(node_address(obj, "InternalIP"))),
        json!(or_none(node_address(obj, "ExternalIP"))),
        json!(or_none(s(obj, "/status/nodeInfo/osImage"))),
        json!(or_none(s(obj, "/status/nodeInfo/kernelVersion"))),
        json!(or_none(s(obj, "/status/nodeInfo/containerRuntimeVersion"))),
    ]
}

const TABLE: Table = Table::new(COLUMNS, cells);
