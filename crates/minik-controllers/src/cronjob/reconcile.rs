//! The CronJob reconciler, a pure function of a CronJob, the Jobs it controls, what the API
//! said about active Jobs missing from the cache, and `now` (Kubernetes' `syncCronJob`,
//! `cleanupFinishedJobs` and `mostRecentScheduleTime` of the CronJob controller v2).

use std::collections::HashSet;
use std::time::Duration;

use minik_api::cron::{self, Schedule, Zone};
use minik_api::k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::jiff::tz::TimeZone;
use minik_api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use minik_api::request::Propagation;
use serde_json::{json, Value};

use crate::action::{Action, Announce, Note, Target};
use crate::kinds::{self, Kind};

/// The component events are recorded as.
pub(crate) const COMPONENT: &str = "cronjob-controller";
/// The annotation a Job gets with the time it was scheduled for (RFC 3339, in the CronJob's
/// time zone, UTC without one).
pub(crate) const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this raise `TooManyMissedTimes`.
const MANY_MISSED: i64 = 100;
/// Added to each requeue, against clock skew (Kubernetes' `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// Most schedule times one search steps through (the search is approximate and bounded
/// upstream too; this only guards against a pathological schedule).
const MAX_TIMES: usize = 1_000_000;

/// What a pass is given.
pub(crate) struct Inputs<'a> {
    pub cron_job: &'a CronJob,
    /// The Jobs whose controller is this CronJob.
    pub jobs: &'a [&'a Job],
    /// Uids of active Jobs that are neither in the cache nor, as the API answered, anywhere.
    pub missing: &'a HashSet<String>,
    pub now: Timestamp,
    /// The zone of schedules without a time zone (the controller's local zone).
    pub local: &'a TimeZone,
}

/// What a pass decided.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    /// Deletes of old or replaced Jobs and events, in order.
    pub actions: Vec<Action>,
    /// The Job to create, and the time it was scheduled for.
    pub create: Option<(Value, Timestamp)>,
    /// The status after this pass, not counting the Job to create.
    pub status: CronJobStatus,
    /// Whether `status` differs from the stored one.
    pub status_changed: bool,
    pub requeue_after: Option<Duration>,
}

/// How many start times were missed since the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missed {
    None,
    Few,
    Many,
}

/// The times a schedule search found: where it started, the latest time due (if any) and how
/// many were missed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Recent {
    pub earliest: Timestamp,
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

fn time_of(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// Kubernetes' `mostRecentScheduleTime`: the latest time the schedule was due since the last
/// scheduled time (or the creation), not before `startingDeadlineSeconds` ago when
/// `with_deadline`. The count of missed times is the same approximation upstream makes.
pub(crate) fn most_recent_schedule_time(
    cj: &CronJob,
    status: &CronJobStatus,
    now: Timestamp,
    schedule: &Schedule,
    local: &TimeZone,
    with_deadline: bool,
) -> Result<Recent, String> {
    let mut earliest = time_of(&status.last_schedule_time)
        .or_else(|| kinds::created_at(&cj.metadata))
        .unwrap_or(now);
    let deadline = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds);
    if let (true, Some(deadline)) = (with_deadline, deadline) {
        let limit = now
            .checked_sub(SignedDuration::from_secs(deadline))
            .unwrap_or(now);
        if limit > earliest {
            earliest = limit;
        }
    }
    let none = |most_recent, missed| Recent {
        earliest,
        most_recent,
        missed,
    };
    let too_close = || "time difference between two schedules is less than 1 second".to_owned();
    let t1 = schedule.next(earliest, local).ok_or_else(too_close)?;
    if now < t1 {
        return Ok(none(None, Missed::None));
    }
    let t2 = schedule.next(t1, local).ok_or_else(too_close)?;
    if now < t2 {
        return Ok(none(Some(t1), Missed::None));
    }
    let between = t2.as_second() - t1.as_second();
    if between < 1 {
        return Err(too_close());
    }
    let elapsed = now.as_second() - t1.as_second();
    let count = elapsed / between + 1;
    let start = t1
        .as_second()
        .saturating_add((count - 2).saturating_mul(between));
    let mut most_recent = None;
    let mut t = Timestamp::from_second(start)
        .ok()
        .and_then(|s| schedule.next(s, local));
    let mut steps = 0;
    while let Some(at) = t.filter(|at| *at <= now) {
        most_recent = Some(at);
        steps += 1;
        if steps > MAX_TIMES {
            break;
        }
        t = schedule.next(at, local);
    }
    let missed = if count > MANY_MISSED {
        Missed::Many
    } else if count > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok(none(most_recent, missed))
}

