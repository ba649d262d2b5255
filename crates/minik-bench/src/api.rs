//! `minik-bench api`: the API server and store measured end to end against the release binary
//! — durable creates, GETs, a 10,000-pod LIST, watch delivery to 100 watchers, memory and
//! start-up — each next to a baseline measured in the same run; and, in process, the worst-case
//! cost of parsing a request body (`parse.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};

use crate::args::Common;
use crate::cpu::{CpuMeter, CpuUse};
use crate::machine::{Machine, Memory};
use crate::parse::{self, ParseResults};
use crate::report::{self, Row, Target, Unit};
use crate::server::{self, Server};
use crate::sled_baseline::{self, Throughput};
use crate::stats::{median, ms, Summary};
use crate::workload::{self, Ctx, Load, PodTemplate, WatchOutcome};

/// How many alternating rounds the GET test and its /healthz baseline are split into.
const GET_ROUNDS: usize = 5;

/// How many times `minik --version` is timed (the median is reported).
const VERSION_RUNS: usize = 5;

/// The node `--bound-pods` binds every pod to. It does not exist; the scheduler leaves bound
/// pods alone and nothing else in the server looks for their node.
const BOUND_NODE: &str = "bench-node";

/// The namespace the LIST test fills with exactly `--list-pods` pods.
const LIST_NAMESPACE: &str = "bench-list";

/// Flags of `minik-bench api`.
#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent clients for creates and GETs.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Pods created (durably) in the create-throughput test.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Create every pod already bound to a (nonexistent) node, `spec.nodeName: bench-node`, so
    /// the scheduler in the server has nothing to write: the figures are then the API server's
    /// and the store's alone.
    #[arg(long)]
    bound_pods: bool,
    /// Size each pod's JSON is padded to, in bytes.
    #[arg(long, default_value_t = 1_500)]
    pod_bytes: usize,
    /// Seconds each GET test (pods, and /healthz as baseline) runs.
    #[arg(long, default_value_t = 5.0)]
    get_seconds: f64,
    /// Most requests each GET test sends.
    #[arg(long, default_value_t = 2_000_000)]
    get_max: usize,
    /// Pods in the namespace the LIST test reads.
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// LISTs timed.
    #[arg(long, default_value_t = 20)]
    list_runs: usize,
    /// Concurrent watch connections.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Pods the watch test's writer creates, one at a time.
    #[arg(long, default_value_t = 200)]
    watch_pods: usize,
    /// Milliseconds between the watch test's creates.
    #[arg(long, default_value_t = 5.0)]
    watch_interval_ms: f64,
    /// Insert+flush operations of each raw sled baseline.
    #[arg(long, default_value_t = 2_000)]
    sled_ops: usize,
    /// Threads of the concurrent raw sled baseline.
    #[arg(long, default_value_t = 32)]
    sled_threads: usize,
    /// Seconds each raw sled baseline may run.
    #[arg(long, default_value_t = 5.0)]
    sled_seconds: f64,
    /// Start-ups timed on an empty data dir (the median is reported), and restarts on the full
    /// one (the first is reported, and the median of the others).
    #[arg(long, default_value_t = 3)]
    startup_runs: usize,
    /// Seconds any one phase (creates, LISTs, watch) may run before it stops where it is.
    #[arg(long, default_value_t = 60.0)]
    phase_seconds: f64,
    /// Parses timed of each worst-case request body shape (the median is reported).
    #[arg(long, default_value_t = 5)]
    parse_runs: usize,
}

/// The validated settings a run works from.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    minik: PathBuf,
    json: Option<PathBuf>,
    work_dir: PathBuf,
    clients: usize,
    creates: usize,
    bound_pods: bool,
    pod_bytes: usize,
    get_time: Duration,
    get_max: usize,
    list_pods: usize,
    list_runs: usize,
    watchers: usize,
    watch_pods: usize,
    watch_interval: Duration,
    sled_ops: usize,
    sled_threads: usize,
    sled_time: Duration,
    startup_runs: usize,
    phase_time: Duration,
    parse_runs: usize,
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{name} must be a positive number of seconds"))
}

