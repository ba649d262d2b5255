//! The server side of a SPDY/3.1 session over any byte stream: a task reads frames, a task
//! writes them, and the streams the client opens come out of [`Incoming`] as readers and
//! writers with flow control.
//!
//! Flow control. Receiving: every stream and the session start with a 64 KiB window; as the
//! consumer takes data, WINDOW_UPDATEs give the window back (stream and session), so a client
//! that keeps to its windows never stalls. A client that ignores them — kubectl's spdystream
//! does not implement flow control at all — is slowed by TCP instead: past
//! [`Config::max_buffered`] bytes queued on one stream, the session stops reading until the
//! consumer catches up. Sending: windows are counted from the start and data waits for
//! WINDOW_UPDATEs, as SPDY/3.1 requires. A client that has never sent a WINDOW_UPDATE or an
//! initial window size when a window runs out for [`Config::flow_control_grace`] is taken for
//! one without flow control (spdystream, which the kubelet answers without windows too), and
//! windows stop being waited for on that session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use super::frame::{self, goaway, rst, Frame, FLAG_FIN, FLAG_UNIDIRECTIONAL};
use super::headers::{Compressor, Decompressor, HeaderBlock};

/// Settings of a session.
#[derive(Clone, Debug)]
pub struct Config {
    /// The initial window of every stream and of the session, both ways (SPDY/3.1: 64 KiB).
    pub initial_window: u32,
    /// Bytes queued on one stream before the session stops reading from the client.
    pub max_buffered: usize,
    /// Streams open at once; more are refused.
    pub max_streams: usize,
    /// The largest header block accepted, uncompressed.
    pub max_header_bytes: usize,
    /// The largest data frame sent.
    pub max_data_frame: usize,
    /// How long a sender waits on an exhausted window of a client that has shown no sign of
    /// flow control before it stops waiting for windows on the session.
    pub flow_control_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_window: 64 * 1024,
            max_buffered: 256 * 1024,
            max_streams: 1000,
            max_header_bytes: 256 * 1024,
            max_data_frame: 32 * 1024,
            flow_control_grace: Duration::from_millis(250),
        }
    }
}

/// Why a stream operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the stream was reset")]
    Reset,
    #[error("the SPDY connection is closed")]
    SessionClosed,
    #[error("the stream is already finished on this side")]
    Finished,
}

/// A frame for the writer task; header blocks are compressed there, in sending order.
enum Out {
    Frame(Frame),
    SynReply {
        stream_id: u32,
        headers: HeaderBlock,
    },
}

#[derive(Default)]
struct Signals {
    /// Data, FIN or reset for the stream's reader.
    readable: Notify,
    /// Window or reset for the stream's writer.
    writable: Notify,
}

struct StreamState {
    signals: Arc<Signals>,
    inbound: VecDeque<Bytes>,
    buffered: usize,
    remote_fin: bool,
    local_fin: bool,
    reset: bool,
    /// The reader handle is gone: data for the stream is dropped.
    reader_gone: bool,
    /// Handles alive (the [`NewStream`], then its reader and writer); the stream is forgotten
    /// when the last one goes.
    handles: u8,
    send_window: i64,
    /// Bytes received and consumed but not yet given back with a WINDOW_UPDATE.
    unacked: u32,
}

/// Whether the client does flow control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerFlowControl {
    Unknown,
    Yes,
    No,
}

struct State {
    streams: HashMap<u32, StreamState>,
    last_stream_id: u32,
    closed: bool,
    going_away: bool,
    initial_send_window: i64,
    session_send_window: i64,
    session_unacked: u32,
    peer_flow_control: PeerFlowControl,
}

