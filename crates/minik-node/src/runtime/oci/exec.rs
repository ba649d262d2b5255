//! `kubectl exec` in an oci container: `minik internal oci-exec`, a small single-threaded
//! process per command (the agent must not fork into a container from its tokio threads), which
//! joins the running container with youki's `libcontainer` (a "tenant": the container's
//! namespaces, cgroup, user and capabilities), stays the command's parent and exits with its
//! exit code (128 + the signal when a signal ended it).
//!
//! ```text
//! minik internal oci-exec ROOT ID [--tty] [--cwd DIR] -- COMMAND...
//! ```
//!
//! Without a tty the command inherits the helper's stdin, stdout and stderr (the agent's pipes).
//! With one, libcontainer makes a pseudo-terminal for the command (its controlling terminal)
//! and hands the master side to the helper over a console socket; the helper passes it on to
//! the agent. libcontainer (0.6 and later) opens that terminal after it joined the container's
//! mount namespace, from the container's own `/dev/pts` (as runc does): `tty` names it, and job
//! control, `^C` and resizes work.
//!
//! File descriptor 3 is a Unix socket to the agent: the agent first writes the
//! environment to set (JSON `[[name, value], ...]`, then shuts its side down); the helper
//! answers `ok PID\n` (with the terminal's master attached when there is one) once the command
//! runs, or `error MESSAGE\n`.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

use super::monitor::{chain, one_line};
use crate::runtime::process::{watch_exit, ExecHandle, Pty, PtyReader, PtyWriter};
use crate::runtime::state::file_stem;
use crate::runtime::{ExecProcess, ExecReader, ExecRequest, ExecWriter};

/// The descriptor of the socket to the agent.
const AGENT_FD: RawFd = 3;
/// How long the command may take to start.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The most environment the agent may send (bytes of JSON).
const MAX_ENV: u64 = 4 << 20;

/// The helper's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecArgs {
    /// libcontainer's state root.
    pub root: PathBuf,
    /// The OCI container id.
    pub id: String,
    pub tty: bool,
    /// Where the command runs; the container's working directory when `None`.
    pub cwd: Option<PathBuf>,
    pub command: Vec<String>,
}

impl ExecArgs {
    pub(crate) fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "internal".into(),
            "oci-exec".into(),
            self.root.clone().into(),
            self.id.clone().into(),
        ];
        if self.tty {
            args.push("--tty".into());
        }
        if let Some(cwd) = &self.cwd {
            args.push("--cwd".into());
            args.push(cwd.clone().into());
        }
        args.push("--".into());
        args.extend(self.command.iter().map(Into::into));
        args
    }

    fn parse(args: &[String]) -> Result<ExecArgs, String> {
        const USAGE: &str =
            "usage: minik internal oci-exec ROOT ID [--tty] [--cwd DIR] -- COMMAND...";
        let [root, id, rest @ ..] = args else {
            return Err(USAGE.into());
        };
        let mut parsed = ExecArgs {
            root: root.into(),
            id: id.clone(),
            tty: false,
            cwd: None,
            command: Vec::new(),
        };
        let mut rest = rest.iter();
        loop {
            match rest.next().map(String::as_str) {
                Some("--tty") => parsed.tty = true,
                Some("--cwd") => parsed.cwd = Some(rest.next().ok_or(USAGE)?.into()),
                Some("--") => break,
                _ => return Err(USAGE.into()),
            }
        }
        parsed.command = rest.cloned().collect();
        if parsed.command.is_empty() {
            return Err(USAGE.into());
        }
        Ok(parsed)
    }
}

/// Why the command did not start, and the helper's exit code for it.
struct Failure {
    message: String,
    code: i32,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

/// `minik internal oci-exec ...`: runs until the command ends; exits with its code. Must be
/// called before the process starts any thread.
pub fn main(args: &[String]) -> i32 {
    let mut agent = agent_socket();
    let args = match ExecArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            report(agent.as_ref(), &format!("error {e}"), None);
            return 2;
        }
    };
    super::shield_from_signals();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _ = nix::unistd::setsid();
    let env = match agent.as_mut().map(read_env).transpose() {
        Ok(env) => env.unwrap_or_default(),
        Err(e) => {
            report(agent.as_ref(), &format!("error {e}"), None);
            return 1;
        }
    };
    match join(&args, env) {
        Ok((pid, master)) => {
            report(agent.as_ref(), &format!("ok {pid}"), master.as_ref());
            drop(master);
            drop(agent);
            wait_for(pid)
        }
        Err(failure) => {
            report(
                agent.as_ref(),
                &format!("error {}", one_line(&failure.message)),
                None,
            );
            failure.code
        }
    }
}

