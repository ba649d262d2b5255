//! Behaviour of the sled store through its public trait: revisions, compare-and-swap,
//! durability across reopen, and watch semantics.

use std::collections::HashSet;

use futures::StreamExt;
use minik_store::{EventType, SledStore, Store, StoreConfig, StoreError};
use serde_json::{json, Value};

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(StoreConfig::new(dir.path().join("db"))).expect("open store")
}

fn pod(name: &str, image: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name}, "spec": {"image": image}})
}

fn rv(value: &[u8]) -> String {
    let v: Value = serde_json::from_slice(value).unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn writes_take_consecutive_revisions_stamped_into_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store
        .create("/registry/pods/default/a", pod("a", "x"))
        .await
        .unwrap();
    let b = store
        .create("/registry/pods/default/b", pod("b", "x"))
        .await
        .unwrap();
    assert_eq!((a.revision, b.revision), (1, 2));
    assert_eq!(rv(&b.value), "2");
    let got = store
        .get("/registry/pods/default/a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    assert_eq!(store.revision(), 2);
}

/// An object is in memory once: the write's answer, reads, lists and the watch window's replay
/// are all views of the value sled keeps (the memory of a server with many objects depends on
/// it), while a later write leaves what was handed out before unchanged.
#[tokio::test]
async fn answers_reads_lists_and_the_watch_window_share_the_stored_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = "/registry/pods/default/a";
    let created = store.create(key, pod("a", "v1")).await.unwrap();
    let got = store.get(key).await.unwrap().unwrap();
    let listed = store.list("/registry/pods/").await.unwrap();
    let mut watch = store.watch("/registry/pods/", 0).unwrap();
    let replayed = watch.next().await.unwrap().unwrap();
    assert_eq!(got.value, created.value);
    let at = created.value.as_ptr();
    assert_eq!(got.value.as_ptr(), at, "a get copied the value");
    assert_eq!(
        listed.items[0].value.as_ptr(),
        at,
        "a list copied the value"
    );
    assert_eq!(replayed.object.as_ptr(), at, "the window holds a copy");

    let updated = store
        .update(key, pod("a", "v2"), Some(created.revision))
        .await
        .unwrap();
    assert_eq!(rv(&created.value), "1");
    assert_eq!(rv(&updated.value), "2");
    let modified = watch.next().await.unwrap().unwrap();
    assert_eq!(modified.object.as_ptr(), updated.value.as_ptr());
    // The previous object is read back from sled: it is the first write's bytes again.
    assert_eq!(modified.prev.as_ref().map(|p| p.as_ptr()), Some(at));
}

#[tokio::test]
async fn compare_and_swap_refuses_stale_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = "/registry/pods/default/a";
    let first = store.create(key, pod("a", "v1")).await.unwrap();
    assert!(matches!(
        store.create(key, pod("a", "v1")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let second = store
        .update(key, pod("a", "v2"), Some(first.revision))
        .await
        .unwrap();
    assert!(matches!(
        store
            .update(key, pod("a", "v3"), Some(first.revision))
            .await,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert!(matches!(
        store.delete(key, Some(first.revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    // A failed write takes no revision.
    let gone = store.delete(key, Some(second.revision)).await.unwrap();
    assert_eq!(gone.revision, 3);
    assert_eq!(rv(&gone.value), "3");
    assert!(store.get(key).await.unwrap().is_none());
    assert!(matches!(
        store.update(key, pod("a", "v4"), None).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn concurrent_writers_each_get_a_distinct_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create(&format!("/registry/pods/default/p{i}"), pod("p", "x"))
                .await
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.unwrap().unwrap().revision));
    }
    assert_eq!(seen.len(), 200);
    assert_eq!(seen.iter().max(), Some(&200));
    let listing = store.list("/registry/pods/").await.unwrap();
    assert_eq!(listing.items.len(), 200);
    assert_eq!(listing.revision, 200);
}

#[tokio::test]
async fn the_same_key_twice_in_one_group_sees_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = "/registry/pods/default/a";
    let (a, b) = tokio::join!(
        store.create(key, pod("a", "1")),
        store.create(key, pod("a", "2"))
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
}

#[tokio::test]
async fn data_and_revisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create("/registry/pods/default/a", pod("a", "x"))
        .await
        .unwrap();
    store
        .create("/registry/pods/default/b", pod("b", "x"))
        .await
        .unwrap();
    store
        .delete("/registry/pods/default/b", None)
        .await
        .unwrap();
    store.close().await;

    let store = open(&dir);
    assert_eq!(store.revision(), 3);
    assert!(store
        .get("/registry/pods/default/a")
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get("/registry/pods/default/b")
        .await
        .unwrap()
        .is_none());
    let c = store
        .create("/registry/pods/default/c", pod("c", "x"))
        .await
        .unwrap();
    assert_eq!(c.revision, 4, "revisions keep increasing after a restart");
    // The event window starts empty after a restart: only the current revision can be resumed.
    assert!(matches!(
        store.watch("/registry/", 2),
        Err(StoreError::Compacted { .. })
    ));
    assert!(store.watch("/registry/", 4).is_ok());
}

#[tokio::test]
async fn list_is_limited_to_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create("/registry/pods/a/x", pod("x", "1"))
        .await
        .unwrap();
    store
        .create("/registry/pods/ab/y", pod("y", "1"))
        .await
        .unwrap();
    store
        .create("/registry/services/a/x", pod("x", "1"))
        .await
        .unwrap();
    let keys: Vec<String> = store
        .list("/registry/pods/a/")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, vec!["/registry/pods/a/x"]);
}

#[tokio::test]
async fn short_and_long_lists_are_whole_and_in_key_order() {
    // Short lists are read on the caller's thread, long ones on the blocking pool: 31 to 33
    // keys straddle where one becomes the other.
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for n in [31, 32, 33, 100] {
        let prefix = format!("/registry/pods/n{n}/");
        let mut want = Vec::new();
        for i in (0..n).rev() {
            let key = format!("{prefix}p{i:03}");
            store
                .create(&key, pod(&format!("p{i}"), "1"))
                .await
                .unwrap();
            want.push(key);
        }
        want.sort();
        let listing = store.list(&prefix).await.unwrap();
        let keys: Vec<String> = listing.items.into_iter().map(|s| s.key).collect();
        assert_eq!(keys, want, "{n} keys");
        assert_eq!(listing.revision, store.revision());
    }
}

#[tokio::test]
async fn a_watch_resumed_from_the_last_seen_revision_misses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut watch = store.watch("/registry/pods/", 0).unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("/registry/pods/default/p{}", i % 7);
                if store.create(&key, pod("p", "1")).await.is_err() {
                    store.delete(&key, None).await.unwrap();
                }
            }
        })
    };
    let mut seen = Vec::new();
    // Read part of the stream, drop it as a client that disconnects would, and resume.
    while seen.len() < 40 {
        let event = watch.next().await.unwrap().unwrap();
        seen.push(event.revision);
    }
    drop(watch);
    let mut watch = store
        .watch("/registry/pods/", *seen.last().unwrap())
        .unwrap();
    while seen.len() < 100 {
        let event = watch.next().await.unwrap().unwrap();
        assert!(matches!(event.kind, EventType::Added | EventType::Deleted));
        seen.push(event.revision);
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
}
