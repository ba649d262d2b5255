//! The garbage collector: deletes objects whose owners (by uid) are gone, and carries out
//! Foreground and Orphan deletions of owners (the `foregroundDeletion` and `orphan` finalizers
//! the API server adds). It follows the kinds of [`Kind::WATCHED`] (the workloads, their pods
//! and revisions, and PersistentVolumeClaims, which a StatefulSet's retention policy gives
//! owners) as dependents and as owners; owners of other kinds are looked up through the API.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::resources;
use minik_api::ApiError;
use minik_client::{Change, InformerCache, Subscription};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, has_finalizer, is_deleting, key_of, owner_refs, Kind};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

pub(crate) use reconcile::{reconcile, Item, OwnerState, FOREGROUND, ORPHAN};

type Key = (Kind, String);

struct Context {
    caches: Caches,
    executor: Executor,
    queue: Queue<Key>,
}

/// The garbage collector. Subscribes now and runs when the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let pods = informers.pods.subscribe();
    let replica_sets = informers.replica_sets.subscribe();
    let replication_controllers = informers.replication_controllers.subscribe();
    let deployments = informers.deployments.subscribe();
    let jobs = informers.jobs.subscribe();
    let cron_jobs = informers.cron_jobs.subscribe();
    let daemon_sets = informers.daemon_sets.subscribe();
    let stateful_sets = informers.stateful_sets.subscribe();
    let revisions = informers.controller_revisions.subscribe();
    let claims = informers.claims.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        queue: Queue::new(config),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch(Kind::Pod, pods, ctx.clone()));
        tasks.spawn(watch(Kind::ReplicaSet, replica_sets, ctx.clone()));
        tasks.spawn(watch(
            Kind::ReplicationController,
            replication_controllers,
            ctx.clone(),
        ));
        tasks.spawn(watch(Kind::Deployment, deployments, ctx.clone()));
        tasks.spawn(watch(Kind::Job, jobs, ctx.clone()));
        tasks.spawn(watch(Kind::CronJob, cron_jobs, ctx.clone()));
        tasks.spawn(watch(Kind::DaemonSet, daemon_sets, ctx.clone()));
        tasks.spawn(watch(Kind::StatefulSet, stateful_sets, ctx.clone()));
        tasks.spawn(watch(Kind::ControllerRevision, revisions, ctx.clone()));
        tasks.spawn(watch(Kind::PersistentVolumeClaim, claims, ctx.clone()));
        run_controller(
            "garbage-collector",
            workers,
            tasks,
            &ctx.caches,
            &ctx.queue,
            ctx.clone(),
            |ctx| {
                Kind::WATCHED
                    .into_iter()
                    .for_each(|kind| enqueue_all(ctx, kind))
            },
            |ctx, key: Key| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

/// Whether the collector has anything to look at in an object.
fn interesting(meta: &ObjectMeta) -> bool {
    !owner_refs(meta).is_empty()
        || (is_deleting(meta) && (has_finalizer(meta, FOREGROUND) || has_finalizer(meta, ORPHAN)))
}

fn enqueue_all(ctx: &Context, kind: Kind) {
    for meta in metas(&ctx.caches, kind, &|m| interesting(m)) {
        ctx.queue.add((kind, key_of(&meta)));
    }
}

/// The metadata of the cached objects of `kind` that `keep` selects.
fn metas(caches: &Caches, kind: Kind, keep: &dyn Fn(&ObjectMeta) -> bool) -> Vec<ObjectMeta> {
    fn of<K: Metadata<Ty = ObjectMeta>>(
        cache: &InformerCache<K>,
        keep: &dyn Fn(&ObjectMeta) -> bool,
    ) -> Vec<ObjectMeta> {
        cache
            .filter(|k| keep(k.metadata()))
            .iter()
            .map(|k| k.metadata().clone())
            .collect()
    }
    match kind {
        Kind::Pod => of(&caches.pods, keep),
        Kind::ReplicaSet => of(&caches.replica_sets, keep),
        Kind::ReplicationController => of(&caches.replication_controllers, keep),
        Kind::Deployment => of(&caches.deployments, keep),
        Kind::Job => of(&caches.jobs, keep),
        Kind::CronJob => of(&caches.cron_jobs, keep),
        Kind::DaemonSet => of(&caches.daemon_sets, keep),
        Kind::StatefulSet => of(&caches.stateful_sets, keep),
        Kind::ControllerRevision => of(&caches.controller_revisions, keep),
        Kind::PersistentVolumeClaim => of(&caches.claims, keep),
    }
}

fn cached(caches: &Caches, kind: Kind, key: &str) -> Option<ObjectMeta> {
    match kind {
        Kind::Pod => caches.pods.get(key).map(|o| o.metadata.clone()),
        Kind::ReplicaSet => caches.replica_sets.get(key).map(|o| o.metadata.clone()),
        Kind::ReplicationController => caches
            .replication_controllers
            .get(key)
            .map(|o| o.metadata.clone()),
        Kind::Deployment => caches.deployments.get(key).map(|o| o.metadata.clone()),
        Kind::Job => caches.jobs.get(key).map(|o| o.metadata.clone()),
        Kind::CronJob => caches.cron_jobs.get(key).map(|o| o.metadata.clone()),
        Kind::DaemonSet => caches.daemon_sets.get(key).map(|o| o.metadata.clone()),
        Kind::StatefulSet => caches.stateful_sets.get(key).map(|o| o.metadata.clone()),
        Kind::ControllerRevision => caches
            .controller_revisions
            .get(key)
            .map(|o| o.metadata.clone()),
        Kind::PersistentVolumeClaim => caches.claims.get(key).map(|o| o.metadata.clone()),
    }
}

/// The cached objects, of every followed kind, whose owner references name `owner`.
fn dependents_of(caches: &Caches, owner: &ObjectMeta) -> Vec<(Kind, ObjectMeta)> {
    let uid = kinds::uid(owner);
    let keep = |m: &ObjectMeta| {
        m.namespace == owner.namespace && owner_refs(m).iter().any(|r| r.uid == uid)
    };
    Kind::WATCHED
        .into_iter()
        .flat_map(|kind| {
            metas(caches, kind, &keep)
                .into_iter()
                .map(move |m| (kind, m))
        })
        .collect()
}

async fn watch<K>(kind: Kind, mut changes: Subscription<K>, ctx: Arc<Context>)
where
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(object) => changed(&ctx, kind, object.metadata(), false),
            Change::Deleted(object) => changed(&ctx, kind, object.metadata(), true),
            Change::Resync => enqueue_all(&ctx, kind),
        }
    }
}

