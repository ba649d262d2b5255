//! The DaemonSet controller (apps/v1): one pod per eligible node, placed through the scheduler
//! with a node affinity to its node, following nodes as they join, leave, change labels or get
//! tainted, and replaced by revision (RollingUpdate or OnDelete) with a ControllerRevision per
//! template. Changes of DaemonSets, of their pods and revisions, and of nodes' labels, taints
//! and cordons queue the DaemonSet's key; a worker settles its history, asks the pure reconciler
//! ([`reconcile::reconcile`]) for a plan and carries it out with Kubernetes' events.

mod placement;
mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minik_api::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use minik_api::k8s_openapi::api::core::v1::Node;
use minik_api::podview::PodView;
use minik_api::request::WriteOptions;
use minik_api::ApiError;
use minik_client::{resource_of, Change, Subscription};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::action::{Action, Note, Plan};
use crate::executor::Executor;
use crate::expectations::Expectations;
use crate::kinds::{self, controller_ref, key_of, Kind};
use crate::machinery::{
    apply_expecting, expectations_met, observe, run_controller, Caches, Informers, Queue,
};
use crate::names::random_suffix;
use crate::Config;

use reconcile::{history, reconcile, Daemon, Inputs, COMPONENT};

struct Context {
    caches: Caches,
    executor: Executor,
    queue: Queue<String>,
    expectations: Expectations,
    burst: usize,
    /// What of each node decides placement (labels, taints, cordon), as last seen: a node's
    /// heartbeat changes nothing and queues nothing.
    nodes: Mutex<HashMap<String, String>>,
}

/// The DaemonSet controller. Subscribes now, so that no change after this call is missed, and
/// runs when the returned future is polled.
pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let sets = informers.daemon_sets.subscribe();
    let pods = informers.pods.subscribe();
    let nodes = informers.nodes.subscribe();
    let revisions = informers.controller_revisions.subscribe();
    let ctx = Arc::new(Context {
        caches: informers.caches(),
        executor,
        queue: Queue::new(config),
        expectations: Expectations::new(config.expectations_timeout),
        burst: config.burst_replicas.max(1),
        nodes: Mutex::new(HashMap::new()),
    });
    let workers = config.workers;
    async move {
        let mut tasks = JoinSet::new();
        tasks.spawn(watch_sets(sets, ctx.clone()));
        tasks.spawn(watch_pods(pods, ctx.clone()));
        tasks.spawn(watch_nodes(nodes, ctx.clone()));
        tasks.spawn(watch_revisions(revisions, ctx.clone()));
        let caches = ctx.caches.clone();
        let queue = ctx.queue.clone();
        run_controller(
            "daemonset",
            workers,
            tasks,
            &caches,
            &queue,
            ctx,
            enqueue_all,
            |ctx, key| async move { sync(&ctx, &key).await },
        )
        .await
    }
}

fn enqueue_all(ctx: &Context) {
    for ds in ctx.caches.daemon_sets.list() {
        ctx.queue.add(key_of(&ds.metadata));
    }
}

