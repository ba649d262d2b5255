//! `minik-bench jobs`: the Job controller (batch/v1) end to end. A real `minik server` and real
//! `minik node --runtime fake` agents, driven over loopback HTTP:
//!
//! - the baseline: bare pods (restartPolicy Never, scripted to exit 0 at once, not bound, so the
//!   scheduler places them) created by the bench with a bounded number of creates in flight,
//!   from the first create to the last pod seen Succeeded by a watch;
//! - a Job of as many completions (parallelism 100) with the same pod template, from its create
//!   to its `Complete` condition seen by a watch, with the pods it created and its final counts.
//!
//! Besides the two times, it reports what explains their gap: how many pods were in flight on
//! average, each pod's time from created to Succeeded, how many times the Job was written, and
//! how long the Job took to say Complete after its last pod succeeded.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::agent::Agent;
use crate::args::Common;
use crate::podwatch;
use crate::report::{self, Row, Target, Unit};
use crate::server::Server;
use crate::stats::Summary;
use crate::workload;

/// Flags of `minik-bench jobs`.
#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    common: Common,
    /// Completions of the Job, and bare pods of the baseline.
    #[arg(long, default_value_t = 1_000)]
    completions: usize,
    /// Parallelism of the Job.
    #[arg(long, default_value_t = 100)]
    parallelism: usize,
    /// Fake-runtime node agents the pods spread over.
    #[arg(long, default_value_t = 10)]
    fake_nodes: usize,
    /// Creates of bare pods in flight at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds any one phase may take before the run gives up.
    #[arg(long, default_value_t = 120.0)]
    phase_seconds: f64,
    /// Write the Job phase's timeline to this file as CSV (milliseconds after the Job's
    /// create, event, object): each pod seen created, Succeeded and released from the
    /// tracking finalizer, and each write to the Job with its counts.
    #[arg(long)]
    timeline: Option<PathBuf>,
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";
const JOB_NAME: &str = "bench-job";
/// The label key both phases' pods carry; its value tells the phases apart.
const LABEL: &str = "bench";
/// The goal: the Job takes at most this many times the bare pods' time.
const GOAL_RATIO: f64 = 1.5;
/// The finalizer the Job controller counts its pods with.
const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// How long an agent may take to stop its pods and exit.
const AGENT_STOP: Duration = Duration::from_secs(30);

/// The pod both phases run: one container the fake runtime exits with code 0 at once.
fn pod_template(label: &str) -> Value {
    json!({
        "metadata": {
            "labels": {LABEL: label},
            "annotations": {
                "minik.io/fake-run-seconds": "0",
                "minik.io/fake-exit-code": "0",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "bench:1"}],
        },
    })
}

fn bare_pod(name: &str) -> Value {
    let mut pod = pod_template("baseline");
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!(name);
    pod
}

fn job(completions: usize, parallelism: usize) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": JOB_NAME},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": 0,
            "template": pod_template("job"),
        },
    })
}

pub fn run(args: JobsArgs) -> anyhow::Result<()> {
    let minik = args.common.minik()?;
    ensure!(
        args.completions > 0 && args.parallelism > 0 && args.fake_nodes > 0 && args.clients > 0,
        "--completions, --parallelism, --fake-nodes and --clients must be positive"
    );
    report::check_phase_seconds(args.phase_seconds)?;
    report::run_suite(
        "minik-bench jobs",
        args.common.json.as_deref(),
        measure(&minik, &args),
    )
}

struct Ctx {
    /// For requests, each bounded in time.
    http: reqwest::Client,
    /// For watches, unbounded.
    watch_http: reqwest::Client,
    base: String,
    limit: Duration,
}

