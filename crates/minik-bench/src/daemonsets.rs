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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::podwatch::{self, Seen};
use crate::report::{self, Row, Target, Unit};
use crate::server::Server;
use crate::workload;

/// Flags of `minik-bench daemonsets`.
#[derive(clap::Args, Debug)]
pub struct DaemonSetsArgs {
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the scratch directories go (removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
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
/// The prefix of the simulated nodes' names.
const NODE_PREFIX: &str = "sim-";
/// The goal: every node has an available daemon pod this long after the create.
const GOAL: Duration = Duration::from_secs(5);
/// How often the DaemonSet's status is read while waiting (the resolution of its figure).
const POLL: Duration = Duration::from_millis(10);
/// How long the simulator may take to exit on SIGTERM.
const SIMULATOR_STOP: Duration = Duration::from_secs(30);
/// The server's cluster CIDR: room for a /24 per node up to 16,384 nodes (the default
/// 10.244.0.0/16 has 256).
const CLUSTER_CIDR: &str = "10.0.0.0/10";

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
    let minik = crate::up::minik_path(args.minik.clone())?;
    ensure!(
        args.nodes > 0 && args.clients > 0,
        "--nodes and --clients must be positive"
    );
    report::check_phase_seconds(args.phase_seconds)?;
    report::run_suite(
        "minik-bench daemonsets",
        args.json.as_deref(),
        measure(&minik, &args),
    )
}

/// `minik simulate`, sent SIGTERM (then killed) when dropped.
struct Simulator(Child);

impl Simulator {
    /// Starts the simulator against `server` with a `HOME` of its own under `dir` (no user's
    /// kubeconfig), and waits for its line that says every node is registered.
    fn start(minik: &Path, server: &str, dir: &Path, nodes: usize) -> anyhow::Result<Simulator> {
        std::fs::create_dir_all(dir)?;
        let mut child = Command::new(minik)
            .args(["simulate", "--server", server, "--nodes"])
            .arg(nodes.to_string())
            .args(["--name-prefix", NODE_PREFIX])
            .env("HOME", dir)
            .env_remove("MINIK_SERVER")
            .env_remove("MINIK_TOKEN")
            .env_remove("MINIK_CERTIFICATE_AUTHORITY")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} simulate", minik.display()))?;
        let stdout = child.stdout.take();
        let simulator = Simulator(child);
        let registered = stdout.and_then(|out| {
            use std::io::BufRead;
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find(|line| line.contains("nodes registered"))
        });
        ensure!(
            registered.is_some(),
            "minik simulate ended before it registered its nodes"
        );
        Ok(simulator)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let asked = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait()? {
                ensure!(
                    status.success(),
                    "minik simulate exited with {status} on SIGTERM"
                );
                return Ok(());
            }
            ensure!(
                asked.elapsed() < SIMULATOR_STOP,
                "minik simulate did not exit within {SIMULATOR_STOP:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    limit: Duration,
}

impl Ctx {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "GET {path} answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON"))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Waits until `done` holds of the answer to `GET path`, reading it every [`POLL`];
    /// answers when it first held.
    async fn poll(
        &self,
        what: &str,
        path: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + self.limit;
        loop {
            let answer = self.get(path).await?;
            if done(&answer) {
                return Ok(Instant::now());
            }
            ensure!(
                Instant::now() < deadline,
                "{what} did not happen within {:?} (last: {})",
                self.limit,
                answer.get("status").unwrap_or(&answer)
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn ready_nodes(list: &Value) -> usize {
    list["items"].as_array().map_or(0, |nodes| {
        nodes
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count()
    })
}

async fn measure(minik: &Path, args: &DaemonSetsArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = match &args.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("minik-bench-daemonsets-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("minik-bench-daemonsets-")
            .tempdir()?,
    };
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
    };
    progress!("registering {} simulated nodes", args.nodes);
    let simulator = Simulator::start(minik, &ctx.base, &scratch.path().join("sim"), args.nodes)?;
    let nodes = args.nodes;
    ctx.poll(
        &format!("{nodes} simulated nodes Ready"),
        "/api/v1/nodes?labelSelector=minik.io%2Fsimulated%3Dtrue",
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
