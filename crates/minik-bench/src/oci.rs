//! `minik-bench oci`: pod start with the `oci` runtime (issue 18), against the release binary.
//!
//! A docker-registry on loopback serves the busybox test image as `busybox:1.36` (the `docker.io`
//! mirror of a registries.yaml); a `minik server` and a `minik node --runtime oci` run on
//! loopback; one warm-up pod pulls the image, so that every measured start finds it present.
//! Then, with a watch on the pods:
//!
//! - **one at a time**: N pods (`sleep 3600`), each created and awaited until the watch shows it
//!   `Running`; for each, where the time went, from the timestamps of the files the agent, the
//!   sandbox helper, the monitor and libcontainer write on the way ([`Stamps`]);
//! - **memory**, with those N pods running: the PSS of the `minik internal oci-monitor`
//!   processes, and the agent's RSS growth from idle, each per container;
//! - **burst**: N pods more created at once, until the last is `Running`.
//!
//! The baseline, in the same run once minik is stopped: `runc run -d` of the same image's layer
//! unpacked into a bundle made by `runc spec` (args `sleep 3600`), timed until it returns, then
//! `runc kill` and `runc delete -f`, N times.
//!
//! Everything is removed at the end, also on error: pods deleted, the agent stopped with SIGTERM
//! (then [`OciCleanup`] kills and unmounts whatever is left), runc containers deleted, temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use minik_testkit::registry::{build_busybox_layout, push, Registry, BUSYBOX};
use minik_testkit::OciCleanup;
use serde_json::{json, Value};

use crate::agent::Agent;
use crate::machine::{memory_of, Machine};
use crate::podwatch::{create, wait_node_ready, watch_pods, Seen};
use crate::server::Server;
use crate::stats::{median, ms, Summary};

const NODE: &str = "bench-oci";
const PODS: &str = "/api/v1/namespaces/default/pods";
/// The image every pod runs, as the pod names it.
const IMAGE: &str = "busybox:1.36";
/// What every container runs (the pods' command and the runc bundle's args).
const COMMAND: [&str; 2] = ["sleep", "3600"];
/// Goals of the issue: p50 at most this much above runc's, p99 at most 100 ms, at most 1 MiB
/// that minik adds per running container.
const P50_OVER_RUNC: Duration = Duration::from_millis(20);
const P99_GOAL: Duration = Duration::from_millis(100);
const MIB_PER_CONTAINER_GOAL: f64 = 1.0;

/// Flags of `minik-bench oci`.
#[derive(clap::Args, Debug)]
pub struct OciArgs {
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Where the scratch directory goes (removed afterwards) [default: the system's temporary
    /// directory]. See `minik-bench images --help`: on ext4 without a journal, a fresh directory
    /// at the root of the filesystem creates files much faster than a busy /tmp.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Pods started one at a time (they stay running for the memory figures), pods of the burst,
    /// and `runc run -d` of the baseline.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Creates in flight during the burst.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds any one phase (a pod's start, a burst, the deletes) may take before the run fails.
    #[arg(long, default_value_t = 300.0)]
    phase_seconds: f64,
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": IMAGE, "command": COMMAND}]
        }
    })
}

/// Deletes the pods (32 at a time) and waits until the API has none of them and no container
/// monitor of the node runs.
/// The events of pod `name` (default namespace), one line each: `REASON: MESSAGE`.
async fn events_of(http: &reqwest::Client, base: &str, name: &str) -> Vec<String> {
    let url = format!(
        "{base}/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}"
    );
    let list: Value = match http.get(&url).send().await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => return Vec::new(),
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}: {}",
                e["count"].as_i64().unwrap_or(1),
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

