//! Exec over a WebSocket with Kubernetes' channel subprotocols, `v5.channel.k8s.io` and
//! `v4.channel.k8s.io`: each binary message is one channel byte and that channel's data. The
//! server sends an empty message on the first channel it writes to once the tunnel to the
//! agent is open (as Kubernetes, so clients know the exec started), the output on 1 and 2, and
//! how the command ended on 3, then closes the WebSocket. The client sends stdin on 0 and
//! terminal sizes on 4; v5 adds the message `[255, 0]`: stdin has ended.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{broken_status, frames, Target};
use crate::portforward::websocket::{
    close_payload, encode, read_head, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED_DATA,
    MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

/// v5's channel for signals: `[255, N]` closes channel N.
const CLOSE_CHANNEL: u8 = 255;

/// The largest message a client may send (a channel byte and 1 MiB of data, with room).
const MAX_MESSAGE: usize = 2 * frames::MAX_FRAME;

/// The close code for a message too long (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;

/// How long the server waits for the client to answer its close before dropping the
/// connection.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The channel subprotocols minik speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `v5.channel.k8s.io`: v4 with the end of stdin.
    V5,
    /// `v4.channel.k8s.io`: the error channel carries a JSON `Status`.
    V4,
}

impl Version {
    /// The subprotocol names, in the server's order of preference.
    pub const NAMES: [&'static str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

    /// The name in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V5 => Self::NAMES[0],
            Version::V4 => Self::NAMES[1],
        }
    }

    /// The best subprotocol among those the client offers.
    pub fn choose(offered: &[&str]) -> Option<Version> {
        [Version::V5, Version::V4]
            .into_iter()
            .find(|v| offered.contains(&v.name()))
    }
}

/// A terminal size as clients send it (client-go's `TerminalSize`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct TerminalSize {
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Terminal sizes from a stream of JSON objects that may arrive split anywhere.
#[derive(Default)]
pub struct Resizes {
    pending: Vec<u8>,
}

impl Resizes {
    /// The most of an unfinished object kept.
    const MAX_PENDING: usize = 4096;

