//! `kubectl exec` on the agent's side of the tunnel from the API server (docs: the exec protocol
//! between the API server and the agent). After `101 Switching Protocols` both directions carry
//! frames `[channel: u8][length: u32 big-endian][payload]`, on Kubernetes' remotecommand
//! channels: 0 stdin (an empty frame closes it), 1 stdout, 2 stderr, 3 error (one metav1.Status,
//! the last frame), 4 resize (`{"Width": w, "Height": h}`). [`run`] drives one session.

use std::time::Duration;

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::runtime::{ExecControl, ExecProcess, ExecReader};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;

/// The largest payload of one frame; longer data is split.
pub const MAX_FRAME: usize = 1 << 20;
/// The size of a frame's header.
const HEADER: usize = 5;
/// How long, once the command ended, its output may take to drain (its background children
/// may hold its stdout open).
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How much one read of the command's output takes at most.
const CHUNK: usize = 32 * 1024;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub channel: u8,
    pub payload: Bytes,
}

/// A frame that cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("an exec frame of {0} bytes is larger than the limit of 1 MiB")]
    TooLarge(u64),
    #[error("the exec tunnel ended in the middle of a frame")]
    Truncated,
}

/// Appends `payload` on `channel` to `out`, split into frames of at most [`MAX_FRAME`] bytes;
/// an empty payload is one empty frame.
pub fn encode(channel: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        out.push(channel);
        out.extend_from_slice(&0u32.to_be_bytes());
        return;
    }
    for chunk in chunks {
        out.push(channel);
        // A chunk is at most 1 MiB: it fits.
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Takes one whole frame from the front of `buf`: `Ok(None)` when `buf` does not hold one yet.
pub fn decode(buf: &mut bytes::BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len as u64));
    }
    if buf.len() < HEADER + len {
        buf.reserve(HEADER + len - buf.len());
        return Ok(None);
    }
    let channel = buf[0];
    buf.advance(HEADER);
    let payload = buf.split_to(len).freeze();
    Ok(Some(Frame { channel, payload }))
}

/// Reads frames from a stream.
pub struct FrameReader<R> {
    inner: R,
    buf: bytes::BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: bytes::BytesMut::with_capacity(8192),
        }
    }

    /// The next frame; `Ok(None)` when the stream ended between frames.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = decode(&mut self.buf).map_err(std::io::Error::other)? {
                return Ok(Some(frame));
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        FrameError::Truncated,
                    ))
                };
            }
        }
    }
}

/// Writes `payload` on `channel` (split as [`encode`] does).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    channel: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len().min(MAX_FRAME) + HEADER);
    encode(channel, payload, &mut out);
    w.write_all(&out).await?;
    w.flush().await
}

/// A terminal size, as the resize channel carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[derive(Serialize)]
struct Status<'a> {
    metadata: serde_json::Map<String, serde_json::Value>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
}

/// How the command ended, as the error channel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code.
    Exited(i32),
    /// Its end is not known: why.
    Failed(String),
}

/// The metav1.Status for the error channel, as Kubernetes' v4 protocol sends it.
pub fn status_json(outcome: &Outcome, command: &[String]) -> Vec<u8> {
    let status = match outcome {
        Outcome::Exited(0) => Status {
            metadata: Default::default(),
            status: "Success",
            message: None,
            reason: None,
            details: None,
        },
        Outcome::Exited(code) => Status {
            metadata: Default::default(),
            status: "Failure",
            message: Some(format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            )),
            reason: Some("NonZeroExitCode"),
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode",
                    message: code.to_string(),
                }],
            }),
        },
        Outcome::Failed(why) => Status {
            metadata: Default::default(),
            status: "Failure",
            message: Some(why.clone()),
            reason: None,
            details: None,
        },
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// Which of the command's output streams the client asked for; the others are read and
/// dropped (the command never blocks on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub stdout: bool,
    pub stderr: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted {
            stdout: true,
            stderr: true,
        }
    }
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The command ended and its status was sent.
    Reported(Outcome),
    /// The tunnel closed first; the command was killed.
    Closed,
}

