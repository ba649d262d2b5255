//! Jobs (batch/v1): defaults (with the selector the registry generates from the Job's uid),
//! validation, and kubectl's table. The Job controller runs them.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, arr, col, n, name_cell, s, selector_string, wide, Column, Table, AGE, NAME,
};
use crate::time::{human_duration, parse_seconds};
use crate::{defaults, validation};

typed_rules!(Job, defaults::job, validation::job, validation::job_update);

/// The common rules of the registry, and the kind's table.
pub(crate) const JOBS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as kubectl 1.33's printers define it.
const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "Status of the job."),
    col(
        "Completions",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.",
    ),
    col("Duration", "Time required to complete the job."),
    AGE,
    wide(col("Containers", "Names of each container in the template.")),
    wide(col(
        "Images",
        "Images referenced by each container in the template.",
    )),
    wide(col(
        "Selector",
        "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    )),
];

const TABLE: Table = Table::new(COLUMNS, cells);

/// Whether the Job has a condition of `type_` with status `True`.
fn has_condition(obj: &Value, type_: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == type_ && s(c, "/status") == "True")
}

/// The STATUS cell, as kubectl's `printJob` computes it.
fn status(obj: &Value) -> &'static str {
    if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// The COMPLETIONS cell: `succeeded/completions`, or for a Job without completions
/// `succeeded/1`, with ` of PARALLELISM` when it runs more than one pod.
fn completions(obj: &Value) -> String {
    let succeeded = n(obj, "/status/succeeded");
    match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = n(obj, "/spec/parallelism");
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    }
}

/// The DURATION cell: from the start to the completion, or to `now` while running.
fn duration(obj: &Value, now: i64) -> String {
    let Some(start) = parse_seconds(s(obj, "/status/startTime")) else {
        return String::new();
    };
    match parse_seconds(s(obj, "/status/completionTime")) {
        Some(end) => human_duration(end - start),
        None => human_duration(now - start),
    }
}

/// The cells of an object's row, one per column.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let containers = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    vec![
        name_cell(obj),
        json!(status(obj)),
        json!(completions(obj)),
        json!(duration(obj, now)),
        age_cell(obj, now),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(obj: Value, now: i64) -> Vec<Value> {
        (TABLE.cells)(&obj, now)
    }

    const START: &str = "2024-01-01T00:00:00Z";
    const T0: i64 = 1_704_067_200;

    #[test]
    fn a_complete_job_prints_like_kubectl() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": START},
            "spec": {"completions": 1, "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "startTime": START, "completionTime": "2024-01-01T00:00:07Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                               {"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            row(job, T0 + 60),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("7s"),
                json!("60s"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=u"),
            ]
        );
    }

    #[test]
    fn status_follows_kubectls_order() {
        let with = |conds: Value| json!({"status": {"conditions": conds}});
        assert_eq!(status(&json!({})), "Running");
        assert_eq!(
            status(&with(json!([{"type": "Failed", "status": "True"}]))),
            "Failed"
        );
        assert_eq!(
            status(&with(json!([{"type": "Suspended", "status": "True"}]))),
            "Suspended"
        );
        assert_eq!(
            status(&with(json!([{"type": "Suspended", "status": "False"}]))),
            "Running"
        );
        assert_eq!(
            status(&with(json!([{"type": "FailureTarget", "status": "True"}]))),
            "FailureTarget"
        );
        assert_eq!(
            status(&with(
                json!([{"type": "SuccessCriteriaMet", "status": "True"}])
            )),
            "SuccessCriteriaMet"
        );
        assert_eq!(
            status(&json!({"metadata": {"deletionTimestamp": START}})),
            "Terminating"
        );
    }

    #[test]
    fn completions_and_duration_cells() {
        assert_eq!(
            completions(&json!({"spec": {"parallelism": 3}, "status": {"succeeded": 1}})),
            "1/1 of 3"
        );
        assert_eq!(completions(&json!({"spec": {"parallelism": 1}})), "0/1");
        assert_eq!(
            completions(&json!({"spec": {"completions": 3}, "status": {"succeeded": 2}})),
            "2/3"
        );
        assert_eq!(duration(&json!({}), T0), "");
        assert_eq!(
            duration(&json!({"status": {"startTime": START}}), T0 + 125),
            "2m5s"
        );
    }
}
