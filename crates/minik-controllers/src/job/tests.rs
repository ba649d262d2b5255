//! Tests of the Job reconciler over snapshots, time as an input: parallelism and completions,
//! exact counting through the tracking finalizer (also of a pod deleted before it finished),
//! back-off delays, the deadline, suspension, TTL, Indexed Jobs and the pod failure policy.

use std::time::Duration;

use minik_api::k8s_openapi::api::batch::v1::Job;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use serde_json::{json, Value};

use super::reconcile::{
    backoff_remaining, format_indexes, parse_indexes, reconcile, release_orphans, Inputs,
    INDEX_KEY, TRACKING_FINALIZER,
};
use crate::action::{Action, Plan};
use crate::kinds::Kind;
use crate::pods::testing::at;

const BASE: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(360);

/// A Job as the API stores it, with `spec` merged over the defaults and `status`.
fn job(spec: Value, status: Value) -> Job {
    let mut base = json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "uid-pi",
            "resourceVersion": "5", "creationTimestamp": at(0).to_string()},
        "spec": {
            "parallelism": 1, "completions": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "suspend": false,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-pi"}},
            "template": {
                "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "uid-pi",
                    "batch.kubernetes.io/job-name": "pi"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "pi", "image": "perl"}]}
            }
        },
        "status": status,
    });
    if let (Some(b), Some(s)) = (base["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in s {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).expect("a Job")
}

/// A pod of the Job in `phase`, with the tracking finalizer when `tracked`.
fn pod(name: &str, phase: &str, tracked: bool) -> PodView {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": "3", "creationTimestamp": at(0).to_string(),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                "uid": "uid-pi", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "pi", "image": "perl"}]},
        "status": {"phase": phase},
    });
    if tracked {
        v["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
    }
    serde_json::from_value(v).expect("a pod")
}

/// Finished at `at(seconds)` with `code`.
fn exited(mut p: PodView, code: i32, seconds: i64) -> PodView {
    let status = p.status.get_or_insert_with(Default::default);
    status.container_statuses = Some(vec![serde_json::from_value(json!({
        "name": "pi", "image": "perl", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "finishedAt": at(seconds).to_string()}}
    }))
    .expect("a container status")]);
    p
}

fn deleting(mut p: PodView, seconds: i64) -> PodView {
    p.metadata.deletion_timestamp = Some(Time(at(seconds)));
    p
}

fn indexed(p: PodView, i: i32) -> PodView {
    let mut p = p;
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), i.to_string());
    p
}

fn run(job: &Job, pods: &[PodView], now: Timestamp) -> Plan {
    let refs: Vec<&PodView> = pods.iter().collect();
    let inputs = Inputs {
        pods: &refs,
        may_manage: true,
        now,
        backoff_base: BASE,
        backoff_max: MAX,
    };
    let mut n = 0;
    reconcile(job, &inputs, &mut || {
        n += 1;
        format!("s{n}")
    })
}

fn status(plan: &Plan) -> Value {
    plan.status_written(Kind::Job)
        .cloned()
        .unwrap_or(Value::Null)
}

fn created(plan: &Plan) -> Vec<Value> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { objects, .. } => Some(objects.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn finalizers_removed(plan: &Plan) -> Vec<&str> {
    plan.patched(Kind::Pod)
        .into_iter()
        .filter(|(_, b)| b.pointer("/metadata/finalizers").is_some())
        .map(|(n, _)| n)
        .collect()
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(n) => Some(n.reason),
            _ => None,
        })
        .collect()
}

fn cond<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[test]
fn a_new_job_starts_one_tracked_pod() {
    let plan = run(&job(json!({}), json!({})), &[], at(1));
    let pods = created(&plan);
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert_eq!(p["metadata"]["name"], "pi-s1");
    assert_eq!(p["metadata"]["generateName"], "pi-");
    assert_eq!(p["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        p["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "pi"
    );
    let st = status(&plan);
    assert_eq!(st["active"], 1);
    assert_eq!(st["ready"], 0);
    assert_eq!(st["terminating"], 0);
    assert_eq!(st["startTime"], at(1).to_string());
    assert_eq!(
        plan.actions
            .iter()
            .filter(|a| matches!(a, Action::Patch { .. }))
            .count(),
        1
    );
    // The status write is conditional on the Job's version.
    assert!(plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Patch { body, status: true, .. }
        if body["metadata"]["resourceVersion"] == "5")));
}

