//! `status.loadBalancer.ingress` of LoadBalancer Services: the addresses of the Ready nodes,
//! since every node's proxy listens on the Service's `port` at its own address. A Service that
//! stops being a LoadBalancer loses its ingress.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::{Node, Service};
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Api, Change, Subscription};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::kinds::key_of;
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

/// The ingress a Service should report, given the nodes: one `{ip, ipMode: VIP}` per distinct
/// InternalIP of a Ready node, sorted; nothing for other types.
pub(crate) fn ingress(service: &Service, nodes: &[&Node]) -> Vec<Value> {
    let type_ = service.spec.as_ref().and_then(|s| s.type_.as_deref());
    if type_ != Some("LoadBalancer") {
        return Vec::new();
    }
    let addresses: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none() && node_ready(n))
        .filter_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect();
    addresses
        .into_iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect()
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn current_ingress(service: &Service) -> Vec<Value> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| serde_json::to_value(x).ok())
                .collect()
        })
        .unwrap_or_default()
}

struct Context {
    caches: Caches,
    api: Arc<dyn Api>,
    queue: Queue<String>,
}

pub(crate) fn controller(
    informers: &Informers,
    api: Arc<dyn Api>,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let services = informers.services.subscribe();
    let nodes = informers.nodes.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        api,
        queue: Queue::new(config),
    });
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_services(services, ctx.clone()));
        tasks.spawn(watch_nodes(nodes, ctx.clone()));
        run_controller(
            "service-lb",
            1,
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
}

async fn watch_services(mut changes: Subscription<Service>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(s) => ctx.queue.add(key_of(&s.metadata)),
            Change::Deleted(_) => {}
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// A node that comes, goes or changes readiness changes every LoadBalancer's ingress.
async fn watch_nodes(mut changes: Subscription<Node>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        if let Change::Applied(_) | Change::Deleted(_) = change {
            for s in ctx.caches.services.filter(|s| {
                s.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer")
            }) {
                ctx.queue.add(key_of(&s.metadata));
            }
        }
    }
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(service) = ctx.caches.services.get(key) else {
        return Ok(None);
    };
    let nodes = ctx.caches.nodes.list();
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
    let wanted = ingress(&service, &nodes);
    if wanted == current_ingress(&service) {
        return Ok(None);
    }
    let body = if wanted.is_empty() {
        json!({"status": {"loadBalancer": {"ingress": null}}})
    } else {
        json!({"status": {"loadBalancer": {"ingress": wanted}}})
    };
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    match ctx
        .api
        .patch(
            resource_of::<Service>(),
            Some(ns),
            name,
            Patch {
                kind: PatchKind::Merge,
                body,
            },
            true,
            WriteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ingress_lists_ready_node_addresses_once() {
        let lb: Service = serde_json::from_value(
            json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer"}}),
        )
        .unwrap();
        let nodes = [
            node("n3", "127.0.0.3", true),
            node("n1", "127.0.0.2", true),
            node("n2", "127.0.0.2", true),
            node("down", "127.0.0.9", false),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(
            ingress(&lb, &refs),
            [
                json!({"ip": "127.0.0.2", "ipMode": "VIP"}),
                json!({"ip": "127.0.0.3", "ipMode": "VIP"})
            ]
        );
        let plain: Service = serde_json::from_value(
            json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort"}}),
        )
        .unwrap();
        assert!(ingress(&plain, &refs).is_empty());
    }
}
