//! The `process` runtime: each container is a host process in its own process group.
//!
//! - Output: the container's stdout and stderr are named pipes (FIFOs) in the state directory,
//!   opened read-write by the container so that it never gets SIGPIPE, even while no agent
//!   reads them; the agent drains them into size-capped, rotated log files in the CRI format
//!   (`logs.rs`). An agent that restarts opens the pipes again and goes on; what the container
//!   wrote meanwhile waited in the pipe.
//! - Adoption: a state file per container (`state.rs`) names its pid and the pid's start time.
//!   [`ProcessRuntime::open`] reads them: live processes are watched again (they are no longer
//!   the agent's children, so their end is seen through a pidfd, or by polling `/proc`), dead
//!   ones are recorded as ended with an unknown status.
//! - Memory limits: a cgroup per container (`cgroup.rs`), joined before `exec`.
//! - Stop: SIGTERM to the whole group, SIGKILL after the grace period, so nothing a container
//!   started outlives it.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use minik_api::kinds::service_account;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::attach::{self, Attachable, Input};
use super::cgroup::{Cgroup, MemoryCgroups, Version};
use super::state::{self, ContainerState, ExitState};
use super::{
    ContainerSpec, ExecControl, ExecProcess, ExecRequest, Exit, Runtime, StartError, Started, State,
};
use crate::logs::{LogLimits, LogWriter, Stream};
use crate::BoxFuture;

/// How much a container may write while no agent drains its output (the pipe's buffer).
const PIPE_BUFFER: i32 = 256 * 1024;
/// How long the agent waits, once a container ended, for the last of its output.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Settings of the process runtime.
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// Where container state files and output pipes are kept; read at start to adopt the
    /// containers an earlier agent started.
    pub state_dir: PathBuf,
    pub logs: LogLimits,
    /// Enforce `resources.limits.memory` with cgroups where the host allows it.
    pub memory_limits: bool,
}

struct Process {
    pgid: Pid,
    started_at: SystemTime,
    /// Set once the process has exited.
    exit: watch::Receiver<Option<Exit>>,
    cgroup: Option<Cgroup>,
    /// Its output for attached clients, and its input.
    attach: Arc<Attachable>,
}

struct Inner {
    options: ProcessOptions,
    /// The state directory is this runtime's own scratch directory, removed with it.
    scratch: bool,
    /// Where memory cgroups go, or why there are none.
    cgroups: Result<MemoryCgroups, String>,
    warned: AtomicBool,
    processes: Mutex<HashMap<String, Process>>,
}

