//! The watch hub: a bounded window of recent events and the watchers they fan out to.
//!
//! Events are published in revision order, once durable. A new watcher is registered under the
//! same lock that publishing takes, so the events it replays from the window and the ones it
//! receives live meet without a gap or an overlap. Publishing never waits for a watcher: each
//! has a queue bounded in events and in bytes, and one that falls too far behind is cut — its
//! queue freed at once — and told so, to list again.
//!
//! The byte bound is on how far behind a watcher is: it is cut once more than its limit of bytes
//! of changes (to any key) have been published after the oldest event it still holds, queued
//! or handed out and not yet released ([`WatchStream::hold`]). Events are shared, not copied,
//! between the window and the watchers, so the bound holds for all of them together too: what
//! any watcher holds is among the newest `limit` bytes of changes, or among the events it
//! replays from the window (counted as if published when it subscribed). However many watchers
//! there are, the hub holds at most the window plus one limit of events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::Stream;

use crate::{EventType, Revision, StoreError, Stored};

/// How many bytes of changes a watcher may fall behind before it is cut, unless its consumer
/// says otherwise ([`WatchStream::set_buffer_bytes`]).
pub const DEFAULT_WATCH_BUFFER_BYTES: usize = 64 << 20;

/// One change to one key.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: EventType,
    pub key: String,
    pub revision: Revision,
    /// The object after the change; for a deletion, its last state stamped with the deletion's
    /// revision.
    pub object: Bytes,
    /// The object before the change, if it existed; lets a filtered watch turn a change that
    /// moves an object out of its selection into a deletion, as Kubernetes does, and a paged
    /// list rebuild the key as it was at an older revision.
    pub prev: Option<Bytes>,
    /// The revision of `prev` (0 without one).
    pub prev_revision: Revision,
}

/// An event queued for a watcher, with the place in the stream of changes from which its lag
/// is counted: where it was published, or where the watcher subscribed for a replayed one.
type Queued = (Arc<WatchEvent>, u64);

struct Watcher {
    id: u64,
    prefix: String,
    from: Revision,
    queue: Arc<Queue>,
}

/// Why a watcher's queue takes no more events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// It fell too far behind: the stream ends with [`StoreError::Lagged`].
    Cut,
    /// The store shut down: the stream ends after what is queued.
    Closed,
}

/// What the hub has for one watcher; filled by publishing, drained by its [`WatchStream`].
struct Queue(Mutex<QueueState>);

struct QueueState {
    events: VecDeque<Queued>,
    /// The places (see [`Queued`]) of the bytes handed out through [`WatchStream::hold`] and
    /// still alive, each with how many of them there are.
    held: BTreeMap<u64, usize>,
    /// How many bytes of changes this watcher may fall behind.
    limit: u64,
    end: Option<End>,
    waker: Option<Waker>,
    /// What to do when cut while bytes it handed out are still alive.
    on_stalled_cut: Option<Box<dyn FnOnce() + Send>>,
}

