//! The defaults of StatefulSets, as Kubernetes' `SetDefaults_StatefulSet` and the generated
//! defaulters of its pod template and claim templates.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PodSpec;

/// Defaults a StatefulSet: pod management `OrderedReady`; update strategy `RollingUpdate` with
/// partition 0 (`maxUnavailable` stays unset: one at a time); claims retained when the set is
/// deleted or scaled down; one replica; ten old revisions kept; and its pod template and claim
/// templates as Pods and PersistentVolumeClaims are defaulted (a claim template's volume mode
/// `Filesystem`, phase `Pending`).
pub fn stateful_set(object: &mut StatefulSet) {
    let spec = object.spec.get_or_insert_with(Default::default);
    fill(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_owned());
        strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        if let Some(rolling) = strategy.rolling_update.as_mut() {
            rolling.partition.get_or_insert(0);
        }
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    fill(&mut retention.when_deleted, "Retain");
    fill(&mut retention.when_scaled, "Retain");
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    crate::defaults::pod_spec(spec.template.spec.get_or_insert_with(PodSpec::default));
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        crate::defaults::persistent_volume_claim(claim);
    }
}

/// Sets an unset or empty string.
fn fill(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaulted(value: serde_json::Value) -> serde_json::Value {
        let mut sts: StatefulSet = serde_json::from_value(value).unwrap();
        stateful_set(&mut sts);
        let once = serde_json::to_value(&sts).unwrap();
        stateful_set(&mut sts);
        assert_eq!(serde_json::to_value(&sts).unwrap(), once, "idempotent");
        once
    }

    #[test]
    fn an_empty_spec_gets_kubernetes_defaults() {
        let out = defaulted(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "serviceName": "nginx",
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        }));
        let spec = &out["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert!(spec.get("minReadySeconds").is_none());
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let claim = &spec["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"]["phase"], "Pending");
    }

    #[test]
    fn set_values_stay() {
        let out = defaulted(json!({
            "spec": {
                "selector": {},
                "template": {},
                "podManagementPolicy": "Parallel",
                "replicas": 0,
                "updateStrategy": {"type": "OnDelete"},
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"},
            },
        }));
        let spec = &out["spec"];
        assert_eq!(spec["podManagementPolicy"], "Parallel");
        assert_eq!(spec["replicas"], 0);
        assert_eq!(spec["updateStrategy"], json!({"type": "OnDelete"}));
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Delete"})
        );
        let rolling = defaulted(json!({"spec": {"selector": {}, "template": {},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}}));
        assert_eq!(
            rolling["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            2
        );
    }
}
