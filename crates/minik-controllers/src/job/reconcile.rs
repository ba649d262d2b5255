//! The Job reconciler, a pure function of the Job, its pods, `now` and the back-off settings,
//! after Kubernetes' `pkg/controller/job` (`syncJob`).
//!
//! Counting is exact through the `batch.kubernetes.io/job-tracking` finalizer every pod is
//! created with, as upstream does it:
//! 1. a finished pod that still has the finalizer and is not yet listed gets its uid written to
//!    `status.uncountedTerminatedPods` (succeeded or failed);
//! 2. once the stored status lists it, its finalizer is removed;
//! 3. once the pod shows no finalizer (or is gone), its uid leaves the list for the
//!    `succeeded`/`failed` count.
//!
//! Every status write carries the Job's `resourceVersion`, so a pass working from a stale Job
//! fails with a conflict instead of counting twice; a pod deleted before it finished still holds
//! its finalizer, so it is counted (as failed) before it goes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use minik_api::k8s_openapi::api::batch::v1::{Job, JobSpec, PodFailurePolicyRule};
use minik_api::k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod,
};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::podview::PodView;
use minik_api::request::Propagation;
use serde_json::{json, Value};

use crate::action::{replace_keys, Action, Announce, Note, ObjectPatch, Plan, Target};
use crate::kinds::{self, has_finalizer, is_deleting, Kind};
use crate::names::generate_prefix;
use crate::pods::{self, is_ready, phase};

/// The finalizer that keeps a Job's pod until its outcome is counted.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label of an Indexed Job's pod holding its completion index.
pub(crate) const INDEX_KEY: &str = minik_api::wellknown::JOB_COMPLETION_INDEX;
/// The environment variable an Indexed Job's containers read their index from.
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The component that reports the Job controller's events.
pub(crate) const COMPONENT: &str = "job-controller";

/// The first delay before a failed pod is replaced, doubled per further failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest delay before a failed pod is replaced.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(6 * 60);

/// What the reconciler is given besides the Job.
pub(crate) struct Inputs<'a, 'p> {
    /// The pods the Job controls (controller reference with its uid).
    pub pods: &'a [&'p PodView],
    /// No creates or deletes of earlier passes are still unobserved.
    pub may_manage: bool,
    pub now: Timestamp,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// Why a Job failed, or what made it succeed: the reason and message of its conditions.
#[derive(Clone, Debug, PartialEq)]
struct Finish {
    reason: String,
    message: String,
}

/// A Job's pod as the reconciler classifies it.
struct Classified<'p> {
    pod: &'p PodView,
    uid: &'p str,
    tracked: bool,
    succeeded: bool,
    /// Counted as failed: the Failed phase, or deleted before finishing (unless only failed
    /// pods are replaced).
    failed: bool,
    active: bool,
    terminating: bool,
    index: Option<i32>,
    /// Failed, and the pod failure policy says to ignore it: neither counted nor backed off.
    ignored: bool,
}

fn spec_of(job: &Job) -> JobSpec {
    job.spec.clone().unwrap_or_default()
}

/// The reference to a Job that its events carry.
pub(crate) fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn note(job: &Job, type_: &'static str, reason: &'static str, message: String) -> Action {
    Action::Record(Note {
        involved: reference(job),
        component: COMPONENT,
        type_,
        reason,
        message,
    })
}

/// The stored status as JSON (an empty object when there is none).
fn stored_status(job: &Job) -> Value {
    job.status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}))
}

fn conditions(status: &Value) -> Vec<Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition<'a>(conds: &'a [Value], type_: &str) -> Option<&'a Value> {
    conds
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// Sets a condition (type, status, reason, message) in `conds`, keeping its transition time
/// when its status stays. Returns whether anything changed.
fn set_condition(
    conds: &mut Vec<Value>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c["type"] == type_) {
        if c["status"] == status && c["reason"] == reason && c["message"] == message {
            return false;
        }
        if c["status"] != status {
            c["lastTransitionTime"] = json!(now);
        }
        c["status"] = json!(status);
        c["reason"] = json!(reason);
        c["message"] = json!(message);
        c["lastProbeTime"] = json!(now);
        return true;
    }
    conds.push(json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now,
    }));
    true
}

