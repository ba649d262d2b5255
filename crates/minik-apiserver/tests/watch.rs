//! Watch over real HTTP: ordering, resumption without gaps or repeats, 410 Gone, selectors,
//! bookmarks.

use std::time::Duration;

use futures::StreamExt;
use minik_apiserver::Config;
use minik_testkit::manifest::{pod, rv};
use minik_testkit::{start, start_with, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// Reads a watch response line by line, each within a deadline.
struct Lines {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Lines {
    async fn open(s: &TestServer, path: &str) -> Lines {
        let response = s
            .client
            .get(s.url(path))
            .send()
            .await
            .expect("watch request");
        assert_eq!(response.status().as_u16(), 200);
        Lines {
            stream: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("event is JSON"));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("an event within 10s")?;
            self.buffer.extend_from_slice(&chunk.expect("chunk"));
        }
    }
}

fn summary(event: &Value) -> (String, String) {
    (
        event["type"].as_str().unwrap().to_owned(),
        event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

#[tokio::test]
async fn watch_reports_changes_in_order_with_their_revisions() {
    let s = start().await;
    let list = s.get(PODS).await.body;
    let mut watch = Lines::open(
        &s,
        &format!("{PODS}?watch=true&resourceVersion={}", rv(&list)),
    )
    .await;
    let created = s.post(PODS, &pod("a")).await.body;
    let patched = s
        .patch(
            &format!("{PODS}/a"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"v": "2"}}}),
        )
        .await
        .body;
    let deleted = s.delete(&format!("{PODS}/a")).await.body;
    for (expected_type, expected_rv) in [
        ("ADDED", rv(&created)),
        ("MODIFIED", rv(&patched)),
        ("DELETED", rv(&deleted)),
    ] {
        let event = watch.next().await.unwrap();
        assert_eq!(event["type"], expected_type);
        assert_eq!(rv(&event["object"]), expected_rv);
    }
}

#[tokio::test]
async fn watch_without_a_revision_starts_with_the_current_objects() {
    let s = start().await;
    s.post(PODS, &pod("a")).await;
    s.post(PODS, &pod("b")).await;
    let mut watch = Lines::open(&s, &format!("{PODS}?watch=1")).await;
    assert_eq!(
        summary(&watch.next().await.unwrap()),
        ("ADDED".into(), "a".into())
    );
    assert_eq!(
        summary(&watch.next().await.unwrap()),
        ("ADDED".into(), "b".into())
    );
    s.post(PODS, &pod("c")).await;
    assert_eq!(
        summary(&watch.next().await.unwrap()),
        ("ADDED".into(), "c".into())
    );
}

#[tokio::test]
async fn a_resumed_watch_misses_and_repeats_nothing() {
    let s = start().await;
    let start_rv = rv(&s.get(PODS).await.body);
    let writer = {
        let client = s.client.clone();
        let url = s.url(PODS);
        tokio::spawn(async move {
            for i in 0..60 {
                let body = pod(&format!("p{i}"));
                let code = client.post(&url).json(&body).send().await.unwrap().status();
                assert_eq!(code.as_u16(), 201);
            }
        })
    };
    let mut seen = Vec::new();
    let mut from = start_rv;
    // Three connections, each dropped after a few events, each resumed from the last seen
    // resourceVersion, as a client that loses its connection does.
    for take in [15, 20, 25] {
        let mut watch = Lines::open(&s, &format!("{PODS}?watch=true&resourceVersion={from}")).await;
        for _ in 0..take {
            let event = watch.next().await.unwrap();
            assert_eq!(event["type"], "ADDED");
            seen.push(
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            from = rv(&event["object"]);
        }
    }
    writer.await.unwrap();
    let expected: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_watch_from_beyond_the_kept_history_gets_410_gone() {
    let s = start_with(Config::default(), 5).await;
    let first = s.post(PODS, &pod("first")).await.body;
    for i in 0..10 {
        s.post(PODS, &pod(&format!("p{i}"))).await;
    }
    let mut watch = Lines::open(
        &s,
        &format!("{PODS}?watch=true&resourceVersion={}", rv(&first)),
    )
    .await;
    let event = watch.next().await.unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["kind"], "Status");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    assert!(event["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version"));
    assert!(
        watch.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_selector_watch_sees_objects_enter_and_leave_the_selection() {
    let s = start().await;
    let from = rv(&s.get(PODS).await.body);
    let mut watch = Lines::open(
        &s,
        &format!("{PODS}?watch=true&resourceVersion={from}&labelSelector=tier%3Dfront"),
    )
    .await;
    s.post(PODS, &pod("a")).await;
    let label = |tier: &str| json!({"metadata": {"labels": {"tier": tier}}});
    s.patch(
        &format!("{PODS}/a"),
        "application/merge-patch+json",
        &label("front"),
    )
    .await;
    s.patch(
        &format!("{PODS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "1"}}}),
    )
    .await;
    s.patch(
        &format!("{PODS}/a"),
        "application/merge-patch+json",
        &label("back"),
    )
    .await;
    s.delete(&format!("{PODS}/a")).await;
    s.post(PODS, &{
        let mut p = pod("b");
        p["metadata"]["labels"] = json!({"tier": "front"});
        p
    })
    .await;
    let events: Vec<Value> = vec![
        watch.next().await.unwrap(),
        watch.next().await.unwrap(),
        watch.next().await.unwrap(),
        watch.next().await.unwrap(),
    ];
    // Leaving the selection: the object as it was last selected, at the revision of the change.
    assert_eq!(events[2]["object"]["metadata"]["labels"]["tier"], "front");
    let got: Vec<(String, String)> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            ("ADDED".to_string(), "a".to_string()),
            ("MODIFIED".to_string(), "a".to_string()),
            ("DELETED".to_string(), "a".to_string()),
            ("ADDED".to_string(), "b".to_string()),
        ]
    );
}

#[tokio::test]
async fn bookmarks_report_progress_when_allowed() {
    let config = Config {
        bookmark_interval: Duration::from_millis(50),
        ..Config::default()
    };
    let s = start_with(config, 100).await;
    let from = rv(&s.get(PODS).await.body);
    let mut watch = Lines::open(&s, &format!("/api/v1/namespaces/kube-system/pods?watch=true&resourceVersion={from}&allowWatchBookmarks=true")).await;
    let created = s.post(PODS, &pod("elsewhere")).await.body;
    loop {
        let event = watch.next().await.unwrap();
        assert_eq!(event["type"], "BOOKMARK");
        assert_eq!(event["object"]["kind"], "Pod");
        if rv(&event["object"]) >= rv(&created) {
            break;
        }
    }
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let s = start().await;
    let mut watch = Lines::open(&s, &format!("{PODS}?watch=true&timeoutSeconds=1")).await;
    assert!(watch.next().await.is_none());
}

#[tokio::test]
async fn a_watch_from_a_revision_the_store_never_reached_gets_410() {
    let s = start().await;
    let mut watch = Lines::open(&s, &format!("{PODS}?watch=true&resourceVersion=999999")).await;
    let event = watch.next().await.unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert!(event["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too large resource version: 999999"));
}

#[tokio::test]
async fn a_huge_timeout_is_capped_not_a_panic() {
    let s = start().await;
    let mut watch = Lines::open(
        &s,
        &format!("{PODS}?watch=true&timeoutSeconds=9223372036854775807"),
    )
    .await;
    s.post(PODS, &pod("a")).await;
    assert_eq!(
        summary(&watch.next().await.unwrap()),
        ("ADDED".into(), "a".into())
    );
}