/// The process runtime. Cheap to clone; clones share their processes.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl Default for ProcessRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessRuntime {
    /// A runtime whose state lives in a scratch directory of this process: nothing to adopt.
    pub fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let state_dir =
            std::env::temp_dir().join(format!("minik-process-{}-{n}", std::process::id()));
        Self::with_options(
            ProcessOptions {
                state_dir,
                logs: LogLimits::default(),
                memory_limits: true,
            },
            true,
        )
    }

    fn with_options(options: ProcessOptions, scratch: bool) -> Self {
        let cgroups = if options.memory_limits {
            MemoryCgroups::detect()
        } else {
            Err("memory limits are turned off for this node".into())
        };
        ProcessRuntime {
            inner: Arc::new(Inner {
                options,
                scratch,
                cgroups,
                warned: AtomicBool::new(false),
                processes: Mutex::default(),
            }),
        }
    }

    /// Opens the runtime over `options.state_dir` and adopts the containers recorded there: live
    /// ones are watched again, dead ones are recorded as ended. Must run inside Tokio.
    pub fn open(options: ProcessOptions) -> std::io::Result<Self> {
        std::fs::create_dir_all(&options.state_dir)?;
        let runtime = Self::with_options(options, false);
        let states = ContainerState::load_all(&runtime.inner.options.state_dir);
        for state in states {
            runtime.adopt(state);
        }
        Ok(runtime)
    }

    /// Where memory cgroups are created, or why memory limits are not enforced here.
    pub fn memory_cgroups(&self) -> Result<&MemoryCgroups, &str> {
        self.inner.cgroups.as_ref().map_err(String::as_str)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Process>> {
        self.inner
            .processes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn state_dir(&self) -> &Path {
        &self.inner.options.state_dir
    }

    /// Takes back one container recorded by an earlier run of the agent.
    fn adopt(&self, mut saved: ContainerState) {
        let cgroup = saved.cgroup.clone().map(|path| Cgroup {
            version: saved
                .cgroup_version
                .as_deref()
                .and_then(Version::parse)
                .unwrap_or(Version::V1),
            path,
        });
        let started_at = state::from_nanos(saved.started_at_ns);
        if let Some(exit) = &saved.exit {
            // It ended while this agent's predecessor watched it: the exit is known.
            let (_tx, rx) = watch::channel(Some(Exit::from(exit)));
            let pgid = Pid::from_raw(saved.pid.unwrap_or(0));
            self.lock().insert(
                saved.id.clone(),
                Process {
                    pgid,
                    started_at,
                    exit: rx,
                    cgroup,
                    attach: Attachable::output_only(saved.stdio),
                },
            );
            return;
        }
        let live = match (saved.pid, saved.start_ticks) {
            (Some(pid), Some(ticks)) => (state::start_ticks(pid) == Some(ticks)).then_some(pid),
            // The agent died between starting the process and recording its pid: the process
            // is the one whose stdout is this container's pipe.
            _ => find_by_output(&saved.stdout_fifo),
        };
        let Some(pid) = live else {
            tracing::info!(container = %saved.id, "a container ended while the agent was down");
            if let Some(pid) = saved.pid {
                // The leader is gone; what is left of its group is ours (a pid that names a
                // living group is never given to a new process).
                if state::start_ticks(pid).is_none() {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let exit = unknown_exit(cgroup.as_ref());
            saved.exit = Some(ExitState::from(&exit));
            if let Err(e) = saved.save(self.state_dir()) {
                tracing::warn!(container = %saved.id, error = %e, "cannot record a container's end");
            }
            let (_tx, rx) = watch::channel(Some(exit));
            self.lock().insert(
                saved.id.clone(),
                Process {
                    pgid: Pid::from_raw(saved.pid.unwrap_or(0)),
                    started_at,
                    exit: rx,
                    cgroup,
                    attach: Attachable::output_only(saved.stdio),
                },
            );
            return;
        };
        tracing::info!(container = %saved.id, pid, "adopted a running container");
        if saved.pid != Some(pid) {
            saved.pid = Some(pid);
            saved.start_ticks = state::start_ticks(pid);
            let _ = saved.save(self.state_dir());
        }
        let pgid = Pid::from_raw(pid);
        let attach = self.adopted_input(&saved);
        let pumps = match LogWriter::open(&saved.log_path, self.inner.options.logs) {
            Ok(writer) => {
                let writer = Arc::new(Mutex::new(writer));
                [
                    (&saved.stdout_fifo, Stream::Stdout),
                    (&saved.stderr_fifo, Stream::Stderr),
                ]
                .into_iter()
                .filter_map(|(fifo, stream)| {
                    let rx = pipe::OpenOptions::new().open_receiver(fifo).ok()?;
                    Some(tokio::spawn(pump(
                        rx,
                        stream,
                        writer.clone(),
                        attach.tap.clone(),
                    )))
                })
                .collect()
            }
            Err(e) => {
                tracing::warn!(container = %saved.id, error = %e, "cannot open an adopted container's log");
                Vec::new()
            }
        };
        let (exit_tx, exit_rx) = watch::channel(None);
        let id = saved.id.clone();
        let ticks = saved.start_ticks;
        let dir = self.state_dir().to_owned();
        let watched_cgroup = cgroup.clone();
        tokio::spawn(async move {
            wait_for_end(pid, ticks).await;
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = tokio::time::timeout(DRAIN_LIMIT, futures::future::join_all(pumps)).await;
            let exit = unknown_exit(watched_cgroup.as_ref());
            saved.exit = Some(ExitState::from(&exit));
            if let Err(e) = saved.save(&dir) {
                tracing::warn!(container = %saved.id, error = %e, "cannot record a container's end");
            }
            exit_tx.send_replace(Some(exit));
        });
        self.lock().insert(
            id,
            Process {
                pgid,
                started_at,
                exit: exit_rx,
                cgroup,
                attach,
            },
        );
    }

    /// The input of a container an earlier agent started. Its stdin pipe goes on; the keeper
    /// of a `stdinOnce` stdin and the master of a terminal went with that agent: such a stdin
    /// is closed (its pipe removed), and a terminal's input and output cannot be reached.
    fn adopted_input(&self, saved: &ContainerState) -> Arc<Attachable> {
        let stdio = saved.stdio;
        let path = self.stdin_fifo(&saved.id);
        if !stdio.stdin || stdio.tty {
            return Attachable::output_only(stdio);
        }
        if stdio.stdin_once {
            let _ = std::fs::remove_file(&path);
        }
        Arc::new(Attachable {
            tap: attach::tap(),
            stdio,
            input: Input::Pipe {
                path,
                keeper: Mutex::new(None),
            },
        })
    }

    /// The named pipe a container with `stdin` reads.
    fn stdin_fifo(&self, id: &str) -> PathBuf {
        self.state_dir()
            .join(format!("{}.stdin", state::file_stem(id)))
    }
}

/// How an adopted container ended: its exit code is lost (it was not this agent's child),
/// unless the kernel killed it for memory.
fn unknown_exit(cgroup: Option<&Cgroup>) -> Exit {
    let oom = cgroup.is_some_and(|c| c.oom_kills() > 0);
    Exit {
        code: 137,
        signal: None,
        oom_killed: oom,
        status_unknown: !oom,
        finished_at: SystemTime::now(),
    }
}

/// Waits until process `pid` (started at `ticks`) is gone: through a pidfd where the kernel
/// has them, else by polling `/proc`.
pub(crate) async fn wait_for_end(pid: i32, ticks: Option<u64>) {
    let same = || ticks.is_none_or(|t| state::start_ticks(pid) == Some(t));
    // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Checked after opening: the pidfd now pins this very process.
        if !same() {
            return;
        }
        // SAFETY: an OwnedFd stays open, and the same descriptor, for as long as it is owned.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        if let Ok(fd) = registered {
            let _ = fd.readable().await;
            return;
        }
    }
    while same() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The process whose stdout is `fifo`, if any.
fn find_by_output(fifo: &Path) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path().join("fd/1")).ok()?;
        (target == fifo).then_some(pid)
    })
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
    // A process killed by a signal exits, as a shell reports it, with 128 + the signal.
    Exit::code(
        status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)),
        signal,
        SystemTime::now(),
    )
}

/// Copies what a container writes on one stream into its log, and to the clients attached to
/// it through `tap`, until no one writes any more.
pub(crate) async fn pump(
    rx: pipe::Receiver,
    stream: Stream,
    writer: Arc<Mutex<LogWriter>>,
    tap: super::attach::Tap,
) {
    let mut failed = false;
    loop {
        if rx.readable().await.is_err() {
            return;
        }
        // The buffer lives between awaits only, so idle containers cost no buffer memory.
        let mut buffer = [0u8; 8192];
        loop {
            match rx.try_read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => record(stream, &buffer[..n], &writer, &tap, &mut failed),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

/// Copies what a container writes on its terminal into its log (as stdout, the kubelet's way)
/// and to the attached clients, until the terminal closes (the container and what it started
/// are gone).
async fn pump_terminal(pty: Arc<Pty>, writer: Arc<Mutex<LogWriter>>, tap: super::attach::Tap) {
    use tokio::io::AsyncReadExt;
    let mut reader = PtyReader(pty);
    let mut buffer = vec![0u8; 8192];
    let mut failed = false;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => record(Stream::Stdout, &buffer[..n], &writer, &tap, &mut failed),
        }
    }
}

/// One chunk of a container's output: to the attached clients and into its log.
fn record(
    stream: Stream,
    data: &[u8],
    writer: &Mutex<LogWriter>,
    tap: &super::attach::Tap,
    failed: &mut bool,
) {
    super::attach::offer(tap, stream, data);
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = w.write(stream, data, SystemTime::now()) {
        if !*failed {
            tracing::warn!(error = %e, "cannot write a container's log");
            *failed = true;
        }
    }
}

/// Creates the named pipe of one output stream and opens both ends: the agent's (reading) and
/// the container's (read-write, so that the pipe always has a reader and the container never
/// gets SIGPIPE, whether or not an agent runs).
pub(crate) fn output_pipe(path: &Path) -> std::io::Result<(pipe::Receiver, std::fs::File)> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(
        path,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .map_err(std::io::Error::from)?;
    let container_end = OpenOptions::new().read(true).write(true).open(path)?;
    let _ = nix::fcntl::fcntl(
        &container_end,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BUFFER),
    );
    let agent_end = pipe::OpenOptions::new().open_receiver(path)?;
    Ok((agent_end, container_end))
}

