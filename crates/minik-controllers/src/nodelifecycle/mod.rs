//! The node lifecycle controller. Every monitor period it looks at each Node's heartbeat: a node
//! whose agent has been silent for the grace period gets Ready=Unknown and the
//! `node.kubernetes.io/unreachable` taints (a node whose agent reports Ready=False gets
//! `node.kubernetes.io/not-ready`); the pods on a node with such a NoExecute taint are deleted
//! when their toleration runs out, so that their owners make new ones on healthy nodes. NoExecute
//! taints are added at a pace per zone (Kubernetes' `--node-eviction-rate`), slower or not at
//! all when much of a zone is down, and removed everywhere when every node is down. A node whose
//! agent comes back gets Ready from its agent and its taints removed here.
//!
//! Silence is judged by when this controller saw the heartbeat change — the node's Lease in
//! `kube-node-lease` or its Ready condition — on its own clock, as Kubernetes does, so clock
//! skew between hosts does not matter.

mod limiter;
mod reconcile;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minik_api::k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use minik_api::k8s_openapi::jiff::SignedDuration;
use minik_api::podview::PodView;
use minik_api::resources::NODE_LEASE_NAMESPACE;
use minik_client::resource_of;
use serde_json::json;

use crate::action::Note;
use crate::executor::Executor;
use crate::kinds::{self, is_deleting};
use crate::machinery::{Caches, Informers};
use crate::Config;

use limiter::TokenBucket;
use reconcile::{
    desired_taints, eviction_time, has_no_execute, health, heartbeat, unknown_status_patch,
    zone_of, zone_rate, zone_state, Health, NoExecute, ZoneState,
};

/// What the controller remembers between passes.
struct State {
    /// Per node: the heartbeat last seen and when it was first seen.
    observed: HashMap<String, (Option<String>, Instant)>,
    /// Per zone: the eviction pace.
    limiters: HashMap<String, TokenBucket>,
}

/// The settings of the node lifecycle controller.
#[derive(Clone, Debug)]
struct Settings {
    grace: Duration,
    eviction_timeout: SignedDuration,
    rate: f64,
    secondary_rate: f64,
    threshold: f64,
    large_cluster: usize,
}

pub(crate) fn controller(
    informers: &Informers,
    executor: Executor,
    config: &Config,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let caches = informers.caches();
    let period = config.node_monitor_period.max(Duration::from_millis(10));
    let settings = Settings {
        grace: config.node_monitor_grace_period,
        eviction_timeout: SignedDuration::try_from(config.pod_eviction_timeout)
            .unwrap_or(SignedDuration::MAX),
        rate: config.node_eviction_rate,
        secondary_rate: config.secondary_node_eviction_rate,
        threshold: config.unhealthy_zone_threshold,
        large_cluster: config.large_cluster_size_threshold,
    };
    async move {
        caches.wait_synced().await;
        let mut state = State {
            observed: HashMap::new(),
            limiters: HashMap::new(),
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            monitor(&caches, &executor, &settings, &mut state, Instant::now()).await;
        }
    }
}

