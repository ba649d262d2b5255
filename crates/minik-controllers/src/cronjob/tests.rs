//! Tests of the CronJob controller: the pure reconciler over snapshots with `now` as an input
//! (schedules due and not due, concurrency policies, suspension, missed times, deadlines,
//! history limits, time zones), and the controller against an API server in process with a
//! clock the test moves.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minik_api::k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::jiff::tz::TimeZone;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::request::{Patch, PatchKind, Propagation, WriteOptions};
use minik_client::{resource_of, Api, ListParams};
use serde_json::{json, Value};

use super::reconcile::{reconcile, Decision, Inputs};
use super::{controller_with_clock, Clock};
use crate::action::Action;
use crate::executor::Executor;
use crate::kinds::Kind;
use crate::machinery::Informers;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A defaulted CronJob `hello` created at `created`.
fn cron_job(schedule: &str, created: &str, extra: Value) -> CronJob {
    let mut v = json!({
        "metadata": {"name": "hello", "namespace": "default", "uid": "uid-hello",
                     "resourceVersion": "7", "creationTimestamp": created},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}, "annotations": {"team": "a"}},
                "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                    "containers": [{"name": "c", "image": "busybox", "command": ["date"]}]}}}
            }
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    let mut cj: CronJob = serde_json::from_value(v).expect("cronjob");
    minik_api::defaults::cron_job(&mut cj);
    cj
}

fn with_status(mut cj: CronJob, active: &[&str], last: Option<&str>) -> CronJob {
    cj.status = Some(CronJobStatus {
        active: (!active.is_empty()).then(|| active.iter().map(|n| job_ref(n)).collect()),
        last_schedule_time: last.map(|t| Time(ts(t))),
        last_successful_time: None,
    });
    cj
}

fn job_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        resource_version: None,
        field_path: None,
    }
}

/// A Job of `hello`: `state` is None (running), `Complete` or `Failed`.
fn job(name: &str, state: Option<&str>, started: Option<&str>, completed: Option<&str>) -> Job {
    let mut conditions = Vec::new();
    if let Some(state) = state {
        conditions.push(json!({"type": state, "status": "True"}));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                                 "uid": "uid-hello", "controller": true}]},
        "spec": {"template": {}},
        "status": {"conditions": conditions, "startTime": started, "completionTime": completed}
    }))
    .expect("job")
}

fn run(cj: &CronJob, jobs: &[Job], missing: &[&str], now: &str) -> Decision {
    run_in(cj, jobs, missing, now, &TimeZone::UTC)
}

fn run_in(cj: &CronJob, jobs: &[Job], missing: &[&str], now: &str, local: &TimeZone) -> Decision {
    let jobs: Vec<&Job> = jobs.iter().collect();
    let missing: HashSet<String> = missing.iter().map(|m| format!("uid-{m}")).collect();
    reconcile(&Inputs {
        cron_job: cj,
        jobs: &jobs,
        missing: &missing,
        now: ts(now),
        local,
    })
}

/// `(reason, message)` of the events a decision records.
fn events(d: &Decision) -> Vec<(&str, &str)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(n) => Some((n.reason, n.message.as_str())),
            _ => None,
        })
        .collect()
}

fn deleted(d: &Decision) -> Vec<(String, Option<Propagation>)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete {
                targets,
                propagation,
                kind: Kind::Job,
                ..
            } => Some(targets.iter().map(move |t| (t.name.clone(), *propagation))),
            _ => None,
        })
        .flatten()
        .collect()
}

fn created_name(d: &Decision) -> Option<&str> {
    d.create
        .as_ref()
        .and_then(|(job, _)| job.pointer("/metadata/name"))
        .and_then(Value::as_str)
}

fn minutes(t: &str) -> i64 {
    ts(t).as_second() / 60
}

