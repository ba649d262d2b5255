//! The service account controller: every active namespace has a ServiceAccount named
//! `default`, made when the namespace appears and made again when it is deleted, as
//! Kubernetes' `ServiceAccountsController` does. A namespace being deleted gets none.

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use minik_api::request::WriteOptions;
use minik_api::resources;
use minik_api::ApiError;
use minik_client::{Change, Subscription};
use serde_json::json;
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::{self, is_deleting};
use crate::machinery::{
    enqueue_namespaces, run_controller, watch_namespaces, Caches, Informers, Queue,
};
use crate::Config;

/// The service account every namespace has.
pub(crate) const DEFAULT: &str = "default";

struct Context {
    caches: Caches,
    executor: Executor,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let namespaces = informers.namespaces.subscribe();
    let accounts = informers.service_accounts.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_namespaces(
            namespaces,
            queue.clone(),
            ctx.caches.clone(),
        ));
        tasks.spawn(watch_accounts(accounts, queue.clone()));
        run_controller(
            "serviceaccount",
            workers,
            tasks,
            &ctx.caches,
            &queue,
            ctx.clone(),
            |ctx| enqueue_namespaces(&ctx.caches, &queue),
            |ctx, key: String| async move { sync(&ctx, &key).await },
        )
        .await;
    }
}

/// A deleted `default` account sends its namespace to be looked at again.
async fn watch_accounts(mut changes: Subscription<ServiceAccount>, queue: Queue<String>) {
    while let Some(change) = changes.next().await {
        if let Change::Deleted(sa) = change {
            if kinds::name(&sa.metadata) == DEFAULT {
                queue.add(kinds::namespace(&sa.metadata).to_owned());
            }
        }
    }
}

/// Whether namespace `ns` (as cached) needs its `default` account made.
fn needs_default(ns: &Namespace, has_default: bool) -> bool {
    let active = !is_deleting(&ns.metadata)
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    active && !has_default
}

async fn sync(ctx: &Context, name: &str) -> Result<Option<Duration>, ApiError> {
    let Some(ns) = ctx.caches.namespaces.get(name) else {
        return Ok(None);
    };
    let has_default = ctx
        .caches
        .service_accounts
        .get(&format!("{name}/{DEFAULT}"))
        .is_some();
    if !needs_default(&ns, has_default) {
        return Ok(None);
    }
    let info = resources::by_kind("v1", "ServiceAccount").map_err(ApiError::Internal)?;
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT, "namespace": name},
    });
    match ctx
        .executor
        .api()
        .create(info, Some(name), account, WriteOptions::default())
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "created the default service account");
            Ok(None)
        }
        // Made meanwhile (the cache lags), or the namespace began terminating: nothing to do.
        Err(ApiError::AlreadyExists(_)) => Ok(None),
        Err(e) if e.reason() == "Forbidden" => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(v: serde_json::Value) -> Namespace {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn active_namespaces_get_a_default_account() {
        let active =
            ns(serde_json::json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}));
        assert!(needs_default(&active, false));
        assert!(!needs_default(&active, true));
        let terminating =
            ns(serde_json::json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}));
        assert!(!needs_default(&terminating, false));
        let deleting = ns(serde_json::json!({"metadata": {"name": "a",
            "deletionTimestamp": "2026-12-07T00:00:00Z"}}));
        assert!(!needs_default(&deleting, false));
    }
}