async fn delete_all(
    http: &reqwest::Client,
    base: &str,
    names: &[String],
    data_dir: &Path,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deletes = futures::stream::iter(names.iter().map(|name| {
        let url = format!("{base}{PODS}/{name}");
        async move {
            let response = http.delete(&url).send().await?;
            let status = response.status();
            ensure!(
                status.is_success() || status.as_u16() == 404,
                "deleting {url} answered {status}"
            );
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    for result in deletes {
        result?;
    }
    loop {
        let list: Value = http
            .get(format!("{base}{PODS}"))
            .send()
            .await?
            .json()
            .await?;
        let left = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|p| {
                        p["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| names.iter().any(|m| m == n))
                    })
                    .count()
            })
            .unwrap_or(0);
        let monitors = monitor_pids(data_dir).len();
        if left == 0 && monitors == 0 {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < limit,
            "{left} pods still in the API and {monitors} container monitors still running \
             {limit:?} after the deletes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The command line of `pid` (arguments joined by NULs), unless it is gone or a zombie.
fn cmdline(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether a command line is `minik internal HELPER ...` naming `data_dir`.
fn is_helper(cmdline: &str, helper: &str, data_dir: &str) -> bool {
    let mut args = cmdline.split('\0');
    args.next();
    args.next() == Some("internal") && args.next() == Some(helper) && cmdline.contains(data_dir)
}

/// Live `minik internal HELPER` processes of the agent whose data dir is `data_dir`.
fn helper_pids(data_dir: &Path, helper: &str) -> Vec<u32> {
    let dir = data_dir.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| cmdline(*pid).is_some_and(|c| is_helper(&c, helper, &dir)))
        .collect()
}

/// The container monitors of the agent whose data dir is `data_dir`.
fn monitor_pids(data_dir: &Path) -> Vec<u32> {
    helper_pids(data_dir, "oci-monitor")
}

/// What `/proc/PID/smaps_rollup` says of one process or, summed, of several; in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rollup {
    /// How many processes were read.
    processes: usize,
    rss: u64,
    /// Proportional set size: each shared page divided among the processes mapping it.
    pss: u64,
    /// Pages no other process maps (Private_Clean + Private_Dirty).
    private: u64,
    /// Anonymous memory (heap, stacks): the process's own.
    anonymous: u64,
}

impl Rollup {
    /// Parses one `smaps_rollup`; `None` without `Rss:` and `Pss:` lines.
    fn parse(text: &str) -> Option<Rollup> {
        let field = |name: &str| -> Option<u64> {
            let rest = text.lines().find_map(|l| l.strip_prefix(name))?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        };
        Some(Rollup {
            processes: 1,
            rss: field("Rss:")?,
            pss: field("Pss:")?,
            private: field("Private_Clean:").unwrap_or(0) + field("Private_Dirty:").unwrap_or(0),
            anonymous: field("Anonymous:").unwrap_or(0),
        })
    }

    /// The sum over `pids` (those gone meanwhile are left out).
    fn of(pids: &[u32]) -> Rollup {
        let mut total = Rollup::default();
        for pid in pids {
            let read = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"));
            if let Some(one) = read.ok().as_deref().and_then(Rollup::parse) {
                total.processes += one.processes;
                total.rss += one.rss;
                total.pss += one.pss;
                total.private += one.private;
                total.anonymous += one.anonymous;
            }
        }
        total
    }

    /// A figure divided by the processes read, in MiB.
    fn each(&self, bytes: u64) -> f64 {
        mib(bytes) / self.processes.max(1) as f64
    }
}

/// When each step of one pod's start ended, from the clock of this machine: the create sent,
/// then the files written on the way (birth time for directories, last write for files), then
/// the watch event.
#[derive(Clone, Copy, Debug)]
struct Stamps {
    /// Which pod of the one-at-a-time series (as many containers were running already).
    index: usize,
    /// The create was sent.
    post: SystemTime,
    /// `oci/sandboxes/UID` made: the oci-sandbox helper runs (the agent has seen the pod, found
    /// the image present and built the container's spec).
    sandbox: SystemTime,
    /// `oci/containers/STEM` made: the sandbox is done, the bundle begins.
    container_dir: SystemTime,
    /// `bundle/config.json` written: overlay mounted, user resolved, /etc files written.
    config: SystemTime,
    /// `oci/libcontainer/STEM` made: the monitor runs libcontainer's builder.
    libcontainer_dir: SystemTime,
    /// `oci/libcontainer/STEM/state.json` last written: libcontainer created and started it.
    libcontainer_state: SystemTime,
    /// `containers/STEM/state.json` written: the monitor said `ok`, the agent recorded it.
    record: SystemTime,
    /// `pods/default_NAME_UID/pod.json` last written: the agent's sync, before the status PATCH.
    pod_json: SystemTime,
    /// The watch delivered the pod Running.
    running: SystemTime,
}

/// The steps [`Stamps::steps`] answers, in order.
const STEPS: [&str; 8] = [
    "create → sandbox helper runs (API, agent sync, image check, spec)",
    "oci-sandbox helper (exec, namespaces, bind mounts)",
    "overlay mount, user, /etc files, config.json",
    "monitor spawned → libcontainer builder runs",
    "libcontainer create + start",
    "monitor reports ok → agent's state.json",
    "agent: rest of the sync → pod.json",
    "status PATCH → watch event Running",
];

impl Stamps {
    /// Reads the stamps of pod `name` (`uid`) of the agent over `data_dir`.
    fn read(
        index: usize,
        data_dir: &Path,
        name: &str,
        uid: &str,
        post: SystemTime,
        running: SystemTime,
    ) -> Option<Stamps> {
        let oci = data_dir.join("oci");
        let stem = std::fs::read_dir(oci.join("containers"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&format!("{uid}_")))?;
        let born = |p: PathBuf| {
            let meta = std::fs::metadata(p).ok()?;
            meta.created().or_else(|_| meta.modified()).ok()
        };
        let written = |p: PathBuf| std::fs::metadata(p).ok()?.modified().ok();
        let container = oci.join("containers").join(&stem);
        Some(Stamps {
            index,
            post,
            sandbox: born(oci.join("sandboxes").join(uid))?,
            container_dir: born(container.clone())?,
            config: written(container.join("bundle/config.json"))?,
            libcontainer_dir: born(oci.join("libcontainer").join(&stem))?,
            libcontainer_state: written(oci.join("libcontainer").join(&stem).join("state.json"))?,
            record: written(container.join("state.json"))?,
            pod_json: written(
                data_dir
                    .join("pods")
                    .join(format!("default_{name}_{uid}"))
                    .join("pod.json"),
            )?,
            running,
        })
    }

    /// The time between consecutive stamps (zero when the clock went backwards).
    fn steps(&self) -> [Duration; 8] {
        let at = [
            self.post,
            self.sandbox,
            self.container_dir,
            self.config,
            self.libcontainer_dir,
            self.libcontainer_state,
            self.record,
            self.pod_json,
            self.running,
        ];
        let mut steps = [Duration::ZERO; 8];
        for (i, step) in steps.iter_mut().enumerate() {
            *step = at[i + 1].duration_since(at[i]).unwrap_or_default();
        }
        steps
    }
}

/// What the minik part measured.
struct MinikFigures {
    serial: Vec<Duration>,
    stamps: Vec<Stamps>,
    burst_in: Duration,
    /// The burst's slowest pod and its events.
    slowest: (String, Vec<String>),
    burst_created_in: Duration,
    burst: Vec<Duration>,
    warmup: Duration,
    idle_rss: u64,
    with_pods_rss: u64,
    monitors: usize,
    monitor_memory: Rollup,
    /// The monitors' spawner (one per agent).
    spawner_memory: Rollup,
    sandbox_helpers: usize,
    deleted_in: Vec<Duration>,
    stop_in: Duration,
    left_after_stop: String,
}

/// Runs `runc` with `args` to completion; an error with its output if it fails.
fn runc(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run runc {args:?}"))?;
    ensure!(
        output.status.success(),
        "runc {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// The runc containers the baseline made that are not deleted yet; deletes them when dropped.
struct RuncContainers {
    root: PathBuf,
    live: Vec<String>,
}

impl RuncContainers {
    fn remove(&mut self, id: &str) -> anyhow::Result<()> {
        // Killed first; `delete -f` would kill it too, and fails only if it cannot delete it.
        let _ = runc(&self.root, &["kill", id, "KILL"]);
        runc(&self.root, &["delete", "-f", id])?;
        self.live.retain(|l| l != id);
        Ok(())
    }
}

impl Drop for RuncContainers {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.live) {
            if let Err(e) = runc(&self.root, &["delete", "-f", &id]) {
                eprintln!("minik-bench oci: cannot delete runc container {id}: {e:#}");
            }
        }
    }
}

/// Sets the process of a `runc spec` config to `args`, without a terminal.
fn runc_config(spec: &mut Value, args: &[&str]) -> anyhow::Result<()> {
    let process = spec
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .context("runc spec wrote no process")?;
    process.insert("args".into(), json!(args));
    process.insert("terminal".into(), json!(false));
    Ok(())
}

/// Makes the bundle `dir` for runc: the image's layer unpacked into `rootfs`, `runc spec`,
/// args [`COMMAND`].
fn runc_bundle(dir: &Path, layer: &Path) -> anyhow::Result<()> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).with_context(|| format!("creating {}", rootfs.display()))?;
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(layer)
        .arg("-C")
        .arg(&rootfs)
        .stdin(Stdio::null())
        .output()
        .context("cannot run tar")?;
    ensure!(
        tar.status.success(),
        "tar -xf {} failed: {}",
        layer.display(),
        String::from_utf8_lossy(&tar.stderr).trim()
    );
    let spec = Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run runc spec")?;
    ensure!(
        spec.status.success(),
        "runc spec failed: {}",
        String::from_utf8_lossy(&spec.stderr).trim()
    );
    let path = dir.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    runc_config(&mut config, &COMMAND)?;
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `runc run -d` of the bundle `n` times, each a new container, timed until it returns; each is
/// then killed and deleted.
fn runc_runs(dir: &Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let root = dir.join("state");
    let bundle = dir.join("bundle");
    let mut containers = RuncContainers {
        root: root.clone(),
        live: Vec::new(),
    };
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("minik-bench-{}-{i}", std::process::id());
        let log = dir.join(format!("{id}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        containers.live.push(id.clone());
        let started = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .context("cannot run runc run")?;
        let elapsed = started.elapsed();
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("runc run -d {id} failed ({status}): {}", text.trim());
        }
        took.push(elapsed);
        containers.remove(&id)?;
    }
    Ok(took)
}

/// Whether the host has what the benchmark needs; an error naming what is missing.
fn check_host() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (the oci runtime and runc)".to_owned());
    }
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    for tool in ["runc", "docker-registry", "skopeo", "umoci", "tar"] {
        if !on_path(tool) {
            missing.push(tool.to_owned());
        }
    }
    if !Path::new(BUSYBOX).is_file() {
        missing.push(format!("{BUSYBOX} (busybox-static)"));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        missing.push("overlayfs".to_owned());
    }
    ensure!(
        missing.is_empty(),
        "minik-bench oci needs {} (apt install runc docker-registry skopeo umoci busybox-static)",
        missing.join(", ")
    );
    Ok(())
}

/// The mean of some durations (zero for none).
fn mean(samples: &[Duration]) -> Duration {
    match u32::try_from(samples.len()) {
        Ok(n) if n > 0 => samples.iter().sum::<Duration>() / n,
        _ => Duration::ZERO,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn mib_signed(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs the benchmark and prints its figures.
pub fn run(args: OciArgs) -> anyhow::Result<()> {
    ensure!(args.pods > 0, "--pods must be positive");
    ensure!(args.clients > 0, "--clients must be positive");
    let minik = crate::up::minik_path(args.minik.clone())?;
    check_host()?;
    let scratch = match &args.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("minik-bench-oci-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("minik-bench-oci-")
            .tempdir()?,
    };
    let machine = Machine::describe(scratch.path());

    // The image: built, pushed, and its layer kept for the runc bundle.
    let build = scratch.path().join("build");
    std::fs::create_dir_all(&build)?;
    let registry = Registry::start().context("docker-registry is not on PATH")?;
    // The test kit's image helpers panic when a tool fails (with its output): an error here.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let layout = build_busybox_layout(&build, "1.36", &[], &[], &["sh"], &[]);
        let digest = push(&layout, "1.36", &registry.addr(), "library/busybox:1.36");
        let layers = layout.manifest("1.36")["layers"].clone();
        (layout, digest, layers)
    }));
    let Ok((layout, digest, layers)) = built else {
        bail!("cannot build or push the busybox image (umoci, skopeo: see the panic above)");
    };
    let layer_digest = layers[0]["digest"]
        .as_str()
        .context("the busybox image has no layer")?;
    let layer_hex = layer_digest
        .strip_prefix("sha256:")
        .context("the layer's digest is not sha256")?;
    let layer = layout.dir.join("blobs/sha256").join(layer_hex);
    let registries = build.join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
            registry.addr()
        ),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(measure_minik(&minik, &args, scratch.path(), &registries))?;
    drop(runtime);
    drop(registry);

    let runc_dir = scratch.path().join("runc");
    runc_bundle(&runc_dir.join("bundle"), &layer)?;
    let runc_times = runc_runs(&runc_dir, args.pods)?;
    let version_runs: Vec<Duration> = (0..20)
        .map(|_| crate::server::version_run(&minik))
        .collect::<anyhow::Result<_>>()?;

    print_figures(
        &machine,
        &args,
        &digest,
        &figures,
        &runc_times,
        median(&version_runs).unwrap_or_default(),
    )
}