/// Runs one exec session over `stream` (the upgraded connection): stdin frames go to the
/// command, its output comes back on channels 1 and 2, resize frames resize its terminal;
/// once it ended and its output drained, one status frame on channel 3, then the tunnel is
/// closed. When the tunnel closes first (or fails), the command is killed.
pub async fn run<S>(
    stream: S,
    mut process: ExecProcess,
    command: &[String],
    wanted: Wanted,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let control = process.control.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Bytes)>(4);
    let mut pumps = tokio::task::JoinSet::new();
    for (reader, channel, send) in [
        (process.stdout.take(), STDOUT, wanted.stdout),
        (process.stderr.take(), STDERR, wanted.stderr),
    ] {
        if let Some(reader) = reader {
            pumps.spawn(pump(reader, channel, send.then(|| tx.clone())));
        }
    }
    drop(tx);
    let input = feed(
        FrameReader::new(reader),
        process.stdin.take(),
        control.clone(),
    );
    tokio::pin!(input);
    let mut exit = process.exit;
    let mut outcome: Option<Outcome> = None;
    let mut drained = false;
    let drain_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain_deadline);
    while outcome.is_none() || !drained {
        tokio::select! {
            () = &mut input => {
                control.kill();
                return Ended::Closed;
            }
            code = &mut exit, if outcome.is_none() => {
                outcome = Some(match code {
                    Ok(code) => Outcome::Exited(code),
                    Err(why) => Outcome::Failed(why),
                });
                drain_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_LIMIT);
            }
            message = rx.recv(), if !drained => match message {
                Some((channel, data)) => {
                    if write_frame(&mut writer, channel, &data).await.is_err() {
                        control.kill();
                        return Ended::Closed;
                    }
                }
                None => drained = true,
            },
            () = &mut drain_deadline, if outcome.is_some() && !drained => {
                // What still holds the output open is not the command: its output ends here.
                pumps.abort_all();
                drained = true;
            }
        }
    }
    let outcome = outcome.unwrap_or(Outcome::Exited(0));
    let status = status_json(&outcome, command);
    if write_frame(&mut writer, ERROR, &status).await.is_ok() {
        let _ = writer.shutdown().await;
    }
    Ended::Reported(outcome)
}