impl ApiArgs {
    pub fn config(self) -> anyhow::Result<ApiConfig> {
        let minik = self.common.minik()?;
        for (name, value) in [
            ("clients", self.clients),
            ("creates", self.creates),
            ("pod-bytes", self.pod_bytes),
            ("get-max", self.get_max),
            ("list-pods", self.list_pods),
            ("list-runs", self.list_runs),
            ("watchers", self.watchers),
            ("watch-pods", self.watch_pods),
            ("sled-ops", self.sled_ops),
            ("sled-threads", self.sled_threads),
            ("startup-runs", self.startup_runs),
            ("parse-runs", self.parse_runs),
        ] {
            ensure!(value > 0, "--{name} must be at least 1");
        }
        Ok(ApiConfig {
            minik,
            json: self.common.json,
            work_dir: self.common.work_dir.unwrap_or_else(std::env::temp_dir),
            clients: self.clients,
            creates: self.creates,
            bound_pods: self.bound_pods,
            pod_bytes: self.pod_bytes,
            get_time: seconds("get-seconds", self.get_seconds)?,
            get_max: self.get_max,
            list_pods: self.list_pods,
            list_runs: self.list_runs,
            watchers: self.watchers,
            watch_pods: self.watch_pods,
            watch_interval: Duration::try_from_secs_f64(self.watch_interval_ms / 1e3)
                .context("--watch-interval-ms must be a non-negative number")?,
            sled_ops: self.sled_ops,
            sled_threads: self.sled_threads,
            sled_time: seconds("sled-seconds", self.sled_seconds)?,
            startup_runs: self.startup_runs,
            phase_time: seconds("phase-seconds", self.phase_seconds)?,
            parse_runs: self.parse_runs,
        })
    }
}

/// Runs every measurement, prints the table, and writes the JSON if asked.
pub fn run(config: ApiConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let Outcome {
        rows,
        details,
        machine,
        warnings,
    } = runtime.block_on(until_interrupted(measure(&config)))?;
    println!();
    println!("{}", report::table(&rows));
    for warning in &warnings {
        println!("warning: {warning}");
    }
    if let Some(path) = &config.json {
        let document = json!({
            "benchmark": "minik-bench api",
            "machine": machine.to_json(),
            "minik": config.minik.display().to_string(),
            "figures": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "markdown_table": report::markdown(&rows),
            "warnings": warnings,
            "details": details,
        });
        let text = serde_json::to_string_pretty(&document)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// Runs `work` unless SIGINT or SIGTERM comes first; then `work` is dropped, and with it every
/// server it started (their guards kill them).
async fn until_interrupted<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => anyhow::bail!("interrupted (SIGINT); every server started was stopped"),
        _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM); every server started was stopped"),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking task failed")?
}

