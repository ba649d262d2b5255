//! `minik-bench scale`: the control plane at the size of Kubernetes' scalability SLOs (issue 22),
//! on one machine. A real `minik server`, and `minik simulate` playing the kubelets of N nodes
//! (5,000 by default), driven over loopback HTTP:
//!
//! - **fill:** P pods (50,000) created with a bounded number in flight, each placed by the
//!   scheduler and set Running by the simulator; the server's RSS when 1,000, 10,000 and all P
//!   are Running, and what each pod adds beyond its stored bytes; pods bound per second at
//!   that size against the creates per second that fed the scheduler;
//! - **steady:** for S seconds (60) a background of R creates and R deletes a second (100),
//!   each call timed (Kubernetes' SLO: mutating calls p99 <= 1 s) and each new pod timed from
//!   its create to a watch seeing it Running (SLO: pod start p99 <= 5 s), while a watch of the
//!   nodes notes any that stops being Ready (none may flap);
//! - **restart:** the server stopped and started again on its data dir with every object of
//!   the run (goal: under 1 s);
//! - **disk:** a fresh server through C create/delete cycles of a pod (100,000), its data dir
//!   measured as it goes: what the store keeps of objects that no longer exist.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use crate::args::Common;
use crate::podwatch::{self, Seen};
use crate::report::{self, Row, Target, Unit};
use crate::server::Server;
use crate::simulated::{ready_nodes, Ctx, Simulator, CLUSTER_CIDR, SIMULATED_NODES};
use crate::stats::{ms, Summary};
use crate::workload;

/// Flags of `minik-bench scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    /// Simulated nodes.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods created before the steady phase.
    #[arg(long, default_value_t = 50_000)]
    pods: usize,
    /// Creates in flight at once while filling.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Creates (and as many deletes) per second of the steady phase.
    #[arg(long, default_value_t = 100)]
    rate: usize,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// Create/delete cycles of the disk phase (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    cycles: usize,
    /// Seconds any one phase may take before the run gives up.
    #[arg(long, default_value_t = 900.0)]
    phase_seconds: f64,
}

const PODS: &str = "/api/v1/namespaces/default/pods";
/// Kubernetes' SLOs (the scalability SIG's): mutating API calls, and pod start-up.
const MUTATING_P99: Duration = Duration::from_secs(1);
const POD_START_P99: Duration = Duration::from_secs(5);
/// Start-up with every object of the run.
const STARTUP_GOAL: Duration = Duration::from_secs(1);
/// What the issue allows a pod to cost the server beyond its stored bytes.
const PER_POD_GOAL_KB: f64 = 10.0;
/// How often waits over thousands of objects read again.
const POLL: Duration = Duration::from_millis(500);
/// The fill's memory checkpoints (each taken once that many pods are Running).
const CHECKPOINTS: [usize; 2] = [1_000, 10_000];

fn pod(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "bench:1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

pub fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let minik = args.common.minik()?;
    ensure!(
        args.nodes > 0 && args.pods >= args.rate * args.steady_seconds as usize && args.clients > 0,
        "--nodes and --clients must be positive, and --pods at least --rate x --steady-seconds (the steady phase deletes that many)"
    );
    ensure!(args.rate > 0, "--rate must be positive");
    report::check_phase_seconds(args.phase_seconds)?;
    report::run_suite(
        "minik-bench scale",
        args.common.json.as_deref(),
        measure(&minik, &args),
    )
}

/// The bytes the files under `dir` take on disk (allocated blocks: sled's files may be sparse),
/// and their lengths.
fn dir_bytes(dir: &Path) -> anyhow::Result<DiskUse> {
    use std::os::unix::fs::MetadataExt;
    let mut total = DiskUse::default();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let inner = dir_bytes(&entry.path())?;
            total.allocated += inner.allocated;
            total.length += inner.length;
        } else {
            total.allocated += meta.blocks() * 512;
            total.length += meta.len();
        }
    }
    Ok(total)
}

