//! Validation of Jobs, as Kubernetes' `pkg/apis/batch/validation` does it: counts that cannot be
//! negative, a selector that matches the pod template (and is the generated one unless
//! `manualSelector`), pods that restart `OnFailure` or `Never`, the pod failure policy's rules,
//! and on update the fields a Job cannot change.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::common::{invalid_each, json, nonnegative, s, IMMUTABLE};
use super::meta::{object_meta, object_meta_update};
use super::pod::{selects_template, workload_template, TemplateOwner};
use crate::error::{ErrorList, FieldError, FieldErrorKind, FieldPath};
use crate::names;
use crate::selector::{self, Selector};

/// The most pods an Indexed Job may run at once.
const MAX_PARALLELISM_INDEXED: i32 = 100_000;
/// The most completions of an Indexed Job with a backoff limit per index.
const MAX_COMPLETIONS_PER_INDEX: i32 = 100_000;
/// The most failed indexes `maxFailedIndexes` may allow.
const MAX_FAILED_INDEXES: i32 = 100_000;
/// The label of the selector the API generates for a Job.
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const MAX_CONDITION_PATTERNS: usize = 20;

const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
const OPERATORS: &[&str] = &["In", "NotIn"];
const CONDITION_STATUSES: &[&str] = &["False", "True", "Unknown"];