async fn watch_sets(mut changes: Subscription<DaemonSet>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(ds) => ctx.queue.add(key_of(&ds.metadata)),
            Change::Deleted(ds) => ctx.expectations.forget(&key_of(&ds.metadata)),
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

async fn watch_pods(mut changes: Subscription<PodView>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) => match kinds::controller_key(&pod.metadata, Kind::DaemonSet) {
                Some(key) => {
                    observe(&ctx.expectations, &key, &pod, false);
                    ctx.queue.add(key);
                }
                // An orphan: the DaemonSets that select it may adopt it.
                None if controller_ref(&pod.metadata).is_none() => {
                    for ds in ctx.caches.daemon_sets.filter(|d| {
                        d.metadata.namespace == pod.metadata.namespace
                            && Daemon::of(d)
                                .is_ok_and(|d| d.selector.matches(kinds::labels(&pod.metadata)))
                    }) {
                        ctx.queue.add(key_of(&ds.metadata));
                    }
                }
                None => {}
            },
            Change::Deleted(pod) => {
                if let Some(key) = kinds::controller_key(&pod.metadata, Kind::DaemonSet) {
                    observe(&ctx.expectations, &key, &pod, true);
                    ctx.queue.add(key);
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// What of a node decides whether daemon pods run there.
fn placement_facts(node: &Node) -> String {
    json!([node.metadata.labels, node.spec]).to_string()
}

async fn watch_nodes(mut changes: Subscription<Node>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        let changed = match &change {
            Change::Applied(node) => {
                let facts = placement_facts(node);
                let mut seen = ctx.nodes.lock().unwrap_or_else(|p| p.into_inner());
                seen.insert(kinds::name(&node.metadata).to_owned(), facts.clone()) != Some(facts)
            }
            Change::Deleted(node) => {
                let mut seen = ctx.nodes.lock().unwrap_or_else(|p| p.into_inner());
                seen.remove(kinds::name(&node.metadata));
                true
            }
            Change::Resync => true,
        };
        if changed {
            enqueue_all(&ctx);
        }
    }
}

async fn watch_revisions(mut changes: Subscription<ControllerRevision>, ctx: Arc<Context>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(r) | Change::Deleted(r) => {
                if let Some(key) = kinds::controller_key(&r.metadata, Kind::DaemonSet) {
                    ctx.queue.add(key);
                }
            }
            Change::Resync => enqueue_all(&ctx),
        }
    }
}

