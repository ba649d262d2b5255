//! The CronJob (batch/v1) controller, after Kubernetes' CronJob controller v2: each CronJob is
//! looked at when it or one of its Jobs changes, and again exactly when its schedule is next
//! due. A pass starts the latest time due (never more than one), deletes finished Jobs beyond
//! the history limits, and keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//! Time is read from a [`Clock`] once per pass and handed to the pure reconciler.

mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::batch::v1::{CronJob, Job};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use minik_api::k8s_openapi::jiff::tz::TimeZone;
use minik_api::k8s_openapi::jiff::Timestamp;
use minik_api::request::WriteOptions;
use minik_api::ApiError;
use minik_client::{Change, Subscription};
use tokio::task::JoinSet;

use crate::action::Action;
use crate::executor::Executor;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{Caches, Informers, Queue};
use crate::Config;

use reconcile::{job_reference, note, reconcile, status_patch, Inputs};

/// Where a controller reads the time.
pub(crate) trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        kinds::now()
    }
}

/// The zone of schedules without a `timeZone`: the process's own (`TZ`, else
/// `/etc/localtime`), UTC when it cannot be told, as Kubernetes uses the controller manager's.
fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

struct Context {
    caches: Caches,
    executor: Executor,
    clock: Arc<dyn Clock>,
    local: TimeZone,
}

/// The controller, on the wall clock.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    controller_with_clock(
        informers,
        executor,
        config,
        Arc::new(SystemClock),
        local_zone(),
    )
}

/// The controller reading the time from `clock` and taking `local` as the zone of schedules
/// without one. Subscribes now, runs when polled.
pub(crate) fn controller_with_clock(
    informers: &Informers,
    executor: Executor,
    config: &Config,
    clock: Arc<dyn Clock>,
    local: TimeZone,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let cron_job_changes = informers.cron_jobs.subscribe();
    let job_changes = informers.jobs.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        clock,
        local,
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_cron_jobs(
            cron_job_changes,
            queue.clone(),
            ctx.clone(),
        ));
        tasks.spawn(watch_jobs(job_changes, queue.clone(), ctx.clone()));
        ctx.caches.wait_synced().await;
        for cj in ctx.caches.cron_jobs.list() {
            queue.add(key_of(&cj.metadata));
        }
        let sync_ctx = ctx.clone();
        tasks.spawn(async move {
            queue
                .run_workers("cronjob", workers, move |key| {
                    let ctx = sync_ctx.clone();
                    async move { sync(&ctx, &key).await }
                })
                .await
        });
        while tasks.join_next().await.is_some() {}
    }
}

async fn watch_cron_jobs(
    mut changes: Subscription<CronJob>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(cj) | Change::Deleted(cj) => queue.add(key_of(&cj.metadata)),
            Change::Resync => {
                for cj in ctx.caches.cron_jobs.list() {
                    queue.add(key_of(&cj.metadata));
                }
            }
        }
    }
}

/// The key of the CronJob that controls `job`, if one does.
fn owner_key(job: &Job) -> Option<String> {
    let r = controller_ref(&job.metadata)?;
    (r.kind == Kind::CronJob.name())
        .then(|| format!("{}/{}", kinds::namespace(&job.metadata), r.name))
}

async fn watch_jobs(mut changes: Subscription<Job>, queue: Queue<String>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(job) | Change::Deleted(job) => {
                if let Some(key) = owner_key(&job) {
                    queue.add(key);
                }
            }
            Change::Resync => {
                for cj in ctx.caches.cron_jobs.list() {
                    queue.add(key_of(&cj.metadata));
                }
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::Internal(format!("cannot read: {e}")))
}

