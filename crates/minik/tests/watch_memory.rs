//! Issue 23: a watcher that never reads cannot make the server hold the changes it does not take.
//! A stream of large objects goes past a stalled watch of the real `minik server`, with its
//! default limits: the server's resident memory stays bounded and the stalled watch is cut.

mod support;

use std::time::Duration;

use std::sync::Arc;

use minik_tls::rustls::pki_types::ServerName;
use minik_tls::tokio_rustls::{client::TlsStream, TlsConnector};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How many patches of the large pod go past the stalled watch. Before the fix each one added
/// about 2 MiB (the object and its previous state) to the watch's queue, up to 1,000 of them.
const PATCHES: usize = 400;

/// The size of the pod, in bytes of one environment variable.
const POD_BYTES: usize = 1 << 20;

/// The most resident memory the server may use. What it holds for watches is bounded by the
/// history window and the watch buffer (64 MiB each by default); the rest is the store's cache,
/// the in-process informers' copies of the pod and the allocator's slack. Before the fix the
/// server passed this bound after about 150 patches.
const MAX_RSS_BYTES: u64 = 450 << 20;

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// The resident memory of process `pid`, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Reads the head of an HTTP answer one byte at a time, so that nothing of the body is read.
async fn read_head(stream: &mut TlsStream<TcpStream>) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("the watch's answer did not come")
            .expect("read the watch's answer");
        assert_eq!(n, 1, "the server closed the watch before answering");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_of_large_objects_is_cut_and_server_memory_stays_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = support::MINIK.server(dir.path(), &[]);
    let client = minik_testkit::client_builder(&server.base)
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let pods = format!("{}/api/v1/namespaces/default/pods", server.base);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "main", "image": "busybox",
                                  "env": [{"name": "PAD", "value": "x".repeat(POD_BYTES)}]}]}
    });
    let created = client.post(&pods).json(&pod).send().await.expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.expect("created pod");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_owned();

    // The stalled watcher: it reads the answer's head, so the watch is in place, then nothing.
    // It speaks TLS itself, verifying the server with the cluster CA; once stalled, it reads
    // nothing from the socket, so the server's writes back up as a plain socket's would.
    let addr = server
        .base
        .strip_prefix("https://")
        .expect("https address")
        .to_owned();
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    let tls = minik_tls::client_config(&minik_testkit::ca_pem(&server.base), None)
        .expect("a TLS client trusting the cluster CA");
    let host = ServerName::try_from("127.0.0.1").expect("server name");
    let mut stalled = TlsConnector::from(Arc::new(tls))
        .connect(host, tcp)
        .await
        .expect("TLS handshake with the server");
    let request = format!(
        "GET /api/v1/namespaces/default/pods?watch=true&resourceVersion={rv} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    );
    stalled
        .write_all(request.as_bytes())
        .await
        .expect("send the watch");
    let head = read_head(&mut stalled).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let before = rss_bytes(server.pid());
    let mut peak = before;
    let patch_url = format!("{pods}/big");
    for n in 0..PATCHES {
        let patched = client
            .patch(&patch_url)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {"labels": {"n": n.to_string()}}}).to_string())
            .send()
            .await
            .expect("patch");
        assert_eq!(patched.status().as_u16(), 200, "patch {n}");
        peak = peak.max(rss_bytes(server.pid()));
        assert!(
            peak < MAX_RSS_BYTES,
            "the server's resident memory reached {} MiB after {} patches of a 1 MiB pod with a \
             stalled watch open (it was {} MiB before them)",
            peak >> 20,
            n + 1,
            before >> 20
        );
    }
    eprintln!(
        "server RSS: {} MiB before the patches, at most {} MiB during {PATCHES} of them",
        before >> 20,
        peak >> 20
    );

    // The watch was cut: reading what reached the client ends (closed or reset) well before
    // the last patch.
    let mut received = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stalled.read(&mut buf)).await {
            Err(_) => panic!(
                "the stalled watch was never cut: still open after {} bytes",
                received.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    let modified = received
        .windows(b"\"MODIFIED\"".len())
        .filter(|w| w == b"\"MODIFIED\"")
        .count();
    assert!(
        modified < PATCHES,
        "the stalled watch got all {modified} changes: it was not cut"
    );

    // The server goes on serving: a new watch from now works.
    let status = client
        .get(format!("{pods}?watch=true&timeoutSeconds=1"))
        .send()
        .await
        .expect("a new watch")
        .status();
    assert_eq!(status.as_u16(), 200);
}
