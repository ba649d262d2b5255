//! Events, kept in check on the server side: every event goes after a time to live (Kubernetes'
//! `--event-ttl`, 1 hour), so that a crash-looping pod cannot fill the store.
//!
//! The server stores each Event it is given, as Kubernetes' does: counting and merging repeats is
//! the work of the components that emit them (`minik_client::EventRecorder`).

use std::time::Duration;

use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_store::StoreError;
use serde_json::Value;

use crate::errors::store_error;
use crate::registry::Registry;

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
    .filter_map(minik_api::time::parse_seconds)
    .max()
}

/// Deletes the events last seen more than `ttl` ago, looking every `ttl / 10` (between one
/// second and one minute), until the task is aborted.
pub async fn sweep_events(registry: Registry, ttl: Duration) {
    let period = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = minik_api::time::from_system(std::time::SystemTime::now());
        match expire_events(&registry, ttl, now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "expired old events"),
            Err(e) => tracing::warn!(error = %e, "cannot expire old events"),
        }
    }
}

/// One sweep at `now`: deletes every event last seen more than `ttl` before it; answers how
/// many.
pub async fn expire_events(
    registry: &Registry,
    ttl: Duration,
    now: minik_api::time::Timestamp,
) -> Result<usize, ApiError> {
    let info = events_info();
    let oldest_kept = now
        .as_second()
        .saturating_sub(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
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
        // A patch since the listing makes the delete conflict: the event is fresh again.
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
    use serde_json::json;

    #[test]
    fn last_seen_is_the_latest_time() {
        let e = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
                       "lastTimestamp": "2024-01-01T00:10:00Z"});
        let t: minik_api::k8s_openapi::jiff::Timestamp = "2024-01-01T00:10:00Z".parse().unwrap();
        assert_eq!(last_seen(&e), Some(t.as_second()));
        assert_eq!(last_seen(&json!({})), None);
    }
}
