//! CronJobs (batch/v1): defaults and validation (schedules as [`crate::cron`] reads them); the
//! CronJob controller creates their Jobs. The common rules of the registry, and Kubernetes'
//! printer columns.

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{json, Value};

use super::{typed_rules, Common, Strategy};
use crate::printers::{
    age_cell, arr, col, int, name_cell, or_none, s, selector_string, wide, Column, Table, AGE, NAME,
};
use crate::time::age;
use crate::{defaults, validation};

typed_rules!(
    CronJob,
    defaults::cron_job,
    validation::cron_job,
    validation::cron_job_update
);

/// The common rules of the registry, and the kind's table.
pub(crate) const CRON_JOBS: &dyn Strategy = &Common(TABLE);

/// The kind's table, as kubectl 1.33's printers define it (`Suspend` is typed `boolean` there;
/// its cells are the strings `True`, `False` or `<unset>` all the same).
const COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process."),
    col("Suspend", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false."),
    int("Active", "A list of pointers to currently running jobs."),
    col("Last Schedule", "Information when was the last time the job was successfully scheduled."),
    AGE,
    wide(col("Containers", "Names of each container in the template.")),
    wide(col("Images", "Images referenced by each container in the template.")),
    wide(col("Selector", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors")),
];

const TABLE: Table = Table::new(COLUMNS, cells);

/// The cells of a CronJob's row.
fn cells(obj: &Value, now: i64) -> Vec<Value> {
    let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = s(obj, "/status/lastScheduleTime");
    let last = if last.is_empty() {
        "<none>".to_owned()
    } else {
        age(last, now)
    };
    let containers = arr(obj, "/spec/jobTemplate/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    let selector = obj.pointer("/spec/jobTemplate/spec/selector");
    vec![
        name_cell(obj),
        json!(s(obj, "/spec/schedule")),
        json!(or_none(s(obj, "/spec/timeZone"))),
        json!(suspend),
        json!(arr(obj, "/status/active").len()),
        json!(last),
        age_cell(obj, now),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(or_none(
            &selector
                .map(|sel| selector_string(Some(sel)))
                .unwrap_or_default()
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_as_kubectl_prints_them() {
        let now = 1_700_000_000;
        let cj = json!({
            "metadata": {"name": "nightly", "creationTimestamp": "2023-11-14T22:03:20Z"},
            "spec": {"schedule": "0 3 * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "alpine"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": "2023-11-14T22:10:20Z"}
        });
        let cells = (TABLE.cells)(&cj, now + 600);
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            cells,
            vec![
                json!("nightly"),
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("13m"),
                json!("20m"),
                json!("a,b"),
                json!("busybox,alpine"),
                json!("<none>"),
            ]
        );
        let zoned = json!({"metadata": {"name": "z"}, "spec": {"schedule": "@daily", "timeZone": "Europe/Paris"}});
        let cells = (TABLE.cells)(&zoned, now);
        assert_eq!(cells[2], json!("Europe/Paris"));
        assert_eq!(cells[3], json!("<unset>"));
        assert_eq!(cells[4], json!(0));
        assert_eq!(cells[5], json!("<none>"));
    }
}