#[test]
fn a_due_schedule_creates_its_job_and_requeues_for_the_next_time() {
    let cj = cron_job("*/5 * * * *", "2025-06-01T10:00:30Z", json!({}));
    let d = run(&cj, &[], &[], "2025-06-01T10:05:10Z");
    let (job, scheduled) = d.create.clone().expect("a job");
    assert_eq!(scheduled, ts("2025-06-01T10:05:00Z"));
    let name = format!("hello-{}", minutes("2025-06-01T10:05:00Z"));
    assert_eq!(job["metadata"]["name"], json!(name));
    assert_eq!(job["metadata"]["namespace"], "default");
    assert_eq!(job["metadata"]["labels"], json!({"app": "hello"}));
    assert_eq!(
        job["metadata"]["annotations"],
        json!({"team": "a", "batch.kubernetes.io/cronjob-scheduled-timestamp": "2025-06-01T10:05:00Z"})
    );
    assert_eq!(
        job["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello", "uid": "uid-hello",
                "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    // 10:10:00.1 - 10:05:10.
    assert_eq!(d.requeue_after, Some(Duration::from_millis(290_100)));
    assert!(events(&d).is_empty());
}

#[test]
fn a_schedule_not_yet_due_waits_until_it_is() {
    let cj = cron_job("*/5 * * * *", "2025-06-01T10:00:30Z", json!({}));
    let d = run(&cj, &[], &[], "2025-06-01T10:04:00Z");
    assert!(d.create.is_none());
    assert!(!d.status_changed);
    assert_eq!(d.requeue_after, Some(Duration::from_millis(60_100)));
    // A time already started is not started again.
    let cj = with_status(cj, &["hello-x"], Some("2025-06-01T10:05:00Z"));
    let d = run(
        &cj,
        &[job("hello-x", None, None, None)],
        &[],
        "2025-06-01T10:06:00Z",
    );
    assert!(d.create.is_none());
    assert_eq!(d.requeue_after, Some(Duration::from_millis(240_100)));
}

#[test]
fn forbid_skips_while_a_job_runs() {
    let cj = cron_job(
        "*/5 * * * *",
        "2025-06-01T10:00:30Z",
        json!({"concurrencyPolicy": "Forbid"}),
    );
    let cj = with_status(cj, &["hello-1"], Some("2025-06-01T10:05:00Z"));
    let running = job("hello-1", None, Some("2025-06-01T10:05:01Z"), None);
    let d = run(&cj, &[running], &[], "2025-06-01T10:10:05Z");
    assert!(d.create.is_none());
    assert_eq!(
        events(&d),
        vec![(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
        )]
    );
    assert_eq!(d.requeue_after, Some(Duration::from_millis(295_100)));
    // Allow starts the next one beside it.
    let mut allow = cj.clone();
    allow.spec.as_mut().expect("spec").concurrency_policy = Some("Allow".into());
    let running = job("hello-1", None, Some("2025-06-01T10:05:01Z"), None);
    let d = run(&allow, &[running], &[], "2025-06-01T10:10:05Z");
    assert_eq!(
        created_name(&d),
        Some(format!("hello-{}", minutes("2025-06-01T10:10:00Z")).as_str())
    );
    assert!(deleted(&d).is_empty());
}

#[test]
fn replace_deletes_the_running_jobs_first() {
    let cj = cron_job(
        "*/5 * * * *",
        "2025-06-01T10:00:30Z",
        json!({"concurrencyPolicy": "Replace"}),
    );
    let cj = with_status(cj, &["hello-1"], Some("2025-06-01T10:05:00Z"));
    let running = job("hello-1", None, Some("2025-06-01T10:05:01Z"), None);
    let d = run(&cj, &[running], &[], "2025-06-01T10:10:05Z");
    assert_eq!(
        deleted(&d),
        vec![("hello-1".to_owned(), Some(Propagation::Background))]
    );
    assert!(d.create.is_some());
    assert!(d.status.active.is_none());
}

#[test]
fn a_suspended_cron_job_starts_nothing() {
    let cj = cron_job(
        "* * * * *",
        "2025-06-01T10:00:30Z",
        json!({"suspend": true}),
    );
    let d = run(&cj, &[], &[], "2025-06-01T11:00:00Z");
    assert!(d.create.is_none());
    assert_eq!(d.requeue_after, None);
    assert!(events(&d).is_empty());
}

#[test]
fn many_missed_times_start_only_the_latest_with_a_warning() {
    let cj = cron_job("* * * * *", "2025-06-01T07:00:30Z", json!({}));
    let d = run(&cj, &[], &[], "2025-06-01T10:00:30Z");
    assert_eq!(
        events(&d),
        vec![("TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")]
    );
    assert_eq!(
        d.create.as_ref().map(|c| c.1),
        Some(ts("2025-06-01T10:00:00Z"))
    );
    // A few missed: the latest one, without a warning.
    let d = run(&cj, &[], &[], "2025-06-01T07:30:30Z");
    assert!(events(&d).is_empty());
    assert_eq!(
        d.create.as_ref().map(|c| c.1),
        Some(ts("2025-06-01T07:30:00Z"))
    );
}

#[test]
fn a_start_later_than_the_deadline_is_skipped() {
    let cj = cron_job(
        "0 * * * *",
        "2025-06-01T09:30:00Z",
        json!({"startingDeadlineSeconds": 10}),
    );
    let d = run(&cj, &[], &[], "2025-06-01T10:00:30Z");
    assert!(d.create.is_none());
    assert_eq!(d.requeue_after, Some(Duration::from_millis(3_570_100)));
    // Within the deadline, it starts.
    let cj = cron_job(
        "0 * * * *",
        "2025-06-01T09:30:00Z",
        json!({"startingDeadlineSeconds": 60}),
    );
    let d = run(&cj, &[], &[], "2025-06-01T10:00:30Z");
    assert_eq!(
        d.create.as_ref().map(|c| c.1),
        Some(ts("2025-06-01T10:00:00Z"))
    );
}

#[test]
fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
    let cj = cron_job("0 * * * *", "2025-06-01T00:00:00Z", json!({}));
    let cj = with_status(cj, &[], Some("2025-06-01T09:00:00Z"));
    let ok = |n: &str, h: u32| {
        let t = format!("2025-06-01T0{h}:00:05Z");
        job(n, Some("Complete"), Some(&t), Some(&t))
    };
    let failed = |n: &str, h: u32| {
        let t = format!("2025-06-01T0{h}:00:05Z");
        job(n, Some("Failed"), Some(&t), None)
    };
    let jobs = vec![
        ok("s5", 5),
        ok("s1", 1),
        ok("s3", 3),
        ok("s4", 4),
        ok("s2", 2),
        failed("f6", 6),
        failed("f7", 7),
        job("unstarted", Some("Failed"), None, None),
    ];
    let d = run(&cj, &jobs, &[], "2025-06-01T09:30:00Z");
    let names: Vec<String> = deleted(&d).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["s1", "s2", "f6", "f7"]);
    assert!(deleted(&d)
        .iter()
        .all(|(_, p)| *p == Some(Propagation::Background)));
    assert!(d.create.is_none());
    // The latest completion is the last successful time.
    assert_eq!(
        d.status.last_successful_time,
        Some(Time(ts("2025-06-01T05:00:05Z")))
    );
}