fn uid_list(status: &Value, key: &str) -> BTreeSet<String> {
    status
        .pointer(&format!("/uncountedTerminatedPods/{key}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The completion index of an Indexed Job's pod, from its annotation (or label).
pub(crate) fn pod_index(pod: &PodView) -> Option<i32> {
    pod.annotation(INDEX_KEY)
        .or_else(|| {
            kinds::labels(&pod.metadata)
                .get(INDEX_KEY)
                .map(String::as_str)
        })
        .and_then(|i| i.parse().ok())
        .filter(|i: &i32| *i >= 0)
}

/// Parses `completedIndexes` (`1,3-5`) into a set.
pub(crate) fn parse_indexes(text: &str, limit: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            for i in lo.max(0)..=hi.min(limit.saturating_sub(1)) {
                out.insert(i);
            }
        }
    }
    out
}

/// Formats a set of indexes as Kubernetes does: ranges of three or more... and of two as
/// `a-b` too (`0-2,4`).
pub(crate) fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// When a finished pod finished: its containers' last finish, else when it stopped being
/// ready, else its deletion, else its creation.
fn finish_time(pod: &PodView) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let from_containers = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    from_containers
        .or_else(|| {
            status?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready" && c.status == "False")
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        })
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| kinds::created_at(&pod.metadata))
}

/// The first rule of the pod failure policy that matches a failed pod, with its index.
fn matching_rule<'r>(
    rules: &'r [PodFailurePolicyRule],
    pod: &PodView,
) -> Option<(usize, &'r PodFailurePolicyRule, String)> {
    let status = pod.status.as_ref()?;
    for (i, rule) in rules.iter().enumerate() {
        if let Some(codes) = rule.on_exit_codes.as_ref() {
            let statuses = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten());
            for c in statuses {
                if codes.container_name.as_deref().is_some_and(|n| n != c.name) {
                    continue;
                }
                let Some(code) = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                if code == 0 {
                    continue;
                }
                let listed = codes.values.contains(&code);
                let hit = match codes.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                if hit {
                    let message = format!(
                        "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {i}",
                        c.name,
                        kinds::namespace(&pod.metadata),
                        kinds::name(&pod.metadata),
                        rule.action,
                    );
                    return Some((i, rule, message));
                }
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let hit = status.conditions.iter().flatten().any(|c| {
                c.type_ == pattern.type_
                    && c.status
                        == if pattern.status.is_empty() {
                            "True"
                        } else {
                            &pattern.status
                        }
            });
            if hit {
                let message = format!(
                    "Pod {}/{} has condition {} matching {} rule at index {i}",
                    kinds::namespace(&pod.metadata),
                    kinds::name(&pod.metadata),
                    pattern.type_,
                    rule.action,
                );
                return Some((i, rule, message));
            }
        }
    }
    None
}