fn failed(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Failed(format!("{what}: {e}"))
}

impl ProcessRuntime {
    fn remove_files(&self, id: &str) {
        let stem = state::file_stem(id);
        let dir = self.state_dir();
        for suffix in ["json", "stdout", "stderr", "stdin"] {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.{suffix}")));
        }
    }

    /// The memory cgroup for a container, when it asks for a limit: `Ok(None)` when it asks
    /// for none, `Err(why)` when the limit cannot be enforced on this host.
    fn cgroup_for(&self, spec: &ContainerSpec) -> Result<Option<Cgroup>, String> {
        let Some(limit) = spec.memory_limit else {
            return Ok(None);
        };
        let cgroups = self.inner.cgroups.as_ref().map_err(|why| {
            if !self.inner.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(reason = %why, "memory limits are not enforced on this node");
            }
            why.clone()
        })?;
        cgroups
            .create(&state::file_stem(&spec.id), limit)
            .map(Some)
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot create a memory cgroup");
                format!("cannot create a memory cgroup: {e}")
            })
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<Started, StartError> {
        let program = resolve_program(&spec.program)?;
        if let Some(dir) = &spec.working_dir {
            if !dir.is_dir() {
                return Err(StartError::WorkingDir(dir.clone()));
            }
        }
        for (address, port) in &spec.host_ports {
            if let Err(e) = std::net::TcpListener::bind((address.as_str(), *port)) {
                return Err(StartError::PortInUse {
                    address: address.clone(),
                    port: *port,
                    error: e.to_string(),
                });
            }
        }
        let binds = mount_points(&spec.mounts)?;
        let writer = LogWriter::open(&spec.log_path, self.inner.options.logs).map_err(|e| {
            failed(
                &format!("cannot open the log file {}", spec.log_path.display()),
                e,
            )
        })?;
        let stem = state::file_stem(&spec.id);
        let dir = self.state_dir().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| {
            failed(
                &format!("cannot create the state directory {}", dir.display()),
                e,
            )
        })?;
        let stdout_fifo = dir.join(format!("{stem}.stdout"));
        let stderr_fifo = dir.join(format!("{stem}.stderr"));
        let wiring = Wiring::make(
            spec.stdio,
            &stdout_fifo,
            &stderr_fifo,
            &self.stdin_fifo(&spec.id),
        )
        .map_err(|e| failed("cannot make the container's stdin and output", e))?;
        let (cgroup, limit_not_enforced) = match self.cgroup_for(spec) {
            Ok(c) => (c, None),
            Err(why) => (None, Some(why)),
        };
        let mut saved = ContainerState {
            id: spec.id.clone(),
            pid: None,
            start_ticks: None,
            started_at_ns: state::nanos(SystemTime::now()),
            log_path: spec.log_path.clone(),
            stdout_fifo,
            stderr_fifo,
            cgroup: cgroup.as_ref().map(|c| c.path.clone()),
            cgroup_version: cgroup.as_ref().map(|c| c.version.name().to_owned()),
            exit: None,
            stdio: spec.stdio,
        };
        let cleanup = |cgroup: &Option<Cgroup>| {
            if let Some(c) = cgroup {
                c.remove();
            }
            self.remove_files(&spec.id);
        };
        if let Err(e) = saved.save(&dir) {
            cleanup(&cgroup);
            return Err(failed("cannot write the container's state", e));
        }
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(false);
        let ends = wiring.container_ends().map_err(|e| {
            cleanup(&cgroup);
            failed("cannot open the container's stdin and output", e)
        })?;
        let [stdin, stdout, stderr] = ends;
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        if spec.stdio.tty {
            // SAFETY: between fork and exec only setsid(2) and ioctl(2).
            unsafe {
                command.pre_exec(take_terminal);
            }
        } else {
            command.process_group(0);
        }
        if let Some(dir) = &spec.working_dir {
            command.current_dir(dir);
        }
        let procs = match &cgroup {
            Some(c) => match OpenOptions::new().write(true).open(c.procs_file()) {
                Ok(f) => Some(f),
                Err(e) => {
                    cleanup(&cgroup);
                    return Err(failed("cannot open the container's cgroup", e));
                }
            },
            None => None,
        };
        if let Some(procs) = &procs {
            let fd = procs.as_raw_fd();
            // SAFETY: between fork and exec only async-signal-safe calls are allowed; this
            // is one write(2) on a descriptor opened before the fork. "0" means the writer.
            unsafe {
                command.pre_exec(move || {
                    if nix::libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if !binds.is_empty() {
            // SAFETY: between fork and exec only async-signal-safe calls are allowed: these are
            // unshare(2) and mount(2) on C strings made before the fork.
            unsafe {
                command.pre_exec(move || private_mounts(&binds));
            }
        }
        let spawned = command.spawn();
        // The agent keeps no write end of the pipes: they end when the container's processes do.
        drop(command);
        drop(procs);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                cleanup(&cgroup);
                return Err(failed(&format!("cannot start {}", program.display()), e));
            }
        };
        let Some(pid) = child.id() else {
            cleanup(&cgroup);
            return Err(StartError::Failed(
                "the process exited before it could be tracked".into(),
            ));
        };
        let pid = pid as i32;
        saved.pid = Some(pid);
        saved.start_ticks = state::start_ticks(pid);
        if let Err(e) = saved.save(&dir) {
            tracing::warn!(container = %spec.id, error = %e, "cannot record a container's pid");
        }
        let pgid = Pid::from_raw(pid);
        let writer = Arc::new(Mutex::new(writer));
        let (pumps, attach) = wiring.pumps(writer, pid);
        let (exit_tx, exit_rx) = watch::channel(None);
        let watched_cgroup = cgroup.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // What the main process left running in its group goes with it.
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = tokio::time::timeout(DRAIN_LIMIT, futures::future::join_all(pumps)).await;
            let mut exit = match status {
                Ok(status) => exit_of(status),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for a container process");
                    Exit::code(255, None, SystemTime::now())
                }
            };
            if watched_cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0) {
                exit.oom_killed = true;
            }
            saved.exit = Some(ExitState::from(&exit));
            if let Err(e) = saved.save(&dir) {
                tracing::warn!(container = %saved.id, error = %e, "cannot record a container's end");
            }
            exit_tx.send_replace(Some(exit));
        });
        self.lock().insert(
            spec.id.clone(),
            Process {
                pgid,
                started_at: SystemTime::now(),
                exit: exit_rx,
                cgroup,
                attach,
            },
        );
        Ok(Started {
            program,
            limit_not_enforced,
        })
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
        let removed = self.lock().remove(id);
        if let Some(process) = removed {
            if process.exit.borrow().is_none() {
                // Removing a running container: it must not outlive its record.
                let _ = kill(process.pgid, None).map(|_| killpg(process.pgid, Signal::SIGKILL));
            }
            if let Some(cgroup) = process.cgroup {
                remove_cgroup(cgroup);
            }
        }
        self.remove_files(id);
    }

    fn containers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
    fn exec(&self, id: &str, request: &ExecRequest) -> Result<ExecProcess, String> {
        let cgroup = match self.lock().get(id) {
            Some(p) if p.exit.borrow().is_none() => p.cgroup.clone(),
            _ => return Err("the container is not running".into()),
        };
        exec_host(request, cgroup.as_ref())
    }

    fn attach(&self, id: &str, stdin: bool) -> Result<ExecProcess, String> {
        let (attach, exit) = match self.lock().get(id) {
            Some(p) if p.exit.borrow().is_none() => (p.attach.clone(), p.exit.clone()),
            _ => return Err("the container is not running".into()),
        };
        attach.attach(exit, stdin)
    }
}