/// Queues what a change of one object may affect: the object itself; its dependents when it
/// went (they may dangle now) or waits for them; its owners that wait for their dependents.
fn changed(ctx: &Context, kind: Kind, meta: &ObjectMeta, deleted: bool) {
    if !deleted && interesting(meta) {
        ctx.queue.add((kind, key_of(meta)));
    }
    if deleted || (is_deleting(meta) && has_finalizer(meta, FOREGROUND)) {
        for (dep_kind, dep) in dependents_of(&ctx.caches, meta) {
            ctx.queue.add((dep_kind, key_of(&dep)));
        }
    }
    for r in owner_refs(meta) {
        if let Some(owner_kind) = Kind::of_reference(&r.api_version, &r.kind) {
            let key = format!("{}/{}", kinds::namespace(meta), r.name);
            if cached(&ctx.caches, owner_kind, &key).is_some_and(|m| is_deleting(&m)) {
                ctx.queue.add((owner_kind, key));
            }
        }
    }
}

/// What is known of the owner `r` of an object in `namespace`: the cache first, and the API
/// when the cache does not show it (the cache of another kind may simply be behind).
async fn owner_state(
    ctx: &Context,
    r: &OwnerReference,
    namespace: &str,
) -> Result<OwnerState, ApiError> {
    let Ok(info) = resources::by_kind(&r.api_version, &r.kind) else {
        // A kind minik does not serve cannot be looked up; keep the dependent.
        return Ok(OwnerState::Present);
    };
    let ns = info.namespaced.then_some(namespace);
    if let Some(kind) = Kind::of_reference(&r.api_version, &r.kind) {
        let key = match ns {
            Some(ns) => format!("{ns}/{}", r.name),
            None => r.name.clone(),
        };
        if let Some(meta) = cached(&ctx.caches, kind, &key) {
            if kinds::uid(&meta) == r.uid {
                return Ok(OwnerState::of(&meta));
            }
        }
    }
    match ctx.executor.api().get(info, ns, &r.name).await {
        Ok(object) => {
            let meta: ObjectMeta = object
                .get("metadata")
                .cloned()
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_default();
            Ok(if kinds::uid(&meta) == r.uid {
                OwnerState::of(&meta)
            } else {
                OwnerState::Absent
            })
        }
        Err(e) if e.is_not_found() => Ok(OwnerState::Absent),
        Err(e) => Err(e),
    }
}

async fn sync(ctx: &Context, key: &Key) -> Result<Option<Duration>, ApiError> {
    let (kind, name_key) = key;
    let Some(meta) = cached(&ctx.caches, *kind, name_key) else {
        return Ok(None);
    };
    let mut owners = Vec::new();
    if !is_deleting(&meta) {
        for r in owner_refs(&meta) {
            owners.push((r, owner_state(ctx, r, kinds::namespace(&meta)).await?));
        }
    }
    let item = Item {
        kind: *kind,
        meta: &meta,
    };
    let dependents = if reconcile::needs_dependents(&item, &owners) {
        dependents_of(&ctx.caches, &meta)
    } else {
        Vec::new()
    };
    let dependents: Vec<Item> = dependents
        .iter()
        .map(|(kind, meta)| Item { kind: *kind, meta })
        .collect();
    let plan = reconcile(&item, &owners, &dependents);
    if !plan.actions.is_empty() {
        tracing::debug!(kind = kind.name(), key = %name_key, actions = plan.actions.len(), "collecting");
    }
    let report = ctx.executor.apply(plan.actions).await;
    match report.error {
        Some(e) => Err(e),
        None => Ok(plan.requeue_after),
    }
}
