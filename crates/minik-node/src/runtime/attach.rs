//! `kubectl attach`, the part both runtimes share. A container's output reaches its log through
//! the agent's pumps; each pump also offers what it copies on the container's [`Tap`], so an
//! attached client gets the output from the moment it attached (what came before is in the
//! log, as with the kubelet). Only while a client is attached is anything copied for it.
//!
//! The input side belongs to each runtime (a named pipe the container reads, or its terminal);
//! the runtime hands [`session`] a writer to it and what closes it. The session never stops
//! the container: its end closes the container's stdin when the container has `stdinOnce`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use super::process::{Pty, PtyWriter};
use super::{ExecControl, ExecProcess, ExecReader, ExecWriter, Exit, Stdio};
use crate::logs::Stream;

/// How many chunks of output an attached client may fall behind before it misses some (the
/// container never waits for a client).
const TAP_DEPTH: usize = 256;
/// How much output waits between the tap and one client's stream.
const CLIENT_BUFFER: usize = 64 * 1024;

/// Where a container's output is offered to attached clients.
pub(crate) type Tap = broadcast::Sender<(Stream, Bytes)>;

/// A tap with no client yet.
pub(crate) fn tap() -> Tap {
    broadcast::channel(TAP_DEPTH).0
}

/// Offers one chunk of a container's output to the attached clients, if there are any.
pub(crate) fn offer(tap: &Tap, stream: Stream, data: &[u8]) {
    if tap.receiver_count() > 0 {
        let _ = tap.send((stream, Bytes::copy_from_slice(data)));
    }
}

/// Sets the size of the terminal `fd` (either side of a pseudo-terminal); its foreground
/// process group gets SIGWINCH.
pub(crate) fn set_window_size(
    fd: std::os::fd::BorrowedFd<'_>,
    width: u16,
    height: u16,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let size = nix::libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives for the call.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    if r < 0 {
        return Err(format!(
            "cannot resize the terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Resizes a container's terminal.
pub(crate) type Resize = Box<dyn Fn(u16, u16) -> Result<(), String> + Send + Sync>;

/// Makes a named pipe at `path`, replacing what is there: the stdin of a container with
/// `stdin` (attached clients write to it; once it is removed the container's stdin is closed
/// for good, no new client can open it), or an oci monitor's control pipe.
pub(crate) fn make_pipe(path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(std::io::Error::from)
}

/// Opens the container's end of its stdin pipe. Without `once` it is opened read-write: the
/// container holds a writer itself, so its stdin never ends (Kubernetes: "will never receive
/// an EOF"). With `once` it is read-only, and the second file returned is the keeper: a writer
/// that holds the pipe open (reads wait for input) until it is dropped at the close.
pub(crate) fn stdin_ends(path: &Path, once: bool) -> std::io::Result<(File, Option<File>)> {
    if !once {
        let end = OpenOptions::new().read(true).write(true).open(path)?;
        return Ok((end, None));
    }
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let keeper = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    // The container's reads wait for input.
    fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_RDONLY)).map_err(std::io::Error::from)?;
    Ok((reader, Some(keeper)))
}

/// A writer to a container's stdin pipe; `None` once the pipe is closed (removed) or nothing
/// reads it any more.
fn stdin_writer(path: &Path) -> Result<Option<ExecWriter>, String> {
    match tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
        Ok(sender) => Ok(Some(Box::pin(sender))),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENXIO) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("cannot open the container's stdin: {e}")),
    }
}

/// Writes one command to an oci container's monitor (its `control` pipe): `resize W H` or
/// `close-stdin`.
pub(crate) fn tell_monitor(control: &Path, line: &str) -> Result<(), String> {
    use std::io::Write;
    let mut pipe = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(control)
        .map_err(|e| format!("cannot reach the container's monitor: {e}"))?;
    pipe.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("cannot reach the container's monitor: {e}"))
}

/// Where an attached client's input goes.
pub(crate) enum Input {
    /// The container was started without stdin (or its input cannot be reached any more: a
    /// process-runtime terminal whose agent restarted).
    None,
    /// A named pipe the container reads (the process runtime without a tty); the keeper holds
    /// it open for a `stdinOnce` container until the first client leaves.
    Pipe {
        path: PathBuf,
        keeper: Mutex<Option<File>>,
    },
    /// The container's terminal, held by the agent (the process runtime with a tty); `group`
    /// is the container's process group, hung up when a `stdinOnce` stdin closes.
    Terminal {
        pty: Arc<Pty>,
        group: i32,
        closed: AtomicBool,
    },
    /// An oci container's monitor, which holds its stdin and terminal: `dir/stdin` is the pipe
    /// it (or the container) reads, `dir/control` takes resizes and the close.
    Monitor { dir: PathBuf },
}