#[test]
fn a_success_is_recorded_then_released_then_counted_and_completes() {
    let running = json!({"active": 1, "ready": 0, "terminating": 0,
        "startTime": at(1).to_string(), "uncountedTerminatedPods": {}});
    let done = exited(pod("pi-a", "Succeeded", true), 0, 5);
    // 1: recorded as uncounted, and the criteria are met.
    let plan = run(&job(json!({}), running), std::slice::from_ref(&done), at(6));
    let st = status(&plan);
    assert_eq!(
        st["uncountedTerminatedPods"]["succeeded"],
        json!(["uid-pi-a"])
    );
    assert_eq!(
        cond(&st, "SuccessCriteriaMet").unwrap()["reason"],
        "CompletionsReached"
    );
    assert!(
        finalizers_removed(&plan).is_empty(),
        "not before the record is stored"
    );
    assert!(created(&plan).is_empty());

    // 2: the stored record lets the finalizer go; nothing is counted twice.
    let recorded = json!({"ready": 0, "terminating": 0, "startTime": at(1).to_string(),
        "uncountedTerminatedPods": {"succeeded": ["uid-pi-a"]},
        "conditions": st["conditions"].clone()});
    let plan = run(
        &job(json!({}), recorded.clone()),
        std::slice::from_ref(&done),
        at(7),
    );
    assert_eq!(finalizers_removed(&plan), vec!["pi-a"]);
    assert_eq!(plan.status_written(Kind::Job), None);

    // 3: released: counted, and the Job is Complete with a completion time.
    let released = exited(pod("pi-a", "Succeeded", false), 0, 5);
    let plan = run(&job(json!({}), recorded), &[released], at(8));
    let st = status(&plan);
    assert_eq!(st["succeeded"], 1);
    assert_eq!(st["uncountedTerminatedPods"], json!({"succeeded": null}));
    let complete = cond(&st, "Complete").unwrap();
    assert_eq!(complete["reason"], "CompletionsReached");
    assert_eq!(
        complete["message"],
        "Reached expected number of succeeded pods"
    );
    assert_eq!(st["completionTime"], at(8).to_string());
    assert_eq!(reasons(&plan), vec!["Completed"]);
}

#[test]
fn parallelism_is_bounded_by_the_remaining_completions() {
    let spec = json!({"parallelism": 3, "completions": 4});
    let status = json!({"succeeded": 2, "startTime": at(0).to_string()});
    let plan = run(&job(spec.clone(), status), &[], at(1));
    assert_eq!(created(&plan).len(), 2);
    let plan = run(
        &job(spec, json!({"startTime": at(0).to_string()})),
        &[pod("pi-a", "Running", true)],
        at(1),
    );
    assert_eq!(created(&plan).len(), 2);
    // Without completions, a success stops new pods.
    let plan = run(
        &job(
            json!({"parallelism": 2, "completions": null}),
            json!({"startTime": at(0).to_string()}),
        ),
        &[pod("pi-a", "Running", true)],
        at(1),
    );
    assert_eq!(created(&plan).len(), 1);
}

#[test]
fn failed_pods_are_replaced_after_an_exponential_back_off() {
    let st = json!({"failed": 2, "startTime": at(0).to_string()});
    let pods = [
        exited(pod("pi-a", "Failed", false), 1, 10),
        exited(pod("pi-b", "Failed", false), 1, 30),
    ];
    // Two failures since the last success: 20 s from the last one.
    let plan = run(&job(json!({}), st.clone()), &pods, at(35));
    assert!(created(&plan).is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(15)));
    let plan = run(&job(json!({}), st), &pods, at(50));
    assert_eq!(created(&plan).len(), 1);

    assert_eq!(
        backoff_remaining(&[at(0)], None, at(0), BASE, MAX),
        Some(BASE)
    );
    let many: Vec<Timestamp> = (0..12).map(at).collect();
    assert_eq!(backoff_remaining(&many, None, at(11), BASE, MAX), Some(MAX));
    assert_eq!(
        backoff_remaining(&[at(0)], Some(at(1)), at(1), BASE, MAX),
        None
    );
}