/// The back-off before the next pod may be created after failures: `base * 2^(n-1)` after
/// `n` failures since the last success, capped at `max`, counted from the last failure.
pub(crate) fn backoff_remaining(
    failure_times: &[Timestamp],
    last_success: Option<Timestamp>,
    now: Timestamp,
    base: Duration,
    max: Duration,
) -> Option<Duration> {
    let recent: Vec<Timestamp> = failure_times
        .iter()
        .copied()
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let last = recent.iter().max()?;
    let exponent = u32::try_from(recent.len() - 1).unwrap_or(u32::MAX).min(31);
    let delay = base.saturating_mul(1u32 << exponent).min(max);
    let elapsed = now.duration_since(*last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.checked_sub(elapsed).filter(|d| !d.is_zero())
}

fn seconds_until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// A merge patch removing the tracking finalizer from a pod, only from the version judged.
fn remove_finalizer(pod: &PodView) -> ObjectPatch {
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    ObjectPatch {
        namespace: kinds::namespace(&pod.metadata).to_owned(),
        name: kinds::name(&pod.metadata).to_owned(),
        body: json!({"metadata": {
            "resourceVersion": kinds::resource_version(&pod.metadata),
            "finalizers": if rest.is_empty() { Value::Null } else { json!(rest) },
        }}),
    }
}

/// One action removing the tracking finalizer from all of `pods` at once, if there are any.
fn release(pods: Vec<ObjectPatch>) -> Option<Action> {
    (!pods.is_empty()).then_some(Action::PatchEach {
        kind: Kind::Pod,
        patches: pods,
    })
}

/// Removes the tracking finalizer from pods whose Job is gone (or is another Job now).
pub(crate) fn release_orphans(orphans: &[&PodView]) -> Option<Action> {
    release(
        orphans
            .iter()
            .filter(|p| has_finalizer(&p.metadata, TRACKING_FINALIZER))
            .map(|p| remove_finalizer(p))
            .collect(),
    )
}

/// A pod made from the Job's template, for `index` when the Job is Indexed.
fn new_pod(job: &Job, spec: &JobSpec, index: Option<i32>, suffix: &str) -> Option<Value> {
    let job_name = kinds::name(&job.metadata);
    let template = &spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    let prefix = match index {
        Some(i) => generate_prefix(&format!("{job_name}-{i}")),
        None => generate_prefix(job_name),
    };
    if let Some(i) = index {
        labels.insert(INDEX_KEY.into(), i.to_string());
        annotations.insert(INDEX_KEY.into(), i.to_string());
        if pod_spec.hostname.as_deref().is_none_or(str::is_empty) {
            pod_spec.hostname = Some(format!("{job_name}-{i}"));
        }
        let env = EnvVar {
            name: INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                }),
                ..Default::default()
            }),
        };
        for c in pod_spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(pod_spec.containers.iter_mut())
        {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}{suffix}")),
            generate_name: Some(prefix),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![kinds::controller_reference(Kind::Job, &job.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    };
    serde_json::to_value(pod).ok()
}

fn targets(pods: &[&PodView]) -> Vec<Target> {
    pods.iter()
        .map(|p| Target {
            name: kinds::name(&p.metadata).to_owned(),
            uid: kinds::uid(&p.metadata).to_owned(),
            resource_version: None,
        })
        .collect()
}

fn delete_pods(job: &Job, pods: &[&PodView]) -> Action {
    Action::Delete {
        kind: Kind::Pod,
        namespace: kinds::namespace(&job.metadata).to_owned(),
        targets: targets(pods),
        propagation: None,
        announce: Some(Announce {
            involved: reference(job),
            component: COMPONENT,
            reason: "SuccessfulDelete",
            verb: "Deleted pod: ",
        }),
    }
}

