//! Events over real HTTP: the server stores each event it is given and expires old ones; the
//! components' `EventRecorder` merges repeats into one object with a count, as Kubernetes'
//! recorder does.

use std::sync::Arc;
use std::time::Duration;

use minik_api::k8s_openapi::api::core::v1::ObjectReference;
use minik_client::{CorrelatorOptions, EventNote, EventRecorder, EventType, HttpApi};
use serde_json::{json, Value};

fn event(name: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1", "apiVersion": "v1"},
        "reason": "BackOff", "message": message, "type": "Warning",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1
    })
}

async fn stored_events(s: &minik_testkit::TestServer) -> Vec<Value> {
    let events = s.get("/api/v1/namespaces/default/events").await.body;
    events["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_event_create_answers_and_stores_what_it_created() {
    let s = minik_testkit::start().await;
    let mut answers = Vec::new();
    for name in ["web.1", "web.2"] {
        // The same content under two names: two events, not one merged into the other.
        let created = s
            .post(
                "/api/v1/namespaces/default/events",
                &event(name, "Back-off restarting failed container"),
            )
            .await;
        assert_eq!(created.code, 201, "{:?}", created.body);
        assert_eq!(created.body["metadata"]["name"], name);
        assert_eq!(created.body["count"], 1);
        answers.push(created.body);
    }
    assert_ne!(answers[0]["metadata"]["uid"], answers[1]["metadata"]["uid"]);
    let items = stored_events(&s).await;
    assert_eq!(items.len(), 2, "{items:#?}");
    for answer in &answers {
        let name = answer["metadata"]["name"].as_str().unwrap_or_default();
        let stored = s
            .get(&format!("/api/v1/namespaces/default/events/{name}"))
            .await;
        assert_eq!(stored.code, 200, "{name}: {:?}", stored.body);
        assert_eq!(&stored.body, answer);
    }
}

#[tokio::test]
async fn old_events_expire() {
    let s = minik_testkit::start().await;
    let registry = minik_apiserver::Registry::new(Arc::new(s.store.clone()));
    let old = event("web.old", "old news");
    assert_eq!(
        s.post("/api/v1/namespaces/default/events", &old).await.code,
        201
    );
    let mut fresh = event("web.fresh", "fresh news");
    let t0 = minik_api::time::from_system(std::time::SystemTime::now());
    fresh["lastTimestamp"] = json!(minik_api::time::rfc3339(t0));
    assert_eq!(
        s.post("/api/v1/namespaces/default/events", &fresh)
            .await
            .code,
        201
    );
    // Time is the sweep's input. The old event was last seen in 2024 but created just now:
    // creation counts as being seen, so an hour's TTL keeps both for that hour, and both go
    // once it has passed.
    let at = |minutes: i64| {
        t0.checked_add(minik_api::k8s_openapi::jiff::SignedDuration::from_mins(
            minutes,
        ))
        .expect("in range")
    };
    let ttl = Duration::from_secs(3600);
    for minutes in [0, 30, 59] {
        assert_eq!(
            minik_apiserver::expire_events(&registry, ttl, at(minutes))
                .await
                .unwrap(),
            0,
            "{minutes} minutes on"
        );
    }
    assert_eq!(
        minik_apiserver::expire_events(&registry, ttl, at(62))
            .await
            .unwrap(),
        2
    );
    assert!(stored_events(&s).await.is_empty());
}

fn note(message: &str) -> EventNote {
    EventNote {
        involved: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some("u1".into()),
            field_path: Some("spec.containers{main}".into()),
            ..ObjectReference::default()
        },
        component: "kubelet".into(),
        host: Some("n1".into()),
        type_: EventType::Warning,
        reason: "BackOff".into(),
        message: message.into(),
    }
}

fn recorder(s: &minik_testkit::TestServer) -> EventRecorder {
    EventRecorder::new(Arc::new(HttpApi::new(&s.base).expect("client")))
}

#[tokio::test]
async fn a_recorder_counts_repeats_in_one_event() {
    let s = minik_testkit::start().await;
    let events = recorder(&s);
    let backoff = note("Back-off restarting failed container");
    for _ in 0..5 {
        events.record(&backoff).await.expect("recorded");
    }
    events
        .record(&note("another message"))
        .await
        .expect("recorded");
    let items = stored_events(&s).await;
    assert_eq!(items.len(), 2, "{items:#?}");
    let repeated = items
        .iter()
        .find(|e| e["message"] == "Back-off restarting failed container")
        .expect("the repeated event");
    assert_eq!(repeated["count"], 5);
    assert_eq!(repeated["type"], "Warning");
    assert_eq!(
        repeated["source"],
        json!({"component": "kubelet", "host": "n1"})
    );
    assert_eq!(
        repeated["involvedObject"]["fieldPath"],
        "spec.containers{main}"
    );
    assert!(repeated["firstTimestamp"].as_str() <= repeated["lastTimestamp"].as_str());
    let other = items
        .iter()
        .find(|e| e["message"] == "another message")
        .expect("the other event");
    assert_eq!(other["count"], 1);

    // Repeats recorded at once are counted one by one, none lost.
    let at_once = note("at once");
    let writes = (0..10).map(|_| events.record(&at_once));
    for done in futures::future::join_all(writes).await {
        done.expect("recorded");
    }
    let items = stored_events(&s).await;
    let counted: Vec<_> = items.iter().filter(|e| e["message"] == "at once").collect();
    assert_eq!(counted.len(), 1, "{items:#?}");
    assert_eq!(counted[0]["count"], 10);
}

#[tokio::test]
async fn a_recorder_recreates_an_event_that_expired_with_its_count() {
    let s = minik_testkit::start().await;
    let events = recorder(&s);
    let backoff = note("Back-off restarting failed container");
    events.record(&backoff).await.expect("recorded");
    let items = stored_events(&s).await;
    let name = items[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let gone = s
        .delete(&format!("/api/v1/namespaces/default/events/{name}"))
        .await;
    assert_eq!(gone.code, 200, "{:?}", gone.body);
    events.record(&backoff).await.expect("recorded");
    let items = stored_events(&s).await;
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0]["metadata"]["name"], name.as_str());
    assert_eq!(items[0]["count"], 2);
}

#[tokio::test]
async fn a_recorder_combines_similar_events_and_limits_a_source() {
    let s = minik_testkit::start().await;
    let api = Arc::new(HttpApi::new(&s.base).expect("client"));
    let events = EventRecorder::with_options(
        api,
        CorrelatorOptions {
            max_similar: 3,
            spam_burst: 5,
            ..CorrelatorOptions::default()
        },
    );
    for i in 0..8 {
        events
            .record(&note(&format!("probe failed {i}")))
            .await
            .expect("recorded");
    }
    let items = stored_events(&s).await;
    let mut messages: Vec<(String, i64)> = items
        .iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap_or_default().to_owned(),
                e["count"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    messages.sort();
    // Two on their own, then one combined event; the source's burst of five ends the writes.
    assert_eq!(
        messages,
        [
            (
                "(combined from similar events): probe failed 4".to_owned(),
                3
            ),
            ("probe failed 0".to_owned(), 1),
            ("probe failed 1".to_owned(), 1),
        ]
    );
}
