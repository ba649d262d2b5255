//! Following one kind without caching it: a list read in pages, then a watch from the list's
//! revision, resumed where it broke and listed again when the server says that revision is
//! gone (410). The simulator keeps a few bytes per object of its own (see `pods.rs`), not the
//! objects, so it does not use an `Informer`, whose cache holds every object of the kind; and
//! it lists in pages, so that even 50,000 pods never sit in its memory at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use minik_api::resources::ResourceInfo;
use minik_api::ApiError;
use minik_client::{Api, HttpApi, ListParams, WatchEventType};
use serde_json::Value;

/// What a follower saw, in order.
#[derive(Debug)]
pub(super) enum Seen {
    /// A list begins: the objects applied from here to [`Seen::Synced`] are all there are.
    Relisting,
    /// An object was added or changed (or listed).
    Applied(Value),
    /// An object was deleted; this is its last state.
    Deleted(Value),
    /// The list ended: an object not applied since [`Seen::Relisting`] is gone.
    Synced,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Objects per page of a list.
const PAGE: usize = 500;

/// Lists and watches every object of `info` (all namespaces) through `api` for ever, telling
/// `observe` what it sees, in order.
pub(super) async fn follow(
    api: Arc<HttpApi>,
    info: &'static ResourceInfo,
    mut observe: impl FnMut(Seen),
) {
    let params = ListParams::default();
    let mut revision: Option<String> = None;
    let mut backoff = MIN_BACKOFF;
    loop {
        let from = match revision.take() {
            Some(rv) => rv,
            None => match list_pages(&api, info, &mut observe).await {
                Ok(rv) => rv,
                Err(e) => {
                    tracing::warn!(kind = info.kind, error = %e, "list failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let mut stream = match api.watch(info, None, &params, Some(&from)).await {
            Ok(stream) => stream,
            Err(e) if e.is_gone() => continue,
            Err(e) => {
                tracing::warn!(kind = info.kind, error = %e, "watch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                revision = Some(from);
                continue;
            }
        };
        let mut last = from;
        let mut gone = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    backoff = MIN_BACKOFF;
                    if let Some(rv) = event
                        .object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                    {
                        last = rv.to_owned();
                    }
                    match event.kind {
                        WatchEventType::Added | WatchEventType::Modified => {
                            observe(Seen::Applied(event.object))
                        }
                        WatchEventType::Deleted => observe(Seen::Deleted(event.object)),
                        WatchEventType::Bookmark => {}
                    }
                }
                Err(e) => {
                    gone = e.is_gone();
                    if !gone {
                        tracing::warn!(kind = info.kind, error = %e, "watch broke; resuming");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    break;
                }
            }
        }
        // A watch the server ended is resumed from the last revision seen; one whose revision
        // is gone lists again.
        if !gone {
            revision = Some(last);
        }
    }
}

/// Lists every object of `info` in pages of [`PAGE`], one consistent snapshot, telling
/// `observe` of each between [`Seen::Relisting`] and [`Seen::Synced`]; answers the snapshot's
/// revision. A snapshot that expires half-way (410) is an error: the caller lists again.
pub(super) async fn list_pages(
    api: &HttpApi,
    info: &'static ResourceInfo,
    observe: &mut impl FnMut(Seen),
) -> Result<String, ApiError> {
    let collection = collection_path(info);
    observe(Seen::Relisting);
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("{collection}?limit={PAGE}");
        if let Some(token) = &token {
            path.push_str("&continue=");
            path.push_str(&query_escape(token));
        }
        let mut page = api.get_path(&path).await?;
        if let Some(Value::Array(items)) = page.get_mut("items").map(Value::take) {
            for item in items {
                observe(Seen::Applied(item));
            }
        }
        let meta = |key: &str| {
            page.pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match meta("continue") {
            Some(next) => token = Some(next),
            None => {
                observe(Seen::Synced);
                return Ok(meta("resourceVersion").unwrap_or_default());
            }
        }
    }
}

/// `/api/v1/pods`, `/apis/GROUP/VERSION/PLURAL`: every object of `info`, all namespaces.
fn collection_path(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        format!("/api/{}/{}", info.version, info.plural)
    } else {
        format!("/apis/{}/{}/{}", info.group, info.version, info.plural)
    }
}

/// `s` as a query value: everything but RFC 3986's unreserved characters percent-encoded.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths_and_tokens_are_spelled_for_a_query() {
        let pods = minik_client::resource_of::<minik_api::k8s_openapi::api::core::v1::Pod>();
        assert_eq!(collection_path(pods), "/api/v1/pods");
        let leases =
            minik_client::resource_of::<minik_api::k8s_openapi::api::coordination::v1::Lease>();
        assert_eq!(
            collection_path(leases),
            "/apis/coordination.k8s.io/v1/leases"
        );
        assert_eq!(query_escape("eyJ2-_x.~"), "eyJ2-_x.~");
        assert_eq!(query_escape("a+b/c=&"), "a%2Bb%2Fc%3D%26");
    }
}
