//! Exec over kubectl's SPDY: the client opens a stream per channel, each with a `streamType`
//! header (`error`, `stdin`, `stdout`, `stderr`, `resize`). Once the streams the query asked for
//! are open, the tunnel to the agent is opened and the channels are passed on: stdin data (and
//! its end) and terminal sizes to the agent, its output to the stdout and stderr streams, and
//! how the command ended to the error stream, after which the session is closed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::{broken_status, frames, over_websocket::Resizes, Target};
use crate::spdy::frame::rst;
use crate::spdy::{self, StreamReader, StreamWriter};

/// How long the client may take to open the streams it asked for (the kubelet's stream
/// creation timeout).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The stream protocols of exec over SPDY that minik speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `v4.channel.k8s.io`: the error stream carries a JSON `Status` (exit codes included).
    V4,
    /// `v3.channel.k8s.io`: v2 with a resize stream.
    V3,
    /// `v2.channel.k8s.io`: the error stream carries the failure's message as text.
    V2,
}

impl Version {
    /// The protocol names, in the server's order of preference.
    pub const NAMES: [&'static str; 3] = [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
    ];

    /// The name in `X-Stream-Protocol-Version`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V4 => Self::NAMES[0],
            Version::V3 => Self::NAMES[1],
            Version::V2 => Self::NAMES[2],
        }
    }

    /// The best protocol among those the client offers.
    pub fn choose(offered: &[&str]) -> Option<Version> {
        [Version::V4, Version::V3, Version::V2]
            .into_iter()
            .find(|v| offered.contains(&v.name()))
    }

    /// What the error stream carries for the agent's `status`: v4 the JSON itself, v2 and v3
    /// the message of a failure and nothing for a success.
    pub(super) fn error_stream_text(self, status: &[u8]) -> Vec<u8> {
        if self == Version::V4 {
            return status.to_vec();
        }
        let parsed: Value = serde_json::from_slice(status).unwrap_or(Value::Null);
        if parsed["status"] == "Success" {
            return Vec::new();
        }
        match parsed["message"].as_str() {
            Some(message) => message.as_bytes().to_vec(),
            None => status.to_vec(),
        }
    }
}

/// The `streamType`s of exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "error" => Kind::Error,
            "stdin" => Kind::Stdin,
            "stdout" => Kind::Stdout,
            "stderr" => Kind::Stderr,
            "resize" => Kind::Resize,
            _ => return None,
        })
    }
}

/// An accepted stream: its reader until a task takes it, and its writer.
struct Opened {
    reader: Option<StreamReader>,
    writer: StreamWriter,
}

/// The streams the client has opened.
#[derive(Default)]
struct Streams {
    error: Option<Opened>,
    stdin: Option<Opened>,
    stdout: Option<Opened>,
    stderr: Option<Opened>,
    resize: Option<Opened>,
}

impl Streams {
    fn slot(&mut self, kind: Kind) -> &mut Option<Opened> {
        match kind {
            Kind::Error => &mut self.error,
            Kind::Stdin => &mut self.stdin,
            Kind::Stdout => &mut self.stdout,
            Kind::Stderr => &mut self.stderr,
            Kind::Resize => &mut self.resize,
        }
    }

    /// Whether every stream the exec needs is open.
    fn complete(&self, options: &super::ExecOptions, version: Version) -> bool {
        self.error.is_some()
            && (!options.stdin || self.stdin.is_some())
            && (!options.stdout || self.stdout.is_some())
            && (!options.stderr || self.stderr.is_some())
            && (!options.tty || version == Version::V2 || self.resize.is_some())
    }

    /// The reader of a stream, for the task that reads it.
    fn take_reader(&mut self, kind: Kind) -> Option<StreamReader> {
        self.slot(kind).as_mut().and_then(|s| s.reader.take())
    }

    /// The writer of a stream the server writes to.
    fn writer(&mut self, kind: Kind) -> Option<&mut StreamWriter> {
        self.slot(kind).as_mut().map(|s| &mut s.writer)
    }

    /// Ends every stream, the error stream last with `error` on it.
    async fn finish(mut self, error: &[u8]) {
        for kind in [Kind::Stdout, Kind::Stderr, Kind::Stdin, Kind::Resize] {
            if let Some(writer) = self.writer(kind) {
                let _ = writer.finish().await;
            }
        }
        if let Some(writer) = self.writer(Kind::Error) {
            if !error.is_empty() {
                let _ = writer.write(error).await;
            }
            let _ = writer.finish().await;
        }
    }
}

