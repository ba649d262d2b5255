//! `minik-bench scheduler`: the scheduler (issue 4). The pure decision function alone
//! (decisions per second at 1,000 and 5,000 nodes), and the whole scheduler end to end through
//! an in-process API server over a temporary store (pods bound per second with 1,000 nodes and
//! 10,000 pending pods), against the baseline of the same server's raw binding rate, without
//! decisions. In process, as inside `minik server`, so that the figure is the scheduler's and
//! the API server's, not the loopback's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use minik_api::k8s_openapi::api::core::v1::{Node, Pod};
use minik_api::podview::PodView;
use minik_api::request::WriteOptions;
use minik_apiserver::{ApiServer, Config};
use minik_client::{resource_of, Api};
use minik_scheduler::{schedule, PlacedPod, PodRequirements, Snapshot};
use minik_store::{SledStore, Store, StoreConfig};
use serde_json::{json, Value};

use crate::report::{self, Row, Target, Unit};

/// How many ReplicaSets the pods belong to (spreading has work to do).
const OWNERS: usize = 100;
/// How many creates or binds the loaders keep in flight.
const LOAD_CONCURRENCY: usize = 256;

/// Flags of `minik-bench scheduler`.
#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    /// Nodes of the end-to-end run.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pending pods of the end-to-end run.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Cluster sizes the pure decision function is timed at.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    decision_nodes: Vec<usize>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn node_json(i: usize) -> Value {
    // Mixed sizes and labels, a few tainted nodes: every filter and score has something to do.
    let cpu = [4, 8, 16][i % 3];
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": format!("node-{i:05}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i:05}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
        }},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu.to_string(), "memory": format!("{}Gi", cpu * 2), "pods": "110"},
            "allocatable": {"cpu": cpu.to_string(), "memory": format!("{}Gi", cpu * 2), "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    });
    if i % 10 == 9 {
        node["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]);
    }
    node
}

fn pod_json(i: usize) -> Value {
    let owner = i % OWNERS;
    let cpu = ["100m", "250m", "50m"][i % 3];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-{owner:03}-{i:06}"),
            "labels": {"app": format!("web-{owner:03}")},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{owner:03}"),
                "uid": format!("00000000-0000-4000-8000-{owner:012}"), "controller": true
            }]
        },
        "spec": {"containers": [{
            "name": "main",
            "image": "nginx:1.25",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}
        }]}
    })
}

/// The pure decision: `decisions` pods placed one after another on `nodes` nodes.
fn bench_decisions(nodes: usize, decisions: usize) -> Result<f64, String> {
    let mut snapshot = Snapshot::new();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(node_json(i)).map_err(|e| e.to_string())?;
        snapshot.set_node(&node);
    }
    let shapes: Vec<PodRequirements> = (0..OWNERS * 3)
        .map(|i| serde_json::from_value::<PodView>(pod_json(i)).map(|p| PodRequirements::of(&p)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    for turn in 0..decisions {
        let pod = &shapes[turn % shapes.len()];
        let placement = schedule(&snapshot, pod, turn).map_err(|e| e.to_string())?;
        // As the scheduler does: the placed pod counts for the next decision.
        snapshot.add_pod(&PlacedPod::new(&placement.node, pod));
    }
    Ok(decisions as f64 / start.elapsed().as_secs_f64())
}

/// Runs every job as its own task (as the scheduler runs each binding), `concurrency` at a time;
/// the first error ends it.
async fn spawn_all<F>(jobs: impl Iterator<Item = F>, concurrency: usize) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), minik_api::ApiError>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    let finish = |done: Option<Result<Result<(), minik_api::ApiError>, tokio::task::JoinError>>| {
        match done {
            Some(Ok(Err(e))) => Err(e.to_string()),
            Some(Err(e)) => Err(e.to_string()),
            _ => Ok(()),
        }
    };
    for job in jobs {
        if running.len() >= concurrency {
            finish(running.join_next().await)?;
        }
        running.spawn(job);
    }
    while !running.is_empty() {
        finish(running.join_next().await)?;
    }
    Ok(())
}

