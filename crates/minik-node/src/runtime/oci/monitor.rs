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

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};

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
    /// Where the exit is recorded.
    pub exit_file: PathBuf,
    /// The container's memory cgroup directory, to tell an OOM kill.
    pub memory_cgroup: Option<PathBuf>,
}

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
            args.push(cgroup.clone().into());
        }
        args
    }

    fn parse(args: &[String]) -> Result<MonitorArgs, String> {
        match args {
            [root, id, bundle, exit_file, rest @ ..] if rest.len() <= 1 => Ok(MonitorArgs {
                root: root.into(),
                id: id.clone(),
                bundle: bundle.into(),
                exit_file: exit_file.into(),
                memory_cgroup: rest.first().map(PathBuf::from),
            }),
            _ => Err(
                "usage: minik internal oci-monitor ROOT ID BUNDLE EXIT_FILE [MEMORY_CGROUP]".into(),
            ),
        }
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
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map(|b| b.with_stdout(stdout).with_stderr(stderr))
        .and_then(|b| {
            b.with_executor(super::seccomp::Executor)
                .as_init(&args.bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        });
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            report(&mut status, &format!("error {}", chain(&e)));
            clean_failed(&args);
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
    let (code, signal) = wait_for(pid);
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
    let _ = container.refresh_status();
    let _ = container.delete(true);
    0
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
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return (128 + sig as i32, Some(sig as i32))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No child left: the container is gone without a status we saw.
            Err(_) => return (255, None),
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
        };
        let strings: Vec<String> = args
            .to_args()
            .into_iter()
            .skip(2)
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(MonitorArgs::parse(&strings).unwrap(), args);
        assert!(MonitorArgs::parse(&strings[..2]).is_err());
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
