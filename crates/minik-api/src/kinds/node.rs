//! Nodes (v1): defaults and validation; a Node keeps the status it is created with, which its
//! agent reports on registration.

use k8s_openapi::api::core::v1::Node;

use super::{typed_rules, Strategy};
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
    fn keeps_status_on_create(&self) -> bool {
        true
    }
}