/// One pass over the CronJob at `key`: observe (asking the API what the caches may not know
/// yet), decide, act.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(cached) = ctx.caches.cron_jobs.get(key) else {
        return Ok(None);
    };
    let mut cj = CronJob::clone(&cached);
    let namespace = kinds::namespace(&cj.metadata).to_owned();
    let name = kinds::name(&cj.metadata).to_owned();
    let owned: Vec<Arc<Job>> = ctx.caches.jobs.filter(|j| {
        kinds::namespace(&j.metadata) == namespace
            && controller_ref(&j.metadata)
                .is_some_and(|r| r.kind == Kind::CronJob.name() && r.name == name)
    });
    let api = ctx.executor.api();
    let cron_jobs = Kind::CronJob.info();
    let jobs_info = Kind::Job.info();
    let active_uids = |cj: &CronJob| -> HashSet<String> {
        cj.status
            .iter()
            .flat_map(|s| s.active.iter().flatten())
            .filter_map(|r| r.uid.clone())
            .collect()
    };
    // An unfinished Job the status does not list may be one the cached CronJob is too old
    // to know: read the CronJob itself (Kubernetes does the same).
    let listed = active_uids(&cj);
    let unlisted = owned.iter().any(|j| {
        !listed.contains(kinds::uid(&j.metadata))
            && !j.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
    });
    if unlisted {
        match api.get(cron_jobs, Some(&namespace), &name).await {
            Ok(fresh) => cj = decode(fresh)?,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    // An active Job missing from the cache is asked for: only one the API does not have
    // either has gone.
    let cached_uids: HashSet<&str> = owned.iter().map(|j| kinds::uid(&j.metadata)).collect();
    let mut missing = HashSet::new();
    for r in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
        let uid = r.uid.as_deref().unwrap_or_default();
        if cached_uids.contains(uid) {
            continue;
        }
        let job_name = r.name.as_deref().unwrap_or_default();
        match api.get(jobs_info, Some(&namespace), job_name).await {
            Err(e) if e.is_not_found() => {
                missing.insert(uid.to_owned());
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let jobs: Vec<&Job> = owned.iter().map(Arc::as_ref).collect();
    let decision = reconcile(&Inputs {
        cron_job: &cj,
        jobs: &jobs,
        missing: &missing,
        now: ctx.clock.now(),
        local: &ctx.local,
    });
    let report = ctx.executor.apply(decision.actions).await;
    if let Some(e) = report.error {
        ctx.executor
            .apply(vec![note(
                &cj,
                "Warning",
                "FailedDelete",
                format!("Deleted job: {e}"),
            )])
            .await;
        return Err(e);
    }
    let mut status = decision.status;
    let mut changed = decision.status_changed;
    let mut failure = None;
    if let Some((job, scheduled)) = decision.create {
        let job_name = job["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let created = api
            .create(jobs_info, Some(&namespace), job, WriteOptions::default())
            .await;
        let created = match created {
            Ok(created) => {
                ctx.executor
                    .apply(vec![note(
                        &cj,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created job {job_name}"),
                    )])
                    .await;
                Some(created)
            }
            // Made by an earlier pass whose status write was lost, or by someone else: only
            // one of ours that the status does not list yet is added.
            Err(e) if e.is_already_exists() => {
                let existing = api.get(jobs_info, Some(&namespace), &job_name).await?;
                let existing_job: Job = decode(existing.clone())?;
                let ours = controller_ref(&existing_job.metadata)
                    .is_some_and(|r| Some(r.uid.as_str()) == cj.metadata.uid.as_deref());
                let listed = active_uids(&cj).contains(kinds::uid(&existing_job.metadata))
                    || status
                        .active
                        .iter()
                        .flatten()
                        .any(|r| r.uid.as_deref() == existing_job.metadata.uid.as_deref());
                (ours && !listed).then_some(existing)
            }
            Err(e) => {
                ctx.executor
                    .apply(vec![note(
                        &cj,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating job: {e}"),
                    )])
                    .await;
                failure = Some(e);
                None
            }
        };
        if let Some(created) = created {
            status
                .active
                .get_or_insert_with(Vec::new)
                .push(job_reference(&created));
            status.last_schedule_time = Some(Time(scheduled));
            changed = true;
        }
    }
    if changed {
        let written = ctx
            .executor
            .apply(vec![Action::Patch {
                kind: Kind::CronJob,
                namespace: namespace.clone(),
                name: name.clone(),
                body: status_patch(&cj, &status),
                status: true,
            }])
            .await;
        if let Some(e) = written.error {
            return Err(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(decision.requeue_after),
    }
}