/// Kubernetes' `nextScheduleTimeDuration`: how long until the schedule is next due, plus
/// 100 ms; `None` when it never is.
pub(crate) fn next_schedule_delay(
    cj: &CronJob,
    status: &CronJobStatus,
    now: Timestamp,
    schedule: &Schedule,
    local: &TimeZone,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, status, now, schedule, local, false) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Recent {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let next = schedule.next(from, local)?;
    let delay = now.duration_until(next);
    let delay = Duration::try_from(delay).unwrap_or(Duration::ZERO);
    Some(delay + NEXT_SCHEDULE_DELTA)
}

/// `Complete` or `Failed` when a Job has finished.
fn finished(job: &Job) -> Option<&'static str> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
            ("Complete", "True") => Some("Complete"),
            ("Failed", "True") => Some("Failed"),
            _ => None,
        })
}

fn succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Complete" && c.status == "True")
}

fn in_active(status: &CronJobStatus, uid: &str) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == Some(uid))
}

fn remove_active(status: &mut CronJobStatus, uid: &str) {
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// The reference a CronJob's status keeps of one of its Jobs.
pub(crate) fn job_reference(job: &Value) -> ObjectReference {
    let text = |p: &str| job.pointer(p).and_then(Value::as_str).map(str::to_owned);
    ObjectReference {
        api_version: Some(Kind::Job.api_version().to_owned()),
        kind: Some(Kind::Job.name().to_owned()),
        namespace: text("/metadata/namespace"),
        name: text("/metadata/name"),
        uid: text("/metadata/uid"),
        resource_version: text("/metadata/resourceVersion"),
        field_path: None,
    }
}

fn reference(cj: &CronJob) -> ObjectReference {
    ObjectReference {
        api_version: Some(Kind::CronJob.api_version().to_owned()),
        kind: Some(Kind::CronJob.name().to_owned()),
        namespace: cj.metadata.namespace.clone(),
        name: cj.metadata.name.clone(),
        uid: cj.metadata.uid.clone(),
        resource_version: cj.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// An event about the CronJob.
pub(crate) fn note(
    cj: &CronJob,
    type_: &'static str,
    reason: &'static str,
    message: String,
) -> Action {
    Action::Record(Note {
        involved: reference(cj),
        component: COMPONENT,
        type_,
        reason,
        message,
    })
}

/// The name of the Job for a scheduled time: the CronJob's name and the minutes since the
/// epoch (Kubernetes' `getJobName`), the same for every attempt at that time.
pub(crate) fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        kinds::name(&cj.metadata),
        scheduled.as_second() / 60
    )
}

/// `t` as Go's RFC 3339 layout writes it in `zone` (`Z` for a zero offset).
pub(crate) fn rfc3339_in(t: Timestamp, zone: &TimeZone) -> String {
    let zoned = t.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// `t` in UTC as Go's RFC 1123 layout with a numeric zone writes it.
fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

/// The Job a CronJob runs at `scheduled`: the job template's labels, annotations and spec,
/// the scheduled-time annotation, and the CronJob as its controller.
pub(crate) fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Value {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let zone = match spec.time_zone.as_deref().map(cron::load_location) {
        Some(Ok(Zone::Named(tz))) => tz,
        _ => TimeZone::UTC,
    };
    annotations.insert(SCHEDULED_TIMESTAMP.to_owned(), rfc3339_in(scheduled, &zone));
    let mut job = json!({
        "apiVersion": Kind::Job.api_version(),
        "kind": Kind::Job.name(),
        "metadata": {
            "name": job_name(cj, scheduled),
            "namespace": kinds::namespace(&cj.metadata),
            "annotations": annotations,
            "ownerReferences": [kinds::controller_reference(Kind::CronJob, &cj.metadata)],
        },
        "spec": template.spec.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)).unwrap_or_else(|| json!({})),
    });
    if let Some(labels) = meta.labels.filter(|l| !l.is_empty()) {
        job["metadata"]["labels"] = json!(labels);
    }
    job
}

