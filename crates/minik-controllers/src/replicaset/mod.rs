//! The ReplicaSet (apps/v1) and ReplicationController (v1) controllers: one controller written
//! once for both kinds. Changes of owners and of their pods queue the owner's key; a worker
//! reads the caches, asks the pure reconciler for a plan, records expectations and executes it.

mod reconcile;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::ReplicaSet;
use minik_api::k8s_openapi::api::core::v1::{ReplicationController, ResourceQuota};
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::podview::PodView;
use minik_api::ApiError;
use minik_client::{Change, Informer, InformerCache, Subscription};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::action::{Action, Note, Plan};
use crate::executor::Executor;
use crate::expectations::Expectations;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{apply_expecting, expectations_met, observe, Caches, Informers, Queue};
use crate::names::random_suffix;
use crate::pods::is_active;
use crate::Config;

pub(crate) use reconcile::{reconcile, status_update, Failure, Inputs, Owner};

/// A kind of owner of pods this controller manages.
pub(crate) trait Managed:
    k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static
{
    const OWNER_KIND: Kind;
    const CONTROLLER: &'static str;
    fn owner(&self) -> Result<Owner<'_>, String>;
    fn cache(caches: &Caches) -> &InformerCache<Self>;
}

impl Managed for ReplicaSet {
    const OWNER_KIND: Kind = Kind::ReplicaSet;
    const CONTROLLER: &'static str = "replicaset";
    fn owner(&self) -> Result<Owner<'_>, String> {
        Owner::of_replica_set(self)
    }
    fn cache(caches: &Caches) -> &InformerCache<Self> {
        &caches.replica_sets
    }
}

impl Managed for ReplicationController {
    const OWNER_KIND: Kind = Kind::ReplicationController;
    const CONTROLLER: &'static str = "replicationcontroller";
    fn owner(&self) -> Result<Owner<'_>, String> {
        Owner::of_replication_controller(self)
    }
    fn cache(caches: &Caches) -> &InformerCache<Self> {
        &caches.replication_controllers
    }
}

struct Context {
    caches: Caches,
    executor: Executor,
    expectations: Expectations,
    burst: usize,
}

/// The controller of owners of kind `M`. Subscribes now, so that no change after this call is
/// missed, and runs when the returned future is polled.
pub(crate) fn controller<M: Managed>(
    informers: &Informers,
    owners: &Informer<M>,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let owner_changes = owners.subscribe();
    let pod_changes = informers.pods.subscribe();
    let quota_changes = informers.resource_quotas.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        expectations: Expectations::new(config.expectations_timeout),
        burst: config.burst_replicas.max(1),
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_owners::<M>(owner_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_pods::<M>(pod_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_quotas::<M>(quota_changes, queue.clone(), ctx.clone()));
        ctx.caches.wait_synced().await;
        for owner in M::cache(&ctx.caches).list() {
            queue.add(key_of(owner.metadata()));
        }
        let sync_ctx = ctx.clone();
        tasks.spawn(async move {
            queue
                .run_workers(M::CONTROLLER, workers, move |key| {
                    let ctx = sync_ctx.clone();
                    async move { sync::<M>(&ctx, &key).await }
                })
                .await
        });
        while tasks.join_next().await.is_some() {}
    }
}

async fn watch_owners<M: Managed>(
    mut changes: Subscription<M>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(owner) => queue.add(key_of(owner.metadata())),
            Change::Deleted(owner) => {
                let key = key_of(owner.metadata());
                ctx.expectations.forget(&key);
                queue.add(key);
            }
            Change::Resync => {
                for owner in M::cache(&ctx.caches).list() {
                    queue.add(key_of(owner.metadata()));
                }
            }
        }
    }
}

/// A quota that changed may let the creates of its namespace's owners through now: look again
/// at those that reported failing to create.
async fn watch_quotas<M: Managed>(
    mut changes: Subscription<ResourceQuota>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        let ns = match &change {
            Change::Applied(q) | Change::Deleted(q) => kinds::namespace(&q.metadata).to_owned(),
            Change::Resync => continue,
        };
        for owner in M::cache(&ctx.caches).filter(|o| {
            kinds::namespace(o.metadata()) == ns
                && o.owner().is_ok_and(|o| {
                    o.status_json
                        .get("conditions")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "ReplicaFailure"))
                })
        }) {
            queue.add(key_of(owner.metadata()));
        }
    }
}

