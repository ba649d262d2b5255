//! The PodDisruptionBudget status controller (Kubernetes' `pkg/controller/disruption`): for each
//! budget, counts the pods its selector matches, how many it expects (from the scale of the
//! pods' Deployment, ReplicaSet, ReplicationController or StatefulSet when a percentage or
//! `maxUnavailable` needs it), how many are healthy and how many may be disrupted, and writes
//! that status with a compare-and-swap, so that an eviction's write in between is never lost.
//! Changes of budgets and of pods queue the budgets concerned; a budget with recorded
//! evictions is looked at again when they time out.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use minik_api::disruption::{self, OwnerScale};
use minik_api::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use minik_api::podview::PodView;
use minik_api::ApiError;
use minik_client::{resource_of, Change, Subscription};
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, controller_ref, key_of};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

struct Context {
    caches: Caches,
    executor: Executor,
}

/// The controller. Subscribes now, so that no change after this call is missed, and runs when
/// the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let budget_changes = informers.pod_disruption_budgets.subscribe();
    let pod_changes = informers.pods.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_budgets(budget_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_pods(pod_changes, queue.clone(), ctx.clone()));
        run_controller(
            "disruption",
            workers,
            tasks,
            &ctx.caches,
            &queue,
            ctx.clone(),
            |ctx| all(&ctx.caches, &queue),
            |ctx, key: String| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

fn all(caches: &Caches, queue: &Queue<String>) {
    for pdb in caches.pod_disruption_budgets.list() {
        queue.add(key_of(&pdb.metadata));
    }
}

async fn watch_budgets(
    mut changes: Subscription<PodDisruptionBudget>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pdb) => queue.add(key_of(&pdb.metadata)),
            Change::Deleted(_) => {}
            Change::Resync => all(&ctx.caches, &queue),
        }
    }
}

/// Queues the budgets that select a pod that changed or went.
async fn watch_pods(mut changes: Subscription<PodView>, queue: Queue<String>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        let pod = match change {
            Change::Applied(pod) | Change::Deleted(pod) => pod,
            Change::Resync => continue,
        };
        for pdb in ctx
            .caches
            .pod_disruption_budgets
            .filter(|b| disruption::selects(b, &pod))
        {
            queue.add(key_of(&pdb.metadata));
        }
    }
}

/// The scale of the controller that manages `pod`, as Kubernetes' disruption controller finds
/// it: a pod of a ReplicaSet of a Deployment counts the Deployment's replicas.
fn owner_scale(caches: &Caches, pod: &PodView) -> OwnerScale {
    let Some(owner) = controller_ref(&pod.metadata) else {
        return OwnerScale::Unmanaged;
    };
    let ns = kinds::namespace(&pod.metadata);
    let key = format!("{ns}/{}", owner.name);
    let group = owner.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let found = |uid: Option<&str>, replicas: Option<i32>| match uid {
        Some(uid) if uid == owner.uid => OwnerScale::Found {
            uid: uid.to_owned(),
            replicas: replicas.unwrap_or(1),
        },
        _ => OwnerScale::Missing,
    };
    match (group, owner.kind.as_str()) {
        ("apps" | "extensions", "ReplicaSet") => {
            let Some(rs) = caches
                .replica_sets
                .get(&key)
                .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            else {
                return OwnerScale::Missing;
            };
            match controller_ref(&rs.metadata) {
                Some(d) if d.kind == "Deployment" => {
                    let dep = caches.deployments.get(&format!("{ns}/{}", d.name));
                    match dep.filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str())) {
                        Some(dep) => OwnerScale::Found {
                            uid: d.uid.clone(),
                            replicas: dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        },
                        None => OwnerScale::Missing,
                    }
                }
                _ => found(
                    rs.metadata.uid.as_deref(),
                    rs.spec.as_ref().and_then(|s| s.replicas),
                ),
            }
        }
        ("", "ReplicationController") => match caches.replication_controllers.get(&key) {
            Some(rc) => found(
                rc.metadata.uid.as_deref(),
                rc.spec.as_ref().and_then(|s| s.replicas),
            ),
            None => OwnerScale::Missing,
        },
        ("apps", "StatefulSet") => match caches.stateful_sets.get(&key) {
            Some(sts) => found(
                sts.metadata.uid.as_deref(),
                sts.spec.as_ref().and_then(|s| s.replicas),
            ),
            None => OwnerScale::Missing,
        },
        _ => OwnerScale::Missing,
    }
}

/// Recomputes one budget's status and writes it if it changed.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(pdb) = ctx.caches.pod_disruption_budgets.get(key) else {
        return Ok(None);
    };
    let ns = pdb.metadata.namespace.clone();
    let pods: Vec<Arc<PodView>> = ctx.caches.pods.filter(|p| p.metadata.namespace == ns);
    let refs: Vec<&PodView> = pods.iter().map(Arc::as_ref).collect();
    let decision = reconcile::reconcile(
        &pdb,
        &refs,
        |pod| owner_scale(&ctx.caches, pod),
        kinds::now(),
    );
    for note in decision.notes {
        ctx.executor.record(note).await;
    }
    if let Some(status) = decision.status {
        let mut object = (*pdb).clone();
        object.status = Some(status);
        let body = serde_json::to_value(&object).map_err(|e| ApiError::Internal(e.to_string()))?;
        // The body carries the resourceVersion of the cached budget: an eviction's write since
        // makes this conflict, and the retry sees it.
        ctx.executor
            .replace_status(
                resource_of::<PodDisruptionBudget>(),
                ns.as_deref(),
                kinds::name(&pdb.metadata),
                body,
            )
            .await?;
    }
    Ok(decision.requeue_after)
}
