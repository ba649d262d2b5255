//! The monitors' spawner: `minik internal oci-spawner STATE_DIR`, one small single-threaded process per
//! agent that forks a container monitor (`monitor.rs`) for each container, as Android's zygote
//! forks apps. A monitor forked from it shares its pages with it and with every other monitor
//! until it writes them: above all the binary's relocated data (the GNU_RELRO segment, ~0.9
//! MiB that the dynamic loader writes in every process it starts), which a monitor started
//! with exec would have to itself. The agent, a multi-threaded process, never forks into a
//! container; the spawner forks only while it is single-threaded.
//!
//! The agent talks to it over a `SOCK_SEQPACKET` socket on file descriptor 3: one message per
//! monitor, the monitor's arguments (JSON, what follows `minik internal oci-monitor`) with three
//! descriptors attached (the monitor's stdout, stderr and status pipe, its fds 1, 2 and 3); the
//! answer is `pid N TICKS` (the monitor's start time, read before it can be reaped) or `error
//! MESSAGE`. It ends when the agent's end closes. It reaps the monitors that end; those still
//! running when it goes outlive it, and a restarted agent adopts them as before. Each monitor names itself `minik internal oci-monitor ARGS...` in
//! `/proc/PID/cmdline`, as a monitor started with exec would.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

/// The descriptor of the socket to the agent.
const AGENT_FD: RawFd = 3;
/// The largest request (bytes of JSON).
const MAX_REQUEST: usize = 64 * 1024;
/// How long the agent waits for the spawner's answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// `minik internal oci-spawner`: serves the agent until its end of the socket closes. Must be
/// called before the process starts any thread.
pub fn main(args: &[String]) -> i32 {
    // The one argument names the agent served (its state directory), for `ps` and tools.
    if args.len() != 1 {
        eprintln!("usage: minik internal oci-spawner STATE_DIR (started by the node agent)");
        return 2;
    }
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    if unsafe { nix::libc::fcntl(AGENT_FD, nix::libc::F_GETFD) } < 0 {
        eprintln!("minik internal oci-spawner: no socket to the agent on fd 3");
        return 2;
    }
    // SAFETY: the agent passes fd 3 for this spawner alone; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(AGENT_FD) };
    super::shield_from_signals();
    let _ = nix::unistd::setsid();
    // Monitors that ended are reaped when SIGCHLD says so, never before their start time was
    // read and sent: until then the zombie holds the pid, so the agent's (pid, start time)
    // names that monitor and no other process.
    let Some(children) = super::relay::sigchld_fd() else {
        eprintln!("minik internal oci-spawner: cannot watch SIGCHLD");
        return 1;
    };
    loop {
        let ready = super::relay::readable(&[Some(socket.as_fd()), Some(children.as_fd())], true);
        if ready[1] {
            while let Ok(Some(_)) = children.read_signal() {}
            reap_ended();
        }
        if !ready[0] {
            continue;
        }
        let (args, fds) = match receive(&socket) {
            Ok(Some(request)) => request,
            // The agent is gone: so is the spawner (its monitors stay).
            Ok(None) => return 0,
            Err(e) => {
                answer(&socket, &format!("error {e}"));
                continue;
            }
        };
        // SAFETY: this process is single-threaded (it starts none), so the child may run any
        // code after the fork.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(socket);
                drop(children);
                std::process::exit(become_monitor(&args, fds));
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(fds);
                let ticks = crate::runtime::state::start_ticks(child.as_raw());
                let ticks = ticks.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                answer(&socket, &format!("pid {child} {ticks}"));
            }
            Err(e) => {
                drop(fds);
                answer(&socket, &format!("error cannot fork a monitor: {e}"));
            }
        }
    }
}

