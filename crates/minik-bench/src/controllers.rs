//! `minik-bench controllers`: the workload controllers end to end (issue 5). A real
//! `minik server` and real `minik node` agents (fake runtime for scale, process runtime for real
//! processes), driven over loopback HTTP:
//!
//! - a Deployment of 1,000 replicas on fake-runtime nodes, from create to all available, against
//!   the baseline of 1,000 bare pods created already bound (no controller, no scheduler) to
//!   all Running on the same nodes;
//! - a rolling update of that Deployment to a new template, until every replica is updated and
//!   available (the baseline is the create above: a rolling update replaces every pod);
//! - 200 replicas of a `sleep` pod on one process-runtime node to all Running, against the raw
//!   spawn of 200 `sleep` processes without minik.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::agent::Agent;
use crate::args::Common;
use crate::report::{self, Row, Target, Unit};
use crate::server::Server;
use crate::workload;

/// Flags of `minik-bench controllers`.
#[derive(clap::Args, Debug)]
pub struct ControllersArgs {
    #[command(flatten)]
    common: Common,
    /// Replicas of the fake-runtime Deployment.
    #[arg(long, default_value_t = 1_000)]
    replicas: usize,
    /// Fake-runtime node agents the replicas spread over.
    #[arg(long, default_value_t = 10)]
    fake_nodes: usize,
    /// Replicas of the `sleep` Deployment on the process-runtime node (0 skips it).
    #[arg(long, default_value_t = 200)]
    process_replicas: usize,
    /// Seconds any one phase may take before the run gives up.
    #[arg(long, default_value_t = 120.0)]
    phase_seconds: f64,
}

const NAMESPACE: &str = "default";
/// How long an agent may take to stop its pods and exit.
const AGENT_STOP: Duration = Duration::from_secs(30);
/// Bare pods of the baseline carry this label.
const BASELINE_LABEL: &str = "bench=baseline";

struct Ctx {
    http: reqwest::Client,
    base: String,
    limit: Duration,
}

impl Ctx {
    /// Creates the Deployment `body` in the bench namespace.
    async fn create_deployment(&self, body: &Value) -> anyhow::Result<StatusCode> {
        self.send(
            reqwest::Method::POST,
            &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
            Some(body),
            "application/json",
        )
        .await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        crate::simulated::get_json(&self.http, &self.base, path).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> anyhow::Result<StatusCode> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", content_type)
                .body(serde_json::to_vec(body)?);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "{method} {path} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(status)
    }

    /// Polls `check` every 10 ms until it returns `Some`, for at most the phase limit.
    async fn until<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + self.limit;
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what} did not happen within {:?}", self.limit);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let minik = args.common.minik()?;
    ensure!(
        args.replicas > 0 && args.fake_nodes > 0,
        "--replicas and --fake-nodes must be positive"
    );
    report::run_suite(
        "minik-bench controllers",
        args.common.json.as_deref(),
        measure(&minik, &args),
    )
}

