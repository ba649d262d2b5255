//! Request limits over a real socket: oversize bodies (413, nothing stored), deeply nested and
//! alias-bomb documents (400), slow-loris headers and stalled bodies (disconnected, 408), and
//! the per-client watch limit (429 with Retry-After, freed when a watch closes), and the watch
//! buffer (a watch whose client stops reading is cut and its connection closed).

use std::sync::Arc;
use std::time::Duration;

use minik_apiserver::{app, ApiServer, Config};
use minik_store::{SledStore, StoreConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

struct Server {
    addr: std::net::SocketAddr,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(config: Config) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(StoreConfig::new(dir.path().join("store"))).expect("store");
        let server = ApiServer::new(Arc::new(store), config.clone());
        server.registry.bootstrap().await.expect("bootstrap");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            minik_apiserver::serve(listener, app(server), &config, shutdown).await
        });
        Server {
            addr,
            client: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("client"),
            shutdown: Some(tx),
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let code = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (code, body)
    }

    async fn get(&self, path: &str) -> u16 {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("get")
            .status()
            .as_u16()
    }

    /// Sends `head` (and nothing else) on a new connection, then reads until the server closes
    /// it or the deadline passes; returns what was read.
    async fn raw(&self, head: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let read = timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "the server kept the connection open: {:?}",
            String::from_utf8_lossy(&answer)
        );
        String::from_utf8_lossy(&answer).into_owned()
    }
}

