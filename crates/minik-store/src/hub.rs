//! The watch hub: a bounded window of recent events and the watchers they fan out to.
//!
//! Events are published in revision order, once durable. A new watcher is registered under the
//! same lock that publishing takes, so the events it replays from the window and the ones it
//! receives live meet without a gap or an overlap. Publishing never waits for a watcher: each
//! has a bounded queue, and one that lets its queue fill is dropped and told so, to list again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;

use crate::{EventType, Revision, StoreError};

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
    /// moves an object out of its selection into a deletion, as Kubernetes does.
    pub prev: Option<Bytes>,
}

struct Watcher {
    id: u64,
    prefix: String,
    from: Revision,
    tx: mpsc::Sender<Arc<WatchEvent>>,
    lagged: Arc<AtomicBool>,
}

/// Publishing holds this lock only briefly and cannot leave the window in a state worse than
/// stopping every watcher would, so a poisoned lock is recovered rather than propagated.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    history: VecDeque<Arc<WatchEvent>>,
    /// Bytes held by `history` (objects and previous objects).
    history_bytes: usize,
    next_id: u64,
    /// The revision of the newest published change.
    last: Revision,
    watchers: Vec<Watcher>,
}

pub(crate) struct Hub {
    inner: Arc<Mutex<Inner>>,
    history_size: usize,
    history_budget: usize,
    watcher_buffer: usize,
}

fn event_bytes(e: &WatchEvent) -> usize {
    e.object.len() + e.prev.as_ref().map_or(0, |p| p.len()) + e.key.len()
}

impl Hub {
    /// A hub whose window keeps at most `history_size` events and `history_budget` bytes.
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
                next_id: 0,
                last,
                watchers: Vec::new(),
            })),
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
        for event in events {
            debug_assert!(event.revision > inner.last);
            inner.last = event.revision;
            inner.watchers.retain(|w| {
                if event.revision <= w.from || !event.key.starts_with(&w.prefix) {
                    return !w.tx.is_closed();
                }
                match w.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.lagged.store(true, Ordering::Release);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            inner.history_bytes += event_bytes(&event);
            inner.history.push_back(event);
            // What falls out of the window is compacted: a watch from before it gets 410.
            while inner.history.len() > self.history_size
                || (inner.history_bytes > self.history_budget && inner.history.len() > 1)
            {
                if let Some(old) = inner.history.pop_front() {
                    inner.history_bytes -= event_bytes(&old);
                }
            }
        }
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
            let skip = (from + 1 - oldest) as usize;
            replay.extend(
                inner
                    .history
                    .iter()
                    .skip(skip)
                    .filter(|e| e.key.starts_with(prefix))
                    .cloned(),
            );
        }
        let (tx, rx) = mpsc::channel(self.watcher_buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watchers.push(Watcher {
            id,
            prefix: prefix.to_owned(),
            from,
            tx,
            lagged: lagged.clone(),
        });
        Ok(WatchStream {
            replay,
            rx,
            lagged,
            done: false,
            hub: self.inner.clone(),
            delivered: from,
            id,
        })
    }

    pub(crate) fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }
}

/// The changes under a prefix, in revision order. Ends with `Err(StoreError::Lagged)` if the
/// watcher fell too far behind, or with `None` when the store shuts down.
pub struct WatchStream {
    replay: VecDeque<Arc<WatchEvent>>,
    rx: mpsc::Receiver<Arc<WatchEvent>>,
    lagged: Arc<AtomicBool>,
    done: bool,
    hub: Arc<Mutex<Inner>>,
    /// The revision of the newest event handed out, or the starting revision.
    delivered: Revision,
    id: u64,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        // Leave the hub now rather than at the next publish, which may be long in coming.
        let id = self.id;
        lock(&self.hub).watchers.retain(|w| w.id != id);
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
        // A watcher that fell behind lost events: it must not claim progress past them.
        if self.lagged.load(Ordering::Acquire) || !self.replay.is_empty() || !self.rx.is_empty() {
            return None;
        }
        Some(published.max(self.delivered))
    }
}

impl Stream for WatchStream {
    type Item = Result<Arc<WatchEvent>, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(event) = self.replay.pop_front() {
            self.delivered = event.revision;
            return Poll::Ready(Some(Ok(event)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.delivered = event.revision;
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.lagged.load(Ordering::Acquire) {
                    Poll::Ready(Some(Err(StoreError::Lagged)))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
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
        assert_eq!(b.next().await.unwrap().unwrap().revision, 1);
        assert_eq!(b.progress(), None, "event 2 was lost to this watcher");
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
    async fn a_slow_watcher_is_dropped_without_blocking_others() {
        let hub = Hub::new(0, 100, usize::MAX, 2);
        let mut slow = hub.subscribe("/", 0).unwrap();
        let mut fast = hub.subscribe("/", 0).unwrap();
        for r in 1..=3 {
            hub.publish(vec![event(r, "/k")]);
            if r < 3 {
                assert_eq!(fast.next().await.unwrap().unwrap().revision, r);
            }
        }
        assert_eq!(fast.next().await.unwrap().unwrap().revision, 3);
        assert_eq!(hub.watcher_count(), 1);
        let mut got = Vec::new();
        while let Some(e) = slow.next().await {
            got.push(e);
        }
        assert_eq!(revisions(&got), vec![1, 2, 0]);
        assert_eq!(got[2].as_ref().err(), Some(&StoreError::Lagged));
    }
}
