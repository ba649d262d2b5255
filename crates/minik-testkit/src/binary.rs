//! The real `minik` binary in end-to-end tests: `minik server`, `minik node` and `minik up`
//! started on ephemeral loopback ports, each under a guard that kills it (and reaps it) when
//! dropped, so that a failing test leaves no process behind.
//!
//! The binary's path comes from the test crate (`env!("CARGO_BIN_EXE_minik")` exists only in
//! the tests of `crates/minik`): see [`Minik`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{blocking, DEADLINE};

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Running {
    pub child: Child,
    /// The address it serves (`https://127.0.0.1:PORT`) or, for an agent, its server's; empty
    /// for a process that serves nothing.
    pub base: String,
    /// For an agent: its data directory, under which whatever it left mounted (the tmpfs of
    /// its pods' Secret and service account volumes) is unmounted once it is gone.
    pub mounts: Option<PathBuf>,
}

impl Running {
    /// Guards a process that serves nothing a test reaches (a watch, `logs -f`).
    pub fn guard(child: Child) -> Running {
        Running {
            child,
            base: String::new(),
            mounts: None,
        }
    }

    /// Guards an agent whose data directory is `data_dir` (see [`Running::mounts`]).
    pub fn agent(child: Child, server: &str, data_dir: &Path) -> Running {
        Running {
            child,
            base: server.to_owned(),
            mounts: Some(data_dir.to_owned()),
        }
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, which a process may handle (an agent stops its pods, a server closes
    /// its store).
    pub fn sigterm(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    /// Sends SIGTERM and waits for the process to exit by itself; answers how it exited. Fails
    /// the test if it still runs after [`DEADLINE`].
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        let what = format!("process {} to exit after SIGTERM", self.pid());
        blocking::wait_for(&what, DEADLINE, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            other => Err(other),
        })
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit, then SIGKILL: what a
    /// process that stops its children on SIGTERM (an agent, `minik up`) needs to clean up,
    /// even when a test fails.
    pub fn terminate(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            self.sigterm();
            let until = std::time::Instant::now() + grace;
            while std::time::Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(crate::POLL);
            }
        }
        self.kill9();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
        if let Some(dir) = &self.mounts {
            crate::unmount_under(dir);
        }
    }
}

/// The `minik` binary of the test crate: `Minik::new(env!("CARGO_BIN_EXE_minik"),
/// env!("CARGO_MANIFEST_DIR"))`.
#[derive(Clone, Copy)]
pub struct Minik {
    /// The binary.
    pub bin: &'static str,
    /// The directory the client runs in (the test crate's), for relative paths.
    pub dir: &'static str,
}

/// Reads `stdout` line by line on a thread of its own until the process closes it (so that the
/// process never blocks on a full pipe); the lines arrive on the receiver while it is kept.
pub fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts `command` (`what`, for messages) with `RUST_LOG=warn`, its stdout read line by line
/// and its stderr the test's.
fn spawn_reading(mut command: Command, what: &str) -> (Running, mpsc::Receiver<String>) {
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let lines = lines_of(child.stdout.take().expect("stdout"));
    (Running::guard(child), lines)
}

/// Waits (up to [`DEADLINE`]) for the line of `what` that starts with `prefix`; answers the
/// rest of it.
pub fn line_after(lines: &mpsc::Receiver<String>, prefix: &str, what: &str) -> String {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.to_owned();
                }
            }
            Err(_) => panic!("{what} did not say {prefix:?} within {DEADLINE:?}"),
        }
    }
}

impl Minik {
    pub const fn new(bin: &'static str, dir: &'static str) -> Minik {
        Minik { bin, dir }
    }

    /// A command for the binary.
    pub fn command(&self) -> Command {
        Command::new(self.bin)
    }

    /// Starts `minik server` on an ephemeral loopback port over `data_dir`, letting loopback
    /// clients in without a token, and waits for the line that gives its address.
    pub fn server(&self, data_dir: &Path, extra: &[&str]) -> Running {
        let mut args = vec!["--allow-anonymous-loopback"];
        args.extend_from_slice(extra);
        self.server_with(data_dir, &args)
    }

    /// Starts `minik server` with exactly `extra` besides the listen address and data dir (no
    /// anonymous access unless asked for).
    pub fn server_with(&self, data_dir: &Path, extra: &[&str]) -> Running {
        self.server_on("127.0.0.1:0", data_dir, extra)
    }

