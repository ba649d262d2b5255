//! The scheduling queue, after kube-scheduler's: pods ready to try (active, first in first
//! out), pods waiting out a back-off, and pods that fit nowhere, parked until the cluster
//! changes (or until they have waited long enough to be worth another look). Pure: the caller
//! passes `now`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Where a queued key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    /// Waiting until this time.
    Backoff(Instant),
    /// Fit nowhere at this time; waits for a change in the cluster.
    Unschedulable(Instant),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    place: Place,
    /// Told apart from earlier entries of the same key still sitting in the deque or heaps
    /// (they are dropped lazily).
    generation: u64,
}

/// How long a pod waits between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failed attempt (kube-scheduler: 1s); doubles per attempt.
    pub initial: Duration,
    /// The longest wait (kube-scheduler: 10s).
    pub max: Duration,
    /// How long a pod that fits nowhere waits for a cluster change before it is tried anyway
    /// (kube-scheduler: 5 minutes).
    pub max_unschedulable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

/// The queue of pending pod keys.
#[derive(Debug)]
pub struct SchedulingQueue {
    backoff: Backoff,
    entries: HashMap<String, Entry>,
    active: VecDeque<(String, u64)>,
    waiting: BinaryHeap<Reverse<(Instant, u64, String)>>,
    parked: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// Failed attempts per key and when the last one was.
    attempts: HashMap<String, (u32, Instant)>,
    next_generation: u64,
}

impl SchedulingQueue {
    pub fn new(backoff: Backoff) -> SchedulingQueue {
        SchedulingQueue {
            backoff,
            entries: HashMap::new(),
            active: VecDeque::new(),
            waiting: BinaryHeap::new(),
            parked: BinaryHeap::new(),
            attempts: HashMap::new(),
            next_generation: 0,
        }
    }

