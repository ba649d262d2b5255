//! The store's free-space reserve: short of it, writes are refused with `NoSpace` and change
//! nothing, reads go on, and the store says why it takes no writes. (A disk that really fills
//! up is `crates/minik/tests/full_disk.rs`, on a tmpfs.)

use std::os::unix::fs::MetadataExt;

use minik_store::{SledStore, Store, StoreConfig, StoreError};
use serde_json::{json, Value};

fn open(dir: &tempfile::TempDir, min_free_bytes: u64) -> SledStore {
    let mut config = StoreConfig::new(dir.path().join("db"));
    config.min_free_bytes = min_free_bytes;
    SledStore::open(config).expect("open store")
}

fn pod(name: &str, image: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name}, "spec": {"image": image}})
}

#[tokio::test]
async fn short_of_its_reserve_the_store_refuses_writes_changes_nothing_and_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (a_key, b_key) = ("/registry/pods/default/a", "/registry/pods/default/b");
    let store = open(&dir, 0);
    let a = store.create(a_key, pod("a", "v1")).await.unwrap();
    store.close().await;

    // No filesystem has this much free.
    let store = open(&dir, u64::MAX / 4);
    match store.writable() {
        Err(StoreError::NoSpace(message)) => assert!(
            message.contains("must stay free") && message.contains("reads keep working"),
            "{message}"
        ),
        other => panic!("a store short of its reserve says so, not {other:?}"),
    }
    for refused in [
        store.create(b_key, pod("b", "v1")).await,
        store.update(a_key, pod("a", "v2"), Some(a.revision)).await,
        store.delete(a_key, None).await,
    ] {
        assert!(
            matches!(refused, Err(StoreError::NoSpace(_))),
            "{refused:?}"
        );
    }
    // A write that fails on its own keeps its own answer.
    assert!(matches!(
        store
            .update(a_key, pod("a", "v2"), Some(a.revision + 7))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.get(a_key).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get(b_key).await.unwrap(), None);
    let listing = store.list("/registry/pods/").await.unwrap();
    assert_eq!(
        (listing.items, listing.revision),
        (vec![a.clone()], a.revision)
    );
    assert_eq!(store.revision(), a.revision);
    store.close().await;

    let store = open(&dir, 0);
    assert!(store.writable().is_ok());
    let b = store.create(b_key, pod("b", "v1")).await.unwrap();
    assert_eq!(
        b.revision,
        a.revision + 1,
        "the refused writes took no revision"
    );
}

#[tokio::test]
async fn the_store_keeps_an_allocated_ballast_for_the_day_the_disk_fills() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 0);
    let ballast = std::fs::metadata(dir.path().join("db").join("minik-ballast"))
        .expect("the ballast is in the store's directory");
    assert!(
        ballast.blocks() * 512 >= 8 << 20,
        "the ballast holds 8 MiB of disk, not a sparse promise: {} blocks",
        ballast.blocks()
    );
    store.close().await;
}
