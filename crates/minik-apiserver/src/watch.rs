//! Watch streams as Kubernetes serves them: newline-delimited `{"type": ..., "object": ...}`
//! events, filtered by label and field selectors (an object that stops matching is reported
//! DELETED, one that starts matching ADDED), with optional BOOKMARK events, and ERROR events
//! carrying a `Status` when the watch cannot go on (410 Gone: list again).
//!
//! A large object goes out as its own chunk, the store's bytes shared by every watcher rather
//! than copied into each one's line, and what a watch has sent stays counted against its buffer
//! ([`WatchStream::hold`]) until the connection has written it: a client that stops reading
//! falls behind and is cut like one the server cannot keep up with.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_store::{EventType, Revision, WatchStream};
use serde_json::Value;
use tokio::time::Instant;

use crate::errors::store_error;
use crate::registry::{Filter, Registry};

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// No resourceVersion (or "0"): the current objects as ADDED events, then every change.
    Now,
    /// Every change after this revision.
    After(Revision),
}

/// Options of one watch request.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub start: WatchStart,
    pub filter: Filter,
    /// Send BOOKMARK events at this interval when the client allows them.
    pub bookmarks: Option<Duration>,
    /// Close the stream after this long (`timeoutSeconds`).
    pub timeout: Duration,
    /// Close the stream when this turns true (the server is shutting down).
    pub closing: Option<tokio::sync::watch::Receiver<bool>>,
    /// Notified if the watch is cut as too slow while what it sent is still unwritten: its
    /// client is not reading, so the stream would never be polled to its end; the HTTP server
    /// closes the connection, which frees it.
    pub stalled: Option<Arc<tokio::sync::Notify>>,
}

/// Objects at least this large go out as a chunk of their own, shared with the store and every
/// other watcher; smaller ones are copied into their line, which costs less than two more chunks.
const SHARED_OBJECT_BYTES: usize = 16 << 10;

/// One line of a watch stream, `{"type":...,"object":...}\n`.
pub struct WatchFrame(FrameBytes);

enum FrameBytes {
    /// A line that is not an object's change: a BOOKMARK or an ERROR.
    Line(Bytes),
    /// A change of a small object, copied into its line after [`head`]`(kind)`.
    Event { kind: EventType, line: Bytes },
    /// The line in three parts: the head that names the type, the object, the tail.
    Shared { kind: EventType, object: Bytes },
}

impl WatchFrame {
    /// The event of `kind` for `object`, whose bytes are shared when it is large.
    fn event(kind: EventType, object: Bytes) -> WatchFrame {
        if object.len() < SHARED_OBJECT_BYTES {
            let line = event_line(kind, &object);
            return WatchFrame(FrameBytes::Event { kind, line });
        }
        WatchFrame(FrameBytes::Shared { kind, object })
    }

    /// The frame with its bytes counted against `stream`'s buffer until they are dropped.
    fn held_by(self, stream: &WatchStream) -> WatchFrame {
        WatchFrame(match self.0 {
            FrameBytes::Line(line) => FrameBytes::Line(stream.hold(line)),
            FrameBytes::Event { kind, line } => FrameBytes::Event {
                kind,
                line: stream.hold(line),
            },
            FrameBytes::Shared { kind, object } => FrameBytes::Shared {
                kind,
                object: stream.hold(object),
            },
        })
    }

    /// The whole line in one buffer (a copy, if the object is shared).
    pub fn line(&self) -> Bytes {
        match &self.0 {
            FrameBytes::Line(line) | FrameBytes::Event { line, .. } => line.clone(),
            FrameBytes::Shared { kind, object } => event_line(*kind, object),
        }
    }

    /// The event for an in-process watcher: its type and the object's bytes, shared, not
    /// copied; an ERROR event becomes its error.
    pub fn into_raw(self) -> Result<minik_client::RawWatchEvent, ApiError> {
        match self.0 {
            FrameBytes::Line(line) => minik_client::RawWatchEvent::from_line(line),
            FrameBytes::Event { kind, line } => {
                let object = line.slice(head(kind).len()..line.len() - FRAME_TAIL.len());
                Ok(raw_event(kind, object))
            }
            FrameBytes::Shared { kind, object } => Ok(raw_event(kind, object)),
        }
    }