/// The schedule as the controller reads it: with `TZ=<timeZone> ` in front when a valid time
/// zone is set, unless the schedule names its own (then an `UnsupportedSchedule` warning).
fn format_schedule(cj: &CronJob, actions: &mut Vec<Action>) -> String {
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.schedule.contains("TZ") {
        actions.push(note(
            cj,
            "Warning",
            "UnsupportedSchedule",
            format!(
                "CRON_TZ or TZ used in schedule {} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                cron::go_quote(&spec.schedule)
            ),
        ));
        return spec.schedule;
    }
    match spec.time_zone.as_deref() {
        Some(tz) if cron::load_location(tz).is_ok() => format!("TZ={tz} {}", spec.schedule),
        _ => spec.schedule,
    }
}

/// Deletes the oldest finished Jobs beyond the history limits (by start time, unstarted last,
/// then by name), as Kubernetes' `cleanupFinishedJobs`; Jobs being deleted already are left
/// alone. Their references leave the active list.
fn cleanup(input: &Inputs<'_>, status: &mut CronJobStatus, actions: &mut Vec<Action>) -> bool {
    let spec = input.cron_job.spec.clone().unwrap_or_default();
    let mut targets = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = input
            .jobs
            .iter()
            .copied()
            .filter(|j| !kinds::is_deleting(&j.metadata) && finished(j) == Some(kind))
            .collect();
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        done.sort_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| time_of(&s.start_time));
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => kinds::name(&a.metadata).cmp(kinds::name(&b.metadata)),
            }
        });
        for job in done.into_iter().take(excess) {
            remove_active(status, kinds::uid(&job.metadata));
            targets.push(Target {
                name: kinds::name(&job.metadata).to_owned(),
                uid: kinds::uid(&job.metadata).to_owned(),
                resource_version: None,
            });
        }
    }
    if targets.is_empty() {
        return false;
    }
    actions.push(delete_jobs(input.cron_job, targets));
    true
}

/// Deletes Jobs in the background (their pods go after them), announcing each.
fn delete_jobs(cj: &CronJob, targets: Vec<Target>) -> Action {
    Action::Delete {
        kind: Kind::Job,
        namespace: kinds::namespace(&cj.metadata).to_owned(),
        targets,
        propagation: Some(Propagation::Background),
        announce: Some(Announce {
            involved: reference(cj),
            component: COMPONENT,
            reason: "SuccessfulDelete",
            verb: "Deleted job ",
        }),
    }
}