#[test]
fn the_backoff_limit_fails_the_job_once_every_pod_is_counted() {
    let spec = json!({"backoffLimit": 1});
    let st = json!({"failed": 1, "startTime": at(0).to_string(), "uncountedTerminatedPods": {}});
    let second = exited(pod("pi-b", "Failed", true), 2, 20);
    let plan = run(
        &job(spec.clone(), st),
        std::slice::from_ref(&second),
        at(21),
    );
    let s1 = status(&plan);
    let target = cond(&s1, "FailureTarget").unwrap();
    assert_eq!(target["reason"], "BackoffLimitExceeded");
    assert_eq!(
        target["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(cond(&s1, "Failed").is_none());
    assert!(created(&plan).is_empty());

    let recorded = json!({"failed": 1, "startTime": at(0).to_string(),
        "uncountedTerminatedPods": {"failed": ["uid-pi-b"]}, "conditions": s1["conditions"].clone()});
    let released = exited(pod("pi-b", "Failed", false), 2, 20);
    let plan = run(&job(spec, recorded), &[released], at(22));
    let s2 = status(&plan);
    assert_eq!(s2["failed"], 2);
    let failed = cond(&s2, "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert!(s2.get("completionTime").is_none());
    assert_eq!(reasons(&plan), vec!["BackoffLimitExceeded"]);
}

#[test]
fn restarts_in_place_count_toward_the_backoff_limit() {
    let mut p = pod("pi-a", "Running", true);
    p.status.as_mut().unwrap().container_statuses = Some(vec![serde_json::from_value(json!({
        "name": "pi", "image": "perl", "imageID": "", "ready": false, "restartCount": 2
    }))
    .unwrap()]);
    let mut spec = json!({"backoffLimit": 2});
    spec["template"] = job(json!({}), json!({}))
        .spec
        .map(|s| serde_json::to_value(s.template).unwrap())
        .unwrap();
    spec["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    let plan = run(
        &job(spec, json!({"startTime": at(0).to_string()})),
        &[p],
        at(5),
    );
    assert_eq!(
        cond(&status(&plan), "FailureTarget").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(plan.deleted(Kind::Pod).len(), 1, "the running pod goes");
}

#[test]
fn the_deadline_fails_the_job_and_is_watched_for() {
    let spec = json!({"activeDeadlineSeconds": 30});
    let st = json!({"active": 1, "ready": 0, "terminating": 0, "startTime": at(0).to_string(), "uncountedTerminatedPods": {}});
    let running = pod("pi-a", "Running", true);
    let plan = run(
        &job(spec.clone(), st.clone()),
        std::slice::from_ref(&running),
        at(10),
    );
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    assert_eq!(plan.status_written(Kind::Job), None);

    let plan = run(
        &job(spec.clone(), st),
        std::slice::from_ref(&running),
        at(30),
    );
    let s = status(&plan);
    let target = cond(&s, "FailureTarget").unwrap();
    assert_eq!(target["reason"], "DeadlineExceeded");
    assert_eq!(
        target["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(plan.deleted(Kind::Pod).len(), 1);
    assert_eq!(
        reasons(&plan),
        Vec::<&str>::new(),
        "the deletes announce themselves"
    );

    // The deleted pod is counted as failed before it goes, then the Job fails.
    let st = json!({"startTime": at(0).to_string(), "conditions": s["conditions"].clone()});
    let plan = run(&job(spec.clone(), st), &[deleting(running, 31)], at(31));
    let s = status(&plan);
    assert_eq!(s["uncountedTerminatedPods"]["failed"], json!(["uid-pi-a"]));
    assert_eq!(s["terminating"], 1);
    assert!(cond(&s, "Failed").is_none());
}

#[test]
fn a_pod_deleted_before_its_outcome_was_counted_is_counted_once() {
    let st = json!({"active": 1, "startTime": at(0).to_string(), "uncountedTerminatedPods": {}});
    let gone_soon = deleting(pod("pi-a", "Running", true), 5);
    let plan = run(&job(json!({}), st), std::slice::from_ref(&gone_soon), at(5));
    let s = status(&plan);
    assert_eq!(s["uncountedTerminatedPods"]["failed"], json!(["uid-pi-a"]));
    assert!(finalizers_removed(&plan).is_empty());

    // The record is stored: the finalizer goes; the pod then vanishes and is counted once.
    let recorded = json!({"startTime": at(0).to_string(), "uncountedTerminatedPods": {"failed": ["uid-pi-a"]}});
    let plan = run(
        &job(json!({}), recorded.clone()),
        std::slice::from_ref(&gone_soon),
        at(6),
    );
    assert_eq!(finalizers_removed(&plan), vec!["pi-a"]);
    let plan = run(&job(json!({}), recorded), &[], at(7));
    let s = status(&plan);
    assert_eq!(s["failed"], 1);
    assert_eq!(s["uncountedTerminatedPods"], json!({"failed": null}));
    let counted =
        json!({"failed": 1, "startTime": at(0).to_string(), "uncountedTerminatedPods": {}});
    // Counted: a pod without the finalizer is never counted again.
    let plan = run(
        &job(json!({}), counted),
        &[deleting(pod("pi-a", "Running", false), 5)],
        at(8),
    );
    assert_eq!(status(&plan).get("failed"), Some(&json!(1)));
}

#[test]
fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let st = json!({"active": 1, "startTime": at(0).to_string()});
    let running = pod("pi-a", "Running", true);
    let plan = run(
        &job(json!({"suspend": true}), st),
        std::slice::from_ref(&running),
        at(10),
    );
    assert_eq!(plan.deleted(Kind::Pod).len(), 1);
    let s = status(&plan);
    let c = cond(&s, "Suspended").unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["message"].as_str()),
        (Some("JobSuspended"), Some("Job suspended"))
    );
    assert_eq!(s["startTime"], at(0).to_string(), "kept while suspended");
    assert!(s["active"].is_null());
    assert_eq!(reasons(&plan), vec!["Suspended"]);

    // Its deleted pod is no failure.
    let st = json!({"conditions": s["conditions"].clone()});
    let plan = run(
        &job(json!({"suspend": true}), st.clone()),
        &[deleting(running, 11)],
        at(11),
    );
    assert_eq!(finalizers_removed(&plan), vec!["pi-a"]);
    assert!(status(&plan)["uncountedTerminatedPods"]
        .get("failed")
        .is_none());

    let plan = run(&job(json!({"suspend": false}), st), &[], at(20));
    let s = status(&plan);
    assert_eq!(s["conditions"][0]["status"], "False");
    assert_eq!(s["conditions"][0]["reason"], "JobResumed");
    assert_eq!(s["startTime"], at(20).to_string());
    assert_eq!(created(&plan).len(), 1);
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let st = json!({"succeeded": 1, "completionTime": at(10).to_string(),
        "conditions": [{"type": "Complete", "status": "True"}]});
    let spec = json!({"ttlSecondsAfterFinished": 30});
    let plan = run(&job(spec.clone(), st.clone()), &[], at(20));
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    assert!(plan.deleted(Kind::Job).is_empty());
    let plan = run(&job(spec, st.clone()), &[], at(40));
    assert!(plan.actions.iter().any(|a| matches!(
        a,
        Action::Delete {
            kind: Kind::Job,
            propagation: Some(minik_api::request::Propagation::Background),
            ..
        }
    )));
    // Without a TTL the Job and its pods stay.
    let kept = exited(pod("pi-a", "Succeeded", false), 0, 5);
    assert_eq!(run(&job(json!({}), st), &[kept], at(1000)), Plan::default());
}

#[test]
fn indexed_jobs_run_each_index_with_its_env_and_record_completed_indexes() {
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2});
    let plan = run(&job(spec.clone(), json!({})), &[], at(1));
    let pods = created(&plan);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0]["metadata"]["name"], "pi-0-s1");
    assert_eq!(pods[1]["metadata"]["generateName"], "pi-1-");
    assert_eq!(pods[1]["metadata"]["annotations"][INDEX_KEY], "1");
    assert_eq!(pods[1]["metadata"]["labels"][INDEX_KEY], "1");
    assert_eq!(pods[1]["spec"]["hostname"], "pi-1");
    assert_eq!(
        pods[1]["spec"]["containers"][0]["env"],
        json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}])
    );
    assert_eq!(status(&plan)["completedIndexes"], "");

    // Index 0 done, index 1 running: index 2 starts.
    let st = json!({"startTime": at(0).to_string()});
    let pods = [
        indexed(exited(pod("pi-0-a", "Succeeded", true), 0, 3), 0),
        indexed(pod("pi-1-a", "Running", true), 1),
    ];
    let plan = run(&job(spec, st), &pods, at(4));
    let s = status(&plan);
    assert_eq!(s["completedIndexes"], "0");
    let new = created(&plan);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["metadata"]["annotations"][INDEX_KEY], "2");

    let mut set = parse_indexes("0-2,4,7-8", 8);
    assert_eq!(format_indexes(&set), "0-2,4,7");
    set.insert(3);
    assert_eq!(format_indexes(&set), "0-4,7");
}