/// Joins the container and starts the command: its pid, and the terminal's master with a tty.
fn join(args: &ExecArgs, env: Vec<(String, String)>) -> Result<(i32, Option<OwnedFd>), Failure> {
    let dir = args.root.join(&args.id);
    let not_running = || Failure::new("the container is not running");
    let container = Container::load(dir.clone()).map_err(|_| not_running())?;
    if !container.can_exec() {
        return Err(not_running());
    }
    let config = container.bundle().join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config).map_err(|e| {
        Failure::new(format!(
            "cannot read the container's {}: {e}",
            config.display()
        ))
    })?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Failure::new("the container's config.json has no process"))?;
    // The container's environment as it started, with the agent's on top.
    let mut vars: HashMap<String, String> = process
        .env()
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    vars.extend(env);
    let cwd = args.cwd.clone().unwrap_or_else(|| process.cwd().clone());
    let user = process.user();
    // Concurrent execs in one container take turns: each removes the sockets its own start
    // left in libcontainer's directory of the container.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("minik-exec.lock"))
        .map_err(|e| Failure::new(format!("cannot lock the container for exec: {e}")))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Failure::new(format!("cannot lock the container for exec: {e}")))?;
    let before = entries(&dir);
    // The console socket is bound by a name relative to the container's directory: absolute
    // paths there may be longer than a socket address allows.
    let console = if args.tty {
        std::env::set_current_dir(&dir)
            .map_err(|e| Failure::new(format!("cannot enter {}: {e}", dir.display())))?;
        let name = format!("minik-exec-{}.sock", std::process::id());
        let _ = std::fs::remove_file(&name);
        let listener = UnixListener::bind(&name)
            .map_err(|e| Failure::new(format!("cannot make the console socket: {e}")))?;
        Some((listener, dir.join(name)))
    } else {
        None
    };
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map(|b| {
            b.with_console_socket(console.as_ref().map(|(_, path)| path.clone()))
                .with_executor(super::seccomp::Executor)
        })
        .and_then(|b| {
            b.as_tenant()
                .with_container_args(args.command.clone())
                .with_env(vars)
                .with_cwd(Some(cwd))
                .with_user(Some(user.uid()))
                .with_group(Some(user.gid()))
                .with_additional_gids(user.additional_gids().clone().unwrap_or_default())
                .with_no_new_privs(process.no_new_privileges().unwrap_or(false))
                .with_detach(false)
                .build()
        });
    let master = match (&built, &console) {
        (Ok(_), Some((listener, _))) => Some(receive_master(listener)),
        _ => None,
    };
    if let Some((_, path)) = &console {
        let _ = std::fs::remove_file(path);
    }
    for name in entries(&dir).difference(&before) {
        if name.starts_with("tenant-") {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    let _ = std::env::set_current_dir("/");
    let pid = built.map_err(|e| failure_of(&args.command[0], &chain(&e)))?;
    let master = master
        .transpose()
        .map_err(|e| Failure::new(format!("cannot get the command's terminal: {e}")))?;
    Ok((pid.as_raw(), master))
}

/// The names in a directory.
fn entries(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The user's message for libcontainer's error, in runc's words where there are some.
fn failure_of(program: &str, error: &str) -> Failure {
    if error.contains("not found in $PATH") {
        Failure {
            message: format!("exec: {program:?}: executable file not found in $PATH"),
            code: 127,
        }
    } else if error.contains("does not have correct permissions") {
        Failure {
            message: format!("exec: {program:?}: permission denied"),
            code: 126,
        }
    } else if error.contains("IncorrectStatus") || error.contains("incorrect status") {
        Failure::new("the container is not running")
    } else {
        Failure::new(format!("cannot exec in the container: {error}"))
    }
}

/// Accepts libcontainer's connection on the console socket and takes the terminal's master.
pub(super) fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(START_LIMIT))?;
    let (_, fd) = receive(&stream)?;
    fd.ok_or_else(|| std::io::Error::other("the console socket carried no terminal"))
}

