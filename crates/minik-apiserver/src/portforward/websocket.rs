//! The WebSocket tunnel kubectl 1.30+ tries first for port-forward: a WebSocket (RFC 6455)
//! with the subprotocol `SPDY/3.1+portforward.k8s.io`, whose binary messages carry the bytes
//! of a SPDY session, split anywhere. [`tunnel`] turns the upgraded connection back into that
//! byte stream.

use base64::Engine;
use bytes::{BufMut, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// The subprotocol of SPDY tunnelled in a WebSocket, as kubectl asks for it.
pub const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xa;

/// Close codes.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub(crate) const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

/// The largest control frame payload (RFC 6455: 125 bytes).
pub(crate) const MAX_CONTROL_PAYLOAD: u64 = 125;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A frame's header; the payload follows it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
}

/// Reads a frame's header: `None` at a clean end between frames.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<FrameHead>> {
    let mut two = [0u8; 2];
    // A clean end between frames is the end of the tunnel.
    match r.read(&mut two[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut two[1..]).await?,
    };
    let fin = two[0] & 0x80 != 0;
    let opcode = two[0] & 0x0f;
    let masked = two[1] & 0x80 != 0;
    let len = match two[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    let mask = if masked {
        let mut m = [0u8; 4];
        r.read_exact(&mut m).await?;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHead {
        fin,
        opcode,
        mask,
        len,
    }))
}

/// An unmasked frame from the server.
pub(crate) fn encode(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= 0xffff => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// A close frame's payload: the code, then at most 100 bytes of the reason.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..reason.len().min(100)]);
    p
}

/// What the reading side asks the writing side to send.
enum Control {
    Pong(Vec<u8>),
    Close(u16, String),
}

/// Runs the WebSocket over `io` (the connection after `101 Switching Protocols`) and returns
/// the byte stream it carries; the tunnel ends when either end closes.
pub fn tunnel<T>(io: T) -> DuplexStream
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (inner, outer) = tokio::io::duplex(256 * 1024);
    let (socket_read, socket_write) = tokio::io::split(io);
    let (inner_read, inner_write) = tokio::io::split(inner);
    let (control_tx, control_rx) = mpsc::channel(16);
    tokio::spawn(inbound(socket_read, inner_write, control_tx));
    tokio::spawn(outbound(socket_write, inner_read, control_rx));
    outer
}

/// Client frames to the byte stream; pings and closes to the writer.
async fn inbound<R, W>(mut socket: R, mut bytes: W, control: mpsc::Sender<Control>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    let close = loop {
        let head = match read_head(&mut socket).await {
            Ok(Some(head)) => head,
            Ok(None) => break None,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward WebSocket read failed");
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
        if head.opcode == OP_TEXT {
            break Some((
                CLOSE_UNSUPPORTED_DATA,
                "the SPDY tunnel carries binary messages only",
            ));
        }
        if !matches!(
            head.opcode,
            OP_CONTINUATION | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            break Some((CLOSE_PROTOCOL_ERROR, "unknown opcode"));
        }
        // The payload, unmasked chunk by chunk; data goes straight to the byte stream.
        let mut control_payload = Vec::new();
        let mut left = head.len;
        let mut offset = 0usize;
        let mut failed = false;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if let Err(e) = socket.read_exact(&mut buf[..n]).await {
                tracing::debug!(error = %e, "port-forward WebSocket ended inside a frame");
                failed = true;
                break;
            }
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b ^= mask[(offset + i) % 4];
            }
            offset += n;
            left -= n as u64;
            if is_control {
                control_payload.extend_from_slice(&buf[..n]);
            } else if bytes.write_all(&buf[..n]).await.is_err() {
                // The SPDY session is gone; nothing more to deliver.
                failed = true;
                break;
            }
        }
        if failed {
            break None;
        }
        match head.opcode {
            OP_PING => {
                let _ = control.send(Control::Pong(control_payload)).await;
            }
            OP_CLOSE => {
                let code = if control_payload.len() >= 2 {
                    u16::from_be_bytes([control_payload[0], control_payload[1]])
                } else {
                    CLOSE_NORMAL
                };
                let _ = control.send(Control::Close(code, String::new())).await;
                let _ = bytes.shutdown().await;
                return;
            }
            _ => {}
        }
    };
    let _ = bytes.shutdown().await;
    if let Some((code, reason)) = close {
        tracing::debug!(reason, "closing the port-forward WebSocket");
        let _ = control.send(Control::Close(code, reason.into())).await;
    }
}