#[test]
fn the_pod_failure_policy_fails_ignores_or_counts() {
    let policy = json!({"podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "pi", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}},
    ]}});
    let st = json!({"startTime": at(0).to_string()});
    let plan = run(
        &job(policy.clone(), st.clone()),
        &[exited(pod("pi-a", "Failed", true), 42, 3)],
        at(4),
    );
    let s = status(&plan);
    let c = cond(&s, "FailureTarget").unwrap();
    assert_eq!(c["reason"], "PodFailurePolicy");
    assert_eq!(c["message"], "Container pi for pod default/pi-a failed with exit code 42 matching FailJob rule at index 0");
    assert_eq!(s["uncountedTerminatedPods"]["failed"], json!(["uid-pi-a"]));

    let plan = run(
        &job(policy.clone(), st.clone()),
        &[exited(pod("pi-a", "Failed", true), 7, 3)],
        at(4),
    );
    assert_eq!(
        finalizers_removed(&plan),
        vec!["pi-a"],
        "ignored: let go uncounted"
    );
    assert!(status(&plan)["uncountedTerminatedPods"]
        .get("failed")
        .is_none());
    assert_eq!(created(&plan).len(), 1, "and replaced at once, no back-off");

    let plan = run(
        &job(policy.clone(), st.clone()),
        &[exited(pod("pi-a", "Failed", true), 1, 3)],
        at(4),
    );
    assert_eq!(
        status(&plan)["uncountedTerminatedPods"]["failed"],
        json!(["uid-pi-a"])
    );
    assert!(cond(&status(&plan), "FailureTarget").is_none());

    // With the policy, a terminating pod is not failed until it is.
    let plan = run(
        &job(policy, st),
        &[deleting(pod("pi-a", "Running", true), 3)],
        at(4),
    );
    assert!(status(&plan)["uncountedTerminatedPods"]
        .get("failed")
        .is_none());
    assert_eq!(status(&plan)["terminating"], 1);
}

