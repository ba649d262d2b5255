//! Paged lists through the public trait: pages of one revision fit together exactly whatever is
//! written between them, an older revision is rebuilt from the watch window, and one the window
//! no longer reaches is refused as compacted.

use std::collections::BTreeMap;

use minik_store::{PageRequest, Revision, SledStore, Store, StoreConfig, StoreError, Stored};
use proptest::prelude::*;
use serde_json::{json, Value};

const PREFIX: &str = "/registry/pods/default/";

fn open_with(dir: &tempfile::TempDir, history_size: usize) -> SledStore {
    let mut config = StoreConfig::new(dir.path().join("db"));
    config.history_size = history_size;
    SledStore::open(config).expect("open store")
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn pod(name: &str, image: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name}, "spec": {"image": image}})
}

fn image(stored: &Stored) -> String {
    let v: Value = serde_json::from_slice(&stored.value).unwrap();
    v["spec"]["image"].as_str().unwrap_or_default().to_owned()
}

fn names(items: &[Stored]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.key.trim_start_matches(PREFIX).to_owned())
        .collect()
}

/// Reads every page of `limit` items from the first one's revision on; the pages and the
/// revision they share.
async fn all_pages(store: &SledStore, limit: usize) -> (Vec<Vec<Stored>>, Revision) {
    let mut pages = Vec::new();
    let mut request = PageRequest {
        limit,
        count_rest: true,
        ..PageRequest::default()
    };
    loop {
        let page = store.list_page(PREFIX, request.clone()).await.unwrap();
        assert_eq!(page.next.is_some(), page.remaining != Some(0));
        pages.push(page.items);
        match page.next {
            Some(next) => {
                request.start = Some(next);
                request.revision = Some(page.revision);
            }
            None => return (pages, page.revision),
        }
    }
}

#[tokio::test]
async fn pages_concatenate_to_the_whole_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 1_000);
    for i in 0..10 {
        store
            .create(&key(&format!("p{i:02}")), pod("p", "x"))
            .await
            .unwrap();
    }
    // Another prefix that sorts right after this one must not leak in.
    store
        .create("/registry/pods/default0/z", pod("z", "x"))
        .await
        .unwrap();
    let whole = store.list(PREFIX).await.unwrap();
    let (pages, revision) = all_pages(&store, 3).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    assert_eq!(pages.concat(), whole.items);
    assert_eq!(revision, whole.revision);

    let first = store
        .list_page(
            PREFIX,
            PageRequest {
                limit: 4,
                count_rest: true,
                ..PageRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.remaining, Some(6));
    let unbounded = store
        .list_page(PREFIX, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(unbounded.items, whole.items);
    assert_eq!((unbounded.next, unbounded.remaining), (None, None));
}

#[tokio::test]
async fn a_page_of_an_older_revision_ignores_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 1_000);
    for name in ["a", "c", "e", "g", "i"] {
        store.create(&key(name), pod(name, "v1")).await.unwrap();
    }
    let first = store
        .list_page(
            PREFIX,
            PageRequest {
                limit: 2,
                count_rest: true,
                ..PageRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&first.items), ["a", "c"]);
    assert_eq!(first.remaining, Some(3));
    let at = first.revision;
    let e_before = store.get(&key("e")).await.unwrap().unwrap();

    // After the first page: new keys on both sides of its end, a change, deletions, and a key
    // deleted and created again.
    store.create(&key("b"), pod("b", "new")).await.unwrap();
    store.create(&key("f"), pod("f", "new")).await.unwrap();
    store.update(&key("e"), pod("e", "v2"), None).await.unwrap();
    store.delete(&key("g"), None).await.unwrap();
    store.delete(&key("i"), None).await.unwrap();
    store.create(&key("i"), pod("i", "again")).await.unwrap();

    let rest = store
        .list_page(
            PREFIX,
            PageRequest {
                start: first.next.clone(),
                revision: Some(at),
                limit: 2,
                count_rest: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.revision, at);
    assert_eq!(names(&rest.items), ["e", "g"]);
    assert_eq!(rest.items[0], e_before, "as it was, revision and all");
    assert_eq!(rest.remaining, Some(1));
    let last = store
        .list_page(
            PREFIX,
            PageRequest {
                start: rest.next.clone(),
                revision: Some(at),
                limit: 2,
                count_rest: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&last.items), ["i"]);
    assert_eq!(image(&last.items[0]), "v1");
    assert_eq!((last.next, last.remaining), (None, None));

    // The newest revision has every change.
    let now = store
        .list_page(PREFIX, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(names(&now.items), ["a", "b", "c", "e", "f", "i"]);
}

#[tokio::test]
async fn a_page_that_leaves_out_new_keys_reads_on_to_fill_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 1_000);
    store.create(&key("a"), pod("a", "x")).await.unwrap();
    store.create(&key("z"), pod("z", "x")).await.unwrap();
    let at = store.revision();
    for i in 0..20 {
        store
            .create(&key(&format!("m{i:02}")), pod("m", "x"))
            .await
            .unwrap();
    }
    let page = store
        .list_page(
            PREFIX,
            PageRequest {
                revision: Some(at),
                limit: 2,
                ..PageRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["a", "z"]);
    assert_eq!(page.next, None);
}