/// The byte stream to binary frames, and the frames the reading side asks for.
async fn outbound<W, R>(mut socket: W, mut bytes: R, mut control: mpsc::Receiver<Control>)
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = BytesMut::with_capacity(34 * 1024);
    let mut control_open = true;
    loop {
        out.clear();
        tokio::select! {
            read = bytes.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    // The SPDY session ended: say goodbye.
                    encode(&mut out, OP_CLOSE, &close_payload(CLOSE_NORMAL, ""));
                    let _ = socket.write_all(&out).await;
                    break;
                }
                Ok(n) => encode(&mut out, OP_BINARY, &buf[..n]),
            },
            message = control.recv(), if control_open => match message {
                Some(Control::Pong(payload)) => encode(&mut out, OP_PONG, &payload),
                Some(Control::Close(code, reason)) => {
                    encode(&mut out, OP_CLOSE, &close_payload(code, &reason));
                    let _ = socket.write_all(&out).await;
                    break;
                }
                None => {
                    control_open = false;
                    continue;
                }
            },
        }
        if socket.write_all(&out).await.is_err() || socket.flush().await.is_err() {
            break;
        }
    }
    let _ = socket.flush().await;
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = BytesMut::new();
        out.put_u8(if fin { 0x80 } else { 0 } | opcode);
        match payload.len() {
            n if n < 126 => out.put_u8(0x80 | n as u8),
            n if n <= 0xffff => {
                out.put_u8(0x80 | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(0x80 | 127);
                out.put_u64(n as u64);
            }
        }
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out.to_vec()
    }

    /// Reads one server frame: (opcode, payload).
    async fn server_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<(u8, Vec<u8>)> {
        let head = read_head(r).await.unwrap()?;
        assert!(head.mask.is_none(), "server frames are not masked");
        let mut payload = vec![0; head.len as usize];
        r.read_exact(&mut payload).await.unwrap();
        Some((head.opcode, payload))
    }

    #[tokio::test]
    async fn bytes_cross_the_tunnel_both_ways() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut inner = tunnel(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);

        // Fragmented and large messages; a ping in between.
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = client_frame(false, OP_BINARY, b"hel");
        wire.extend(client_frame(true, OP_PING, b"p"));
        wire.extend(client_frame(true, OP_CONTINUATION, b"lo"));
        wire.extend(client_frame(true, OP_BINARY, &big));
        client_write.write_all(&wire).await.unwrap();
        let mut got = vec![0; 5 + big.len()];
        inner.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"hello");
        assert!(got[5..] == big[..]);
        assert_eq!(
            server_frame(&mut client_read).await,
            Some((OP_PONG, b"p".to_vec()))
        );

        inner.write_all(b"from the server").await.unwrap();
        let (opcode, payload) = server_frame(&mut client_read).await.unwrap();
        assert_eq!((opcode, &payload[..]), (OP_BINARY, &b"from the server"[..]));

        // The client closes: the byte stream ends, the close is answered.
        client_write
            .write_all(&client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        let mut rest = Vec::new();
        inner.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(server_frame(&mut client_read).await.unwrap().0, OP_CLOSE);
    }

    #[tokio::test]
    async fn the_end_of_the_byte_stream_closes_the_websocket() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let inner = tunnel(server);
        let (mut client_read, _client_write) = tokio::io::split(client);
        drop(inner);
        let (opcode, payload) = server_frame(&mut client_read).await.unwrap();
        assert_eq!(opcode, OP_CLOSE);
        assert_eq!(payload, 1000u16.to_be_bytes());
    }

    #[tokio::test]
    async fn text_and_unmasked_frames_are_refused() {
        for (frame, code) in [
            (client_frame(true, OP_TEXT, b"hi"), CLOSE_UNSUPPORTED_DATA),
            (vec![0x82, 0x01, b'x'], CLOSE_PROTOCOL_ERROR),
            (client_frame(true, 0x3, b""), CLOSE_PROTOCOL_ERROR),
            (client_frame(false, OP_PING, b""), CLOSE_PROTOCOL_ERROR),
        ] {
            let (client, server) = tokio::io::duplex(1 << 16);
            let mut inner = tunnel(server);
            let (mut client_read, mut client_write) = tokio::io::split(client);
            client_write.write_all(&frame).await.unwrap();
            let (opcode, payload) = server_frame(&mut client_read).await.unwrap();
            assert_eq!(opcode, OP_CLOSE);
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
            let mut rest = Vec::new();
            inner.read_to_end(&mut rest).await.unwrap();
        }
    }
}