/// One pass over a Job. `suffix` makes the random part of new pod names.
pub(crate) fn reconcile(
    job: &Job,
    inputs: &Inputs<'_, '_>,
    suffix: &mut dyn FnMut() -> String,
) -> Plan {
    let mut plan = Plan::default();
    let spec = spec_of(job);
    let now = inputs.now;
    let now_text = kinds::whole_seconds(now).to_string();
    let old_status = stored_status(job);
    let mut conds = conditions(&old_status);
    let namespace = kinds::namespace(&job.metadata).to_owned();
    let finished = condition(&conds, "Complete").is_some() || condition(&conds, "Failed").is_some();
    let job_deleting = is_deleting(&job.metadata);

    if finished || job_deleting {
        // Nothing is counted any more: every pod is let go.
        plan.actions.extend(release_orphans(inputs.pods));
        if finished && !job_deleting {
            ttl(job, &spec, &conds, now, &mut plan);
        }
        return plan;
    }

    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let only_failed_replaced = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();
    let rules = spec
        .pod_failure_policy
        .as_ref()
        .map(|p| p.rules.as_slice())
        .unwrap_or_default();

    let pods: Vec<Classified<'_>> = inputs
        .pods
        .iter()
        .map(|p| {
            let ph = phase(p);
            let deleting = is_deleting(&p.metadata);
            let succeeded = ph == "Succeeded";
            let failed = ph == "Failed" || (!only_failed_replaced && deleting && !succeeded);
            Classified {
                pod: p,
                uid: kinds::uid(&p.metadata),
                tracked: has_finalizer(&p.metadata, TRACKING_FINALIZER),
                succeeded,
                failed,
                active: !succeeded && ph != "Failed" && !deleting,
                terminating: deleting && !succeeded && ph != "Failed",
                index: if indexed { pod_index(p) } else { None },
                ignored: ph == "Failed"
                    && matching_rule(rules, p).is_some_and(|(_, r, _)| r.action == "Ignore"),
            }
        })
        .collect();

    // 1-3: counting through uncountedTerminatedPods.
    let stored_succeeded = uid_list(&old_status, "succeeded");
    let stored_failed = uid_list(&old_status, "failed");
    let mut uncounted_succeeded = stored_succeeded.clone();
    let mut uncounted_failed = stored_failed.clone();
    let mut succeeded_count = old_status["succeeded"].as_i64().unwrap_or(0);
    let mut failed_count = old_status["failed"].as_i64().unwrap_or(0);
    let mut completed: BTreeSet<i32> = parse_indexes(
        old_status["completedIndexes"].as_str().unwrap_or_default(),
        completions.unwrap_or(0),
    );
    let mut failure: Option<Finish> = condition(&conds, "FailureTarget").map(|c| Finish {
        reason: c["reason"].as_str().unwrap_or_default().to_owned(),
        message: c["message"].as_str().unwrap_or_default().to_owned(),
    });
    let by_uid: BTreeMap<&str, &Classified<'_>> = pods.iter().map(|c| (c.uid, c)).collect();
    let mut released = Vec::new();
    for c in pods.iter().filter(|c| c.tracked) {
        let listed = stored_succeeded.contains(c.uid) || stored_failed.contains(c.uid);
        if listed {
            released.push(remove_finalizer(c.pod));
            continue;
        }
        if c.succeeded {
            uncounted_succeeded.insert(c.uid.to_owned());
            if let Some(i) = c.index.filter(|i| completions.is_some_and(|n| *i < n)) {
                completed.insert(i);
            }
        } else if c.failed || (failure.is_some() && c.terminating) {
            // Pods deleted because the Job is suspended are not failures.
            let suspended_out = suspended && is_deleting(&c.pod.metadata);
            let mut counts = !suspended_out;
            if c.ignored {
                counts = false;
            } else if phase(c.pod) == "Failed" && failure.is_none() {
                if let Some((_, rule, message)) = matching_rule(rules, c.pod) {
                    if rule.action == "FailJob" {
                        failure = Some(Finish {
                            reason: "PodFailurePolicy".into(),
                            message,
                        });
                    }
                }
            }
            if counts {
                uncounted_failed.insert(c.uid.to_owned());
            } else {
                // Not counted at all: nothing to record before letting it go.
                released.push(remove_finalizer(c.pod));
            }
        }
    }
    // Recorded uids whose pods no longer hold the finalizer (or are gone) are counted now.
    for uid in &stored_succeeded {
        if by_uid.get(uid.as_str()).is_none_or(|c| !c.tracked) {
            uncounted_succeeded.remove(uid);
            succeeded_count += 1;
        }
    }
    for uid in &stored_failed {
        if by_uid.get(uid.as_str()).is_none_or(|c| !c.tracked) {
            uncounted_failed.remove(uid);
            failed_count += 1;
        }
    }
    let total_succeeded = succeeded_count + uncounted_succeeded.len() as i64;
    let total_failed = failed_count + uncounted_failed.len() as i64;

    let active: Vec<&Classified<'_>> = pods.iter().filter(|c| c.active).collect();
    let terminating = pods.iter().filter(|c| c.terminating).count();
    let mut start_time = old_status["startTime"].as_str().map(str::to_owned);

    // Failure: the pod failure policy, the backoff limit, the deadline.
    let mut success_met = condition(&conds, "SuccessCriteriaMet").is_some();
    if failure.is_none() && !success_met {
        let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(6));
        let restarts: i64 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active
                .iter()
                .filter_map(|c| c.pod.status.as_ref())
                .flat_map(|s| {
                    s.container_statuses
                        .iter()
                        .flatten()
                        .chain(s.init_container_statuses.iter().flatten())
                })
                .map(|s| i64::from(s.restart_count))
                .sum()
        } else {
            0
        };
        // Restarts in place count like failed pods (a limit of 0 allows none).
        let restarts_exceeded = restarts > 0 && restarts >= backoff_limit.max(1);
        if total_failed > backoff_limit || restarts_exceeded {
            failure = Some(Finish {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if let (Some(deadline), Some(start), false) = (
            spec.active_deadline_seconds,
            start_time
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok()),
            suspended,
        ) {
            let end = start
                .checked_add(std::time::Duration::from_secs(deadline.max(0) as u64))
                .unwrap_or(start);
            if now >= end {
                failure = Some(Finish {
                    reason: "DeadlineExceeded".into(),
                    message: "Job was active longer than specified deadline".into(),
                });
            } else {
                plan.requeue(seconds_until(now, end));
            }
        }
        if let Some(f) = failure.as_ref() {
            set_condition(
                &mut conds,
                "FailureTarget",
                "True",
                &f.reason,
                &f.message,
                &now_text,
            );
        }
    } else if let Some(f) = failure.as_ref() {
        set_condition(
            &mut conds,
            "FailureTarget",
            "True",
            &f.reason,
            &f.message,
            &now_text,
        );
    }

    // Success.
    let done = if indexed {
        completions.is_some_and(|n| completed.len() as i64 >= i64::from(n))
    } else {
        match completions {
            Some(n) => total_succeeded >= i64::from(n),
            None => total_succeeded > 0 && active.is_empty(),
        }
    };
    if failure.is_none() && done && !success_met {
        success_met = true;
        set_condition(
            &mut conds,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            &now_text,
        );
    }

    let mut manage: Option<Action> = None;
    let mut active_after = active.len();
    if failure.is_some() || success_met {
        // Finishing: no more pods; the running ones go.
        if !active.is_empty() && inputs.may_manage {
            let doomed: Vec<&PodView> = active.iter().map(|c| c.pod).collect();
            manage = Some(delete_pods(job, &doomed));
            active_after = 0;
        }
        let settled = active_after == 0
            && terminating == 0
            && manage.is_none()
            && uncounted_succeeded.is_empty()
            && uncounted_failed.is_empty()
            && pods.iter().all(|c| !c.tracked);
        if settled {
            if let Some(f) = failure.as_ref() {
                set_condition(
                    &mut conds, "Failed", "True", &f.reason, &f.message, &now_text,
                );
                let reason = match f.reason.as_str() {
                    "BackoffLimitExceeded" => "BackoffLimitExceeded",
                    "DeadlineExceeded" => "DeadlineExceeded",
                    _ => "PodFailurePolicy",
                };
                plan.actions
                    .push(note(job, "Warning", reason, f.message.clone()));
            } else {
                set_condition(
                    &mut conds,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now_text,
                );
                plan.actions
                    .push(note(job, "Normal", "Completed", "Job completed".into()));
            }
        }
    } else if suspended {
        if !active.is_empty() && inputs.may_manage {
            let doomed: Vec<&PodView> = active.iter().map(|c| c.pod).collect();
            manage = Some(delete_pods(job, &doomed));
            active_after = 0;
        }
        if set_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &now_text,
        ) {
            plan.actions
                .push(note(job, "Normal", "Suspended", "Job suspended".into()));
        }
    } else {
        if condition(&conds, "Suspended").is_some() {
            set_condition(
                &mut conds,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &now_text,
            );
            plan.actions
                .push(note(job, "Normal", "Resumed", "Job resumed".into()));
            start_time = None;
        }
        if start_time.is_none() {
            start_time = Some(now_text.clone());
            if let Some(deadline) = spec.active_deadline_seconds {
                plan.requeue(Duration::from_secs(deadline.max(0) as u64));
            }
        }
        if inputs.may_manage {
            let (action, after) = size(
                job,
                &spec,
                &pods,
                &active,
                &completed,
                total_succeeded,
                inputs,
                suffix,
                &mut plan,
            );
            manage = action;
            active_after = after;
        }
    }

    // The status, written when it changed.
    let complete_now =
        condition(&conds, "Complete").is_some() || condition(&conds, "Failed").is_some();
    let ready = if complete_now {
        0
    } else {
        active.iter().filter(|c| is_ready(c.pod)).count()
    };
    let mut status = json!({
        "ready": ready,
        "terminating": terminating,
        "uncountedTerminatedPods": {},
    });
    // As upstream, the active count includes the pods this pass creates and leaves out those
    // it deletes.
    if active_after > 0 && !complete_now {
        status["active"] = json!(active_after);
    }
    if succeeded_count > 0 {
        status["succeeded"] = json!(succeeded_count);
    }
    if failed_count > 0 {
        status["failed"] = json!(failed_count);
    }
    if let Some(start) = start_time {
        status["startTime"] = json!(start);
    }
    if !conds.is_empty() {
        status["conditions"] = json!(conds);
    }
    if indexed {
        status["completedIndexes"] = json!(format_indexes(&completed));
    }
    if condition(&conds, "Complete").is_some() {
        status["completionTime"] = old_status
            .get("completionTime")
            .cloned()
            .unwrap_or_else(|| json!(now_text));
    }
    let mut uncounted = json!({});
    if !uncounted_succeeded.is_empty() {
        uncounted["succeeded"] = json!(uncounted_succeeded);
    }
    if !uncounted_failed.is_empty() {
        uncounted["failed"] = json!(uncounted_failed);
    }
    status["uncountedTerminatedPods"] = uncounted.clone();
    let status_changed = status != old_status;
    if status_changed {
        let mut patch = replace_keys(&old_status, &status);
        let old_uncounted = old_status
            .get("uncountedTerminatedPods")
            .cloned()
            .unwrap_or_else(|| json!({}));
        patch["uncountedTerminatedPods"] = replace_keys(&old_uncounted, &uncounted);
        // The status goes first: uids are recorded before finalizers go, and a stale Job
        // fails here with a conflict before anything else is done.
        plan.actions.insert(
            0,
            Action::Patch {
                kind: Kind::Job,
                namespace: namespace.clone(),
                name: kinds::name(&job.metadata).to_owned(),
                body: json!({
                    "metadata": {"resourceVersion": kinds::resource_version(&job.metadata)},
                    "status": patch,
                }),
                status: true,
            },
        );
    }
    // New pods before the finalizers of finished ones go (as upstream): a round's creates do
    // not wait behind its tens of finalizer patches, which only release what is counted.
    if let Some(m) = manage {
        plan.actions.insert(usize::from(status_changed), m);
    }
    // The finalizers last, all at once: each only releases a pod whose outcome is stored.
    plan.actions.extend(release(released));
    if complete_now {
        ttl(job, &spec, &conds, now, &mut plan);
    }
    plan
}