/// Serves one exec over a SPDY session on `io` (the client's connection after the 101).
pub async fn serve<T>(io: T, target: Target, version: Version)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, closer) = Closable::new(io);
    let mut incoming = spdy::serve(io, spdy::Config::default());
    let options = target.options.clone();
    let mut streams = Streams::default();
    let deadline = tokio::time::sleep(STREAMS_TIMEOUT);
    tokio::pin!(deadline);
    while !streams.complete(&options, version) {
        let stream = tokio::select! {
            stream = incoming.next() => match stream {
                Some(stream) => stream,
                // The client went away before the command started.
                None => return,
            },
            () = &mut deadline => {
                let message = "timed out waiting for the client to open its exec streams";
                let status = super::failure_status(&minik_api::ApiError::Timeout(message.into()));
                streams.finish(&version.error_stream_text(&status)).await;
                closer.close();
                return;
            }
        };
        let kind = stream.headers.get("streamType").and_then(Kind::parse);
        match kind {
            Some(kind) if streams.slot(kind).is_none() => {
                if let Ok((reader, writer)) = stream.accept().await {
                    *streams.slot(kind) = Some(Opened {
                        reader: Some(reader),
                        writer,
                    });
                }
            }
            _ => {
                tracing::debug!(stream = stream.id, ?kind, "exec: stream refused");
                stream.refuse(rst::PROTOCOL_ERROR).await;
            }
        }
    }
    let node = target.node.clone();
    let tunnel = match target.open().await {
        Ok(tunnel) => tunnel,
        Err(e) => {
            streams
                .finish(&version.error_stream_text(&e.status()))
                .await;
            closer.close();
            return;
        }
    };
    let (mut agent_read, mut agent_write) = tokio::io::split(tunnel);
    // What goes to the agent comes from a task per client stream that carries some.
    let (to_agent, mut for_agent) = mpsc::channel::<(u8, Bytes)>(16);
    if let Some(reader) = streams.take_reader(Kind::Stdin) {
        tokio::spawn(pass_stdin(reader, to_agent.clone()));
    }
    if let Some(reader) = streams.take_reader(Kind::Resize) {
        tokio::spawn(pass_resizes(reader, to_agent.clone()));
    }
    drop(to_agent);
    let mut agent_input_open = true;
    let outcome = loop {
        tokio::select! {
            frame = frames::read(&mut agent_read) => match frame {
                Ok(Some(frame)) => {
                    let writer = match frame.channel {
                        frames::STDOUT => streams.writer(Kind::Stdout),
                        frames::STDERR => streams.writer(Kind::Stderr),
                        frames::ERROR => break frame.payload.to_vec(),
                        _ => None,
                    };
                    if let Some(writer) = writer {
                        // A client that reset the stream no longer wants it.
                        let _ = writer.write(&frame.payload).await;
                    }
                }
                Ok(None) => break broken_status(&node, "it closed"),
                Err(e) => break broken_status(&node, &e.to_string()),
            },
            message = for_agent.recv(), if agent_input_open => match message {
                Some((channel, data)) => {
                    // An agent that stopped reading is noticed on its end of the tunnel.
                    let _ = frames::write(&mut agent_write, channel, &data).await;
                }
                None => agent_input_open = false,
            },
            stream = incoming.next() => match stream {
                Some(stream) => stream.refuse(rst::PROTOCOL_ERROR).await,
                // The client is gone: closing the tunnel stops the command.
                None => return,
            },
        }
    };
    streams.finish(&version.error_stream_text(&outcome)).await;
    closer.close();
}

/// Stdin's data to the agent, then its end (an empty frame) once the client finished the
/// stream, or reset it.
async fn pass_stdin(mut reader: StreamReader, to_agent: mpsc::Sender<(u8, Bytes)>) {
    loop {
        match reader.read().await {
            Ok(Some(data)) => {
                if to_agent.send((frames::STDIN, data)).await.is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                let _ = to_agent.send((frames::STDIN, Bytes::new())).await;
                return;
            }
        }
    }
}

/// The terminal sizes the client sends (JSON objects one after another) to the agent.
async fn pass_resizes(mut reader: StreamReader, to_agent: mpsc::Sender<(u8, Bytes)>) {
    let mut resizes = Resizes::default();
    while let Ok(Some(data)) = reader.read().await {
        match resizes.push(&data) {
            Ok(sizes) => {
                for size in sizes {
                    if to_agent.send((frames::RESIZE, size)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "exec: a bad terminal size; no more resizes");
                return;
            }
        }
    }
}

/// What [`Closable`] and its [`Closer`] share.
#[derive(Default)]
struct CloseSignal {
    closed: AtomicBool,
    waker: AtomicWaker,
}

/// A connection whose reading side can be ended from outside: the SPDY session takes that
/// end as the client's, sends what it has queued, and closes the connection.
struct Closable<T> {
    inner: T,
    signal: Arc<CloseSignal>,
}

/// Ends the reading side of a [`Closable`].
struct Closer(Arc<CloseSignal>);

impl Closer {
    fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl<T> Closable<T> {
    fn new(inner: T) -> (Closable<T>, Closer) {
        let signal = Arc::new(CloseSignal::default());
        (
            Closable {
                inner,
                signal: signal.clone(),
            },
            Closer(signal),
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Closable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.signal.waker.register(cx.waker());
        if self.signal.closed.load(Ordering::Acquire) {
            // Nothing read: the end of the stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Closable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