/// A pod whose one container has `arg` as its argument: a body of any size that validates.
fn pod(name: &str, arg: String) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "args": [arg]}]}})
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn oversize_body_is_413_and_nothing_is_stored() {
    let server = Server::start(Config::default()).await;
    let big = pod("big", "x".repeat(4 << 20));
    for content_type in ["application/json", "application/yaml"] {
        let (code, status) = server
            .send("POST", PODS, content_type, big.to_string().into_bytes())
            .await;
        assert_eq!(code, 413, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "RequestEntityTooLarge");
        assert_eq!(
            status["message"],
            "Request entity too large: limit is 3145728"
        );
    }
    assert_eq!(server.get(&format!("{PODS}/big")).await, 404);

    // A declared length far over the limit is refused before any of the body is read.
    let answer = server
        .raw("POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("Request entity too large: limit is 3145728"),
        "{answer}"
    );

    // A body just within the limit is still accepted, and updates are capped the same way.
    let fits = pod("fits", "x".repeat((3 << 20) - 300));
    let (code, status) = server
        .send(
            "POST",
            PODS,
            "application/json",
            fits.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    let mut grown = status.clone();
    grown["spec"]["containers"][0]["args"][0] = "y".repeat(4 << 20).into();
    let (code, _) = server
        .send(
            "PUT",
            &format!("{PODS}/fits"),
            "application/json",
            grown.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 413);
    let stored: Value = server
        .client
        .get(server.url(&format!("{PODS}/fits")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        stored["metadata"]["resourceVersion"],
        status["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn deeply_nested_bodies_are_400() {
    let server = Server::start(Config::default()).await;
    let deep_json = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"deep","annotations":{}"x"{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let deep_yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: deep\nextra: {}x{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let block: String = (0..200)
        .map(|i| format!("{}a:\n", "  ".repeat(i)))
        .collect();
    let deep_block = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: deep\n{block}");
    for (content_type, body) in [
        ("application/json", deep_json),
        ("application/yaml", deep_yaml),
        ("application/yaml", deep_block),
    ] {
        let (code, status) = server
            .send("POST", PODS, content_type, body.into_bytes())
            .await;
        assert_eq!(code, 400, "{status}");
        assert_eq!(status["reason"], "BadRequest");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("recursion limit exceeded"), "{message}");
    }
    assert_eq!(server.get(&format!("{PODS}/deep")).await, 404);
    assert_eq!(server.get("/healthz").await, 200);
}

#[tokio::test]
async fn yaml_alias_bombs_are_400() {
    let server = Server::start(Config::default()).await;
    // 9^10 strings if expanded.
    let mut laughs = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        laughs.push_str(&format!(
            "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
        ));
    }
    // Few alias jumps, but 30,000 x 30,000 values if expanded: within serde_yaml's own limit,
    // and fewer nodes than the pre-scan allows, so the alias budget is what refuses it.
    let quadratic = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bomb\na: &a [{}]\nb: [{}]\n",
        vec!["1"; 30_000].join(","),
        vec!["*a"; 30_000].join(",")
    );
    for bomb in [laughs, quadratic] {
        let started = Instant::now();
        let (code, status) = server
            .send("POST", PODS, "application/yaml", bomb.into_bytes())
            .await;
        assert_eq!(code, 400, "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains("YAML aliases expand"), "{message}");
        // Refused quickly: far within the client's deadline (the expansion would take hours).
        assert!(started.elapsed() < DEADLINE);
    }
    assert_eq!(server.get(&format!("{PODS}/bomb")).await, 404);
}

#[tokio::test]
async fn slow_loris_headers_are_disconnected() {
    let server = Server::start(Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    // Half a request head, then nothing: the server closes the connection.
    let answer = server
        .raw("GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
        .await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    // An idle connection that never sends anything is closed too.
    let answer = server.raw("").await;
    assert!(answer.is_empty(), "{answer}");
    // Prompt clients are served as usual.
    assert_eq!(server.get("/api/v1/namespaces").await, 200);
}

#[tokio::test]
async fn stalled_body_is_408_and_nothing_is_stored() {
    let server = Server::start(Config {
        body_read_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let answer = server
        .raw("POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"apiVersion\":")
        .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body was not received within 300ms"),
        "{answer}"
    );
    let listed: Value = server
        .client
        .get(server.url(PODS))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn watches_per_client_are_limited_and_freed_on_close() {
    let server = Server::start(Config {
        max_watches_per_client: 2,
        // Bookmarks keep writing to the watches, so a closed one is noticed at once.
        bookmark_interval: Duration::from_millis(50),
        ..Config::default()
    })
    .await;
    let watch = |path: &'static str| {
        let request = server
            .client
            .get(server.url(path))
            .timeout(Duration::from_secs(600));
        async move { request.send().await.expect("watch") }
    };
    let first = watch("/api/v1/namespaces/default/pods?watch=true&allowWatchBookmarks=true").await;
    let second = watch("/api/v1/watch/namespaces?allowWatchBookmarks=true").await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );

    let third = watch("/api/v1/services?watch=1").await;
    assert_eq!(third.status().as_u16(), 429);
    assert_eq!(
        third
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let status: Value = third.json().await.expect("status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("127.0.0.1") && message.contains("limit is 2"),
        "{message}"
    );
    // Other requests are not limited.
    assert_eq!(server.get("/api/v1/services").await, 200);

    // Closing a watch frees its slot.
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    let reopened = loop {
        let response = watch("/api/v1/services?watch=true").await;
        if response.status().as_u16() == 200 {
            break response;
        }
        assert_eq!(response.status().as_u16(), 429);
        assert!(
            Instant::now() < deadline,
            "the closed watch's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop((second, reopened));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_client_stops_reading_is_cut_and_its_connection_closed() {
    let server = Server::start(Config {
        watch_buffer_bytes: 1 << 20,
        // The stalled watch holds this client's only slot until the server lets go of it.
        max_watches_per_client: 1,
        ..Config::default()
    })
    .await;
    // Each change is about 512 KiB: the pod and its previous state.
    let (code, created) = server
        .send(
            "POST",
            PODS,
            "application/json",
            pod("big", "x".repeat(256 << 10)).to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"].as_str().expect("rv");

    // A client that sends a watch, reads the head of the answer, then nothing.
    let mut stalled = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!("GET {PODS}?watch=true&resourceVersion={rv} HTTP/1.1\r\nHost: x\r\n\r\n");
    stalled.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = timeout(DEADLINE, stalled.read(&mut byte))
            .await
            .expect("no answer")
            .expect("read");
        assert_eq!(n, 1, "closed before answering");
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));

    const PATCHES: usize = 100;
    for n in 0..PATCHES {
        let (code, body) = server
            .send(
                "PATCH",
                &format!("{PODS}/big"),
                "application/merge-patch+json",
                json!({"metadata": {"labels": {"n": n.to_string()}}})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }

    // The server let go of the watch without waiting for its client to read: the slot is free.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let code = server
            .get(&format!("{PODS}?watch=true&timeoutSeconds=1"))
            .await;
        if code == 200 {
            break;
        }
        assert_eq!(code, 429);
        assert!(
            Instant::now() < deadline,
            "the stalled watch still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // What reached the client's socket before the cut, then the end: the server closed the
    // connection. It did not keep the changes the client was not going to read.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while !received.ends_with(b"\r\n0\r\n\r\n") {
        match timeout(DEADLINE, stalled.read(&mut buf)).await {
            Err(_) => panic!(
                "the stalled watch is still open after {} bytes",
                received.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    let modified = String::from_utf8_lossy(&received)
        .matches("\"MODIFIED\"")
        .count();
    assert!(modified < PATCHES, "all {modified} changes were delivered");
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let mut server = Server::start(Config::default()).await;
    assert_eq!(server.get("/healthz").await, 200);
    let _ = server.shutdown.take().expect("sender").send(());
    let task = &mut server.task;
    let served = timeout(DEADLINE, task).await.expect("serve did not return");
    served.expect("join").expect("serve");
    assert!(TcpStream::connect(server.addr).await.is_err());
}
