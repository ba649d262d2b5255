//! The Endpoints controller, and the LoadBalancer status of Services.
//!
//! Endpoints: every change of a Service, of a pod (its readiness, labels, IP, host ports) or of
//! an Endpoints object queues the Services it may concern; a worker asks the pure
//! [`reconcile::plan`] what the Endpoints should be and writes the difference. Readiness changes
//! reach the Endpoints as soon as the pod's watch event does — no polling.
//!
//! LoadBalancer: minik has no cloud load balancer; every node's proxy listens on the Service's
//! `port` at the node's address, so `status.loadBalancer.ingress` lists the Ready nodes'
//! addresses ([`loadbalancer`]).
//!
//! These writes go straight through the [`Api`] rather than the shared executor, whose actions
//! name only the workload kinds; the decisions stay pure.

mod loadbalancer;
mod reconcile;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{Endpoints, Service};
use minik_api::podview::PodView;
use minik_api::request::{DeleteOptions, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Api, Change, Subscription};
use tokio::task::JoinSet;

use crate::executor::Executor;
use crate::kinds::key_of;
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

use reconcile::Plan;

struct Context {
    caches: Caches,
    api: Arc<dyn Api>,
    queue: Queue<String>,
}

/// The Endpoints and LoadBalancer controllers. Subscribes now and runs when the returned
/// future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let services = informers.services.subscribe();
    let pods = informers.pods.subscribe();
    let endpoints = informers.endpoints.subscribe();
    let balancers = loadbalancer::controller(informers, executor.api().clone(), config);
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        api: executor.api().clone(),
        queue: Queue::new(config),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(balancers);
        tasks.spawn(watch_services(services, ctx.clone()));
        tasks.spawn(watch_pods(pods, ctx.clone()));
        tasks.spawn(watch_endpoints(endpoints, ctx.clone()));
        run_controller(
            "endpoints",
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
    for s in ctx.caches.services.list() {
        ctx.queue.add(key_of(&s.metadata));
    }
    // Endpoints whose Service is gone are deleted.
    for e in ctx.caches.endpoints.list() {
        ctx.queue.add(key_of(&e.metadata));
    }
}

async fn watch_services(mut changes: Subscription<Service>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(s) | Change::Deleted(s) => ctx.queue.add(key_of(&s.metadata)),
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_endpoints(mut changes: Subscription<Endpoints>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(e) | Change::Deleted(e) => ctx.queue.add(key_of(&e.metadata)),
            Change::Resync => {}
        }
    }
}

async fn watch_pods(mut changes: Subscription<PodView>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) | Change::Deleted(pod) => {
                for key in services_of(&ctx.caches, &pod) {
                    ctx.queue.add(key);
                }
            }
            Change::Resync => {}
        }
    }
}

/// The Services a change of `pod` may concern: those whose selector picks it now, and those
/// whose Endpoints list it (it may have stopped matching).
fn services_of(caches: &Caches, pod: &PodView) -> BTreeSet<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let mut keys: BTreeSet<String> = caches
        .services
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .is_some_and(|sel| {
                        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
        })
        .iter()
        .map(|s| key_of(&s.metadata))
        .collect();
    let listed = caches.endpoints.filter(|e| {
        e.metadata.namespace.as_deref() == Some(ns)
            && e.subsets.iter().flatten().any(|subset| {
                subset
                    .addresses
                    .iter()
                    .flatten()
                    .chain(subset.not_ready_addresses.iter().flatten())
                    .any(|a| a.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            })
    });
    keys.extend(listed.iter().map(|e| key_of(&e.metadata)));
    keys
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let service = ctx.caches.services.get(key);
    let current = ctx.caches.endpoints.get(key);
    let pods = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns));
    let pods: Vec<&PodView> = pods.iter().map(|p| p.as_ref()).collect();
    let info = resource_of::<Endpoints>();
    match reconcile::plan(ns, name, service.as_deref(), current.as_deref(), &pods) {
        Plan::Nothing => Ok(None),
        Plan::Create(body) => {
            tracing::debug!(endpoints = %key, "creating");
            ctx.api
                .create(info, Some(ns), body, WriteOptions::default())
                .await
                .map(|_| None)
        }
        Plan::Update(body) => {
            tracing::debug!(endpoints = %key, "updating");
            ctx.api
                .replace(info, Some(ns), name, body, false, WriteOptions::default())
                .await
                .map(|_| None)
        }
        Plan::Delete(uid) => {
            let opts = DeleteOptions {
                precondition_uid: Some(uid),
                ..DeleteOptions::default()
            };
            match ctx.api.delete(info, Some(ns), name, opts).await {
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}