struct Shared {
    state: Mutex<State>,
    out: mpsc::Sender<Out>,
    config: Config,
    /// A reader took data off its queue: the read loop waits here when a stream's queue is
    /// full.
    drained: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the session; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, out: Out) -> Result<(), StreamError> {
        self.out
            .send(out)
            .await
            .map_err(|_| StreamError::SessionClosed)
    }

    fn wake_all_writers(state: &State) {
        for s in state.streams.values() {
            s.signals.writable.notify_one();
        }
    }

    /// Gives back `n` consumed bytes of `stream_id`: the WINDOW_UPDATEs due, if any.
    fn consumed(&self, state: &mut State, stream_id: u32, n: usize) -> Vec<Frame> {
        let half = self.config.initial_window / 2;
        let mut updates = Vec::new();
        state.session_unacked = state.session_unacked.saturating_add(n as u32);
        if state.session_unacked >= half {
            updates.push(Frame::WindowUpdate {
                stream_id: 0,
                delta: std::mem::take(&mut state.session_unacked),
            });
        }
        if let Some(s) = state.streams.get_mut(&stream_id) {
            s.unacked = s.unacked.saturating_add(n as u32);
            if s.unacked >= half && !s.remote_fin && !s.reset {
                updates.push(Frame::WindowUpdate {
                    stream_id,
                    delta: std::mem::take(&mut s.unacked),
                });
            }
        }
        updates
    }

    /// One handle of `stream_id` is gone.
    fn release(&self, state: &mut State, stream_id: u32) {
        if let Some(s) = state.streams.get_mut(&stream_id) {
            s.handles = s.handles.saturating_sub(1);
            if s.handles == 0 {
                state.streams.remove(&stream_id);
            }
        }
    }
}

/// The streams a client opens, in order; ends when the session does.
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<NewStream>,
}

impl Incoming {
    pub async fn next(&mut self) -> Option<NewStream> {
        self.rx.recv().await
    }
}

/// A stream the client opened, not yet answered.
pub struct NewStream {
    pub id: u32,
    pub headers: HeaderBlock,
    shared: Arc<Shared>,
    answered: bool,
}

impl NewStream {
    /// Answers with SYN_REPLY; the stream's reader and writer.
    pub async fn accept(mut self) -> Result<(StreamReader, StreamWriter), StreamError> {
        self.answered = true;
        let signals = {
            let mut state = self.shared.lock();
            let s = state.streams.get_mut(&self.id).ok_or(StreamError::Reset)?;
            // This handle becomes the reader and the writer.
            s.handles += 1;
            s.signals.clone()
        };
        let reader = StreamReader {
            id: self.id,
            shared: self.shared.clone(),
            signals: signals.clone(),
        };
        let writer = StreamWriter {
            id: self.id,
            shared: self.shared.clone(),
            signals,
        };
        self.shared
            .send(Out::SynReply {
                stream_id: self.id,
                headers: HeaderBlock::default(),
            })
            .await?;
        Ok((reader, writer))
    }

    /// Refuses the stream with RST_STREAM.
    pub async fn refuse(mut self, status: u32) {
        self.answered = true;
        {
            let mut state = self.shared.lock();
            if let Some(s) = state.streams.get_mut(&self.id) {
                s.reset = true;
            }
            self.shared.release(&mut state, self.id);
        }
        let _ = self
            .shared
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status,
            }))
            .await;
    }
}

impl Drop for NewStream {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut state = self.shared.lock();
        self.shared.release(&mut state, self.id);
        let _ = self.shared.out.try_send(Out::Frame(Frame::RstStream {
            stream_id: self.id,
            status: rst::REFUSED_STREAM,
        }));
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    id: u32,
    shared: Arc<Shared>,
    signals: Arc<Signals>,
}

impl StreamReader {
    /// The next data: `Ok(None)` once the client has finished the stream.
    pub async fn read(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            let (data, updates) = {
                let mut state = self.shared.lock();
                let closed = state.closed;
                let Some(s) = state.streams.get_mut(&self.id) else {
                    return Err(StreamError::Reset);
                };
                if s.reset {
                    return Err(StreamError::Reset);
                }
                match s.inbound.pop_front() {
                    Some(data) => {
                        s.buffered -= data.len();
                        self.shared.drained.notify_one();
                        let updates = self.shared.consumed(&mut state, self.id, data.len());
                        (data, updates)
                    }
                    None if s.remote_fin => return Ok(None),
                    None if closed => return Err(StreamError::SessionClosed),
                    None => (Bytes::new(), Vec::new()),
                }
            };
            if data.is_empty() {
                // Nothing queued (empty data frames are never queued): wait.
                self.signals.readable.notified().await;
                continue;
            }
            for update in updates {
                // The data is delivered; a lost update only matters to a dead session.
                let _ = self.shared.send(Out::Frame(update)).await;
            }
            return Ok(Some(data));
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let dropped = match state.streams.get_mut(&self.id) {
            Some(s) => {
                s.reader_gone = true;
                s.inbound.clear();
                std::mem::take(&mut s.buffered)
            }
            None => 0,
        };
        // What was queued is consumed as far as the session window is concerned.
        for update in self.shared.consumed(&mut state, self.id, dropped) {
            if update_is_session(&update) {
                let _ = self.shared.out.try_send(Out::Frame(update));
            }
        }
        self.shared.drained.notify_one();
        self.shared.release(&mut state, self.id);
    }
}

