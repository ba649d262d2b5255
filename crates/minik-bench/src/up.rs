//! `minik-bench up`: what a user of `minik up` waits for (issue 9).
//!
//! - Cold start: `minik up --nodes N` on an empty data dir, from spawn to the line that says
//!   every node is Ready; baseline: spawn to exit of `minik --version`.
//! - `minik apply -f examples/deployment.yaml` (3 replicas of the Python web app) on that
//!   cluster, from spawning the client to all pods Running and to all pods Ready (their
//!   readiness probe answered); baselines: the same three commands spawned by hand, to spawned
//!   and to answering HTTP.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use crate::report::{self, Row, Target, Unit};
use crate::server::version_run;
use crate::stats::{median, ms};

/// The example the quick start applies; measured exactly as shipped.
const DEPLOYMENT: &str = include_str!("../../../examples/deployment.yaml");

/// Flags of `minik-bench up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The minik binary to measure [default: `minik` next to this executable].
    #[arg(long)]
    minik: Option<PathBuf>,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Node agents `minik up` starts.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Cold starts timed (the median is reported); the apply figures come from each of them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

/// `minik up`, stopped with SIGTERM (then SIGKILL) when dropped, so its pods stop too.
struct UpProcess {
    child: Child,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn minik_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let minik = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot tell where minik-bench is")?
            .parent()
            .context("minik-bench has no parent directory")?
            .join("minik"),
    };
    ensure!(
        minik.is_file(),
        "the minik binary is not at {}: build it with `cargo build --release -p minik`, or pass --minik PATH",
        minik.display()
    );
    Ok(minik)
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let minik = minik_path(args.minik.clone())?;
    ensure!(
        args.runs > 0 && args.nodes > 0,
        "--runs and --nodes must be positive"
    );
    let rows = measure(&minik, &args)?;
    report::print_and_save("minik-bench up", &rows, args.json.as_deref())
}

pub fn measure(minik: &Path, args: &UpArgs) -> anyhow::Result<Vec<Row>> {
    let mut versions = Vec::new();
    for _ in 0..args.runs {
        versions.push(version_run(minik)?);
    }
    let version = median(&versions).context("no run")?;
    let (mut starts, mut to_running, mut to_ready) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let scratch = tempfile::Builder::new()
            .prefix("minik-bench-up-")
            .tempdir()?;
        let (up, base, took) = start_up(minik, scratch.path(), args.nodes)?;
        progress!(
            "run {}: {} nodes Ready {:.0} ms after spawn",
            run + 1,
            args.nodes,
            ms(took)
        );
        starts.push(took);
        let (running, ready) = apply_deployment(minik, scratch.path(), &base)?;
        progress!(
            "run {}: apply to 3 pods Running {:.0} ms, Ready {:.0} ms",
            run + 1,
            ms(running),
            ms(ready)
        );
        to_running.push(running);
        to_ready.push(ready);
        drop(up);
    }
    let (spawned, answering) = raw_app_start()?;
    let med = |v: &[Duration]| median(v).map(ms).unwrap_or(0.0);
    Ok(vec![
        Row::new(
            format!("minik up --nodes {}: cold start to all Ready", args.nodes),
            med(&starts),
            Unit::Millis,
        )
        .baseline("minik --version", ms(version))
        .target(Target::AtMost(1_000.0)),
        Row::new(
            "apply 3-replica Deployment to all Running",
            med(&to_running),
            Unit::Millis,
        )
        .baseline("3 app processes spawned by hand", ms(spawned)),
        Row::new(
            "apply 3-replica Deployment to all Ready",
            med(&to_ready),
            Unit::Millis,
        )
        .baseline("3 app processes by hand to answering HTTP", ms(answering)),
    ])
}

fn start_up(
    minik: &Path,
    dir: &Path,
    nodes: usize,
) -> anyhow::Result<(UpProcess, String, Duration)> {
    let spawned = Instant::now();
    let mut child = Command::new(minik)
        .args([
            "up",
            "--nodes",
            &nodes.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--no-config",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} up", minik.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let up = UpProcess { child };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("minik is up at ") {
                let _ = tx.send((Instant::now(), rest.to_owned()));
            }
        }
    });
    let (at, rest) = rx
        .recv_timeout(Duration::from_secs(60))
        .context("minik up did not say it was up within 60 s")?;
    let base = rest.split(':').take(3).collect::<Vec<_>>().join(":");
    Ok((up, base, at - spawned))
}

/// Runs `minik apply -f deployment.yaml` and polls (every 5 ms) until its three pods are
/// Running, then Ready; both times are from the spawn of the client.
fn apply_deployment(minik: &Path, dir: &Path, base: &str) -> anyhow::Result<(Duration, Duration)> {
    let manifest = dir.join("deployment.yaml");
    std::fs::write(&manifest, DEPLOYMENT)?;
    let started = Instant::now();
    let out = Command::new(minik)
        .args(["apply", "-f"])
        .arg(&manifest)
        .env("MINIK_SERVER", base)
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        out.status.success(),
        "minik apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/namespaces/default/pods?labelSelector=app=web");
    let mut running = None;
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list: Value = http.get(&url).send().await?.json().await?;
            let pods = list["items"].as_array().cloned().unwrap_or_default();
            let count = |f: &dyn Fn(&Value) -> bool| pods.iter().filter(|p| f(p)).count();
            if running.is_none() && count(&|p| p["status"]["phase"] == "Running") >= 3 {
                running = Some(started.elapsed());
            }
            let ready = count(&|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            });
            if ready >= 3 {
                let ready_at = started.elapsed();
                return Ok((running.unwrap_or(ready_at), ready_at));
            }
            if Instant::now() > deadline {
                bail!("the 3 pods were not Ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The example's command, spawned three times by hand on free ports: time to all spawned, and
/// to all answering HTTP.
fn raw_app_start() -> anyhow::Result<(Duration, Duration)> {
    let docs: Value = serde_yaml::from_str(DEPLOYMENT)?;
    let command: Vec<String> = serde_json::from_value(
        docs["spec"]["template"]["spec"]["containers"][0]["command"].clone(),
    )
    .context("the example has no command")?;
    let ports = (0..3)
        .map(|_| Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let started = Instant::now();
    let mut children = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let child = Command::new(&command[0])
            .args(&command[1..])
            .env("PORT", port.to_string())
            .env("POD_NAME", format!("raw-{i}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot spawn {}", command[0]))?;
        children.push(KillOnDrop(child));
    }
    let spawned = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in &ports {
        loop {
            let answered = std::net::TcpStream::connect(("127.0.0.1", *port))
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut buf = [0u8; 12];
                    s.read_exact(&mut buf)
                })
                .is_ok();
            if answered {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the app did not answer on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok((spawned, started.elapsed()))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