    /// Adds `data`; the sizes it completes, each as the agent's JSON.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, String> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut objects =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
        let error = loop {
            match objects.next() {
                Some(Ok(size)) => sizes.push(Bytes::from(format!(
                    "{{\"Width\":{},\"Height\":{}}}",
                    size.width, size.height
                ))),
                Some(Err(e)) if e.is_eof() => break None,
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        let used = objects.byte_offset();
        if let Some(e) = error {
            return Err(format!("a terminal size is not valid JSON: {e}"));
        }
        self.pending.drain(..used);
        if self.pending.len() > Self::MAX_PENDING {
            return Err("a terminal size is too long".into());
        }
        Ok(sizes)
    }
}

/// What the writing task sends.
enum Out {
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// Serves one exec over the WebSocket on `io` (the client's connection after the 101).
pub async fn serve<T>(io: T, target: Target, version: Version)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (socket_read, socket_write) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel::<Out>(32);
    let (messages_tx, mut messages) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(write_frames(socket_write, out_rx));
    let reader = tokio::spawn(read_messages(socket_read, messages_tx, out.clone()));
    let options = target.options.clone();
    let node = target.node.clone();
    let outcome = match target.open().await {
        Err(e) => e.status(),
        Ok(tunnel) => {
            // The exec has started: an empty message on the first channel written to.
            let first = if options.stdout {
                frames::STDOUT
            } else if options.stderr {
                frames::STDERR
            } else {
                frames::ERROR
            };
            let _ = out.send(Out::Binary(vec![first])).await;
            match pump(tunnel, &out, &mut messages, &options, version, &node).await {
                Some(outcome) => outcome,
                // The client went away: dropping the tunnel stops the command.
                None => {
                    drop(out);
                    let _ = writer.await;
                    reader.abort();
                    return;
                }
            }
        }
    };
    let mut message = vec![frames::ERROR];
    message.extend_from_slice(&outcome);
    let _ = out.send(Out::Binary(message)).await;
    let _ = out.send(Out::Close(CLOSE_NORMAL, String::new())).await;
    drop(out);
    let _ = writer.await;
    // The client answers the close, then closes the connection; one that does not is
    // dropped.
    if tokio::time::timeout(CLOSE_GRACE, async {
        while messages.recv().await.is_some() {}
    })
    .await
    .is_err()
    {
        reader.abort();
    }
}

/// Passes the channels between the client and the agent until the agent says how the command
/// ended (that status), or the client goes away (`None`).
async fn pump(
    tunnel: reqwest::Upgraded,
    out: &mpsc::Sender<Out>,
    messages: &mut mpsc::Receiver<Vec<u8>>,
    options: &super::ExecOptions,
    version: Version,
    node: &str,
) -> Option<Vec<u8>> {
    let (mut agent_read, mut agent_write) = tokio::io::split(tunnel);
    let mut stdin_open = options.stdin;
    let mut resizes = options.tty.then(Resizes::default);
    loop {
        tokio::select! {
            frame = frames::read(&mut agent_read) => match frame {
                Ok(Some(frame)) => {
                    let wanted = match frame.channel {
                        frames::STDOUT => options.stdout,
                        frames::STDERR => options.stderr,
                        frames::ERROR => return Some(frame.payload.to_vec()),
                        _ => false,
                    };
                    if wanted {
                        let mut message = Vec::with_capacity(frame.payload.len() + 1);
                        message.push(frame.channel);
                        message.extend_from_slice(&frame.payload);
                        if out.send(Out::Binary(message)).await.is_err() {
                            return None;
                        }
                    }
                }
                Ok(None) => return Some(broken_status(node, "it closed")),
                Err(e) => return Some(broken_status(node, &e.to_string())),
            },
            message = messages.recv() => {
                let message = message?;
                let Some((&channel, data)) = message.split_first() else {
                    continue;
                };
                let frame: Option<(u8, Bytes)> = match channel {
                    frames::STDIN if stdin_open && !data.is_empty() => {
                        Some((frames::STDIN, Bytes::copy_from_slice(data)))
                    }
                    CLOSE_CHANNEL if version == Version::V5 && data.first() == Some(&frames::STDIN) && stdin_open => {
                        stdin_open = false;
                        Some((frames::STDIN, Bytes::new()))
                    }
                    frames::RESIZE => {
                        let sizes = match resizes.as_mut().map(|r| r.push(data)) {
                            Some(Ok(sizes)) => sizes,
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "exec: a bad terminal size; no more resizes");
                                resizes = None;
                                Vec::new()
                            }
                            None => Vec::new(),
                        };
                        for size in sizes {
                            let _ = frames::write(&mut agent_write, frames::RESIZE, &size).await;
                        }
                        None
                    }
                    _ => None,
                };
                if let Some((channel, data)) = frame {
                    // An agent that stopped reading is noticed on its end of the tunnel.
                    let _ = frames::write(&mut agent_write, channel, &data).await;
                }
            }
        }
    }
}