#[derive(Clone, Copy, Default)]
struct DiskUse {
    allocated: u64,
    length: u64,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn measure(minik: &Path, args: &ScaleArgs) -> anyhow::Result<Vec<Row>> {
    let mut rows = envelope(minik, args).await?;
    if args.cycles > 0 {
        rows.extend(disk(minik, args).await?);
    }
    Ok(rows)
}

/// Which simulated nodes were seen not Ready by a watch.
#[derive(Default)]
struct Flaps(Mutex<HashSet<String>>);

/// Follows the simulated nodes from `from` on and notes every one whose Ready condition is
/// not True in some event.
async fn watch_nodes(
    http: reqwest::Client,
    base: String,
    from: String,
    flaps: Arc<Flaps>,
) -> anyhow::Result<()> {
    let response = http
        .get(format!(
            "{base}{SIMULATED_NODES}&watch=true&resourceVersion={from}"
        ))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "the watch of nodes answered {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk?);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let node = &event["object"];
            let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if !ready || event["type"] == "DELETED" {
                if let Some(name) = node["metadata"]["name"].as_str() {
                    let mut flaps = flaps.0.lock().unwrap_or_else(|p| p.into_inner());
                    flaps.insert(name.to_owned());
                }
            }
        }
    }
    Ok(())
}

