//! The defaults of DaemonSets, as Kubernetes' `SetDefaults_DaemonSet`.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Defaults a DaemonSet: a RollingUpdate strategy replacing one pod at a time without surge,
/// ten old revisions kept, and its template's pod spec.
pub fn daemon_set(object: &mut DaemonSet) {
    let spec = object.spec.get_or_insert_with(Default::default);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_owned());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit.get_or_insert(10);
    crate::defaults::pod_spec(spec.template.spec.get_or_insert_with(PodSpec::default));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_roll_one_pod_at_a_time() {
        let mut ds = DaemonSet::default();
        daemon_set(&mut ds);
        let spec = ds.spec.unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let ru = strategy.rolling_update.unwrap_or_default();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(spec.revision_history_limit, Some(10));
        let pod = spec.template.spec.unwrap_or_default();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn on_delete_gets_no_rolling_update_and_values_stay() {
        let mut ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "spec": {"updateStrategy": {"type": "OnDelete"}, "revisionHistoryLimit": 2,
                     "selector": {}, "template": {}}
        }))
        .unwrap_or_default();
        daemon_set(&mut ds);
        let spec = ds.spec.unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
        assert!(strategy.rolling_update.is_none());
        assert_eq!(spec.revision_history_limit, Some(2));
    }
}