    fn place(&mut self, key: &str, place: Place) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.entries
            .insert(key.to_owned(), Entry { place, generation });
        match place {
            Place::Active => self.active.push_back((key.to_owned(), generation)),
            Place::Backoff(at) => self.waiting.push(Reverse((at, generation, key.to_owned()))),
            Place::Unschedulable(since) => {
                self.parked
                    .push(Reverse((since, generation, key.to_owned())))
            }
        }
    }

    /// The back-off after `attempts` failed attempts.
    pub fn backoff_for(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.backoff
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff.max)
    }

    /// When the key may be tried again: after its back-off from its last attempt.
    fn ready_at(&self, key: &str, now: Instant) -> Instant {
        match self.attempts.get(key) {
            Some((n, last)) => *last + self.backoff_for(*n),
            None => now,
        }
    }

    /// Moves a key to active, or to the back-off wait when its back-off has not passed.
    fn reactivate(&mut self, key: &str, now: Instant) {
        let at = self.ready_at(key, now);
        if at <= now {
            self.place(key, Place::Active);
        } else {
            self.place(key, Place::Backoff(at));
        }
    }

    /// A pod to schedule appeared or changed. New keys become active; a key parked as
    /// unschedulable goes back (the change may make it fit) once its back-off has passed; a
    /// key already active or backing off stays where it is.
    pub fn add(&mut self, key: &str, now: Instant) {
        match self.entries.get(key).map(|e| e.place) {
            None => self.reactivate(key, now),
            Some(Place::Unschedulable(_)) => self.reactivate(key, now),
            Some(Place::Active | Place::Backoff(_)) => {}
        }
    }

    /// The next key to try, if any is ready. The key leaves the queue: the caller puts it back
    /// with [`SchedulingQueue::unschedulable`] or [`SchedulingQueue::retry`], or forgets it.
    pub fn pop(&mut self, now: Instant) -> Option<String> {
        self.flush(now);
        while let Some((key, generation)) = self.active.pop_front() {
            let current = self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation && e.place == Place::Active);
            if current {
                self.entries.remove(&key);
                return Some(key);
            }
        }
        None
    }

    fn record_attempt(&mut self, key: &str, now: Instant) {
        let n = self.attempts.get(key).map_or(0, |(n, _)| *n);
        self.attempts
            .insert(key.to_owned(), (n.saturating_add(1), now));
    }

    /// The key fit nowhere: park it until the cluster changes.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        self.record_attempt(key, now);
        self.place(key, Place::Unschedulable(now));
    }

    /// The attempt failed for another reason (an API error): try again after the back-off.
    pub fn retry(&mut self, key: &str, now: Instant) {
        self.record_attempt(key, now);
        let at = self.ready_at(key, now);
        self.place(key, Place::Backoff(at));
    }

    /// Something changed that may let parked pods fit (a node added or changed, a pod
    /// deleted): every parked key goes back, through its back-off.
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        let parked: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in parked {
            self.reactivate(&key, now);
        }
        // Every parked entry is stale now.
        self.parked.clear();
    }

    /// Drops a key: its pod was bound, deleted, or is no longer ours to schedule.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.attempts.remove(key);
    }

    /// Moves the keys whose back-off has passed to active, and the keys parked for longer
    /// than the limit back through their back-off.
    fn flush(&mut self, now: Instant) {
        while let Some(Reverse((at, generation, _))) = self.waiting.peek() {
            if *at > now {
                break;
            }
            let (at, generation) = (*at, *generation);
            let Some(Reverse((_, _, key))) = self.waiting.pop() else {
                break;
            };
            if self.is_current(&key, generation, Place::Backoff(at)) {
                self.place(&key, Place::Active);
            }
        }
        while let Some(Reverse((since, generation, _))) = self.parked.peek() {
            if *since + self.backoff.max_unschedulable > now {
                break;
            }
            let (since, generation) = (*since, *generation);
            let Some(Reverse((_, _, key))) = self.parked.pop() else {
                break;
            };
            if self.is_current(&key, generation, Place::Unschedulable(since)) {
                self.reactivate(&key, now);
            }
        }
    }

    fn is_current(&self, key: &str, generation: u64, place: Place) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.generation == generation && e.place == place)
    }

    /// When something next becomes ready by itself (a back-off ends, a parked pod has waited
    /// long enough), so the caller knows how long it may sleep.
    pub fn next_wake(&self) -> Option<Instant> {
        let waiting = self.waiting.peek().map(|Reverse((at, _, _))| *at);
        let parked = self
            .parked
            .peek()
            .map(|Reverse((since, _, _))| *since + self.backoff.max_unschedulable);
        match (waiting, parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a key is queued (in any place).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether a key is parked as unschedulable.
    #[cfg(test)]
    pub fn is_unschedulable(&self, key: &str) -> bool {
        matches!(
            self.entries.get(key).map(|e| e.place),
            Some(Place::Unschedulable(_))
        )
    }

    /// How many keys are queued, in every place.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn queue() -> (SchedulingQueue, Instant) {
        (SchedulingQueue::new(Backoff::default()), Instant::now())
    }

    #[test]
    fn keys_come_out_first_in_first_out_once() {
        let (mut q, t) = queue();
        q.add("a", t);
        q.add("b", t);
        q.add("a", t);
        assert_eq!(q.pop(t).as_deref(), Some("a"));
        assert_eq!(q.pop(t).as_deref(), Some("b"));
        assert_eq!(q.pop(t), None);
    }

    #[test]
    fn back_off_doubles_up_to_the_limit() {
        let (q, _) = queue();
        let waits: Vec<u64> = (1..=6).map(|n| q.backoff_for(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_back_off() {
        let (mut q, t) = queue();
        q.add("p", t);
        assert_eq!(q.pop(t).as_deref(), Some("p"));
        q.unschedulable("p", t);
        assert!(q.is_unschedulable("p"));
        assert_eq!(q.pop(t + 3 * S), None, "parked until something changes");
        // A node is added soon after: the pod waits out its one-second back-off first.
        q.move_all_unschedulable(t + S / 2);
        assert_eq!(q.pop(t + S / 2), None);
        assert_eq!(q.next_wake(), Some(t + S));
        assert_eq!(q.pop(t + S).as_deref(), Some("p"));
        // Fails again; a change long after the back-off makes it active at once.
        q.unschedulable("p", t + S);
        q.move_all_unschedulable(t + 10 * S);
        assert_eq!(q.pop(t + 10 * S).as_deref(), Some("p"));
    }

    #[test]
    fn parked_pods_are_tried_again_after_the_limit() {
        let (mut q, t) = queue();
        q.add("p", t);
        q.pop(t);
        q.unschedulable("p", t);
        assert_eq!(q.next_wake(), Some(t + Duration::from_secs(300)));
        assert_eq!(q.pop(t + Duration::from_secs(299)), None);
        assert_eq!(q.pop(t + Duration::from_secs(300)).as_deref(), Some("p"));
    }

    #[test]
    fn an_update_of_a_parked_pod_brings_it_back() {
        let (mut q, t) = queue();
        q.add("p", t);
        q.pop(t);
        q.unschedulable("p", t);
        q.add("p", t + 2 * S);
        assert_eq!(q.pop(t + 2 * S).as_deref(), Some("p"));
    }

    #[test]
    fn errors_retry_after_the_back_off() {
        let (mut q, t) = queue();
        q.add("p", t);
        q.pop(t);
        q.retry("p", t);
        assert_eq!(q.pop(t), None);
        assert_eq!(q.pop(t + S).as_deref(), Some("p"));
        q.retry("p", t + S);
        assert_eq!(q.pop(t + 2 * S), None);
        assert_eq!(q.pop(t + 3 * S).as_deref(), Some("p"));
    }

    #[test]
    fn removed_keys_never_come_out() {
        let (mut q, t) = queue();
        q.add("a", t);
        q.add("b", t);
        q.remove("a");
        q.add("c", t);
        q.retry("c", t);
        q.remove("c");
        assert_eq!(q.pop(t + 60 * S).as_deref(), Some("b"));
        assert_eq!(q.pop(t + 60 * S), None);
        assert_eq!(q.len(), 0);
    }
}