async fn measure(minik: &Path, args: &ControllersArgs) -> anyhow::Result<Vec<Row>> {
    let scratch = args.common.scratch("minik-bench-controllers-")?;
    let http = workload::client(64, Some(Duration::from_secs(30)))?;
    let server = Server::start(minik, &scratch.path().join("server"), &http).await?;
    let ctx = Ctx {
        http,
        base: server.base(),
        limit: Duration::from_secs_f64(args.phase_seconds),
    };
    let per_node = args.replicas.div_ceil(args.fake_nodes) * 2 + 10;
    let max_pods = per_node.to_string();
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
    wait_nodes_ready(&ctx, args.fake_nodes).await?;

    let mut rows = Vec::new();
    // Baseline: bare pods, already bound, to all Running.
    progress!(
        "baseline: {} bare pods bound to the fake nodes",
        args.replicas
    );
    let baseline = bare_pods_running(&ctx, args.replicas, args.fake_nodes).await?;
    progress!("baseline took {:.2}s", baseline.as_secs_f64());

    progress!("deployment of {} replicas", args.replicas);
    let created = deployment_available(&ctx, "bench-web", args.replicas).await?;
    progress!("all available after {:.2}s", created.as_secs_f64());
    rows.push(against_bare_pods(
        format!(
            "Deployment {} replicas, create to all available",
            args.replicas
        ),
        created,
        args.replicas,
        baseline,
        5_000.0,
    ));
    progress!("rolling update of {} replicas", args.replicas);
    let rolled = rolling_update(&ctx, "bench-web", args.replicas).await?;
    progress!("rolled out after {:.2}s", rolled.as_secs_f64());
    rows.push(against_bare_pods(
        format!(
            "rolling update of {} replicas to all available",
            args.replicas
        ),
        rolled,
        args.replicas,
        baseline,
        15_000.0,
    ));
    ctx.send(
        reqwest::Method::DELETE,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/bench-web"),
        None,
        "",
    )
    .await?;

    if args.process_replicas > 0 {
        let n = args.process_replicas;
        let max_pods = (n + 10).to_string();
        let mut agent = Agent::start(
            minik,
            &ctx.base,
            "process-0",
            &scratch.path().join("process-0"),
            &[
                "--heartbeat-seconds",
                "2",
                "--runtime",
                "process",
                "--max-pods",
                &max_pods,
                "--cpu",
                "64",
                "--memory",
                "256Gi",
                "--taints",
                "bench=process:NoSchedule",
            ],
        )?;
        wait_nodes_ready(&ctx, args.fake_nodes + 1).await?;
        progress!("raw spawn of {n} sleep processes");
        let raw = raw_spawn(n)?;
        progress!("deployment of {n} sleep pods on the process node");
        let took = process_deployment(&ctx, n).await;
        agent.stop(AGENT_STOP)?;
        let took = took?;
        rows.push(
            Row::new(
                format!("{n} sleep pods (process runtime) to all Running"),
                took.as_secs_f64() * 1e3,
                Unit::Millis,
            )
            .baseline(
                format!("raw spawn of {n} sleep processes"),
                raw.as_secs_f64() * 1e3,
            )
            .target(Target::AtMost(5_000.0)),
        );
    }
    for mut agent in agents {
        agent.stop(AGENT_STOP)?;
    }
    server.stop().await?;
    Ok(rows)
}

async fn wait_nodes_ready(ctx: &Ctx, count: usize) -> anyhow::Result<()> {
    ctx.until("nodes Ready", async || {
        let nodes = ctx.get("/api/v1/nodes").await?;
        let ready = items(&nodes)
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        Ok((ready >= count).then_some(()))
    })
    .await
}

fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn is_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
}

async fn bare_pods_running(ctx: &Ctx, count: usize, nodes: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (key, value) = BASELINE_LABEL.split_once('=').unwrap_or_default();
    let creates = futures::stream::iter(0..count).map(|i| {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("bare-{i:05}"), "labels": {key: value}},
            "spec": {"nodeName": format!("fake-{}", i % nodes), "containers": [{"name": "c", "image": "bench:1"}]},
        });
        async move {
            ctx.send(reqwest::Method::POST, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), Some(&pod), "application/json").await
        }
    });
    let results: Vec<_> = creates.buffer_unordered(32).collect().await;
    for r in results {
        r?;
    }
    let took = running_after(ctx, "bare pods Running", BASELINE_LABEL, count, started).await?;
    // Gone at once (grace 0), so the nodes have room for the Deployment.
    ctx.send(
        reqwest::Method::DELETE,
        &format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={BASELINE_LABEL}&gracePeriodSeconds=0"),
        None,
        "",
    )
    .await?;
    Ok(took)
}

fn deployment(name: &str, replicas: usize, template_spec: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels.clone()},
            "template": {"metadata": {"labels": labels}, "spec": template_spec},
        },
    })
}