/// Reaps every monitor that has ended.
fn reap_ended() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// In the forked child: takes the request's descriptors as fds 1, 2 and 3, names itself, and
/// runs the monitor.
fn become_monitor(args: &[String], fds: [OwnedFd; 3]) -> i32 {
    // The spawner's blocked SIGCHLD is not the monitor's.
    let mut mask = nix::sys::signal::SigSet::empty();
    mask.add(nix::sys::signal::Signal::SIGCHLD);
    let _ = mask.thread_unblock();
    for (fd, target) in fds.iter().zip([1, 2, 3]) {
        // SAFETY: dup2 onto descriptors this process owns; the received ones are above 3.
        if unsafe { nix::libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return 1;
        }
    }
    drop(fds);
    name_process(args);
    super::monitor::main(args)
}

/// Points `/proc/self/cmdline` at `minik internal oci-monitor ARGS...` (what `ps`, operators
/// and the agent's tools read). prctl(PR_SET_MM_MAP) takes the process's whole memory map, read
/// from `/proc/self/stat` with only the arguments moved; unlike the single-field PR_SET_MM it
/// needs no capability. Where the kernel refuses, the monitor keeps the spawner's line.
fn name_process(args: &[String]) {
    let program = std::env::args_os()
        .next()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "minik".into());
    let mut line: Vec<u8> = Vec::new();
    for word in [program.as_str(), "internal", "oci-monitor"]
        .into_iter()
        .chain(args.iter().map(String::as_str))
    {
        line.extend_from_slice(word.as_bytes());
        line.push(0);
    }
    // The process's own memory for as long as it lives.
    let line: &'static [u8] = Box::leak(line.into_boxed_slice());
    let Some(mut map) = memory_map() else {
        return;
    };
    map.arg_start = line.as_ptr() as u64;
    map.arg_end = map.arg_start + line.len() as u64;
    // SAFETY: PR_SET_MM_MAP reads one prctl_mm_map of the given size from the pointer, which
    // lives for the call; every address in it is this process's own.
    unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_MM,
            nix::libc::PR_SET_MM_MAP,
            &map as *const MemoryMap,
            std::mem::size_of::<MemoryMap>(),
            0,
        );
    }
}

/// The kernel's `struct prctl_mm_map` (linux/prctl.h).
#[repr(C)]
#[derive(Debug, Default)]
struct MemoryMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    /// -1: the executable stays.
    exe_fd: u32,
}

/// This process's memory map as `/proc/self/stat` shows it (proc(5): fields 26-28, 45-51) and
/// its current program break.
fn memory_map() -> Option<MemoryMap> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields from the state (field 3) on: field n is at n - 3.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    // SAFETY: sbrk(0) only answers the current break.
    let brk = unsafe { nix::libc::sbrk(0) } as u64;
    Some(MemoryMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    })
}

/// One request: a monitor's arguments and its stdout, stderr and status pipe.
type Request = (Vec<String>, [OwnedFd; 3]);

/// One request; `None` at the socket's end.
fn receive(socket: &OwnedFd) -> Result<Option<Request>, String> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(|e| e.to_string())? {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: SCM_RIGHTS gave this process new descriptors nothing owns.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot read a request: {e}")),
        }
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let fds: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|v: Vec<OwnedFd>| format!("a request carries {} descriptors, not 3", v.len()))?;
    let args: Vec<String> = serde_json::from_slice(&buf[..n])
        .map_err(|e| format!("a request is not a JSON list of arguments: {e}"))?;
    Ok(Some((args, fds)))
}

fn answer(socket: &OwnedFd, line: &str) {
    let iov = [IoSlice::new(line.as_bytes())];
    let _ = sendmsg::<UnixAddr>(socket.as_raw_fd(), &iov, &[], MsgFlags::empty(), None);
}

/// The agent's side: starts the spawner when first needed (again if it died) and asks it for
/// monitors.
pub(crate) struct Spawner {
    helper: PathBuf,
    /// The oci runtime's state directory, the spawner's one argument.
    state_dir: PathBuf,
    running: Mutex<Option<Running>>,
}

struct Running {
    process: std::process::Child,
    socket: OwnedFd,
}

