//! The Deployment controller: changes of Deployments, of their ReplicaSets and of the pods of
//! those ReplicaSets queue the Deployment's key; a worker reads the caches, asks the pure
//! reconciler for a plan and executes it.

mod reconcile;
#[cfg(test)]
mod tests;
mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use minik_api::podview::PodView;
use minik_api::selector::Selector;
use minik_api::ApiError;
use minik_client::{Change, Subscription};
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::pods;
use crate::Config;

pub(crate) use reconcile::{reconcile, Inputs};

struct Context {
    caches: Caches,
    executor: Executor,
    queue: Queue<String>,
}

/// The Deployment controller. Subscribes now and runs when the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let deployments = informers.deployments.subscribe();
    let replica_sets = informers.replica_sets.subscribe();
    let pods = informers.pods.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        queue: Queue::new(config),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_deployments(deployments, ctx.clone()));
        tasks.spawn(watch_replica_sets(replica_sets, ctx.clone()));
        tasks.spawn(watch_pods(pods, ctx.clone()));
        run_controller(
            "deployment",
            workers,
            tasks,
            &ctx.caches,
            &ctx.queue,
            ctx.clone(),
            enqueue_all,
            |ctx, key: String| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

fn enqueue_all(ctx: &Context) {
    for d in ctx.caches.deployments.list() {
        ctx.queue.add(key_of(&d.metadata));
    }
}

async fn watch_deployments(mut changes: Subscription<Deployment>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(d) | Change::Deleted(d) => ctx.queue.add(key_of(&d.metadata)),
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// The Deployment that controls a ReplicaSet, or, for an orphan, those that select it.
fn owners_of(ctx: &Context, rs: &ReplicaSet) -> Vec<String> {
    let namespace = kinds::namespace(&rs.metadata);
    match controller_ref(&rs.metadata) {
        Some(r) if r.kind == Kind::Deployment.name() => vec![format!("{namespace}/{}", r.name)],
        Some(_) => Vec::new(),
        None => ctx
            .caches
            .deployments
            .filter(|d| {
                d.metadata.namespace == rs.metadata.namespace
                    && d.spec.as_ref().is_some_and(|s| {
                        Selector::from_label_selector(&s.selector).is_ok_and(|sel| {
                            !sel.is_empty() && sel.matches(kinds::labels(&rs.metadata))
                        })
                    })
            })
            .iter()
            .map(|d| key_of(&d.metadata))
            .collect(),
    }
}

async fn watch_replica_sets(mut changes: Subscription<ReplicaSet>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(rs) | Change::Deleted(rs) => {
                for key in owners_of(&ctx, &rs) {
                    ctx.queue.add(key);
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// A Recreate rollout waits for the old pods to go: their deletion is worth a look.
async fn watch_pods(mut changes: Subscription<PodView>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Deleted(pod) => {
                let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                else {
                    continue;
                };
                let key = format!("{}/{}", kinds::namespace(&pod.metadata), r.name);
                if let Some(rs) = ctx.caches.replica_sets.get(&key) {
                    for key in owners_of(&ctx, &rs) {
                        ctx.queue.add(key);
                    }
                }
            }
            Change::Applied(_) => {}
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(d) = ctx.caches.deployments.get(key) else {
        return Ok(None);
    };
    let namespace = d.metadata.namespace.clone();
    let replica_sets: Vec<Arc<ReplicaSet>> = ctx
        .caches
        .replica_sets
        .filter(|rs| rs.metadata.namespace == namespace);
    let refs: Vec<&ReplicaSet> = replica_sets.iter().map(Arc::as_ref).collect();
    let recreate = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    // Only a Recreate rollout looks at pods; counting them for every Deployment would cost a
    // scan of the namespace's pods per pass.
    let mut live_pods: HashMap<String, usize> = HashMap::new();
    if recreate {
        for pod in ctx
            .caches
            .pods
            .filter(|p| p.metadata.namespace == namespace)
        {
            if matches!(pods::phase(&pod), "Succeeded" | "Failed") {
                continue;
            }
            if let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet") {
                *live_pods.entry(r.uid.clone()).or_default() += 1;
            }
        }
    }
    let inputs = Inputs {
        replica_sets: &refs,
        live_pods: &live_pods,
        now: kinds::now(),
    };
    let plan = reconcile(&d, &inputs);
    let requeue = plan.requeue_after;
    let report = ctx.executor.apply(plan.actions).await;
    match report.error {
        Some(e) => Err(e),
        None => Ok(requeue),
    }
}
