//! CronJobs end to end through the `minik` client: a schedule or time zone Kubernetes would
//! refuse is refused with its words, a valid CronJob is listed with kubectl's columns, and the
//! removed `batch/v1beta1` version is refused, naming the kind and the version as kubectl does
//! against a Kubernetes 1.25+ server. (Runs
//! of a schedule are tested with a clock the test moves, in the controller's own tests:
//! waiting here for a minute boundary would make these tests slow.)

mod support;

use support::client::Cluster;

const VALID: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: \"30 2 * * *\"
  timeZone: America/New_York
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: report
            image: busybox
            command: [sh, -c, 'echo done']
";

fn cron_job(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: \"{schedule}\"
{extra}  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: c
            command: [sh, -c, 'echo done']
"
    )
}

#[test]
fn invalid_schedules_and_time_zones_are_refused_in_kubernetes_words() {
    let c = Cluster::new();
    let cases = [
        (
            cron_job("bad", "61 * * * *", ""),
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
        ),
        (
            cron_job("bad", "* * *", ""),
            "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]",
        ),
        (
            cron_job("bad", "0 * * * *", "  timeZone: Mars/Base\n"),
            "spec.timeZone: Invalid value: \"Mars/Base\": unknown time zone Mars/Base",
        ),
        (
            cron_job("bad", "TZ=UTC 0 * * * *", ""),
            "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ),
        (
            cron_job(&"x".repeat(53), "0 * * * *", ""),
            "metadata.name: Invalid value: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\": must be no more than 52 characters",
        ),
    ];
    for (manifest, message) in cases {
        let file = c.write("bad.yaml", &manifest);
        let out = c.minik(&["apply", "-f", &file]);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("is invalid") && out.stderr.contains(message),
            "{message:?} not in {:?}",
            out.stderr
        );
    }
    // A job template whose pods would restart forever is not a Job's.
    let always = cron_job("always", "0 * * * *", "")
        .replace("restartPolicy: Never", "restartPolicy: Always");
    let file = c.write("always.yaml", &always);
    let out = c.minik(&["apply", "-f", &file]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn cron_jobs_are_listed_with_kubectls_columns() {
    let c = Cluster::new();
    c.apply("nightly.yaml", VALID);
    let cj = c.json(&["get", "cronjob", "nightly"]);
    // Defaults, as Kubernetes fills them in.
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
    let out = c.ok(&["get", "cj"]);
    let mut lines = out.lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]),
        "{out}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..9],
        [
            "nightly",
            "30",
            "2",
            "*",
            "*",
            "*",
            "America/New_York",
            "False",
            "0"
        ],
        "{out}"
    );
    assert_eq!(row[9], "<none>", "{out}");
    assert!(support::client::is_age(row[10]), "{out}");
    let wide = c.ok(&["get", "cronjobs", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &header[header.len() - 3..],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
        "{wide}"
    );
    let row: Vec<&str> = wide
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[row.len() - 3..],
        ["report", "busybox", "<none>"],
        "{wide}"
    );
}

#[test]
fn batch_v1beta1_is_refused_as_kubernetes_1_25_refuses_it() {
    let c = Cluster::new();
    let old = VALID.replace("batch/v1", "batch/v1beta1");
    let file = c.write("old.yaml", &old);
    let out = c.minik(&["apply", "-f", &file]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    // kubectl says `no matches for kind "CronJob" in version "batch/v1beta1"`; minik's
    // client names the kind and the version the same way, and where the kind is served.
    assert!(
        out.stderr.contains("\"CronJob\"")
            && out.stderr.contains("version \"batch/v1beta1\"")
            && out.stderr.contains("CronJob is served as batch/v1"),
        "{}",
        out.stderr
    );
    assert!(
        c.minik(&["get", "cronjob", "nightly"]).code != 0,
        "nothing was created"
    );
}