impl Drop for Running {
    /// Closing the socket ends the spawner; it is reaped here.
    fn drop(&mut self) {
        let _ =
            nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Spawner {
    /// The spawner of `helper` (the `minik` binary) for the runtime at `state_dir`, started
    /// when first asked.
    pub(crate) fn new(helper: &Path, state_dir: &Path) -> Spawner {
        Spawner {
            helper: helper.to_owned(),
            state_dir: state_dir.to_owned(),
            running: Mutex::new(None),
        }
    }

    /// Forks a monitor with `args` (what follows `minik internal oci-monitor`) and
    /// `stdio` as its fds 1, 2 and 3; answers its pid and start time. Blocks for a moment.
    pub(crate) fn spawn(
        &self,
        args: &[String],
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<Forked, String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let request = serde_json::to_vec(args).map_err(|e| e.to_string())?;
        // A spawner that died (or was killed) is started again, once.
        for attempt in 0..2 {
            if running
                .as_mut()
                .is_none_or(|r| !matches!(r.process.try_wait(), Ok(None)))
            {
                *running = None;
                *running = Some(self.start()?);
            }
            let Some(r) = running.as_ref() else {
                continue;
            };
            match ask(&r.socket, &request, stdio) {
                Ok(pid) => return Ok(pid),
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, "the monitors' spawner failed; starting it again");
                    *running = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err("the monitors' spawner cannot be reached".into())
    }

    fn start(&self) -> Result<Running, String> {
        use std::os::unix::process::CommandExt;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("cannot make the spawner's socket: {e}"))?;
        let fd = theirs.as_raw_fd();
        let mut command = std::process::Command::new(&self.helper);
        command
            .args(["internal", "oci-spawner"])
            .arg(&self.state_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        // SAFETY: between fork and exec only dup2, which is async-signal-safe, on a descriptor
        // opened before the fork.
        unsafe {
            command.pre_exec(move || {
                if nix::libc::dup2(fd, AGENT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = command
            .spawn()
            .map_err(|e| format!("cannot start the monitors' spawner: {e}"))?;
        drop(theirs);
        Ok(Running {
            process,
            socket: ours,
        })
    }
}

/// A monitor the spawner forked: its pid and start time (`/proc/PID/stat`'s field 22, read
/// before it could be reaped).
pub(crate) type Forked = (i32, Option<u64>);

/// Sends one request and reads its answer.
fn ask(socket: &OwnedFd, request: &[u8], stdio: [BorrowedFd<'_>; 3]) -> Result<Forked, String> {
    let fds: Vec<RawFd> = stdio.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [IoSlice::new(request)];
    sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| format!("cannot ask the monitors' spawner: {e}"))?;
    let timeout = nix::sys::time::TimeVal::new(ANSWER_LIMIT.as_secs() as _, 0);
    let _ =
        nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout);
    let mut buf = [0u8; 4096];
    let n = loop {
        match nix::sys::socket::recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("the monitors' spawner did not answer: {e}")),
        }
    };
    let line = String::from_utf8_lossy(&buf[..n]);
    match line.split_once(' ') {
        Some(("pid", rest)) => {
            let mut words = rest.split_whitespace();
            let pid = words.next().and_then(|p| p.parse().ok());
            let ticks = words.next().and_then(|t| t.parse().ok());
            pid.map(|pid| (pid, ticks))
                .ok_or_else(|| format!("the monitors' spawner said {line:?}"))
        }
        Some(("error", message)) => Err(message.to_owned()),
        _ if n == 0 => Err("the monitors' spawner ended".into()),
        _ => Err(format!("the monitors' spawner said {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test process renames itself, as a monitor does (harmless: nothing reads a test's
    /// command line).
    #[test]
    fn a_monitor_names_itself_with_its_arguments() {
        name_process(&["ROOT".into(), "ID".into()]);
        let line = std::fs::read("/proc/self/cmdline").unwrap();
        let words: Vec<String> = line
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(
            words[1..],
            ["internal", "oci-monitor", "ROOT", "ID", ""],
            "{words:?}"
        );
        assert_eq!(words[0], std::env::args().next().unwrap());
    }

    #[test]
    fn the_memory_map_is_read_whole() {
        let map = memory_map().expect("the map");
        assert!(map.start_code < map.end_code, "{map:?}");
        assert!(
            map.arg_start < map.arg_end && map.env_start < map.env_end,
            "{map:?}"
        );
    }
}