#[test]
fn completed_missing_and_unexpected_jobs() {
    let cj = cron_job("0 * * * *", "2025-06-01T00:00:00Z", json!({}));
    let cj = with_status(
        cj,
        &["done", "gone", "lagging"],
        Some("2025-06-01T09:00:00Z"),
    );
    let jobs = vec![
        job(
            "done",
            Some("Complete"),
            Some("2025-06-01T09:00:01Z"),
            Some("2025-06-01T09:00:09Z"),
        ),
        job("stray", None, None, None),
    ];
    // `lagging` is not cached but the API still has it: it stays.
    let d = run(&cj, &jobs, &["gone"], "2025-06-01T09:30:00Z");
    assert_eq!(
        events(&d),
        vec![
            (
                "SawCompletedJob",
                "Saw completed job: done, status: Complete"
            ),
            (
                "UnexpectedJob",
                "Saw a job that the controller did not create or forgot: stray"
            ),
            ("MissingJob", "Active job went missing: gone"),
        ]
    );
    let active: Vec<_> = d
        .status
        .active
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();
    assert_eq!(active, vec!["lagging"]);
    assert!(d.status_changed);
    // Seen in active and finished: the success time is taken on the next pass, as upstream.
    assert_eq!(d.status.last_successful_time, None);
    let mut next = cj.clone();
    next.status = Some(d.status.clone());
    let d = run(&next, &jobs, &[], "2025-06-01T09:30:00Z");
    assert_eq!(
        d.status.last_successful_time,
        Some(Time(ts("2025-06-01T09:00:09Z")))
    );
}

