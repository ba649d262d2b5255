//! The frames of an exec tunnel to a node agent (and of minik's own `minik-exec` protocol,
//! which is the same): `[channel: u8][length: u32 big-endian][payload]`, on Kubernetes'
//! remotecommand channel numbers.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Input for the command (to the agent); an empty frame is the end of it.
pub const STDIN: u8 = 0;
/// The command's standard output (from the agent).
pub const STDOUT: u8 = 1;
/// The command's standard error (from the agent).
pub const STDERR: u8 = 2;
/// The outcome, a `Status` as JSON: the agent's last frame.
pub const ERROR: u8 = 3;
/// A terminal size, `{"Width":W,"Height":H}` (to the agent).
pub const RESIZE: u8 = 4;

/// The largest payload of one frame; longer data is split.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame: its channel and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub channel: u8,
    pub payload: Bytes,
}

/// Appends `payload` on `channel` to `out`, split into frames of at most [`MAX_FRAME`] bytes;
/// an empty payload is one empty frame.
pub fn encode(out: &mut BytesMut, channel: u8, payload: &[u8]) {
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        out.put_u8(channel);
        out.put_u32(0);
        return;
    }
    for chunk in chunks {
        out.put_u8(channel);
        // A chunk is at most MAX_FRAME (1 MiB) long.
        out.put_u32(chunk.len() as u32);
        out.put_slice(chunk);
    }
}

/// Writes `payload` on `channel` and flushes.
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    channel: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(payload.len().min(MAX_FRAME) + 5);
    encode(&mut out, channel, payload);
    w.write_all(&out).await?;
    w.flush().await
}

/// Reads the next frame: `None` when the stream ends cleanly between frames. A frame longer
/// than [`MAX_FRAME`], or an end inside a frame, is an error.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    match r.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..]).await?,
    };
    let channel = head[0];
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("an exec frame of {len} bytes on channel {channel}: the most is {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(Frame {
        channel,
        payload: Bytes::from(payload),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_long_payloads_are_split() {
        let big: Vec<u8> = (0..MAX_FRAME + 10).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        encode(&mut wire, STDOUT, b"out");
        encode(&mut wire, STDIN, b"");
        encode(&mut wire, STDERR, &big);
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 3, b'o', b'u', b't']);
        let mut r = &wire[..];
        let mut got = Vec::new();
        while let Some(frame) = read(&mut r).await.unwrap() {
            got.push(frame);
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].payload, &b"out"[..]);
        assert_eq!((got[1].channel, got[1].payload.len()), (STDIN, 0));
        assert_eq!(got[2].payload.len(), MAX_FRAME);
        assert_eq!(got[3].payload.len(), 10);
        let joined: Vec<u8> = [&got[2].payload[..], &got[3].payload[..]].concat();
        assert!(joined == big);
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut r: &[u8] = &[1, 0, 0x10, 0, 1];
        assert_eq!(
            read(&mut r).await.unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
        let mut r: &[u8] = &[1, 0, 0, 0, 5, b'a'];
        assert!(read(&mut r).await.is_err());
        let mut r: &[u8] = &[1, 0];
        assert!(read(&mut r).await.is_err());
        let mut r: &[u8] = &[];
        assert_eq!(read(&mut r).await.unwrap(), None);
    }
}
