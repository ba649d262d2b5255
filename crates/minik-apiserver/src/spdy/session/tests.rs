//! The session against a test client written with the same frame and header codecs, over an
//! in-memory pipe.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::spdy::headers::{Compressor, Decompressor};

const DEADLINE: Duration = Duration::from_secs(20);

/// The client end of a session.
struct Client {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
    buf: BytesMut,
    compressor: Compressor,
    decompressor: Decompressor,
    next_id: u32,
}

impl Client {
    fn start(config: Config) -> (Client, Incoming) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let incoming = serve(server, config);
        let (read, write) = tokio::io::split(client);
        let client = Client {
            read,
            write,
            buf: BytesMut::new(),
            compressor: Compressor::new(),
            decompressor: Decompressor::new(1 << 20),
            next_id: 1,
        };
        (client, incoming)
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.write.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// Opens a stream with `pairs` as its headers; its id.
    async fn open(&mut self, pairs: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let block = HeaderBlock(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        );
        let headers = self.compressor.compress(&block).unwrap();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
        id
    }

    /// The next frame, or `None` when the server closed the connection.
    async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(frame) = Frame::decode(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                if self.read.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        })
        .await
        .expect("a frame from the server in time")
    }
}

async fn next_stream(incoming: &mut Incoming) -> NewStream {
    tokio::time::timeout(DEADLINE, incoming.next())
        .await
        .expect("a stream in time")
        .expect("the session is open")
}

/// A session with `config` and one stream the client opened and the server accepted: the
/// client, the session's incoming streams, the stream's id and the server's ends of it.
async fn one_stream(config: Config) -> (Client, Incoming, u32, StreamReader, StreamWriter) {
    let (mut client, mut incoming) = Client::start(config);
    let id = client.open(&[]).await;
    let (reader, writer) = next_stream(&mut incoming).await.accept().await.unwrap();
    (client, incoming, id, reader, writer)
}

#[tokio::test]
async fn a_stream_carries_data_both_ways_and_finishes() {
    let (mut client, mut incoming) = Client::start(Config::default());
    let id = client.open(&[("streamType", "data"), ("port", "80")]).await;
    let stream = next_stream(&mut incoming).await;
    assert_eq!(stream.id, id);
    assert_eq!(stream.headers.get("streamtype"), Some("data"));
    assert_eq!(stream.headers.get("PORT"), Some("80"));
    let (mut reader, mut writer) = stream.accept().await.unwrap();

    match client.frame().await.unwrap() {
        Frame::SynReply {
            stream_id, headers, ..
        } => {
            assert_eq!(stream_id, id);
            assert_eq!(
                client.decompressor.decompress(&headers).unwrap(),
                HeaderBlock::default()
            );
        }
        other => panic!("expected SYN_REPLY, got {other:?}"),
    }

    client
        .send(Frame::Data {
            stream_id: id,
            flags: 0,
            data: Bytes::from_static(b"ping?"),
        })
        .await;
    client
        .send(Frame::Data {
            stream_id: id,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"!"),
        })
        .await;
    assert_eq!(reader.read().await.unwrap().unwrap(), "ping?");
    assert_eq!(reader.read().await.unwrap().unwrap(), "!");
    assert_eq!(reader.read().await.unwrap(), None);

    writer.write(b"pong").await.unwrap();
    writer.finish().await.unwrap();
    assert_eq!(writer.finish().await.unwrap_err(), StreamError::Finished);
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::Data {
            stream_id: id,
            flags: 0,
            data: Bytes::from_static(b"pong")
        }
    );
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::Data {
            stream_id: id,
            flags: FLAG_FIN,
            data: Bytes::new()
        }
    );
}

#[tokio::test]
async fn pings_are_answered_and_unknown_frames_ignored() {
    let (mut client, _incoming) = Client::start(Config::default());
    client.send(Frame::Unknown { frame_type: 0x42 }).await;
    client
        .send(Frame::Settings {
            flags: 0,
            entries: vec![(0, 4, 100)],
        })
        .await;
    client.send(Frame::Ping { id: 2 }).await; // an answer to a ping of the server's: ignored
    client.send(Frame::Ping { id: 7 }).await;
    assert_eq!(client.frame().await.unwrap(), Frame::Ping { id: 7 });
}