impl Ctx {
    /// Sends a request and answers its JSON body (`null` when empty); fails unless 2xx.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body)?);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        ensure!(
            status.is_success(),
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {path}: not JSON"))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// The store's revision now, from a list of the bench's namespace.
    async fn revision(&self) -> anyhow::Result<String> {
        let list = self
            .get(&format!("{PODS}?labelSelector={LABEL}=none"))
            .await?;
        list["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned)
            .context("the pod list has no metadata.resourceVersion")
    }

    /// Opens a watch of `path` (with `query`) after revision `rv` and forwards its events to
    /// `tx` from a task of its own. Returns once the server answered, so that every event
    /// after that is timed as it arrives.
    async fn watch(
        &self,
        source: Source,
        path: &str,
        query: &str,
        rv: &str,
        tx: mpsc::UnboundedSender<anyhow::Result<Event>>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let url = format!("{}{path}?watch=true&resourceVersion={rv}{query}", self.base);
        let response = self
            .watch_http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("watch {path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "watch {path} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(tokio::spawn(forward(response, source, tx)))
    }
}

/// What a watch follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Pods,
    Jobs,
}

/// One watch event and when it arrived.
struct Event {
    source: Source,
    kind: String,
    object: Value,
    at: Instant,
}

/// Reads a watch's lines and sends each event on; an error or the end of the stream is sent
/// as an error, since the bench never ends its watches before it stops reading.
async fn forward(
    response: reqwest::Response,
    source: Source,
    tx: mpsc::UnboundedSender<anyhow::Result<Event>>,
) {
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = tx.send(Err(anyhow::anyhow!("the {source:?} watch failed: {e}")));
                return;
            }
        };
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = buffer[consumed..].iter().position(|b| *b == b'\n') {
            let line = &buffer[consumed..consumed + end];
            consumed += end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event = match serde_json::from_slice::<Value>(line) {
                Ok(mut v) => Event {
                    source,
                    kind: v["type"].as_str().unwrap_or_default().to_owned(),
                    object: v["object"].take(),
                    at,
                },
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!(
                        "the {source:?} watch sent a line that is not JSON: {e}"
                    )));
                    return;
                }
            };
            if event.kind == "ERROR" {
                let _ = tx.send(Err(anyhow::anyhow!(
                    "the {source:?} watch sent an ERROR event: {}",
                    event.object
                )));
                return;
            }
            if tx.send(Ok(event)).is_err() {
                return;
            }
        }
        buffer.drain(..consumed);
    }
    let _ = tx.send(Err(anyhow::anyhow!(
        "the server ended the {source:?} watch"
    )));
}