/// Every critical section of these locks leaves their state consistent, so a poisoned lock is
/// recovered rather than propagated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Queue {
    fn new(events: VecDeque<Queued>, limit: usize) -> Queue {
        Queue(Mutex::new(QueueState {
            events,
            held: BTreeMap::new(),
            limit: limit as u64,
            end: None,
            waker: None,
            on_stalled_cut: None,
        }))
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        lock(&self.0)
    }

    /// Offers the watcher the change that brought the published bytes to `published` (`event`
    /// if it is one the watcher wants). False if the watcher is gone: cut now (too far behind,
    /// or `max_events` queued) or before, or closed.
    fn offer(&self, event: Option<&Arc<WatchEvent>>, published: u64, max_events: usize) -> bool {
        let mut state = self.state();
        if state.end.is_some() {
            return false;
        }
        let oldest = [
            state.events.front().map(|(_, at)| *at),
            state.held.keys().next().copied(),
        ]
        .into_iter()
        .flatten()
        .min();
        let behind = oldest.is_some_and(|at| published.saturating_sub(at) > state.limit);
        if behind || (event.is_some() && state.events.len() >= max_events) {
            state.end = Some(End::Cut);
            // Free what it will never get now, not when (if ever) its consumer polls.
            let dropped = std::mem::take(&mut state.events);
            let waker = state.waker.take();
            let stalled = state
                .on_stalled_cut
                .take()
                .filter(|_| !state.held.is_empty());
            drop(state);
            drop(dropped);
            if let Some(waker) = waker {
                waker.wake();
            }
            if let Some(stalled) = stalled {
                stalled();
            }
            return false;
        }
        if let Some(event) = event {
            state.events.push_back((event.clone(), published));
            if let Some(waker) = state.waker.take() {
                drop(state);
                waker.wake();
            }
        }
        true
    }

    /// Ends the stream after what is queued (the store shut down).
    fn close(&self) {
        let mut state = self.state();
        state.end.get_or_insert(End::Closed);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct Inner {
    history: VecDeque<Arc<WatchEvent>>,
    /// Bytes held by `history` (objects and previous objects; a previous object that is also
    /// an older event's object is counted twice, though it is held once).
    history_bytes: usize,
    /// The newest object of each key that has a change in `history`, with its revision: a
    /// change's previous object, read back from the disk by the writer, is the same as the
    /// object of the key's last change when that change is still in the window, and the
    /// window then holds that one copy instead of two.
    latest: HashMap<String, (Revision, Bytes)>,
    /// Bytes of every change published since the hub started: the clock lag is measured on.
    published: u64,
    next_id: u64,
    /// The revision of the newest published change.
    last: Revision,
    watchers: Vec<Watcher>,
}

impl Inner {
    /// Makes `event`'s previous object the window's copy of it, if the window has one, and
    /// records `event`'s object as its key's newest.
    fn share_previous(&mut self, event: &mut Arc<WatchEvent>) {
        if let Some(e) = Arc::get_mut(event) {
            let held = self
                .latest
                .get(&e.key)
                .filter(|(revision, _)| *revision == e.prev_revision)
                .map(|(_, bytes)| bytes);
            if let (Some(prev), Some(held)) = (e.prev.as_mut(), held) {
                // The same key at the same revision is the same object; the comparison only
                // guards that assumption.
                if prev[..] == held[..] {
                    *prev = held.clone();
                }
            }
        }
        if event.kind == EventType::Deleted {
            self.latest.remove(&event.key);
        } else {
            let newest = (event.revision, event.object.clone());
            match self.latest.get_mut(&event.key) {
                Some(entry) => *entry = newest,
                None => {
                    self.latest.insert(event.key.clone(), newest);
                }
            }
        }
    }

    /// Forgets `old`'s object as its key's newest when it leaves the window.
    fn forget(&mut self, old: &WatchEvent) {
        if self
            .latest
            .get(&old.key)
            .is_some_and(|(revision, _)| *revision == old.revision)
        {
            self.latest.remove(&old.key);
        }
    }
}

pub(crate) struct Hub {
    inner: Arc<Mutex<Inner>>,
    /// The revision of the newest published change, for readers that wait for a revision to
    /// reach the window.
    published: tokio::sync::watch::Sender<Revision>,
    history_size: usize,
    history_budget: usize,
    watcher_buffer: usize,
}

fn event_bytes(e: &WatchEvent) -> usize {
    e.object.len() + e.prev.as_ref().map_or(0, |p| p.len()) + e.key.len()
}

impl Hub {
    /// A hub whose window keeps at most `history_size` events and `history_budget` bytes, and
    /// whose watchers may each have `watcher_buffer` events queued.
    pub(crate) fn new(
        last: Revision,
        history_size: usize,
        history_budget: usize,
        watcher_buffer: usize,
    ) -> Self {
        Hub {
            inner: Arc::new(Mutex::new(Inner {
                history: VecDeque::with_capacity(history_size.min(4096)),
                history_bytes: 0,
                latest: HashMap::new(),
                published: 0,
                next_id: 0,
                last,
                watchers: Vec::new(),
            })),
            published: tokio::sync::watch::Sender::new(last),
            history_size: history_size.max(1),
            history_budget,
            watcher_buffer: watcher_buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Publishes durable changes, in revision order.
    pub(crate) fn publish(&self, events: Vec<Arc<WatchEvent>>) {
        let mut inner = self.lock();
        for mut event in events {
            debug_assert!(event.revision > inner.last);
            inner.share_previous(&mut event);
            inner.last = event.revision;
            let size = event_bytes(&event);
            inner.published += size as u64;
            let published = inner.published;
            // Every watcher is offered every change: one that wants none of them still falls
            // behind while it holds older ones.
            inner.watchers.retain(|w| {
                let wanted = event.revision > w.from && event.key.starts_with(&w.prefix);
                w.queue
                    .offer(wanted.then_some(&event), published, self.watcher_buffer)
            });
            inner.history_bytes += size;
            inner.history.push_back(event);
            // What falls out of the window is compacted: a watch from before it gets 410.
            while inner.history.len() > self.history_size
                || (inner.history_bytes > self.history_budget && inner.history.len() > 1)
            {
                if let Some(old) = inner.history.pop_front() {
                    inner.history_bytes -= event_bytes(&old);
                    inner.forget(&old);
                }
            }
        }
        let last = inner.last;
        drop(inner);
        self.published.send_if_modified(|published| {
            let newer = *published < last;
            *published = last;
            newer
        });
    }

    /// Waits until every change up to `revision` is published; false if that takes longer than
    /// `patience` (or the hub is gone).
    pub(crate) async fn published(
        &self,
        revision: Revision,
        patience: std::time::Duration,
    ) -> bool {
        let mut published = self.published.subscribe();
        let reached = tokio::time::timeout(patience, published.wait_for(|r| *r >= revision)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Each key under `prefix`, from `start` on (all of them when `start` is `None`), that changed
    /// after revision `after` and up to `upto`, with its state at `after` (`None`: it did not
    /// exist). Fails with [`StoreError::Compacted`] when the window no longer holds every change
    /// after `after`. Every change up to `upto` must be published ([`Hub::published`]).
    pub(crate) fn state_before(
        &self,
        prefix: &str,
        start: Option<&str>,
        after: Revision,
        upto: Revision,
    ) -> Result<BTreeMap<String, Option<Stored>>, StoreError> {
        let inner = self.lock();
        let mut before = BTreeMap::new();
        if after >= upto {
            return Ok(before);
        }
        let oldest = inner
            .history
            .front()
            .map(|e| e.revision)
            .unwrap_or(inner.last + 1);
        if oldest > after + 1 {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: oldest - 1,
            });
        }
        // Revisions are consecutive, so the change after `after` is at a known place; the
        // oldest change of a key after `after` tells what the key was at `after`.
        let skip = usize::try_from(after + 1 - oldest).unwrap_or(usize::MAX);
        for event in inner.history.iter().skip(skip) {
            if event.revision > upto {
                break;
            }
            if !event.key.starts_with(prefix)
                || start.is_some_and(|start| event.key.as_str() < start)
                || before.contains_key(&event.key)
            {
                continue;
            }
            let state = match event.kind {
                EventType::Added => None,
                EventType::Modified | EventType::Deleted => {
                    event.prev.clone().map(|value| Stored {
                        key: event.key.clone(),
                        revision: event.prev_revision,
                        value,
                    })
                }
            };
            before.insert(event.key.clone(), state);
        }
        Ok(before)
    }

    /// Registers a watcher of `prefix` for every change after `from`.
    pub(crate) fn subscribe(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<WatchStream, StoreError> {
        let mut inner = self.lock();
        let mut replay = VecDeque::new();
        if from < inner.last {
            // The window must hold every revision after `from`; revisions are consecutive, so
            // it does when its oldest event is at most `from + 1`.
            let oldest = inner
                .history
                .front()
                .map(|e| e.revision)
                .unwrap_or(inner.last + 1);
            if oldest > from + 1 {
                return Err(StoreError::Compacted {
                    requested: from,
                    oldest: oldest - 1,
                });
            }
            // The replay is counted from now: the watcher has its whole limit of new changes
            // to take it in.
            let now = inner.published;
            let skip = (from + 1 - oldest) as usize;
            replay.extend(
                inner
                    .history
                    .iter()
                    .skip(skip)
                    .filter(|e| e.key.starts_with(prefix))
                    .map(|e| (e.clone(), now)),
            );
        }
        let queue = Arc::new(Queue::new(replay, DEFAULT_WATCH_BUFFER_BYTES));
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watchers.push(Watcher {
            id,
            prefix: prefix.to_owned(),
            from,
            queue: queue.clone(),
        });
        Ok(WatchStream {
            queue,
            done: false,
            hub: self.inner.clone(),
            delivered: from,
            at: inner.published,
            id,
        })
    }

    pub(crate) fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

impl Drop for Hub {
    /// The store is shutting down: every watch ends after what it has queued.
    fn drop(&mut self) {
        let watchers = std::mem::take(&mut self.lock().watchers);
        for watcher in watchers {
            watcher.queue.close();
        }
    }
}

/// The changes under a prefix, in revision order. Ends with `Err(StoreError::Lagged)` if the
/// watcher fell too far behind, or with `None` when the store shuts down.
pub struct WatchStream {
    queue: Arc<Queue>,
    done: bool,
    hub: Arc<Mutex<Inner>>,
    /// The revision of the newest event handed out, or the starting revision.
    delivered: Revision,
    /// The place (see [`Queued`]) of the newest event handed out: what [`WatchStream::hold`]
    /// counts bytes under.
    at: u64,
    id: u64,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        // Leave the hub now rather than at the next publish, which may be long in coming, and
        // free the queue with it.
        let id = self.id;
        lock(&self.hub).watchers.retain(|w| w.id != id);
        let queued = std::mem::take(&mut self.queue.state().events);
        drop(queued);
    }
}

/// Bytes handed out by a watch and counted as held by its watcher until dropped.
struct Held {
    bytes: Bytes,
    queue: Arc<Queue>,
    at: u64,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        if let Some(n) = state.held.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                state.held.remove(&self.at);
            }
        }
    }
}

impl WatchStream {
    /// The revision up to which this watch has handed out every change under its prefix, when
    /// nothing is queued for it: what a BOOKMARK event may report. `None` while events are
    /// queued (deliver them first).
    pub fn progress(&self) -> Option<Revision> {
        // Read the hub's revision first: every change up to it was queued to this watcher
        // before the read, so an empty queue after it means all of them were handed out.
        let published = lock(&self.hub).last;
        let state = self.queue.state();
        // A watcher that fell behind lost events: it must not claim progress past them.
        if state.end.is_some() || !state.events.is_empty() {
            return None;
        }
        Some(published.max(self.delivered))
    }

    /// How many bytes of changes this watcher may fall behind before it is cut (default
    /// [`DEFAULT_WATCH_BUFFER_BYTES`]): counted from the oldest event it still holds, queued or
    /// handed out through [`WatchStream::hold`]. It always gets that many bytes of changes after
    /// one it is given, however large that one is.
    pub fn set_buffer_bytes(&self, bytes: usize) {
        self.queue.state().limit = bytes as u64;
    }

    /// Counts `bytes`, made from the event this stream handed out last on their way to the
    /// consumer's own client, as held by this watcher until every clone of them is dropped: a
    /// consumer whose client stops taking them falls behind, and is cut, as one that stops
    /// polling does. The bytes are not copied.
    pub fn hold(&self, bytes: Bytes) -> Bytes {
        *self.queue.state().held.entry(self.at).or_insert(0) += 1;
        Bytes::from_owner(Held {
            bytes,
            queue: self.queue.clone(),
            at: self.at,
        })
    }

    /// Calls `stalled` if this watcher is cut while bytes it handed out through
    /// [`WatchStream::hold`] are still alive: its consumer's client is not taking them, so the
    /// stream may never be polled to its end and the consumer must drop them itself (an HTTP
    /// server closes the connection). Runs on the publishing thread: it must not block.
    pub fn on_stalled_cut(&self, stalled: impl FnOnce() + Send + 'static) {
        self.queue.state().on_stalled_cut = Some(Box::new(stalled));
    }
}

impl Stream for WatchStream {
    type Item = Result<Arc<WatchEvent>, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut state = this.queue.state();
        if let Some((event, at)) = state.events.pop_front() {
            drop(state);
            this.delivered = event.revision;
            this.at = at;
            return Poll::Ready(Some(Ok(event)));
        }
        match state.end {
            Some(End::Cut) => {
                this.done = true;
                Poll::Ready(Some(Err(StoreError::Lagged)))
            }
            Some(End::Closed) => {
                this.done = true;
                Poll::Ready(None)
            }
            None => {
                match &mut state.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn event(revision: Revision, key: &str) -> Arc<WatchEvent> {
        Arc::new(WatchEvent {
            kind: EventType::Added,
            key: key.into(),
            revision,
            object: Bytes::from(format!("{revision}")),
            prev: None,
            prev_revision: 0,
        })
    }

    fn revisions(events: &[Result<Arc<WatchEvent>, StoreError>]) -> Vec<Revision> {
        events
            .iter()
            .map(|e| e.as_ref().map(|e| e.revision).unwrap_or(0))
            .collect()
    }

    #[tokio::test]
    async fn replay_then_live_without_gap_or_repeat() {
        let hub = Hub::new(0, 100, usize::MAX, 100);
        hub.publish((1..=5).map(|r| event(r, "/a/x")).collect());
        let mut stream = hub.subscribe("/a/", 2).unwrap();
        hub.publish(vec![event(6, "/a/y"), event(7, "/b/z"), event(8, "/a/x")]);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(stream.next().await.unwrap());
        }
        assert_eq!(revisions(&got), vec![3, 4, 5, 6, 8]);
    }

    #[tokio::test]
    async fn progress_is_reported_only_when_nothing_is_queued() {
        let hub = Hub::new(0, 100, usize::MAX, 100);
        let mut stream = hub.subscribe("/a/", 0).unwrap();
        assert_eq!(stream.progress(), Some(0));
        hub.publish(vec![event(1, "/a/x"), event(2, "/b/x")]);
        assert_eq!(stream.progress(), None);
        assert_eq!(stream.next().await.unwrap().unwrap().revision, 1);
        assert_eq!(
            stream.progress(),
            Some(2),
            "changes elsewhere advance the bookmark"
        );
    }

    /// A change of `key` at `revision` whose previous object is `prev` (a copy, as the writer
    /// reads it back from the disk) at `prev_revision`.
    fn changed(revision: Revision, key: &str, prev: Option<(Revision, &Bytes)>) -> Arc<WatchEvent> {
        Arc::new(WatchEvent {
            kind: if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            key: key.into(),
            revision,
            object: Bytes::from(format!("{key}@{revision}")),
            prev: prev.map(|(_, p)| Bytes::copy_from_slice(p)),
            prev_revision: prev.map_or(0, |(r, _)| r),
        })
    }

    fn window(hub: &Hub) -> Vec<Arc<WatchEvent>> {
        hub.lock().history.iter().cloned().collect()
    }

    #[test]
    fn a_previous_object_still_in_the_window_is_held_once() {
        let hub = Hub::new(0, 3, usize::MAX, 100);
        hub.publish(vec![changed(1, "/a/x", None)]);
        let first = window(&hub)[0].object.clone();
        hub.publish(vec![changed(2, "/a/x", Some((1, &first)))]);
        let w = window(&hub);
        let prev = w[1].prev.as_ref().unwrap();
        assert_eq!(prev, &first);
        assert_eq!(
            prev.as_ptr(),
            first.as_ptr(),
            "the window's copy, not the disk's"
        );
        // A previous object at another revision than the key's newest is left alone.
        let other = Bytes::from_static(b"/a/y@0");
        hub.publish(vec![changed(3, "/a/y", Some((0, &other)))]);
        assert_ne!(
            window(&hub)[2].prev.as_ref().unwrap().as_ptr(),
            other.as_ptr()
        );
        let second = window(&hub)[1].object.clone();
        // Once the key's newest change has left the window, nothing is shared with it.
        hub.publish(vec![
            changed(4, "/a/z", None),
            changed(5, "/a/w", None),
            changed(6, "/a/u", None),
        ]);
        assert!(window(&hub).iter().all(|e| e.key != "/a/x"));
        hub.publish(vec![changed(7, "/a/x", Some((2, &second)))]);
        let w = window(&hub);
        let last = w.last().unwrap();
        assert_eq!(last.prev.as_ref().unwrap(), &second);
        assert_ne!(last.prev.as_ref().unwrap().as_ptr(), second.as_ptr());
        assert_eq!(
            hub.lock().latest.len(),
            3,
            "only keys with a change in the window"
        );
    }

    #[test]
    fn a_deleted_key_has_no_newest_object() {
        let hub = Hub::new(0, 10, usize::MAX, 100);
        hub.publish(vec![changed(1, "/a/x", None)]);
        let first = window(&hub)[0].object.clone();
        let mut deletion = changed(2, "/a/x", Some((1, &first)));
        Arc::get_mut(&mut deletion).unwrap().kind = EventType::Deleted;
        hub.publish(vec![deletion]);
        assert_eq!(
            window(&hub)[1].prev.as_ref().unwrap().as_ptr(),
            first.as_ptr()
        );
        assert!(hub.lock().latest.is_empty());
    }

    #[tokio::test]
    async fn the_window_is_bounded_in_bytes_too() {
        let hub = Hub::new(0, 100, 20, 100);
        // Each event is 4 bytes of key plus its rendered revision.
        hub.publish((1..=10).map(|r| event(r, "/a/x")).collect());
        assert!(hub.subscribe("/a/", 7).is_ok());
        assert!(matches!(
            hub.subscribe("/a/", 5),
            Err(StoreError::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn dropped_watchers_leave_at_once_and_lagged_ones_claim_no_progress() {
        let hub = Hub::new(0, 100, usize::MAX, 1);
        let a = hub.subscribe("/", 0).unwrap();
        let mut b = hub.subscribe("/", 0).unwrap();
        drop(a);
        assert_eq!(hub.watcher_count(), 1);
        hub.publish(vec![event(1, "/k"), event(2, "/k")]);
        assert_eq!(b.progress(), None, "event 2 was lost to this watcher");
        assert_eq!(b.next().await.unwrap().err(), Some(StoreError::Lagged));
        assert!(b.next().await.is_none());
    }

    #[tokio::test]
    async fn too_old_revision_is_compacted() {
        let hub = Hub::new(0, 3, usize::MAX, 100);
        hub.publish((1..=10).map(|r| event(r, "/a/x")).collect());
        assert!(hub.subscribe("/a/", 7).is_ok());
        assert_eq!(
            hub.subscribe("/a/", 6).err(),
            Some(StoreError::Compacted {
                requested: 6,
                oldest: 7
            })
        );
    }

    #[tokio::test]
    async fn restart_with_empty_window_serves_only_the_current_revision() {
        let hub = Hub::new(42, 3, usize::MAX, 100);
        assert!(hub.subscribe("/", 42).is_ok());
        assert!(matches!(
            hub.subscribe("/", 41),
            Err(StoreError::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn a_slow_watcher_is_cut_and_freed_without_blocking_others() {
        let hub = Hub::new(0, 100, usize::MAX, 2);
        let slow = hub.subscribe("/", 0).unwrap();
        let mut fast = hub.subscribe("/", 0).unwrap();
        for r in 1..=3 {
            hub.publish(vec![event(r, "/k")]);
            assert_eq!(fast.next().await.unwrap().unwrap().revision, r);
        }
        assert_eq!(hub.watcher_count(), 1);
        // What was queued for it is gone with it: it lists again anyway.
        let got: Vec<_> = slow.collect().await;
        assert_eq!(revisions(&got), vec![0]);
        assert_eq!(got[0].as_ref().err(), Some(&StoreError::Lagged));
    }

    /// An event of `size` bytes of object (and key `/k`), and a handle that says whether
    /// anything still holds it.
    fn large(revision: Revision, size: usize) -> (Arc<WatchEvent>, std::sync::Weak<WatchEvent>) {
        let event = Arc::new(WatchEvent {
            kind: EventType::Modified,
            key: "/k".into(),
            revision,
            object: Bytes::from(vec![b'x'; size]),
            prev: None,
            prev_revision: 0,
        });
        let weak = Arc::downgrade(&event);
        (event, weak)
    }

    #[tokio::test]
    async fn a_stalled_watcher_is_cut_on_bytes_and_its_queue_freed_at_once() {
        // Events are 1,002 bytes (object and key); the queue could take 1,000 of them.
        let hub = Hub::new(0, 1, usize::MAX, 1_000);
        let stalled = hub.subscribe("/", 0).unwrap();
        stalled.set_buffer_bytes(10_000);
        let mut fast = hub.subscribe("/", 0).unwrap();
        fast.set_buffer_bytes(10_000);
        let mut alive = Vec::new();
        for r in 1..=10 {
            let (event, weak) = large(r, 1_000);
            alive.push(weak);
            hub.publish(vec![event]);
            assert_eq!(fast.next().await.unwrap().unwrap().revision, r);
        }
        assert_eq!(
            hub.watcher_count(),
            2,
            "9,018 bytes behind: within its limit"
        );
        let (event, weak) = large(11, 1_000);
        alive.push(weak);
        hub.publish(vec![event]);
        assert_eq!(hub.watcher_count(), 1, "10,020 bytes behind: cut");
        assert_eq!(fast.next().await.unwrap().unwrap().revision, 11);
        // Nothing polled the stalled stream, yet it holds nothing: only the window (one event)
        // keeps an event alive.
        let held = alive.iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(held, 1);
        let mut stalled = stalled;
        assert_eq!(stalled.progress(), None);
        assert_eq!(
            stalled.next().await.unwrap().err(),
            Some(StoreError::Lagged)
        );
    }

    #[tokio::test]
    async fn bytes_handed_out_count_until_dropped_and_a_stalled_cut_is_reported() {
        let hub = Hub::new(0, 1, usize::MAX, 1_000);
        let mut watch = hub.subscribe("/", 0).unwrap();
        watch.set_buffer_bytes(5_000);
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        watch.on_stalled_cut(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        // A consumer that takes every event but whose client does not take what it sends.
        let mut sent = Vec::new();
        for r in 1..=5 {
            hub.publish(vec![large(r, 1_000).0]);
            let event = watch.next().await.unwrap().unwrap();
            let bytes = watch.hold(event.object.clone());
            assert_eq!(bytes, event.object, "the same bytes");
            assert_eq!(bytes.as_ptr(), event.object.as_ptr(), "not copied");
            sent.push(bytes);
        }
        // Once the client takes them, the watcher is not behind, however much goes by.
        sent.clear();
        for r in 6..=20 {
            hub.publish(vec![large(r, 1_000).0]);
            let event = watch.next().await.unwrap().unwrap();
            sent.push(watch.hold(event.object.clone()));
            if r % 2 == 0 {
                sent.clear();
            }
        }
        assert_eq!(hub.watcher_count(), 1);
        // Now it keeps what it was sent: its queue is empty, but five changes after the oldest
        // of them it is cut.
        for r in 21..=25 {
            hub.publish(vec![large(r, 1_000).0]);
            let event = watch.next().await.unwrap().unwrap();
            sent.push(watch.hold(event.object.clone()));
        }
        assert_eq!(hub.watcher_count(), 1);
        assert!(!stalled.load(std::sync::atomic::Ordering::SeqCst));
        hub.publish(vec![large(26, 1_000).0]);
        assert_eq!(hub.watcher_count(), 0);
        assert!(stalled.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(watch.next().await.unwrap().err(), Some(StoreError::Lagged));
    }

    #[tokio::test]
    async fn all_stalled_watchers_together_hold_one_limit_of_events() {
        let hub = Hub::new(0, 1, usize::MAX, 1_000);
        // Watchers that stall one after another, each after taking a few more events.
        let mut watchers = Vec::new();
        let mut alive = Vec::new();
        for r in 1..=200 {
            if r % 5 == 1 {
                let w = hub.subscribe("/", r - 1).unwrap();
                w.set_buffer_bytes(20_000);
                watchers.push(w);
            }
            let (event, weak) = large(r, 1_000);
            alive.push(weak);
            hub.publish(vec![event]);
            let held = alive.iter().filter(|w| w.strong_count() > 0).count();
            // The newest 20,000 bytes of changes are 20 events, and one more to go past them.
            assert!(held <= 21, "{held} events held after {r}");
        }
        assert!(hub.watcher_count() < watchers.len());
    }

    #[tokio::test]
    async fn a_replay_gets_its_limit_of_new_changes() {
        let hub = Hub::new(0, 100, usize::MAX, 1_000);
        hub.publish((1..=10).map(|r| large(r, 1_000).0).collect());
        let mut watch = hub.subscribe("/", 0).unwrap();
        watch.set_buffer_bytes(5_000);
        // Ten thousand bytes to replay, more than the limit, but none of it published after.
        hub.publish(vec![large(11, 1_000).0]);
        assert_eq!(watch.next().await.unwrap().unwrap().revision, 1);
        assert_eq!(hub.watcher_count(), 1);
        // Five thousand bytes later it still holds replayed events: cut.
        hub.publish((12..=16).map(|r| large(r, 1_000).0).collect());
        assert_eq!(hub.watcher_count(), 0);
    }

    fn change(
        revision: Revision,
        kind: EventType,
        key: &str,
        prev: Option<Revision>,
    ) -> Arc<WatchEvent> {
        Arc::new(WatchEvent {
            kind,
            key: key.into(),
            revision,
            object: Bytes::from(format!("{revision}")),
            prev: prev.map(|p| Bytes::from(format!("{p}"))),
            prev_revision: prev.unwrap_or(0),
        })
    }

    #[tokio::test]
    async fn the_state_before_is_each_keys_oldest_previous_state_after_the_revision() {
        let hub = Hub::new(0, 100, usize::MAX, 100);
        hub.publish(vec![
            change(1, EventType::Added, "/a/x", None),
            change(2, EventType::Added, "/a/y", None),
            change(3, EventType::Modified, "/a/x", Some(1)),
            change(4, EventType::Added, "/a/z", None),
            change(5, EventType::Deleted, "/a/y", Some(2)),
            change(6, EventType::Modified, "/a/x", Some(3)),
            change(7, EventType::Added, "/b/x", None),
        ]);
        let before = hub.state_before("/a/", None, 2, 6).unwrap();
        let summary: Vec<(&str, Option<Revision>)> = before
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_ref().map(|s| s.revision)))
            .collect();
        assert_eq!(
            summary,
            [("/a/x", Some(1)), ("/a/y", Some(2)), ("/a/z", None)]
        );
        let from_y = hub.state_before("/a/", Some("/a/y"), 2, 4).unwrap();
        assert_eq!(from_y.keys().collect::<Vec<_>>(), ["/a/z"]);
        assert!(hub.state_before("/a/", None, 6, 6).unwrap().is_empty());
        assert_eq!(hub.state_before("/b/", None, 6, 7).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_state_before_a_revision_the_window_lost_is_compacted() {
        let hub = Hub::new(0, 2, usize::MAX, 100);
        hub.publish((1..=4).map(|r| event(r, "/a/x")).collect());
        assert!(hub.state_before("/a/", None, 2, 4).is_ok());
        assert_eq!(
            hub.state_before("/a/", None, 1, 4).err(),
            Some(StoreError::Compacted {
                requested: 1,
                oldest: 2
            })
        );
        assert!(hub.published(4, std::time::Duration::ZERO).await);
        assert!(!hub.published(5, std::time::Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn a_closed_store_ends_its_watches_after_what_is_queued() {
        let hub = Hub::new(0, 100, usize::MAX, 100);
        let mut watch = hub.subscribe("/", 0).unwrap();
        hub.publish(vec![event(1, "/k")]);
        drop(hub);
        assert_eq!(watch.next().await.unwrap().unwrap().revision, 1);
        assert!(watch.next().await.is_none());
    }
}
