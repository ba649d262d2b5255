//! The minik server under test: a child process on a loopback port and a scratch data directory,
//! killed and reaped when its guard drops, whatever happened.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::machine::{memory_of, Memory};

/// The line `minik server` prints on stdout once it listens (then `http://` or `https://`).
const LISTENING: &str = "minik server listening on ";
/// How long a server may take to listen and answer `/healthz`.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How many lines of the server's stderr are kept to explain a failure.
const STDERR_LINES: usize = 6;

/// Kills (if still running) and reaps the child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A running `minik server`.
pub struct Server {
    child: ChildGuard,
    pub addr: SocketAddr,
    /// The cluster CA (PEM) of a server on HTTPS; `None` on plain HTTP.
    pub ca_pem: Option<String>,
    /// From spawn to the first successful `GET /healthz`.
    pub started_in: Duration,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Spawns `minik server --plain-http` on `127.0.0.1:0` over `data_dir` and waits until
    /// `/healthz` answers. Plain HTTP keeps every suite's figures comparable with the runs
    /// recorded before HTTPS became the default; `minik-bench tls` measures what HTTPS costs.
    pub async fn start(
        minik: &Path,
        data_dir: &Path,
        http: &reqwest::Client,
    ) -> anyhow::Result<Server> {
        Server::start_with(minik, data_dir, Some(http), false, &[]).await
    }

    /// [`Server::start`], over HTTPS when `tls` (then `/healthz` is asked with a client that
    /// trusts the server's CA, and `http` may be `None`), with `extra` flags.
    pub async fn start_with(
        minik: &Path,
        data_dir: &Path,
        http: Option<&reqwest::Client>,
        tls: bool,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        let spawned = Instant::now();
        let mut command = Command::new(minik);
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir);
        if !tls {
            command.arg("--plain-http");
        }
        command.args(extra);
        let mut child = command
            // The benchmark's own clients and agents come from loopback without tokens.
            .arg("--allow-anonymous-loopback")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", minik.display()))?;
        let stdout = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let child = ChildGuard(child);
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = stderr_pipe {
            keep_tail(pipe, stderr.clone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(pipe) = stdout {
            watch_for_listening(pipe, tx);
        }
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_pem: None,
            started_in: Duration::ZERO,
            stderr,
        };
        let line = match tokio::time::timeout(START_LIMIT, rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => bail!("minik server exited before it listened{}", server.why()),
            Err(_) => bail!(
                "minik server did not listen within {START_LIMIT:?}{}",
                server.why()
            ),
        };
        let addr = line
            .strip_prefix("https://")
            .or_else(|| line.strip_prefix("http://"))
            .with_context(|| format!("no address in {LISTENING}{line}"))?;
        server.addr = addr
            .parse()
            .with_context(|| format!("cannot parse the address in {LISTENING}{line}"))?;
        let own;
        let http = if tls {
            let file = data_dir.join("tls").join("ca.crt");
            let pem = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            own = server.client_builder_for(&pem)?.build()?;
            server.ca_pem = Some(pem);
            &own
        } else {
            http.context("a plain-HTTP server needs a client to check its /healthz")?
        };
        let healthz = format!("{}/healthz", server.base());
        loop {
            match http.get(&healthz).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if spawned.elapsed() > START_LIMIT => {
                    bail!(
                        "{healthz} did not answer within {START_LIMIT:?}{}",
                        server.why()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        server.started_in = spawned.elapsed();
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a server on HTTPS.
    pub fn base(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// A client builder that trusts `ca_pem` only.
    fn client_builder_for(&self, ca_pem: &str) -> anyhow::Result<reqwest::ClientBuilder> {
        let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .context("the server's CA is not a PEM certificate")?;
        Ok(reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert))
    }

    /// A client builder for this server: trusting its CA when it serves HTTPS.
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        match &self.ca_pem {
            Some(pem) => self.client_builder_for(pem),
            None => Ok(reqwest::Client::builder()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid())
    }

    /// Sends SIGTERM and waits for a clean exit; returns how long the exit took.
    pub async fn stop(mut self) -> anyhow::Result<Duration> {
        let pid = Pid::from_raw(
            i32::try_from(self.pid()).context("the server's pid does not fit a pid_t")?,
        );
        let asked = Instant::now();
        kill(pid, Signal::SIGTERM).context("cannot send SIGTERM to the server")?;
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                if !status.success() {
                    bail!(
                        "minik server exited with {status} after SIGTERM{}",
                        self.why()
                    );
                }
                return Ok(asked.elapsed());
            }
            if asked.elapsed() > STOP_LIMIT {
                // Dropping `self` kills it.
                bail!(
                    "minik server did not exit within {STOP_LIMIT:?} of SIGTERM; killed it{}",
                    self.why()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The exit status (if any) and the last lines of stderr, to append to an error.
    fn why(&mut self) -> String {
        let status = match self.child.0.try_wait() {
            Ok(Some(status)) => format!(" ({status})"),
            _ => String::new(),
        };
        let tail = self
            .stderr
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        if tail.is_empty() {
            status
        } else {
            format!("{status}; its stderr ended with:\n{tail}")
        }
    }
}

/// Reads the server's stdout to the end (so it never blocks on a full pipe) and sends the
/// address part of the first "listening" line.
fn watch_for_listening(pipe: impl Read + Send + 'static, tx: tokio::sync::oneshot::Sender<String>) {
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix(LISTENING) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        }
    });
}

/// Reads the server's stderr to the end, keeping the last lines.
fn keep_tail(pipe: impl Read + Send + 'static, tail: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut tail) = tail.lock() {
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    });
}

/// Spawn to exit of `minik --version`: what starting the process costs, with no server work.
pub fn version_run(minik: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(minik)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {} --version", minik.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "{} --version failed with {}: {}",
            minik.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}