async fn measure_minik(
    minik: &Path,
    args: &OciArgs,
    scratch: &Path,
    registries: &Path,
) -> anyhow::Result<MinikFigures> {
    let limit = Duration::from_secs_f64(args.phase_seconds);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let server = Server::start(minik, &scratch.join("server"), &http).await?;
    let base = server.base();
    let node_dir = scratch.join("node");
    std::fs::create_dir_all(&node_dir)?;
    // Dropped after the agent (declared before it): kills and unmounts what the agent left.
    let cleanup = OciCleanup::new(&node_dir);
    let data_dir = cleanup.data_dir().to_path_buf();
    let max_pods = (args.pods + 10).to_string();
    let registries = registries.to_string_lossy().into_owned();
    let mut agent = Agent::start(
        minik,
        &base,
        NODE,
        &node_dir,
        &[
            "--runtime",
            "oci",
            "--disable-default-registry-endpoint",
            "--private-registry",
            &registries,
            "--max-pods",
            &max_pods,
        ],
    )?;
    let result = drive(&http, &base, &mut agent, &cleanup, &data_dir, args, limit).await;
    if result.is_err() {
        // Whatever failed, the pods go before the agent stops (it would stop them anyway).
        let names: Vec<String> = ["warmup".to_owned()]
            .into_iter()
            .chain((0..args.pods).map(|i| format!("serial-{i}")))
            .chain((0..args.pods).map(|i| format!("burst-{i}")))
            .collect();
        let _ = delete_all(&http, &base, &names, &data_dir, Duration::from_secs(60)).await;
    }
    let mut figures = result?;
    figures.stop_in = agent.stop(limit)?;
    let left = cleanup.clean();
    figures.left_after_stop = if left.is_empty() {
        "nothing".into()
    } else {
        format!("{left:?} (removed)")
    };
    if let Err(e) = server.stop().await {
        eprintln!("minik-bench oci: {e:#}");
    }
    Ok(figures)
}

