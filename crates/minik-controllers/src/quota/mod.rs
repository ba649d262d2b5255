//! The ResourceQuota status controller: keeps each quota's `status.hard` equal to its
//! `spec.hard` and `status.used` equal to what the objects of its namespace really use, recounted
//! when the quota, a pod, a service or a replication controller of the namespace changes, and on
//! every resync. Admission charges creates as they happen; this recount is what gives usage
//! back when objects go, and repairs any charge whose create failed.
//!
//! The quota is read before the objects are counted and written back only if it is still that
//! version, and the API server makes that read wait for creates between their charge and their
//! store write: so a recount never forgets a charge it did not see the object of.

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::ResourceQuota;
use minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use minik_api::k8s_openapi::{self, Metadata};
use minik_api::quota;
use minik_api::ApiError;
use minik_client::{resource_of, Change, InformerCache, ListParams, Subscription};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, key_of};
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

struct Context {
    caches: Caches,
    executor: Executor,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let quota_changes = informers.resource_quotas.subscribe();
    let pod_changes = informers.pods.subscribe();
    let service_changes = informers.services.subscribe();
    let rc_changes = informers.replication_controllers.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_quotas(quota_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_used(pod_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_used(service_changes, queue.clone(), ctx.clone()));
        tasks.spawn(watch_used(rc_changes, queue.clone(), ctx.clone()));
        run_controller(
            "resourcequota",
            workers,
            tasks,
            &ctx.caches,
            &queue,
            ctx.clone(),
            |ctx| all(&ctx.caches.resource_quotas, &queue),
            |ctx, key: String| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

fn all(quotas: &InformerCache<ResourceQuota>, queue: &Queue<String>) {
    for q in quotas.list() {
        queue.add(key_of(&q.metadata));
    }
}

async fn watch_quotas(
    mut changes: Subscription<ResourceQuota>,
    queue: Queue<String>,
    ctx: Arc<Context>,
) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(q) => queue.add(key_of(&q.metadata)),
            Change::Deleted(_) => {}
            Change::Resync => all(&ctx.caches.resource_quotas, &queue),
        }
    }
}

/// Queues the quotas of the namespace of every object that changed.
async fn watch_used<K>(mut changes: Subscription<K>, queue: Queue<String>, ctx: Arc<Context>)
where
    K: k8s_openapi::Resource + Metadata<Ty = ObjectMeta> + Send + Sync + 'static,
{
    while let Some(change) = changes.next().await {
        let ns = match &change {
            Change::Applied(o) | Change::Deleted(o) => kinds::namespace(o.metadata()).to_owned(),
            Change::Resync => {
                all(&ctx.caches.resource_quotas, &queue);
                continue;
            }
        };
        for q in ctx
            .caches
            .resource_quotas
            .filter(|q| kinds::namespace(&q.metadata) == ns)
        {
            queue.add(key_of(&q.metadata));
        }
    }
}

/// Recounts one quota and writes its status if it changed.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(None);
    };
    let info = resource_of::<ResourceQuota>();
    let api = ctx.executor.api();
    // Read first (the server makes this wait for creates in flight), count second.
    let mut object = match api.get(info, Some(ns), name).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let hard = quota::read_list(object.pointer("/spec/hard"));
    let scopes: Vec<String> = object
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    let mut objects = Vec::new();
    for kind in quota::kinds_for(hard.keys()) {
        let listed = api.list(kind, Some(ns), &ListParams::default()).await?;
        objects.extend(listed.items.into_iter().map(|o| (kind, o)));
    }
    let now = kinds::now().as_second();
    let used = quota::total_usage(&hard, &scopes, objects.iter().map(|(k, o)| (*k, o)), now);
    let status = json!({"hard": quota::write_list(&hard), "used": quota::write_list(&used)});
    let current = json!({
        "hard": quota::write_list(&quota::read_list(object.pointer("/status/hard"))),
        "used": quota::write_list(&quota::read_list(object.pointer("/status/used"))),
    });
    if current == status {
        return Ok(None);
    }
    tracing::debug!(quota = %key, used = %quota::pretty(&used), "quota usage recounted");
    object["status"] = status;
    // The body carries the resourceVersion read: a charge made since makes this conflict, and
    // the retry counts again.
    ctx.executor
        .replace_status(info, Some(ns), name, object)
        .await
        .map(|_| None)
}