#[test]
fn time_zones_and_daylight_saving_time() {
    // 02:30 does not exist in New York on 2025-03-09: the next run is on the 10th.
    let cj = cron_job(
        "30 2 * * *",
        "2025-03-08T12:00:00Z",
        json!({"timeZone": "America/New_York"}),
    );
    let d = run(&cj, &[], &[], "2025-03-10T12:00:00Z");
    let (job, scheduled) = d.create.expect("a job");
    assert_eq!(scheduled, ts("2025-03-10T06:30:00Z"));
    assert_eq!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2025-03-10T02:30:00-04:00"
    );
    // Without a time zone, the controller's local zone is used.
    let cj = cron_job("0 9 * * *", "2025-05-31T23:00:00Z", json!({}));
    let tokyo = TimeZone::get("Asia/Tokyo").expect("zone");
    let d = run_in(&cj, &[], &[], "2025-06-01T00:30:00Z", &tokyo);
    assert_eq!(
        d.create.as_ref().map(|c| c.1),
        Some(ts("2025-06-01T00:00:00Z"))
    );
    // The annotation is in UTC then, as Kubernetes writes it.
    assert_eq!(
        d.create.as_ref().map(|c| c.0["metadata"]["annotations"]
            ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .clone()),
        Some(json!("2025-06-01T00:00:00Z"))
    );
}

#[test]
fn schedules_that_cannot_run() {
    let cj = cron_job("0 0 30 2 *", "2025-06-01T00:00:00Z", json!({}));
    let d = run(&cj, &[], &[], "2025-06-02T00:00:00Z");
    assert_eq!(
        events(&d),
        vec![("InvalidSchedule", "invalid schedule: 0 0 30 2 * : time difference between two schedules is less than 1 second")]
    );
    assert_eq!(d.requeue_after, None);
    let cj = cron_job(
        "0 0 * * *",
        "2025-06-01T00:00:00Z",
        json!({"timeZone": "Mars/Base"}),
    );
    let d = run(&cj, &[], &[], "2025-06-02T00:00:00Z");
    assert_eq!(
        events(&d),
        vec![(
            "UnknownTimeZone",
            "invalid timeZone: \"Mars/Base\": unknown time zone Mars/Base"
        )]
    );
    let cj = cron_job("not a schedule", "2025-06-01T00:00:00Z", json!({}));
    let d = run(&cj, &[], &[], "2025-06-02T00:00:00Z");
    assert_eq!(
        events(&d),
        vec![("UnparseableSchedule", "unparseable schedule: \"not a schedule\" : expected exactly 5 fields, found 3: [not a schedule]")]
    );
    let mut deleting = cron_job("* * * * *", "2025-06-01T00:00:00Z", json!({}));
    deleting.metadata.deletion_timestamp = Some(Time(ts("2025-06-01T00:00:01Z")));
    let d = run(&deleting, &[], &[], "2025-06-02T00:00:00Z");
    assert!(d.create.is_none() && d.requeue_after.is_none());
}

/// A clock the test sets.
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn get(api: &dyn Api, kind: Kind, name: &str) -> Option<Value> {
    api.get(kind.info(), Some("default"), name).await.ok()
}

async fn merge(api: &dyn Api, kind: Kind, name: &str, body: Value, status: bool) {
    api.patch(
        kind.info(),
        Some("default"),
        name,
        Patch {
            kind: PatchKind::Merge,
            body,
        },
        status,
        WriteOptions::default(),
    )
    .await
    .expect("patch");
}

/// Marks a Job succeeded, as the Job controller would.
async fn complete(api: &dyn Api, name: &str, at: &str) {
    merge(
        api,
        Kind::Job,
        name,
        json!({"status": {"startTime": at, "completionTime": at, "succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": at},
            {"type": "Complete", "status": "True", "lastTransitionTime": at}]}}),
        true,
    )
    .await;
}