/// The measured part, with everything up.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    agent: &mut Agent,
    cleanup: &OciCleanup,
    data_dir: &Path,
    args: &OciArgs,
    limit: Duration,
) -> anyhow::Result<MinikFigures> {
    wait_node_ready(http, base, NODE, limit).await?;
    let seen = Arc::new(Seen::default());
    let watcher = tokio::spawn(watch_pods(http.clone(), base.to_owned(), seen.clone()));
    let _abort = AbortOnDrop(watcher);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut deleted_in = Vec::new();

    // Warm-up: the one pull of the run.
    let warmup = vec!["warmup".to_owned()];
    let started = Instant::now();
    let uid = create(http, base, &pod("warmup")).await?;
    cleanup.track_pod(&uid);
    seen.wait_for(&warmup, limit).await?;
    let warmup_in = started.elapsed();
    deleted_in.push(delete_all(http, base, &warmup, data_dir, limit).await?);
    // Idle: the image pulled, nothing running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = memory_of(agent.pid())?.rss_bytes;

    // One at a time.
    let serial_names: Vec<String> = (0..args.pods).map(|i| format!("serial-{i}")).collect();
    let mut serial = Vec::with_capacity(args.pods);
    let mut stamps = Vec::with_capacity(args.pods);
    for (index, name) in serial_names.iter().enumerate() {
        let post = SystemTime::now();
        let started = Instant::now();
        let uid = create(http, base, &pod(name)).await?;
        cleanup.track_pod(&uid);
        let at = seen.wait_for(std::slice::from_ref(name), limit).await?[0];
        let took = at.saturating_duration_since(started);
        serial.push(took);
        if let Some(s) = Stamps::read(index, data_dir, name, &uid, post, post + took) {
            stamps.push(s);
        }
    }
    // Memory with the pods running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_pods_rss = memory_of(agent.pid())?.rss_bytes;
    let monitors = monitor_pids(data_dir);
    let monitor_memory = Rollup::of(&monitors);
    let spawner_memory = Rollup::of(&helper_pids(data_dir, "oci-spawner"));
    let sandbox_helpers = helper_pids(data_dir, "oci-sandbox").len();
    deleted_in.push(delete_all(http, base, &serial_names, data_dir, limit).await?);

    // Burst.
    let burst_names: Vec<String> = (0..args.pods).map(|i| format!("burst-{i}")).collect();
    let started = Instant::now();
    let creates = futures::stream::iter(burst_names.iter().map(|name| {
        let body = pod(name);
        async move { create(http, base, &body).await }
    }))
    .buffer_unordered(args.clients)
    .collect::<Vec<_>>()
    .await;
    for result in creates {
        cleanup.track_pod(&result?);
    }
    let burst_created_in = started.elapsed();
    let at = seen.wait_for(&burst_names, limit).await?;
    let burst: Vec<Duration> = at
        .iter()
        .map(|t| t.saturating_duration_since(started))
        .collect();
    let burst_in = burst.iter().max().copied().unwrap_or_default();
    // The slowest pod of the burst and what the agent said of it, to read an outlier by.
    let slowest = burst
        .iter()
        .zip(&burst_names)
        .max_by_key(|(took, _)| **took)
        .map(|(_, name)| name.clone())
        .unwrap_or_default();
    let slowest_events = events_of(http, base, &slowest).await;
    deleted_in.push(delete_all(http, base, &burst_names, data_dir, limit).await?);

    Ok(MinikFigures {
        serial,
        stamps,
        burst_in,
        slowest: (slowest, slowest_events),
        burst_created_in,
        burst,
        warmup: warmup_in,
        idle_rss,
        with_pods_rss,
        monitors: monitors.len(),
        monitor_memory,
        spawner_memory,
        sandbox_helpers,
        deleted_in,
        stop_in: Duration::ZERO,
        left_after_stop: String::new(),
    })
}

