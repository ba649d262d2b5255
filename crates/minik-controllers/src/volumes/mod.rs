//! The persistent volume controller: binds PersistentVolumeClaims to PersistentVolumes, gives
//! claims without a class the default StorageClass, provisions local-path volumes (a directory
//! on the node the claim's first pod was scheduled to: the scheduler names it in the claim's
//! `volume.kubernetes.io/selected-node` annotation), marks volumes whose claim is gone
//! `Released` and deletes those whose reclaim policy says so. At start it makes the
//! `local-path` StorageClass (the default, as k3s ships it) unless a class of that name exists.
//!
//! Every change of a claim, a volume, a class or a node queues what it may concern; a worker
//! asks the pure [`reconcile`] what to write and writes it through the [`Api`] (merge patches;
//! conflicts and vanished objects are retried or dropped by the next pass).

pub(crate) mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim,
};
use minik_api::k8s_openapi::api::storage::v1::StorageClass;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Change, Subscription};
use serde_json::json;
use tokio::task::JoinSet;

use crate::action::{Action, Note};
use crate::executor::Executor;
use crate::kinds::key_of;
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

use reconcile::{World, Write};

/// What the queue holds: a claim (`namespace/name`) or a volume (`name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Claim(String),
    Volume(String),
}

struct Context {
    caches: Caches,
    executor: Executor,
    queue: Queue<Key>,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let claims = informers.claims.subscribe();
    let volumes = informers.volumes.subscribe();
    let classes = informers.storage_classes.subscribe();
    let nodes = informers.nodes.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        queue: Queue::new(config),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_claims(claims, ctx.clone()));
        tasks.spawn(watch_volumes(volumes, ctx.clone()));
        tasks.spawn(watch_all(classes, ctx.clone()));
        tasks.spawn(watch_all(nodes, ctx.clone()));
        tasks.spawn(ensure_local_path_class(ctx.clone()));
        run_controller(
            "persistentvolume",
            workers,
            tasks,
            &ctx.caches,
            &ctx.queue,
            ctx.clone(),
            enqueue_all,
            |ctx, key: Key| async move { sync(&ctx, key).await },
        )
        .await;
    }
}

fn enqueue_all(ctx: &Context) {
    for c in ctx.caches.claims.list() {
        ctx.queue.add(Key::Claim(key_of(&c.metadata)));
    }
    for v in ctx.caches.volumes.list() {
        ctx.queue.add(Key::Volume(key_of(&v.metadata)));
    }
}