fn summary(samples: &[Duration], what: &str) -> anyhow::Result<Summary> {
    Summary::of(samples)
        .with_context(|| format!("no {what} succeeded, so there is nothing to report"))
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn load_json(load: &Load) -> Value {
    json!({
        "ok": load.ok,
        "errors": load.errors,
        "first_error": load.first_error,
        "seconds": load.elapsed.as_secs_f64(),
        "per_second": load.per_sec(),
        "bytes": load.bytes,
        "latency": Summary::of(&load.latencies).map(Summary::to_json),
    })
}

fn throughput_json(t: &Throughput) -> Value {
    json!({
        "ops": t.ops,
        "seconds": t.elapsed.as_secs_f64(),
        "per_second": t.per_sec(),
        "latency": Summary::of(&t.latencies).map(Summary::to_json),
    })
}

/// How servers stopped: SIGTERM-to-exit times, and the stops that went wrong. A server that
/// fails to stop cleanly is a finding to report, not a reason to lose the run's other figures;
/// its guard has killed it either way.
#[derive(Default)]
struct Stops {
    times: Vec<Duration>,
    failures: Vec<String>,
}

impl Stops {
    async fn stop(&mut self, server: Server) {
        match server.stop().await {
            Ok(took) => self.times.push(took),
            Err(e) => {
                progress!("warning: {e:#}");
                self.failures.push(format!("{e:#}"));
            }
        }
    }
}

/// Starts `config.startup_runs` servers one after the other on `data_dir(run)` (each stopped
/// with SIGTERM before the next), and returns the last one, still running, with every start-up
/// time.
async fn start_timed(
    config: &ApiConfig,
    data_dir: impl Fn(usize) -> PathBuf,
    http: &reqwest::Client,
    stops: &mut Stops,
) -> anyhow::Result<(Server, Vec<Duration>)> {
    let mut startups = Vec::new();
    let mut run = 0;
    loop {
        let server = Server::start(&config.minik, &data_dir(run), http).await?;
        startups.push(server.started_in);
        run += 1;
        if run == config.startup_runs {
            return Ok((server, startups));
        }
        stops.stop(server).await;
    }
}

fn print_machine(machine: &Machine, config: &ApiConfig) {
    println!("minik-bench api — the API server and store, end to end");
    for line in machine.lines() {
        println!("{line}");
    }
    println!("minik: {}", config.minik.display());
    println!(
        "settings: {} clients, {} creates of {} pods, {}-pod LIST x{}, {} watchers x {} pods every {:?}, GETs for {:?}",
        config.clients,
        config.creates,
        if config.bound_pods { "bound (spec.nodeName set)" } else { "unscheduled" },
        config.list_pods,
        config.list_runs,
        config.watchers,
        config.watch_pods,
        config.watch_interval,
        config.get_time
    );
}

/// What the raw sled baselines measured.
struct SledResults {
    sequential: Throughput,
    concurrent: Throughput,
}

/// Insert+flush of one pod-sized value, alone and from many threads.
async fn sled_phase(
    config: &ApiConfig,
    scratch: &Path,
    value: Vec<u8>,
) -> anyhow::Result<SledResults> {
    progress!(
        "raw sled: insert+flush of {} bytes, sequential",
        value.len()
    );
    let (dir, v, ops, time) = (
        scratch.join("sled-seq"),
        value.clone(),
        config.sled_ops,
        config.sled_time,
    );
    let sequential =
        blocking(move || sled_baseline::insert_flush_sequential(&dir, &v, ops, time)).await?;
    progress!("  {:.0}/s", sequential.per_sec());
    progress!("raw sled: insert+flush, {} threads", config.sled_threads);
    let (dir, threads) = (scratch.join("sled-par"), config.sled_threads);
    let concurrent =
        blocking(move || sled_baseline::insert_flush_concurrent(&dir, &value, threads, ops, time))
            .await?;
    progress!("  {:.0}/s", concurrent.per_sec());
    Ok(SledResults {
        sequential,
        concurrent,
    })
}

/// Runs `work` and measures the CPU used meanwhile; prints where it went.
async fn metered<T>(
    server: &Server,
    work: impl std::future::Future<Output = T>,
    ops: impl Fn(&T) -> usize,
) -> anyhow::Result<(T, CpuUse)> {
    let meter = CpuMeter::start(server.pid())?;
    let out = work.await;
    let used = meter.stop()?;
    progress!("  {}", used.line(ops(&out)));
    Ok((out, used))
}

/// What the LIST test measured.
struct ListResults {
    fill: Load,
    fill_cpu: CpuUse,
    list: Load,
    list_cpu: CpuUse,
    items: usize,
    body_bytes: usize,
    /// The server's memory with the pods stored, before the LISTs.
    memory_before: Memory,
    /// The server's memory right after the LISTs.
    memory: Memory,
    scan: Vec<Duration>,
    scan_bytes: usize,
}

/// Fills a namespace with exactly `--list-pods` pods, LISTs it, reads the server's memory, and
/// scans the same values from a raw sled tree.
async fn list_phase(
    config: &ApiConfig,
    ctx: &Ctx,
    server: &Server,
    scratch: &Path,
) -> anyhow::Result<ListResults> {
    progress!(
        "filling namespace {LIST_NAMESPACE} with {} pods",
        config.list_pods
    );
    workload::ensure_namespace(ctx, LIST_NAMESPACE).await?;
    let (fill, fill_cpu) = metered(
        server,
        workload::create_pods(ctx, LIST_NAMESPACE, "list", 0..config.list_pods),
        Load::attempts,
    )
    .await?;
    progress!(
        "  {} created at {:.0}/s{}",
        fill.ok,
        fill.per_sec(),
        fill.error_note()
    );
    let memory_before = server.memory()?;
    progress!("LIST of {} pods, {} times", fill.ok, config.list_runs);
    let (listed, list_cpu) = metered(
        server,
        workload::list_pods(ctx, LIST_NAMESPACE, config.list_runs),
        |l| l.as_ref().map_or(0, |(load, _)| load.attempts()),
    )
    .await?;
    let (list, body) = listed?;
    let memory = server.memory()?;
    let items = workload::list_items(&body)?;
    let n_items = items.len();
    let latency = summary(&list.latencies, "LIST")?;
    progress!(
        "  p50 {:.1} ms, p99 {:.1} ms, {n_items} items, {} bytes{}",
        ms(latency.p50),
        ms(latency.p99),
        body.len(),
        list.error_note()
    );
    progress!(
        "raw sled: scan_prefix of the same {n_items} values, {} times",
        config.list_runs
    );
    let (dir, runs) = (scratch.join("sled-scan"), config.list_runs);
    let (scan, scan_bytes) =
        blocking(move || sled_baseline::scan_prefix(&dir, &items, runs)).await?;
    Ok(ListResults {
        fill,
        fill_cpu,
        list,
        list_cpu,
        items: n_items,
        body_bytes: body.len(),
        memory_before,
        memory,
        scan,
        scan_bytes,
    })
}

/// Durable creates with `--clients` concurrent clients; also returns the store's revision from
/// just before them.
async fn create_phase(
    config: &ApiConfig,
    ctx: &Ctx,
    server: &Server,
) -> anyhow::Result<(Load, CpuUse, u64)> {
    progress!(
        "creating {} pods with {} clients",
        config.creates,
        config.clients
    );
    let revision = workload::current_revision(ctx).await?;
    let (creates, cpu) = metered(
        server,
        workload::create_pods(ctx, "default", "bench", 0..config.creates),
        Load::attempts,
    )
    .await?;
    let latency = summary(&creates.latencies, "create")?;
    progress!(
        "  {} created in {:.1} s: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms{}",
        creates.ok,
        creates.elapsed.as_secs_f64(),
        creates.per_sec(),
        ms(latency.p50),
        ms(latency.p99),
        creates.error_note()
    );
    Ok((creates, cpu, revision))
}

/// What the GET test measured.
struct GetResults {
    healthz: Load,
    healthz_cpu: CpuUse,
    pods: Load,
    pods_cpu: CpuUse,
}

/// GETs of single pods against GETs of /healthz (the HTTP stack alone), alternating in short
/// rounds so that noise from other processes falls on both alike.
async fn get_phase(
    config: &ApiConfig,
    ctx: &Ctx,
    server: &Server,
    created: &[usize],
) -> anyhow::Result<GetResults> {
    anyhow::ensure!(
        !created.is_empty(),
        "no pod was created, so there is none to GET"
    );
    progress!(
        "GET single pods and GET /healthz with {} clients, {:?} each, in {GET_ROUNDS} alternating rounds",
        config.clients,
        config.get_time
    );
    let healthz_paths = Arc::new(vec![format!("{}/healthz", ctx.base)]);
    let pod_paths: Arc<Vec<String>> = Arc::new(
        created
            .iter()
            .map(|i| {
                format!(
                    "{}/api/v1/namespaces/default/pods/{}",
                    ctx.base,
                    workload::pod_name("bench", *i)
                )
            })
            .collect(),
    );
    let round_time = config.get_time / GET_ROUNDS as u32;
    let round_max = config.get_max.div_ceil(GET_ROUNDS);
    let mut r = GetResults {
        healthz: Load::default(),
        healthz_cpu: CpuUse::default(),
        pods: Load::default(),
        pods_cpu: CpuUse::default(),
    };
    for _ in 0..GET_ROUNDS {
        for (paths, load, used) in [
            (&healthz_paths, &mut r.healthz, &mut r.healthz_cpu),
            (&pod_paths, &mut r.pods, &mut r.pods_cpu),
        ] {
            let meter = CpuMeter::start(server.pid())?;
            load.add_round(workload::get_paths(ctx, paths.clone(), round_time, round_max).await);
            used.add(meter.stop()?);
        }
    }
    for (what, load, used) in [
        ("GET /healthz", &r.healthz, r.healthz_cpu),
        ("GET pod", &r.pods, r.pods_cpu),
    ] {
        progress!("  {what}: {:.0}/s{}", load.per_sec(), load.error_note());
        progress!("  {}", used.line(load.attempts()));
    }
    Ok(r)
}

/// Watch delivery to `--watchers` watchers while one writer creates pods.
async fn watch_phase(
    config: &ApiConfig,
    ctx: &Ctx,
    server: &Server,
) -> anyhow::Result<(WatchOutcome, CpuUse)> {
    progress!(
        "watch: {} watchers, {} creates every {:?}",
        config.watchers,
        config.watch_pods,
        config.watch_interval
    );
    let watch_http = workload::client(config.watchers + 1, None)?;
    let (watch, cpu) = metered(
        server,
        workload::watch_delivery(
            ctx,
            &watch_http,
            config.watchers,
            config.watch_pods,
            config.watch_interval,
        ),
        |w| w.as_ref().map_or(0, |w| w.deliveries.len()),
    )
    .await?;
    let watch = watch?;
    let delivery = summary(&watch.deliveries, "watch delivery")?;
    let creates = summary(&watch.creates.latencies, "watch-test create")?;
    progress!(
        "  {} of {} deliveries: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; creates p50 {:.2} ms, p99 {:.2} ms{}",
        watch.deliveries.len(),
        watch.expected,
        ms(delivery.p50),
        ms(delivery.p99),
        ms(delivery.max),
        ms(creates.p50),
        ms(creates.p99),
        watch.creates.error_note()
    );
    for e in watch.watcher_errors.iter().take(3) {
        progress!("  watcher error: {e}");
    }
    Ok((watch, cpu))
}

/// Every measurement of one run.
struct Results {
    sled: SledResults,
    version_runs: Vec<Duration>,
    empty_startups: Vec<Duration>,
    idle: Memory,
    list: ListResults,
    creates: Load,
    creates_cpu: CpuUse,
    /// Store revisions used from just before the creates to just after the GETs.
    writes_during_creates: u64,
    gets: GetResults,
    watch: WatchOutcome,
    watch_cpu: CpuUse,
    end_memory: Memory,
    stored_pods: usize,
    full_startups: Vec<Duration>,
    stops: Stops,
    restarted_memory: Memory,
    parse: ParseResults,
}

/// What a run hands to the report.
struct Outcome {
    rows: Vec<Row>,
    details: Value,
    machine: Machine,
    /// Anything that makes a figure less than it seems: failed requests, unfinished phases,
    /// servers that did not stop cleanly.
    warnings: Vec<String>,
}

async fn measure(config: &ApiConfig) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("cannot create {}", config.work_dir.display()))?;
    // Declared first so it is removed last, after every server below has been stopped.
    let scratch = tempfile::Builder::new()
        .prefix("minik-bench-")
        .tempdir_in(&config.work_dir)
        .with_context(|| {
            format!(
                "cannot make a scratch directory in {}",
                config.work_dir.display()
            )
        })?;
    let scratch = scratch.path();
    let machine = Machine::describe(scratch);
    print_machine(&machine, config);
    if config.minik.components().any(|c| c.as_os_str() == "debug") {
        progress!(
            "warning: {} looks like a debug build; the targets are for release builds",
            config.minik.display()
        );
    }
    let template = Arc::new(PodTemplate::new(
        config.pod_bytes,
        config.bound_pods.then_some(BOUND_NODE),
    ));
    let epoch = Instant::now();
    let sample_pod = template.render(
        &workload::pod_name("bench", 0),
        epoch.elapsed().as_nanos() as u64,
    );
    progress!("pod body: {} bytes", sample_pod.len());

    // 1. Raw sled: the price of one durable write, alone and with many writers sharing flushes.
    let sled = sled_phase(config, scratch, sample_pod.clone().into_bytes()).await?;

    // 8. Parsing a request body of the worst shapes, as large as the server accepts.
    let body_limit = minik_apiserver::Config::default().max_body_bytes;
    progress!("request body parse: worst-case shapes of {body_limit} bytes");
    let runs = config.parse_runs;
    let parse = blocking(move || Ok(parse::measure(body_limit, runs))).await?;
    for line in parse.lines() {
        progress!("  {line}");
    }

    // 7a. What starting a process costs: `minik --version`.
    let mut version_runs = Vec::new();
    for _ in 0..VERSION_RUNS {
        let minik = config.minik.clone();
        version_runs.push(blocking(move || server::version_run(&minik)).await?);
    }

    // 7b and 6a. Start-up on empty data dirs (the last one stays up); memory right after.
    let http = workload::client(config.clients * 2, Some(Duration::from_secs(60)))?;
    progress!("start-up on empty data dirs, {} times", config.startup_runs);
    let data_dir = scratch.join("data");
    let last = config.startup_runs - 1;
    let empty_dir = |run| {
        if run == last {
            data_dir.clone()
        } else {
            scratch.join(format!("data-empty-{run}"))
        }
    };
    let mut stops = Stops::default();
    let (server, empty_startups) = start_timed(config, empty_dir, &http, &mut stops).await?;
    let idle = server.memory()?;
    progress!("server pid {} on {}", server.pid(), server.base());

    let ctx = Ctx {
        http: http.clone(),
        base: server.base(),
        template,
        epoch,
        clients: config.clients,
        time_limit: config.phase_time,
    };
    // 4 and 6b. LIST, and memory with the pods stored.
    let list = list_phase(config, &ctx, &server, scratch).await?;
    // 2. Durable creates.
    let (creates, creates_cpu, revision_before_creates) =
        create_phase(config, &ctx, &server).await?;
    // 3. GETs.
    let gets = get_phase(config, &ctx, &server, &creates.succeeded).await?;
    // Every durable write moves the revision by one; GETs write nothing, so the writes between
    // here and before the creates are the creates' own and whatever the server's components
    // wrote because of them (a scheduler's status update or event per unschedulable pod).
    let writes_during_creates = workload::current_revision(&ctx)
        .await?
        .saturating_sub(revision_before_creates);
    progress!(
        "store writes from the creates until after the GETs: {writes_during_creates} ({:.2} per pod created)",
        writes_during_creates as f64 / creates.ok.max(1) as f64
    );
    // 5. Watch delivery.
    let (watch, watch_cpu) = watch_phase(config, &ctx, &server).await?;
    let end_memory = server.memory()?;

    // 7c. Restarts on the data dir holding every pod created above.
    let stored_pods = list.fill.ok + creates.ok + watch.creates.ok;
    progress!(
        "restart on the data dir with {stored_pods} pods, {} times",
        config.startup_runs
    );
    stops.stop(server).await;
    let (server, full_startups) =
        start_timed(config, |_| data_dir.clone(), &http, &mut stops).await?;
    let restarted_memory = server.memory()?;
    stops.stop(server).await;

    let results = Results {
        sled,
        version_runs,
        empty_startups,
        idle,
        list,
        creates,
        creates_cpu,
        writes_during_creates,
        gets,
        watch,
        watch_cpu,
        end_memory,
        stored_pods,
        full_startups,
        stops,
        restarted_memory,
        parse,
    };
    results.print_summary();
    let mut details = results.details();
    details["pod_request_bytes"] = json!(sample_pod.len());
    Ok(Outcome {
        rows: results.rows(config)?,
        details,
        machine,
        warnings: results.warnings(config),
    })
}