/// Reads the client's frames: whole data messages to `messages`, pings answered, a close
/// answered. Ends (dropping `messages`) when the client closes or breaks the protocol.
async fn read_messages<R>(mut socket: R, messages: mpsc::Sender<Vec<u8>>, out: mpsc::Sender<Out>)
where
    R: AsyncRead + Unpin,
{
    let mut message: Option<Vec<u8>> = None;
    let close = loop {
        let head = match read_head(&mut socket).await {
            Ok(Some(head)) => head,
            Ok(None) => break None,
            Err(e) => {
                tracing::debug!(error = %e, "exec WebSocket read failed");
                break None;
            }
        };
        let Some(mask) = head.mask else {
            break Some((CLOSE_PROTOCOL_ERROR, "client frames must be masked"));
        };
        let is_control = head.opcode & 0x8 != 0;
        if is_control && (head.len > MAX_CONTROL_PAYLOAD || !head.fin) {
            break Some((
                CLOSE_PROTOCOL_ERROR,
                "a control frame is too long or fragmented",
            ));
        }
        match head.opcode {
            OP_TEXT => {
                break Some((
                    CLOSE_UNSUPPORTED_DATA,
                    "the channel protocols carry binary messages only",
                ))
            }
            OP_BINARY if message.is_some() => {
                break Some((
                    CLOSE_PROTOCOL_ERROR,
                    "a new message inside a fragmented one",
                ))
            }
            OP_CONTINUATION if message.is_none() => {
                break Some((CLOSE_PROTOCOL_ERROR, "a continuation outside a message"))
            }
            OP_BINARY | OP_CONTINUATION | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => break Some((CLOSE_PROTOCOL_ERROR, "unknown opcode")),
        }
        let held = message.as_ref().map_or(0, Vec::len);
        let too_big = usize::try_from(head.len)
            .ok()
            .and_then(|n| n.checked_add(held))
            .is_none_or(|n| n > MAX_MESSAGE);
        if too_big {
            break Some((CLOSE_TOO_BIG, "message too big"));
        }
        let mut payload = vec![0u8; head.len as usize];
        if let Err(e) = socket.read_exact(&mut payload).await {
            tracing::debug!(error = %e, "exec WebSocket ended inside a frame");
            break None;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match head.opcode {
            OP_PING => {
                let _ = out.send(Out::Pong(payload)).await;
            }
            OP_PONG => {}
            OP_CLOSE => {
                let code = match payload.get(..2) {
                    Some(&[a, b]) => u16::from_be_bytes([a, b]),
                    _ => CLOSE_NORMAL,
                };
                let _ = out.send(Out::Close(code, String::new())).await;
                return;
            }
            _ => {
                let whole = message.get_or_insert_with(Vec::new);
                whole.extend_from_slice(&payload);
                if head.fin {
                    let whole = message.take().unwrap_or_default();
                    if messages.send(whole).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        tracing::debug!(reason, "closing the exec WebSocket");
        let _ = out.send(Out::Close(code, reason.into())).await;
    }
}

/// Writes what it is sent as unmasked frames; ends after a close, or when nothing can be sent
/// any more, and shuts the connection's writing side.
async fn write_frames<W>(mut socket: W, mut out: mpsc::Receiver<Out>)
where
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(next) = out.recv().await {
        buf.clear();
        let last = match next {
            Out::Binary(data) => {
                encode(&mut buf, OP_BINARY, &data);
                false
            }
            Out::Pong(data) => {
                encode(&mut buf, OP_PONG, &data);
                false
            }
            Out::Close(code, reason) => {
                encode(&mut buf, OP_CLOSE, &close_payload(code, &reason));
                true
            }
        };
        if socket.write_all(&buf).await.is_err() || socket.flush().await.is_err() || last {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocols_are_chosen_by_the_servers_preference() {
        assert_eq!(
            Version::choose(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(Version::V5)
        );
        assert_eq!(
            Version::choose(&["channel.k8s.io", "v4.channel.k8s.io"]),
            Some(Version::V4)
        );
        assert_eq!(Version::choose(&["base64.channel.k8s.io"]), None);
    }

    #[test]
    fn terminal_sizes_are_read_across_splits() {
        let mut r = Resizes::default();
        assert_eq!(r.push(b"{\"Width\":80,").unwrap(), Vec::<Bytes>::new());
        let sizes = r
            .push(b"\"Height\":24}\n{\"width\":100,\"height\":30}\n{\"Wid")
            .unwrap();
        assert_eq!(
            sizes,
            vec![
                Bytes::from_static(b"{\"Width\":80,\"Height\":24}"),
                Bytes::from_static(b"{\"Width\":100,\"Height\":30}"),
            ]
        );
        assert!(r.push(b"th\":-1,\"Height\":2}").is_err());
        assert!(Resizes::default().push(b"{\"Width\":\"wide\"}").is_err());
        assert!(Resizes::default()
            .push(&vec![b' '; 10_000])
            .unwrap()
            .is_empty());
        let mut long = b"{\"Width\":".to_vec();
        long.extend(vec![b' '; 5000]);
        assert!(Resizes::default().push(&long).is_err());
    }
}