/// One pass over a CronJob.
pub(crate) fn reconcile(input: &Inputs<'_>) -> Decision {
    let cj = input.cron_job;
    let spec = cj.spec.clone().unwrap_or_default();
    let stored = cj.status.clone().unwrap_or_default();
    let mut status = stored.clone();
    let mut actions = Vec::new();
    cleanup(input, &mut status, &mut actions);

    let mut children = HashSet::new();
    for job in input.jobs {
        let uid = kinds::uid(&job.metadata);
        children.insert(uid.to_owned());
        let found = in_active(&status, uid);
        let done = finished(job);
        if !found && done.is_none() {
            actions.push(note(
                cj,
                "Warning",
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    kinds::name(&job.metadata)
                ),
            ));
        } else if let (true, Some(done)) = (found, done) {
            remove_active(&mut status, uid);
            actions.push(note(
                cj,
                "Normal",
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, status: {done}",
                    kinds::name(&job.metadata)
                ),
            ));
        } else if succeeded(job) {
            let completed = job
                .status
                .as_ref()
                .and_then(|s| time_of(&s.completion_time));
            if let Some(completed) = completed {
                if time_of(&status.last_successful_time).is_none_or(|last| completed > last) {
                    status.last_successful_time = Some(Time(completed));
                }
            }
        }
    }
    let gone: Vec<ObjectReference> = status
        .active
        .iter()
        .flatten()
        .filter(|r| {
            let uid = r.uid.as_deref().unwrap_or_default();
            !children.contains(uid) && input.missing.contains(uid)
        })
        .cloned()
        .collect();
    for r in gone {
        actions.push(note(
            cj,
            "Normal",
            "MissingJob",
            format!(
                "Active job went missing: {}",
                r.name.as_deref().unwrap_or_default()
            ),
        ));
        remove_active(&mut status, r.uid.as_deref().unwrap_or_default());
    }
    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }

    let mut decision = Decision {
        actions,
        ..Decision::default()
    };
    let finish = |mut decision: Decision, status: CronJobStatus| {
        decision.status_changed = status != stored;
        decision.status = status;
        decision
    };
    if kinds::is_deleting(&cj.metadata) {
        return finish(decision, status);
    }
    if let Some(tz) = spec.time_zone.as_deref() {
        if let Err(e) = cron::load_location(tz) {
            decision.actions.push(note(
                cj,
                "Warning",
                "UnknownTimeZone",
                format!("invalid timeZone: {}: {e}", cron::go_quote(tz)),
            ));
            return finish(decision, status);
        }
    }
    if spec.suspend == Some(true) {
        return finish(decision, status);
    }
    let text = format_schedule(cj, &mut decision.actions);
    let schedule = match cron::parse(&text) {
        Ok(schedule) => schedule,
        Err(e) => {
            decision.actions.push(note(
                cj,
                "Warning",
                "UnparseableSchedule",
                format!(
                    "unparseable schedule: {} : {e}",
                    cron::go_quote(&spec.schedule)
                ),
            ));
            return finish(decision, status);
        }
    };
    let now = input.now;
    let local = input.local;
    let requeue = |status: &CronJobStatus| next_schedule_delay(cj, status, now, &schedule, local);
    let scheduled = match most_recent_schedule_time(cj, &status, now, &schedule, local, true) {
        Err(e) => {
            decision.actions.push(note(
                cj,
                "Warning",
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return finish(decision, status);
        }
        Ok(Recent {
            most_recent: None, ..
        }) => {
            decision.requeue_after = requeue(&status);
            return finish(decision, status);
        }
        Ok(Recent {
            most_recent: Some(t),
            missed,
            ..
        }) => {
            if missed == Missed::Many {
                decision.actions.push(note(
                    cj,
                    "Warning",
                    "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                ));
            }
            t
        }
    };
    if let Some(deadline) = spec.starting_deadline_seconds {
        let late = scheduled
            .checked_add(SignedDuration::from_secs(deadline))
            .is_ok_and(|limit| limit < now);
        if late {
            decision.actions.push(note(
                cj,
                "Warning",
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    rfc1123z(scheduled)
                ),
            ));
            decision.requeue_after = requeue(&status);
            return finish(decision, status);
        }
    }
    let name = job_name(cj, scheduled);
    let namespace = kinds::namespace(&cj.metadata);
    let already = status.active.iter().flatten().any(|r| {
        r.name.as_deref() == Some(name.as_str()) && r.namespace.as_deref() == Some(namespace)
    }) || time_of(&status.last_schedule_time) == Some(scheduled);
    if already {
        decision.requeue_after = requeue(&status);
        return finish(decision, status);
    }
    let active = status.active.clone().unwrap_or_default();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            decision.actions.push(note(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            decision.requeue_after = requeue(&status);
            return finish(decision, status);
        }
        Some("Replace") if !active.is_empty() => {
            let targets = active
                .iter()
                .map(|r| Target {
                    name: r.name.clone().unwrap_or_default(),
                    uid: r.uid.clone().unwrap_or_default(),
                    resource_version: None,
                })
                .collect();
            decision.actions.push(delete_jobs(cj, targets));
            status.active = None;
        }
        _ => {}
    }
    decision.create = Some((job_from_template(cj, scheduled), scheduled));
    // The requeue counts from the time being started now, as if its Job was created.
    let mut after = status.clone();
    after.last_schedule_time = Some(Time(scheduled));
    decision.requeue_after = requeue(&after);
    finish(decision, status)
}

/// The status patch that makes the stored status `new` (fields it no longer has are removed).
pub(crate) fn status_patch(cj: &CronJob, new: &CronJobStatus) -> Value {
    let old = serde_json::to_value(cj.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let new = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    json!({
        "metadata": {"resourceVersion": kinds::resource_version(&cj.metadata)},
        "status": crate::action::replace_keys(&old, &new),
    })
}