/// When each pod of a phase was first seen created, and first seen Succeeded.
#[derive(Default)]
struct Pods {
    added: HashMap<String, Instant>,
    succeeded: HashMap<String, Instant>,
    /// Pods seen Failed (none should be).
    failed: Vec<String>,
    /// When pods seen with the tracking finalizer were first seen without it.
    released: HashMap<String, Instant>,
    /// Pods seen with the tracking finalizer.
    held: HashSet<String>,
    /// Pod events (every write to a pod the watch saw, creates included).
    events: usize,
    /// Each first sighting above, in order: when, what, which pod.
    timeline: Vec<(Instant, &'static str, String)>,
}

impl Pods {
    fn note(&mut self, event: &Event) {
        if event.kind == "BOOKMARK" {
            return;
        }
        let Some(name) = event.object["metadata"]["name"].as_str() else {
            return;
        };
        self.events += 1;
        if event.kind == "DELETED" {
            return;
        }
        if !self.added.contains_key(name) {
            self.added.insert(name.to_owned(), event.at);
            self.timeline.push((event.at, "pod-added", name.to_owned()));
        }
        let finalizers = event.object["metadata"]["finalizers"].as_array();
        if finalizers.is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER)) {
            self.held.insert(name.to_owned());
        } else if self.held.contains(name) && !self.released.contains_key(name) {
            self.released.insert(name.to_owned(), event.at);
            self.timeline
                .push((event.at, "pod-finalizer-removed", name.to_owned()));
        }
        match event.object["status"]["phase"].as_str() {
            Some("Succeeded") if !self.succeeded.contains_key(name) => {
                self.succeeded.insert(name.to_owned(), event.at);
                self.timeline
                    .push((event.at, "pod-succeeded", name.to_owned()));
            }
            Some("Failed") if !self.failed.iter().any(|f| f == name) => {
                self.failed.push(name.to_owned());
            }
            _ => {}
        }
    }

    /// Each pod's time from first seen to first seen Succeeded.
    fn latencies(&self) -> Vec<Duration> {
        self.succeeded
            .iter()
            .filter_map(|(name, done)| Some(done.saturating_duration_since(*self.added.get(name)?)))
            .collect()
    }

    /// The mean and the largest number of pods created and not yet Succeeded over
    /// `[from, to]`.
    fn in_flight(&self, from: Instant, to: Instant) -> (f64, usize) {
        let mut steps: Vec<(Instant, i64)> = self
            .added
            .values()
            .map(|t| (*t, 1))
            .chain(self.succeeded.values().map(|t| (*t, -1)))
            .collect();
        steps.sort();
        let span = to.saturating_duration_since(from).as_secs_f64();
        let (mut level, mut peak, mut area) = (0i64, 0i64, 0.0);
        let mut last = from;
        for (at, step) in steps {
            let at = at.clamp(from, to);
            area += level as f64 * at.saturating_duration_since(last).as_secs_f64();
            last = at;
            level += step;
            peak = peak.max(level);
        }
        area += level as f64 * to.saturating_duration_since(last).as_secs_f64();
        let mean = if span > 0.0 { area / span } else { 0.0 };
        (mean, usize::try_from(peak).unwrap_or(0))
    }

    /// When the `n`-th pod (1-based) was first seen created.
    fn nth_added(&self, n: usize) -> Option<Instant> {
        let mut times: Vec<Instant> = self.added.values().copied().collect();
        times.sort();
        times.get(n.checked_sub(1)?).copied()
    }

    fn last_succeeded(&self) -> Option<Instant> {
        self.succeeded.values().max().copied()
    }
}

/// The baseline: bare pods created with `clients` creates in flight, to all Succeeded.
struct Baseline {
    took: Duration,
    started: Instant,
    pods: Pods,
}

/// The Job: create to Complete.
struct JobRun {
    took: Duration,
    started: Instant,
    pods: Pods,
    /// The Job's status when it was first seen Complete.
    status: Value,
    /// Writes to the Job the watch saw after its create (status patches, finalizer changes),
    /// with the counts each left.
    job_writes: Vec<(Instant, String)>,
    /// Of those, the writes after its last pod was seen Succeeded.
    job_writes_after_last_pod: usize,
}

async fn measure(minik: &Path, args: &JobsArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = args.common.scratch("minik-bench-jobs-")?;
    let http = workload::client(args.clients * 2, Some(Duration::from_secs(30)))?;
    let server = Server::start(minik, &scratch.path().join("server"), &http).await?;
    let ctx = Ctx {
        http,
        watch_http: workload::client(4, None)?,
        base: server.base(),
        limit: Duration::from_secs_f64(args.phase_seconds),
    };
    // Room for both phases' pods at once, whatever the scheduler counts.
    let max_pods = (args.completions.div_ceil(args.fake_nodes) * 2 + 10).to_string();
    let mut agents = Vec::new();
    for i in 0..args.fake_nodes {
        let name = format!("fake-{i}");
        agents.push(Agent::start(
            minik,
            &ctx.base,
            &name,
            &scratch.path().join(&name),
            &[
                "--heartbeat-seconds",
                "2",
                "--runtime",
                "fake",
                "--max-pods",
                &max_pods,
                "--cpu",
                "64",
                "--memory",
                "256Gi",
            ],
        )?);
    }
    progress!("waiting for {} fake nodes to be Ready", args.fake_nodes);
    for i in 0..args.fake_nodes {
        podwatch::wait_node_ready(&ctx.http, &ctx.base, &format!("fake-{i}"), ctx.limit).await?;
    }

    progress!(
        "baseline: {} bare pods, {} creates in flight, to all Succeeded",
        args.completions,
        args.clients
    );
    let baseline = bare_pods(&ctx, args.completions, args.clients).await?;
    progress!("baseline took {:.2}s", baseline.took.as_secs_f64());
    remove_bare_pods(&ctx).await?;

    progress!(
        "Job of {} completions, parallelism {}, to Complete",
        args.completions,
        args.parallelism
    );
    let run = job_complete(&ctx, args.completions, args.parallelism).await?;
    progress!("Complete after {:.2}s", run.took.as_secs_f64());
    ctx.send(
        reqwest::Method::DELETE,
        &format!("{JOBS}/{JOB_NAME}?propagationPolicy=Background"),
        None,
    )
    .await?;

    for mut agent in agents {
        agent.stop(AGENT_STOP)?;
    }
    server.stop().await?;
    drop(scratch);
    if let Some(path) = &args.timeline {
        write_timeline(path, &run)?;
    }
    rows(args, &baseline, &run)
}