/// Validates a new Job.
pub fn job(object: &Job) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta(&object.metadata, true, names::dns1123_subdomain, &meta_path);
    let spec = object.spec.clone().unwrap_or_default();
    errs.extend(generated_selector(object, &spec));
    errs.extend(job_spec(&spec, &FieldPath::new("spec")));
    errs.extend(not_honoured(&spec, &FieldPath::new("spec")));
    if spec.completion_mode.as_deref() == Some("Indexed") {
        if let Some(completions) = spec.completions.filter(|c| *c > 0) {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            let hostname = format!("{name}-{}", completions - 1);
            if !names::dns1123_label(&hostname).is_empty() {
                errs.push(FieldError::invalid(
                    &meta_path.child("name"),
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
    errs
}

/// Validates a replacement of a Job: as on create, and the selector, completion mode, failure
/// policy and per-index backoff limit never change; completions only in tandem with parallelism
/// of an Indexed Job; the template only in its scheduling directives while the Job is suspended
/// and has never started.
pub fn job_update(new: &Job, old: &Job) -> ErrorList {
    let meta_path = FieldPath::new("metadata");
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &meta_path);
    errs.extend(
        job(new)
            .into_iter()
            .filter(|e| !e.field.as_str().starts_with("metadata.")),
    );
    let spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    let path = FieldPath::new("spec");
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if spec.completions != old_spec.completions {
        let completions_path = path.child("completions");
        if !indexed {
            errs.push(immutable(&completions_path, &spec.completions));
        } else if let Some(c) = spec.completions {
            if Some(c) != spec.parallelism {
                errs.push(FieldError::invalid(
                    &completions_path,
                    c,
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        }
    }
    if spec.selector != old_spec.selector {
        errs.push(immutable(&path.child("selector"), &spec.selector));
    }
    let never_started = old.status.as_ref().is_none_or(|s| s.start_time.is_none());
    let mutable_scheduling = old_spec.suspend == Some(true) && never_started;
    if !same_template(&spec.template, &old_spec.template, mutable_scheduling) {
        errs.push(immutable(&path.child("template"), &spec.template));
    }
    if spec.completion_mode != old_spec.completion_mode {
        errs.push(immutable(
            &path.child("completionMode"),
            &spec.completion_mode,
        ));
    }
    if spec.pod_failure_policy != old_spec.pod_failure_policy {
        errs.push(immutable(
            &path.child("podFailurePolicy"),
            &spec.pod_failure_policy,
        ));
    }
    if spec.backoff_limit_per_index != old_spec.backoff_limit_per_index {
        errs.push(immutable(
            &path.child("backoffLimitPerIndex"),
            &spec.backoff_limit_per_index,
        ));
    }
    if spec.managed_by != old_spec.managed_by {
        errs.push(immutable(&path.child("managedBy"), &spec.managed_by));
    }
    if spec.success_policy != old_spec.success_policy {
        errs.push(immutable(
            &path.child("successPolicy"),
            &spec.success_policy,
        ));
    }
    errs
}

fn immutable<T: serde::Serialize>(path: &FieldPath, value: &T) -> FieldError {
    FieldError::invalid(path, json(value), IMMUTABLE)
}

/// Whether a template is unchanged; with `mutable_scheduling`, changes of its labels,
/// annotations, node selector, tolerations, scheduling gates and affinity are allowed.
fn same_template(new: &PodTemplateSpec, old: &PodTemplateSpec, mutable_scheduling: bool) -> bool {
    if !mutable_scheduling {
        return new == old;
    }
    let mut old = old.clone();
    let new_meta = new.metadata.clone().unwrap_or_default();
    let meta = old.metadata.get_or_insert_with(Default::default);
    meta.labels = new_meta.labels;
    meta.annotations = new_meta.annotations;
    if let (Some(old_spec), Some(new_spec)) = (old.spec.as_mut(), new.spec.as_ref()) {
        old_spec.node_selector.clone_from(&new_spec.node_selector);
        old_spec.tolerations.clone_from(&new_spec.tolerations);
        old_spec
            .scheduling_gates
            .clone_from(&new_spec.scheduling_gates);
        old_spec.affinity.clone_from(&new_spec.affinity);
    }
    // An empty metadata and none are the same template.
    let normal = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if t.metadata
            .as_ref()
            .is_some_and(|m| *m == Default::default())
        {
            t.metadata = None;
        }
        t
    };
    normal(new) == normal(&old)
}

/// Kubernetes' `validateGeneratedSelector`: without `manualSelector`, the selector must be the
/// one generated from the Job's uid.
fn generated_selector(object: &Job, spec: &JobSpec) -> ErrorList {
    let mut errs = ErrorList::new();
    if spec.manual_selector == Some(true) {
        return errs;
    }
    let uid = object.metadata.uid.as_deref().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required(
            &FieldPath::new("metadata").child("uid"),
            "",
        ));
    }
    let Some(sel) = spec.selector.as_ref() else {
        return errs;
    };
    let Ok(parsed) = Selector::from_label_selector(sel) else {
        return errs;
    };
    let labels = [(CONTROLLER_UID_LABEL.to_owned(), uid.to_owned())].into();
    if !parsed.matches(&labels) {
        errs.push(FieldError::invalid(
            &FieldPath::new("spec").child("selector"),
            json(sel),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// What minik's Job controller does not act on is refused rather than stored and ignored:
/// `successPolicy`, the per-index back-off (`backoffLimitPerIndex`, `maxFailedIndexes`, the
/// `FailIndex` action) and `managedBy` (an external controller).
fn not_honoured(spec: &JobSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let refuse = |errs: &mut ErrorList, field: &str, what: &str| {
        errs.push(FieldError::forbidden(
            &path.child(field),
            format!("{what} is not supported by minik's Job controller"),
        ))
    };
    if spec.success_policy.is_some() {
        refuse(&mut errs, "successPolicy", "a success policy");
    }
    if spec.backoff_limit_per_index.is_some() {
        refuse(
            &mut errs,
            "backoffLimitPerIndex",
            "a back-off limit per index",
        );
    }
    if spec.max_failed_indexes.is_some() {
        refuse(&mut errs, "maxFailedIndexes", "a limit of failed indexes");
    }
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        refuse(
            &mut errs,
            "managedBy",
            "a Job managed by another controller",
        );
    }
    let fail_index = spec
        .pod_failure_policy
        .iter()
        .flat_map(|p| p.rules.iter())
        .position(|r| r.action == "FailIndex");
    if let Some(i) = fail_index {
        errs.push(FieldError::forbidden(
            &path
                .child("podFailurePolicy")
                .child("rules")
                .index(i)
                .child("action"),
            "the FailIndex action is not supported by minik's Job controller",
        ));
    }
    errs
}

fn job_spec(spec: &JobSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    for (value, name) in [
        (spec.parallelism.map(i64::from), "parallelism"),
        (spec.completions.map(i64::from), "completions"),
        (spec.active_deadline_seconds, "activeDeadlineSeconds"),
        (spec.backoff_limit.map(i64::from), "backoffLimit"),
        (
            spec.ttl_seconds_after_finished.map(i64::from),
            "ttlSecondsAfterFinished",
        ),
    ] {
        if let Some(v) = value {
            nonnegative(&mut errs, v, &path.child(name));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(per_index) = spec.backoff_limit_per_index {
        let p = path.child("backoffLimitPerIndex");
        nonnegative(&mut errs, per_index.into(), &p);
        if !indexed {
            errs.push(FieldError::forbidden(
                &p,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(max_failed) = spec.max_failed_indexes {
        let p = path.child("maxFailedIndexes");
        nonnegative(&mut errs, max_failed.into(), &p);
        if spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::required(
                &path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
        if spec.completions.is_some_and(|c| max_failed > c) {
            errs.push(FieldError::invalid(
                &p,
                max_failed,
                "must be less than or equal to completions",
            ));
        }
        if max_failed > MAX_FAILED_INDEXES {
            errs.push(FieldError::invalid(
                &p,
                max_failed,
                format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
            ));
        }
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                &path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    &path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec.parallelism.filter(|p| *p > MAX_PARALLELISM_INDEXED) {
                errs.push(FieldError::invalid(
                    &path.child("parallelism"),
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
            if let (Some(c), Some(_)) = (spec.completions, spec.backoff_limit_per_index) {
                if c > MAX_COMPLETIONS_PER_INDEX {
                    errs.push(FieldError::invalid(
                        &path.child("completions"),
                        c,
                        format!("must be less than or equal to {MAX_COMPLETIONS_PER_INDEX} when completion mode is Indexed"),
                    ));
                }
            }
        }
    }
    if let Some(policy) = spec.pod_failure_policy.as_ref() {
        errs.extend(pod_failure_policy(
            spec,
            policy,
            &path.child("podFailurePolicy"),
        ));
    }
    if let Some(replacement) = spec.pod_replacement_policy.as_deref() {
        let p = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if replacement != "Failed" {
                errs.push(FieldError::not_supported(&p, replacement, &["Failed"]));
            }
        } else if replacement != "Failed" && replacement != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                &p,
                replacement,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    errs.extend(selector_and_template(spec, path));
    errs
}

/// The selector (required, valid, matching the template's labels) and the pod template, whose
/// pods must restart `OnFailure` or `Never`.
fn selector_and_template(spec: &JobSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let sel_path = path.child("selector");
    let mut selector_matches = None;
    match spec.selector.as_ref() {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            errs.extend(selector::validate_label_selector(sel, &sel_path));
            if let Ok(parsed) = Selector::from_label_selector(sel) {
                selector_matches = Some(selects_template(&parsed, &spec.template));
            }
        }
    }
    let template_path = path.child("template");
    let restart_path = template_path.child("spec").child("restartPolicy");
    let deadline_path = template_path.child("spec").child("activeDeadlineSeconds");
    let owner = TemplateOwner {
        kind: "Job",
        selector_matches,
    };
    // The template rules of ReplicaSets, less the two that do not hold for Jobs: their pods
    // do not restart always, and may have a deadline.
    errs.extend(
        workload_template(&spec.template, &owner, &template_path)
            .into_iter()
            .filter(|e| {
                let replica_restart = e.field == restart_path
                    && matches!(&e.kind, FieldErrorKind::NotSupported { supported, .. } if supported.len() == 1);
                let replica_deadline =
                    e.field == deadline_path && matches!(e.kind, FieldErrorKind::Forbidden { .. });
                !replica_restart && !replica_deadline
            }),
    );
    let restart = spec
        .template
        .spec
        .as_ref()
        .map(|p| s(&p.restart_policy))
        .unwrap_or_default();
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            &restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" if spec.pod_failure_policy.is_some() => {
            errs.push(FieldError::invalid(
                &restart_path,
                restart,
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
        // `Never` is right; the pod spec's own check already says which other values exist.
        _ => {}
    }
    errs
}

fn pod_failure_policy(spec: &JobSpec, policy: &PodFailurePolicy, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let rules_path = path.child("rules");
    if policy.rules.len() > MAX_RULES {
        errs.push(too_many(&rules_path, policy.rules.len(), MAX_RULES));
    }
    let pod = spec.template.spec.clone().unwrap_or_default();
    let containers: BTreeSet<&str> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        errs.extend(failure_rule(spec, rule, &rules_path.index(i), &containers));
    }
    errs
}

/// Kubernetes' `field.TooMany`.
fn too_many(path: &FieldPath, actual: usize, max: usize) -> FieldError {
    FieldError::invalid(path, actual, format!("must have at most {max} items"))
}

fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn failure_rule(
    spec: &JobSpec,
    rule: &PodFailurePolicyRule,
    path: &FieldPath,
    containers: &BTreeSet<&str>,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let action_path = path.child("action");
    match rule.action.as_str() {
        "" => errs.push(FieldError::required(
            &action_path,
            format!("valid values: {}", quoted_list(ACTIONS)),
        )),
        "FailIndex" if spec.backoff_limit_per_index.is_none() => {
            errs.push(FieldError::invalid(
                &action_path,
                "FailIndex",
                "requires the backoffLimitPerIndex to be set",
            ));
        }
        a if !ACTIONS.contains(&a) => {
            errs.push(FieldError::not_supported(&action_path, a, ACTIONS));
        }
        _ => {}
    }
    let conditions = rule.on_pod_conditions.as_deref().unwrap_or_default();
    if let Some(codes) = rule.on_exit_codes.as_ref() {
        errs.extend(on_exit_codes(codes, &path.child("onExitCodes"), containers));
    }
    if !conditions.is_empty() {
        errs.extend(on_pod_conditions(
            conditions,
            &path.child("onPodConditions"),
        ));
    }
    // Kubernetes omits the value from these two messages; minik's errors always show one.
    if rule.on_exit_codes.is_some() && !conditions.is_empty() {
        errs.push(FieldError::invalid(
            path,
            serde_json::Value::Null,
            "specifying both OnExitCodes and OnPodConditions is not supported",
        ));
    }
    if rule.on_exit_codes.is_none() && conditions.is_empty() {
        errs.push(FieldError::invalid(
            path,
            serde_json::Value::Null,
            "specifying one of OnExitCodes and OnPodConditions is required",
        ));
    }
    errs
}

fn on_exit_codes(
    codes: &PodFailurePolicyOnExitCodesRequirement,
    path: &FieldPath,
    containers: &BTreeSet<&str>,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let operator_path = path.child("operator");
    match codes.operator.as_str() {
        "" => errs.push(FieldError::required(
            &operator_path,
            format!("valid values: {}", quoted_list(OPERATORS)),
        )),
        op if !OPERATORS.contains(&op) => {
            errs.push(FieldError::not_supported(&operator_path, op, OPERATORS))
        }
        _ => {}
    }
    if let Some(name) = codes.container_name.as_deref() {
        if !containers.contains(name) {
            errs.push(FieldError::invalid(
                &path.child("containerName"),
                name,
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let values_path = path.child("values");
    if codes.values.is_empty() {
        errs.push(FieldError::invalid(
            &values_path,
            json(&codes.values),
            "at least one value is required",
        ));
    } else if codes.values.len() > MAX_EXIT_CODES {
        errs.push(too_many(&values_path, codes.values.len(), MAX_EXIT_CODES));
    } else {
        let mut seen = BTreeSet::new();
        let mut ordered = true;
        for (j, value) in codes.values.iter().enumerate() {
            let value_path = values_path.index(j);
            if codes.operator == "In" && *value == 0 {
                errs.push(FieldError::invalid(
                    &value_path,
                    *value,
                    "must not be 0 for the In operator",
                ));
            }
            if !seen.insert(*value) {
                errs.push(FieldError::duplicate(&value_path, *value));
            }
            if j > 0 && codes.values[j - 1] > *value {
                ordered = false;
            }
        }
        if !ordered {
            errs.push(FieldError::invalid(
                &values_path,
                json(&codes.values),
                "must be ordered",
            ));
        }
    }
    errs
}

fn on_pod_conditions(
    patterns: &[PodFailurePolicyOnPodConditionsPattern],
    path: &FieldPath,
) -> ErrorList {
    let mut errs = ErrorList::new();
    if patterns.len() > MAX_CONDITION_PATTERNS {
        errs.push(too_many(path, patterns.len(), MAX_CONDITION_PATTERNS));
        return errs;
    }
    for (j, pattern) in patterns.iter().enumerate() {
        let pattern_path = path.index(j);
        let type_path = pattern_path.child("type");
        invalid_each(
            &mut errs,
            &type_path,
            &pattern.type_,
            names::qualified_name(&pattern.type_),
        );
        let status_path = pattern_path.child("status");
        match pattern.status.as_str() {
            "" => errs.push(FieldError::required(
                &status_path,
                format!("valid values: {}", quoted_list(CONDITION_STATUSES)),
            )),
            st if !CONDITION_STATUSES.contains(&st) => errs.push(FieldError::not_supported(
                &status_path,
                st,
                CONDITION_STATUSES,
            )),
            _ => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A Job as the API would have defaulted it.
    fn admitted(v: Value) -> Job {
        let mut j: Job = serde_json::from_value(v).expect("a Job");
        crate::defaults::job(&mut j);
        j
    }

    fn pi(restart: &str) -> Value {
        json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": restart,
                "containers": [{"name": "pi", "image": "perl"}]}}}
        })
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_defaulted_job_is_valid() {
        assert!(job(&admitted(pi("Never"))).is_empty());
        assert!(job(&admitted(pi("OnFailure"))).is_empty());
    }

    #[test]
    fn pods_that_restart_always_are_refused_with_kubernetes_message() {
        assert_eq!(
            messages(&job(&admitted(pi("Always")))),
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let mut unset = pi("Never");
        unset["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        assert_eq!(
            messages(&job(&admitted(unset))),
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
    }

    #[test]
    fn negative_counts_are_refused() {
        let mut v = pi("Never");
        v["spec"]["parallelism"] = json!(-1);
        v["spec"]["completions"] = json!(-2);
        v["spec"]["backoffLimit"] = json!(-3);
        v["spec"]["activeDeadlineSeconds"] = json!(-4);
        v["spec"]["ttlSecondsAfterFinished"] = json!(-5);
        assert_eq!(
            messages(&job(&admitted(v))),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Invalid value: -2: must be greater than or equal to 0",
                "spec.activeDeadlineSeconds: Invalid value: -4: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
                "spec.ttlSecondsAfterFinished: Invalid value: -5: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn selectors_must_be_generated_and_match_the_template() {
        let mut v = pi("Never");
        v["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        let m = messages(&job(&admitted(v)));
        assert!(
            m.contains(&"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"x\",\"batch.kubernetes.io/controller-uid\":\"u-1\"}}: `selector` not auto-generated".to_owned())
                || m.iter().any(|e| e.ends_with("`selector` does not match template `labels`")),
            "{m:?}"
        );
        let mut manual = pi("Never");
        manual["spec"]["manualSelector"] = json!(true);
        manual["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        manual["spec"]["template"]["metadata"] = json!({"labels": {"app": "y"}});
        assert_eq!(
            messages(&job(&admitted(manual))),
            vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"y\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn indexed_jobs_need_completions_and_per_index_limits_need_indexed() {
        let mut v = pi("Never");
        v["spec"]["completionMode"] = json!("Indexed");
        v["spec"]["parallelism"] = json!(2);
        v["spec"]["backoffLimitPerIndex"] = json!(1);
        assert_eq!(
            messages(&job(&admitted(v))),
            vec![
                "spec.completions: Required value: when completion mode is Indexed",
                "spec.backoffLimitPerIndex: Forbidden: a back-off limit per index is not supported by minik's Job controller"
            ]
        );
        let mut v = pi("Never");
        v["spec"]["backoffLimitPerIndex"] = json!(1);
        assert_eq!(
            messages(&job(&admitted(v))),
            vec![
                "spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode",
                "spec.backoffLimitPerIndex: Forbidden: a back-off limit per index is not supported by minik's Job controller"
            ]
        );
        let mut v = pi("Never");
        v["spec"]["completionMode"] = json!("Sometimes");
        assert_eq!(
            messages(&job(&admitted(v))),
            vec!["spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""]
        );
    }

    #[test]
    fn pod_failure_policy_rules_are_checked() {
        let mut v = pi("OnFailure");
        v["spec"]["podFailurePolicy"] = json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 3, 2, 3], "containerName": "nope"}},
            {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]},
            {"action": "", "onExitCodes": {"operator": "", "values": []}},
            {"action": "Ignore"},
            {"action": "FailIndex", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]});
        let got = messages(&job(&admitted(v)));
        let want = [
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"nope\": must be one of the container or initContainer names in the pod template",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[3]: Duplicate value: 3",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2,3]: must be ordered",
            "spec.podFailurePolicy.rules[1].action: Unsupported value: \"Explode\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            "spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"",
            "spec.podFailurePolicy.rules[2].action: Required value: valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            "spec.podFailurePolicy.rules[2].onExitCodes.operator: Required value: valid values: [\"In\" \"NotIn\"]",
            "spec.podFailurePolicy.rules[2].onExitCodes.values: Invalid value: []: at least one value is required",
            "spec.podFailurePolicy.rules[3]: Invalid value: null: specifying one of OnExitCodes and OnPodConditions is required",
            "spec.podFailurePolicy.rules[4].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
            "spec.podFailurePolicy.rules[4].action: Forbidden: the FailIndex action is not supported by minik's Job controller",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn updates_keep_selector_template_and_completions() {
        let old = admitted(pi("Never"));
        let mut new = old.clone();
        let spec = new.spec.as_mut().unwrap();
        spec.completions = Some(3);
        spec.completion_mode = Some("Indexed".into());
        spec.template.spec.as_mut().unwrap().containers[0].image = Some("perl:2".into());
        let got = messages(&job_update(&new, &old));
        assert!(
            got.iter()
                .any(|m| m.starts_with("spec.template: Invalid value: ")
                    && m.ends_with(": field is immutable")),
            "{got:?}"
        );
        assert!(
            got.contains(
                &"spec.completionMode: Invalid value: \"Indexed\": field is immutable".to_owned()
            ),
            "{got:?}"
        );
        assert!(got.contains(&"spec.completions: Invalid value: 3: can only be modified in tandem with spec.parallelism".to_owned()), "{got:?}");

        // Parallelism and suspend may change; a suspended Job that never ran may move.
        let mut suspended = pi("Never");
        suspended["spec"]["suspend"] = json!(true);
        let old = admitted(suspended);
        let mut new = old.clone();
        let spec = new.spec.as_mut().unwrap();
        spec.parallelism = Some(4);
        spec.suspend = Some(false);
        spec.template.spec.as_mut().unwrap().node_selector =
            Some([("zone".to_owned(), "a".to_owned())].into());
        assert_eq!(messages(&job_update(&new, &old)), Vec::<String>::new());
        let mut non_indexed = old.clone();
        non_indexed.spec.as_mut().unwrap().completions = Some(2);
        assert_eq!(
            messages(&job_update(&non_indexed, &old)),
            vec!["spec.completions: Invalid value: 2: field is immutable"]
        );
    }

    #[test]
    fn indexed_pod_hostnames_must_be_dns_labels() {
        let mut v = pi("Never");
        let long = "a".repeat(62);
        v["metadata"]["name"] = json!(long);
        v["spec"]["completionMode"] = json!("Indexed");
        v["spec"]["completions"] = json!(10);
        v["spec"]["parallelism"] = json!(1);
        let got = messages(&job(&admitted(v)));
        assert!(
            got.iter()
                .any(|m| m.contains("will not able to create pod with invalid DNS label")),
            "{got:?}"
        );
    }
}
