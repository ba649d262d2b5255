//! The container monitor: `minik internal oci-monitor`, one small single-threaded process per
//! container (what conmon is to CRI-O, the shim to containerd). The agent is a multi-threaded
//! tokio process and must not fork into a container from there; the monitor is the `minik`
//! binary started again, which creates and starts the container with youki's `libcontainer`,
//! stays its parent (a child subreaper) and records how it ended in `exit.json`, so the exit code
//! is known even when no agent runs at that moment. It ignores the signals meant for its
//! terminal or process group; the agent stops a container by signalling the container itself.
//!
//! It tells the agent how the start went on file descriptor 3: `ok PID\n` or `error MESSAGE\n`.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use std::os::unix::net::UnixListener;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};

use crate::runtime::attach;
use crate::runtime::Stdio;

/// The descriptor the start is reported on.
pub(crate) const STATUS_FD: i32 = 3;

/// What the monitor writes when the container ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at_ns: u64,
}

/// The monitor's arguments, as the agent passes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MonitorArgs {
    /// libcontainer's state root.
    pub root: PathBuf,
    /// The OCI container id.
    pub id: String,
    pub bundle: PathBuf,
    /// Where the exit is recorded; its directory holds the `stdin` and `control` pipes.
    pub exit_file: PathBuf,
    /// The container's memory cgroup directory, to tell an OOM kill.
    pub memory_cgroup: Option<PathBuf>,
    /// The container's `stdin`, `stdinOnce` and `tty`.
    pub stdio: Stdio,
    /// The root to mount at `BUNDLE/rootfs`, in the monitor's own mount namespace.
    pub overlay: Option<Overlay>,
}

/// A container's root: the image's layers (base first) under its writable layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

const USAGE: &str = "usage: minik internal oci-monitor ROOT ID BUNDLE EXIT_FILE [--memory-cgroup DIR] [--stdin] [--stdin-once] [--tty] [--lower DIR]... [--upper DIR --work DIR]";

