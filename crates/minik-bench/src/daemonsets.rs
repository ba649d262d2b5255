//! `minik-bench daemonsets`: a DaemonSet over many nodes, end to end. A real `minik server` and
//! `minik simulate` playing the kubelet of N nodes (issue 22's kwok-style pool; 1,000 agent
//! processes do not fit one machine), driven over loopback HTTP:
//!
//! - the baseline: N bare pods, each with the required node affinity a daemon pod carries
//!   (`matchFields` `metadata.name` to one node), created by the bench with a bounded number
//!   of creates in flight, so that the scheduler places them as it places daemon pods; from the
//!   first create to the last pod seen Running by a watch;
//! - a DaemonSet with the same pod template, from its create to its status saying every one
//!   of the N nodes has an available pod (`numberAvailable`), and to its last pod seen Running.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::args::Common;
use crate::podwatch::{self, Seen};
use crate::report::{self, Row, Target, Unit};
use crate::server::Server;
use crate::simulated::{ready_nodes, Ctx, Simulator, CLUSTER_CIDR, NODE_PREFIX, SIMULATED_NODES};
use crate::workload;

/// Flags of `minik-bench daemonsets`.
#[derive(clap::Args, Debug)]
pub struct DaemonSetsArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated nodes, each getting one pod of the DaemonSet (and one bare pod).
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Creates of bare pods in flight at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds any one phase may take before the run gives up.
    #[arg(long, default_value_t = 120.0)]
    phase_seconds: f64,
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const DAEMONSETS: &str = "/apis/apps/v1/namespaces/default/daemonsets";
const DS_NAME: &str = "bench-ds";
/// The label key both phases' pods carry; its value tells the phases apart.
const LABEL: &str = "bench";
/// The goal: every node has an available daemon pod this long after the create.
const GOAL: Duration = Duration::from_secs(5);
/// How often the DaemonSet's status is read while waiting (the resolution of its figure).
const POLL: Duration = Duration::from_millis(10);

fn container() -> Value {
    json!([{"name": "agent", "image": "bench:1"}])
}

/// A bare pod with the node affinity the DaemonSet controller gives its pod for `node`.
fn pinned_pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL: "baseline"}},
        "spec": {
            "containers": container(),
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node]}
                ]}]
            }}},
        },
    })
}

fn daemon_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": DS_NAME},
        "spec": {
            "selector": {"matchLabels": {LABEL: "ds"}},
            "template": {
                "metadata": {"labels": {LABEL: "ds"}},
                "spec": {"containers": container()},
            },
        },
    })
}

pub fn run(args: DaemonSetsArgs) -> anyhow::Result<()> {
    let minik = args.common.minik()?;
    ensure!(
        args.nodes > 0 && args.clients > 0,
        "--nodes and --clients must be positive"
    );
    report::check_phase_seconds(args.phase_seconds)?;
    report::run_suite(
        "minik-bench daemonsets",
        args.common.json.as_deref(),
        measure(&minik, &args),
    )
}