/// Makes the calling process a session leader whose controlling terminal is its stdin (a
/// pseudo-terminal's slave). For `pre_exec`: only setsid(2) and ioctl(2), both
/// async-signal-safe.
fn take_terminal() -> std::io::Result<()> {
    // SAFETY: setsid and ioctl(TIOCSCTTY) take no pointers.
    unsafe {
        if nix::libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A container's standard streams, made before it starts: named pipes for its output (and
/// for its stdin when it has one), or one pseudo-terminal for all three.
enum Wiring {
    Pipes {
        out: (pipe::Receiver, std::fs::File),
        err: (pipe::Receiver, std::fs::File),
        /// The stdin pipe, the container's end and the keeper (`stdinOnce`).
        stdin: Option<(PathBuf, std::fs::File, Option<std::fs::File>)>,
        stdio: super::Stdio,
    },
    Terminal {
        master: Arc<Pty>,
        slave: std::fs::File,
        stdio: super::Stdio,
    },
}

impl Wiring {
    fn make(stdio: super::Stdio, out: &Path, err: &Path, stdin: &Path) -> std::io::Result<Wiring> {
        if stdio.tty {
            let pair = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
            return Ok(Wiring::Terminal {
                master: Pty::new(pair.master)?,
                slave: pair.slave.into(),
                stdio,
            });
        }
        let stdin = if stdio.stdin {
            attach::make_pipe(stdin)?;
            let (end, keeper) = attach::stdin_ends(stdin, stdio.stdin_once)?;
            Some((stdin.to_owned(), end, keeper))
        } else {
            None
        };
        Ok(Wiring::Pipes {
            out: output_pipe(out)?,
            err: output_pipe(err)?,
            stdin,
            stdio,
        })
    }

    /// The container's stdin, stdout and stderr.
    fn container_ends(&self) -> std::io::Result<[std::process::Stdio; 3]> {
        Ok(match self {
            Wiring::Pipes {
                out, err, stdin, ..
            } => [
                match stdin {
                    Some((_, end, _)) => end.try_clone()?.into(),
                    None => std::process::Stdio::null(),
                },
                out.1.try_clone()?.into(),
                err.1.try_clone()?.into(),
            ],
            // The terminal is all three, as with runc.
            Wiring::Terminal { slave, .. } => [
                slave.try_clone()?.into(),
                slave.try_clone()?.into(),
                slave.try_clone()?.into(),
            ],
        })
    }

    /// Starts copying the started container's output into its log (`writer`); answers the
    /// copies and what attach sessions need. The container's ends are closed here: the agent
    /// keeps only its own.
    fn pumps(
        self,
        writer: Arc<Mutex<LogWriter>>,
        group: i32,
    ) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Attachable>) {
        let tap = attach::tap();
        match self {
            Wiring::Pipes {
                out,
                err,
                stdin,
                stdio,
            } => {
                let pumps = vec![
                    tokio::spawn(pump(out.0, Stream::Stdout, writer.clone(), tap.clone())),
                    tokio::spawn(pump(err.0, Stream::Stderr, writer, tap.clone())),
                ];
                let input = match stdin {
                    Some((path, _, keeper)) => Input::Pipe {
                        path,
                        keeper: Mutex::new(keeper),
                    },
                    None => Input::None,
                };
                (pumps, Arc::new(Attachable { tap, stdio, input }))
            }
            Wiring::Terminal { master, stdio, .. } => {
                let pumps = vec![tokio::spawn(pump_terminal(
                    master.clone(),
                    writer,
                    tap.clone(),
                ))];
                let input = Input::Terminal {
                    pty: master,
                    group,
                    closed: AtomicBool::new(false),
                };
                (pumps, Arc::new(Attachable { tap, stdio, input }))
            }
        }
    }
}

/// Starts `request` as a host process (the process runtime's exec): in its own process group
/// (a session of its own with a tty), in `cgroup` when given.
fn exec_host(request: &ExecRequest, cgroup: Option<&Cgroup>) -> Result<ExecProcess, String> {
    let (program, args) = request
        .command
        .split_first()
        .ok_or("you must specify at least one command for the container")?;
    if let Some(dir) = &request.working_dir {
        if !dir.is_dir() {
            return Err(format!(
                "the working directory {} does not exist",
                dir.display()
            ));
        }
    }
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)));
    // As at the container's start: the node's PATH and HOME unless the container sets them.
    for name in ["PATH", "HOME"] {
        if !request.env.iter().any(|(k, _)| k == name) {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
    }
    if let Some(dir) = &request.working_dir {
        command.current_dir(dir);
    }
    let procs = match cgroup {
        Some(c) => Some(
            OpenOptions::new()
                .write(true)
                .open(c.procs_file())
                .map_err(|e| format!("cannot open the container's cgroup: {e}"))?,
        ),
        None => None,
    };
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    let pty = if request.tty {
        let pair = nix::pty::openpty(None, None)
            .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        let slave = std::fs::File::from(pair.slave);
        let clone = |f: &std::fs::File| {
            f.try_clone()
                .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))
        };
        // The terminal is all three, as with runc: without stdin the agent just writes
        // nothing to it.
        command
            .stdin(clone(&slave)?)
            .stdout(clone(&slave)?)
            .stderr(slave);
        Some(Pty::new(pair.master).map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?)
    } else {
        let piped = std::process::Stdio::piped;
        command
            .stdin(if request.stdin {
                piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(piped())
            .stderr(piped())
            .process_group(0);
        None
    };
    let tty = request.tty;
    // SAFETY: between fork and exec only async-signal-safe calls: write(2) on a descriptor
    // opened before the fork, setsid(2) and ioctl(2).
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = procs_fd {
                if nix::libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if tty {
                take_terminal()?;
            }
            Ok(())
        });
    }
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(false);
    let spawned = command.spawn();
    drop(command);
    drop(procs);
    let mut child = spawned.map_err(|e| exec_error(program, &e))?;
    let pid = child
        .id()
        .map(|p| p as i32)
        .ok_or("the command ended before it could be tracked")?;
    let ended = Arc::new(AtomicBool::new(false));
    let control = Arc::new(ExecHandle {
        pgid: pid,
        ended: ended.clone(),
        pty: pty.clone(),
    });
    let (stdin, stdout, stderr): (Option<super::ExecWriter>, _, _) = match &pty {
        Some(pty) => (
            request
                .stdin
                .then(|| Box::pin(PtyWriter(pty.clone())) as super::ExecWriter),
            Some(Box::pin(PtyReader(pty.clone())) as super::ExecReader),
            None,
        ),
        None => (
            child.stdin.take().map(|w| Box::pin(w) as super::ExecWriter),
            child
                .stdout
                .take()
                .map(|r| Box::pin(r) as super::ExecReader),
            child
                .stderr
                .take()
                .map(|r| Box::pin(r) as super::ExecReader),
        ),
    };
    Ok(ExecProcess {
        stdin,
        stdout,
        stderr,
        control,
        exit: watch_exit(child, ended),
    })
}

