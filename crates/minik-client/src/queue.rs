//! A work queue of keys for level-triggered reconcilers, in the manner of client-go's: a key is
//! queued at most once; a key that changes while it is being worked on is queued again when the
//! work is done (so one key is never worked on twice at once); failures come back after a
//! back-off that doubles per consecutive failure of the key and, when the queue has an overall
//! limit, no faster than its token bucket lets retries of all keys through together (client-go's
//! `MaxOfRateLimiter(ItemExponentialFailureRateLimiter, BucketRateLimiter)`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::RateLimit;

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    processing: HashSet<T>,
    /// Added while being processed: queue again on `done`.
    dirty: HashSet<T>,
    failures: HashMap<T, u32>,
    /// The retries of all keys together, if limited.
    overall: Option<RateLimit>,
}

/// A de-duplicating queue of keys. Cheap to clone; clones share the queue.
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    notify: Arc<Notify>,
    base_delay: Duration,
    max_delay: Duration,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            state: self.state.clone(),
            notify: self.notify.clone(),
            base_delay: self.base_delay,
            max_delay: self.max_delay,
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    /// A queue whose retries wait `base_delay`, doubling per failure up to `max_delay`.
    pub fn new(base_delay: Duration, max_delay: Duration) -> Self {
        Self::with_overall_limit(base_delay, max_delay, None)
    }

    /// A queue whose retries wait as [`WorkQueue::new`]'s do, and also for a token of
    /// `overall`, one bucket for the retries of every key: many keys failing at once (an API
    /// server refusing everything) are retried at its rate, not all together.
    pub fn with_overall_limit(
        base_delay: Duration,
        max_delay: Duration,
        overall: Option<RateLimit>,
    ) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
                overall,
            })),
            notify: Arc::new(Notify::new()),
            base_delay,
            max_delay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` unless it is queued already.
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if state.processing.contains(&key) {
            state.dirty.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.queue.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Waits for the next key and marks it as being processed; call [`WorkQueue::done`] after.
    pub async fn next(&self) -> T {
        loop {
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.queued.remove(&key);
                    state.processing.insert(key.clone());
                    // Another key may be waiting for another worker.
                    if !state.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Ends the processing of `key`, queueing it again if it was added meanwhile.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.remove(key) && state.queued.insert(key.clone()) {
            state.queue.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Counts a failure of `key` and answers how long its retry waits: its back-off, which
    /// doubles with each consecutive failure, or longer if the overall limit says so (client-go's
    /// `RateLimiter.When`). The caller queues the key after that long.
    pub fn failed(&self, key: &T) -> Duration {
        let mut state = self.lock();
        let n = state.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        let own = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let now = tokio::time::Instant::now().into_std();
        let overall = state
            .overall
            .as_mut()
            .map_or(Duration::ZERO, |limit| limit.reserve(now));
        own.max(overall)
    }

    /// Queues `key` again after its back-off (see [`WorkQueue::failed`]).
    pub fn retry(&self, key: T) {
        let delay = self.failed(&key);
        self.add_after(key, delay);
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// How many keys are waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_when_dirty() {
        let q = WorkQueue::new(Duration::from_millis(10), Duration::from_secs(1));
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, "a");
        q.add("a"); // changed while being processed
        assert_eq!(q.len(), 1, "not queued twice while processing");
        q.done(&a);
        assert_eq!(q.next().await, "b");
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially() {
        let q = WorkQueue::new(Duration::from_millis(100), Duration::from_millis(250));
        for expected in [100, 200, 250, 250] {
            let start = tokio::time::Instant::now();
            q.retry("k");
            let k = q.next().await;
            assert_eq!(start.elapsed(), Duration::from_millis(expected));
            q.done(&k);
        }
        q.forget(&"k");
        let before = tokio::time::Instant::now();
        q.retry("k");
        q.next().await;
        assert_eq!(before.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_of_all_keys_share_the_overall_bucket() {
        // Two retries at once, then one every 100 ms, whatever the keys.
        let limit = RateLimit::new(10, 2);
        let q = WorkQueue::with_overall_limit(
            Duration::from_millis(5),
            Duration::from_secs(60),
            Some(limit),
        );
        let waits: Vec<u128> = ["a", "b", "c", "d"]
            .iter()
            .map(|k| q.failed(k).as_millis())
            .collect();
        assert_eq!(waits, [5, 5, 100, 200]);
        // A key's own back-off still wins when it is the longer wait.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..9 {
            q.failed(&"a");
        }
        assert_eq!(q.failed(&"a"), Duration::from_millis(5 * 1024));
        // Without an overall limit, every key only waits its own back-off.
        let unlimited = WorkQueue::new(Duration::from_millis(5), Duration::from_secs(60));
        for k in 0..1000 {
            assert_eq!(unlimited.failed(&k), Duration::from_millis(5));
        }
    }
}