/// A fresh API server over a store in `dir`, with `nodes` nodes and `pods` pending pods.
async fn loaded_server(
    dir: &std::path::Path,
    nodes: usize,
    pods: usize,
) -> Result<(Arc<dyn Api>, SledStore), String> {
    let store = SledStore::open(StoreConfig::new(dir.join("store"))).map_err(|e| e.to_string())?;
    let server = ApiServer::new(Arc::new(store.clone()), Config::default());
    server
        .registry
        .bootstrap()
        .await
        .map_err(|e| e.to_string())?;
    let api: Arc<dyn Api> = Arc::new(server.registry.clone());
    let start = Instant::now();
    let node_info = resource_of::<Node>();
    let pod_info = resource_of::<Pod>();
    let creates = (0..nodes)
        .map(|i| (node_info, None, node_json(i)))
        .chain((0..pods).map(|i| (pod_info, Some("default"), pod_json(i))))
        .map(|(info, ns, body)| {
            let api = api.clone();
            async move {
                api.create(info, ns, body, WriteOptions::default())
                    .await
                    .map(drop)
            }
        });
    spawn_all(creates, LOAD_CONCURRENCY)
        .await
        .map_err(|e| format!("loading the cluster failed: {e}"))?;
    eprintln!(
        "[minik-bench] loaded {nodes} nodes and {pods} pods in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok((api, store))
}

fn has_node(object: &[u8]) -> bool {
    object.windows(11).any(|w| w == b"\"nodeName\":")
}

/// Counts the pods that get a node, from the store's own watch (raw bytes, so that measuring
/// costs next to nothing), until `pods` have one; returns when the first and the last were seen.
async fn watch_bindings(
    store: SledStore,
    from: u64,
    pods: usize,
) -> Result<(Instant, Instant), String> {
    let prefix = resource_of::<Pod>().prefix(None);
    let mut events = store.watch(&prefix, from).map_err(|e| e.to_string())?;
    let mut bound = 0;
    let mut first = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| e.to_string())?;
        let was_bound = event.prev.as_deref().is_some_and(has_node);
        if !was_bound && has_node(&event.object) {
            bound += 1;
            let now = Instant::now();
            first.get_or_insert(now);
            if bound == pods {
                return Ok((first.unwrap_or(now), now));
            }
        }
    }
    Err(format!("the watch ended after {bound} bindings"))
}

/// Waits until `count` objects were added under `prefix`; returns when the last was.
async fn watch_added(
    store: SledStore,
    prefix: String,
    from: u64,
    count: usize,
) -> Result<Instant, String> {
    let mut events = store.watch(&prefix, from).map_err(|e| e.to_string())?;
    let mut added = 0;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| e.to_string())?;
        if event.kind == minik_store::EventType::Added {
            added += 1;
            if added == count {
                return Ok(Instant::now());
            }
        }
    }
    Err(format!("the watch ended after {added} objects"))
}

struct EndToEnd {
    /// From starting the scheduler (informers list everything first) to the last binding.
    total: Duration,
    /// From the first binding to the last.
    binding: Duration,
    /// From starting the scheduler to the last `Scheduled` event (they trail the bindings).
    events: Duration,
}