async fn watch_claims(mut changes: Subscription<PersistentVolumeClaim>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(c) => ctx.queue.add(Key::Claim(key_of(&c.metadata))),
            // Its volume may be released now.
            Change::Deleted(c) => {
                if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                    ctx.queue.add(Key::Volume(v));
                }
                for v in ctx.caches.volumes.list() {
                    let refers = v
                        .spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_some_and(|r| r.uid == c.metadata.uid);
                    if refers {
                        ctx.queue.add(Key::Volume(key_of(&v.metadata)));
                    }
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_volumes(mut changes: Subscription<PersistentVolume>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(v) | Change::Deleted(v) => {
                ctx.queue.add(Key::Volume(key_of(&v.metadata)));
                // Unbound claims may fit it now, or their bound volume changed.
                for c in ctx.caches.claims.list() {
                    let bound_here = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                        == v.metadata.name.as_deref();
                    let unbound = c
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_ref())
                        .is_none();
                    if bound_here || unbound {
                        ctx.queue.add(Key::Claim(key_of(&c.metadata)));
                    }
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// A class or a node changed: every unbound claim is looked at again.
async fn watch_all<K: Send + Sync>(mut changes: Subscription<K>, ctx: Arc<Context>) {
    while changes.next().await.is_some() {
        for c in ctx.caches.claims.list() {
            let unbound = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_ref())
                .is_none();
            if unbound {
                ctx.queue.add(Key::Claim(key_of(&c.metadata)));
            }
        }
    }
}

/// Makes the `local-path` StorageClass once, when the controller starts and no class of that
/// name exists (one the administrator changed or made is left as it is).
async fn ensure_local_path_class(ctx: Arc<Context>) {
    ctx.caches.storage_classes.wait_synced().await;
    if ctx
        .caches
        .storage_classes
        .get(reconcile::LOCAL_PATH_CLASS)
        .is_some()
    {
        return;
    }
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": reconcile::LOCAL_PATH_CLASS,
            "annotations": {reconcile::DEFAULT_CLASS: "true"},
        },
        "provisioner": reconcile::LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    match ctx
        .executor
        .api()
        .create(
            resource_of::<StorageClass>(),
            None,
            class,
            WriteOptions::default(),
        )
        .await
    {
        Ok(_) => tracing::info!("created the local-path StorageClass"),
        Err(ApiError::AlreadyExists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot create the local-path StorageClass"),
    }
}

async fn sync(ctx: &Context, key: Key) -> Result<Option<Duration>, ApiError> {
    let writes = match &key {
        Key::Claim(k) => {
            let Some(claim) = ctx.caches.claims.get(k) else {
                return Ok(None);
            };
            let volumes = ctx.caches.volumes.list();
            let classes = ctx.caches.storage_classes.list();
            let nodes: BTreeMap<String, Arc<Node>> = ctx
                .caches
                .nodes
                .list()
                .into_iter()
                .map(|n| (key_of(&n.metadata), n))
                .collect();
            let world = World {
                volumes: &volumes,
                classes: &classes,
                nodes: &nodes,
            };
            reconcile::claim(&claim, &world)
        }
        Key::Volume(name) => {
            let Some(volume) = ctx.caches.volumes.get(name) else {
                return Ok(None);
            };
            let claims: BTreeMap<String, Arc<PersistentVolumeClaim>> = ctx
                .caches
                .claims
                .list()
                .into_iter()
                .map(|c| (key_of(&c.metadata), c))
                .collect();
            reconcile::volume(&volume, &claims)
        }
    };
    for write in writes {
        apply(ctx, write).await?;
    }
    Ok(None)
}

/// Carries out one write. An object that is gone needs nothing any more.
async fn apply(ctx: &Context, write: Write) -> Result<(), ApiError> {
    let api = ctx.executor.api();
    let merge = |body| Patch {
        kind: PatchKind::Merge,
        body,
    };
    let result = match write {
        Write::Claim {
            namespace,
            name,
            body,
            status,
        } => api
            .patch(
                resource_of::<PersistentVolumeClaim>(),
                Some(&namespace),
                &name,
                merge(body),
                status,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        Write::Volume { name, body, status } => api
            .patch(
                resource_of::<PersistentVolume>(),
                None,
                &name,
                merge(body),
                status,
                WriteOptions::default(),
            )
            .await
            .map(drop),
        Write::CreateVolume(volume) => {
            let name = volume["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match api
                .create(
                    resource_of::<PersistentVolume>(),
                    None,
                    volume,
                    WriteOptions::default(),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(volume = %name, "provisioned a local-path volume");
                    Ok(())
                }
                // Made by an earlier pass the cache has not shown yet.
                Err(ApiError::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Write::DeleteVolume { name, uid } => api
            .delete(
                resource_of::<PersistentVolume>(),
                None,
                &name,
                DeleteOptions {
                    precondition_uid: Some(uid),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        Write::Event {
            namespace,
            name,
            uid,
            kind,
            type_,
            reason,
            message,
        } => {
            let involved = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
                namespace,
                name: Some(name),
                uid: Some(uid),
                ..Default::default()
            };
            ctx.executor
                .apply(vec![Action::Record(Note {
                    involved,
                    component: "persistentvolume-controller",
                    type_,
                    reason,
                    message,
                })])
                .await;
            Ok(())
        }
    };
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