fn update_is_session(frame: &Frame) -> bool {
    matches!(frame, Frame::WindowUpdate { stream_id: 0, .. })
}

/// The sending half of a stream. Dropped without [`finish`](StreamWriter::finish), it resets
/// the stream.
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    signals: Arc<Signals>,
}

impl StreamWriter {
    /// Sends `data`, waiting for window as flow control requires.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        while !data.is_empty() {
            let n = self.reserve(data.len()).await?;
            self.shared
                .send(Out::Frame(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: Bytes::copy_from_slice(&data[..n]),
                }))
                .await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Takes up to `wanted` bytes of window, waiting until there is some.
    async fn reserve(&self, wanted: usize) -> Result<usize, StreamError> {
        let grace = self.shared.config.flow_control_grace;
        loop {
            let peer = {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(StreamError::SessionClosed);
                }
                let session_window = state.session_send_window;
                let peer = state.peer_flow_control;
                let Some(s) = state.streams.get_mut(&self.id) else {
                    return Err(StreamError::Reset);
                };
                if s.reset {
                    return Err(StreamError::Reset);
                }
                if s.local_fin {
                    return Err(StreamError::Finished);
                }
                let window = if peer == PeerFlowControl::No {
                    i64::MAX
                } else {
                    s.send_window.min(session_window)
                };
                if window > 0 {
                    let n = wanted
                        .min(self.shared.config.max_data_frame)
                        .min(usize::try_from(window).unwrap_or(usize::MAX));
                    // Counted even when not waited for, so that a later sign of flow control
                    // finds the right numbers.
                    s.send_window -= n as i64;
                    state.session_send_window -= n as i64;
                    return Ok(n);
                }
                peer
            };
            if peer == PeerFlowControl::Unknown {
                if tokio::time::timeout(grace, self.signals.writable.notified())
                    .await
                    .is_err()
                {
                    let mut state = self.shared.lock();
                    if state.peer_flow_control == PeerFlowControl::Unknown {
                        tracing::debug!(
                            "the SPDY client sends no window updates; not waiting for windows"
                        );
                        state.peer_flow_control = PeerFlowControl::No;
                        Shared::wake_all_writers(&state);
                    }
                }
            } else {
                self.signals.writable.notified().await;
            }
        }
    }

    /// Ends this side of the stream (a data frame with FIN).
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(StreamError::SessionClosed);
            }
            let s = state.streams.get_mut(&self.id).ok_or(StreamError::Reset)?;
            if s.reset {
                return Err(StreamError::Reset);
            }
            if s.local_fin {
                return Err(StreamError::Finished);
            }
            s.local_fin = true;
        }
        self.shared
            .send(Out::Frame(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            }))
            .await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let reset_now = match state.streams.get_mut(&self.id) {
            Some(s) if !s.local_fin && !s.reset => {
                s.local_fin = true;
                true
            }
            _ => false,
        };
        if reset_now && !state.closed {
            let _ = self.shared.out.try_send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status: rst::CANCEL,
            }));
        }
        self.shared.release(&mut state, self.id);
    }
}

