//! The Job controller (batch/v1): runs a Job's pods to completion, counting each finished pod
//! exactly once through the `batch.kubernetes.io/job-tracking` finalizer, and finishes the Job
//! as Complete or Failed (back-off limit, deadline, pod failure policy). Changes of Jobs and of
//! their pods queue the Job's key; a worker reads the caches, asks the pure reconciler for a
//! plan ([`reconcile::reconcile`]) and executes it.

mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::batch::v1::Job;
use minik_api::podview::PodView;
use minik_api::ApiError;
use minik_client::{Change, Subscription};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::action::{Action, Note};
use crate::executor::Executor;
use crate::expectations::Expectations;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::names::random_suffix;
use crate::pods::is_active;
use crate::Config;

use reconcile::{
    reconcile, reference, release_orphans, Inputs, BACKOFF_BASE, BACKOFF_MAX, COMPONENT,
};

struct Context {
    caches: Caches,
    executor: Executor,
    expectations: Expectations,
}

/// The Job controller. Subscribes now, so that no change after this call is missed, and runs
/// when the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let job_changes = informers.jobs.subscribe();
    let pod_changes = informers.pods.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        expectations: Expectations::new(config.expectations_timeout),
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_jobs(job_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_pods(pod_changes, queue.clone(), ctx.clone()));
        let caches = ctx.caches.clone();
        run_controller(
            "job",
            workers,
            tasks,
            &caches,
            &queue,
            ctx,
            |ctx: &Context| {
                for job in ctx.caches.jobs.list() {
                    queue.add(key_of(&job.metadata));
                }
            },
            |ctx: Arc<Context>, key: String| async move { sync(&ctx, &key).await },
        )
        .await
    }
}

async fn watch_jobs(mut changes: Subscription<Job>, queue: Queue<String>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(job) => queue.add(key_of(&job.metadata)),
            Change::Deleted(job) => {
                let key = key_of(&job.metadata);
                ctx.expectations.forget(&key);
                queue.add(key);
            }
            Change::Resync => {
                for job in ctx.caches.jobs.list() {
                    queue.add(key_of(&job.metadata));
                }
            }
        }
    }
}

/// The key of the Job that controls `pod`, if any.
fn job_key(pod: &PodView) -> Option<String> {
    let r = controller_ref(&pod.metadata)?;
    (r.kind == Kind::Job.name() && r.api_version.starts_with("batch/"))
        .then(|| format!("{}/{}", kinds::namespace(&pod.metadata), r.name))
}

async fn watch_pods(mut changes: Subscription<PodView>, queue: Queue<String>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) => {
                if let Some(key) = job_key(&pod) {
                    ctx.expectations.created(&key, kinds::name(&pod.metadata));
                    if !is_active(&pod) {
                        ctx.expectations.deleted(&key, kinds::uid(&pod.metadata));
                    }
                    queue.add(key);
                }
            }
            Change::Deleted(pod) => {
                if let Some(key) = job_key(&pod) {
                    ctx.expectations.created(&key, kinds::name(&pod.metadata));
                    ctx.expectations.deleted(&key, kinds::uid(&pod.metadata));
                    queue.add(key);
                }
            }
            Change::Resync => {
                for job in ctx.caches.jobs.list() {
                    queue.add(key_of(&job.metadata));
                }
            }
        }
    }
}

/// One pass over the Job at `key`: observe, decide, act.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let job = ctx.caches.jobs.get(key);
    let job_uid = job.as_ref().map(|j| kinds::uid(&j.metadata).to_owned());
    let pods: Vec<Arc<PodView>> = ctx.caches.pods.filter(|p| {
        kinds::namespace(&p.metadata) == namespace
            && controller_ref(&p.metadata)
                .is_some_and(|r| r.kind == Kind::Job.name() && r.name == name)
    });
    let (owned, orphans): (Vec<&PodView>, Vec<&PodView>) = pods
        .iter()
        .map(Arc::as_ref)
        .partition(|p| controller_ref(&p.metadata).map(|r| r.uid.as_str()) == job_uid.as_deref());
    // Pods of a Job that is gone (or of an older Job of the same name) are let go.
    if let Some(released) = release_orphans(&orphans) {
        if let Some(e) = ctx.executor.apply(vec![released]).await.error {
            return Err(e);
        }
    }
    let Some(job) = job else {
        ctx.expectations.forget(key);
        return Ok(None);
    };
    let names: HashSet<&str> = owned.iter().map(|p| kinds::name(&p.metadata)).collect();
    let active_uids: HashSet<&str> = owned
        .iter()
        .filter(|p| is_active(p))
        .map(|p| kinds::uid(&p.metadata))
        .collect();
    let started = Instant::now();
    let may_manage = ctx.expectations.satisfied(
        key,
        started,
        |n| names.contains(n),
        |uid| !active_uids.contains(uid),
    );
    let inputs = Inputs {
        pods: &owned,
        may_manage,
        now: kinds::now(),
        backoff_base: BACKOFF_BASE,
        backoff_max: BACKOFF_MAX,
    };
    let plan = reconcile(&job, &inputs, &mut random_suffix);
    ctx.expectations.expect(
        key,
        plan.created(Kind::Pod),
        plan.deleted(Kind::Pod).into_iter().map(|t| t.uid.clone()),
        started,
    );
    let requeue = plan.requeue_after;
    let creating = !plan.created(Kind::Pod).is_empty();
    let report = ctx.executor.apply(plan.actions).await;
    for n in &report.not_created {
        ctx.expectations.created(key, n);
    }
    for uid in &report.not_deleted {
        ctx.expectations.deleted(key, uid);
    }
    match report.error {
        Some(e) => {
            // As upstream, a pod the API refused is reported on the Job.
            if creating && !report.not_created.is_empty() && !e.is_conflict() {
                let note = Note {
                    involved: reference(&job),
                    component: COMPONENT,
                    type_: "Warning",
                    reason: "FailedCreate",
                    message: format!("Error creating: {e}"),
                };
                ctx.executor.apply(vec![Action::Record(note)]).await;
            }
            Err(e)
        }
        None => Ok(requeue),
    }
}