    /// The line as the chunks of an HTTP body, without copying the object.
    pub fn into_chunks(self) -> impl Iterator<Item = Bytes> {
        let chunks = match self.0 {
            FrameBytes::Line(line) | FrameBytes::Event { line, .. } => [Some(line), None, None],
            FrameBytes::Shared { kind, object } => [
                Some(Bytes::from_static(head(kind))),
                Some(object),
                Some(Bytes::from_static(FRAME_TAIL)),
            ],
        };
        chunks.into_iter().flatten()
    }
}

impl From<Bytes> for WatchFrame {
    fn from(line: Bytes) -> Self {
        WatchFrame(FrameBytes::Line(line))
    }
}

/// The line of `kind`'s event for `object`, in one buffer.
fn event_line(kind: EventType, object: &[u8]) -> Bytes {
    let head = head(kind);
    let mut line = BytesMut::with_capacity(head.len() + object.len() + FRAME_TAIL.len());
    line.put_slice(head);
    line.put_slice(object);
    line.put_slice(FRAME_TAIL);
    line.freeze()
}

fn raw_event(kind: EventType, object: Bytes) -> minik_client::RawWatchEvent {
    let kind = match kind {
        EventType::Added => minik_client::WatchEventType::Added,
        EventType::Modified => minik_client::WatchEventType::Modified,
        EventType::Deleted => minik_client::WatchEventType::Deleted,
    };
    minik_client::RawWatchEvent { kind, object }
}

/// What starts the line of an object's event, up to the object.
fn head(kind: EventType) -> &'static [u8] {
    match kind {
        EventType::Added => b"{\"type\":\"ADDED\",\"object\":",
        EventType::Modified => b"{\"type\":\"MODIFIED\",\"object\":",
        EventType::Deleted => b"{\"type\":\"DELETED\",\"object\":",
    }
}

/// What ends every line after the object.
const FRAME_TAIL: &[u8] = b"}\n";