/// Starts a session over `io`, the connection after `101 Switching Protocols`. The session
/// lives until the client closes the connection, sends a bad frame, or every handle is gone
/// after the client went away.
pub fn serve<T>(io: T, config: Config) -> Incoming
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel(256);
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let window = i64::from(config.initial_window);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            streams: HashMap::new(),
            last_stream_id: 0,
            closed: false,
            going_away: false,
            initial_send_window: window,
            session_send_window: window,
            session_unacked: 0,
            peer_flow_control: PeerFlowControl::Unknown,
        }),
        out: out_tx,
        config,
        drained: Notify::new(),
    });
    tokio::spawn(write_loop(write_half, out_rx, Arc::downgrade(&shared)));
    tokio::spawn(read_loop(read_half, shared, incoming_tx));
    Incoming { rx: incoming_rx }
}

async fn write_loop<W: AsyncWrite>(
    mut io: tokio::io::WriteHalf<W>,
    mut rx: mpsc::Receiver<Out>,
    shared: Weak<Shared>,
) {
    let mut compressor = Compressor::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Gather what is queued into one write.
        while let Some(out) = next.take() {
            let frame = match out {
                Out::Frame(frame) => frame,
                Out::SynReply { stream_id, headers } => match compressor.compress(&headers) {
                    Ok(headers) => Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot compress a SPDY header block");
                        break;
                    }
                },
            };
            frame.encode(&mut buf);
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if io.write_all(&buf).await.is_err() || io.flush().await.is_err() {
            if let Some(shared) = shared.upgrade() {
                close(&shared);
            }
            return;
        }
        buf.clear();
    }
    let _ = io.shutdown().await;
}

/// Marks the session closed and wakes every waiter.
fn close(shared: &Shared) {
    let mut state = shared.lock();
    state.closed = true;
    for s in state.streams.values_mut() {
        s.signals.readable.notify_one();
        s.signals.writable.notify_one();
    }
    shared.drained.notify_one();
}

async fn read_loop<R: AsyncRead>(
    mut io: tokio::io::ReadHalf<R>,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<NewStream>,
) {
    let mut decompressor = Decompressor::new(shared.config.max_header_bytes);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let outcome: Result<(), String> = 'session: loop {
        loop {
            let frame = match Frame::decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => break 'session Err(e.to_string()),
            };
            if let Err(e) = handle_frame(&shared, &mut decompressor, &incoming, frame).await {
                break 'session Err(e);
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(format!("reading from the client: {e}")),
        }
    };
    if let Err(message) = outcome {
        tracing::debug!(error = %message, "SPDY session ends with a protocol error");
        let last = shared.lock().last_stream_id;
        let _ = shared
            .send(Out::Frame(Frame::GoAway {
                last_good_stream_id: last,
                status: goaway::PROTOCOL_ERROR,
            }))
            .await;
    }
    close(&shared);
}

