//! The namespace controller: a namespace being deleted (phase Terminating; the API server
//! refuses new content in it) is emptied — every object of every namespaced kind deleted, pods
//! gracefully, owners in the background so that the garbage collector agrees — and once
//! nothing is left its `kubernetes` finalizer is removed through the `finalize` subresource, as
//! Kubernetes' namespace controller does, which lets the API server remove it.

use std::sync::Arc;
use std::time::Duration;

use minik_api::defaults::NAMESPACE_FINALIZER;
use minik_api::k8s_openapi::api::core::v1::Namespace;
use minik_api::resources::{ResourceInfo, RESOURCES};
use minik_api::ApiError;
use minik_client::{Change, ListParams, Subscription};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, is_deleting};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

/// How soon a namespace still holding objects (pods finishing their grace period) is looked at
/// again.
const RECHECK: Duration = Duration::from_secs(1);

struct Context {
    caches: Caches,
    executor: Executor,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let changes = informers.namespaces.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch(changes, queue.clone(), ctx.clone()));
        run_controller(
            "namespace",
            workers,
            tasks,
            &ctx.caches,
            &queue,
            ctx.clone(),
            |ctx| {
                ctx.caches
                    .namespaces
                    .list()
                    .iter()
                    .for_each(|ns| queue.add(kinds::name(&ns.metadata).to_owned()))
            },
            |ctx, key: String| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

async fn watch(mut changes: Subscription<Namespace>, queue: Queue<String>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(ns) => queue.add(kinds::name(&ns.metadata).to_owned()),
            Change::Deleted(_) => {}
            Change::Resync => {
                for ns in ctx.caches.namespaces.list() {
                    queue.add(kinds::name(&ns.metadata).to_owned());
                }
            }
        }
    }
}

/// Whether the namespace still waits for this controller.
fn held(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == NAMESPACE_FINALIZER))
}

/// One pass over a namespace: nothing to do unless it is being deleted; else delete what is
/// left and finalize it once empty.
async fn sync(ctx: &Context, name: &str) -> Result<Option<Duration>, ApiError> {
    let Some(ns) = ctx.caches.namespaces.get(name) else {
        return Ok(None);
    };
    if !is_deleting(&ns.metadata) || !held(&ns) {
        return Ok(None);
    }
    let mut remaining = 0usize;
    for info in RESOURCES.iter().filter(|r| r.namespaced) {
        remaining += empty_kind(ctx, info, name).await?;
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace not empty yet");
        return Ok(Some(RECHECK));
    }
    let rest: Vec<String> = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != NAMESPACE_FINALIZER)
        .collect();
    tracing::info!(namespace = %name, "namespace is empty; finalizing it");
    ctx.executor.finalize_namespace(name, rest).await?;
    Ok(None)
}

/// Deletes every object of one kind in the namespace that is not being deleted yet; answers
/// how many objects of the kind are still there.
async fn empty_kind(
    ctx: &Context,
    info: &'static ResourceInfo,
    ns: &str,
) -> Result<usize, ApiError> {
    let listed = ctx
        .executor
        .api()
        .list(info, Some(ns), &ListParams::default())
        .await?;
    for object in &listed.items {
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str);
        ctx.executor
            .delete_resource(info, Some(ns), name, uid)
            .await
            .or_else(|e| if e.is_conflict() { Ok(()) } else { Err(e) })?;
    }
    Ok(listed.items.len())
}