#[tokio::test]
async fn a_reset_stream_fails_its_reader_and_writer() {
    let (mut client, mut incoming) = Client::start(Config::default());
    let id = client.open(&[("a", "b")]).await;
    let (mut reader, mut writer) = next_stream(&mut incoming).await.accept().await.unwrap();
    client
        .send(Frame::RstStream {
            stream_id: id,
            status: rst::CANCEL,
        })
        .await;
    assert_eq!(reader.read().await.unwrap_err(), StreamError::Reset);
    assert_eq!(writer.write(b"x").await.unwrap_err(), StreamError::Reset);
}

#[tokio::test]
async fn streams_are_refused_when_nobody_takes_them_or_ids_go_backwards() {
    let (mut client, mut incoming) = Client::start(Config::default());
    let first = client.open(&[]).await;
    next_stream(&mut incoming).await.refuse(rst::CANCEL).await;
    // Skip the refused SYN_REPLY-less answer.
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::RstStream {
            stream_id: first,
            status: rst::CANCEL
        }
    );
    // An id not above the last one.
    client.next_id = first;
    client.open(&[]).await;
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::RstStream {
            stream_id: first,
            status: rst::PROTOCOL_ERROR
        }
    );
    drop(incoming);
    let id = client.open(&[]).await;
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::RstStream {
            stream_id: id,
            status: rst::REFUSED_STREAM
        }
    );
}

#[tokio::test]
async fn a_malformed_frame_ends_the_session_with_goaway() {
    let (mut client, mut incoming, id, mut reader, _writer) = one_stream(Config::default()).await;
    client.frame().await.unwrap(); // SYN_REPLY
    client.send_raw(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0]).await;
    assert_eq!(
        client.frame().await.unwrap(),
        Frame::GoAway {
            last_good_stream_id: id,
            status: goaway::PROTOCOL_ERROR
        }
    );
    assert_eq!(reader.read().await.unwrap_err(), StreamError::SessionClosed);
    assert!(incoming.next().await.is_none());
}