/// Stops the watch task when the measurement ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn print_figures(
    machine: &Machine,
    args: &OciArgs,
    digest: &str,
    f: &MinikFigures,
    runc_times: &[Duration],
    version_run: Duration,
) -> anyhow::Result<()> {
    let s = Summary::of(&f.serial).context("no pod started")?;
    let r = Summary::of(runc_times).context("no runc run")?;
    let b = Summary::of(&f.burst).context("no burst pod started")?;
    let n = args.pods;
    println!(
        "Pod start with the oci runtime (issue 18), image {IMAGE} ({digest}), command {COMMAND:?}"
    );
    for line in machine.lines() {
        println!("  {line}");
    }
    println!(
        "  load average at the end (1, 5, 15 min): {}",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    );
    println!(
        "\nWarm-up pod (pulls the image from the loopback registry): Running in {:.1} ms",
        ms(f.warmup)
    );
    println!("\nPod start, one at a time ({n} pods, create → Running seen by a watch):");
    println!(
        "  minik oci:     p50 {:8.2} ms   p99 {:8.2} ms   max {:8.2} ms",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    println!(
        "  runc run -d:   p50 {:8.2} ms   p99 {:8.2} ms   max {:8.2} ms   ({} runs, same layer, runc spec bundle)",
        ms(r.p50),
        ms(r.p99),
        ms(r.max),
        r.count
    );
    let over = s.p50.as_secs_f64() - r.p50.as_secs_f64();
    println!(
        "  minik p50 − runc p50: {:+.2} ms   ratio p50 {:.2}x, p99 {:.2}x",
        over * 1e3,
        ms(s.p50) / ms(r.p50).max(1e-6),
        ms(s.p99) / ms(r.p99).max(1e-6)
    );
    println!(
        "  goal p50 <= runc p50 + {} ms: {}   goal p99 <= {} ms: {}",
        P50_OVER_RUNC.as_millis(),
        met(s.p50 <= r.p50 + P50_OVER_RUNC),
        P99_GOAL.as_millis(),
        met(s.p99 <= P99_GOAL)
    );
    println!(
        "  reference: `minik --version` spawn → exit (what each helper exec costs before it works): median {:.2} ms",
        ms(version_run)
    );

    // File times come from the kernel's coarse clock (one tick, 4 ms at HZ=250, unless a
    // fine-grained stamp was asked for): one step's median is often 0 or a tick; the mean over
    // many pods is the figure to read, and the means add up to the mean start.
    println!(
        "\nWhere a start's time goes ({} of {} pods with every stamp; from file birth and write \
         times, which the kernel keeps at tick resolution: read the means):",
        f.stamps.len(),
        n
    );
    let mut means = Vec::new();
    for (i, what) in STEPS.iter().enumerate() {
        let samples: Vec<Duration> = f.stamps.iter().map(|st| st.steps()[i]).collect();
        if let Some(sum) = Summary::of(&samples) {
            let mean = mean(&samples);
            means.push(ms(mean));
            println!(
                "  {:<66} mean {:6.2} ms   p50 {:6.2} ms   p99 {:6.2} ms",
                what,
                ms(mean),
                ms(sum.p50),
                ms(sum.p99)
            );
        }
    }
    println!(
        "  sum of the step means {:.2} ms; mean create → Running {:.2} ms",
        means.iter().sum::<f64>(),
        ms(mean(&f.serial))
    );

    // The same, by how many containers were already running (the pods stay up).
    let group = (n / 10).max(1);
    println!(
        "\nBy containers already running (groups of {group} pods): p50 create → Running, then \
         the mean of each step above, in order (ms):"
    );
    for (g, chunk) in f.serial.chunks(group).enumerate() {
        let first = g * group;
        let p50 = median(chunk).unwrap_or_default();
        let steps: Vec<String> = (0..STEPS.len())
            .map(|i| {
                let samples: Vec<Duration> = f
                    .stamps
                    .iter()
                    .filter(|st| (first..first + chunk.len()).contains(&st.index))
                    .map(|st| st.steps()[i])
                    .collect();
                format!("{:5.1}", ms(mean(&samples)))
            })
            .collect();
        println!(
            "  {:>4}-{:<4} p50 {:6.2}   {}",
            first,
            first + chunk.len() - 1,
            ms(p50),
            steps.join(" ")
        );
    }

    println!("\nBurst of {n} pods (created {} in flight):", args.clients);
    println!(
        "  all Running in {:.2} s (creates done in {:.2} s); per pod p50 {:.1} ms, p99 {:.1} ms",
        f.burst_in.as_secs_f64(),
        f.burst_created_in.as_secs_f64(),
        ms(b.p50),
        ms(b.p99)
    );
    println!(
        "  slowest: {} ({:.2} s), its events: {}",
        f.slowest.0,
        f.burst_in.as_secs_f64(),
        f.slowest.1.join("; ")
    );
    let runc_serial: Duration = runc_times.iter().sum();
    println!(
        "  runc run -d x{} one after another: {:.2} s   ratio minik burst / runc total {:.2}x",
        r.count,
        runc_serial.as_secs_f64(),
        f.burst_in.as_secs_f64() / runc_serial.as_secs_f64().max(1e-9)
    );

    let growth = f.with_pods_rss as i64 - f.idle_rss as i64;
    let m = &f.monitor_memory;
    let per_monitor = m.each(m.pss);
    let agent_per = mib_signed(growth) / n as f64;
    println!("\nMemory minik adds per running container ({n} pods running):");
    println!(
        "  oci-monitor processes: {} ({} read): PSS {:.1} MiB total = {:.3} MiB per container",
        f.monitors,
        m.processes,
        mib(m.pss),
        per_monitor,
    );
    println!(
        "    each: RSS {:.2} MiB (shared pages counted in each), private {:.3} MiB, anonymous {:.3} MiB",
        m.each(m.rss),
        m.each(m.private),
        m.each(m.anonymous),
    );
    println!(
        "  oci-sandbox processes left running: {} (none expected: the sandbox helper exits; no pause process without shareProcessNamespace)",
        f.sandbox_helpers
    );
    println!(
        "  agent VmRSS: idle {:.1} MiB, with {n} pods {:.1} MiB: growth {:+.1} MiB = {:.3} MiB per container",
        mib(f.idle_rss),
        mib(f.with_pods_rss),
        mib_signed(growth),
        agent_per
    );
    let sp = &f.spawner_memory;
    let spawner_per = mib(sp.pss) / n as f64;
    println!(
        "  oci-spawner (one per agent, the monitors' parent): {} process(es): PSS {:.2} MiB, private {:.2} MiB = {:.3} MiB per container",
        sp.processes,
        mib(sp.pss),
        mib(sp.private),
        spawner_per
    );
    let total_per = per_monitor + spawner_per + agent_per.max(0.0);
    println!(
        "  total per container (monitor PSS + spawner PSS / {n} + agent growth): {:.3} MiB   goal <= {MIB_PER_CONTAINER_GOAL:.0} MiB: {}",
        total_per,
        met(total_per <= MIB_PER_CONTAINER_GOAL)
    );
    println!("  containerd-shim reference: not measured (no containerd on this machine)");

    println!(
        "\nDeletes (all pods gone from the API and every monitor exited): warm-up {:.2} s, {n} serial {:.2} s, {n} burst {:.2} s",
        f.deleted_in.first().map_or(0.0, Duration::as_secs_f64),
        f.deleted_in.get(1).map_or(0.0, Duration::as_secs_f64),
        f.deleted_in.get(2).map_or(0.0, Duration::as_secs_f64),
    );
    println!(
        "Agent stop (SIGTERM, no pods): {:.2} s; left on the host afterwards: {}",
        f.stop_in.as_secs_f64(),
        f.left_after_stop
    );

    println!(
        "\n{}",
        json!({
            "pods": n,
            "minik_serial": s.to_json(),
            "runc_run_detached": r.to_json(),
            "p50_minus_runc_ms": over * 1e3,
            "burst_all_running_ms": ms(f.burst_in),
            "burst": b.to_json(),
            "steps_mean_ms": STEPS.iter().zip(&means).map(|(k, v)| json!({"step": k, "mean_ms": v})).collect::<Vec<_>>(),
            "monitor_pss_mib_per_container": per_monitor,
            "monitor_rss_mib_each": m.each(m.rss),
            "monitor_private_mib_each": m.each(m.private),
            "spawner_pss_mib": mib(sp.pss),
            "total_mib_per_container": total_per,
            "agent_rss_growth_mib_per_container": agent_per,
            "agent_idle_rss_mib": mib(f.idle_rss),
            "minik_version_run_ms": ms(version_run),
            "machine": machine.to_json(),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_told_by_their_command_line() {
        let dir = "/tmp/x/node";
        let monitor = "/usr/bin/minik\0internal\0oci-monitor\0/tmp/x/node/oci/libcontainer\0id\0";
        assert!(is_helper(monitor, "oci-monitor", dir));
        assert!(!is_helper(monitor, "oci-sandbox", dir));
        assert!(!is_helper(monitor, "oci-monitor", "/tmp/y/node"));
        assert!(!is_helper(
            "/usr/bin/minik\0node\0--data-dir\0/tmp/x/node\0",
            "oci-monitor",
            dir
        ));
        assert!(!is_helper("", "oci-monitor", dir));
    }

    #[test]
    fn smaps_rollup_is_read_in_bytes() {
        let text = "55d1c0a00000-7ffd5e3fe000 ---p 00000000 00:00 0 [rollup]\n\
                    Rss:                2048 kB\nPss:                 512 kB\n\
                    Pss_Anon:            300 kB\nPrivate_Clean:        10 kB\n\
                    Private_Dirty:       290 kB\nAnonymous:           300 kB\n";
        let r = Rollup::parse(text).expect("a rollup");
        assert_eq!(
            r,
            Rollup {
                processes: 1,
                rss: 2048 * 1024,
                pss: 512 * 1024,
                private: 300 * 1024,
                anonymous: 300 * 1024,
            }
        );
        assert_eq!(Rollup::parse("Rss: 1 kB\n"), None);
        assert_eq!(Rollup::of(&[]), Rollup::default());
        let own = Rollup::of(&[std::process::id()]);
        assert_eq!(own.processes, 1);
        assert!(own.pss > 0 && own.rss >= own.private);
        assert_eq!(own.each(own.rss), mib(own.rss));
    }

    #[test]
    fn steps_are_the_gaps_between_stamps() {
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let stamps = Stamps {
            index: 0,
            post: t(100),
            sandbox: t(103),
            container_dir: t(110),
            config: t(112),
            libcontainer_dir: t(120),
            libcontainer_state: t(150),
            record: t(151),
            pod_json: t(149),
            running: t(160),
        };
        let ms: Vec<u64> = stamps
            .steps()
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        // pod.json before the record (a clock step backwards) counts as zero.
        assert_eq!(ms, [3, 7, 2, 8, 30, 1, 0, 11]);
    }

    #[test]
    fn mean_of_durations() {
        let d = Duration::from_millis;
        assert_eq!(mean(&[d(1), d(2), d(6)]), d(3));
        assert_eq!(mean(&[]), Duration::ZERO);
    }

    #[test]
    fn runc_config_runs_the_command_without_a_terminal() {
        let mut spec = json!({"process": {"args": ["sh"], "terminal": true, "cwd": "/"}});
        runc_config(&mut spec, &COMMAND).unwrap();
        assert_eq!(spec["process"]["args"], json!(["sleep", "3600"]));
        assert_eq!(spec["process"]["terminal"], json!(false));
        assert_eq!(spec["process"]["cwd"], "/");
        assert!(runc_config(&mut json!({}), &COMMAND).is_err());
    }

    #[test]
    fn stamps_need_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        assert!(Stamps::read(0, dir.path(), "p", "uid", now, now).is_none());
        let oci = dir.path().join("oci");
        let stem = "uid_main_1";
        std::fs::create_dir_all(oci.join("sandboxes/uid")).unwrap();
        std::fs::create_dir_all(oci.join("containers").join(stem).join("bundle")).unwrap();
        std::fs::write(
            oci.join("containers").join(stem).join("bundle/config.json"),
            "{}",
        )
        .unwrap();
        std::fs::write(oci.join("containers").join(stem).join("state.json"), "{}").unwrap();
        std::fs::create_dir_all(oci.join("libcontainer").join(stem)).unwrap();
        std::fs::write(oci.join("libcontainer").join(stem).join("state.json"), "{}").unwrap();
        assert!(Stamps::read(0, dir.path(), "p", "uid", now, now).is_none());
        let pod_dir = dir.path().join("pods/default_p_uid");
        std::fs::create_dir_all(&pod_dir).unwrap();
        std::fs::write(pod_dir.join("pod.json"), "{}").unwrap();
        let stamps = Stamps::read(0, dir.path(), "p", "uid", now, now).expect("every stamp");
        assert!(stamps.config >= stamps.container_dir);
    }
}