/// Creates `count` bare pods with `clients` creates in flight and waits until all are seen
/// Succeeded.
async fn bare_pods(ctx: &Ctx, count: usize, clients: usize) -> anyhow::Result<Baseline> {
    let rv = ctx.revision().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watch = ctx
        .watch(
            Source::Pods,
            PODS,
            &format!("&labelSelector={LABEL}=baseline"),
            &rv,
            tx,
        )
        .await?;
    let started = Instant::now();
    let creates = {
        let (http, base) = (ctx.http.clone(), ctx.base.clone());
        tokio::spawn(async move {
            let results: Vec<anyhow::Result<String>> =
                futures::stream::iter(0..count)
                    .map(|i| {
                        let (http, base) = (&http, &base);
                        async move {
                            podwatch::create(http, base, &bare_pod(&format!("bare-{i:05}"))).await
                        }
                    })
                    .buffer_unordered(clients)
                    .collect()
                    .await;
            results.into_iter().try_for_each(|r| r.map(drop))
        })
    };
    let outcome = follow(ctx, &mut rx, count, Some(creates), |_| Ok(false)).await;
    watch.abort();
    let pods = outcome?;
    let last = pods
        .last_succeeded()
        .context("no bare pod was seen Succeeded")?;
    Ok(Baseline {
        took: last.saturating_duration_since(started),
        started,
        pods,
    })
}

