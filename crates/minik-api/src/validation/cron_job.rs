//! Validation of CronJobs, as Kubernetes' `ValidateCronJobCreate` / `ValidateCronJobUpdate`: a
//! schedule robfig/cron's standard parser reads ([`crate::cron`]), a known time zone, the
//! concurrency policy, history limits, and the job template as a Job's (a pod template whose
//! pods run to completion, `restartPolicy` `OnFailure` or `Never`, no selector of its own).

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::PodSpec;

use super::common::{json, nonnegative, one_of, s};
use super::meta::{annotations_errors, object_meta, object_meta_update};
use super::pod::pod_spec;
use crate::cron;
use crate::error::{ErrorList, FieldError, FieldPath};
use crate::names;
use crate::selector;

/// The longest CronJob name: its Jobs are named `<name>-<minutes since the epoch>` (11 more
/// characters) and a Job's name must stay a 63-character label.
const MAX_CRON_JOB_NAME_LENGTH: usize = 52;

const CONCURRENCY_POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

/// Validates a new CronJob.
pub fn cron_job(object: &CronJob) -> ErrorList {
    let mut errs = object_meta(
        &object.metadata,
        true,
        names::dns1123_subdomain,
        &FieldPath::new("metadata"),
    );
    let spec = object.spec.clone().unwrap_or_default();
    errs.extend(cron_job_spec(&spec, None, &FieldPath::new("spec")));
    let name = object.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_CRON_JOB_NAME_LENGTH {
        errs.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    errs
}

/// Validates a replacement of a CronJob. The name length is not checked again (older
/// CronJobs with longer names can still be changed), a time zone only when it changes, and a
/// `TZ=` in the schedule is kept only if the old schedule had one.
pub fn cron_job_update(new: &CronJob, old: &CronJob) -> ErrorList {
    let mut errs = object_meta_update(&new.metadata, &old.metadata, &FieldPath::new("metadata"));
    let spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    errs.extend(cron_job_spec(
        &spec,
        Some(&old_spec),
        &FieldPath::new("spec"),
    ));
    errs
}

fn cron_job_spec(spec: &CronJobSpec, old: Option<&CronJobSpec>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let schedule_path = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&schedule_path, ""));
    } else {
        let tz_allowed = old.is_some_and(|o| o.schedule.contains("TZ"));
        if let Err(e) = cron::parse(&spec.schedule) {
            errs.push(FieldError::invalid(
                &schedule_path,
                spec.schedule.as_str(),
                e,
            ));
        }
        if spec.schedule.contains("TZ") {
            if !tz_allowed {
                errs.push(FieldError::invalid(
                    &schedule_path,
                    spec.schedule.as_str(),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if spec.time_zone.is_some() {
                errs.push(FieldError::invalid(
                    &schedule_path,
                    spec.schedule.as_str(),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        nonnegative(&mut errs, deadline, &path.child("startingDeadlineSeconds"));
    }
    if old.is_none_or(|o| o.time_zone != spec.time_zone) {
        if let Some(zone) = spec.time_zone.as_deref() {
            time_zone(&mut errs, zone, &path.child("timeZone"));
        }
    }
    one_of(
        &mut errs,
        s(&spec.concurrency_policy),
        &path.child("concurrencyPolicy"),
        CONCURRENCY_POLICIES,
    );
    errs.extend(job_template(&spec.job_template, &path.child("jobTemplate")));
    if let Some(limit) = spec.successful_jobs_history_limit {
        nonnegative(
            &mut errs,
            limit.into(),
            &path.child("successfulJobsHistoryLimit"),
        );
    }
    if let Some(limit) = spec.failed_jobs_history_limit {
        nonnegative(
            &mut errs,
            limit.into(),
            &path.child("failedJobsHistoryLimit"),
        );
    }
    errs
}

/// A tz database name: file name components of `[A-Za-z.-_0-9+]{1,14}` that are not `.`,
/// `..` or start with `-`, not `Local`, and known to the database.
fn time_zone(errs: &mut ErrorList, zone: &str, path: &FieldPath) {
    if zone.is_empty() {
        errs.push(FieldError::invalid(
            path,
            zone,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let good_part = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    };
    if !zone.split('/').all(good_part) {
        errs.push(FieldError::invalid(
            path,
            zone,
            format!("unknown time zone {zone}"),
        ));
        return;
    }
    if zone.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = cron::load_location(zone) {
        errs.push(FieldError::invalid(path, zone, e));
    }
}

/// Kubernetes' `ValidateJobTemplateSpec`: the Job spec checks that do not need a Job (the
/// counts, limits and completion mode, the pod template, its restart policy) and no selector,
/// which the Job gets generated.
fn job_template(t: &JobTemplateSpec, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let spec_path = path.child("spec");
    let spec = t.spec.clone().unwrap_or_default();
    for (value, name) in [
        (spec.parallelism, "parallelism"),
        (spec.completions, "completions"),
        (spec.backoff_limit, "backoffLimit"),
        (spec.ttl_seconds_after_finished, "ttlSecondsAfterFinished"),
        (spec.backoff_limit_per_index, "backoffLimitPerIndex"),
        (spec.max_failed_indexes, "maxFailedIndexes"),
    ] {
        if let Some(v) = value {
            nonnegative(&mut errs, v.into(), &spec_path.child(name));
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        nonnegative(
            &mut errs,
            deadline,
            &spec_path.child("activeDeadlineSeconds"),
        );
    }
    if spec.max_failed_indexes.is_some() && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::required(
            &spec_path.child("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    let mode = spec.completion_mode.as_deref();
    match mode {
        None | Some("NonIndexed") => {
            if let Some(v) = spec.backoff_limit_per_index {
                errs.push(FieldError::invalid(
                    &spec_path.child("backoffLimitPerIndex"),
                    v,
                    "requires indexed completion mode",
                ));
            }
            if let Some(v) = spec.max_failed_indexes {
                errs.push(FieldError::invalid(
                    &spec_path.child("maxFailedIndexes"),
                    v,
                    "requires indexed completion mode",
                ));
            }
            if let Some(policy) = spec.success_policy.as_ref() {
                errs.push(FieldError::invalid(
                    &spec_path.child("successPolicy"),
                    json(policy),
                    "requires indexed completion mode",
                ));
            }
        }
        Some("Indexed") => {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    &spec_path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if spec.parallelism.is_some_and(|p| p > 100_000) {
                errs.push(FieldError::invalid(
                    &spec_path.child("parallelism"),
                    spec.parallelism.unwrap_or_default(),
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            &spec_path.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(policy) = spec.pod_replacement_policy.as_deref() {
        if !matches!(policy, "Failed" | "TerminatingOrFailed") {
            errs.push(FieldError::not_supported(
                &spec_path.child("podReplacementPolicy"),
                policy,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template_path = spec_path.child("template");
    let meta = spec.template.metadata.clone().unwrap_or_default();
    // As for every pod template, label and annotation problems are reported without
    // `metadata` in the path, as Kubernetes does.
    if let Some(labels) = meta.labels.as_ref() {
        errs.extend(selector::validate_labels(
            labels,
            &template_path.child("labels"),
        ));
    }
    if let Some(annotations) = meta.annotations.as_ref() {
        errs.extend(annotations_errors(
            annotations,
            &template_path.child("annotations"),
        ));
    }
    let pod_path = template_path.child("spec");
    let empty = PodSpec::default();
    let pod = spec.template.spec.as_ref().unwrap_or(&empty);
    errs.extend(pod_spec(pod, &pod_path, false));
    if pod
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            &pod_path.child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    let restart_path = pod_path.child("restartPolicy");
    match s(&pod.restart_policy) {
        // Defaulting makes a missing policy `Always`, so both read as missing.
        "" | "Always" => errs.push(FieldError::required(
            &restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" if spec.pod_failure_policy.is_some() => errs.push(FieldError::invalid(
            &restart_path,
            "OnFailure",
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            &restart_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    if let Some(selector) = spec.selector.as_ref() {
        errs.push(FieldError::invalid(
            &spec_path.child("selector"),
            json(selector),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            &spec_path.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn cron_job_of(v: Value) -> CronJob {
        let mut cj: CronJob = serde_json::from_value(v).expect("cronjob");
        crate::defaults::cron_job(&mut cj);
        cj
    }

    fn valid() -> Value {
        json!({
            "metadata": {"name": "nightly", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "a", "image": "busybox"}]
                }}}}
            }
        })
    }

    fn with(path: &[&str], value: Value) -> CronJob {
        let mut v = valid();
        let mut at = &mut v;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*key] = value.clone();
            } else {
                at = &mut at[*key];
            }
        }
        cron_job_of(v)
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(FieldError::to_string).collect()
    }

    #[test]
    fn a_valid_cron_job_passes() {
        assert!(cron_job(&cron_job_of(valid())).is_empty());
        let every = with(&["spec", "schedule"], json!("@every 1h"));
        assert!(
            cron_job(&every).is_empty(),
            "{:?}",
            messages(&cron_job(&every))
        );
        let zoned = with(&["spec", "timeZone"], json!("America/New_York"));
        assert!(
            cron_job(&zoned).is_empty(),
            "{:?}",
            messages(&cron_job(&zoned))
        );
    }

    #[test]
    fn schedules() {
        let errs = cron_job(&with(&["spec", "schedule"], json!("")));
        assert_eq!(messages(&errs), vec!["spec.schedule: Required value"]);
        let errs = cron_job(&with(&["spec", "schedule"], json!("x")));
        assert_eq!(
            messages(&errs),
            vec!["spec.schedule: Invalid value: \"x\": expected exactly 5 fields, found 1: [x]"]
        );
        let errs = cron_job(&with(&["spec", "schedule"], json!("61 * * * *")));
        assert_eq!(
            messages(&errs),
            vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        let errs = cron_job(&with(&["spec", "schedule"], json!("TZ=UTC * * * * *")));
        assert_eq!(
            messages(&errs),
            vec!["spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
    }

    #[test]
    fn time_zones() {
        let errs = cron_job(&with(&["spec", "timeZone"], json!("Mars/Base")));
        assert_eq!(
            messages(&errs),
            vec!["spec.timeZone: Invalid value: \"Mars/Base\": unknown time zone Mars/Base"]
        );
        let errs = cron_job(&with(&["spec", "timeZone"], json!("../../etc/passwd")));
        assert_eq!(
            messages(&errs),
            vec!["spec.timeZone: Invalid value: \"../../etc/passwd\": unknown time zone ../../etc/passwd"]
        );
        let errs = cron_job(&with(&["spec", "timeZone"], json!("")));
        assert_eq!(
            messages(&errs),
            vec!["spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string"]
        );
        let errs = cron_job(&with(&["spec", "timeZone"], json!("Local")));
        assert_eq!(
            messages(&errs),
            vec!["spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"]
        );
        let errs = cron_job(&with(&["spec", "timeZone"], json!("europe/paris")));
        assert_eq!(
            messages(&errs),
            vec!["spec.timeZone: Invalid value: \"europe/paris\": unknown time zone europe/paris"]
        );
    }

    #[test]
    fn tz_in_the_schedule_on_update() {
        let old = with(&["spec", "schedule"], json!("TZ=UTC 0 * * * *"));
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".into());
        // Kept as it was: allowed, as Kubernetes allows old objects to be updated.
        assert!(
            cron_job_update(&new, &old).is_empty(),
            "{:?}",
            messages(&cron_job_update(&new, &old))
        );
        new.spec.as_mut().expect("spec").time_zone = Some("UTC".into());
        assert_eq!(
            messages(&cron_job_update(&new, &old)),
            vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"]
        );
        let plain = cron_job_of(valid());
        let mut tz = plain.clone();
        tz.spec.as_mut().expect("spec").schedule = "CRON_TZ=UTC 0 * * * *".into();
        assert_eq!(
            messages(&cron_job_update(&tz, &plain)),
            vec!["spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
    }

    #[test]
    fn names_limits_and_policies() {
        let long = "a".repeat(53);
        let errs = cron_job(&with(&["metadata", "name"], json!(long)));
        assert_eq!(
            messages(&errs),
            vec![format!(
                "metadata.name: Invalid value: \"{long}\": must be no more than 52 characters"
            )]
        );
        assert!(cron_job(&with(&["metadata", "name"], json!("a".repeat(52)))).is_empty());
        let errs = cron_job(&with(&["spec", "startingDeadlineSeconds"], json!(-1)));
        assert_eq!(
            messages(&errs),
            vec!["spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"]
        );
        let errs = cron_job(&with(&["spec", "successfulJobsHistoryLimit"], json!(-1)));
        assert_eq!(
            messages(&errs),
            vec!["spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0"]
        );
        let errs = cron_job(&with(&["spec", "failedJobsHistoryLimit"], json!(-2)));
        assert_eq!(
            messages(&errs),
            vec!["spec.failedJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0"]
        );
        let errs = cron_job(&with(&["spec", "concurrencyPolicy"], json!("Sometimes")));
        assert_eq!(
            messages(&errs),
            vec!["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""]
        );
    }

    #[test]
    fn job_templates() {
        let errs = cron_job(&with(
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "restartPolicy",
            ],
            json!("Always"),
        ));
        assert_eq!(
            messages(&errs),
            vec!["spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        // Left out, it is defaulted to Always and refused the same way.
        let mut v = valid();
        v["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            .as_object_mut()
            .expect("object")
            .remove("restartPolicy");
        assert_eq!(
            messages(&cron_job(&cron_job_of(v))),
            vec!["spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let errs = cron_job(&with(
            &["spec", "jobTemplate", "spec", "selector"],
            json!({"matchLabels": {"a": "b"}}),
        ));
        assert_eq!(
            messages(&errs),
            vec!["spec.jobTemplate.spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"b\"}}: `selector` will be auto-generated"]
        );
        let errs = cron_job(&with(
            &["spec", "jobTemplate", "spec", "backoffLimit"],
            json!(-1),
        ));
        assert_eq!(
            messages(&errs),
            vec!["spec.jobTemplate.spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]
        );
        let errs = cron_job(&with(
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
            ],
            json!([]),
        ));
        assert_eq!(
            messages(&errs),
            vec!["spec.jobTemplate.spec.template.spec.containers: Required value"]
        );
    }
}