/// The key of the owner of kind `M` that controls `pod`, if any.
fn owner_key<M: Managed>(pod: &PodView) -> Option<String> {
    kinds::controller_key(&pod.metadata, M::OWNER_KIND)
}

async fn watch_pods<M: Managed>(
    mut changes: Subscription<PodView>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) => match owner_key::<M>(&pod) {
                Some(key) => {
                    observe(&ctx.expectations, &key, &pod, false);
                    queue.add(key);
                }
                // An orphan: the owners that select it may adopt it.
                None if controller_ref(&pod.metadata).is_none() && is_active(&pod) => {
                    for owner in M::cache(&ctx.caches).filter(|o| {
                        o.metadata().namespace == pod.metadata.namespace
                            && o.owner()
                                .is_ok_and(|o| o.selector.matches(kinds::labels(&pod.metadata)))
                    }) {
                        queue.add(key_of(owner.metadata()));
                    }
                }
                None => {}
            },
            Change::Deleted(pod) => {
                if let Some(key) = owner_key::<M>(&pod) {
                    observe(&ctx.expectations, &key, &pod, true);
                    queue.add(key);
                }
            }
            // Pod changes were missed: every owner may be affected.
            Change::Resync => {
                for owner in M::cache(&ctx.caches).list() {
                    queue.add(key_of(owner.metadata()));
                }
            }
        }
    }
}

/// One pass over the owner at `key`: observe, decide, act.
async fn sync<M: Managed>(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(object) = M::cache(&ctx.caches).get(key) else {
        ctx.expectations.forget(key);
        return Ok(None);
    };
    let owner = match object.owner() {
        Ok(owner) => owner,
        Err(e) => {
            // The API server validated the object; if it still cannot be read there is
            // nothing a retry would change.
            tracing::warn!(kind = M::OWNER_KIND.name(), %key, error = %e, "cannot manage this object");
            return Ok(None);
        }
    };
    let namespace = owner.meta.namespace.clone();
    let pods: Vec<Arc<PodView>> = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace == namespace);
    let pod_refs: Vec<&PodView> = pods.iter().map(Arc::as_ref).collect();
    let started = Instant::now();
    let may_size = expectations_met(&ctx.expectations, key, started, &pod_refs);
    let inputs = Inputs {
        pods: &pod_refs,
        may_size,
        now: kinds::now(),
        burst: ctx.burst,
    };
    let decision = reconcile(&owner, &inputs, &mut random_suffix);
    // Claims first: one that fails means the cache was behind, and the retry sees more
    // (Kubernetes returns before sizing then too).
    let claimed = ctx.executor.apply(decision.claims).await;
    if let Some(e) = claimed.error {
        return Err(e);
    }
    let manage = Plan {
        actions: decision.manage.into_iter().collect(),
        requeue_after: None,
    };
    let creating = !manage.created(Kind::Pod).is_empty();
    let report = apply_expecting(&ctx.executor, &ctx.expectations, key, started, manage).await;
    // Kubernetes reports failing creates on the owner: an event per failure and the
    // ReplicaFailure condition while they last. The status is written whether or not the
    // creates or deletes failed (it counts the pods there are), and only if it changed.
    let failure = report.error.as_ref().map(|e| Failure {
        reason: if creating {
            "FailedCreate"
        } else {
            "FailedDelete"
        },
        message: e.to_string(),
    });
    let mut after = Vec::new();
    if let Some(failure) = failure.as_ref().filter(|_| creating) {
        after.push(Action::Record(Note {
            involved: owner.reference(),
            component: match M::OWNER_KIND {
                Kind::ReplicationController => "replication-controller",
                _ => "replicaset-controller",
            },
            type_: "Warning",
            reason: "FailedCreate",
            message: format!("Error creating: {}", failure.message),
        }));
    }
    after.extend(status_update(
        &owner,
        &decision.counts,
        failure.as_ref(),
        inputs.now,
    ));
    if !after.is_empty() {
        let written = ctx.executor.apply(after).await;
        if let (Some(e), None) = (written.error, &report.error) {
            return Err(e);
        }
    }
    let requeue = decision.requeue_after;
    match report.error {
        Some(e) => Err(e),
        None => Ok(requeue),
    }
}