impl MonitorArgs {
    pub(crate) fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "internal".into(),
            "oci-monitor".into(),
            self.root.clone().into(),
            self.id.clone().into(),
            self.bundle.clone().into(),
            self.exit_file.clone().into(),
        ];
        if let Some(cgroup) = &self.memory_cgroup {
            args.push("--memory-cgroup".into());
            args.push(cgroup.clone().into());
        }
        for (on, flag) in [
            (self.stdio.stdin, "--stdin"),
            (self.stdio.stdin_once, "--stdin-once"),
            (self.stdio.tty, "--tty"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        if let Some(overlay) = &self.overlay {
            for lower in &overlay.lowers {
                args.push("--lower".into());
                args.push(lower.clone().into());
            }
            args.push("--upper".into());
            args.push(overlay.upper.clone().into());
            args.push("--work".into());
            args.push(overlay.work.clone().into());
        }
        args
    }

    /// The arguments after `minik internal oci-monitor` (as the spawner takes them).
    pub(crate) fn to_strings(&self) -> Vec<String> {
        self.to_args()
            .into_iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn parse(args: &[String]) -> Result<MonitorArgs, String> {
        let [root, id, bundle, exit_file, rest @ ..] = args else {
            return Err(USAGE.into());
        };
        let mut parsed = MonitorArgs {
            root: root.into(),
            id: id.clone(),
            bundle: bundle.into(),
            exit_file: exit_file.into(),
            memory_cgroup: None,
            stdio: Stdio::default(),
            overlay: None,
        };
        let (mut lowers, mut upper, mut work) = (Vec::new(), None, None);
        let mut rest = rest.iter();
        while let Some(arg) = rest.next() {
            let mut value = || rest.next().map(PathBuf::from).ok_or(USAGE);
            match arg.as_str() {
                "--memory-cgroup" => parsed.memory_cgroup = Some(value()?),
                "--stdin" => parsed.stdio.stdin = true,
                "--stdin-once" => parsed.stdio.stdin_once = true,
                "--tty" => parsed.stdio.tty = true,
                "--lower" => lowers.push(value()?),
                "--upper" => upper = Some(value()?),
                "--work" => work = Some(value()?),
                _ => return Err(USAGE.into()),
            }
        }
        parsed.overlay = match (lowers.is_empty(), upper, work) {
            (true, None, None) => None,
            (false, Some(upper), Some(work)) => Some(Overlay {
                lowers,
                upper,
                work,
            }),
            _ => return Err(USAGE.into()),
        };
        Ok(parsed)
    }

    /// The container's directory: its pipes are there.
    fn dir(&self) -> &Path {
        self.exit_file.parent().unwrap_or(Path::new("."))
    }
}

/// `minik internal oci-monitor ...`: runs until the container ends. Must be called before the
/// process starts any thread.
pub fn main(args: &[String]) -> i32 {
    let mut status = status_pipe();
    let args = match MonitorArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            report(&mut status, &format!("error {e}"));
            return 2;
        }
    };
    super::shield_from_signals();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _ = nix::unistd::setsid();
    let stdio = (dup(1), dup(2));
    let (Some(stdout), Some(stderr)) = stdio else {
        report(&mut status, "error cannot duplicate the output descriptors");
        return 1;
    };
    if let Some(overlay) = &args.overlay {
        if let Err(e) = private_root(overlay, &args.bundle.join("rootfs")) {
            report(&mut status, &format!("error {e}"));
            return 1;
        }
    }
    let wiring = match Wiring::open(&args) {
        Ok(w) => w,
        Err(e) => {
            report(&mut status, &format!("error {e}"));
            return 1;
        }
    };
    // With a terminal the container's output is the terminal's, which the monitor copies to
    // stdout; without, the container writes the output pipes itself.
    let relayed_out = args.stdio.tty.then(|| stdout.try_clone().ok()).flatten();
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map(|b| {
            let b = b.with_console_socket(wiring.console.as_ref().map(|(_, path)| path.clone()));
            let b = if args.stdio.tty {
                b
            } else {
                b.with_stdout(stdout).with_stderr(stderr)
            };
            match wiring
                .container_stdin
                .as_ref()
                .and_then(|f| f.try_clone().ok())
            {
                Some(stdin) => b.with_stdin(stdin),
                None => b,
            }
        })
        .and_then(|b| {
            b.with_executor(super::seccomp::Executor)
                .as_init(&args.bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        });
    let master = match (&built, &wiring.console) {
        (Ok(_), Some((listener, _))) => Some(super::exec::receive_master(listener)),
        _ => None,
    };
    if let Some((_, path)) = &wiring.console {
        let _ = std::fs::remove_file(path);
    }
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            report(&mut status, &format!("error {}", chain(&e)));
            clean_failed(&args);
            return 1;
        }
    };
    let master = match master.transpose() {
        Ok(m) => m,
        Err(e) => {
            report(
                &mut status,
                &format!("error cannot get the container's terminal: {e}"),
            );
            let _ = container.delete(true);
            return 1;
        }
    };
    if let Err(e) = container.start() {
        report(&mut status, &format!("error {}", chain(&e)));
        let _ = container.delete(true);
        return 1;
    }
    let Some(pid) = container.pid() else {
        report(&mut status, "error the container has no pid");
        let _ = container.delete(true);
        return 1;
    };
    let pid = pid.as_raw();
    report(&mut status, &format!("ok {pid}"));
    drop(status);
    // The container has its own descriptors; the monitor writes nothing more to its log.
    quiet_stdio();
    let (code, signal) = match wiring.control {
        Some(control) => super::relay::run(super::relay::Relay {
            pid,
            master,
            out: relayed_out.map(std::fs::File::from),
            stdin: wiring.relayed_stdin,
            control,
            keeper: wiring.keeper,
            reap_all: true,
        }),
        None => wait_for(pid),
    };
    let oom_killed = args
        .memory_cgroup
        .as_deref()
        .is_some_and(|dir| oom_kills(dir) > 0);
    let record = ExitRecord {
        code,
        signal,
        oom_killed,
        finished_at_ns: crate::runtime::nanos(SystemTime::now()),
    };
    let _ = write_atomically(
        &args.exit_file,
        &serde_json::to_vec(&record).unwrap_or_default(),
    );
    // What the container's process left in its cgroup goes with it. In a PID namespace of its
    // own the kernel has done so already; with `hostPID` nothing else would.
    if let Ok(kill) = libcontainer::signal::Signal::try_from(nix::libc::SIGKILL) {
        let _ = container.kill(kill, true);
    }
    let _ = container.refresh_status();
    let _ = container.delete(true);
    0
}