async fn handle_frame(
    shared: &Arc<Shared>,
    decompressor: &mut Decompressor,
    incoming: &mpsc::UnboundedSender<NewStream>,
    frame: Frame,
) -> Result<(), String> {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            // Decompressed before anything else, to keep the zlib context in step.
            let headers = decompressor
                .decompress(&headers)
                .map_err(|e| e.to_string())?;
            let refusal = {
                let mut state = shared.lock();
                if stream_id % 2 == 0 || stream_id <= state.last_stream_id {
                    Some(rst::PROTOCOL_ERROR)
                } else {
                    state.last_stream_id = stream_id;
                    if state.going_away
                        || incoming.is_closed()
                        || state.streams.len() >= shared.config.max_streams
                    {
                        Some(rst::REFUSED_STREAM)
                    } else {
                        let window = state.initial_send_window;
                        state.streams.insert(
                            stream_id,
                            StreamState {
                                signals: Arc::default(),
                                inbound: VecDeque::new(),
                                buffered: 0,
                                remote_fin: flags & FLAG_FIN != 0,
                                local_fin: flags & FLAG_UNIDIRECTIONAL != 0,
                                reset: false,
                                reader_gone: false,
                                handles: 1,
                                send_window: window,
                                unacked: 0,
                            },
                        );
                        None
                    }
                }
            };
            match refusal {
                Some(status) => {
                    shared
                        .send(Out::Frame(Frame::RstStream { stream_id, status }))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                None => {
                    let stream = NewStream {
                        id: stream_id,
                        headers,
                        shared: shared.clone(),
                        answered: false,
                    };
                    // A closed receiver drops the stream, which refuses it.
                    let _ = incoming.send(stream);
                }
            }
        }
        Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            decompressor
                .decompress(&headers)
                .map_err(|e| e.to_string())?;
            if flags & FLAG_FIN != 0 {
                remote_finished(shared, stream_id);
            }
        }
        Frame::SynReply { headers, .. } => {
            // The server opens no streams, so there is nothing to reply to; keep the zlib
            // context in step all the same.
            decompressor
                .decompress(&headers)
                .map_err(|e| e.to_string())?;
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => receive_data(shared, stream_id, flags, data).await?,
        Frame::RstStream { stream_id, .. } => {
            let mut state = shared.lock();
            if let Some(s) = state.streams.get_mut(&stream_id) {
                s.reset = true;
                s.inbound.clear();
                s.buffered = 0;
                s.signals.readable.notify_one();
                s.signals.writable.notify_one();
            }
            shared.drained.notify_one();
        }
        Frame::Settings { entries, .. } => {
            let mut state = shared.lock();
            for (_, id, value) in entries {
                if id == frame::settings::INITIAL_WINDOW_SIZE {
                    let value = i64::from(value.min(0x7fff_ffff));
                    let delta = value - state.initial_send_window;
                    state.initial_send_window = value;
                    for s in state.streams.values_mut() {
                        s.send_window += delta;
                    }
                    state.peer_flow_control = PeerFlowControl::Yes;
                }
            }
            Shared::wake_all_writers(&state);
        }
        Frame::Ping { id } => {
            // Odd ids are the client's; even ones would answer pings of ours (none sent).
            if id % 2 == 1 {
                shared
                    .send(Out::Frame(Frame::Ping { id }))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Frame::GoAway { .. } => {
            shared.lock().going_away = true;
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut state = shared.lock();
            state.peer_flow_control = PeerFlowControl::Yes;
            let delta = i64::from(delta);
            let cap = i64::from(i32::MAX);
            if stream_id == 0 {
                state.session_send_window = (state.session_send_window + delta).min(cap);
                Shared::wake_all_writers(&state);
            } else if let Some(s) = state.streams.get_mut(&stream_id) {
                s.send_window = (s.send_window + delta).min(cap);
                s.signals.writable.notify_one();
            }
        }
        Frame::Unknown { .. } => {}
    }
    Ok(())
}

fn remote_finished(shared: &Shared, stream_id: u32) {
    let mut state = shared.lock();
    if let Some(s) = state.streams.get_mut(&stream_id) {
        s.remote_fin = true;
        s.signals.readable.notify_one();
    }
}

async fn receive_data(
    shared: &Arc<Shared>,
    stream_id: u32,
    flags: u8,
    data: Bytes,
) -> Result<(), String> {
    let n = data.len();
    let (updates, wait) = {
        let mut state = shared.lock();
        let accepted = match state.streams.get_mut(&stream_id) {
            Some(s) if !s.reset && !s.remote_fin && !s.reader_gone => {
                if n > 0 {
                    s.buffered += n;
                    s.inbound.push_back(data);
                }
                if flags & FLAG_FIN != 0 {
                    s.remote_fin = true;
                }
                s.signals.readable.notify_one();
                true
            }
            Some(s) => {
                if flags & FLAG_FIN != 0 {
                    s.remote_fin = true;
                }
                false
            }
            None => false,
        };
        if accepted {
            (Vec::new(), true)
        } else {
            // Dropped data still counts against the session window: give it back now.
            let updates = shared.consumed(&mut state, 0, n);
            (updates, false)
        }
    };
    for update in updates {
        shared
            .send(Out::Frame(update))
            .await
            .map_err(|e| e.to_string())?;
    }
    if wait {
        // A client beyond its window (or without flow control) is held back here.
        loop {
            let notified = shared.drained.notified();
            {
                let state = shared.lock();
                match state.streams.get(&stream_id) {
                    Some(s)
                        if !state.closed
                            && !s.reset
                            && !s.reader_gone
                            && s.buffered > shared.config.max_buffered => {}
                    _ => break,
                }
            }
            notified.await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
