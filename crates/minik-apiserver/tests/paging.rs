//! LIST paging over real HTTP, as Kubernetes serves it: `limit` and `continue`, one consistent
//! snapshot across the pages, `remainingItemCount`, 410 Expired with a fresh token once the
//! snapshot is gone, `resourceVersion`/`resourceVersionMatch`, selectors within pages, tables,
//! and the watch a reflector starts from a paged list's resourceVersion.

use std::time::Duration;

use futures::StreamExt;
use minik_apiserver::Config;
use minik_store::Store;
use minik_testkit::manifest::{labeled_pod, pod, rv};
use minik_testkit::{start, start_with, Answer, TestServer};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

const INCONSISTENT: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

async fn create(s: &TestServer, path: &str, body: &Value) -> Value {
    let made = s.post(path, body).await;
    assert_eq!(made.code, 201, "{}", made.body);
    made.body
}

async fn create_pods(s: &TestServer, names: impl IntoIterator<Item = String>) {
    for name in names {
        create(s, PODS, &pod(&name)).await;
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn token(list: &Value) -> Option<String> {
    list["metadata"]["continue"].as_str().map(str::to_owned)
}

fn path_with(path: &str, query: &str) -> String {
    let joiner = if path.contains('?') { '&' } else { '?' };
    format!("{path}{joiner}{query}")
}

/// Every page of `path` (which may carry a selector) with `limit` items; `between` runs after
/// each page but the last. Asserts what every page of one list shares.
async fn read_pages<F, Fut>(s: &TestServer, path: &str, limit: usize, mut between: F) -> Vec<Value>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut pages: Vec<Value> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let query = match &next {
            None => format!("limit={limit}"),
            Some(t) => format!("limit={limit}&continue={t}"),
        };
        let page = s.get(&path_with(path, &query)).await;
        assert_eq!(page.code, 200, "{}", page.body);
        let page = page.body;
        assert!(names(&page).len() <= limit);
        if let Some(first) = pages.first() {
            assert_eq!(
                page["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
                "every page is read at the first one's revision"
            );
        }
        next = token(&page);
        pages.push(page);
        if next.is_none() {
            return pages;
        }
        between(pages.len()).await;
    }
}

fn all_names(pages: &[Value]) -> Vec<String> {
    pages.iter().flat_map(names).collect()
}

#[tokio::test]
async fn pages_concatenate_to_exactly_the_full_list() {
    let s = start().await;
    create_pods(&s, (0..23).map(|i| format!("p{i:02}"))).await;
    let full = s.get(PODS).await.body;
    assert!(token(&full).is_none(), "an unpaged list has no continue");
    assert!(full["metadata"].get("remainingItemCount").is_none());

    let pages = read_pages(&s, PODS, 5, |_| async {}).await;
    let items: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .collect();
    assert_eq!(
        items,
        full["items"].as_array().unwrap().iter().collect::<Vec<_>>()
    );
    assert_eq!(
        pages[0]["metadata"]["resourceVersion"],
        full["metadata"]["resourceVersion"]
    );
    let remaining: Vec<Value> = pages
        .iter()
        .map(|p| p["metadata"]["remainingItemCount"].clone())
        .collect();
    assert_eq!(
        remaining,
        [json!(18), json!(13), json!(8), json!(3), Value::Null]
    );
    assert_eq!(pages[0]["kind"], "PodList");

    // limit=0 and a negative limit are no limit, as in Kubernetes.
    for limit in ["0", "-1"] {
        let all = s.get(&format!("{PODS}?limit={limit}")).await.body;
        assert_eq!(names(&all).len(), 23);
        assert!(token(&all).is_none());
    }
}

#[tokio::test]
async fn writes_between_pages_do_not_show_and_deletes_do_not_drop_items() {
    let s = start().await;
    create_pods(&s, ["b", "d", "f", "h", "j", "l"].map(String::from)).await;
    let full = s.get(PODS).await.body;
    let pages = read_pages(&s, PODS, 2, |page| {
        let s = &s;
        async move {
            if page == 1 {
                // Around and after the page's end: creations, a change, deletions.
                create_pods(s, ["a", "e", "k", "z"].map(String::from)).await;
                let relabeled = s
                    .merge_patch(
                        &format!("{PODS}/f"),
                        &json!({"metadata": {"labels": {"changed": "yes"}}}),
                    )
                    .await;
                assert_eq!(relabeled.code, 200);
                for gone in ["h", "l"] {
                    assert_eq!(s.delete(&format!("{PODS}/{gone}")).await.code, 200);
                }
            }
        }
    })
    .await;
    assert_eq!(all_names(&pages), ["b", "d", "f", "h", "j", "l"]);
    let items: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .collect();
    assert_eq!(
        items,
        full["items"].as_array().unwrap().iter().collect::<Vec<_>>(),
        "the objects as they were, not as they are"
    );
    let now = s.get(PODS).await.body;
    assert_eq!(names(&now), ["a", "b", "d", "e", "f", "j", "k", "z"]);
}

#[tokio::test]
async fn all_namespaces_page_across_namespaces() {
    let s = start().await;
    for ns in ["alpha", "beta"] {
        create(
            &s,
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
        for i in 0..3 {
            create(
                &s,
                &format!("/api/v1/namespaces/{ns}/pods"),
                &pod(&format!("{ns}-{i}")),
            )
            .await;
        }
    }
    let full = s.get("/api/v1/pods").await.body;
    let pages = read_pages(&s, "/api/v1/pods", 4, |_| async {}).await;
    assert_eq!(pages.len(), 2);
    assert_eq!(all_names(&pages), names(&full));
    assert_eq!(pages[0]["metadata"]["remainingItemCount"], 2);
}

#[tokio::test]
async fn selectors_filter_within_pages() {
    let s = start().await;
    for i in 0..20 {
        let app = if i % 3 == 0 { "a" } else { "b" };
        create(&s, PODS, &labeled_pod(&format!("p{i:02}"), app)).await;
    }
    let selected = s.get(&format!("{PODS}?labelSelector=app%3Da")).await.body;
    assert_eq!(names(&selected).len(), 7);
    let pages = read_pages(&s, &format!("{PODS}?labelSelector=app%3Da"), 3, |_| async {
    })
    .await;
    assert_eq!(all_names(&pages), names(&selected));
    for page in &pages {
        assert!(
            page["metadata"].get("remainingItemCount").is_none(),
            "a filtered list cannot count what follows"
        );
    }
    // A selector that matches nothing ends the list in one page.
    let none = s
        .get(&format!("{PODS}?labelSelector=app%3Dnone&limit=3"))
        .await
        .body;
    assert_eq!(names(&none).len(), 0);
    assert!(token(&none).is_none());
    // Field selectors too.
    let one = read_pages(
        &s,
        &format!("{PODS}?fieldSelector=metadata.name%3Dp07"),
        2,
        |_| async {},
    )
    .await;
    assert_eq!(all_names(&one), ["p07"]);
}

/// A server whose store keeps only `history` changes: a snapshot older than that is gone.
async fn small_window(history: usize) -> TestServer {
    start_with(Config::default(), history).await
}

#[tokio::test]
async fn an_expired_continue_is_410_with_a_token_for_the_rest_as_of_now() {
    let s = small_window(4).await;
    create_pods(&s, (0..6).map(|i| format!("p{i}"))).await;
    let first = s.get(&format!("{PODS}?limit=2")).await.body;
    let stale = token(&first).expect("a continue token");
    // Nothing changed yet: the page is there.
    assert_eq!(
        s.get(&format!("{PODS}?limit=2&continue={stale}"))
            .await
            .code,
        200
    );
    create_pods(&s, (0..5).map(|i| format!("q{i}"))).await;
    assert_eq!(s.delete(&format!("{PODS}/p3")).await.code, 200);

    let expired = s.get(&format!("{PODS}?limit=2&continue={stale}")).await;
    assert_eq!(expired.code, 410, "{}", expired.body);
    assert_eq!(expired.body["kind"], "Status");
    assert_eq!(expired.body["reason"], "Expired");
    assert_eq!(expired.body["code"], 410);
    assert_eq!(expired.body["message"], INCONSISTENT);
    let fresh = token(&expired.body).expect("the Status carries a continue token");
    assert_ne!(fresh, stale);

    // The fresh token reads the rest as of now, from where the stale one was: the deletion
    // and the creations after the first page show.
    let mut rest = Vec::new();
    let mut next = Some(fresh);
    let mut revisions = Vec::new();
    while let Some(t) = next {
        let page = s.get(&format!("{PODS}?limit=3&continue={t}")).await;
        assert_eq!(page.code, 200, "{}", page.body);
        revisions.push(page.body["metadata"]["resourceVersion"].clone());
        rest.extend(names(&page.body));
        next = token(&page.body);
    }
    assert_eq!(rest, ["p2", "p4", "p5", "q0", "q1", "q2", "q3", "q4"]);
    assert!(revisions.windows(2).all(|w| w[0] == w[1]));
    assert_ne!(revisions[0], first["metadata"]["resourceVersion"]);
}

#[tokio::test]
async fn bad_parameters_are_refused_clearly() {
    let s = start().await;
    create_pods(&s, ["a", "b", "c"].map(String::from)).await;
    let expect = |answer: Answer, code: u16, words: &str| {
        assert_eq!(answer.code, code, "{}", answer.body);
        let message = answer.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{message}");
    };
    expect(
        s.get(&format!("{PODS}?limit=2&continue=not-a-token")).await,
        400,
        "invalid continue token: continue key is not valid",
    );
    expect(
        s.get(&format!("{PODS}?limit=x")).await,
        400,
        "limit: \"x\" is not an integer",
    );
    let first = s.get(&format!("{PODS}?limit=1")).await.body;
    let t = token(&first).unwrap();
    expect(
        s.get(&format!("{PODS}?limit=1&continue={t}&resourceVersion=1"))
            .await,
        400,
        "specifying resource version is not allowed when using continue",
    );
    expect(
        s.get(&format!("{PODS}?resourceVersionMatch=Exact")).await,
        422,
        "resourceVersionMatch is forbidden unless resourceVersion is provided",
    );
    expect(
        s.get(&format!(
            "{PODS}?resourceVersion=0&resourceVersionMatch=Exact"
        ))
        .await,
        422,
        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
    );
    expect(
        s.get(&format!("{PODS}?resourceVersion=abc&limit=1")).await,
        400,
        "resourceVersion \"abc\" is not valid",
    );
}

#[tokio::test]
async fn resource_versions_select_the_snapshot() {
    let s = small_window(6).await;
    create_pods(&s, ["a", "b", "c"].map(String::from)).await;
    let then = s.get(PODS).await.body;
    let at = rv(&then);
    create_pods(&s, ["d"].map(String::from)).await;
    assert_eq!(s.delete(&format!("{PODS}/a")).await.code, 200);

    // Exact: the list as it was, whole or in pages (a resourceVersion with a limit is exact).
    let exact = s
        .get(&format!(
            "{PODS}?resourceVersion={at}&resourceVersionMatch=Exact"
        ))
        .await
        .body;
    assert_eq!(exact["items"], then["items"]);
    assert_eq!(exact["metadata"]["resourceVersion"], at.to_string());
    let legacy = s
        .get(&format!("{PODS}?resourceVersion={at}&limit=2"))
        .await
        .body;
    assert_eq!(names(&legacy), ["a", "b"]);
    let t = token(&legacy).unwrap();
    let rest = s.get(&format!("{PODS}?limit=2&continue={t}")).await.body;
    assert_eq!(names(&rest), ["c"]);

    // NotOlderThan (and "0", and no limit): the newest.
    for query in [
        format!("resourceVersion={at}"),
        format!("resourceVersion={at}&resourceVersionMatch=NotOlderThan&limit=10"),
        "resourceVersion=0&limit=10".to_owned(),
    ] {
        let newest = s.get(&format!("{PODS}?{query}")).await.body;
        assert_eq!(names(&newest), ["b", "c", "d"], "{query}");
    }

    // Once the window has moved past it, an exact list is gone.
    create_pods(&s, (0..6).map(|i| format!("x{i}"))).await;
    let gone = s
        .get(&format!(
            "{PODS}?resourceVersion={at}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(gone.code, 410, "{}", gone.body);
    assert_eq!(gone.body["reason"], "Expired");
    assert_eq!(
        gone.body["message"],
        "The resourceVersion for the provided list is too old."
    );
    assert!(gone.body["metadata"].get("continue").is_none());

    // One the store has not reached: Kubernetes' "too large" once it has waited a while.
    let future = s.store.revision() + 1_000;
    let large = s
        .get(&format!(
            "{PODS}?resourceVersion={future}&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    assert_eq!(large.code, 504, "{}", large.body);
    assert_eq!(large.body["reason"], "Timeout");
    let message = large.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("Too large resource version: {future}, current: ")),
        "{message}"
    );
}

#[tokio::test]
async fn tables_of_pages_carry_the_continue_token() {
    let s = start().await;
    create_pods(&s, ["a", "b", "c"].map(String::from)).await;
    let table = |path: String| {
        let s = &s;
        async move {
            let answer = s
                .client
                .get(s.url(&path))
                .header(
                    "accept",
                    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                )
                .send()
                .await
                .expect("an answer");
            assert_eq!(answer.status().as_u16(), 200);
            answer.json::<Value>().await.expect("JSON")
        }
    };
    let first = table(format!("{PODS}?limit=2")).await;
    assert_eq!(first["kind"], "Table");
    assert_eq!(first["rows"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let t = token(&first).expect("a continue token in the Table");
    let rest = table(format!("{PODS}?limit=2&continue={t}")).await;
    assert_eq!(rest["rows"].as_array().unwrap().len(), 1);
    assert_eq!(rest["rows"][0]["cells"][0], "c");
    assert!(token(&rest).is_none());
    assert_eq!(
        rest["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
}

/// Reads a watch's events line by line, each within a deadline.
async fn watch_events(s: &TestServer, path: &str, count: usize) -> Vec<(String, String)> {
    let response = s
        .client
        .get(s.url(path))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("watch");
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    while events.len() < count {
        if let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let event: Value = serde_json::from_slice(&line).expect("an event");
            events.push((
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10s")
            .expect("the watch goes on");
        buffer.extend_from_slice(&chunk.expect("a chunk"));
    }
    events
}

#[tokio::test]
async fn a_watch_from_a_paged_lists_revision_sees_what_happened_between_pages() {
    let s = start().await;
    create_pods(&s, (0..7).map(|i| format!("p{i}"))).await;
    // As client-go's reflector lists: resourceVersion=0 and limit=500 on the first page, then
    // the continue tokens alone.
    let first = s
        .get(&format!("{PODS}?resourceVersion=0&limit=3"))
        .await
        .body;
    let mut listed = names(&first);
    let list_rv = rv(&first);
    create_pods(&s, ["a-new".to_owned()]).await;
    assert_eq!(s.delete(&format!("{PODS}/p5")).await.code, 200);
    let mut next = token(&first);
    while let Some(t) = next {
        let page = s.get(&format!("{PODS}?limit=3&continue={t}")).await.body;
        assert_eq!(rv(&page), list_rv);
        listed.extend(names(&page));
        next = token(&page);
    }
    assert_eq!(listed, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let events = watch_events(
        &s,
        &format!("{PODS}?watch=true&resourceVersion={list_rv}"),
        2,
    )
    .await;
    assert_eq!(
        events,
        [
            ("ADDED".to_owned(), "a-new".to_owned()),
            ("DELETED".to_owned(), "p5".to_owned())
        ]
    );
}

#[tokio::test]
async fn the_kube_client_pages_with_its_list_params() {
    use kube::api::{Api, ListParams};
    use minik_api::k8s_openapi::api::core::v1::Pod;

    let s = start().await;
    create_pods(&s, (0..5).map(|i| format!("p{i}"))).await;
    let mut config = kube::Config::new(s.base.parse().expect("a URL"));
    config.default_namespace = "default".into();
    let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).expect("client"));
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut remaining = Vec::new();
    loop {
        let page = pods.list(&params).await.expect("a page");
        names.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        remaining.push(page.metadata.remaining_item_count);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(remaining, [Some(3), Some(1), None]);
}