async fn measure(minik: &Path, args: &DaemonSetsArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = args.common.scratch("minik-bench-daemonsets-")?;
    let http = workload::client(args.clients * 2, Some(Duration::from_secs(30)))?;
    let server = Server::start_with(
        minik,
        &scratch.path().join("server"),
        Some(&http),
        false,
        &["--cluster-cidr", CLUSTER_CIDR],
    )
    .await?;
    let ctx = Ctx {
        http,
        base: server.base(),
        limit: Duration::from_secs_f64(args.phase_seconds),
        poll: POLL,
    };
    progress!("registering {} simulated nodes", args.nodes);
    let simulator = Simulator::start(minik, &ctx.base, &scratch.path().join("sim"), args.nodes)?;
    let nodes = args.nodes;
    ctx.poll(
        &format!("{nodes} simulated nodes Ready"),
        SIMULATED_NODES,
        |list| ready_nodes(list) == nodes,
    )
    .await?;

    let seen = Arc::new(Seen::default());
    let watch = tokio::spawn(podwatch::watch_pods(
        workload::client(2, None)?,
        ctx.base.clone(),
        seen.clone(),
    ));
    let outcome = phases(&ctx, args, &seen).await;
    watch.abort();
    let rss = server.memory().map(|m| m.rss_bytes as f64 / 1e6);
    simulator.stop()?;
    server.stop().await?;
    drop(scratch);
    let (baseline, ds) = outcome?;
    let mut rows = vec![
        Row::new(
            format!("DaemonSet over {nodes} simulated nodes: create to all available"),
            ms(ds.available),
            Unit::Millis,
        )
        .baseline(
            format!("{nodes} pinned bare pods to Running"),
            ms(baseline.took),
        )
        .target(Target::AtMost(ms(GOAL))),
        Row::new(
            "DaemonSet: create to its last pod Running",
            ms(ds.last_running),
            Unit::Millis,
        )
        .baseline("pinned bare pods", ms(baseline.took)),
        Row::new(
            "DaemonSet: status.numberAvailable",
            ds.available_count as f64,
            Unit::Count,
        ),
        Row::new(
            "DaemonSet: pods seen Running",
            ds.running as f64,
            Unit::Count,
        ),
    ];
    if let Ok(rss) = rss {
        rows.push(Row::new(
            format!("server RSS with {nodes} nodes, after both phases"),
            rss,
            Unit::Megabytes,
        ));
    }
    Ok(rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct BaselineRun {
    took: Duration,
}

struct DaemonSetRun {
    available: Duration,
    last_running: Duration,
    available_count: u64,
    running: usize,
}

async fn phases(
    ctx: &Ctx,
    args: &DaemonSetsArgs,
    seen: &Seen,
) -> anyhow::Result<(BaselineRun, DaemonSetRun)> {
    let nodes = args.nodes;
    progress!(
        "baseline: {nodes} bare pods pinned one per node, {} creates in flight, to all Running",
        args.clients
    );
    let names: Vec<String> = (0..nodes).map(|i| format!("pinned-{i:05}")).collect();
    let started = Instant::now();
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let pod = pinned_pod(name, &format!("{NODE_PREFIX}{i}"));
            async move { podwatch::create(&ctx.http, &ctx.base, &pod).await }
        })
        .buffer_unordered(args.clients)
        .collect()
        .await;
    results.into_iter().try_for_each(|r| r.map(drop))?;
    let running = seen.wait_for(&names, ctx.limit).await?;
    let last = running.into_iter().max().unwrap_or(started);
    let baseline = BaselineRun {
        took: last.saturating_duration_since(started),
    };
    progress!("baseline took {:.2}s", baseline.took.as_secs_f64());

    // The bare pods go (at once) before the DaemonSet comes, so that it has the nodes and the
    // store to itself.
    let selector = format!("labelSelector={LABEL}%3Dbaseline");
    let deleted = ctx
        .http
        .delete(format!(
            "{}{PODS}?{selector}&gracePeriodSeconds=0",
            ctx.base
        ))
        .send()
        .await?;
    ensure!(
        deleted.status().is_success(),
        "deleting the bare pods answered {}",
        deleted.status()
    );
    ctx.poll(
        "the bare pods' removal",
        &format!("{PODS}?{selector}"),
        |list| list["items"].as_array().is_none_or(Vec::is_empty),
    )
    .await?;

    progress!("DaemonSet over {nodes} nodes, to all available");
    let started = Instant::now();
    ctx.send(reqwest::Method::POST, DAEMONSETS, &daemon_set())
        .await?;
    let mut available_count = 0;
    let available = ctx
        .poll(
            "the DaemonSet's pods all available",
            &format!("{DAEMONSETS}/{DS_NAME}"),
            |ds| {
                let status = &ds["status"];
                available_count = status["numberAvailable"].as_u64().unwrap_or(0);
                status["desiredNumberScheduled"].as_u64() == Some(nodes as u64)
                    && available_count == nodes as u64
            },
        )
        .await?;
    let (running, last) = seen.running_with_prefix(&format!("{DS_NAME}-"));
    let Some(last) = last else {
        bail!("no pod of the DaemonSet was seen Running");
    };
    progress!(
        "all available after {:.2}s",
        available.saturating_duration_since(started).as_secs_f64()
    );
    ctx.http
        .delete(format!("{}{DAEMONSETS}/{DS_NAME}", ctx.base))
        .send()
        .await?;
    Ok((
        baseline,
        DaemonSetRun {
            available: available.saturating_duration_since(started),
            last_running: last.saturating_duration_since(started),
            available_count,
            running,
        },
    ))
}
