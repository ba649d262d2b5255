//! A `minik node` under test: a child process on loopback, stopped with SIGTERM (so it stops
//! its pods' processes) and, failing that, killed when its guard drops, whatever happened.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

/// How long a dropped agent gets to stop its pods before it is killed.
const DROP_LIMIT: Duration = Duration::from_secs(30);

pub struct Agent {
    child: Child,
}

impl Agent {
    /// Spawns `minik node --server SERVER --name NAME --port 0 --data-dir DIR` plus `extra`.
    pub fn start(
        minik: &Path,
        server: &str,
        name: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let child = Command::new(minik)
            .arg("node")
            .args(["--server", server, "--name", name, "--port", "0"])
            // No benchmark sends a pod's packet beyond the machine.
            .arg("--no-pod-egress")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} node", minik.display()))?;
        Ok(Agent { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the exit (the agent stops its pods first); how long it took.
    pub fn stop(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let asked = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "minik node exited with {status}");
                return Ok(asked.elapsed());
            }
            if asked.elapsed() > limit {
                bail!("minik node did not stop within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(DROP_LIMIT);
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
