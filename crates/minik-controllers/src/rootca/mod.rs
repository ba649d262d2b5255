//! The root CA publisher: every active namespace has a ConfigMap `kube-root-ca.crt` whose
//! `ca.crt` is the cluster CA (PEM), as Kubernetes' `root-ca-cert-publisher` keeps it, so that
//! a pod's projected volume (`configMap: {name: kube-root-ca.crt}`) gives in-cluster clients the
//! CA to verify the API server with. Made when the namespace appears; put back when deleted or
//! edited (each pass reads it, and every namespace is passed over again at each resync). Only
//! runs when the server serves HTTPS (`Config::root_ca`).

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use minik_api::request::WriteOptions;
use minik_api::resources;
use minik_api::ApiError;
use serde_json::json;
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::is_deleting;
use crate::machinery::{
    enqueue_namespaces, run_controller, watch_namespaces, Caches, Informers, Queue,
};
use crate::Config;

/// The ConfigMap every namespace gets, and its key.
pub(crate) const NAME: &str = "kube-root-ca.crt";
pub(crate) const KEY: &str = "ca.crt";

struct Context {
    caches: Caches,
    executor: Executor,
    ca: String,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let namespaces = informers.namespaces.subscribe();
    let ca = config.root_ca.clone();
    let ctx = ca.map(|ca| {
        Arc::new(Context {
            caches: informers.caches(),
            executor,
            ca,
        })
    });
    let queue: Queue<String> = Queue::new(config);
    let workers = config.workers;
    async move {
        let Some(ctx) = ctx else {
            // Plain HTTP: there is no CA to publish.
            return;
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_namespaces(
            namespaces,
            queue.clone(),
            ctx.caches.clone(),
        ));
        run_controller(
            "root-ca-cert-publisher",
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

/// What to do with namespace `ns`'s ConfigMap, as read.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Nothing,
    Create,
    /// Put the CA back (edited data), keeping the object's other fields.
    Update,
}

fn decide(ns: &Namespace, current: Option<&ConfigMap>, ca: &str) -> Step {
    let active = !is_deleting(&ns.metadata)
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    match current {
        _ if !active => Step::Nothing,
        None => Step::Create,
        Some(cm) => {
            let right = cm
                .data
                .as_ref()
                .and_then(|d| d.get(KEY))
                .map(String::as_str)
                == Some(ca)
                && cm.data.as_ref().is_some_and(|d| d.len() == 1)
                && cm.binary_data.as_ref().is_none_or(|b| b.is_empty());
            if right {
                Step::Nothing
            } else {
                Step::Update
            }
        }
    }
}

async fn sync(ctx: &Context, name: &str) -> Result<Option<Duration>, ApiError> {
    let Some(ns) = ctx.caches.namespaces.get(name) else {
        return Ok(None);
    };
    let info = resources::by_kind("v1", "ConfigMap").map_err(ApiError::Internal)?;
    let api = ctx.executor.api();
    let current = match api.get(info, Some(name), NAME).await {
        Ok(value) => Some(value),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let typed: Option<ConfigMap> = current
        .as_ref()
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("a stored ConfigMap does not decode: {e}")))?;
    let written = match decide(&ns, typed.as_ref(), &ctx.ca) {
        Step::Nothing => return Ok(None),
        Step::Create => {
            let object = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": name},
                "data": {KEY: ctx.ca},
            });
            api.create(info, Some(name), object, WriteOptions::default())
                .await
        }
        Step::Update => {
            let mut object = current.unwrap_or_default();
            object["data"] = json!({KEY: ctx.ca});
            if let Some(map) = object.as_object_mut() {
                map.remove("binaryData");
            }
            api.replace(
                info,
                Some(name),
                NAME,
                object,
                false,
                WriteOptions::default(),
            )
            .await
        }
    };
    match written {
        Ok(_) => {
            tracing::info!(namespace = %name, "published the cluster CA as {NAME}");
            Ok(None)
        }
        // Made or changed meanwhile: look again.
        Err(ApiError::AlreadyExists(_)) | Err(ApiError::Conflict { .. }) => {
            Ok(Some(Duration::ZERO))
        }
        // The namespace began terminating.
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

    fn cm(v: serde_json::Value) -> ConfigMap {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn active_namespaces_get_the_ca_and_edits_are_put_back() {
        let active = ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}}));
        assert_eq!(decide(&active, None, "PEM"), Step::Create);
        let right = cm(json!({"metadata": {"name": NAME}, "data": {"ca.crt": "PEM"}}));
        assert_eq!(decide(&active, Some(&right), "PEM"), Step::Nothing);
        assert_eq!(decide(&active, Some(&right), "NEW PEM"), Step::Update);
        let extra = cm(json!({"metadata": {"name": NAME}, "data": {"ca.crt": "PEM", "x": "y"}}));
        assert_eq!(decide(&active, Some(&extra), "PEM"), Step::Update);
        let terminating =
            ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}));
        assert_eq!(decide(&terminating, None, "PEM"), Step::Nothing);
    }
}