#[tokio::test]
async fn a_header_block_that_is_not_zlib_ends_the_session() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client
        .send(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: Bytes::from_static(b"plain text"),
        })
        .await;
    assert!(matches!(
        client.frame().await,
        Some(Frame::GoAway {
            status: goaway::PROTOCOL_ERROR,
            ..
        })
    ));
    assert!(incoming.next().await.is_none());
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// The server sends 3 MiB to a client that keeps the windows: no frame goes beyond a window,
/// and every byte arrives in order.
#[tokio::test]
async fn sending_waits_for_the_windows_of_a_client_with_flow_control() {
    let (mut client, _incoming, id, _reader, mut writer) = one_stream(Config::default()).await;
    let payload = pattern(3 << 20);
    let sent = payload.clone();
    let sender = tokio::spawn(async move {
        writer.write(&sent).await.unwrap();
        writer.finish().await.unwrap();
    });
    assert!(matches!(client.frame().await, Some(Frame::SynReply { .. })));
    let window = 64 * 1024i64;
    let (mut stream_window, mut session_window) = (window, window);
    let mut received = Vec::new();
    loop {
        match client.frame().await.expect("the stream's data") {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                assert_eq!(stream_id, id);
                stream_window -= data.len() as i64;
                session_window -= data.len() as i64;
                assert!(
                    stream_window >= 0 && session_window >= 0,
                    "the server overran a window"
                );
                received.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    break;
                }
                // Give the window back once half of it is used, as a browser would.
                if stream_window < window / 2 {
                    let delta = (window - stream_window) as u32;
                    client
                        .send(Frame::WindowUpdate {
                            stream_id: id,
                            delta,
                        })
                        .await;
                    client
                        .send(Frame::WindowUpdate {
                            stream_id: 0,
                            delta,
                        })
                        .await;
                    stream_window = window;
                    session_window = window;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == payload, "the data arrived changed");
    sender.await.unwrap();
}

/// A larger initial window from SETTINGS counts too.
#[tokio::test]
async fn settings_change_the_initial_window() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client
        .send(Frame::Settings {
            flags: 0,
            entries: vec![(0, frame::settings::INITIAL_WINDOW_SIZE, 16)],
        })
        .await;
    let id = client.open(&[]).await;
    let (_reader, mut writer) = next_stream(&mut incoming).await.accept().await.unwrap();
    let sender = tokio::spawn(async move { writer.write(&[1u8; 40]).await });
    assert!(matches!(client.frame().await, Some(Frame::SynReply { .. })));
    let mut got = 0;
    while got < 40 {
        match client.frame().await.unwrap() {
            Frame::Data { data, .. } => {
                assert!(
                    data.len() <= 16,
                    "a frame of {} bytes beyond a window of 16",
                    data.len()
                );
                got += data.len();
                client
                    .send(Frame::WindowUpdate {
                        stream_id: id,
                        delta: data.len() as u32,
                    })
                    .await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sender.await.unwrap().unwrap();
}

/// kubectl's spdystream sends no WINDOW_UPDATE at all: after the grace period the server stops
/// waiting for windows, and 3 MiB get through.
#[tokio::test]
async fn sending_goes_on_for_a_client_without_flow_control() {
    let config = Config {
        flow_control_grace: Duration::from_millis(50),
        ..Config::default()
    };
    let (mut client, _incoming, id, _reader, mut writer) = one_stream(config).await;
    let payload = pattern(3 << 20);
    let sent = payload.clone();
    let sender = tokio::spawn(async move {
        writer.write(&sent).await.unwrap();
        writer.finish().await.unwrap();
    });
    let mut received = Vec::new();
    loop {
        match client.frame().await.expect("the stream's data") {
            Frame::SynReply { .. } => {}
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                assert_eq!(stream_id, id);
                received.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == payload, "the data arrived changed");
    sender.await.unwrap();
}

/// The client sends 3 MiB without waiting for windows while the consumer is slow: everything
/// arrives, and the server gives every consumed byte back with WINDOW_UPDATEs.
#[tokio::test]
async fn receiving_gives_windows_back_and_holds_back_a_client_that_ignores_them() {
    let (client, _incoming, id, mut reader, writer) = one_stream(Config::default()).await;
    // Nothing to send: only WINDOW_UPDATEs come back.
    drop(writer);
    let payload = pattern(3 << 20);
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(data) = reader.read().await.unwrap() {
            got.extend_from_slice(&data);
            if got.len() % (256 * 1024) < data.len() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        got
    });
    let Client {
        read,
        mut write,
        mut buf,
        ..
    } = client;
    let mut read = read;
    let counter = tokio::spawn(async move {
        let (mut stream_updates, mut session_updates) = (0u64, 0u64);
        loop {
            loop {
                match Frame::decode(&mut buf).unwrap() {
                    Some(Frame::WindowUpdate {
                        stream_id: 0,
                        delta,
                    }) => session_updates += u64::from(delta),
                    Some(Frame::WindowUpdate { stream_id, delta }) if stream_id == id => {
                        stream_updates += u64::from(delta)
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if read.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return (stream_updates, session_updates);
            }
        }
    });
    for chunk in payload.chunks(40_000) {
        let mut out = BytesMut::new();
        Frame::Data {
            stream_id: id,
            flags: 0,
            data: Bytes::copy_from_slice(chunk),
        }
        .encode(&mut out);
        write.write_all(&out).await.unwrap();
    }
    let mut out = BytesMut::new();
    Frame::Data {
        stream_id: id,
        flags: FLAG_FIN,
        data: Bytes::new(),
    }
    .encode(&mut out);
    write.write_all(&out).await.unwrap();
    let got = tokio::time::timeout(DEADLINE, consumer)
        .await
        .unwrap()
        .unwrap();
    assert!(got == payload, "the data arrived changed");
    // Close the connection so that the counter sees the end.
    write.shutdown().await.unwrap();
    drop(write);
    let (stream_updates, session_updates) = tokio::time::timeout(DEADLINE, counter)
        .await
        .unwrap()
        .unwrap();
    let total = payload.len() as u64;
    // The session gets all but less than half a window back; the stream stops getting windows
    // once the client has finished it, which it may do while data is still queued.
    assert!(
        session_updates > total - 32 * 1024 && session_updates <= total,
        "{session_updates}"
    );
    assert!(
        stream_updates > total - 512 * 1024 && stream_updates <= total,
        "{stream_updates}"
    );
}

#[tokio::test]
async fn the_session_ends_when_the_client_closes_the_connection() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client.open(&[]).await;
    let (mut reader, mut writer) = next_stream(&mut incoming).await.accept().await.unwrap();
    drop(client);
    assert_eq!(reader.read().await.unwrap_err(), StreamError::SessionClosed);
    assert_eq!(
        writer.write(b"x").await.unwrap_err(),
        StreamError::SessionClosed
    );
    assert!(incoming.next().await.is_none());
}
