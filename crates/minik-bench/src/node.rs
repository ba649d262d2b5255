//! `minik-bench node`: the node agent with the process runtime, against the release binary —
//! pod start latency (created with `spec.nodeName` set, so no scheduler, to Running as a watch
//! sees it) one at a time and in a burst, next to spawning the same command without minik, and
//! the agent's memory idle and with pods running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::agent::Agent;
use crate::machine::{memory_of, Machine};
use crate::podwatch::{create, wait_node_ready, watch_pods, Seen};
use crate::server::Server;
use crate::stats::{ms, Summary};

const NODE: &str = "bench-node";

/// Flags of `minik-bench node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Where the scratch directories go (removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Pods started one at a time (they stay running for the memory figure).
    #[arg(long, default_value_t = 100)]
    serial: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 500)]
    burst: usize,
    /// Creates in flight during the burst.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// The command every pod runs (and the baseline spawns).
    #[arg(long, default_value = "sleep 1000")]
    command: String,
    /// Seconds any one phase may take before the run fails.
    #[arg(long, default_value_t = 120.0)]
    phase_seconds: f64,
}

fn pod(name: &str, command: &[String]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": command}]
        }
    })
}

/// Spawns the command `n` times without minik, one at a time, each in its own process group
/// with its output to a file, as the runtime does; returns each spawn's latency. The processes
/// are killed afterwards.
fn raw_spawns(command: &[String], n: usize, scratch: &Path) -> anyhow::Result<Vec<Duration>> {
    use std::os::unix::process::CommandExt;
    let mut children = Vec::new();
    let mut took = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let log = std::fs::File::create(scratch.join(format!("raw-{i}.log")))?;
        let child = Command::new(&command[0])
            .args(&command[1..])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot spawn {command:?}"))?;
        took.push(started.elapsed());
        children.push(child);
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(took)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let minik = crate::up::minik_path(args.minik.clone())?;
    let command: Vec<String> = args.command.split_whitespace().map(str::to_owned).collect();
    ensure!(!command.is_empty(), "--command must not be empty");
    ensure!(
        args.serial > 0 && args.burst > 0,
        "--serial and --burst must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(&minik, &args, &command))
}

async fn measure(minik: &Path, args: &NodeArgs, command: &[String]) -> anyhow::Result<()> {
    let limit = Duration::from_secs_f64(args.phase_seconds);
    let scratch = match &args.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("minik-bench-node-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("minik-bench-node-")
            .tempdir()?,
    };
    let machine = Machine::describe(scratch.path());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let server = Server::start(minik, &scratch.path().join("server"), &http).await?;
    let base = server.base();
    let max_pods = (args.serial + args.burst + 10).to_string();
    let mut agent = Agent::start(
        minik,
        &base,
        NODE,
        &scratch.path().join("node"),
        &["--max-pods", &max_pods],
    )?;
    wait_node_ready(&http, &base, NODE, limit).await?;
    // Idle: registered, informer synced, nothing to run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory_of(agent.pid())?;

    let seen = Arc::new(Seen::default());
    let watcher = tokio::spawn(watch_pods(http.clone(), base.clone(), seen.clone()));
    // Let the watch be established before the first create.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut serial = Vec::new();
    for i in 0..args.serial {
        let name = format!("serial-{i}");
        let started = Instant::now();
        create(&http, &base, &pod(&name, command)).await?;
        let at = seen.wait_for(std::slice::from_ref(&name), limit).await?;
        serial.push(at[0].saturating_duration_since(started));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_pods = memory_of(agent.pid())?;

    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i}")).collect();
    let started = Instant::now();
    let creates = futures::stream::iter(names.iter().map(|name| {
        let http = http.clone();
        let base = base.clone();
        let body = pod(name, command);
        async move { create(&http, &base, &body).await.map(|_| ()) }
    }))
    .buffer_unordered(args.clients.max(1))
    .collect::<Vec<_>>()
    .await;
    for result in creates {
        result?;
    }
    let created_in = started.elapsed();
    let at = seen.wait_for(&names, limit).await?;
    let burst_in = at
        .iter()
        .map(|t| t.saturating_duration_since(started))
        .max()
        .unwrap_or_default();
    let burst_memory = memory_of(agent.pid())?;
    let total_pods = args.serial + args.burst;
    let stop_in = agent.stop(limit)?;
    watcher.abort();
    drop(server);

    let raw_dir = scratch.path().join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let raw_serial = raw_spawns(command, args.serial, &raw_dir)?;
    let raw_burst = raw_spawns(command, args.burst, &raw_dir)?;
    let raw_burst_in: Duration = raw_burst.iter().sum();

    let s = Summary::of(&serial).context("no samples")?;
    let r = Summary::of(&raw_serial).context("no samples")?;
    println!(
        "Node agent benchmark (process runtime, command {:?})",
        command.join(" ")
    );
    for line in machine.lines() {
        println!("  {line}");
    }
    println!();
    println!(
        "Pod start, one at a time ({} pods, create → Running seen by a watch):",
        s.count
    );
    println!(
        "  minik:      p50 {:8.2} ms   p99 {:8.2} ms   max {:8.2} ms   (targets: p50 <= 20 ms, p99 <= 100 ms)",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    println!(
        "  raw spawn:  p50 {:8.2} ms   p99 {:8.2} ms   max {:8.2} ms",
        ms(r.p50),
        ms(r.p99),
        ms(r.max)
    );
    println!(
        "  ratio minik/raw: {:.1}x (p50), {:.1}x (p99)",
        ms(s.p50) / ms(r.p50).max(1e-6),
        ms(s.p99) / ms(r.p99).max(1e-6)
    );
    println!();
    println!(
        "Burst of {} pods (created {} in flight):",
        args.burst, args.clients
    );
    println!(
        "  minik:      all Running in {:.2} s (creates done in {:.2} s)   (target: <= 5 s)",
        burst_in.as_secs_f64(),
        created_in.as_secs_f64()
    );
    println!(
        "  raw spawn:  {} spawns in {:.3} s",
        args.burst,
        raw_burst_in.as_secs_f64()
    );
    println!(
        "  ratio minik/raw: {:.1}x",
        burst_in.as_secs_f64() / raw_burst_in.as_secs_f64().max(1e-9)
    );
    println!();
    println!("Agent memory (VmRSS):");
    println!(
        "  idle:                         {:6.1} MiB   (target: <= 15 MB)",
        mib(idle.rss_bytes)
    );
    println!(
        "  {:3} pods running:             {:6.1} MiB   (target: <= 40 MB)",
        args.serial,
        mib(with_pods.rss_bytes)
    );
    println!(
        "  {:3} pods running:             {:6.1} MiB   (peak {:.1} MiB)",
        total_pods,
        mib(burst_memory.rss_bytes),
        mib(burst_memory.peak_bytes)
    );
    println!();
    println!(
        "Agent stop (SIGTERM) with {total_pods} pods: {:.2} s to stop every process and exit",
        stop_in.as_secs_f64()
    );
    Ok(())
}
