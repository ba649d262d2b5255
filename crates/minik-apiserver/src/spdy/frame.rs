//! SPDY/3.1 frames on the wire: decoding from a buffer of received bytes and encoding into one.
//! Header blocks stay compressed here; `headers.rs` turns them into name/value pairs.
//!
//! Every frame starts with 8 bytes. A control frame: the control bit, the version (15 bits,
//! 3), the type (16 bits), flags (8 bits) and the payload length (24 bits). A data frame: the
//! control bit clear, the stream id (31 bits), flags and length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The SPDY version of every control frame.
pub const VERSION: u16 = 3;

/// The length of a frame's header.
pub const HEADER_LEN: usize = 8;

/// The largest payload a frame can carry (its length is 24 bits).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// `FLAG_FIN`, for data frames and SYN_STREAM, SYN_REPLY, HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// `FLAG_UNIDIRECTIONAL` of SYN_STREAM: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const PROTOCOL_ERROR: u32 = 1;
}

/// SETTINGS ids.
pub mod settings {
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// One frame. Stream ids and window deltas are 31-bit values (the reserved top bit is dropped
/// on decoding and written as zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value) per setting.
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type SPDY/3.1 does not define; receivers ignore it.
    Unknown {
        frame_type: u16,
    },
}

/// Why received bytes are not a valid frame; the session ends with a protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY version {0} is not supported (only 3)")]
    UnsupportedVersion(u16),
    #[error("a {frame} frame of {length} bytes is malformed")]
    BadLength { frame: &'static str, length: usize },
    #[error("a {frame} frame names stream 0")]
    ZeroStreamId { frame: &'static str },
}

fn id31(v: u32) -> u32 {
    v & 0x7fff_ffff
}

impl Frame {
    /// Takes one whole frame off the front of `buf`: `Ok(None)` while its bytes have not all
    /// arrived (nothing is consumed then).
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < HEADER_LEN + length {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let mut payload = buf.split_to(length).freeze();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: id31(first),
                flags,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let frame_type = (first & 0xffff) as u16;
        let bad = |frame: &'static str| FrameError::BadLength { frame, length };
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                if length < 10 {
                    return Err(bad("SYN_STREAM"));
                }
                let stream_id = id31(payload.get_u32());
                let associated_to = id31(payload.get_u32());
                let priority = payload.get_u8() >> 5;
                let _slot = payload.get_u8();
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId {
                        frame: "SYN_STREAM",
                    });
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers: payload,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let name = if frame_type == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                if length < 4 {
                    return Err(bad(name));
                }
                let stream_id = id31(payload.get_u32());
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId { frame: name });
                }
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers: payload,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers: payload,
                    }
                }
            }
            TYPE_RST_STREAM => {
                if length != 8 {
                    return Err(bad("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: id31(payload.get_u32()),
                    status: payload.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                if length < 4 {
                    return Err(bad("SETTINGS"));
                }
                let count = payload.get_u32() as usize;
                if count.checked_mul(8) != Some(length - 4) {
                    return Err(bad("SETTINGS"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let flags_id = payload.get_u32();
                        (
                            (flags_id >> 24) as u8,
                            flags_id & 0xff_ffff,
                            payload.get_u32(),
                        )
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                if length != 4 {
                    return Err(bad("PING"));
                }
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            TYPE_GOAWAY => {
                // SPDY/2 had no status; accept both.
                if length != 8 && length != 4 {
                    return Err(bad("GOAWAY"));
                }
                let last_good_stream_id = id31(payload.get_u32());
                let status = if length == 8 { payload.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            TYPE_WINDOW_UPDATE => {
                if length != 8 {
                    return Err(bad("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: id31(payload.get_u32()),
                    delta: id31(payload.get_u32()),
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    /// Appends the frame's bytes to `out`. A payload longer than [`MAX_PAYLOAD`] is a bug of
    /// the caller (the session splits data and bounds header blocks), so it is truncated
    /// rather than written with a wrong length.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let data = &data[..data.len().min(MAX_PAYLOAD)];
                out.reserve(HEADER_LEN + data.len());
                out.put_u32(id31(*stream_id));
                put_flags_length(out, *flags, data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let headers = &headers[..headers.len().min(MAX_PAYLOAD - 10)];
                control(out, TYPE_SYN_STREAM, *flags, 10 + headers.len());
                out.put_u32(id31(*stream_id));
                out.put_u32(id31(*associated_to));
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0);
                out.put_slice(headers);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let frame_type = if matches!(self, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let headers = &headers[..headers.len().min(MAX_PAYLOAD - 4)];
                control(out, frame_type, *flags, 4 + headers.len());
                out.put_u32(id31(*stream_id));
                out.put_slice(headers);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(id31(*stream_id));
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                let entries = &entries[..entries.len().min((MAX_PAYLOAD - 4) / 8)];
                control(out, TYPE_SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((u32::from(*flags) << 24) | (id & 0xff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(id31(*last_good_stream_id));
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.put_u32(id31(*stream_id));
                out.put_u32(id31(*delta));
            }
            Frame::Unknown { frame_type } => control(out, *frame_type, 0, 0),
        }
    }
}

fn put_flags_length(out: &mut BytesMut, flags: u8, length: usize) {
    out.put_u32((u32::from(flags) << 24) | (length as u32 & 0xff_ffff));
}

fn control(out: &mut BytesMut, frame_type: u16, flags: u8, length: usize) {
    out.reserve(HEADER_LEN + length);
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    put_flags_length(out, flags, length);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        // Every prefix is incomplete and consumes nothing.
        for cut in 0..buf.len() {
            let mut part = BytesMut::from(&buf[..cut]);
            assert_eq!(
                Frame::decode(&mut part).unwrap(),
                None,
                "{frame:?} at {cut}"
            );
            assert_eq!(part.len(), cut);
        }
        buf.extend_from_slice(b"next");
        assert_eq!(Frame::decode(&mut buf).unwrap(), Some(frame));
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data {
            stream_id: 7,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::Data {
            stream_id: 0x7fff_ffff,
            flags: 0,
            data: Bytes::new(),
        });
        round_trip(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            headers: Bytes::from_static(b"\x78\x9c"),
        });
        round_trip(Frame::SynReply {
            stream_id: 3,
            flags: 0,
            headers: Bytes::from_static(b"abc"),
        });
        round_trip(Frame::Headers {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: Bytes::new(),
        });
        round_trip(Frame::RstStream {
            stream_id: 5,
            status: rst::CANCEL,
        });
        round_trip(Frame::Settings {
            flags: 1,
            entries: vec![(0, settings::INITIAL_WINDOW_SIZE, 1 << 20), (1, 4, 100)],
        });
        round_trip(Frame::Ping { id: 0xffff_fffe });
        round_trip(Frame::GoAway {
            last_good_stream_id: 9,
            status: goaway::PROTOCOL_ERROR,
        });
        round_trip(Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        });
        round_trip(Frame::Unknown { frame_type: 0x55 });
    }

    #[test]
    fn the_wire_format_is_spdy_3() {
        let mut buf = BytesMut::new();
        Frame::Ping { id: 1 }.encode(&mut buf);
        assert_eq!(&buf[..], [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        buf.clear();
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ab"),
        }
        .encode(&mut buf);
        assert_eq!(&buf[..], [0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']);
        buf.clear();
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 0x10000,
        }
        .encode(&mut buf);
        assert_eq!(
            &buf[..],
            [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0]
        );
    }

    #[test]
    fn malformed_frames_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1], "SPDY version 2"),
            (
                &[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0],
                "a PING frame of 2 bytes",
            ),
            (
                &[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1],
                "a RST_STREAM frame of 4 bytes",
            ),
            (
                &[0x80, 3, 0, 4, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0],
                "a SETTINGS frame of 8 bytes",
            ),
            (
                &[0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "names stream 0",
            ),
        ];
        for (bytes, message) in cases {
            let error = Frame::decode(&mut BytesMut::from(*bytes)).unwrap_err();
            assert!(error.to_string().contains(message), "{error} / {message}");
        }
    }

    proptest! {
        /// Whatever the bytes, decoding returns frames, "need more" or an error; it never
        /// panics and never consumes bytes it did not return.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                let before = buf.len();
                match Frame::decode(&mut buf) {
                    Ok(Some(frame)) => {
                        prop_assert!(buf.len() < before);
                        // What was decoded encodes again without panicking.
                        frame.encode(&mut BytesMut::new());
                    }
                    Ok(None) => {
                        prop_assert_eq!(buf.len(), before);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }

        /// Valid frame headers with random payloads, the likelier way to reach every branch.
        #[test]
        fn random_control_frames_never_panic(
            frame_type in 0u16..12,
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut buf = BytesMut::new();
            buf.put_u16(0x8003);
            buf.put_u16(frame_type);
            buf.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            buf.put_slice(&payload);
            if let Ok(Some(frame)) = Frame::decode(&mut buf) {
                let mut again = BytesMut::new();
                frame.encode(&mut again);
                prop_assert_eq!(Frame::decode(&mut again).unwrap(), Some(frame));
            }
        }
    }
}
