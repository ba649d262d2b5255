//! Helpers for end-to-end tests: start the real `minik` binary, learn its address, and make
//! sure every process a test starts is killed, even when the test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Running {
    pub child: Child,
    pub base: String,
}

impl Running {
    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `minik server` on an ephemeral loopback port over `data_dir`, letting loopback
/// clients in without a token, and waits (with a deadline) for the line that gives its address.
pub fn start_server(data_dir: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["--allow-anonymous-loopback"];
    args.extend_from_slice(extra);
    start_server_with(data_dir, &args)
}

/// Starts `minik server` with exactly `extra` besides the listen address and data dir (no
/// anonymous access unless asked for).
pub fn start_server_with(data_dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .arg("server")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("minik server listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let mut running = Running {
        child,
        base: String::new(),
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(base) => running.base = base,
        Err(_) => panic!("minik server did not report its address within 30s"),
    }
    running
}

/// Starts `minik node` against `server` with short timings for tests.
pub fn start_node(server: &str, name: &str, data_dir: &Path, extra: &[&str]) -> Running {
    start_node_with_env(server, name, data_dir, extra, &[])
}

/// [`start_node`] with variables added to the agent's environment.
pub fn start_node_with_env(
    server: &str,
    name: &str,
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .envs(env.iter().copied())
        .arg("node")
        .args(["--server", server, "--name", name, "--data-dir"])
        .arg(data_dir)
        .args([
            "--heartbeat-seconds",
            "1",
            "--sync-seconds",
            "1",
            "--restart-backoff-ms",
            "300",
            "--port",
            "0",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik node");
    Running {
        child,
        base: server.to_owned(),
    }
}

/// Waits until `check` returns `Some`, polling every 20ms, for at most `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any process's command line contains `marker`.
pub fn process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(marker))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

impl Running {
    /// Sends SIGTERM and waits up to `grace` for the process to exit, then SIGKILL: what a
    /// process that stops its children on SIGTERM (an agent, `minik up`) needs to clean up.
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = std::time::Instant::now() + grace;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill9();
    }
}

/// A `minik up` cluster started for a test, with `HOME` set to `home` (so the client config it
/// writes is the test's own). Dropping it sends SIGTERM, which stops every pod process it
/// started, and SIGKILL if it has not exited within 15 s.
pub struct Up {
    pub running: Running,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What `minik up` printed on stdout after the line that says it is up.
    pub lines: mpsc::Receiver<String>,
    pub home: std::path::PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        self.running.terminate(Duration::from_secs(15));
    }
}

/// Starts `minik up --nodes N --listen 127.0.0.1:0 --data-dir DATA` plus `extra`, and waits for
/// the line that says it is up.
pub fn start_up(home: &Path, data: &Path, nodes: usize, extra: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minik"))
        .args([
            "up",
            "--nodes",
            &nodes.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("HOME", home)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minik up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut up = Up {
        running: Running {
            child,
            base: String::new(),
        },
        base: String::new(),
        lines,
        home: home.to_owned(),
    };
    let line = loop {
        match up.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("minik is up at ") => break line,
            Ok(_) => continue,
            Err(_) => panic!("minik up did not come up within 30s"),
        }
    };
    let base = line
        .trim_start_matches("minik is up at ")
        .split(':')
        .take(3)
        .collect::<Vec<_>>()
        .join(":");
    up.running.base = base.clone();
    up.base = base;
    up
}

impl Up {
    /// Runs the `minik` client with this cluster's config; returns (exit ok, stdout, stderr).
    pub fn minik(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_minik"))
            .args(args)
            .env("HOME", &self.home)
            .env_remove("MINIK_SERVER")
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("run minik");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The client's side: a cluster to run `minik` verbs against.
pub mod client;

/// `GET base+path` decoded as JSON, or `None` if the request failed or was not a success.
pub async fn get_json(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> Option<serde_json::Value> {
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

/// `GET base+path` as text, or `None` if the request failed or was not a success.
pub async fn get_text(client: &reqwest::Client, base: &str, path: &str) -> Option<String> {
    let response = client.get(format!("{base}{path}")).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}