/// Reads one message to its end (a newline or the socket's end), with the descriptor passed
/// along with it, if any.
fn receive(stream: &UnixStream) -> std::io::Result<(String, Option<OwnedFd>)> {
    let mut text = Vec::new();
    let mut passed = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (n, fds) = {
            let msg = recvmsg::<UnixAddr>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    fds.extend(received);
                }
            }
            (msg.bytes, fds)
        };
        for fd in fds {
            // SAFETY: SCM_RIGHTS gave this process a new descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            if passed.is_none() {
                passed = Some(owned);
            }
        }
        text.extend_from_slice(&buf[..n]);
        if n == 0 || text.contains(&b'\n') || text.len() > 64 * 1024 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&text);
    Ok((line.lines().next().unwrap_or_default().to_owned(), passed))
}

/// The socket to the agent, when the helper was started with one.
fn agent_socket() -> Option<UnixStream> {
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    let open = unsafe { nix::libc::fcntl(AGENT_FD, nix::libc::F_GETFD) } >= 0;
    // SAFETY: the agent passes fd 3 for this helper alone; nothing else owns it.
    open.then(|| unsafe { UnixStream::from_raw_fd(AGENT_FD) })
}

/// The environment the agent sends.
fn read_env(agent: &mut UnixStream) -> Result<Vec<(String, String)>, String> {
    let _ = agent.set_read_timeout(Some(START_LIMIT));
    let mut json = Vec::new();
    agent
        .take(MAX_ENV)
        .read_to_end(&mut json)
        .map_err(|e| format!("cannot read the environment from the agent: {e}"))?;
    if json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&json).map_err(|e| format!("the agent sent a bad environment: {e}"))
}

/// Tells the agent how the start went, with a descriptor attached.
fn report(agent: Option<&UnixStream>, line: &str, fd: Option<&OwnedFd>) {
    let Some(agent) = agent else {
        // Started by hand: the message goes to stderr.
        if let Some(message) = line.strip_prefix("error ") {
            eprintln!("minik internal oci-exec: {message}");
        }
        return;
    };
    let text = format!("{line}\n");
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    let iov = [IoSlice::new(text.as_bytes())];
    match sendmsg::<UnixAddr>(agent.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None) {
        Ok(n) if n < text.len() => {
            let mut rest = agent;
            let _ = rest.write_all(&text.as_bytes()[n..]);
        }
        _ => {}
    }
}