/// Mounts the container's root at `target` in a mount namespace of the monitor's own, which
/// the container's is then copied from: the node's mount table does not grow with its
/// containers (libcontainer reads it many times for each container it creates, and each read
/// costs in proportion to it). The mount goes with the namespace when the container and its
/// monitor are gone.
fn private_root(overlay: &Overlay, target: &Path) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("cannot make the monitor's mount namespace: {e}"))?;
    // Nothing mounted here reaches the node; the node's mounts still reach here.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("cannot make the monitor's mounts its own: {e}"))?;
    super::rootfs::mount_overlay(&overlay.lowers, &overlay.upper, &overlay.work, target)
}

/// The monitor's side of the container's stdin and terminal, opened before the container is
/// made.
struct Wiring {
    /// The console socket libcontainer hands the terminal's master over (with a tty): bound in
    /// the container's directory by a relative name, as absolute paths may be longer than a
    /// socket address allows.
    console: Option<(UnixListener, PathBuf)>,
    /// What the container reads as stdin, without a tty.
    container_stdin: Option<std::fs::File>,
    /// Holds a `stdinOnce` stdin open until the agent says to close it.
    keeper: Option<std::fs::File>,
    /// The stdin pipe the monitor copies to the terminal (with a tty).
    relayed_stdin: Option<std::fs::File>,
    /// The agent's commands (with a tty or `stdinOnce`); without it the monitor only waits.
    control: Option<std::fs::File>,
}

impl Wiring {
    fn open(args: &MonitorArgs) -> Result<Wiring, String> {
        let dir = args.dir();
        let stdio = args.stdio;
        let mut wiring = Wiring {
            console: None,
            container_stdin: None,
            keeper: None,
            relayed_stdin: None,
            control: None,
        };
        let stdin_path = dir.join("stdin");
        if stdio.tty {
            std::env::set_current_dir(dir)
                .map_err(|e| format!("cannot enter {}: {e}", dir.display()))?;
            let name = "console.sock";
            let _ = std::fs::remove_file(name);
            let listener = UnixListener::bind(name)
                .map_err(|e| format!("cannot make the console socket: {e}"))?;
            let _ = std::env::set_current_dir("/");
            wiring.console = Some((listener, dir.join(name)));
            if stdio.stdin {
                let (pipe, _) = attach::stdin_ends(&stdin_path, false)
                    .map_err(|e| format!("cannot open the stdin pipe: {e}"))?;
                set_nonblocking(&pipe)?;
                wiring.relayed_stdin = Some(pipe);
            }
        } else if stdio.stdin {
            let (end, keeper) = attach::stdin_ends(&stdin_path, stdio.stdin_once)
                .map_err(|e| format!("cannot open the stdin pipe: {e}"))?;
            wiring.container_stdin = Some(end);
            wiring.keeper = keeper;
        }
        if stdio.tty || stdio.stdin_once {
            let control = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join("control"))
                .map_err(|e| format!("cannot open the control pipe: {e}"))?;
            set_nonblocking(&control)?;
            wiring.control = Some(control);
        }
        Ok(wiring)
    }
}

