//! The monitor's loop for a container with a terminal or a `stdinOnce` stdin (what conmon does
//! for CRI-O): it holds what must outlive any agent — the terminal's master, the stdin pipe's
//! keeper — and serves the agent's commands on the container's `control` pipe while it waits
//! for the container to end.
//!
//! - With a tty it copies the terminal's output to the container's stdout pipe (the agent's
//!   log and attached clients read it there) and the stdin pipe to the terminal.
//! - `resize W H` sets the terminal's size; `close-stdin` closes the container's stdin: the
//!   keeper goes (the container reads the end of its input), or, with a tty, the terminal's
//!   master (a hangup, as containerd's shim closes the console).
//!
//! Single-threaded: one poll(2) over the pipes, the master and a signalfd for SIGCHLD.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::monitor::{reap, set_nonblocking};

/// The most a control command may be.
const MAX_COMMAND: usize = 256;
/// How long input for a terminal that takes none may wait before it is dropped (the monitor
/// has other work: the container's output and its end).
const INPUT_LIMIT: Duration = Duration::from_secs(5);

/// What the loop serves.
pub(crate) struct Relay {
    /// The container's main process.
    pub pid: i32,
    /// The terminal's master (with a tty).
    pub master: Option<OwnedFd>,
    /// Where the terminal's output goes: the container's stdout pipe (with a tty).
    pub out: Option<File>,
    /// The stdin pipe, copied to the terminal (with a tty and stdin).
    pub stdin: Option<File>,
    /// The agent's commands.
    pub control: File,
    /// Holds a `stdinOnce` stdin open (without a tty).
    pub keeper: Option<File>,
    /// Reap every child, as the monitor (a subreaper) must, and wake on SIGCHLD; otherwise only
    /// `pid`, looked for every 100 ms (a test's process has other children and threads).
    pub reap_all: bool,
}

/// A command from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Resize(u16, u16),
    CloseStdin,
}

impl Command {
    pub(crate) fn parse(line: &str) -> Option<Command> {
        let mut words = line.split_whitespace();
        match (words.next()?, words.next(), words.next(), words.next()) {
            ("resize", Some(w), Some(h), None) => {
                Some(Command::Resize(w.parse().ok()?, h.parse().ok()?))
            }
            ("close-stdin", None, None, None) => Some(Command::CloseStdin),
            _ => None,
        }
    }
}

/// Serves `relay` until the container's process ended; answers how it ended.
pub(crate) fn run(mut relay: Relay) -> (i32, Option<i32>) {
    // Without a signalfd the loop looks for the end every 100 ms.
    let signals = relay.reap_all.then(sigchld_fd).flatten();
    if let Some(master) = &relay.master {
        let _ = set_nonblocking(master);
    }
    let mut commands = Vec::new();
    loop {
        if let Some(end) = relay.ended() {
            relay.copy_output();
            return end;
        }
        let ready = readable(
            &[
                signals.as_ref().map(|s| s.as_fd()),
                relay.master.as_ref().map(|m| m.as_fd()),
                relay
                    .stdin
                    .as_ref()
                    .filter(|_| relay.master.is_some())
                    .map(|s| s.as_fd()),
                Some(relay.control.as_fd()),
            ],
            signals.is_some(),
        );
        if ready[0] {
            if let Some(s) = &signals {
                while let Ok(Some(_)) = s.read_signal() {}
            }
        }
        if ready[1] {
            relay.copy_output();
        }
        if ready[2] {
            relay.copy_input();
        }
        if ready[3] {
            for command in read_commands(&mut relay.control, &mut commands) {
                relay.obey(command);
            }
        }
    }
}

/// SIGCHLD as a descriptor poll(2) can wait on (the signal is blocked for that).
pub(super) fn sigchld_fd() -> Option<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().ok()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
}