/// Settles the DaemonSet's history: creates the revision of its template when there is none
/// (bumping `collisionCount` when another object holds its name), renumbers it when it is an
/// old one again, and deletes duplicates. Answers the current hash.
async fn settle_history(
    ctx: &Context,
    daemon: &Daemon<'_>,
    revisions: &[&ControllerRevision],
) -> Result<(String, Vec<ControllerRevision>), ApiError> {
    let found = history(daemon, revisions);
    let old: Vec<ControllerRevision> = found.old.iter().map(|r| (*r).clone()).collect();
    let info = resource_of::<ControllerRevision>();
    let ns = daemon.meta.namespace.as_deref();
    if let Some(revision) = found.create {
        let name = kinds::name(&revision.metadata).to_owned();
        let body = serde_json::to_value(&revision)
            .map_err(|e| ApiError::Internal(format!("cannot encode a revision: {e}")))?;
        match ctx
            .executor
            .api()
            .create(info, ns, body, WriteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                let existing: Option<ControllerRevision> =
                    serde_json::from_value(ctx.executor.api().get(info, ns, &name).await?).ok();
                let ours = existing.as_ref().is_some_and(|existing| {
                    controller_ref(&existing.metadata)
                        .is_some_and(|r| r.uid == kinds::uid(daemon.meta))
                        && crate::history::equal_data(existing, &revision)
                });
                if !ours {
                    // A hash collision: another template (or object) has this name.
                    let count = daemon
                        .status
                        .get("collisionCount")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    ctx.executor
                        .apply(vec![Action::Patch {
                            kind: Kind::DaemonSet,
                            namespace: kinds::namespace(daemon.meta).to_owned(),
                            name: kinds::name(daemon.meta).to_owned(),
                            body: json!({"status": {"collisionCount": count + 1}}),
                            status: true,
                        }])
                        .await
                        .error
                        .map_or(Ok(()), Err)?;
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    } else if let (Some(current), Some(number)) = (found.current, found.renumber) {
        let patch = Action::Patch {
            kind: Kind::ControllerRevision,
            namespace: kinds::namespace(daemon.meta).to_owned(),
            name: kinds::name(&current.metadata).to_owned(),
            body: json!({"revision": number}),
            status: false,
        };
        if let Some(e) = ctx.executor.apply(vec![patch]).await.error {
            return Err(e);
        }
    }
    if !found.duplicates.is_empty() {
        let targets = found
            .duplicates
            .iter()
            .map(|r| crate::action::Target {
                name: kinds::name(&r.metadata).to_owned(),
                uid: kinds::uid(&r.metadata).to_owned(),
                resource_version: None,
            })
            .collect();
        let delete = Action::Delete {
            kind: Kind::ControllerRevision,
            namespace: kinds::namespace(daemon.meta).to_owned(),
            targets,
            propagation: None,
            announce: None,
        };
        if let Some(e) = ctx.executor.apply(vec![delete]).await.error {
            return Err(e);
        }
    }
    Ok((found.hash, old))
}

/// One pass over the DaemonSet at `key`: history, then observe, decide, act.
async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ApiError> {
    let Some(ds) = ctx.caches.daemon_sets.get(key) else {
        ctx.expectations.forget(key);
        return Ok(None);
    };
    // A DaemonSet being deleted is left to the garbage collector, as in Kubernetes.
    if kinds::is_deleting(&ds.metadata) {
        return Ok(None);
    }
    let daemon = match Daemon::of(&ds) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(%key, error = %e, "cannot manage this DaemonSet");
            return Ok(None);
        }
    };
    let namespace = ds.metadata.namespace.clone();
    let revisions: Vec<Arc<ControllerRevision>> = ctx
        .caches
        .controller_revisions
        .filter(|r| r.metadata.namespace == namespace);
    let revision_refs: Vec<&ControllerRevision> = revisions.iter().map(Arc::as_ref).collect();
    let (hash, old) = settle_history(ctx, &daemon, &revision_refs).await?;
    let old_refs: Vec<&ControllerRevision> = old.iter().collect();

    let nodes: Vec<Arc<Node>> = ctx.caches.nodes.list();
    let node_refs: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
    let pods: Vec<Arc<PodView>> = ctx
        .caches
        .pods
        .filter(|p| p.metadata.namespace == namespace);
    let pod_refs: Vec<&PodView> = pods.iter().map(Arc::as_ref).collect();
    let started = Instant::now();
    let may_manage = expectations_met(&ctx.expectations, key, started, &pod_refs);
    let inputs = Inputs {
        nodes: &node_refs,
        pods: &pod_refs,
        old_revisions: &old_refs,
        may_manage,
        now: kinds::now(),
        burst: ctx.burst,
    };
    let decision = reconcile(&daemon, &hash, &inputs, &mut random_suffix);

    let claimed = ctx.executor.apply(decision.claims).await;
    if let Some(e) = claimed.error {
        return Err(e);
    }
    let notes = decision.notes.into_iter().map(Action::Record).collect();
    ctx.executor.apply(notes).await;

    let manage = Plan {
        actions: decision.manage,
        requeue_after: None,
    };
    let creating = !manage.created(Kind::Pod).is_empty();
    let report = apply_expecting(&ctx.executor, &ctx.expectations, key, started, manage).await;
    let mut after = Vec::new();
    if let (Some(e), true) = (report.error.as_ref(), creating) {
        after.push(Action::Record(Note {
            involved: daemon.reference(),
            component: COMPONENT,
            type_: "Warning",
            reason: "FailedCreate",
            message: format!("Error creating: {e}"),
        }));
    }
    if let Some(body) = decision.status {
        after.push(Action::Patch {
            kind: Kind::DaemonSet,
            namespace: kinds::namespace(&ds.metadata).to_owned(),
            name: kinds::name(&ds.metadata).to_owned(),
            body,
            status: true,
        });
    }
    if !decision.truncate.is_empty() {
        after.push(Action::Delete {
            kind: Kind::ControllerRevision,
            namespace: kinds::namespace(&ds.metadata).to_owned(),
            targets: decision.truncate,
            propagation: None,
            announce: None,
        });
    }
    if !after.is_empty() {
        let written = ctx.executor.apply(after).await;
        if let (Some(e), None) = (written.error, &report.error) {
            return Err(e);
        }
    }
    match report.error {
        Some(e) => Err(e),
        None => Ok(decision.requeue_after),
    }
}