/// The user's message for a command that could not be started, as runc words it.
pub(crate) fn exec_error(program: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound if !program.contains('/') => {
            format!("exec: {program:?}: executable file not found in $PATH")
        }
        std::io::ErrorKind::NotFound => format!("exec: {program:?}: no such file or directory"),
        std::io::ErrorKind::PermissionDenied => format!("exec: {program:?}: permission denied"),
        _ => format!("exec: {program:?}: {e}"),
    }
}

/// Waits for an exec'd child in a task of its own; the future answers its exit code (128 +
/// the signal when a signal ended it). `ended` is set once it is reaped.
pub(crate) fn watch_exit(
    mut child: tokio::process::Child,
    ended: Arc<AtomicBool>,
) -> BoxFuture<'static, Result<i32, String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let status = child.wait().await;
        ended.store(true, Ordering::SeqCst);
        let _ = tx.send(
            status
                .map(|s| exit_of(s).code)
                .map_err(|e| format!("cannot wait for the command: {e}")),
        );
    });
    Box::pin(async move {
        rx.await
            .unwrap_or_else(|_| Err("the command's end was not seen".into()))
    })
}

/// Resize and kill of an exec'd process group.
pub(crate) struct ExecHandle {
    /// The process group (with a tty, the session) of the command.
    pub(crate) pgid: i32,
    /// Set once the command is reaped: its group id may then name someone else.
    pub(crate) ended: Arc<AtomicBool>,
    pub(crate) pty: Option<Arc<Pty>>,
}

impl ExecControl for ExecHandle {
    fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        match &self.pty {
            Some(pty) => pty.resize(width, height),
            None => Err("the command has no terminal to resize".into()),
        }
    }

    fn kill(&self) {
        if !self.ended.load(Ordering::SeqCst) && self.pgid > 0 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// The master side of a pseudo-terminal, read and written without blocking Tokio.
pub(crate) struct Pty {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl Pty {
    /// Wraps a master descriptor (made non-blocking here). Must run inside Tokio.
    pub(crate) fn new(master: OwnedFd) -> std::io::Result<Arc<Pty>> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(&master, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&master, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        // SAFETY: an OwnedFd stays open, and the same descriptor, for as long as it is owned.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
        Ok(Arc::new(Pty { fd }))
    }

    /// Sets the terminal's size; the command gets SIGWINCH.
    pub(crate) fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        use std::os::fd::AsFd;
        super::attach::set_window_size(self.fd.get_ref().as_fd(), width, height)
    }
}

/// Reads what the command writes on its terminal.
pub(crate) struct PtyReader(pub(crate) Arc<Pty>);

/// Writes to the command's terminal (its input).
pub(crate) struct PtyWriter(pub(crate) Arc<Pty>);

impl tokio::io::AsyncRead for PtyReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        loop {
            let mut guard = std::task::ready!(self.0.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(Into::into)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                // Every slave descriptor is closed: the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return std::task::Poll::Ready(Ok(()))
                }
                Ok(Err(e)) => return std::task::Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl tokio::io::AsyncWrite for PtyWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            let mut guard = std::task::ready!(self.0.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(result) => return std::task::Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    /// A terminal's input has no end of its own: it stays open for the command's output.
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.options.state_dir);
        }
    }
}

