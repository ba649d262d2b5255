//! Expectations, as Kubernetes' ReplicaSet controller keeps them: the creates and deletes a
//! controller issued and has not yet seen in its cache. While some are outstanding the
//! controller does not size its owner again, or a burst would be created twice before the
//! watch catches up. They are tracked by pod name (creates: the controller names its pods) and
//! uid (deletes), and expire after a while so that a lost event cannot wedge an owner.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

/// Outstanding creates and deletes per owner key (`namespace/name`).
#[derive(Debug)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
}

impl Expectations {
    pub(crate) fn new(ttl: Duration) -> Self {
        Expectations {
            pending: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `creates` (pod names) and `deletes` (pod uids) are about to be issued.
    pub(crate) fn expect(
        &self,
        key: &str,
        creates: impl IntoIterator<Item = String>,
        deletes: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        let creates: HashSet<String> = creates.into_iter().collect();
        let deletes: HashSet<String> = deletes.into_iter().collect();
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        let mut pending = self.lock();
        let entry = pending.entry(key.to_owned()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: now,
        });
        entry.creates.extend(creates);
        entry.deletes.extend(deletes);
        entry.since = now;
    }

    /// A pod named `name` of `key` was seen (or its create failed).
    pub(crate) fn created(&self, key: &str, name: &str) {
        self.settle(key, |p| {
            p.creates.remove(name);
        });
    }

    /// The pod with `uid` of `key` was seen going (or its delete failed).
    pub(crate) fn deleted(&self, key: &str, uid: &str) {
        self.settle(key, |p| {
            p.deletes.remove(uid);
        });
    }

    fn settle(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        let mut pending = self.lock();
        if let Some(p) = pending.get_mut(key) {
            f(p);
            if p.creates.is_empty() && p.deletes.is_empty() {
                pending.remove(key);
            }
        }
    }

    /// Forgets `key` (its owner is gone).
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Whether the owner at `key` may be sized again: nothing is outstanding once what the
    /// cache shows is taken into account (`seen(name)`: a pod of that name is cached;
    /// `gone(uid)`: no active pod has that uid), or the expectations are older than the TTL.
    pub(crate) fn satisfied(
        &self,
        key: &str,
        now: Instant,
        seen: impl Fn(&str) -> bool,
        gone: impl Fn(&str) -> bool,
    ) -> bool {
        let mut pending = self.lock();
        let Some(p) = pending.get_mut(key) else {
            return true;
        };
        p.creates.retain(|name| !seen(name));
        p.deletes.retain(|uid| !gone(uid));
        let expired = now.saturating_duration_since(p.since) > self.ttl;
        if expired {
            tracing::debug!(%key, creates = p.creates.len(), deletes = p.deletes.len(), "expectations expired");
        }
        if expired || (p.creates.is_empty() && p.deletes.is_empty()) {
            pending.remove(key);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expectations_hold_until_observed_failed_or_expired() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let nothing_seen = |_: &str| false;
        // (case, creates, deletes, what happens, later, satisfied)
        type Step = fn(&Expectations);
        type Case = (&'static str, Vec<String>, Vec<String>, Step, u64, bool);
        let cases: Vec<Case> = vec![
            ("no record", vec![], vec![], |_| {}, 0, true),
            (
                "creates outstanding",
                names(&["a", "b"]),
                vec![],
                |_| {},
                1,
                false,
            ),
            (
                "creates observed",
                names(&["a", "b"]),
                vec![],
                |e| {
                    e.created("ns/rs", "a");
                    e.created("ns/rs", "b");
                },
                1,
                true,
            ),
            (
                "one create still outstanding",
                names(&["a", "b"]),
                vec![],
                |e| e.created("ns/rs", "a"),
                1,
                false,
            ),
            (
                "deletes observed",
                vec![],
                names(&["u1"]),
                |e| e.deleted("ns/rs", "u1"),
                1,
                true,
            ),
            ("expired", names(&["a"]), names(&["u1"]), |_| {}, 301, true),
            (
                "forgotten",
                names(&["a"]),
                vec![],
                |e| e.forget("ns/rs"),
                1,
                true,
            ),
        ];
        for (case, creates, deletes, step, later, expected) in cases {
            let e = Expectations::new(ttl);
            e.expect("ns/rs", creates, deletes, t0);
            step(&e);
            let now = t0 + Duration::from_secs(later);
            assert_eq!(
                e.satisfied("ns/rs", now, nothing_seen, nothing_seen),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn the_cache_settles_expectations_too() {
        let t0 = Instant::now();
        let e = Expectations::new(Duration::from_secs(300));
        e.expect("ns/rs", names(&["a", "b"]), names(&["u1"]), t0);
        assert!(!e.satisfied("ns/rs", t0, |n| n == "a", |_| false));
        // "a" was settled by the first look; "b" now, and "u1" is still outstanding.
        assert!(!e.satisfied("ns/rs", t0, |n| n == "b", |_| false));
        assert!(e.satisfied("ns/rs", t0, |_| false, |u| u == "u1"));
    }
}
