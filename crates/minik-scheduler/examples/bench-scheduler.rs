//! Benchmark of the scheduler. Measures the pure decision function alone (decisions per second
//! at 1,000 and 5,000 nodes) and the whole scheduler end to end through an in-process API server
//! over a temporary store (pods bound per second with 1,000 nodes and 10,000 pending pods),
//! printing next to it the baseline: the same server's raw binding rate, without decisions.
//!
//! ```text
//! cargo run --release -p minik-scheduler --example bench-scheduler
//! cargo run --release -p minik-scheduler --example bench-scheduler -- --nodes 1000 --pods 10000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use minik_api::k8s_openapi::api::core::v1::{Node, Pod};
use minik_api::request::WriteOptions;
use minik_apiserver::{ApiServer, Config};
use minik_client::{resource_of, Api};
use minik_scheduler::{schedule, PlacedPod, PodRequirements, Snapshot};
use minik_store::{SledStore, Store, StoreConfig};
use serde_json::{json, Value};

/// The allocator of the `minik` binary, so the in-process server is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many ReplicaSets the pods belong to (spreading has work to do).
const OWNERS: usize = 100;
/// How many creates or binds the loaders keep in flight.
const LOAD_CONCURRENCY: usize = 256;

struct Args {
    nodes: usize,
    pods: usize,
    decision_nodes: Vec<usize>,
    /// `decisions`, `e2e`, or both when absent.
    only: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        nodes: 1000,
        pods: 10_000,
        decision_nodes: vec![1000, 5000],
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .and_then(|v| v.parse::<usize>().map_err(|e| format!("{flag}: {e}")))
        };
        match flag.as_str() {
            "--nodes" => args.nodes = value()?,
            "--pods" => args.pods = value()?,
            "--decision-nodes" => args.decision_nodes = vec![value()?],
            "--only" => match it.next().as_deref() {
                Some(part @ ("decisions" | "e2e")) => args.only = Some(part.to_owned()),
                _ => return Err("--only takes decisions or e2e".into()),
            },
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --nodes N --pods N --decision-nodes N --only decisions|e2e"
                ))
            }
        }
    }
    Ok(args)
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
        .map(|i| serde_json::from_value::<Pod>(pod_json(i)).map(|p| PodRequirements::of(&p)))
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
        "  loaded {nodes} nodes and {pods} pods in {:.1}s",
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

async fn bench(args: Args) -> Result<(), String> {
    println!(
        "Scheduler benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if args.only.as_deref() != Some("e2e") {
        println!();
        println!("Pure decision function (filter + score every node, then place the pod):");
    }
    for nodes in args
        .decision_nodes
        .iter()
        .filter(|_| args.only.as_deref() != Some("e2e"))
    {
        let decisions = (20_000_000 / nodes).clamp(1000, 50_000);
        let rate = bench_decisions(*nodes, decisions)?;
        println!("  {nodes:>6} nodes: {rate:>9.0} decisions/s ({decisions} decisions)");
    }
    if args.only.as_deref() == Some("decisions") {
        return Ok(());
    }
    println!();
    println!(
        "End to end, in-process API server over a temp store, {} nodes, {} pending pods:",
        args.nodes, args.pods
    );
    // The baseline runs before and after the scheduler, and the ratio uses their mean: the
    // machine is shared, and its load drifts.
    let raw_before = bench_raw_binds(args.nodes, args.pods).await?;
    let e2e = bench_scheduler(args.nodes, args.pods).await?;
    let raw_after = bench_raw_binds(args.nodes, args.pods).await?;
    let rate = |d: Duration| args.pods as f64 / d.as_secs_f64().max(1e-9);
    let raw_rate = (rate(raw_before) + rate(raw_after)) / 2.0;
    let total_rate = rate(e2e.total);
    let binding_rate = rate(e2e.binding);
    println!(
        "  baseline, raw binding writes (no decisions): {:>7.0} binds/s before ({:.2}s), {:.0} after ({:.2}s)",
        rate(raw_before),
        raw_before.as_secs_f64(),
        rate(raw_after),
        raw_after.as_secs_f64()
    );
    println!(
        "  scheduler, start to last bind:               {total_rate:>7.0} pods/s ({:.2}s, includes the informers' initial list)",
        e2e.total.as_secs_f64()
    );
    println!(
        "  scheduler, first to last bind:               {binding_rate:>7.0} pods/s ({:.2}s)",
        e2e.binding.as_secs_f64()
    );
    println!(
        "  scheduler, start to last Scheduled event:    {:>7.0} pods/s ({:.2}s; events are written after a burst's bindings)",
        args.pods as f64 / e2e.events.as_secs_f64(),
        e2e.events.as_secs_f64()
    );
    println!(
        "  ratio scheduler/baseline (mean {raw_rate:.0}): {:.2} (start to last), {:.2} (first to last)",
        total_rate / raw_rate,
        binding_rate / raw_rate
    );
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(bench(args)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
