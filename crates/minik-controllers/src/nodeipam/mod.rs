//! The node IPAM controller: every Node without `spec.podCIDR` gets the first free range of the
//! cluster CIDR (`--cluster-cidr`, a /24 each by default), as Kubernetes' range allocator hands
//! them out. A Node's pod CIDR is never changed once set; one outside the cluster CIDR, on the
//! service CIDR or on another Node's range is reported with a Warning event and left alone. An
//! exhausted cluster CIDR gives upstream's `CIDRNotAvailable` event on the Node that waits.
//!
//! The ranges in use are read from the live Nodes on every pass, so a deleted Node's range is
//! free again and a restart loses nothing: the Nodes are stored. Passes look at all Nodes at
//! once (one key), so two Nodes never get the same range.

mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minik_api::cidr::{check_cluster, check_node_mask, Cidr};
use minik_api::k8s_openapi::api::core::v1::Node;
use minik_api::ApiError;
use minik_client::{object_reference, resource_of, Change, Subscription};
use tokio::task::JoinSet;

use crate::action::Note;
use crate::executor::Executor;
use crate::kinds;
use crate::machinery::{run_controller, Caches, Informers, Queue};
use crate::Config;

use reconcile::{assign_patch, pod_cidrs, prune_pending, Pending, Problem, Settings};

/// The component upstream's allocator records its events as.
const COMPONENT: &str = "cidrAllocator";

impl Config {
    /// Checks the node IPAM settings before anything runs: the node mask must carve the cluster
    /// CIDR (at least its prefix, at most /30), and the cluster CIDR must keep clear of the
    /// service CIDR. Without a cluster CIDR there is nothing to check.
    pub fn check(&self) -> Result<(), String> {
        let Some(cluster) = self.cluster_cidr else {
            return Ok(());
        };
        check_node_mask(cluster, self.node_cidr_mask)
            .map_err(|e| format!("--node-cidr-mask-size: {e}"))?;
        if let Some(service) = self.service_cidr {
            check_cluster(cluster, service).map_err(|e| format!("--cluster-cidr: {e}"))?;
        }
        Ok(())
    }
}

/// What the controller remembers between passes.
#[derive(Default)]
struct State {
    /// Pod CIDRs written that the cache may not show yet.
    pending: Pending,
    /// The problem last reported per Node (with its uid), so that each is recorded once.
    reported: HashMap<String, (String, Problem)>,
}

struct Context {
    caches: Caches,
    executor: Executor,
    settings: Settings,
    state: Mutex<State>,
}

/// The one key of the queue: a pass looks at every Node.
type Pass = ();

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let nodes = informers.nodes.subscribe();
    let caches = informers.caches();
    let queue: Queue<Pass> = Queue::new(config);
    let check = config.check();
    let settings = config.cluster_cidr.map(|cluster| Settings {
        cluster,
        mask: config.node_cidr_mask,
        service: config.service_cidr,
    });
    async move {
        let settings = match (settings, check) {
            (None, _) => return,
            (Some(_), Err(e)) => {
                tracing::error!(error = %e, "node IPAM not started");
                return;
            }
            (Some(settings), Ok(())) => settings,
        };
        tracing::info!(cluster_cidr = %settings.cluster, mask = settings.mask, "node IPAM started");
        let ctx = Arc::new(Context {
            caches,
            executor,
            settings,
            state: Mutex::new(State::default()),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_nodes(nodes, queue.clone()));
        run_controller(
            "nodeipam",
            1,
            tasks,
            &ctx.caches,
            &queue,
            ctx.clone(),
            |_| queue.add(()),
            |ctx, ()| async move { sync(&ctx).await },
        )
        .await;
    }
}