/// Waits until the Deployment's status says every replica of its current generation is
/// updated and available and no old one is left.
/// Waits until `count` pods that `selector` picks are Running; answers how long that was after
/// `started`.
async fn running_after(
    ctx: &Ctx,
    what: &str,
    selector: &str,
    count: usize,
    started: Instant,
) -> anyhow::Result<Duration> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}");
    ctx.until(what, async || {
        let list = ctx.get(&path).await?;
        Ok((items(&list).iter().filter(|p| is_running(p)).count() >= count).then_some(()))
    })
    .await?;
    Ok(started.elapsed())
}

async fn wait_rolled_out(ctx: &Ctx, name: &str, replicas: usize) -> anyhow::Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}");
    let want = replicas as u64;
    ctx.until("the Deployment rolled out", async || {
        let d = ctx.get(&path).await?;
        let s = &d["status"];
        let done = s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
            && s["updatedReplicas"].as_u64() == Some(want)
            && s["availableReplicas"].as_u64() == Some(want)
            && s["replicas"].as_u64() == Some(want);
        Ok(done.then_some(()))
    })
    .await
}

async fn deployment_available(ctx: &Ctx, name: &str, replicas: usize) -> anyhow::Result<Duration> {
    let body = deployment(
        name,
        replicas,
        json!({"containers": [{"name": "web", "image": "bench:1"}]}),
        json!({"app": name}),
    );
    let started = Instant::now();
    ctx.create_deployment(&body).await?;
    wait_rolled_out(ctx, name, replicas).await?;
    Ok(started.elapsed())
}

async fn rolling_update(ctx: &Ctx, name: &str, replicas: usize) -> anyhow::Result<Duration> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "bench:2"}]}}}});
    let started = Instant::now();
    ctx.send(
        reqwest::Method::PATCH,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"),
        Some(&patch),
        "application/strategic-merge-patch+json",
    )
    .await?;
    wait_rolled_out(ctx, name, replicas).await?;
    Ok(started.elapsed())
}

async fn process_deployment(ctx: &Ctx, replicas: usize) -> anyhow::Result<Duration> {
    let name = "bench-sleep";
    let body = deployment(
        name,
        replicas,
        json!({
            "nodeSelector": {"kubernetes.io/hostname": "process-0"},
            "tolerations": [{"key": "bench", "operator": "Equal", "value": "process", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "sleep", "image": "sleep", "command": ["sleep", "3600"]}],
        }),
        json!({"app": name}),
    );
    let started = Instant::now();
    ctx.create_deployment(&body).await?;
    let selector = format!("app={name}");
    let took = running_after(ctx, "sleep pods Running", &selector, replicas, started).await?;
    ctx.send(
        reqwest::Method::DELETE,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}"),
        None,
        "",
    )
    .await?;
    Ok(took)
}

/// Spawns `count` `sleep 3600` processes as fast as possible (each in its own process group,
/// as the process runtime does), then kills and reaps them; returns the spawning time.
fn raw_spawn(count: usize) -> anyhow::Result<Duration> {
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let mut children = Vec::with_capacity(count);
    let mut failure = None;
    for _ in 0..count {
        match Command::new("sleep")
            .arg("3600")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let took = started.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    match failure {
        Some(e) => Err(e).context("cannot spawn sleep"),
        None => Ok(took),
    }
}

/// A row in milliseconds, shown against the time `replicas` bare bound pods took to run and
/// held to at most `at_most_ms`.
fn against_bare_pods(
    name: String,
    took: Duration,
    replicas: usize,
    baseline: Duration,
    at_most_ms: f64,
) -> Row {
    Row::new(name, took.as_secs_f64() * 1e3, Unit::Millis)
        .baseline(
            format!("{replicas} bare bound pods to Running"),
            baseline.as_secs_f64() * 1e3,
        )
        .target(Target::AtMost(at_most_ms))
}