#[test]
fn a_job_being_deleted_and_orphans_release_their_pods() {
    let mut j = job(json!({}), json!({}));
    j.metadata.deletion_timestamp = Some(Time(at(3)));
    let plan = run(
        &j,
        &[pod("pi-a", "Running", true), pod("pi-b", "Running", false)],
        at(4),
    );
    assert_eq!(finalizers_removed(&plan), vec!["pi-a"]);
    assert!(created(&plan).is_empty());
    let orphan = pod("pi-z", "Succeeded", true);
    let action = release_orphans(&[&orphan]).expect("the orphan is released");
    assert!(
        matches!(&action, Action::PatchEach { patches, .. } if patches.len() == 1
        && patches[0].body["metadata"]["finalizers"].is_null()
        && patches[0].body["metadata"]["resourceVersion"] == "3")
    );
    assert!(release_orphans(&[&pod("pi-y", "Succeeded", false)]).is_none());
}

#[test]
fn no_pods_are_created_or_deleted_while_earlier_writes_are_unobserved() {
    let j = job(json!({}), json!({}));
    let inputs = Inputs {
        pods: &[],
        may_manage: false,
        now: at(1),
        backoff_base: BASE,
        backoff_max: MAX,
    };
    let plan = reconcile(&j, &inputs, &mut || "x".into());
    assert!(created(&plan).is_empty());
}