/// What a runtime keeps of a container for attach sessions.
pub(crate) struct Attachable {
    pub tap: Tap,
    pub stdio: Stdio,
    pub input: Input,
}

impl Attachable {
    /// Output only: a container without stdin (or whose input is lost).
    pub(crate) fn output_only(stdio: Stdio) -> Arc<Attachable> {
        Arc::new(Attachable {
            tap: tap(),
            stdio,
            input: Input::None,
        })
    }

    /// A session on this container, whose end `exit` announces; with `stdin`, the client
    /// writes to the container's stdin when it has one still open.
    pub(crate) fn attach(
        self: &Arc<Self>,
        exit: watch::Receiver<Option<Exit>>,
        stdin: bool,
    ) -> Result<ExecProcess, String> {
        let wanted = stdin && self.stdio.stdin;
        let writer: Option<ExecWriter> = match &self.input {
            _ if !wanted => None,
            Input::None => None,
            Input::Pipe { path, .. } => stdin_writer(path)?,
            Input::Monitor { dir } => stdin_writer(&dir.join("stdin"))?,
            Input::Terminal { pty, closed, .. } => (!closed.load(Ordering::SeqCst))
                .then(|| Box::pin(PtyWriter(pty.clone())) as ExecWriter),
        };
        let close_stdin = (writer.is_some() && self.stdio.stdin_once).then(|| {
            let this = self.clone();
            Box::new(move || this.close_stdin()) as Box<dyn FnOnce() + Send>
        });
        let resize: Option<Resize> = match &self.input {
            _ if !self.stdio.tty => None,
            Input::Terminal { pty, .. } => {
                let pty = pty.clone();
                Some(Box::new(move |w, h| pty.resize(w, h)))
            }
            Input::Monitor { dir } => {
                let control = dir.join("control");
                Some(Box::new(move |w, h| {
                    tell_monitor(&control, &format!("resize {w} {h}"))
                }))
            }
            _ => None,
        };
        Ok(session(Session {
            tap: self.tap.clone(),
            exit,
            tty: self.stdio.tty,
            stdin: writer,
            close_stdin,
            resize,
        }))
    }

    /// Closes the container's stdin for good (`stdinOnce`, its first client left): no new
    /// client can open it, and the container reads its end.
    pub(crate) fn close_stdin(&self) {
        match &self.input {
            Input::None => {}
            Input::Pipe { path, keeper } => {
                let _ = std::fs::remove_file(path);
                keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            Input::Terminal { group, closed, .. } => {
                // What closing a terminal's input does to its session: a hangup.
                if !closed.swap(true, Ordering::SeqCst) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(*group),
                        nix::sys::signal::Signal::SIGHUP,
                    );
                }
            }
            Input::Monitor { dir } => {
                let _ = std::fs::remove_file(dir.join("stdin"));
                if let Err(e) = tell_monitor(&dir.join("control"), "close-stdin") {
                    tracing::debug!(error = %e, "cannot close a container's stdin");
                }
            }
        }
    }
}

/// What a runtime gives one attach session.
pub(crate) struct Session {
    /// The container's output.
    pub tap: Tap,
    /// Set once the container ended: the session's output ends there.
    pub exit: watch::Receiver<Option<Exit>>,
    /// The container runs on a terminal: its output is all on stdout.
    pub tty: bool,
    /// A writer to the container's stdin, when the client asked for it and the container has
    /// one still open.
    pub stdin: Option<ExecWriter>,
    /// Run once when the client's stdin ends or the session does, if `stdin` was given
    /// (`stdinOnce`: the container's stdin is closed).
    pub close_stdin: Option<Box<dyn FnOnce() + Send>>,
    /// Resizes the container's terminal (with a tty).
    pub resize: Option<Resize>,
}

/// The session as the exec tunnel drives it ([`crate::exec::run`]): output from the tap until
/// the container ended, its stdin, its terminal's size, and an "exit" that is the container's
/// end (an attach reports success: the container's own code is in its status).
pub(crate) fn session(s: Session) -> ExecProcess {
    let (stdout, stderr) = outputs(&s.tap, s.tty, s.exit.clone());
    let stdin = s.stdin.map(|inner| {
        Box::pin(StdinWriter {
            inner: Some(inner),
            on_close: s.close_stdin,
        }) as ExecWriter
    });
    let mut exit = s.exit;
    ExecProcess {
        stdin,
        stdout: Some(stdout),
        stderr,
        control: Arc::new(Control { resize: s.resize }),
        exit: Box::pin(async move {
            let _ = exit.wait_for(Option::is_some).await;
            Ok(0)
        }),
    }
}