/// Rounds to hundredths of a millisecond, for lists of samples.
fn ms_list(samples: &[Duration]) -> Vec<f64> {
    samples
        .iter()
        .map(|d| (ms(*d) * 100.0).round() / 100.0)
        .collect()
}

impl Results {
    fn print_summary(&self) {
        progress!(
            "memory: idle {:.1} MB, {} pods before LIST {:.1} MB, after LIST {:.1} MB (peak {:.1}), at the end {:.1} MB (peak {:.1}), restarted {:.1} MB",
            megabytes(self.idle.rss_bytes),
            self.list.items,
            megabytes(self.list.memory_before.rss_bytes),
            megabytes(self.list.memory.rss_bytes),
            megabytes(self.list.memory.peak_bytes),
            megabytes(self.end_memory.rss_bytes),
            megabytes(self.end_memory.peak_bytes),
            megabytes(self.restarted_memory.rss_bytes)
        );
        progress!(
            "start-up ms: empty {:?}, with {} pods {:?}, --version {:?}; SIGTERM to exit {:?}",
            ms_list(&self.empty_startups),
            self.stored_pods,
            ms_list(&self.full_startups),
            ms_list(&self.version_runs),
            ms_list(&self.stops.times)
        );
    }

    fn warnings(&self, config: &ApiConfig) -> Vec<String> {
        let mut out = Vec::new();
        let loads = [
            ("list fill creates", &self.list.fill, Some(config.list_pods)),
            ("LISTs", &self.list.list, Some(config.list_runs)),
            ("creates", &self.creates, Some(config.creates)),
            ("GET /healthz", &self.gets.healthz, None),
            ("GET pod", &self.gets.pods, None),
            (
                "watch-test creates",
                &self.watch.creates,
                Some(config.watch_pods),
            ),
        ];
        for (what, load, wanted) in loads {
            if let Some(e) = &load.first_error {
                out.push(format!(
                    "{what}: {} failed, the first with {e}",
                    load.errors
                ));
            }
            if let Some(wanted) = wanted.filter(|w| load.attempts() < *w) {
                out.push(format!(
                    "{what}: only {} of {wanted} were sent before the {:?} phase limit",
                    load.attempts(),
                    config.phase_time
                ));
            }
        }
        if self.watch.deliveries.len() < self.watch.expected {
            out.push(format!(
                "watch: {} of {} deliveries arrived; first watcher error: {}",
                self.watch.deliveries.len(),
                self.watch.expected,
                self.watch
                    .watcher_errors
                    .first()
                    .map_or("none", String::as_str)
            ));
        }
        out.extend(self.stops.failures.iter().map(|f| format!("stop: {f}")));
        out
    }