/// Deletes the bare pods at once (grace 0) and waits until they are gone, so that the Job
/// runs on a store and nodes with nothing else to do.
async fn remove_bare_pods(ctx: &Ctx) -> anyhow::Result<()> {
    let selector = format!("labelSelector={LABEL}=baseline");
    ctx.send(
        reqwest::Method::DELETE,
        &format!("{PODS}?{selector}&gracePeriodSeconds=0"),
        None,
    )
    .await?;
    let deadline = Instant::now() + ctx.limit;
    loop {
        let list = ctx.get(&format!("{PODS}?{selector}")).await?;
        if list["items"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the bare pods were not gone within {:?}",
            ctx.limit
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates the Job and waits until it is Complete; the pods it made and its writes are
/// counted on the way.
async fn job_complete(ctx: &Ctx, completions: usize, parallelism: usize) -> anyhow::Result<JobRun> {
    let rv = ctx.revision().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pod_watch = ctx
        .watch(
            Source::Pods,
            PODS,
            &format!("&labelSelector={LABEL}=job"),
            &rv,
            tx.clone(),
        )
        .await?;
    let job_watch = ctx
        .watch(
            Source::Jobs,
            JOBS,
            &format!("&fieldSelector=metadata.name={JOB_NAME}"),
            &rv,
            tx,
        )
        .await;
    let job_watch = match job_watch {
        Ok(w) => w,
        Err(e) => {
            pod_watch.abort();
            return Err(e);
        }
    };
    let started = Instant::now();
    let created = ctx
        .send(
            reqwest::Method::POST,
            JOBS,
            Some(&job(completions, parallelism)),
        )
        .await;
    let outcome = match created {
        Ok(_) => {
            let mut job_writes: Vec<(Instant, String)> = Vec::new();
            let mut complete: Option<(Instant, Value)> = None;
            let result = follow(ctx, &mut rx, usize::MAX, None, |event| {
                if event.kind == "MODIFIED" {
                    let s = &event.object["status"];
                    let uncounted = |k: &str| {
                        s["uncountedTerminatedPods"][k]
                            .as_array()
                            .map_or(0, Vec::len)
                    };
                    job_writes.push((
                        event.at,
                        format!(
                            "active={} succeeded={} uncounted={}",
                            s["active"].as_u64().unwrap_or(0),
                            s["succeeded"].as_u64().unwrap_or(0),
                            uncounted("succeeded") + uncounted("failed"),
                        ),
                    ));
                }
                let conditions = event.object["status"]["conditions"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let holds = |type_: &str| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == type_ && c["status"] == "True")
                };
                if let Some(failed) = holds("Failed") {
                    bail!(
                        "the Job failed: {} {}",
                        failed["reason"].as_str().unwrap_or_default(),
                        failed["message"].as_str().unwrap_or_default()
                    );
                }
                if holds("Complete").is_some() {
                    complete = Some((event.at, event.object["status"].clone()));
                    return Ok(true);
                }
                Ok(false)
            })
            .await;
            result.and_then(|pods| {
                let (done, status) = complete.context("the Job was never seen Complete")?;
                let last_pod = pods.last_succeeded().unwrap_or(started);
                Ok(JobRun {
                    took: done.saturating_duration_since(started),
                    started,
                    job_writes_after_last_pod: job_writes
                        .iter()
                        .filter(|(t, _)| *t > last_pod)
                        .count(),
                    job_writes,
                    pods,
                    status,
                })
            })
        }
        Err(e) => Err(e),
    };
    pod_watch.abort();
    job_watch.abort();
    let run = outcome?;
    let count = |key: &str| run.status[key].as_u64().unwrap_or(0);
    ensure!(
        count("succeeded") == completions as u64 && count("failed") == 0,
        "the Job ended with succeeded {} and failed {} (want {completions} and 0): {}",
        count("succeeded"),
        count("failed"),
        run.status
    );
    ensure!(
        run.pods.failed.is_empty(),
        "{} of the Job's pods failed (first: {})",
        run.pods.failed.len(),
        run.pods.failed[0]
    );
    Ok(run)
}

/// Reads watch events into a [`Pods`] record until `pods_wanted` pods are Succeeded or
/// `on_job` says the Job is done, for at most the phase limit. `creates`, when given, is the
/// task creating the pods: its failure ends the wait.
async fn follow(
    ctx: &Ctx,
    rx: &mut mpsc::UnboundedReceiver<anyhow::Result<Event>>,
    pods_wanted: usize,
    mut creates: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    mut on_job: impl FnMut(&Event) -> anyhow::Result<bool>,
) -> anyhow::Result<Pods> {
    let deadline = tokio::time::Instant::now() + ctx.limit;
    let mut pods = Pods::default();
    let outcome = loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            done = async { creates.as_mut()?.await.ok() }, if creates.is_some() => {
                creates = None;
                match done {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => break Err(e.context("creating the bare pods")),
                    None => break Err(anyhow::anyhow!("the task creating the bare pods failed")),
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                break Err(anyhow::anyhow!(
                    "not done within {:?}: {} pods seen, {} Succeeded",
                    ctx.limit,
                    pods.added.len(),
                    pods.succeeded.len()
                ));
            }
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(e)) => break Err(e),
            None => break Err(anyhow::anyhow!("every watch ended")),
        };
        match event.source {
            Source::Pods => {
                pods.note(&event);
                if let Some(name) = pods.failed.first() {
                    break Err(anyhow::anyhow!("pod {name} failed"));
                }
                if pods.succeeded.len() >= pods_wanted {
                    break Ok(());
                }
            }
            Source::Jobs if event.kind == "BOOKMARK" => {}
            Source::Jobs => match on_job(&event) {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            },
        }
    };
    if let Some(task) = creates {
        task.abort();
    }
    outcome.map(|()| pods)
}