#[tokio::test]
async fn a_revision_the_window_no_longer_reaches_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 3);
    for i in 0..5 {
        store
            .create(&key(&format!("p{i}")), pod("p", "x"))
            .await
            .unwrap();
    }
    let first = store
        .list_page(
            PREFIX,
            PageRequest {
                limit: 2,
                ..PageRequest::default()
            },
        )
        .await
        .unwrap();
    let next = PageRequest {
        start: first.next.clone(),
        revision: Some(first.revision),
        limit: 2,
        count_rest: false,
    };
    // Nothing changed since: nothing to rebuild, whatever the window holds.
    assert!(store.list_page(PREFIX, next.clone()).await.is_ok());
    for i in 0..3 {
        store
            .update(&key("p0"), pod("p", &format!("v{i}")), None)
            .await
            .unwrap();
    }
    // The window (3 events) still holds every change after the first page.
    assert!(store.list_page(PREFIX, next.clone()).await.is_ok());
    store
        .update(&key("p0"), pod("p", "v9"), None)
        .await
        .unwrap();
    assert_eq!(
        store.list_page(PREFIX, next).await.err(),
        Some(StoreError::Compacted {
            requested: first.revision,
            oldest: first.revision + 1,
        })
    );
}

#[tokio::test]
async fn a_reopened_store_pages_only_its_current_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 100);
    for i in 0..4 {
        store
            .create(&key(&format!("p{i}")), pod("p", "x"))
            .await
            .unwrap();
    }
    store.close().await;
    let store = open_with(&dir, 100);
    let current = PageRequest {
        revision: Some(4),
        limit: 2,
        ..PageRequest::default()
    };
    assert_eq!(
        store.list_page(PREFIX, current).await.unwrap().items.len(),
        2
    );
    let older = PageRequest {
        revision: Some(3),
        limit: 2,
        ..PageRequest::default()
    };
    assert!(matches!(
        store.list_page(PREFIX, older).await,
        Err(StoreError::Compacted { requested: 3, .. })
    ));
}

#[tokio::test]
async fn reached_waits_for_a_revision_and_gives_up_after_its_patience() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, 100);
    store.create(&key("a"), pod("a", "x")).await.unwrap();
    let patience = std::time::Duration::from_millis(50);
    assert!(store.reached(1, patience).await);
    assert!(!store.reached(2, patience).await);
    let waiting = store.reached(2, std::time::Duration::from_secs(30));
    let (reached, created) = tokio::join!(waiting, store.create(&key("b"), pod("b", "x")));
    created.unwrap();
    assert!(reached);
}

/// A write of the property test: to one of a few keys.
#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        (0u8..12).prop_map(Op::Delete),
    ]
}

/// Applies `op` to the store and to the model of what the keys hold.
async fn apply(store: &SledStore, model: &mut BTreeMap<String, String>, op: &Op) {
    match op {
        Op::Put(k, v) => {
            let (name, value) = (format!("k{k:02}"), format!("v{v}"));
            let written = match model.contains_key(&key(&name)) {
                true => store.update(&key(&name), pod(&name, &value), None).await,
                false => store.create(&key(&name), pod(&name, &value)).await,
            };
            written.unwrap();
            model.insert(key(&name), value);
        }
        Op::Delete(k) => {
            let name = format!("k{k:02}");
            if model.remove(&key(&name)).is_some() {
                store.delete(&key(&name), None).await.unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever is written between pages, the pages of one list are exactly the keys as they
    /// were when the first page was read.
    #[test]
    fn pages_are_the_list_as_of_the_first_one(
        before in proptest::collection::vec(op(), 0..16),
        between in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..6),
        limit in 1usize..4,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open_with(&dir, 1_000);
            let mut model = BTreeMap::new();
            for op in &before {
                apply(&store, &mut model, op).await;
            }
            let expected = model.clone();
            let mut request = PageRequest { limit, count_rest: true, ..PageRequest::default() };
            let mut got = BTreeMap::new();
            let mut writes = between.iter();
            loop {
                let page = store.list_page(PREFIX, request.clone()).await.unwrap();
                prop_assert!(page.items.len() <= limit);
                for item in &page.items {
                    prop_assert!(got.insert(item.key.clone(), image(item)).is_none());
                }
                prop_assert_eq!(page.remaining, Some((expected.len() - got.len()) as u64));
                let Some(next) = page.next else {
                    prop_assert_eq!(page.remaining, Some(0));
                    break;
                };
                prop_assert_eq!(page.items.len(), limit);
                request.start = Some(next);
                request.revision = Some(page.revision);
                for op in writes.next().into_iter().flatten() {
                    apply(&store, &mut model, op).await;
                }
            }
            prop_assert_eq!(got, expected);
            Ok(())
        })?;
    }
}