/// One encoded line of a watch stream.
fn frame(event_type: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(event_type.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(FRAME_TAIL);
    out.freeze()
}

/// The ERROR event that ends a watch, with the error as a `Status`.
pub fn error_frame(error: &ApiError) -> Bytes {
    let status = crate::answer::failure_status(error);
    frame("ERROR", status.to_string().as_bytes())
}

struct Session {
    info: &'static ResourceInfo,
    initial: VecDeque<WatchFrame>,
    stream: Option<WatchStream>,
    filter: Filter,
    bookmarks: Option<tokio::time::Interval>,
    deadline: Instant,
    closing: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Session {
    async fn next_frame(&mut self) -> Option<WatchFrame> {
        if let Some(frame) = self.initial.pop_front() {
            return Some(frame);
        }
        loop {
            let stream = self.stream.as_mut()?;
            let bookmark_tick = async {
                match self.bookmarks.as_mut() {
                    Some(interval) => interval.tick().await,
                    None => std::future::pending().await,
                }
            };
            let closing = async {
                match self.closing.as_mut() {
                    Some(closing) => {
                        let _ = closing.wait_for(|c| *c).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(event)) => {
                        if let Some(frame) = self.translate(event.kind, event.revision, &event.object, event.prev.as_deref()) {
                            let stream = self.stream.as_ref()?;
                            return Some(frame.held_by(stream));
                        }
                    }
                    Some(Err(e)) => {
                        self.stream = None;
                        return Some(error_frame(&store_error(self.info, "", e)).into());
                    }
                    None => {
                        self.stream = None;
                        return None;
                    }
                },
                _ = bookmark_tick => {
                    if let Some(revision) = self.stream.as_ref().and_then(WatchStream::progress) {
                        return Some(self.bookmark(revision));
                    }
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.stream = None;
                    return None;
                }
                _ = closing => {
                    self.stream = None;
                    return None;
                }
            }
        }
    }

    fn bookmark(&self, revision: Revision) -> WatchFrame {
        let object = serde_json::json!({
            "kind": self.info.kind,
            "apiVersion": self.info.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        frame("BOOKMARK", object.to_string().as_bytes()).into()
    }

    /// Applies the filter to one change: the event to send, if any.
    fn translate(
        &self,
        kind: EventType,
        revision: Revision,
        object: &Bytes,
        prev: Option<&[u8]>,
    ) -> Option<WatchFrame> {
        if self.filter.is_everything() {
            return Some(WatchFrame::event(kind, object.clone()));
        }
        let selected = |bytes: &[u8]| {
            serde_json::from_slice::<Value>(bytes)
                .map(|v| self.filter.matches(self.info.kind, &v))
                .unwrap_or(false)
        };
        let now = selected(object);
        let before = prev.is_some_and(selected);
        let reported = match (kind, before, now) {
            (EventType::Deleted, true, _) => EventType::Deleted,
            (EventType::Deleted, false, _) => return None,
            (_, false, true) => EventType::Added,
            (_, true, true) => kind,
            (_, true, false) => {
                // As Kubernetes does: the object as the watcher last saw it (it no longer
                // matches now), stamped with the revision of the change that took it away.
                let mut last: Value = prev.and_then(|p| serde_json::from_slice(p).ok())?;
                last["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                return Some(WatchFrame::event(
                    EventType::Deleted,
                    Bytes::from(last.to_string()),
                ));
            }
            (_, false, false) => return None,
        };
        Some(WatchFrame::event(reported, object.clone()))
    }
}

impl Registry {
    /// Starts a watch of one namespace (or all) of a resource.
    pub async fn watch(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        opts: WatchOptions,
    ) -> Result<futures::stream::BoxStream<'static, WatchFrame>, ApiError> {
        let mut initial = VecDeque::new();
        let from = match opts.start {
            // A revision the store has not reached: the client's state is from another store
            // (wiped or restored). Kubernetes refuses such watches; minik answers 410 so the
            // client lists again instead of waiting blind for the counter to catch up.
            WatchStart::After(revision) if revision > self.store().revision() => {
                let error = ApiError::Gone(format!(
                    "too large resource version: {revision}, current: {}",
                    self.store().revision()
                ));
                let frames = futures::stream::iter([WatchFrame::from(error_frame(&error))]);
                return Ok(frames.boxed());
            }
            WatchStart::After(revision) => revision,
            WatchStart::Now => {
                let listing = self.list(info, ns, &opts.filter).await?;
                initial.extend(
                    listing
                        .items
                        .iter()
                        .map(|item| WatchFrame::event(EventType::Added, item.clone())),
                );
                listing.revision
            }
        };
        let stream = match self.store().watch(&info.prefix(ns), from) {
            Ok(stream) => {
                stream.set_buffer_bytes(self.watch_buffer_bytes());
                if let Some(stalled) = opts.stalled {
                    stream.on_stalled_cut(move || stalled.notify_one());
                }
                Some(stream)
            }
            // Kubernetes answers a watch from a compacted revision with 200 and an ERROR event,
            // which is what clients such as client-go expect before they list again.
            Err(e) => {
                initial.push_back(error_frame(&store_error(info, "", e)).into());
                None
            }
        };
        let bookmarks = opts.bookmarks.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let session = Session {
            info,
            initial,
            stream,
            filter: opts.filter,
            bookmarks,
            deadline: Instant::now()
                .checked_add(opts.timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600)),
            closing: opts.closing,
        };
        Ok(futures::stream::unfold(session, |mut s| async move {
            s.next_frame().await.map(|f| (f, s))
        })
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_line_for_http_and_the_object_itself_in_process() {
        let small = Bytes::from_static(br#"{"kind":"Pod","metadata":{"name":"a"}}"#);
        let large = Bytes::from(format!(
            r#"{{"kind":"Pod","metadata":{{"name":"{}"}}}}"#,
            "b".repeat(SHARED_OBJECT_BYTES)
        ));
        for (kind, object) in [(EventType::Added, small), (EventType::Deleted, large)] {
            let want = format!(
                r#"{{"type":"{}","object":{}}}"#,
                kind.as_str(),
                String::from_utf8_lossy(&object)
            ) + "\n";
            let frame = WatchFrame::event(kind, object.clone());
            assert_eq!(frame.line(), want.as_bytes());
            let chunks: Vec<u8> = WatchFrame::event(kind, object.clone())
                .into_chunks()
                .flat_map(|c| c.to_vec())
                .collect();
            assert_eq!(chunks, want.as_bytes());
            let raw = frame.into_raw().unwrap();
            assert_eq!(raw.object, object);
            assert_eq!(
                raw.kind,
                match kind {
                    EventType::Added => minik_client::WatchEventType::Added,
                    _ => minik_client::WatchEventType::Deleted,
                }
            );
        }
        let error = WatchFrame::from(error_frame(&ApiError::Gone("too old".into())));
        assert!(error.into_raw().unwrap_err().is_gone());
    }
}
