//! Jobs end to end on the process runtime: a `pi`-style Job that completes (its pod kept,
//! Succeeded), a failing Job that reaches its backoff limit, an Indexed Job whose pods read
//! their `JOB_COMPLETION_INDEX`, and a Job whose pods would restart always, refused as
//! Kubernetes refuses it.

mod support;

use minik_testkit::blocking::wait_for;
use serde_json::Value;
use support::client::Cluster;

/// Long enough for a Job with one retry (a 10 s back-off) on a loaded machine.
const JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// The Job `name` once it has the condition `type_` True.
fn job_with(c: &Cluster, name: &str, type_: &str) -> Value {
    wait_for(&format!("job {name} {type_}"), JOB_DEADLINE, || {
        let job = c.json(&["get", "job", name]);
        let has = job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|cond| cond["type"] == type_ && cond["status"] == "True");
        if has {
            Ok(job)
        } else {
            Err(job["status"].to_string())
        }
    })
}

/// The pods of the Job `name`.
fn pods_of(c: &Cluster, name: &str) -> Vec<Value> {
    let selector = format!("batch.kubernetes.io/job-name={name}");
    let pods = c.json(&["get", "pods", "-l", &selector]);
    pods["items"].as_array().cloned().unwrap_or_default()
}

/// The row of `get job NAME` (header and row), columns split on whitespace.
fn row(c: &Cluster, name: &str) -> Vec<String> {
    let out = c.ok(&["get", "job", name]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_job_runs_to_completion_and_keeps_its_pod() {
    let c = Cluster::with_node("process");
    c.apply(
        "pi.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: [sh, -c, 'echo 3.14159']
      restartPolicy: Never
  backoffLimit: 4
",
    );
    let job = job_with(&c, "pi", "Complete");
    let status = &job["status"];
    assert_eq!(status["succeeded"], 1, "{status}");
    assert_eq!(status["uncountedTerminatedPods"], serde_json::json!({}));
    assert!(status["completionTime"].is_string(), "{status}");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"]
    );
    let cells = row(&c, "pi");
    assert_eq!(&cells[..3], ["pi", "Complete", "1/1"], "{cells:?}");
    let pods = pods_of(&c, "pi");
    assert_eq!(pods.len(), 1, "the pod is kept");
    let pod = &pods[0];
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        pod["metadata"].get("finalizers"),
        None,
        "released once counted"
    );
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("pi-"), "{name}");
    assert_eq!(c.ok(&["logs", name]), "3.14159\n");
    let events = c.json(&["get", "events"]);
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "Job")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"SuccessfulCreate"), "{reasons:?}");
    assert!(reasons.contains(&"Completed"), "{reasons:?}");
    // The Job goes, and its pod with it.
    c.ok(&["delete", "job", "pi"]);
    wait_for("the pod to go with its Job", JOB_DEADLINE, || {
        let left = pods_of(&c, "pi");
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });
}

#[test]
fn a_failing_job_stops_at_its_backoff_limit() {
    let c = Cluster::with_node("process");
    c.apply(
        "fail.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: fail
spec:
  backoffLimit: 1
  template:
    spec:
      containers:
      - name: fail
        image: busybox
        command: [sh, -c, 'echo no; exit 3']
      restartPolicy: Never
",
    );
    let job = job_with(&c, "fail", "Failed");
    let status = &job["status"];
    assert_eq!(status["failed"], 2, "{status}");
    let failed = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cond| cond["type"] == "Failed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_eq!(&row(&c, "fail")[..3], ["fail", "Failed", "0/1"]);
    let pods = pods_of(&c, "fail");
    assert_eq!(pods.len(), 2);
    // The second pod waited out the back-off (10 s) after the first failed.
    let mut times: Vec<i64> = pods
        .iter()
        .filter_map(|p| p["metadata"]["creationTimestamp"].as_str())
        .filter_map(|t| t.parse::<minik_api::k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .collect();
    times.sort();
    assert!(times[1] - times[0] >= 10, "{pods:?}");
    assert!(
        pods.iter().all(|p| p["status"]["phase"] == "Failed"),
        "{pods:?}"
    );
}

#[test]
fn an_indexed_job_gives_each_pod_its_index() {
    let c = Cluster::with_node("process");
    c.apply(
        "indexed.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      containers:
      - name: worker
        image: busybox
        command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX']
      restartPolicy: Never
",
    );
    let job = job_with(&c, "idx", "Complete");
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    assert_eq!(job["status"]["succeeded"], 3);
    let mut logs: Vec<String> = pods_of(&c, "idx")
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or_default();
            assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
            c.ok(&["logs", name])
        })
        .collect();
    logs.sort();
    assert_eq!(logs, ["index=0\n", "index=1\n", "index=2\n"]);
    assert_eq!(&row(&c, "idx")[..3], ["idx", "Complete", "3/3"]);
}

#[test]
fn pods_that_restart_always_are_refused() {
    let c = Cluster::new();
    c.write(
        "always.yaml",
        "apiVersion: batch/v1
kind: Job
metadata:
  name: always
spec:
  template:
    spec:
      containers:
      - name: a
        image: busybox
      restartPolicy: Always
",
    );
    // The client runs in the cluster's directory, where the manifest is.
    let out = c.minik(&["create", "-f", "always.yaml"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error from server (Invalid): error when creating \"always.yaml\": The Job \"always\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"\n"
    );
}
