//! The client side of the API: `HttpApi` over a real socket and the in-process `Registry`
//! behave the same, and informers keep a cache current through both, relisting after 410.

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::Pod;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_apiserver::Config;
use minik_client::{
    resource_of, Api, ApiExt, Change, HttpApi, Informer, InformerConfig, ListParams,
    SharedInformers,
};
use minik_testkit::manifest::pod;
use minik_testkit::{start, start_with, wait_for, DEADLINE};
use serde_json::json;

async fn exercise(api: &dyn Api) {
    let pods = resource_of::<Pod>();
    let ns = Some("default");
    let created = api
        .create(pods, ns, pod("a"), WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(created["metadata"]["name"], "a");
    let err = api
        .create(pods, ns, pod("a"), WriteOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "{err:?}");
    assert_eq!(err.to_string(), "pods \"a\" already exists");

    let got: Pod = api.get_as(ns, "a").await.unwrap();
    assert_eq!(
        got.metadata.uid.as_deref(),
        created["metadata"]["uid"].as_str()
    );
    let (list, rv) = api
        .list_as::<Pod>(None, &ListParams::labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(rv.parse::<u64>().unwrap() > 0);

    let patch = Patch {
        kind: PatchKind::Merge,
        body: json!({"metadata": {"labels": {"x": "1"}}}),
    };
    let patched = api
        .patch(pods, ns, "a", patch, false, WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(patched["metadata"]["labels"]["x"], "1");

    let mut stale = got.clone();
    stale.metadata.labels = None;
    assert!(api
        .replace_as(&stale, false)
        .await
        .unwrap_err()
        .is_conflict());

    api.bind("default", "a", "n1").await.unwrap();
    assert!(api
        .bind("default", "a", "n2")
        .await
        .unwrap_err()
        .is_conflict());

    let mut status = api.get_as::<Pod>(ns, "a").await.unwrap();
    status.status.get_or_insert_with(Default::default).phase = Some("Running".into());
    let running = api.replace_as(&status, true).await.unwrap();
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));

    let marked = api
        .delete(pods, ns, "a", DeleteOptions::default())
        .await
        .unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let gone = DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    api.delete(pods, ns, "a", gone).await.unwrap();
    assert!(api.get(pods, ns, "a").await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn http_and_in_process_clients_behave_alike() {
    let s = start().await;
    exercise(&HttpApi::new(&s.base).unwrap()).await;
    let s = start().await;
    let local = minik_apiserver::Registry::new(Arc::new(s.store.clone()));
    exercise(&local).await;
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_a_hint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let api = HttpApi::new(&format!("http://{addr}")).unwrap();
    let err = api
        .get(resource_of::<Pod>(), Some("default"), "a")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach the minik server at http://{addr} (connection refused): is 'minik server' or 'minik up' running?")
    );
    assert!(HttpApi::new("localhost:6443").is_err());
}

#[tokio::test]
async fn an_informer_follows_changes() {
    let s = start().await;
    let api: Arc<dyn Api> = Arc::new(HttpApi::new(&s.base).unwrap());
    s.post("/api/v1/namespaces/default/pods", &pod("before"))
        .await;
    let informer = Informer::<Pod>::spawn(api.clone(), InformerConfig::default());
    let mut changes = informer.subscribe();
    let cache = informer.cache();
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .unwrap();
    assert!(cache.get("default/before").is_some());

    for i in 0..10 {
        s.post("/api/v1/namespaces/default/pods", &pod(&format!("p{i}")))
            .await;
    }
    s.delete("/api/v1/namespaces/default/pods/before").await;
    wait_for("the cache to follow", DEADLINE, || {
        let (len, before) = (cache.len(), cache.get("default/before").is_some());
        async move {
            if len == 10 && !before {
                Ok(())
            } else {
                Err(format!("{len} pods cached, `before` among them: {before}"))
            }
        }
    })
    .await;

    let mut saw_delete = false;
    while let Ok(Some(change)) =
        tokio::time::timeout(Duration::from_millis(200), changes.next()).await
    {
        if let Change::Deleted(p) = change {
            saw_delete |= p.metadata.name.as_deref() == Some("before");
        }
    }
    assert!(saw_delete);
}

#[tokio::test]
async fn an_informer_relists_when_its_revision_is_gone() {
    // Watches end every 300 ms and only 3 changes are kept, so the informer, which selects
    // nothing that changes, resumes from a revision the server no longer has.
    let config = Config {
        watch_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let s = start_with(config, 3).await;
    let api: Arc<dyn Api> = Arc::new(HttpApi::new(&s.base).unwrap());
    let informer = Informer::<Pod>::spawn(
        api,
        InformerConfig {
            params: ListParams::labels("app=other"),
            resync: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let mut changes = informer.subscribe();
    tokio::time::timeout(Duration::from_secs(10), informer.cache().wait_synced())
        .await
        .unwrap();
    // The first list's own Resync may still be queued; drain it.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), changes.next()).await {}
    for i in 0..10 {
        s.post("/api/v1/namespaces/default/pods", &pod(&format!("p{i}")))
            .await;
    }
    let mut other = pod("other");
    other["metadata"]["labels"] = json!({"app": "other"});
    let relisted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Change::Resync) = changes.next().await {
                return;
            }
        }
    })
    .await;
    assert!(
        relisted.is_ok(),
        "the informer did not relist after 410 Gone"
    );
    s.post("/api/v1/namespaces/default/pods", &other).await;
    let cache = informer.cache();
    wait_for("the informer to see the new pod", DEADLINE, || {
        let seen = cache.get("default/other").is_some();
        async move { seen.then_some(()) }
    })
    .await;
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn shared_informers_keep_one_cache_per_kind_and_a_queue_per_subscriber() {
    let s = start().await;
    let api: Arc<dyn Api> = Arc::new(minik_apiserver::Registry::new(Arc::new(s.store.clone())));
    let shared = SharedInformers::new(
        api.clone(),
        InformerConfig {
            resync: Duration::from_secs(3600),
            buffer: 16,
            ..InformerConfig::default()
        },
    );
    let first = shared.get::<Pod>();
    let second = shared.get::<Pod>();
    assert!(Arc::ptr_eq(&first, &second), "one informer per kind");
    first.cache().wait_synced().await;
    let mut keeping_up = first.subscribe();
    let mut falling_behind = second.subscribe();
    let mut ticking = second.subscribe_every(Duration::from_millis(200));

    let pods = resource_of::<Pod>();
    api.create(pods, Some("default"), pod("one"), WriteOptions::default())
        .await
        .unwrap();
    let change = tokio::time::timeout(DEADLINE, keeping_up.next())
        .await
        .unwrap();
    assert!(
        matches!(&change, Some(Change::Applied(p)) if p.metadata.name.as_deref() == Some("one")),
        "{change:?}"
    );
    assert!(
        second.cache().get("default/one").is_some(),
        "the cache is shared"
    );

    // 20 changes, more than a subscriber may hold: `keeping_up`, which reads as they come,
    // gets each in order; `falling_behind`, which does not read, is told to resync, once, in
    // place of them, and nothing older is left for it.
    let reader = tokio::spawn(async move {
        let mut names = Vec::new();
        while names.len() < 20 {
            match keeping_up.next().await {
                Some(Change::Applied(p)) => names.push(p.metadata.name.clone().unwrap_or_default()),
                other => panic!("{other:?}"),
            }
        }
        (names, keeping_up)
    });
    for i in 0..20 {
        api.create(
            pods,
            Some("default"),
            pod(&format!("p{i}")),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let (names, mut keeping_up) = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    let want: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    assert_eq!(names, want);
    let change = tokio::time::timeout(DEADLINE, falling_behind.next())
        .await
        .unwrap();
    assert!(matches!(change, Some(Change::Resync)), "{change:?}");
    let after = tokio::time::timeout(Duration::from_millis(300), falling_behind.next()).await;
    assert!(after.is_err(), "nothing queued after the resync: {after:?}");

    // A subscriber's own period: a Resync with nothing changed.
    loop {
        match tokio::time::timeout(DEADLINE, ticking.next())
            .await
            .unwrap()
        {
            Some(Change::Resync) => break,
            Some(Change::Applied(_)) => continue,
            other => panic!("{other:?}"),
        }
    }

    // Dropping the last handle stops the informer and ends its subscriptions.
    drop((first, second, shared));
    let end = tokio::time::timeout(DEADLINE, async {
        while keeping_up.next().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "the subscription did not end");
}