/// Removes a cgroup once its last process is gone (which may be a moment after the exit).
fn remove_cgroup(cgroup: Cgroup) {
    if !cgroup.is_populated() {
        cgroup.remove();
        return;
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            for _ in 0..50 {
                if !cgroup.is_populated() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cgroup.remove();
        });
    } else {
        cgroup.remove();
    }
}

/// A bind mount as the child makes it: source, destination, read-only.
type Bind = (std::ffi::CString, std::ffi::CString, bool);

/// The process runtime's volumes: a host process cannot have a root of its own, so when a
/// container mounts volumes it runs in a private mount namespace (the agent must be root) in
/// which each volume is bound at its `mountPath` on the host's tree. A mount point the host
/// lacks is made first — an empty directory, or an empty file for a file — and stays on the
/// host (docs/runtimes.md says so). Returns the binds for [`private_mounts`].
///
/// Without root, the service account volume admission adds to every pod
/// (`kube-api-access-*` at `/var/run/secrets/kubernetes.io/serviceaccount`) is left out with a
/// warning in the agent's log rather than keeping every pod from starting; a pod that wants
/// its token there runs with the oci runtime or a root agent (docs/process-runtime.md).
fn mount_points(mounts: &[crate::volumes::Mount]) -> Result<Vec<Bind>, StartError> {
    let root = nix::unistd::geteuid().is_root();
    let (automatic, mounts): (Vec<_>, Vec<_>) = mounts.iter().partition(|m| {
        !root
            && m.destination == service_account::TOKEN_MOUNT_PATH
            && m.source
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(service_account::TOKEN_VOLUME_PREFIX))
    });
    for m in automatic {
        tracing::warn!(
            volume = %m.source.display(),
            "the process runtime needs root to mount the service account volume at {}; the container runs without it",
            m.destination
        );
    }
    if mounts.is_empty() {
        return Ok(Vec::new());
    }
    if !root {
        return Err(StartError::Config(format!(
            "the process runtime mounts volumes (here at {}) in a private mount namespace, which needs an agent running as root; run the pod with the oci runtime or the agent as root",
            mounts
                .iter()
                .map(|m| m.destination.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut binds = Vec::new();
    for m in mounts {
        let dest = Path::new(&m.destination);
        if !dest.is_absolute() {
            return Err(StartError::Config(format!(
                "mountPath {:?} is not an absolute path",
                m.destination
            )));
        }
        if std::fs::symlink_metadata(dest).is_err() {
            let made = if m.source.is_dir() {
                std::fs::create_dir_all(dest)
            } else {
                dest.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::File::create(dest).map(drop))
            };
            made.map_err(|e| {
                StartError::Config(format!(
                    "cannot make the mount point {} on the node: {e}",
                    dest.display()
                ))
            })?;
        }
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| {
                StartError::Config(format!("the path {} holds a NUL byte", p.display()))
            })
        };
        binds.push((c(&m.source)?, c(dest)?, m.read_only));
    }
    Ok(binds)
}

/// In the child, before exec: a private mount namespace with `binds` made in it.
fn private_mounts(binds: &[Bind]) -> std::io::Result<()> {
    use nix::libc;
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain system calls on valid C strings; nothing here allocates.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for (source, dest, read_only) in binds {
            check(libc::mount(
                source.as_ptr(),
                dest.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            if *read_only {
                check(libc::mount(
                    std::ptr::null(),
                    dest.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
        }
    }
    Ok(())
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
            host_ports: vec![],
            fake: Default::default(),
            image: None,
            handler: None,
            mounts: Vec::new(),
            stdio: Default::default(),
        }
    }

    fn options(dir: &Path) -> ProcessOptions {
        ProcessOptions {
            state_dir: dir.join("state"),
            logs: LogLimits::default(),
            memory_limits: true,
        }
    }

    /// The container's output as `kubectl logs` shows it.
    fn output(path: &Path) -> String {
        let mut reader = crate::logs::Reader::open(path, (0, 0)).unwrap();
        let mut renderer = crate::logs::Renderer::new(false);
        let mut out = Vec::new();
        reader
            .read_available(&mut |e| renderer.render(e, &mut out))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    async fn wait_exit(rt: &ProcessRuntime, id: &str) -> Exit {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let State::Exited { exit, .. } = rt.state(id) {
                return exit;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_file(path: &Path) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path:?} never appeared"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn runs_with_only_the_given_environment_and_logs_output() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let s = spec(
            dir.path(),
            "p/c/0",
            "sh",
            &["-c", "echo $GREETING; echo ${HOME:-nohome} >&2; exit 3"],
        );
        let started = rt.start(&s).unwrap();
        assert!(started.program.ends_with("sh"), "{started:?}");
        let exit = wait_exit(&rt, "p/c/0").await;
        assert_eq!(exit.code, 3);
        assert!(!exit.status_unknown);
        assert_eq!(output(&s.log_path), "hello\nnohome\n");
        let raw = std::fs::read_to_string(&s.log_path).unwrap();
        assert!(raw.contains(" stdout F hello\n"), "{raw}");
        assert!(raw.contains(" stderr F nohome\n"), "{raw}");
        // The exit is on disk: a new runtime over the same directory knows it.
        let again = ProcessRuntime::open(options(dir.path())).unwrap();
        assert_eq!(wait_exit(&again, "p/c/0").await.code, 3);
        again.remove("p/c/0");
        assert!(std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .next()
            .is_none());
    }

    #[tokio::test]
    async fn missing_programs_directories_and_held_ports_are_start_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let err = rt
            .start(&spec(dir.path(), "p/c/0", "no-such-program-xyz", &[]))
            .unwrap_err();
        assert_eq!(err, StartError::NotFound("no-such-program-xyz".into()));
        let mut s = spec(dir.path(), "p/c/1", "sh", &[]);
        s.working_dir = Some(dir.path().join("missing"));
        assert!(matches!(rt.start(&s), Err(StartError::WorkingDir(_))));
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let mut s = spec(dir.path(), "p/c/2", "sh", &[]);
        s.host_ports = vec![("127.0.0.1".into(), port)];
        let err = rt.start(&s).unwrap_err();
        assert!(matches!(err, StartError::PortInUse { port: p, .. } if p == port));
        assert!(
            err.to_string().starts_with(&format!(
                "hostPort {port} is already in use on the node (address 127.0.0.1): "
            )),
            "{err}"
        );
        assert!(rt.containers().is_empty());
    }

    #[tokio::test]
    async fn stop_terminates_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
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
        while state::start_ticks(child).is_some() {
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
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let ready = dir.path().join("ready");
        let script = format!(
            "trap '' TERM; touch {}; while true; do sleep 0.05; done",
            ready.display()
        );
        rt.start(&spec(dir.path(), "p/c/0", "sh", &["-c", &script]))
            .unwrap();
        wait_file(&ready).await;
        rt.stop("p/c/0", Duration::from_millis(300)).await;
        assert_eq!(wait_exit(&rt, "p/c/0").await.signal, Some(9));
    }

    /// An agent that dies leaves its containers running; the next one adopts them, drains
    /// what they wrote meanwhile, can stop them, and sees them end.
    #[test]
    fn a_new_runtime_adopts_running_containers_and_their_output() {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let script = format!(
            "echo before; while [ ! -e {} ]; do sleep 0.02; done; echo after; exec sleep 300",
            go.display()
        );
        let s = spec(dir.path(), "u/c/1", "sh", &["-c", &script]);
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pid = first.block_on(async {
            let rt = ProcessRuntime::open(options(dir.path())).unwrap();
            rt.start(&s).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while output(&s.log_path) != "before\n" {
                assert!(tokio::time::Instant::now() < deadline, "no output");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let pid = rt.lock()["u/c/1"].pgid.as_raw();
            pid
        });
        // The agent "dies": its tasks (and its ends of the pipes) are gone, the process stays.
        first.shutdown_background();
        std::fs::write(&go, "").unwrap();

        let second = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            let rt = ProcessRuntime::open(options(dir.path())).unwrap();
            assert_eq!(rt.containers(), ["u/c/1"]);
            assert!(matches!(rt.state("u/c/1"), State::Running { .. }));
            assert!(state::start_ticks(pid).is_some());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while output(&s.log_path) != "before\nafter\n" {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the output written while no agent ran was lost: {:?}",
                    output(&s.log_path)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            rt.stop("u/c/1", Duration::from_secs(5)).await;
            let exit = wait_exit(&rt, "u/c/1").await;
            assert!(exit.status_unknown, "{exit:?}");
            assert_eq!(exit.code, 137);
            assert_eq!(state::start_ticks(pid), None);
        });
    }

    #[tokio::test]
    async fn a_container_that_died_while_no_agent_ran_is_recorded_as_ended() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let pid = gone.id() as i32;
        gone.wait().unwrap();
        ContainerState {
            id: "u/c/3".into(),
            pid: Some(pid),
            start_ticks: Some(1),
            log_path: dir.path().join("3.log"),
            ..Default::default()
        }
        .save(&state_dir)
        .unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let exit = wait_exit(&rt, "u/c/3").await;
        assert!(exit.status_unknown);
        assert!(!exit.oom_killed);
    }

    #[tokio::test]
    async fn a_memory_hog_is_oom_killed_where_cgroups_allow() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        if let Err(why) = rt.memory_cgroups() {
            minik_testkit::cannot_run("memory cgroups the runtime can write", why);
            return;
        }
        let mut s = spec(
            dir.path(),
            "u/hog/1",
            "python3",
            &["-c", "a = []\nwhile True: a.append(bytearray(1 << 20))"],
        );
        s.memory_limit = Some(50 * 1024 * 1024);
        let started = rt.start(&s).unwrap();
        assert_eq!(started.limit_not_enforced, None);
        let cgroup = rt.lock()["u/hog/1"].cgroup.clone().unwrap();
        assert!(cgroup.path.exists());
        let exit = wait_exit(&rt, "u/hog/1").await;
        assert!(exit.oom_killed, "{exit:?}");
        assert_eq!(exit.code, 137);
        rt.remove("u/hog/1");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while cgroup.path.exists() {
            assert!(tokio::time::Instant::now() < deadline, "the cgroup stayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_scratch_runtime_leaves_no_directory_behind() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let state_dir = rt.state_dir().to_owned();
        rt.start(&spec(dir.path(), "u/c/1", "true", &[])).unwrap();
        assert!(state_dir.is_dir());
        wait_exit(&rt, "u/c/1").await;
        drop(rt);
        assert!(!state_dir.exists());
    }

    /// Reads an exec's output stream to its end.
    async fn read_all(reader: Option<super::super::ExecReader>) -> String {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        if let Some(mut r) = reader {
            r.read_to_end(&mut out).await.unwrap();
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn exec_runs_a_command_with_the_given_environment_and_directory() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        rt.start(&spec(dir.path(), "u/c/1", "sleep", &["300"]))
            .unwrap();
        let request = ExecRequest {
            command: [
                "sh",
                "-c",
                "echo $GREETING $(pwd); read x; echo got $x >&2; exit 4",
            ]
            .map(String::from)
            .to_vec(),
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: Some(dir.path().to_owned()),
            tty: false,
            stdin: true,
        };
        let mut process = rt.exec("u/c/1", &request).unwrap();
        let mut stdin = process.stdin.take().unwrap();
        stdin.write_all(b"line\n").await.unwrap();
        stdin.shutdown().await.unwrap();
        drop(stdin);
        let (out, err) = tokio::join!(
            read_all(process.stdout.take()),
            read_all(process.stderr.take())
        );
        assert_eq!(out, format!("hi {}\n", dir.path().display()));
        assert_eq!(err, "got line\n");
        assert_eq!(process.exit.await, Ok(4));
        assert!(process.control.resize(80, 24).is_err(), "no terminal");

        let missing = ExecRequest {
            command: vec!["no-such-command-xyz".into()],
            ..Default::default()
        };
        assert_eq!(
            rt.exec("u/c/1", &missing).unwrap_err(),
            "exec: \"no-such-command-xyz\": executable file not found in $PATH"
        );
        let elsewhere = ExecRequest {
            command: vec!["true".into()],
            working_dir: Some(dir.path().join("gone")),
            ..Default::default()
        };
        assert!(rt
            .exec("u/c/1", &elsewhere)
            .unwrap_err()
            .contains("does not exist"));
        rt.stop("u/c/1", Duration::from_secs(5)).await;
        wait_exit(&rt, "u/c/1").await;
        let err = rt.exec("u/c/1", &request).unwrap_err();
        assert_eq!(err, "the container is not running");
        assert!(rt.exec("u/other/1", &request).is_err());
    }

    #[tokio::test]
    async fn exec_with_a_tty_runs_on_a_terminal_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        rt.start(&spec(dir.path(), "u/c/1", "sleep", &["300"]))
            .unwrap();
        let request = ExecRequest {
            command: ["sh", "-c", "tty; echo to-stderr >&2; kill -KILL $$"]
                .map(String::from)
                .to_vec(),
            tty: true,
            ..Default::default()
        };
        let mut process = rt.exec("u/c/1", &request).unwrap();
        assert!(process.stdin.is_none() && process.stderr.is_none());
        process.control.resize(120, 40).unwrap();
        let out = read_all(process.stdout.take()).await;
        let mut lines = out.lines();
        let tty = lines.next().unwrap_or_default();
        assert!(tty.starts_with("/dev/pts/"), "{out:?}");
        assert_eq!(lines.next(), Some("to-stderr"), "{out:?}");
        assert_eq!(process.exit.await, Ok(128 + 9));
        // Killing an ended command does nothing.
        process.control.kill();
        rt.stop("u/c/1", Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn without_cgroups_a_limit_is_reported_as_not_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.memory_limits = false;
        let rt = ProcessRuntime::open(opts).unwrap();
        let mut s = spec(dir.path(), "u/c/1", "true", &[]);
        s.memory_limit = Some(1 << 20);
        let started = rt.start(&s).unwrap();
        assert_eq!(
            started.limit_not_enforced.as_deref(),
            Some("memory limits are turned off for this node")
        );
        assert_eq!(wait_exit(&rt, "u/c/1").await.code, 0);
    }

    fn with_stdio(
        mut spec: ContainerSpec,
        stdin: bool,
        stdin_once: bool,
        tty: bool,
    ) -> ContainerSpec {
        spec.stdio = super::super::Stdio {
            stdin,
            stdin_once,
            tty,
        };
        spec
    }

    const ECHO_LINES: &str = "while read line; do echo \"got $line\"; done; echo eof";
    const READ_LIMIT: Duration = Duration::from_secs(10);

    /// `stdin: true`: every attached client writes to the one stdin, which never ends (the
    /// container holds a writer of its own), and a client's output starts when it attached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attached_clients_share_a_stdin_that_never_ends() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let spec = with_stdio(
            spec(dir.path(), "u/c/1", "/bin/sh", &["-c", ECHO_LINES]),
            true,
            false,
            false,
        );
        rt.start(&spec).unwrap();
        for word in ["one", "two"] {
            let mut session = rt.attach("u/c/1", true).unwrap();
            let mut stdin = session.stdin.take().expect("a stdin");
            stdin
                .write_all(format!("{word}\n").as_bytes())
                .await
                .unwrap();
            let mut stdout = session.stdout.take().unwrap();
            let seen =
                minik_testkit::read_until(&mut stdout, &format!("got {word}"), READ_LIMIT).await;
            assert!(!seen.contains("got one") || word == "one", "{seen:?}");
            stdin.shutdown().await.unwrap();
        }
        // A client without -i gets no stdin; one that asks for it does.
        assert!(rt.attach("u/c/1", false).unwrap().stdin.is_none());
        assert!(
            matches!(rt.state("u/c/1"), State::Running { .. }),
            "the stdin ended"
        );
        rt.stop("u/c/1", Duration::from_secs(5)).await;
        assert!(!output(&spec.log_path).contains("eof"));
        rt.remove("u/c/1");
        assert!(!rt.stdin_fifo("u/c/1").exists());
    }

    /// `stdinOnce`: the stdin waits for its first client and ends when that client leaves;
    /// then no one can write to it any more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stdin_once_ends_when_its_first_client_leaves() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let script = format!("{ECHO_LINES}; /bin/sleep 30");
        let spec = with_stdio(
            spec(dir.path(), "u/c/1", "/bin/sh", &["-c", &script]),
            true,
            true,
            false,
        );
        rt.start(&spec).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !output(&spec.log_path).contains("eof"),
            "the stdin ended before a client came"
        );
        let mut watcher = rt.attach("u/c/1", false).unwrap();
        let mut session = rt.attach("u/c/1", true).unwrap();
        let mut stdin = session.stdin.take().expect("a stdin");
        stdin.write_all(b"one\n").await.unwrap();
        let mut stdout = session.stdout.take().unwrap();
        minik_testkit::read_until(&mut stdout, "got one", READ_LIMIT).await;
        stdin.shutdown().await.unwrap();
        // Another client sees the container read the end of its stdin.
        minik_testkit::read_until(watcher.stdout.as_mut().unwrap(), "eof", READ_LIMIT).await;
        assert!(rt.attach("u/c/1", true).unwrap().stdin.is_none());
        rt.stop("u/c/1", Duration::from_secs(5)).await;
        rt.remove("u/c/1");
    }

    /// `tty`: the container's stdin, stdout and stderr are one terminal the agent holds; the
    /// client types into it, resizes it, and everything comes back on stdout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_container_with_a_tty_is_attached_to_its_terminal() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::open(options(dir.path())).unwrap();
        let script = "/usr/bin/tty; read line; echo \"got $line\" >&2; /bin/stty size; exit 3";
        let spec = with_stdio(
            spec(dir.path(), "u/c/1", "/bin/sh", &["-c", script]),
            true,
            false,
            true,
        );
        rt.start(&spec).unwrap();
        let mut session = rt.attach("u/c/1", true).unwrap();
        assert!(session.stderr.is_none());
        session.control.resize(100, 30).unwrap();
        let mut stdin = session.stdin.take().expect("a stdin");
        stdin.write_all(b"typed\n").await.unwrap();
        let mut stdout = session.stdout.take().unwrap();
        minik_testkit::read_until(&mut stdout, "30 100", READ_LIMIT).await;
        assert_eq!(session.exit.await, Ok(0));
        assert_eq!(wait_exit(&rt, "u/c/1").await.code, 3);
        let log = output(&spec.log_path);
        assert!(log.contains("/dev/pts/"), "{log:?}");
        assert!(log.contains("got typed"), "{log:?}");
        rt.remove("u/c/1");
    }
}
