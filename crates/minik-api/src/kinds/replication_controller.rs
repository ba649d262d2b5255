//! ReplicationControllers (v1): defaults and validation; their `Scale` selector is written
//! from the map form of `spec.selector`.

use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::Value;

use super::{typed_rules, Strategy};
use crate::printers::Table;
use crate::{defaults, validation};

typed_rules!(
    ReplicationController,
    defaults::replication_controller,
    validation::replication_controller,
    validation::replication_controller_update
);

#[derive(Debug)]
struct ReplicationControllers;

pub(crate) const REPLICATION_CONTROLLERS: &dyn Strategy = &ReplicationControllers;

impl Strategy for ReplicationControllers {
    fn table(&self) -> &Table {
        &super::replica_set::TABLE
    }

    fn quota_object_count(&self) -> Option<&'static str> {
        Some("replicationcontrollers")
    }

    fn scale_selector(&self, rc: &Value) -> Result<String, String> {
        Ok(rc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::REPLICA_SETS;
    use serde_json::json;

    #[test]
    fn scale_selectors_take_each_kinds_form() {
        let rc = json!({"spec": {"selector": {"app": "web", "tier": "front"}}});
        assert_eq!(
            REPLICATION_CONTROLLERS.scale_selector(&rc).unwrap(),
            "app=web,tier=front"
        );
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(REPLICA_SETS.scale_selector(&rs).unwrap(), "app=web");
        assert_eq!(REPLICA_SETS.scale_selector(&json!({})).unwrap(), "");
        let bad = json!({"spec": {"selector": {"matchLabels": 3}}});
        let err = REPLICA_SETS.scale_selector(&bad).unwrap_err();
        assert!(err.starts_with("stored selector is invalid: "), "{err}");
    }
}