pub(super) fn set_nonblocking(fd: &impl std::os::fd::AsFd) -> Result<(), String> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The status pipe (fd 3), or a sink when the monitor was started without one.
fn status_pipe() -> Option<std::fs::File> {
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    let open = unsafe { nix::libc::fcntl(STATUS_FD, nix::libc::F_GETFD) } >= 0;
    // SAFETY: the agent passes fd 3 for this monitor alone; nothing else owns it.
    open.then(|| unsafe { std::fs::File::from_raw_fd(STATUS_FD) })
}

fn report(status: &mut Option<std::fs::File>, line: &str) {
    if let Some(f) = status {
        let _ = writeln!(f, "{line}");
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes, on one line (libcontainer's own messages are terse: "oci spec
/// error"; the cause says which field).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    one_line(&text)
}

fn dup(fd: i32) -> Option<OwnedFd> {
    // SAFETY: fd 1 and 2 are the monitor's own; dup returns a new descriptor we then own.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok()
}

/// Points stdout and stderr at /dev/null.
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        for fd in [1, 2] {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            let _ = unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Reaps children (the container's and orphans handed to this subreaper) until `pid` ends;
/// answers its exit code (128 + signal when killed) and signal.
fn wait_for(pid: i32) -> (i32, Option<i32>) {
    loop {
        match reap(pid, false) {
            Some(end) => return end,
            None => continue,
        }
    }
}

/// Reaps what has ended (waits for one child unless `nohang`); answers how `pid` ended once it
/// has: its exit code (128 + signal when killed) and signal.
pub(super) fn reap(pid: i32, nohang: bool) -> Option<(i32, Option<i32>)> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let flags = nohang.then_some(WaitPidFlag::WNOHANG);
    loop {
        match waitpid(Pid::from_raw(-1), flags) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Some((code, None)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Some((128 + sig as i32, Some(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) if nohang => continue,
            Ok(_) => return None,
            Err(nix::errno::Errno::EINTR) => continue,
            // No child left: the container is gone without a status we saw.
            Err(_) => return Some((255, None)),
        }
    }
}

/// How many times the kernel killed a process of the cgroup for memory.
fn oom_kills(dir: &Path) -> u64 {
    let v2 = std::fs::read_to_string(dir.join("memory.events"));
    let text = v2.or_else(|_| std::fs::read_to_string(dir.join("memory.oom_control")));
    text.ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// Removes libcontainer's state of a container whose creation failed.
fn clean_failed(args: &MonitorArgs) {
    let _ = std::fs::remove_dir_all(args.root.join(&args.id));
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let args = MonitorArgs {
            root: "/r".into(),
            id: "c1".into(),
            bundle: "/b".into(),
            exit_file: "/b/exit.json".into(),
            memory_cgroup: Some("/sys/fs/cgroup/memory/x".into()),
            stdio: Stdio {
                stdin: true,
                stdin_once: true,
                tty: true,
            },
            overlay: Some(Overlay {
                lowers: vec!["/l/1".into(), "/l/2".into()],
                upper: "/c/upper".into(),
                work: "/c/work".into(),
            }),
        };
        let strings: Vec<String> = args
            .to_args()
            .into_iter()
            .skip(2)
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(MonitorArgs::parse(&strings).unwrap(), args);
        assert_eq!(
            MonitorArgs::parse(&strings[..4]).unwrap().stdio,
            Stdio::default()
        );
        assert!(MonitorArgs::parse(&strings[..2]).is_err());
        assert!(MonitorArgs::parse(&[&strings[..4], &["--what".to_owned()]].concat()).is_err());
    }

    #[test]
    fn oom_kills_are_read_from_either_cgroup_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(dir.path()), 0);
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), 2);
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), 1);
    }
}