/// Reaps children until `pid` ends; answers its exit code (128 + signal when killed).
fn wait_for(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Starts `request` in the running oci container `id` through the helper `helper` (the agent's
/// side). Blocks until the command runs or failed to start (at most half a minute).
pub(crate) fn start(
    helper: &Path,
    state_dir: &Path,
    id: &str,
    request: &ExecRequest,
) -> Result<ExecProcess, String> {
    if request.command.is_empty() {
        return Err("you must specify at least one command for the container".into());
    }
    let args = ExecArgs {
        root: state_dir.join("libcontainer"),
        id: file_stem(id),
        tty: request.tty,
        cwd: request.working_dir.clone(),
        command: request.command.clone(),
    };
    let (agent_end, helper_end) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("cannot make a socket for the exec helper: {e}"))?;
    let mut command = std::process::Command::new(helper);
    command.args(args.to_args()).env_clear().current_dir("/");
    let piped = std::process::Stdio::piped;
    let null = std::process::Stdio::null;
    if request.tty {
        command.stdin(null()).stdout(null()).stderr(null());
    } else {
        command
            .stdin(if request.stdin { piped() } else { null() })
            .stdout(piped())
            .stderr(piped());
    }
    let fd = helper_end.as_raw_fd();
    // SAFETY: between fork and exec only dup2 and fcntl, async-signal-safe, on a descriptor
    // opened before the fork.
    unsafe {
        command.pre_exec(move || {
            if fd == AGENT_FD {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if nix::libc::dup2(fd, AGENT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the exec helper: {e}"))?;
    drop(command);
    drop(helper_end);
    let mut agent = UnixStream::from(agent_end);
    let mut exchange = || -> std::io::Result<(String, Option<OwnedFd>)> {
        agent.set_read_timeout(Some(START_LIMIT))?;
        agent.set_write_timeout(Some(START_LIMIT))?;
        let env = serde_json::to_vec(&request.env).map_err(std::io::Error::other)?;
        agent.write_all(&env)?;
        agent.shutdown(std::net::Shutdown::Write)?;
        receive(&agent)
    };
    let (line, master) = exchange().map_err(|e| format!("the exec helper did not answer: {e}"))?;
    let pid: i32 = match line.split_once(' ') {
        Some(("ok", pid)) => pid
            .trim()
            .parse()
            .map_err(|_| format!("the exec helper said {line:?}"))?,
        Some(("error", message)) => return Err(message.trim().to_owned()),
        _ => {
            return Err(format!(
                "the exec helper ended before the command started ({line:?})"
            ))
        }
    };
    let pty = match (request.tty, master) {
        (true, Some(master)) => {
            Some(Pty::new(master).map_err(|e| format!("cannot use the command's terminal: {e}"))?)
        }
        (true, None) => return Err("the exec helper passed no terminal".into()),
        (false, _) => None,
    };
    let ended = Arc::new(AtomicBool::new(false));
    let control = Arc::new(ExecHandle {
        pgid: pid,
        ended: ended.clone(),
        pty: pty.clone(),
    });
    let (stdin, stdout, stderr): (Option<ExecWriter>, Option<ExecReader>, Option<ExecReader>) =
        match &pty {
            Some(pty) => (
                request
                    .stdin
                    .then(|| Box::pin(PtyWriter(pty.clone())) as ExecWriter),
                Some(Box::pin(PtyReader(pty.clone()))),
                None,
            ),
            None => (
                child.stdin.take().map(|w| Box::pin(w) as ExecWriter),
                child.stdout.take().map(|r| Box::pin(r) as ExecReader),
                child.stderr.take().map(|r| Box::pin(r) as ExecReader),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let args = ExecArgs {
            root: "/r".into(),
            id: "c1".into(),
            tty: true,
            cwd: Some("/work dir".into()),
            command: vec!["sh".into(), "-c".into(), "echo --tty".into()],
        };
        let strings: Vec<String> = args
            .to_args()
            .into_iter()
            .skip(2)
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(ExecArgs::parse(&strings).unwrap(), args);
        let plain = ExecArgs {
            tty: false,
            cwd: None,
            ..args
        };
        let strings: Vec<String> = plain
            .to_args()
            .into_iter()
            .skip(2)
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(ExecArgs::parse(&strings).unwrap(), plain);
        assert!(ExecArgs::parse(&strings[..3]).is_err(), "no command");
        assert!(ExecArgs::parse(&["/r".into(), "c".into(), "sh".into()]).is_err());
    }

    #[test]
    fn libcontainer_errors_become_runc_messages() {
        let f = failure_of(
            "nope",
            "failed to create container: exec process failed with error executable 'nope' not found in $PATH",
        );
        assert_eq!(
            f.message,
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(f.code, 127);
        let f = failure_of(
            "/etc/passwd",
            "executable '/etc/passwd' at path '\"/etc/passwd\"' does not have correct permissions",
        );
        assert_eq!(f.message, "exec: \"/etc/passwd\": permission denied");
        assert_eq!(f.code, 126);
        assert_eq!(failure_of("x", "boom").code, 1);
    }

    /// The status line and a descriptor cross the socket as the agent reads them.
    #[test]
    fn a_status_line_carries_a_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = OwnedFd::from(file);
        report(Some(&a), "ok 42", Some(&fd));
        drop(a);
        let (line, passed) = receive(&b).unwrap();
        assert_eq!(line, "ok 42");
        let passed = passed.expect("a descriptor");
        let target = std::fs::read_link(format!("/proc/self/fd/{}", passed.as_raw_fd())).unwrap();
        assert_eq!(target, Path::new("/dev/null"));
        let (a, b) = UnixStream::pair().unwrap();
        report(
            Some(&a),
            "error exec: \"nope\": executable file not found in $PATH",
            None,
        );
        drop(a);
        let (line, passed) = receive(&b).unwrap();
        assert_eq!(
            line,
            "error exec: \"nope\": executable file not found in $PATH"
        );
        assert!(passed.is_none());
    }
}