/// Copies one output stream of the command to `tx` (or nowhere) until it ends.
async fn pump(
    mut reader: ExecReader,
    channel: u8,
    tx: Option<tokio::sync::mpsc::Sender<(u8, Bytes)>>,
) {
    let mut buf = bytes::BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let data = buf.split().freeze();
                if let Some(tx) = &tx {
                    if tx.send((channel, data)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Reads the client's frames until the tunnel ends: stdin to the command, resizes to its
/// terminal. Returns when the tunnel is closed or broken.
async fn feed<R: AsyncRead + Unpin>(
    mut frames: FrameReader<R>,
    mut stdin: Option<crate::runtime::ExecWriter>,
    control: std::sync::Arc<dyn ExecControl>,
) {
    while let Ok(Some(frame)) = frames.next().await {
        match frame.channel {
            STDIN if frame.payload.is_empty() => {
                if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                }
            }
            STDIN => {
                if let Some(w) = &mut stdin {
                    let written = async {
                        w.write_all(&frame.payload).await?;
                        w.flush().await
                    };
                    // A command that no longer reads its input gets no more of it.
                    if written.await.is_err() {
                        stdin = None;
                    }
                }
            }
            RESIZE => {
                if let Ok(size) = serde_json::from_slice::<TerminalSize>(&frame.payload) {
                    if let Err(e) = control.resize(size.width, size.height) {
                        tracing::debug!(error = %e, "cannot resize an exec's terminal");
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ExecRequest, ProcessRuntime, Runtime};

    fn frames_of(bytes: &[u8]) -> Vec<Frame> {
        let mut buf = bytes::BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn frames_round_trip_and_split_at_one_mebibyte() {
        let mut out = Vec::new();
        encode(STDOUT, b"hello", &mut out);
        encode(STDIN, b"", &mut out);
        assert_eq!(&out[..10], b"\x01\x00\x00\x00\x05hello");
        assert_eq!(&out[10..], b"\x00\x00\x00\x00\x00");
        let frames = frames_of(&out);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].channel, STDOUT);
        assert_eq!(frames[0].payload, Bytes::from_static(b"hello"));
        assert_eq!(frames[1].channel, STDIN);
        assert!(frames[1].payload.is_empty());

        let big = vec![7u8; MAX_FRAME * 2 + 3];
        let mut out = Vec::new();
        encode(STDERR, &big, &mut out);
        let frames = frames_of(&out);
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes, [MAX_FRAME, MAX_FRAME, 3]);
        assert!(frames.iter().all(|f| f.channel == STDERR));
    }

    #[test]
    fn partial_and_oversized_frames() {
        let mut out = Vec::new();
        encode(STDOUT, b"abcdef", &mut out);
        let mut buf = bytes::BytesMut::new();
        for byte in &out[..out.len() - 1] {
            buf.extend_from_slice(&[*byte]);
            assert_eq!(decode(&mut buf).unwrap(), None);
        }
        buf.extend_from_slice(&out[out.len() - 1..]);
        assert_eq!(decode(&mut buf).unwrap().unwrap().payload, "abcdef");

        let mut buf = bytes::BytesMut::from(&[STDIN, 0x00, 0x10, 0x00, 0x01][..]);
        assert_eq!(
            decode(&mut buf),
            Err(FrameError::TooLarge(MAX_FRAME as u64 + 1))
        );
        let mut buf = bytes::BytesMut::from(&[STDIN, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(decode(&mut buf).is_err());
        // Exactly 1 MiB is allowed.
        let mut buf = bytes::BytesMut::from(&[STDIN, 0x00, 0x10, 0x00, 0x00][..]);
        assert_eq!(decode(&mut buf), Ok(None));
    }

    #[tokio::test]
    async fn a_stream_that_ends_inside_a_frame_is_an_error() {
        let mut out = Vec::new();
        encode(STDIN, b"whole", &mut out);
        encode(STDIN, b"cut short", &mut out);
        out.truncate(out.len() - 3);
        let mut reader = FrameReader::new(&out[..]);
        assert_eq!(reader.next().await.unwrap().unwrap().payload, "whole");
        let err = reader.next().await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut empty = FrameReader::new(&b""[..]);
        assert!(empty.next().await.unwrap().is_none());
        let mut header_only = FrameReader::new(&b"\x01\x00"[..]);
        assert!(header_only.next().await.is_err());
    }

    #[test]
    fn statuses_are_kubernetes_v4_error_channel_statuses() {
        let cmd: Vec<String> = ["sh", "-c", "exit 3"].map(String::from).to_vec();
        assert_eq!(
            String::from_utf8(status_json(&Outcome::Exited(0), &cmd)).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(
            String::from_utf8(status_json(&Outcome::Exited(3), &cmd)).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            String::from_utf8(status_json(&Outcome::Failed("gone".into()), &cmd)).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"gone"}"#
        );
        let size: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!(
            size,
            TerminalSize {
                width: 80,
                height: 24
            }
        );
    }

    fn command(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// Reads frames until the tunnel ends: (channel, bytes) with each channel's bytes joined.
    async fn collect(
        reader: &mut FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    ) -> Vec<(u8, Vec<u8>)> {
        let mut frames: Vec<(u8, Vec<u8>)> = Vec::new();
        while let Some(f) = reader.next().await.unwrap() {
            match frames.iter_mut().find(|(c, _)| *c == f.channel) {
                Some((_, data)) => data.extend_from_slice(&f.payload),
                None => frames.push((f.channel, f.payload.to_vec())),
            }
        }
        frames
    }

    fn channel(frames: &[(u8, Vec<u8>)], channel: u8) -> String {
        frames
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default()
    }

    /// Starts a long-running container to exec in.
    async fn started(rt: &ProcessRuntime, dir: &std::path::Path) -> String {
        let spec = crate::runtime::ContainerSpec {
            id: "u/c/1".into(),
            program: "sleep".into(),
            args: vec!["300".into()],
            env: vec![],
            working_dir: None,
            log_path: dir.join("c.log"),
            memory_limit: None,
            host_ports: vec![],
            fake: Default::default(),
            image: None,
            handler: None,
            mounts: Vec::new(),
            stdio: Default::default(),
        };
        rt.start(&spec).unwrap();
        spec.id
    }

    #[tokio::test]
    async fn a_session_relays_stdin_stdout_stderr_and_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let id = started(&rt, dir.path()).await;
        let cmd = command(&["sh", "-c", "echo out; echo err >&2; cat; exit 3"]);
        let process = rt
            .exec(
                &id,
                &ExecRequest {
                    command: cmd.clone(),
                    stdin: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let (agent_side, server_side) = tokio::io::duplex(64 * 1024);
        let session =
            tokio::spawn(async move { run(agent_side, process, &cmd, Wanted::default()).await });
        let (reader, mut writer) = tokio::io::split(server_side);
        write_frame(&mut writer, STDIN, b"typed\n").await.unwrap();
        write_frame(&mut writer, STDIN, b"").await.unwrap();
        let mut reader = FrameReader::new(reader);
        let frames = collect(&mut reader).await;
        assert_eq!(channel(&frames, STDOUT), "out\ntyped\n");
        assert_eq!(channel(&frames, STDERR), "err\n");
        let status: serde_json::Value = serde_json::from_str(&channel(&frames, ERROR)).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(frames.last().unwrap().0, ERROR, "the status comes last");
        assert_eq!(session.await.unwrap(), Ended::Reported(Outcome::Exited(3)));
        rt.stop(&id, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_closed_tunnel_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let id = started(&rt, dir.path()).await;
        let pidfile = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 300", pidfile.display());
        let cmd = command(&["sh", "-c", &script]);
        let process = rt
            .exec(
                &id,
                &ExecRequest {
                    command: cmd.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        let (agent_side, server_side) = tokio::io::duplex(1024);
        let session =
            tokio::spawn(async move { run(agent_side, process, &cmd, Wanted::default()).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the command never ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        drop(server_side);
        assert_eq!(session.await.unwrap(), Ended::Closed);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the command survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        rt.stop(&id, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_tty_session_resizes_and_reports_success() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new();
        let id = started(&rt, dir.path()).await;
        // The size is read once the resize arrived: the command waits for a line first.
        let cmd = command(&["sh", "-c", "read line; stty size; tty"]);
        let process = rt
            .exec(
                &id,
                &ExecRequest {
                    command: cmd.clone(),
                    tty: true,
                    stdin: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(process.stderr.is_none());
        let (agent_side, server_side) = tokio::io::duplex(64 * 1024);
        let session =
            tokio::spawn(async move { run(agent_side, process, &cmd, Wanted::default()).await });
        let (reader, mut writer) = tokio::io::split(server_side);
        let size = serde_json::to_vec(&TerminalSize {
            width: 100,
            height: 30,
        })
        .unwrap();
        write_frame(&mut writer, RESIZE, &size).await.unwrap();
        write_frame(&mut writer, STDIN, b"go\n").await.unwrap();
        let mut reader = FrameReader::new(reader);
        let frames = collect(&mut reader).await;
        let out = channel(&frames, STDOUT);
        assert!(out.contains("30 100"), "{out:?}");
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert_eq!(channel(&frames, STDERR), "");
        assert_eq!(
            channel(&frames, ERROR),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert_eq!(session.await.unwrap(), Ended::Reported(Outcome::Exited(0)));
        rt.stop(&id, Duration::from_secs(1)).await;
    }
}