/// Creates or deletes pods so that as many run as the Job wants now; returns the action and
/// how many pods will be active after it.
#[allow(clippy::too_many_arguments)]
fn size(
    job: &Job,
    spec: &JobSpec,
    pods: &[Classified<'_>],
    active: &[&Classified<'_>],
    completed: &BTreeSet<i32>,
    total_succeeded: i64,
    inputs: &Inputs<'_, '_>,
    suffix: &mut dyn FnMut() -> String,
    plan: &mut Plan,
) -> (Option<Action>, usize) {
    let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let want: i64 = match spec.completions {
        Some(n) if indexed => parallelism.min(i64::from(n) - completed.len() as i64),
        Some(n) => parallelism.min(i64::from(n) - total_succeeded),
        None if total_succeeded > 0 => active.len() as i64,
        None => parallelism,
    }
    .max(0);
    let have = active.len() as i64;
    if have > want {
        let all: Vec<&PodView> = active.iter().map(|c| c.pod).collect();
        let doomed = pods::to_delete(&all, &all, (have - want) as usize);
        return (Some(delete_pods(job, &doomed)), want as usize);
    }
    if indexed {
        // Duplicates of an index, and pods of indexes already done, go first.
        let mut seen = BTreeSet::new();
        let extra: Vec<&PodView> = active
            .iter()
            .filter(|c| match c.index {
                Some(i) => completed.contains(&i) || !seen.insert(i),
                None => true,
            })
            .map(|c| c.pod)
            .collect();
        if !extra.is_empty() {
            return (Some(delete_pods(job, &extra)), active.len() - extra.len());
        }
    }
    if have == want {
        return (None, have as usize);
    }
    // Back-off after failures, from the failed pods still there.
    let failure_times: Vec<Timestamp> = pods
        .iter()
        .filter(|c| c.failed && !c.ignored)
        .filter_map(|c| finish_time(c.pod))
        .collect();
    let last_success = pods
        .iter()
        .filter(|c| c.succeeded)
        .filter_map(|c| finish_time(c.pod))
        .max();
    if let Some(wait) = backoff_remaining(
        &failure_times,
        last_success,
        inputs.now,
        inputs.backoff_base,
        inputs.backoff_max,
    ) {
        plan.requeue(wait);
        return (None, have as usize);
    }
    let count = (want - have) as usize;
    let objects: Vec<Value> = if indexed {
        let running: BTreeSet<i32> = active.iter().filter_map(|c| c.index).collect();
        (0..spec.completions.unwrap_or(0))
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(count)
            .filter_map(|i| new_pod(job, spec, Some(i), &suffix()))
            .collect()
    } else {
        (0..count)
            .filter_map(|_| new_pod(job, spec, None, &suffix()))
            .collect()
    };
    if objects.is_empty() {
        return (None, have as usize);
    }
    let after = active.len() + objects.len();
    (
        Some(Action::Create {
            kind: Kind::Pod,
            namespace: kinds::namespace(&job.metadata).to_owned(),
            objects,
            announce: Some(Announce {
                involved: reference(job),
                component: COMPONENT,
                reason: "SuccessfulCreate",
                verb: "Created pod: ",
            }),
        }),
        after,
    )
}

/// Deletes a finished Job whose `ttlSecondsAfterFinished` passed, or looks again then.
fn ttl(job: &Job, spec: &JobSpec, conds: &[Value], now: Timestamp, plan: &mut Plan) {
    let Some(ttl) = spec.ttl_seconds_after_finished else {
        return;
    };
    let finished_at = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref().map(|t| t.0))
        .or_else(|| {
            condition(conds, "Complete")
                .or_else(|| condition(conds, "Failed"))
                .and_then(|c| c["lastTransitionTime"].as_str())
                .and_then(|t| t.parse().ok())
        })
        .unwrap_or(now);
    let expires = finished_at
        .checked_add(Duration::from_secs(ttl.max(0) as u64))
        .unwrap_or(finished_at);
    if now >= expires {
        plan.actions.push(Action::Delete {
            kind: Kind::Job,
            namespace: kinds::namespace(&job.metadata).to_owned(),
            targets: vec![Target {
                name: kinds::name(&job.metadata).to_owned(),
                uid: kinds::uid(&job.metadata).to_owned(),
                resource_version: None,
            }],
            propagation: Some(Propagation::Background),
            announce: None,
        });
    } else {
        plan.requeue(seconds_until(now, expires));
    }
}
