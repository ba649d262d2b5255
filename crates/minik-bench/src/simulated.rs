//! What the suites over simulated nodes share: `minik simulate` as a child process, and a
//! small HTTP client of the server that waits for conditions by polling.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::Value;

/// The prefix of the simulated nodes' names.
pub(crate) const NODE_PREFIX: &str = "sim-";
/// How long the simulator may take to exit on SIGTERM.
const SIMULATOR_STOP: Duration = Duration::from_secs(30);
/// The server's cluster CIDR: room for a /24 per node up to 16,384 nodes (the default
/// 10.244.0.0/16 has 256).
pub(crate) const CLUSTER_CIDR: &str = "10.0.0.0/10";
/// The list of the simulated nodes.
pub(crate) const SIMULATED_NODES: &str = "/api/v1/nodes?labelSelector=minik.io%2Fsimulated%3Dtrue";

/// `minik simulate`, sent SIGTERM (then killed) when dropped.
pub(crate) struct Simulator(Child);

impl Simulator {
    /// Starts the simulator against `server` with a `HOME` of its own under `dir` (no user's
    /// kubeconfig), and waits for its line that says every node is registered.
    pub(crate) fn start(
        minik: &Path,
        server: &str,
        dir: &Path,
        nodes: usize,
    ) -> anyhow::Result<Simulator> {
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

    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
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

pub(crate) struct Ctx {
    pub http: reqwest::Client,
    pub base: String,
    /// How long a wait may last.
    pub limit: Duration,
    /// How often a wait reads again (the resolution of what it times).
    pub poll: Duration,
}

impl Ctx {
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        get_json(&self.http, &self.base, path).await
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<()> {
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

    /// Waits until `done` holds of the answer to `GET path`, reading it every `poll`;
    /// answers when it first held.
    pub(crate) async fn poll(
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
            tokio::time::sleep(self.poll).await;
        }
    }
}

pub(crate) fn ready_nodes(list: &Value) -> usize {
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

/// `GET path` of the server at `base`, answered with JSON; any other answer is an error that
/// quotes it.
pub(crate) async fn get_json(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<Value> {
    let response = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(
        status.is_success(),
        "GET {path} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
}
