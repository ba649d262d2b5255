//! Events, kept in check on the server side. An Event that repeats one recorded recently (same
//! involved object, reason, message, source and type: the key of Kubernetes' event correlator)
//! bumps `count` and `lastTimestamp` of the stored one instead of adding an object; and every
//! event goes after a time to live (Kubernetes' `--event-ttl`, 1 hour), so that a crash-looping
//! pod cannot fill the store.
//!
//! The correlator remembers the last 4096 event keys in memory, as Kubernetes' does; after a
//! restart the first repeat of an older event makes a new object, and later ones bump it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_store::StoreError;
use serde_json::{json, Value};

use crate::registry::{now_timestamp, store_error, Registry};

/// How many recent event keys are remembered (Kubernetes' `maxLruCacheEntries`).
const REMEMBERED: usize = 4096;
/// How often a bump is retried when the event changed under it.
const MAX_BUMP_ATTEMPTS: usize = 8;

/// The key two events must share to be one: Kubernetes' `getEventKey`.
pub(crate) fn event_key(event: &Value) -> String {
    let s = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    [
        s("/source/component"),
        s("/source/host"),
        s("/involvedObject/kind"),
        s("/involvedObject/namespace"),
        s("/involvedObject/name"),
        s("/involvedObject/fieldPath"),
        s("/involvedObject/uid"),
        s("/involvedObject/apiVersion"),
        s("/type"),
        s("/reason"),
        s("/message"),
    ]
    .join("\u{0}")
}

/// Recent event keys and the stored event (namespace, name) each was recorded as.
#[derive(Default)]
pub(crate) struct EventCache {
    inner: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    by_key: HashMap<String, (String, String)>,
    order: VecDeque<String>,
}

impl EventCache {
    fn get(&self, key: &str) -> Option<(String, String)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_key.get(key).cloned()
    }

    pub(crate) fn remember(&self, key: String, ns: &str, name: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .by_key
            .insert(key.clone(), (ns.to_owned(), name.to_owned()))
            .is_none()
        {
            inner.order.push_back(key);
        }
        while inner.order.len() > REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.by_key.remove(&oldest);
            }
        }
    }

    fn forget(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_key.remove(key);
        inner.order.retain(|k| k != key);
    }
}

fn events_info() -> &'static ResourceInfo {
    minik_api::resources::by_plural("", "v1", "events").expect("events are served")
}

/// The last time an event was seen: its latest timestamp of any kind.
fn last_seen(event: &Value) -> Option<i64> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .filter_map(|s| s.parse::<minik_api::k8s_openapi::jiff::Timestamp>().ok())
    .map(|t| t.as_second())
    .max()
}

impl Registry {
    /// If `event` repeats one recorded recently, bumps that one and answers it.
    pub(crate) async fn bump_event(
        &self,
        ns: &str,
        key: &str,
        event: &Value,
    ) -> Result<Option<bytes::Bytes>, ApiError> {
        let Some((stored_ns, name)) = self.event_cache().get(key) else {
            return Ok(None);
        };
        if stored_ns != ns {
            return Ok(None);
        }
        let info = events_info();
        let store_key = info.key(Some(ns), &name);
        for _ in 0..MAX_BUMP_ATTEMPTS {
            let Some(stored) = self
                .store()
                .get(&store_key)
                .await
                .map_err(|e| store_error(info, &name, e))?
            else {
                self.event_cache().forget(key);
                return Ok(None);
            };
            let Ok(mut current) = serde_json::from_slice::<Value>(&stored.value) else {
                return Ok(None);
            };
            if event_key(&current) != key {
                self.event_cache().forget(key);
                return Ok(None);
            }
            let count = current.get("count").and_then(Value::as_i64).unwrap_or(1);
            let repeats = event
                .get("count")
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1);
            current["count"] = json!(count.saturating_add(repeats));
            let last = event
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(now_timestamp);
            current["lastTimestamp"] = json!(last);
            if current.get("firstTimestamp").is_none_or(Value::is_null) {
                current["firstTimestamp"] = event
                    .get("firstTimestamp")
                    .cloned()
                    .unwrap_or_else(|| json!(last));
            }
            match self
                .store()
                .update(&store_key, current, Some(stored.revision))
                .await
            {
                Ok(s) => return Ok(Some(s.value)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    self.event_cache().forget(key);
                    return Ok(None);
                }
                Err(e) => return Err(store_error(info, &name, e)),
            }
        }
        Ok(None)
    }
}

/// Deletes the events last seen more than `ttl` ago, looking every `ttl / 10` (between one
/// second and one minute), until the task is aborted.
pub async fn sweep_events(registry: Registry, ttl: Duration) {
    let period = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match expire_events(&registry, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "expired old events"),
            Err(e) => tracing::warn!(error = %e, "cannot expire old events"),
        }
    }
}

/// One sweep: deletes every event last seen more than `ttl` ago; answers how many.
pub async fn expire_events(registry: &Registry, ttl: Duration) -> Result<usize, ApiError> {
    let info = events_info();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let oldest_kept = now.saturating_sub(ttl.as_secs() as i64);
    let listing = registry
        .store()
        .list(&info.prefix(None))
        .await
        .map_err(|e| store_error(info, "", e))?;
    let mut expired = 0;
    for item in listing.items {
        let Ok(event) = serde_json::from_slice::<Value>(&item.value) else {
            continue;
        };
        if last_seen(&event).is_some_and(|t| t >= oldest_kept) {
            continue;
        }
        // A bump since the listing makes the delete conflict: the event is fresh again.
        match registry
            .store()
            .delete(&item.key, Some(item.revision))
            .await
        {
            Ok(_) => expired += 1,
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(store_error(info, "", e)),
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, message: &str, uid: &str) -> Value {
        json!({
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": uid, "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"},
        })
    }

    #[test]
    fn keys_differ_exactly_where_kubernetes_keys_do() {
        let a = event("BackOff", "Back-off restarting failed container", "u1");
        assert_eq!(event_key(&a), event_key(&a.clone()));
        for other in [
            event("Started", "Back-off restarting failed container", "u1"),
            event("BackOff", "another message", "u1"),
            event("BackOff", "Back-off restarting failed container", "u2"),
        ] {
            assert_ne!(event_key(&a), event_key(&other));
        }
        let mut other_host = a.clone();
        other_host["source"]["host"] = json!("n2");
        assert_ne!(event_key(&a), event_key(&other_host));
        // Names, counts and times are not part of the key.
        let mut renamed = a.clone();
        renamed["metadata"] = json!({"name": "web.123"});
        renamed["count"] = json!(7);
        renamed["lastTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(event_key(&a), event_key(&renamed));
    }

    #[test]
    fn the_cache_forgets_the_oldest_beyond_its_size() {
        let cache = EventCache::default();
        for i in 0..REMEMBERED + 10 {
            cache.remember(format!("k{i}"), "ns", &format!("e{i}"));
        }
        assert!(cache.get("k0").is_none());
        assert!(cache.get("k9").is_none());
        assert_eq!(cache.get("k10"), Some(("ns".to_owned(), "e10".to_owned())));
        cache.forget("k10");
        assert!(cache.get("k10").is_none());
    }

    #[test]
    fn last_seen_is_the_latest_time() {
        let e = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
                       "lastTimestamp": "2024-01-01T00:10:00Z"});
        let t: minik_api::k8s_openapi::jiff::Timestamp = "2024-01-01T00:10:00Z".parse().unwrap();
        assert_eq!(last_seen(&e), Some(t.as_second()));
        assert_eq!(last_seen(&json!({})), None);
    }
}