/// Readers of the container's stdout and (without a tty) stderr, fed from the tap until the
/// container ended and what it wrote before is passed on.
fn outputs(
    tap: &Tap,
    tty: bool,
    mut exit: watch::Receiver<Option<Exit>>,
) -> (ExecReader, Option<ExecReader>) {
    let mut rx = tap.subscribe();
    let (out_r, mut out_w) = tokio::io::duplex(CLIENT_BUFFER);
    let (err_r, err_w) = tokio::io::duplex(CLIENT_BUFFER);
    let mut err_w = (!tty).then_some(err_w);
    tokio::spawn(async move {
        // What the pumps offered before the exit was announced is all in the channel by then
        // (the exit is sent after the pumps ended).
        let mut ended = false;
        loop {
            let next = if ended {
                match rx.try_recv() {
                    Ok(item) => Ok(item),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    got = rx.recv() => got,
                    _ = exit.wait_for(Option::is_some) => {
                        ended = true;
                        continue;
                    }
                }
            };
            match next {
                Ok((stream, data)) => {
                    let writer = match stream {
                        Stream::Stderr if err_w.is_some() => err_w.as_mut(),
                        _ => Some(&mut out_w),
                    };
                    if let Some(w) = writer {
                        // A client that went away gets nothing more; the others go on.
                        let _ = w.write_all(&data).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "an attached client fell behind the container's output"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let stderr = (!tty).then(|| Box::pin(err_r) as ExecReader);
    (Box::pin(out_r), stderr)
}

struct Control {
    resize: Option<Resize>,
}

impl ExecControl for Control {
    fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        match &self.resize {
            Some(resize) => resize(width, height),
            None => Err("the container has no terminal to resize".into()),
        }
    }

    /// The session ended first: the container is not the session's, it goes on.
    fn kill(&self) {}
}

/// The container's stdin for one session; closing it (or dropping it) lets go of the writer,
/// then runs the close hook.
struct StdinWriter {
    inner: Option<ExecWriter>,
    on_close: Option<Box<dyn FnOnce() + Send>>,
}

impl StdinWriter {
    fn closed(&mut self) {
        self.inner = None;
        if let Some(close) = self.on_close.take() {
            close();
        }
    }

    fn inner(&mut self) -> std::io::Result<Pin<&mut (dyn AsyncWrite + Send)>> {
        match &mut self.inner {
            Some(w) => Ok(w.as_mut()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl AsyncWrite for StdinWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner() {
            Ok(w) => w.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner() {
            Ok(w) => w.poll_flush(cx),
            Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let done = match self.inner() {
            Ok(w) => std::task::ready!(w.poll_shutdown(cx)),
            Err(_) => Ok(()),
        };
        self.closed();
        Poll::Ready(done)
    }
}

impl Drop for StdinWriter {
    fn drop(&mut self) {
        self.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_session_gets_output_from_when_it_attached_until_the_container_ended() {
        let tap = tap();
        offer(&tap, Stream::Stdout, b"before\n");
        let (exit_tx, exit_rx) = watch::channel(None);
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = closed.clone();
        let (stdin_w, mut stdin_r) = tokio::io::duplex(64);
        let mut process = session(Session {
            tap: tap.clone(),
            exit: exit_rx,
            tty: false,
            stdin: Some(Box::pin(stdin_w)),
            close_stdin: Some(Box::new(move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst)
            })),
            resize: None,
        });
        offer(&tap, Stream::Stdout, b"out\n");
        offer(&tap, Stream::Stderr, b"err\n");
        let mut stdin = process.stdin.take().unwrap();
        stdin.write_all(b"typed").await.unwrap();
        let mut typed = [0u8; 5];
        stdin_r.read_exact(&mut typed).await.unwrap();
        assert_eq!(&typed, b"typed");
        assert!(!closed.load(std::sync::atomic::Ordering::SeqCst));
        stdin.shutdown().await.unwrap();
        assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
        offer(&tap, Stream::Stdout, b"last\n");
        exit_tx.send_replace(Some(Exit::code(3, None, SystemTime::now())));
        assert_eq!(process.exit.await, Ok(0));
        let mut out = String::new();
        process
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "out\nlast\n");
        let mut err = String::new();
        process
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert_eq!(err, "err\n");
        assert!(process.control.resize(80, 24).is_err());
    }

    #[tokio::test]
    async fn with_a_tty_everything_is_stdout_and_dropping_stdin_closes_it() {
        let tap = tap();
        let (_exit_tx, exit_rx) = watch::channel(None);
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = closed.clone();
        let (stdin_w, _stdin_r) = tokio::io::duplex(64);
        let process = session(Session {
            tap,
            exit: exit_rx,
            tty: true,
            stdin: Some(Box::pin(stdin_w)),
            close_stdin: Some(Box::new(move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst)
            })),
            resize: Some(Box::new(|w, h| Err(format!("{w}x{h}")))),
        });
        assert!(process.stderr.is_none());
        assert_eq!(process.control.resize(100, 30), Err("100x30".into()));
        drop(process);
        assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
    }
}
