//! The defaults of Jobs: Kubernetes' `SetDefaults_Job`, and the selector and pod labels the Job
//! registry generates on create (`generateSelector` of `pkg/registry/batch/job/strategy.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The label of a Job's pods and generated selector naming the Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label of a Job's pods naming the Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The unprefixed forms of the two labels, which Kubernetes still adds.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The unprefixed job name label.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Defaults a Job: one pod at a time and one completion when neither is set, a backoff limit
/// of 6, `NonIndexed` completions, not suspended, pod conditions of the failure policy `True`,
/// the pod replacement policy, its pod template's defaults, and — unless `manualSelector` is
/// set — a selector on the Job's uid with the matching template labels. The Job's own labels
/// default to its template's.
pub fn job(object: &mut Job) {
    let name = object.metadata.name.clone().unwrap_or_default();
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let spec = object.spec.get_or_insert_with(Default::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    if spec.completion_mode.as_deref().is_none_or(str::is_empty) {
        spec.completion_mode = Some("NonIndexed".to_owned());
    }
    spec.suspend.get_or_insert(false);
    if let Some(policy) = spec.pod_failure_policy.as_mut() {
        for rule in policy.rules.iter_mut() {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.is_empty() {
                    pattern.status = "True".to_owned();
                }
            }
        }
    }
    if spec
        .pod_replacement_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        spec.pod_replacement_policy = Some(
            if spec.pod_failure_policy.is_some() {
                "Failed"
            } else {
                "TerminatingOrFailed"
            }
            .to_owned(),
        );
    }
    crate::defaults::pod_spec(spec.template.spec.get_or_insert_with(Default::default));
    if spec.manual_selector != Some(true) {
        let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
        let labels = template_meta.labels.get_or_insert_with(BTreeMap::new);
        for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels.entry(key.to_owned()).or_insert_with(|| name.clone());
        }
        for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(key.to_owned()).or_insert_with(|| uid.clone());
        }
        let selector = spec.selector.get_or_insert_with(LabelSelector::default);
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .entry(CONTROLLER_UID_LABEL.to_owned())
            .or_insert_with(|| uid.clone());
    }
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if object
            .metadata
            .labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
        {
            object.metadata.labels = Some(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decoded(v: serde_json::Value) -> Job {
        serde_json::from_value(v).expect("a valid Job")
    }

    #[test]
    fn a_plain_job_gets_kubernetes_defaults_and_a_generated_selector() {
        let mut j = decoded(json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl"}]}}}
        }));
        job(&mut j);
        let v = serde_json::to_value(&j).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = json!({
            "batch.kubernetes.io/controller-uid": "u-1",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1",
            "job-name": "pi",
        });
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(v["metadata"]["labels"], labels);
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn parallelism_alone_leaves_completions_unset() {
        let mut j = decoded(json!({"metadata": {"name": "w", "uid": "u"},
            "spec": {"parallelism": 3, "template": {}}}));
        job(&mut j);
        let spec = j.spec.unwrap();
        assert_eq!(spec.completions, None);
        assert_eq!(spec.parallelism, Some(3));
        let mut j = decoded(json!({"metadata": {"name": "w", "uid": "u"},
            "spec": {"completions": 5, "template": {}}}));
        job(&mut j);
        let spec = j.spec.unwrap();
        assert_eq!(spec.completions, Some(5));
        assert_eq!(spec.parallelism, Some(1));
    }

    #[test]
    fn failure_policies_default_the_replacement_policy_and_condition_status() {
        let mut j = decoded(json!({"metadata": {"name": "w", "uid": "u"},
            "spec": {"backoffLimitPerIndex": 1, "completionMode": "Indexed", "completions": 2,
                "podFailurePolicy": {"rules": [{"action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": ""}]}]},
                "template": {}}}));
        job(&mut j);
        let spec = j.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(i32::MAX));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        let rules = spec.pod_failure_policy.unwrap().rules;
        assert_eq!(
            rules[0].on_pod_conditions.as_ref().unwrap()[0].status,
            "True"
        );
    }

    #[test]
    fn a_manual_selector_is_left_alone() {
        let mut j = decoded(
            json!({"metadata": {"name": "w", "uid": "u", "labels": {"a": "b"}},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "w"}},
                "template": {"metadata": {"labels": {"app": "w"}}}}}),
        );
        job(&mut j);
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["spec"]["selector"], json!({"matchLabels": {"app": "w"}}));
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"],
            json!({"app": "w"})
        );
        assert_eq!(v["metadata"]["labels"], json!({"a": "b"}));
    }
}