    /// Starts `minik server --listen LISTEN` with `extra`; its `base` is the address it says it
    /// listens on.
    pub fn server_on(&self, listen: &str, data_dir: &Path, extra: &[&str]) -> Running {
        let mut command = self.command();
        command
            .arg("server")
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra);
        let (mut running, lines) = spawn_reading(command, "minik server");
        running.base = line_after(&lines, "minik server listening on ", "minik server");
        if running.base.starts_with("https://") {
            crate::trust::remember_ca(&running.base, &data_dir.join("tls").join("ca.crt"));
        }
        running
    }

    /// Starts `minik node` against `server` with short timings for tests.
    pub fn node(&self, server: &str, name: &str, data_dir: &Path, extra: &[&str]) -> Running {
        self.node_with_env(server, name, data_dir, extra, &[])
    }

    /// [`Minik::node`] with variables added to the agent's environment.
    pub fn node_with_env(
        &self,
        server: &str,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        let child = self
            .node_command(server, name, data_dir, extra, env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start minik node");
        Running::agent(child, server, data_dir)
    }

    /// The command [`Minik::node_with_env`] runs, not yet started: for a test that starts the
    /// agent its own way (inside a network namespace of its own, say).
    pub fn node_command(
        &self,
        server: &str,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let mut command = self.command();
        // The agent verifies a server a test started with that server's CA, unless the test
        // says how it is to know the CA: a flag, or a K10 join token (which carries the CA's
        // hash) as an argument or in MINIK_TOKEN.
        let told = extra
            .iter()
            .any(|a| a.starts_with("--certificate-authority") || a.starts_with("K10"))
            || env
                .iter()
                .any(|(k, v)| *k == "MINIK_TOKEN" && v.starts_with("K10"));
        if let Some(ca) = crate::trust::ca_for(server).filter(|_| !told) {
            command.arg("node").arg("--certificate-authority").arg(ca);
        } else {
            command.arg("node");
        }
        command
            .envs(env.iter().copied())
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
            .args(network_flags(extra))
            .args(extra)
            .env("RUST_LOG", "warn");
        command
    }

    /// Starts `minik up --nodes N --listen 127.0.0.1:0 --data-dir DATA` plus `extra` with `HOME`
    /// set to `home`, and waits for the line that says it is up.
    pub fn up(&self, home: &Path, data: &Path, nodes: usize, extra: &[&str]) -> Up {
        let mut command = self.command();
        command
            .args([
                "up",
                "--nodes",
                &nodes.to_string(),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .args(network_flags(extra))
            .args(extra)
            .env("HOME", home);
        let (mut running, lines) = spawn_reading(command, "minik up");
        running.mounts = Some(data.to_owned());
        // `https://127.0.0.1:PORT` and what follows it on the line.
        let rest = line_after(&lines, "minik is up at ", "minik up");
        let base = rest.split(':').take(3).collect::<Vec<_>>().join(":");
        running.base = base.clone();
        if base.starts_with("https://") {
            crate::trust::remember_ca(&base, &data.join("tls").join("ca.crt"));
        }
        Up {
            running,
            base,
            lines,
            home: home.to_owned(),
            minik: *self,
        }
    }
}

/// A `minik up` cluster started for a test, with `HOME` set to `home` (so the client config it
/// writes is the test's own). Dropping it sends SIGTERM, which stops every pod process it
/// started, and SIGKILL if it has not exited within 15 s.
pub struct Up {
    pub running: Running,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// What `minik up` printed on stdout after the line that says it is up.
    pub lines: mpsc::Receiver<String>,
    pub home: PathBuf,
    minik: Minik,
}

impl Drop for Up {
    fn drop(&mut self) {
        self.running.terminate(Duration::from_secs(15));
    }
}

impl Up {
    /// Runs the `minik` client with this cluster's config; returns (exit ok, stdout, stderr).
    pub fn minik(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .minik
            .command()
            .args(args)
            .env("HOME", &self.home)
            .env_remove("MINIK_SERVER")
            .env_remove("MINIK_NAMESPACE")
            .env_remove("MINIK_TOKEN")
            .current_dir(self.minik.dir)
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

/// The pod-network flags every agent a test starts gets: pod egress is always off (no test
/// sends a pod's packet beyond the machine), and the pod network itself only when the test
/// asks for it with `--pod-network` — its bridge and nftables table are named after the node,
/// so tests that run at once must not share node names or cluster CIDRs, which only the tests
/// of the pod network itself take care of.
fn network_flags(extra: &[&str]) -> Vec<&'static str> {
    let mut flags = vec!["--no-pod-egress"];
    if !extra.iter().any(|a| a.starts_with("--pod-network")) {
        flags.extend(["--pod-network", "off"]);
    }
    flags
}