async fn bench_scheduler(nodes: usize, pods: usize) -> Result<EndToEnd, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (api, store) = loaded_server(dir.path(), nodes, pods).await?;
    let from = store.revision();
    let watcher = tokio::spawn(watch_bindings(store.clone(), from, pods));
    let events_prefix = resource_of::<minik_api::k8s_openapi::api::core::v1::Event>().prefix(None);
    let events = tokio::spawn(watch_added(store.clone(), events_prefix, from, pods));
    let start = Instant::now();
    let scheduler = tokio::spawn(minik_scheduler::run(
        api.clone(),
        minik_scheduler::Config::default(),
    ));
    let bound = tokio::time::timeout(Duration::from_secs(600), watcher).await;
    let evented = tokio::time::timeout(Duration::from_secs(600), events).await;
    scheduler.abort();
    let (first, last) = bound
        .map_err(|_| "the pods were not all bound within 10 minutes".to_owned())?
        .map_err(|e| e.to_string())??;
    let events_done = evented
        .map_err(|_| "the Scheduled events were not all written within 10 minutes".to_owned())?
        .map_err(|e| e.to_string())??;
    store.close().await;
    Ok(EndToEnd {
        total: last - start,
        binding: last - first,
        events: events_done - start,
    })
}

/// The baseline: the same server binds every pod when told where, `LOAD_CONCURRENCY` at a time,
/// each binding a task of its own as in the scheduler, with no decision, informer or event.
async fn bench_raw_binds(nodes: usize, pods: usize) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (api, store) = loaded_server(dir.path(), nodes, pods).await?;
    let start = Instant::now();
    let binds = (0..pods).map(|i| {
        let api = api.clone();
        async move {
            let name = pod_json(i)["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let node = format!("node-{:05}", i % nodes);
            api.bind("default", &name, &node).await
        }
    });
    spawn_all(binds, LOAD_CONCURRENCY)
        .await
        .map_err(|e| format!("a raw binding failed: {e}"))?;
    let elapsed = start.elapsed();
    store.close().await;
    Ok(elapsed)
}

pub fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes > 0 && args.pods > 0 && args.decision_nodes.iter().all(|n| *n > 0),
        "--nodes, --pods and --decision-nodes must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rows = runtime.block_on(measure(&args))?;
    report::print_and_save("minik-bench scheduler", &rows, args.json.as_deref())
}

async fn measure(args: &SchedulerArgs) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &nodes in &args.decision_nodes {
        let decisions = (20_000_000 / nodes).clamp(1000, 50_000);
        let rate = bench_decisions(nodes, decisions).map_err(anyhow::Error::msg)?;
        eprintln!("[minik-bench] {nodes} nodes: {rate:.0} decisions/s ({decisions} decisions)");
        rows.push(Row::new(
            format!("decisions/s, {nodes} nodes (pure function)"),
            rate,
            Unit::PerSec,
        ));
    }
    // The baseline runs before and after the scheduler, and the ratio uses their mean: the
    // machine is shared, and its load drifts.
    let raw_before = bench_raw_binds(args.nodes, args.pods)
        .await
        .map_err(anyhow::Error::msg)?;
    let e2e = bench_scheduler(args.nodes, args.pods)
        .await
        .map_err(anyhow::Error::msg)?;
    let raw_after = bench_raw_binds(args.nodes, args.pods)
        .await
        .map_err(anyhow::Error::msg)?;
    let rate = |d: Duration| args.pods as f64 / d.as_secs_f64().max(1e-9);
    let raw_rate = (rate(raw_before) + rate(raw_after)) / 2.0;
    eprintln!(
        "[minik-bench] raw binds: {:.0}/s before, {:.0}/s after",
        rate(raw_before),
        rate(raw_after)
    );
    let baseline = "raw binding writes, no decisions (mean of before/after)";
    let (nodes, pods) = (args.nodes, args.pods);
    rows.push(
        Row::new(
            format!("pods bound/s, {nodes} nodes, {pods} pods, start to last bind"),
            rate(e2e.total),
            Unit::PerSec,
        )
        .baseline(baseline, raw_rate)
        .target(Target::AtLeast(3000.0)),
    );
    rows.push(
        Row::new(
            "pods bound/s, first to last bind",
            rate(e2e.binding),
            Unit::PerSec,
        )
        .baseline(baseline, raw_rate),
    );
    rows.push(Row::new(
        "Scheduled events/s (rate-limited to 200/s)",
        rate(e2e.events),
        Unit::PerSec,
    ));
    Ok(rows)
}