    /// The table: every figure next to its baseline and target.
    fn rows(&self, config: &ApiConfig) -> anyhow::Result<Vec<Row>> {
        let sled_seq = self.sled.sequential.per_sec();
        let creates = summary(&self.creates.latencies, "create")?;
        let gets = summary(&self.gets.pods.latencies, "GET")?;
        let healthz = summary(&self.gets.healthz.latencies, "GET /healthz")?;
        let list = summary(&self.list.list.latencies, "LIST")?;
        let scan = summary(&self.list.scan, "sled scan")?;
        let delivery = summary(&self.watch.deliveries, "watch delivery")?;
        let watch_creates = summary(&self.watch.creates.latencies, "watch-test create")?;
        let version = ms(median(&self.version_runs).context("no `minik --version` run")?);
        let empty_startup = median(&self.empty_startups).context("no start-up")?;
        // The first restart follows the write load (sled recovers what it wrote since its last
        // snapshot); later ones open a directory the previous clean stop left tidy.
        let first_restart = *self.full_startups.first().context("no restart")?;
        let (n_listed, watchers, stored) = (self.list.items, config.watchers, self.stored_pods);
        let mut rows = vec![
            Row::new("raw sled insert+flush, sequential", sled_seq, Unit::PerSec),
            Row::new(
                format!("raw sled insert+flush, {} threads", config.sled_threads),
                self.sled.concurrent.per_sec(),
                Unit::PerSec,
            )
            .baseline("sequential", sled_seq),
            Row::new(
                format!("durable creates/s, {} clients", config.clients),
                self.creates.per_sec(),
                Unit::PerSec,
            )
            .baseline("raw sled insert+flush/s, sequential", sled_seq)
            .target(Target::AtLeast(5_000.0)),
            Row::new(
                "store writes per pod created",
                self.writes_during_creates as f64 / self.creates.ok.max(1) as f64,
                Unit::Count,
            ),
            Row::new("create latency p50", ms(creates.p50), Unit::Millis),
            Row::new("create latency p99", ms(creates.p99), Unit::Millis),
            Row::new(
                format!("GET pod/s, {} clients", config.clients),
                self.gets.pods.per_sec(),
                Unit::PerSec,
            )
            .baseline("GET /healthz/s", self.gets.healthz.per_sec())
            .target(Target::AtLeast(20_000.0)),
            Row::new("GET pod latency p50", ms(gets.p50), Unit::Millis)
                .baseline("/healthz", ms(healthz.p50)),
            Row::new("GET pod latency p99", ms(gets.p99), Unit::Millis)
                .baseline("/healthz", ms(healthz.p99)),
            Row::new(
                format!("LIST {n_listed} pods p50"),
                ms(list.p50),
                Unit::Millis,
            )
            .baseline("raw sled scan_prefix", ms(scan.p50))
            .target(Target::AtMost(100.0)),
            Row::new(
                format!("LIST {n_listed} pods p99"),
                ms(list.p99),
                Unit::Millis,
            )
            .baseline("raw sled scan_prefix", ms(scan.p99))
            .target(Target::AtMost(100.0)),
            Row::new(
                "LIST body size",
                megabytes(self.list.body_bytes as u64),
                Unit::Megabytes,
            )
            .baseline("values scanned", megabytes(self.list.scan_bytes as u64)),
            Row::new(
                format!("watch delivery p50, {watchers} watchers"),
                ms(delivery.p50),
                Unit::Millis,
            )
            .baseline("create p50", ms(watch_creates.p50)),
            Row::new(
                format!("watch delivery p99, {watchers} watchers"),
                ms(delivery.p99),
                Unit::Millis,
            )
            .baseline("create p99", ms(watch_creates.p99))
            .target(Target::AtMost(10.0)),
            Row::new(
                format!("watch delivery max, {watchers} watchers"),
                ms(delivery.max),
                Unit::Millis,
            )
            .baseline("create max", ms(watch_creates.max)),
            Row::new(
                "server RSS idle",
                megabytes(self.idle.rss_bytes),
                Unit::Megabytes,
            ),
            Row::new(
                format!("server RSS, {n_listed} pods, after LIST"),
                megabytes(self.list.memory.rss_bytes),
                Unit::Megabytes,
            )
            .baseline("idle", megabytes(self.idle.rss_bytes))
            .target(Target::AtMost(150.0)),
            Row::new("start-up, empty data dir", ms(empty_startup), Unit::Millis)
                .baseline("minik --version", version)
                .target(Target::AtMost(200.0)),
            Row::new(
                format!("start-up, {stored} pods, first restart"),
                ms(first_restart),
                Unit::Millis,
            )
            .baseline("minik --version", version),
        ];
        let json_flat = ms(self.parse.json_flat);
        let size = self.parse.size as f64 / (1 << 20) as f64;
        for (accepted, what) in [(false, "refused"), (true, "accepted")] {
            if let Some(worst) = self.parse.worst(accepted) {
                rows.push(
                    Row::new(
                        format!("worst {what} YAML body, {size:.0} MiB: {}", worst.name),
                        ms(worst.time),
                        Unit::Millis,
                    )
                    .baseline("flat JSON object, same size", json_flat),
                );
            }
        }
        if let Some(later) = median(&self.full_startups[1..]) {
            rows.push(
                Row::new(
                    format!("start-up, {stored} pods, later restarts"),
                    ms(later),
                    Unit::Millis,
                )
                .baseline("minik --version", version),
            );
        }
        Ok(rows)
    }