/// Queues a pass when a Node comes, goes, or its pod CIDRs change; heartbeats and other
/// changes leave the allocation as it is.
async fn watch_nodes(mut changes: Subscription<Node>, queue: Queue<Pass>) {
    let mut seen: HashMap<String, (String, Vec<String>)> = HashMap::new();
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(node) => {
                let now = (kinds::uid(&node.metadata).to_owned(), pod_cidrs(&node));
                let name = kinds::name(&node.metadata).to_owned();
                if seen.get(&name) != Some(&now) {
                    seen.insert(name, now);
                    queue.add(());
                }
            }
            Change::Deleted(node) => {
                seen.remove(kinds::name(&node.metadata));
                queue.add(());
            }
            Change::Resync => queue.add(()),
        }
    }
}

/// One pass: decide from the cached Nodes, write the new pod CIDRs, record new problems.
async fn sync(ctx: &Context) -> Result<Option<Duration>, ApiError> {
    let nodes: Vec<Arc<Node>> = ctx.caches.nodes.list();
    let decision = {
        let mut state = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
        prune_pending(&mut state.pending, &nodes);
        reconcile::reconcile(&nodes, &state.pending, &ctx.settings)
    };
    let by_name: HashMap<&str, &Arc<Node>> = nodes
        .iter()
        .map(|n| (kinds::name(&n.metadata), n))
        .collect();

    let mut failure = None;
    for (name, cidr) in &decision.assign {
        let Some(node) = by_name.get(name.as_str()) else {
            continue;
        };
        match assign(ctx, name, *cidr).await {
            Ok(()) => {
                tracing::info!(node = %name, pod_cidr = %cidr, "set the node's pod CIDR");
                let uid = kinds::uid(&node.metadata).to_owned();
                let mut state = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
                state.pending.insert(name.clone(), (uid, *cidr));
            }
            Err(e) => {
                tracing::warn!(node = %name, pod_cidr = %cidr, error = %e, "cannot set the node's pod CIDR");
                failure.get_or_insert(e);
            }
        }
    }

    let mut notes = Vec::new();
    {
        let mut state = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut reported = HashMap::new();
        for (name, problem) in decision.problems {
            let Some(node) = by_name.get(name.as_str()) else {
                continue;
            };
            let uid = kinds::uid(&node.metadata).to_owned();
            let known = (uid, problem);
            if state.reported.get(&name) != Some(&known) {
                let event = known.1.event(&name);
                tracing::warn!(node = %name, "{}", event.message);
                notes.push(Note {
                    involved: object_reference(node.as_ref()),
                    component: COMPONENT,
                    type_: event.type_,
                    reason: event.reason,
                    message: event.message,
                });
            }
            reported.insert(name, known);
        }
        state.reported = reported;
    }
    for note in notes {
        ctx.executor.record(note).await;
    }
    failure.map_or(Ok(None), Err)
}

/// Sets a Node's pod CIDR (both fields, as upstream's `PatchNodeCIDRs`).
async fn assign(ctx: &Context, name: &str, cidr: Cidr) -> Result<(), ApiError> {
    ctx.executor
        .patch_resource(resource_of::<Node>(), None, name, assign_patch(cidr), false)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn settings_are_checked() {
        let mut config = Config::default();
        assert_eq!(config.check(), Ok(()));
        config.cluster_cidr = Some(cidr("10.244.0.0/16"));
        config.service_cidr = Some(cidr("10.96.0.0/12"));
        assert_eq!(config.check(), Ok(()));
        config.node_cidr_mask = 12;
        assert_eq!(
            config.check().unwrap_err(),
            "--node-cidr-mask-size: node mask /12 does not fit cluster CIDR 10.244.0.0/16: it \
             must be at least /16 and at most /30"
        );
        config.node_cidr_mask = 31;
        assert!(config.check().is_err());
        config.node_cidr_mask = 24;
        config.cluster_cidr = Some(cidr("10.96.0.0/16"));
        assert_eq!(
            config.check().unwrap_err(),
            "--cluster-cidr: cluster CIDR 10.96.0.0/16 overlaps the service CIDR 10.96.0.0/12"
        );
        config.service_cidr = None;
        assert_eq!(config.check(), Ok(()));
    }
}
