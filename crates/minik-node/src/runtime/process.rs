//! The `process` runtime: each container is a host process in its own process group, with
//! stdout and stderr appended to its log file. Stopping sends SIGTERM to the whole group, then
//! SIGKILL after the grace period, so nothing a container started outlives it.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::{ContainerSpec, Exit, Runtime, StartError, State};
use crate::BoxFuture;

struct Process {
    pgid: Pid,
    started_at: SystemTime,
    /// Set once the process has exited.
    exit: watch::Receiver<Option<Exit>>,
}

/// The process runtime. Cheap to clone; clones share their processes.
#[derive(Clone, Default)]
pub struct ProcessRuntime {
    processes: Arc<Mutex<HashMap<String, Process>>>,
}

impl ProcessRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Process>> {
        self.processes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `program` as the shell would: a path as given, a bare name on `$PATH`.
pub fn resolve_program(program: &str) -> Result<PathBuf, StartError> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(StartError::NotFound(program.to_owned()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| StartError::NotFound(program.to_owned()))
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal();
    Exit {
        // A process killed by a signal exits, as a shell reports it, with 128 + the signal.
        code: status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)),
        signal,
        oom_killed: false,
        finished_at: SystemTime::now(),
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<(), StartError> {
        let program = resolve_program(&spec.program)?;
        if let Some(dir) = &spec.working_dir {
            if !dir.is_dir() {
                return Err(StartError::WorkingDir(dir.clone()));
            }
        }
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StartError::Failed(format!(
                    "cannot create the log directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(|e| {
                StartError::Failed(format!(
                    "cannot open the log file {}: {e}",
                    spec.log_path.display()
                ))
            })?;
        let log_err = log.try_clone().map_err(|e| {
            StartError::Failed(format!(
                "cannot open the log file {}: {e}",
                spec.log_path.display()
            ))
        })?;
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &spec.working_dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot start {}: {e}", program.display())))?;
        let pid = child.id().ok_or_else(|| {
            StartError::Failed("the process exited before it could be tracked".into())
        })?;
        let pgid = Pid::from_raw(pid as i32);
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => exit_of(status),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for a container process");
                    Exit {
                        code: 255,
                        signal: None,
                        oom_killed: false,
                        finished_at: SystemTime::now(),
                    }
                }
            };
            // What the main process left running in its group goes with it.
            let _ = killpg(pgid, Signal::SIGKILL);
            exit_tx.send_replace(Some(exit));
        });
        self.lock().insert(
            spec.id.clone(),
            Process {
                pgid,
                started_at: SystemTime::now(),
                exit: exit_rx,
            },
        );
        Ok(())
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, ()> {
        let target = self.lock().get(id).map(|p| (p.pgid, p.exit.clone()));
        Box::pin(async move {
            let Some((pgid, mut exit)) = target else {
                return;
            };
            if exit.borrow().is_some() {
                return;
            }
            let _ = killpg(pgid, Signal::SIGTERM);
            if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                let _ = killpg(pgid, Signal::SIGKILL);
                let _ = exit.wait_for(Option::is_some).await;
            }
        })
    }

    fn state(&self, id: &str) -> State {
        match self.lock().get(id) {
            None => State::Unknown,
            Some(p) => match p.exit.borrow().clone() {
                Some(exit) => State::Exited {
                    started_at: p.started_at,
                    exit,
                },
                None => State::Running {
                    started_at: p.started_at,
                },
            },
        }
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn containers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, id: &str, program: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hello".into())],
            working_dir: None,
            log_path: dir.join(format!("{}.log", id.replace('/', "_"))),
            memory_limit: None,
            annotations: vec![],
        }
    }

    async fn wait_exit(rt: &ProcessRuntime, id: &str) -> Exit {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let State::Exited { exit, .. } = rt.state(id) {
                return exit;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn runs_with_only_the_given_environment_and_logs_output() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let s = spec(
            dir.path(),
            "p/c/0",
            "sh",
            &["-c", "echo $GREETING; echo ${HOME:-nohome} >&2; exit 3"],
        );
        rt.start(&s).unwrap();
        let exit = wait_exit(&rt, "p/c/0").await;
        assert_eq!(exit.code, 3);
        assert_eq!(
            std::fs::read_to_string(&s.log_path).unwrap(),
            "hello\nnohome\n"
        );
    }

    #[tokio::test]
    async fn missing_programs_and_directories_are_start_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let err = rt
            .start(&spec(dir.path(), "p/c/0", "no-such-program-xyz", &[]))
            .unwrap_err();
        assert_eq!(err, StartError::NotFound("no-such-program-xyz".into()));
        let mut s = spec(dir.path(), "p/c/1", "sh", &[]);
        s.working_dir = Some(dir.path().join("missing"));
        assert!(matches!(rt.start(&s), Err(StartError::WorkingDir(_))));
    }

    #[tokio::test]
    async fn stop_terminates_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let pidfile = dir.path().join("child.pid");
        // The shell starts a background sleeper and waits; both must go.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        rt.start(&spec(dir.path(), "p/c/0", "sh", &["-c", &script]))
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pidfile)
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
        {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        rt.stop("p/c/0", Duration::from_secs(5)).await;
        let exit = wait_exit(&rt, "p/c/0").await;
        assert_eq!(exit.signal, Some(15));
        while nix::sys::signal::kill(Pid::from_raw(child), None).is_ok() {
            // A zombie that init has not reaped yet still answers; give it a moment.
            assert!(
                tokio::time::Instant::now() < deadline,
                "the background child survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let ready = dir.path().join("ready");
        let script = format!(
            "trap '' TERM; touch {}; while true; do sleep 0.05; done",
            ready.display()
        );
        rt.start(&spec(dir.path(), "p/c/0", "sh", &["-c", &script]))
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the trap was never set"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rt.stop("p/c/0", Duration::from_millis(300)).await;
        assert_eq!(wait_exit(&rt, "p/c/0").await.signal, Some(9));
    }
}