/// Makes the controller look at the CronJob now (a label change).
async fn poke(api: &dyn Api, n: u32) {
    merge(
        api,
        Kind::CronJob,
        "every5",
        json!({"metadata": {"labels": {"poke": n.to_string()}}}),
        false,
    )
    .await;
}

fn floor5(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(300)).expect("time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_on_the_clock_it_is_given() {
    use minik_testkit::{wait_for, DEADLINE};

    let mut server = minik_testkit::start().await;
    let api = server.api.clone();
    let config = crate::Config {
        resync: Duration::from_secs(5),
        ..crate::Config::default()
    };
    // Ten minutes ahead of the real creation time: two times of */5 are due at once.
    let start = crate::kinds::now()
        .checked_add(minik_api::k8s_openapi::jiff::SignedDuration::from_mins(10))
        .expect("time");
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let informers = Informers::start(&minik_client::SharedInformers::new(
        api.clone(),
        minik_client::InformerConfig {
            resync: config.resync,
            ..minik_client::InformerConfig::default()
        },
    ));
    let task = controller_with_clock(
        &informers,
        Executor::new(api.clone()),
        &config,
        clock.clone(),
        TimeZone::UTC,
    );
    server.spawn(task);
    // The informers live as long as the test.
    let _informers = informers;
    api.create(
        Kind::CronJob.info(),
        Some("default"),
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "every5"},
            "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid",
                     "successfulJobsHistoryLimit": 1,
                     "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}]}}}}}
        }),
        WriteOptions::default(),
    )
    .await
    .expect("create");

    let first_time = floor5(start);
    let first = format!("every5-{}", first_time.as_second() / 60);
    let job = wait_for("the first Job", DEADLINE, || async {
        get(api.as_ref(), Kind::Job, &first).await
    })
    .await;
    assert_eq!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        json!(first_time.to_string())
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    wait_for("the first Job in status.active", DEADLINE, || async {
        let cj = get(api.as_ref(), Kind::CronJob, "every5").await?;
        (cj["status"]["active"][0]["name"] == json!(first)
            && cj["status"]["lastScheduleTime"] == json!(first_time.to_string()))
        .then_some(())
    })
    .await;

    // Five minutes on, the first Job still runs: Forbid starts nothing.
    clock.set(
        start
            .checked_add(minik_api::k8s_openapi::jiff::SignedDuration::from_mins(5))
            .expect("time"),
    );
    poke(api.as_ref(), 1).await;
    wait_for("a JobAlreadyActive event", DEADLINE, || async {
        let events = api
            .list(
                resource_of::<minik_api::k8s_openapi::api::core::v1::Event>(),
                Some("default"),
                &ListParams::default(),
            )
            .await
            .ok()?;
        events
            .items
            .iter()
            .any(|e| e["reason"] == "JobAlreadyActive")
            .then_some(())
    })
    .await;

    // It completes: the start Forbid skipped is made now, and the first Job's completion
    // becomes the last successful time.
    complete(api.as_ref(), &first, &first_time.to_string()).await;
    let second_time = floor5(clock.now());
    let second = format!("every5-{}", second_time.as_second() / 60);
    assert_ne!(first, second);
    wait_for("the skipped start to be made", DEADLINE, || async {
        let cj = get(api.as_ref(), Kind::CronJob, "every5").await?;
        (cj["status"]["active"][0]["name"] == json!(second)
            && cj["status"]["active"].as_array().map(Vec::len) == Some(1)
            && cj["status"]["lastSuccessfulTime"] == json!(first_time.to_string()))
        .then_some(())
    })
    .await;
    assert!(get(api.as_ref(), Kind::Job, &second).await.is_some());

    // The second completes too: one successful Job is kept, the older one is deleted.
    complete(api.as_ref(), &second, &second_time.to_string()).await;
    wait_for(
        "the oldest successful Job to be deleted",
        DEADLINE,
        || async {
            get(api.as_ref(), Kind::Job, &first)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(get(api.as_ref(), Kind::Job, &second).await.is_some());
}