/// One pass over every node.
async fn monitor(
    caches: &Caches,
    executor: &Executor,
    settings: &Settings,
    state: &mut State,
    now: Instant,
) {
    let wall = kinds::whole_seconds(kinds::now());
    let nodes: Vec<Arc<Node>> = caches.nodes.list();
    state
        .observed
        .retain(|name, _| nodes.iter().any(|n| kinds::name(&n.metadata) == name));

    // Silence, then health, per node.
    let mut healths: BTreeMap<String, (Arc<Node>, Health)> = BTreeMap::new();
    for node in &nodes {
        let name = kinds::name(&node.metadata).to_owned();
        let lease = caches.leases.get(&format!("{NODE_LEASE_NAMESPACE}/{name}"));
        let beat = heartbeat(node, lease.as_deref());
        let seen = state
            .observed
            .entry(name.clone())
            .or_insert_with(|| (beat.clone(), now));
        if seen.0 != beat {
            *seen = (beat, now);
        }
        let silent = now.saturating_duration_since(seen.1) > settings.grace;
        if silent {
            if let Some(patch) = unknown_status_patch(node, wall) {
                tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
                if let Err(e) = executor
                    .patch_resource(resource_of::<Node>(), None, &name, patch, true)
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "cannot mark the node Unknown");
                }
            }
        }
        healths.insert(name, (node.clone(), health(node, silent)));
    }

    // Zones and their eviction pace.
    let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (node, h) in healths.values() {
        let counts = zones.entry(zone_of(node)).or_default();
        if *h == Health::Ready {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    let states: BTreeMap<&String, ZoneState> = zones
        .iter()
        .map(|(zone, (ready, not_ready))| {
            (zone, zone_state(*ready, *not_ready, settings.threshold))
        })
        .collect();
    // Every zone fully down looks like the control plane's trouble, not the nodes': evict
    // nothing (Kubernetes' "master disruption" mode).
    let all_down = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    for (zone, zone_state) in &states {
        let (ready, not_ready) = zones[*zone];
        let rate = zone_rate(
            *zone_state,
            ready + not_ready,
            settings.rate,
            settings.secondary_rate,
            settings.large_cluster,
        );
        let limiter = state
            .limiters
            .entry((*zone).clone())
            .or_insert_with(|| TokenBucket::new(rate, now));
        if limiter.qps() != rate {
            tracing::info!(zone = %zone.replace('\u{0}', ""), ?zone_state, rate, "zone eviction rate changed");
            *limiter = TokenBucket::new(rate, now);
        }
    }
    state.limiters.retain(|zone, _| zones.contains_key(zone));

    // Taints.
    for (name, (node, h)) in &healths {
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let no_execute = if *h == Health::Ready || all_down {
            NoExecute::Remove
        } else if has_no_execute(&current) {
            NoExecute::Keep
        } else {
            // Only take a token when it would be used.
            let wants = desired_taints(&current, *h, NoExecute::Add, wall)
                .is_some_and(|t| has_no_execute(&t));
            let zone = zone_of(node);
            if wants
                && state
                    .limiters
                    .get_mut(&zone)
                    .is_some_and(|l| l.try_take(now))
            {
                NoExecute::Add
            } else {
                NoExecute::Keep
            }
        };
        let Some(taints) = desired_taints(&current, *h, no_execute, wall) else {
            continue;
        };
        tracing::info!(node = %name, health = ?h, "updating node taints");
        let body = json!({
            "metadata": {"resourceVersion": kinds::resource_version(&node.metadata)},
            "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }},
        });
        if let Err(e) = executor
            .patch_resource(resource_of::<Node>(), None, name, body, false)
            .await
        {
            // A conflict means the node changed: the next pass sees it.
            tracing::debug!(node = %name, error = %e, "cannot update node taints");
        }
    }

    // Evictions, from the taints as stored (the informer shows what the passes wrote).
    for (name, (node, _)) in &healths {
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !has_no_execute(&taints) || all_down {
            continue;
        }
        let pods: Vec<Arc<PodView>> = caches.pods.filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                && !is_deleting(&p.metadata)
        });
        for pod in pods {
            let Some(at) = eviction_time(&pod, &taints, settings.eviction_timeout) else {
                continue;
            };
            if at > wall {
                continue;
            }
            evict(executor, &pod).await;
        }
    }
}

async fn evict(executor: &Executor, pod: &PodView) {
    let ns = kinds::namespace(&pod.metadata);
    let name = kinds::name(&pod.metadata);
    tracing::info!(pod = %format!("{ns}/{name}"), "evicting a pod from an unhealthy node");
    match executor
        .delete_resource(
            resource_of::<Pod>(),
            Some(ns),
            name,
            Some(kinds::uid(&pod.metadata)),
        )
        .await
    {
        Ok(()) => {
            executor
                .record(Note {
                    involved: ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        namespace: Some(ns.to_owned()),
                        name: Some(name.to_owned()),
                        uid: pod.metadata.uid.clone(),
                        ..ObjectReference::default()
                    },
                    component: "taint-eviction-controller",
                    type_: "Normal",
                    reason: "TaintManagerEviction",
                    message: format!("Marking for deletion Pod {ns}/{name}"),
                })
                .await
        }
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "cannot evict a pod"),
    }
}