/// Creates `names` with `clients` in flight; answers when the creates began and ended.
async fn create_all(
    ctx: &Ctx,
    names: &[String],
    clients: usize,
) -> anyhow::Result<(Instant, Instant)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(names)
        .map(|name| {
            let body = pod(name, "fill");
            async move { podwatch::create(&ctx.http, &ctx.base, &body).await }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    results.into_iter().try_for_each(|r| r.map(drop))?;
    Ok((started, Instant::now()))
}

struct Segment {
    pods: usize,
    created_per_sec: f64,
    bound_per_sec: f64,
    rss: u64,
}

/// A server over `data_dir` with a cluster CIDR that has a pod CIDR for every simulated node.
async fn start_server(
    minik: &Path,
    data_dir: &Path,
    http: &reqwest::Client,
) -> anyhow::Result<Server> {
    Server::start_with(
        minik,
        data_dir,
        Some(http),
        false,
        &["--cluster-cidr", CLUSTER_CIDR],
    )
    .await
}

async fn envelope(minik: &Path, args: &ScaleArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = args.common.scratch("minik-bench-scale-")?;
    let data_dir = scratch.path().join("server");
    let http = workload::client(args.clients * 2, Some(Duration::from_secs(60)))?;
    let server = start_server(minik, &data_dir, &http).await?;
    let idle = server.memory()?.rss_bytes;
    let ctx = Ctx {
        http,
        base: server.base(),
        limit: Duration::from_secs_f64(args.phase_seconds),
        poll: POLL,
    };
    let nodes = args.nodes;
    progress!("registering {nodes} simulated nodes");
    let registering = Instant::now();
    let simulator = Simulator::start(minik, &ctx.base, &scratch.path().join("sim"), nodes)?;
    ctx.poll(
        &format!("{nodes} simulated nodes Ready"),
        SIMULATED_NODES,
        |list| ready_nodes(list) == nodes,
    )
    .await?;
    let registered = registering.elapsed();
    let with_nodes = server.memory()?.rss_bytes;
    progress!(
        "{nodes} nodes Ready after {:.1}s; server RSS {:.1} MB",
        registered.as_secs_f64(),
        mb(with_nodes)
    );

    let seen = Arc::new(Seen::default());
    let pod_watch = tokio::spawn(podwatch::watch_pods(
        workload::client(2, None)?,
        ctx.base.clone(),
        seen.clone(),
    ));
    let outcome = fill_and_steady(&ctx, args, &server, &seen).await;
    pod_watch.abort();
    let outcome = outcome?;
    let end_rss = server.memory()?.rss_bytes;
    let stored = dir_bytes(&data_dir)?.allocated;

    progress!("restarting the server on its data dir");
    simulator.stop()?;
    server.stop().await?;
    let http = workload::client(2, Some(Duration::from_secs(60)))?;
    let restarted = start_server(minik, &data_dir, &http).await?;
    let startup = restarted.started_in;
    let objects = count_objects(&http, &restarted.base()).await?;
    let baseline = crate::server::version_run(minik)?;
    restarted.stop().await?;
    drop(scratch);

    let o = outcome;
    let mut rows = vec![
        Row::new(
            format!("{nodes} simulated nodes: registered and Ready"),
            ms(registered),
            Unit::Millis,
        ),
        Row::new(
            format!("server RSS with {nodes} nodes, no pods"),
            mb(with_nodes),
            Unit::Megabytes,
        )
        .baseline("idle", mb(idle)),
    ];
    let mut before = (0usize, with_nodes);
    for s in &o.segments {
        rows.push(
            Row::new(
                format!("server RSS, {} pods Running", s.pods),
                mb(s.rss),
                Unit::Megabytes,
            )
            .baseline(format!("{nodes} nodes, no pods"), mb(with_nodes)),
        );
        let grown = s.rss.saturating_sub(before.1) as f64 / (s.pods - before.0) as f64 / 1e3;
        rows.push(
            Row::new(
                format!(
                    "server RSS per pod beyond its stored bytes, {} to {} pods (kB)",
                    before.0, s.pods
                ),
                grown - o.pod_bytes as f64 / 1e3,
                Unit::Count,
            )
            .baseline(
                format!("growth per pod (kB), with the {}-byte pod", o.pod_bytes),
                grown,
            )
            .target(Target::AtMost(PER_POD_GOAL_KB)),
        );
        rows.push(
            Row::new(
                format!("pods bound/s, {} to {} pods", before.0, s.pods),
                s.bound_per_sec,
                Unit::PerSec,
            )
            .baseline("creates/s feeding the scheduler", s.created_per_sec),
        );
        before = (s.pods, s.rss);
    }
    let rate = args.rate;
    let starts_summary = Summary::of(&o.starts).context("no steady pod was seen Running")?;
    rows.extend([
        p99_row(
            format!(
                "mutating calls p99, {rate} creates + {rate} deletes/s, {} pods",
                args.pods
            ),
            &o.mutating,
        )?
        .target(Target::AtMost(ms(MUTATING_P99))),
        p99_row("creates p99 (steady)", &o.creates)?,
        p99_row("deletes p99 (steady)", &o.deletes)?,
        Row::new(
            "mutating calls refused or failed",
            o.errors as f64,
            Unit::Count,
        ),
        p99_row("pod start p99, create to Running (steady)", &o.starts)?
            .target(Target::AtMost(ms(POD_START_P99))),
        Row::new(
            "pods started in the steady phase",
            starts_summary.count as f64,
            Unit::Count,
        ),
        Row::new(
            format!("nodes Ready at the end, of {nodes}"),
            o.ready_at_end as f64,
            Unit::Count,
        )
        .target(Target::AtLeast(nodes as f64)),
        Row::new(
            "nodes seen not Ready during the steady phase",
            o.flapped as f64,
            Unit::Count,
        )
        .target(Target::AtMost(0.0)),
        Row::new("server RSS at the end", mb(end_rss), Unit::Megabytes).baseline("idle", mb(idle)),
        Row::new("data dir on disk at the end", mb(stored), Unit::Megabytes),
        Row::new(
            format!("start-up with {objects} objects"),
            ms(startup),
            Unit::Millis,
        )
        .baseline("minik --version", ms(baseline))
        .target(Target::AtMost(ms(STARTUP_GOAL))),
    ]);
    Ok(rows)
}

/// The p99 of `samples`, beside their p50.
fn p99_row(figure: impl Into<String>, samples: &[Duration]) -> anyhow::Result<Row> {
    let figure = figure.into();
    let summary = Summary::of(samples).with_context(|| format!("{figure}: nothing was timed"))?;
    Ok(Row::new(figure, ms(summary.p99), Unit::Millis).baseline("p50", ms(summary.p50)))
}

/// How many objects the server holds: pods, nodes, leases and events of every namespace.
async fn count_objects(http: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let mut total = 0;
    for path in [
        "/api/v1/pods",
        "/api/v1/nodes",
        "/apis/coordination.k8s.io/v1/leases",
        "/api/v1/events",
    ] {
        let list: Value = http
            .get(format!("{base}{path}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        total += list["items"].as_array().map_or(0, Vec::len);
    }
    Ok(total)
}

/// When each of `names` was first seen Running, waiting for all of them for at most `limit`.
/// It reads every [`POLL`] rather than on each event: a look over tens of thousands of names
/// per event would take the machine's CPU from the server.
async fn wait_running(
    seen: &Seen,
    names: &[String],
    limit: Duration,
) -> anyhow::Result<Vec<Instant>> {
    let deadline = Instant::now() + limit;
    loop {
        let times = seen.running_times(names);
        if times.len() == names.len() {
            return Ok(times);
        }
        ensure!(
            Instant::now() < deadline,
            "{} of {} pods were not Running within {limit:?}",
            names.len() - times.len(),
            names.len()
        );
        tokio::time::sleep(POLL).await;
    }
}

struct Outcome {
    segments: Vec<Segment>,
    pod_bytes: usize,
    mutating: Vec<Duration>,
    creates: Vec<Duration>,
    deletes: Vec<Duration>,
    starts: Vec<Duration>,
    flapped: usize,
    ready_at_end: usize,
    errors: usize,
}

async fn fill_and_steady(
    ctx: &Ctx,
    args: &ScaleArgs,
    server: &Server,
    seen: &Seen,
) -> anyhow::Result<Outcome> {
    let names: Vec<String> = (0..args.pods).map(|i| format!("fill-{i:06}")).collect();
    let mut segments = Vec::new();
    let mut done = 0;
    for end in CHECKPOINTS
        .into_iter()
        .filter(|c| *c < args.pods)
        .chain([args.pods])
    {
        let part = &names[done..end];
        progress!(
            "creating pods {done} to {end} with {} in flight",
            args.clients
        );
        let (started, created) = create_all(ctx, part, args.clients).await?;
        let running = wait_running(seen, part, ctx.limit).await?;
        let bound = seen.bound_times(part);
        let last_bound = bound.iter().max().copied().unwrap_or(created);
        let took = |until: Instant| {
            until
                .saturating_duration_since(started)
                .as_secs_f64()
                .max(1e-3)
        };
        let rss = server.memory()?.rss_bytes;
        let last_running = running.iter().max().copied().unwrap_or(created);
        progress!(
            "{end} pods Running {:.1}s after their first create (created in {:.1}s, bound by {:.1}s); server RSS {:.1} MB",
            took(last_running),
            took(created),
            took(last_bound),
            mb(rss)
        );
        segments.push(Segment {
            pods: end,
            created_per_sec: part.len() as f64 / took(created),
            bound_per_sec: bound.len() as f64 / took(last_bound),
            rss,
        });
        done = end;
    }
    let sample: Value = ctx.get(&format!("{PODS}/{}", names[0])).await?;
    let pod_bytes = serde_json::to_vec(&sample)?.len();

    // The steady phase: the node watch starts from now.
    let nodes_now: Value = ctx.get(SIMULATED_NODES).await?;
    let from = nodes_now["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let flaps = Arc::new(Flaps::default());
    let node_watch = tokio::spawn(watch_nodes(
        workload::client(2, None)?,
        ctx.base.clone(),
        from,
        flaps.clone(),
    ));
    let rate = args.rate;
    let seconds = args.steady_seconds;
    progress!("steady: {rate} creates and {rate} deletes a second for {seconds}s");
    let calls = (rate as u64 * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut created_at = Vec::with_capacity(calls);
    let mut mutating = Vec::with_capacity(calls * 2);
    let (mut creates, mut deletes) = (Vec::new(), Vec::new());
    let mut errors = 0usize;
    let mut first_error = None;
    let steady_names: Vec<String> = (0..calls).map(|i| format!("steady-{i:06}")).collect();
    let mut issued = 0;
    while issued < calls || !in_flight.is_empty() {
        tokio::select! {
            _ = tick.tick(), if issued < calls => {
                let name = steady_names[issued].clone();
                let victim = names[issued].clone();
                issued += 1;
                let http = ctx.http.clone();
                let base = ctx.base.clone();
                in_flight.push(async move {
                    let body = pod(&name, "steady");
                    let sent = Instant::now();
                    let created = podwatch::create(&http, &base, &body).await.map(drop);
                    (true, name, sent, sent.elapsed(), created)
                }.boxed());
                let http = ctx.http.clone();
                let base = ctx.base.clone();
                in_flight.push(async move {
                    let sent = Instant::now();
                    let deleted = http
                        .delete(format!("{base}{PODS}/{victim}"))
                        .send()
                        .await
                        .map_err(anyhow::Error::from)
                        .and_then(|r| {
                            ensure!(r.status().is_success(), "deleting {victim} answered {}", r.status());
                            Ok(())
                        });
                    (false, victim, sent, sent.elapsed(), deleted)
                }.boxed());
            }
            Some((create, name, sent, took, result)) = in_flight.next() => {
                match result {
                    Ok(()) => {
                        mutating.push(took);
                        if create {
                            creates.push(took);
                            created_at.push((name, sent));
                        } else {
                            deletes.push(took);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
        }
    }
    if let Some(e) = &first_error {
        progress!("{errors} mutating calls failed; the first: {e}");
    }
    let wanted: Vec<String> = created_at.iter().map(|(n, _)| n.clone()).collect();
    let running = wait_running(seen, &wanted, ctx.limit).await?;
    let starts: Vec<Duration> = created_at
        .iter()
        .zip(running)
        .map(|((_, sent), at)| at.saturating_duration_since(*sent))
        .collect();
    let nodes_end: Value = ctx.get(SIMULATED_NODES).await?;
    node_watch.abort();
    let flapped = flaps.0.lock().unwrap_or_else(|p| p.into_inner()).len();
    Ok(Outcome {
        segments,
        pod_bytes,
        mutating,
        creates,
        deletes,
        starts,
        flapped,
        ready_at_end: ready_nodes(&nodes_end),
        errors,
    })
}

/// C create/delete cycles of a pod bound to a node that does not exist (nothing else writes),
/// with the data dir measured as it goes.
async fn disk(minik: &Path, args: &ScaleArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = args.common.scratch("minik-bench-scale-")?;
    let data_dir = scratch.path().join("server");
    let http = workload::client(args.clients * 2, Some(Duration::from_secs(60)))?;
    let server = Server::start(minik, &data_dir, &http).await?;
    let base = server.base();
    let empty = dir_bytes(&data_dir)?.allocated;
    let cycles = args.cycles;
    progress!(
        "disk: {cycles} create/delete cycles, {} at once",
        args.clients
    );
    let marks: Vec<usize> = [cycles / 10, cycles / 4, cycles / 2, cycles]
        .into_iter()
        .filter(|m| *m > 0)
        .collect();
    let mut sizes = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    for mark in marks {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(done..mark)
            .map(|i| {
                let (http, base) = (&http, &base);
                async move {
                    // A new name each cycle, as a ReplicaSet's pods have: every create is a new
                    // key, every delete leaves one behind in sled's log.
                    let name = format!("cycle-{i:07}");
                    let mut body = pod(&name, "cycle");
                    body["spec"]["nodeName"] = json!("nowhere");
                    let r = http
                        .post(format!("{base}{PODS}"))
                        .json(&body)
                        .send()
                        .await?;
                    ensure!(r.status().as_u16() == 201, "create answered {}", r.status());
                    let r = http
                        .delete(format!("{base}{PODS}/{name}?gracePeriodSeconds=0"))
                        .send()
                        .await?;
                    ensure!(r.status().is_success(), "delete answered {}", r.status());
                    Ok(())
                }
            })
            .buffer_unordered(args.clients)
            .collect()
            .await;
        results.into_iter().try_for_each(|r| r)?;
        done = mark;
        let size = dir_bytes(&data_dir)?;
        progress!(
            "{mark} cycles after {:.1}s: data dir {:.1} MB on disk ({:.1} MB of file lengths)",
            started.elapsed().as_secs_f64(),
            mb(size.allocated),
            mb(size.length)
        );
        sizes.push((mark, size.allocated));
    }
    let rss = server.memory()?.rss_bytes;
    server.stop().await?;
    drop(scratch);
    let mut rows: Vec<Row> = sizes
        .iter()
        .map(|(mark, size)| {
            Row::new(
                format!("data dir on disk after {mark} create/delete cycles"),
                mb(*size),
                Unit::Megabytes,
            )
            .baseline("fresh data dir", mb(empty))
        })
        .collect();
    rows.push(Row::new(
        format!("server RSS after {cycles} cycles"),
        mb(rss),
        Unit::Megabytes,
    ));
    Ok(rows)
}
