//! The defaults of CronJobs (Kubernetes' `SetDefaults_CronJob` and its template's pod spec).

use k8s_openapi::api::batch::v1::CronJob;

use crate::defaults::pod_spec;

/// Defaults a CronJob: concurrency policy `Allow`, not suspended, three successful and one
/// failed Job kept, and the pod spec defaults of its job template's pod template. The job
/// template's own spec gets no Job defaults (Kubernetes defaults only its pod template).
pub fn cron_job(object: &mut CronJob) {
    let spec = object.spec.get_or_insert_with(Default::default);
    if spec
        .concurrency_policy
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        spec.concurrency_policy = Some("Allow".to_owned());
    }
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(3);
    spec.failed_jobs_history_limit.get_or_insert(1);
    let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
    pod_spec(job_spec.template.spec.get_or_insert_with(Default::default));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_what_is_missing_and_keep_what_is_set() {
        let mut cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "a", "image": "busybox"}]}}}}}
        }))
        .expect("cronjob");
        cron_job(&mut cj);
        let v = serde_json::to_value(&cj).expect("json");
        assert_eq!(v["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(v["spec"]["suspend"], false);
        assert_eq!(v["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(v["spec"]["failedJobsHistoryLimit"], 1);
        let pod = &v["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert!(v["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none());

        let mut set: CronJob = serde_json::from_value(json!({
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "suspend": true,
                     "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 5,
                     "jobTemplate": {}}
        }))
        .expect("cronjob");
        cron_job(&mut set);
        let v = serde_json::to_value(&set).expect("json");
        assert_eq!(v["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(v["spec"]["suspend"], true);
        assert_eq!(v["spec"]["successfulJobsHistoryLimit"], 0);
        assert_eq!(v["spec"]["failedJobsHistoryLimit"], 5);
        assert_eq!(
            v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );
    }
}