    /// Everything measured, for the JSON file.
    fn details(&self) -> Value {
        let cpu = |used: CpuUse, load: &Load| used.to_json(load.attempts());
        json!({
            "sled_sequential": throughput_json(&self.sled.sequential),
            "sled_concurrent": throughput_json(&self.sled.concurrent),
            "list_fill": load_json(&self.list.fill),
            "list": load_json(&self.list.list),
            "list_items": self.list.items,
            "sled_scan": {
                "latency": Summary::of(&self.list.scan).map(Summary::to_json),
                "bytes": self.list.scan_bytes,
            },
            "creates": load_json(&self.creates),
            "writes_during_creates": self.writes_during_creates,
            "get_healthz": load_json(&self.gets.healthz),
            "get_pods": load_json(&self.gets.pods),
            "watch": {
                "deliveries": self.watch.deliveries.len(),
                "expected": self.watch.expected,
                "delivery": Summary::of(&self.watch.deliveries).map(Summary::to_json),
                "creates": load_json(&self.watch.creates),
                "watcher_errors": self.watch.watcher_errors.len(),
                "first_watcher_error": self.watch.watcher_errors.first(),
                "setup_ms": ms(self.watch.setup),
            },
            "cpu": {
                "list_fill": cpu(self.list.fill_cpu, &self.list.fill),
                "list": cpu(self.list.list_cpu, &self.list.list),
                "creates": cpu(self.creates_cpu, &self.creates),
                "get_healthz": cpu(self.gets.healthz_cpu, &self.gets.healthz),
                "get_pods": cpu(self.gets.pods_cpu, &self.gets.pods),
                "watch": self.watch_cpu.to_json(self.watch.deliveries.len()),
            },
            "memory_bytes": {
                "idle_rss": self.idle.rss_bytes,
                "before_list_rss": self.list.memory_before.rss_bytes,
                "after_list_rss": self.list.memory.rss_bytes,
                "after_list_peak": self.list.memory.peak_bytes,
                "end_rss": self.end_memory.rss_bytes,
                "end_peak": self.end_memory.peak_bytes,
                "restarted_rss": self.restarted_memory.rss_bytes,
            },
            "startup_ms": {
                "version_runs": ms_list(&self.version_runs),
                "empty": ms_list(&self.empty_startups),
                "with_pods": ms_list(&self.full_startups),
                "stored_pods": self.stored_pods,
                "sigterm_to_exit": ms_list(&self.stops.times),
                "stop_failures": self.stops.failures,
            },
            "parse": self.parse.to_json(),
        })
    }
}