impl Relay {
    /// How the container's process ended, once it has.
    fn ended(&self) -> Option<(i32, Option<i32>)> {
        if self.reap_all {
            return reap(self.pid, true);
        }
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match waitpid(
            nix::unistd::Pid::from_raw(self.pid),
            Some(WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => Some((code, None)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some((128 + sig as i32, Some(sig as i32))),
            Ok(_) => None,
            Err(_) => Some((255, None)),
        }
    }

    /// Copies what the terminal has for the output pipe; a terminal whose every slave side is
    /// closed (the container and its children are gone) is let go.
    fn copy_output(&mut self) {
        let Some(master) = &self.master else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => {
                    self.master = None;
                    return;
                }
                Ok(n) => {
                    if let Some(out) = &mut self.out {
                        // A stalled agent stalls the container's output, as a full pipe would.
                        let _ = out.write_all(&buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    /// Copies what waits in the stdin pipe to the terminal.
    fn copy_input(&mut self) {
        let (Some(stdin), Some(master)) = (&mut self.stdin, &self.master) else {
            return;
        };
        let mut buf = [0u8; 4096];
        match stdin.read(&mut buf) {
            Ok(n) if n > 0 => write_patiently(master.as_fd(), &buf[..n]),
            _ => {}
        }
    }

    fn obey(&mut self, command: Command) {
        match command {
            Command::Resize(width, height) => {
                if let Some(master) = &self.master {
                    let _ = crate::runtime::attach::set_window_size(master.as_fd(), width, height);
                }
            }
            Command::CloseStdin => {
                self.keeper = None;
                if self.stdin.take().is_some() {
                    // The terminal's input closes with its master: the container's session
                    // is hung up. What it wrote last is copied first.
                    self.copy_output();
                    self.master = None;
                }
            }
        }
    }
}

/// Which of `fds` are readable (or closed), waiting until one is; with `forever` false, at
/// most 100 ms.
pub(super) fn readable(fds: &[Option<BorrowedFd<'_>>], forever: bool) -> Vec<bool> {
    let mut polled: Vec<PollFd<'_>> = Vec::with_capacity(fds.len());
    let mut slots = Vec::with_capacity(fds.len());
    for fd in fds {
        slots.push(fd.map(|fd| {
            polled.push(PollFd::new(fd, PollFlags::POLLIN));
            polled.len() - 1
        }));
    }
    let timeout = if forever {
        PollTimeout::NONE
    } else {
        PollTimeout::from(100u16)
    };
    if poll(&mut polled, timeout).is_err() {
        return vec![false; fds.len()];
    }
    slots
        .into_iter()
        .map(|slot| {
            slot.and_then(|i| polled[i].revents())
                .is_some_and(|r| !r.is_empty())
        })
        .collect()
}

/// Reads what the control pipe holds and answers the whole commands in it; a partial one
/// waits in `pending` for its end, one longer than a command can be is dropped.
fn read_commands(control: &mut File, pending: &mut Vec<u8>) -> Vec<Command> {
    let mut buf = [0u8; 1024];
    while let Ok(n) = control.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
    }
    let mut commands = Vec::new();
    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        if let Some(c) = std::str::from_utf8(&line).ok().and_then(Command::parse) {
            commands.push(c);
        }
    }
    if pending.len() > MAX_COMMAND {
        pending.clear();
    }
    commands
}

/// Writes `data` to the (non-blocking) terminal, waiting while its input is full, for at most
/// [`INPUT_LIMIT`]; what does not fit by then is dropped.
fn write_patiently(fd: BorrowedFd<'_>, mut data: &[u8]) {
    let deadline = Instant::now() + INPUT_LIMIT;
    while !data.is_empty() && Instant::now() < deadline {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN) => {
                let mut polled = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut polled, PollTimeout::from(100u16));
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_whole_and_bad_ones_dropped() {
        assert_eq!(
            Command::parse("resize 80 24"),
            Some(Command::Resize(80, 24))
        );
        assert_eq!(Command::parse("close-stdin"), Some(Command::CloseStdin));
        for bad in [
            "",
            "resize",
            "resize 80",
            "resize a b",
            "resize 80 24 1",
            "close-stdin now",
            "resize 70000 1",
        ] {
            assert_eq!(Command::parse(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        crate::runtime::attach::make_pipe(&path).unwrap();
        let mut control = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        set_nonblocking(&control).unwrap();
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(b"resize 100 30\nbogus\nclose-st").unwrap();
        let mut pending = Vec::new();
        assert_eq!(
            read_commands(&mut control, &mut pending),
            [Command::Resize(100, 30)]
        );
        writer.write_all(b"din\n").unwrap();
        assert_eq!(
            read_commands(&mut control, &mut pending),
            [Command::CloseStdin]
        );
        writer.write_all(&[b'x'; 600]).unwrap();
        assert!(read_commands(&mut control, &mut pending).is_empty());
        assert!(pending.is_empty());
    }

    /// The loop with a real terminal: the child's output reaches the output pipe, input from
    /// the stdin pipe reaches the child, a resize is seen by it, and its exit code comes back.
    #[test]
    fn a_terminal_is_relayed_until_its_process_ends() {
        let dir = tempfile::tempdir().unwrap();
        let stdin_path = dir.path().join("stdin");
        let control_path = dir.path().join("control");
        let out_path = dir.path().join("out");
        crate::runtime::attach::make_pipe(&stdin_path).unwrap();
        crate::runtime::attach::make_pipe(&control_path).unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = File::from(pty.slave);
        // The child reads one line, then prints it with its terminal's size and exits 7.
        let mut child = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "read line; echo \"got $line\"; sleep 0.2; stty size; exit 7",
            ])
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (stdin, _) = crate::runtime::attach::stdin_ends(&stdin_path, false).unwrap();
        set_nonblocking(&stdin).unwrap();
        let control = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&control_path)
            .unwrap();
        set_nonblocking(&control).unwrap();
        let mut feeder = std::fs::OpenOptions::new()
            .write(true)
            .open(&stdin_path)
            .unwrap();
        feeder.write_all(b"hello\n").unwrap();
        let mut tell = std::fs::OpenOptions::new()
            .write(true)
            .open(&control_path)
            .unwrap();
        tell.write_all(b"resize 123 45\n").unwrap();
        let relay = Relay {
            pid,
            master: Some(pty.master),
            out: Some(File::create(&out_path).unwrap()),
            stdin: Some(stdin),
            control,
            keeper: None,
            reap_all: false,
        };
        let (code, signal) = std::thread::spawn(move || run(relay)).join().unwrap();
        // The relay reaped it; the handle's own wait finds nothing more.
        let _ = child.try_wait();
        assert_eq!((code, signal), (7, None));
        let out = std::fs::read_to_string(&out_path).unwrap();
        assert!(out.contains("got hello"), "{out:?}");
        assert!(out.contains("45 123"), "{out:?}");
    }
}