/// Writes the Job phase's timeline as CSV (see `--timeline`).
fn write_timeline(path: &Path, run: &JobRun) -> anyhow::Result<()> {
    let mut lines: Vec<(Instant, &str, &str)> = run
        .pods
        .timeline
        .iter()
        .map(|(at, what, name)| (*at, *what, name.as_str()))
        .chain(
            run.job_writes
                .iter()
                .map(|(at, counts)| (*at, "job-write", counts.as_str())),
        )
        .collect();
    lines.sort_by_key(|(at, _, _)| *at);
    let mut out = String::from("ms,event,object\n");
    for (at, what, object) in lines {
        out.push_str(&format!(
            "{:.3},{what},{object}\n",
            ms(at.saturating_duration_since(run.started))
        ));
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The report: the two times, their ratio against the goal, the Job's counts, and what
/// explains the gap.
fn rows(args: &JobsArgs, baseline: &Baseline, run: &JobRun) -> anyhow::Result<Vec<Row>> {
    let n = args.completions;
    let base_ms = ms(baseline.took);
    let bare = format!("{n} bare pods to Succeeded");
    let count = |key: &str| run.status[key].as_u64().unwrap_or(0) as f64;
    let base_end = baseline.started + baseline.took;
    let job_end = run.started + run.took;
    let (base_mean, base_peak) = baseline.pods.in_flight(baseline.started, base_end);
    let (job_mean, job_peak) = run.pods.in_flight(run.started, job_end);
    let base_latency = Summary::of(&baseline.pods.latencies())
        .context("no bare pod has a created-to-Succeeded time")?;
    let job_latency = Summary::of(&run.pods.latencies())
        .context("no pod of the Job has a created-to-Succeeded time")?;
    let first_pod = run
        .pods
        .nth_added(1)
        .context("the Job created no pod")?
        .saturating_duration_since(run.started);
    let last_pod = run
        .pods
        .last_succeeded()
        .context("no pod of the Job was seen Succeeded")?;
    let mut rows = vec![
        Row::new(
            format!(
                "{n} bare pods (restartPolicy Never, {} creates in flight), first create to all Succeeded",
                args.clients
            ),
            base_ms,
            Unit::Millis,
        ),
        Row::new(
            format!(
                "Job {n} completions, parallelism {}, create to Complete (goal <= {GOAL_RATIO}x the bare pods)",
                args.parallelism
            ),
            ms(run.took),
            Unit::Millis,
        )
        .baseline(bare.clone(), base_ms)
        .target(Target::AtMost(base_ms * GOAL_RATIO)),
        Row::new("Job: pods created", run.pods.added.len() as f64, Unit::Count),
        Row::new("Job: status.succeeded at Complete", count("succeeded"), Unit::Count),
        Row::new("Job: status.failed at Complete", count("failed"), Unit::Count),
        Row::new(
            "Job: create to first pod seen",
            ms(first_pod),
            Unit::Millis,
        ),
    ];
    if let Some(full) = run.pods.nth_added(args.parallelism.min(n)) {
        rows.push(Row::new(
            format!("Job: create to {} pods seen", args.parallelism.min(n)),
            ms(full.saturating_duration_since(run.started)),
            Unit::Millis,
        ));
    }
    rows.extend([
        Row::new(
            "Job: pods in flight (created, not Succeeded), mean",
            job_mean,
            Unit::Count,
        )
        .baseline("bare pods", base_mean),
        Row::new("Job: pods in flight, peak", job_peak as f64, Unit::Count)
            .baseline("bare pods", base_peak as f64),
        Row::new(
            "Job: pod created to Succeeded p50",
            ms(job_latency.p50),
            Unit::Millis,
        )
        .baseline("bare pods", ms(base_latency.p50)),
        Row::new(
            "Job: pod created to Succeeded p99",
            ms(job_latency.p99),
            Unit::Millis,
        )
        .baseline("bare pods", ms(base_latency.p99)),
        Row::new(
            "Job: pod writes seen per pod (create included)",
            run.pods.events as f64 / run.pods.added.len().max(1) as f64,
            Unit::Count,
        )
        .baseline(
            "bare pods",
            baseline.pods.events as f64 / baseline.pods.added.len().max(1) as f64,
        ),
        Row::new(
            "Job: writes to the Job object",
            run.job_writes.len() as f64,
            Unit::Count,
        ),
        Row::new(
            "Job: last pod Succeeded to Complete",
            ms(job_end.saturating_duration_since(last_pod)),
            Unit::Millis,
        ),
        Row::new(
            "Job: writes to the Job after its last pod Succeeded",
            run.job_writes_after_last_pod as f64,
            Unit::Count,
        ),
    ]);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, phase: &str, at: Instant) -> Event {
        Event {
            source: Source::Pods,
            kind: "MODIFIED".into(),
            object: json!({"metadata": {"name": name}, "status": {"phase": phase}}),
            at,
        }
    }

    #[test]
    fn pods_are_timed_from_first_seen_to_first_succeeded() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut pods = Pods::default();
        pods.note(&event("a", "Pending", s(0)));
        pods.note(&event("b", "Pending", s(10)));
        pods.note(&event("a", "Succeeded", s(100)));
        pods.note(&event("a", "Succeeded", s(150)));
        pods.note(&event("b", "Succeeded", s(30)));
        let mut latencies = pods.latencies();
        latencies.sort();
        assert_eq!(
            latencies,
            [Duration::from_millis(20), Duration::from_millis(100)]
        );
        assert_eq!(pods.events, 5);
        assert_eq!(pods.nth_added(2), Some(s(10)));
        assert_eq!(pods.nth_added(0), None);
        assert_eq!(pods.last_succeeded(), Some(s(100)));
        // One pod in flight over [0, 10), two over [10, 30), one over [30, 100): 120 pod-ms / 100 ms.
        let (mean, peak) = pods.in_flight(s(0), s(100));
        assert!((mean - 1.2).abs() < 1e-9, "{mean}");
        assert_eq!(peak, 2);
    }

    #[test]
    fn failed_and_deleted_pods_are_told_apart() {
        let t0 = Instant::now();
        let mut pods = Pods::default();
        pods.note(&event("a", "Failed", t0));
        pods.note(&event("a", "Failed", t0));
        let mut gone = event("b", "Running", t0);
        gone.kind = "DELETED".into();
        pods.note(&gone);
        assert_eq!(pods.failed, ["a"]);
        assert!(!pods.added.contains_key("b"));
        assert_eq!(pods.events, 3);
    }

    #[test]
    fn a_release_is_the_first_sighting_without_the_tracking_finalizer() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut pods = Pods::default();
        let mut held = event("job-a", "Succeeded", s(0));
        held.object["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
        pods.note(&held);
        pods.note(&event("job-a", "Succeeded", s(5)));
        pods.note(&event("job-a", "Succeeded", s(9)));
        pods.note(&event("bare", "Succeeded", s(7)));
        assert_eq!(pods.released.len(), 1);
        assert_eq!(pods.released.get("job-a"), Some(&s(5)));
        let what: Vec<&str> = pods.timeline.iter().map(|(_, w, _)| *w).collect();
        assert_eq!(
            what,
            [
                "pod-added",
                "pod-succeeded",
                "pod-finalizer-removed",
                "pod-added",
                "pod-succeeded"
            ]
        );
    }

    #[test]
    fn the_job_and_the_bare_pods_share_one_template() {
        let j = job(1000, 100);
        let template = &j["spec"]["template"];
        let pod = bare_pod("bare-00001");
        assert_eq!(template["spec"], pod["spec"]);
        assert_eq!(
            template["metadata"]["annotations"],
            pod["metadata"]["annotations"]
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert!(pod["spec"]["nodeName"].is_null());
        assert_eq!(j["spec"]["completions"], 1000);
        assert_eq!(j["spec"]["parallelism"], 100);
    }
}
