//! The agent's own HTTP endpoint, which the API server calls to serve `pods/{name}/log`:
//! `GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&previous&limitBytes&timestamps`.
//! Logs are the files the agent writes from each container run's output (`logs.rs`), read
//! across their rotations. Port-forward tunnels come in
//! on `POST /portForward/{namespace}/{pod}?port=N` (see [`forward_router`]).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;

use crate::runtime::{ExecProcess, ExecRequest};

/// Where a container's log is, and which run it belongs to.
pub struct Located {
    pub path: PathBuf,
    /// The runtime id of the run, to know when a followed log is complete.
    pub instance: Option<String>,
}

/// What the endpoint needs from the agent.
pub trait LogSource: Send + Sync + 'static {
    /// Finds the log of `container` (the only one when `None`) of a pod on this node, of its
    /// current run or, with `previous`, the run before. Errors are (HTTP code, message).
    fn locate(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<Located, (u16, String)>;

    /// Whether the run is still going (so a follower keeps waiting for more).
    fn is_running(&self, instance: &str) -> bool;

    /// Starts `request` in the running `container` of a pod on this node (`kubectl exec`;
    /// the source fills in the container's environment and working directory). Resolves once
    /// the command runs. Errors are (HTTP code, message): 404 no such pod or container here,
    /// 400 the container is not running, 500 the runtime could not start the command.
    fn exec(
        &self,
        _ns: &str,
        _pod: &str,
        _container: &str,
        _request: ExecRequest,
    ) -> crate::BoxFuture<'_, Result<ExecProcess, (u16, String)>> {
        Box::pin(async { Err((501, "this node does not run exec".to_owned())) })
    }

    /// Attaches to the running `container` of a pod on this node (`kubectl attach`): its
    /// output from now on and, with `stdin`, its stdin when it has one. Errors as
    /// [`exec`](Self::exec)'s.
    fn attach(
        &self,
        _ns: &str,
        _pod: &str,
        _container: &str,
        _stdin: bool,
    ) -> crate::BoxFuture<'_, Result<ExecProcess, (u16, String)>> {
        Box::pin(async { Err((501, "this node does not run attach".to_owned())) })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    tail_lines: Option<String>,
    limit_bytes: Option<String>,
    timestamps: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "1" | ""))
}

fn error(code: u16, message: String) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, message).into_response()
}

/// The byte offset where the last `n` lines of `text` begin.
pub fn tail_offset(text: &[u8], n: usize) -> usize {
    if n == 0 {
        return text.len();
    }
    // A final newline ends the last line rather than starting an empty one.
    let end = if text.ends_with(b"\n") {
        text.len() - 1
    } else {
        text.len()
    };
    let mut seen = 0;
    for (i, b) in text[..end].iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// The `Upgrade` protocol of minik's raw port-forward tunnel: after `101 Switching Protocols`
/// the connection carries the bytes of one TCP connection to the pod's port (docs/api.md).
pub const PORT_FORWARD_PROTOCOL: &str = "minik-portforward";

/// Where a port-forward to a pod on this node connects.
pub trait ForwardTarget: Send + Sync + 'static {
    /// The address of `port` of the pod (its host port under the process runtime), and the
    /// network namespace it is in when the pod has one of its own. Errors are (HTTP code,
    /// message).
    fn resolve(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
    ) -> Result<(std::net::SocketAddr, Option<std::path::PathBuf>), (u16, String)>;
}

/// The port-forward route: `POST /portForward/{ns}/{pod}?port=N` with `Connection: Upgrade`
/// and `Upgrade: minik-portforward`. The agent connects to the pod first, so a refusal is an
/// HTTP answer; then it switches protocols and relays bytes until either side closes.
pub fn forward_router(target: Arc<dyn ForwardTarget>) -> Router {
    Router::new()
        .route("/portForward/{ns}/{pod}", axum::routing::post(port_forward))
        .with_state(target)
}

#[derive(Debug, Deserialize)]
struct ForwardQuery {
    port: Option<String>,
}

async fn port_forward(
    State(target): State<Arc<dyn ForwardTarget>>,
    Path((ns, pod)): Path<(String, String)>,
    Query(query): Query<ForwardQuery>,
    mut request: axum::extract::Request,
) -> Response {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case(PORT_FORWARD_PROTOCOL) {
        return error(
            400,
            format!(
                "port-forward needs `Connection: Upgrade` and `Upgrade: {PORT_FORWARD_PROTOCOL}`"
            ),
        );
    }
    let port = match query.port.as_deref().map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            return error(
                400,
                "port: must be a port number between 1 and 65535".into(),
            )
        }
    };
    let (address, netns) = match target.resolve(&ns, &pod, port) {
        Ok(a) => a,
        Err((code, message)) => return error(code, message),
    };
    let ip = address.ip().to_string();
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        crate::netns::connect(&ip, address.port(), netns.as_deref()),
    );
    let mut upstream = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return error(
                502,
                format!("cannot connect to port {port} of pod {pod:?} at {address}: {e}"),
            )
        }
        Err(_) => {
            return error(
                504,
                format!("port {port} of pod {pod:?} at {address} did not answer in time"),
            )
        }
    };
    let _ = upstream.set_nodelay(true);
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut client = hyper_util::rt::TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static(PORT_FORWARD_PROTOCOL),
    );
    response
}

/// The endpoint's router.
pub fn router(source: Arc<dyn LogSource>) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route(
            "/exec/{ns}/{pod}/{container}",
            axum::routing::post(exec_command),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            axum::routing::post(attach_container),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(source)
}

/// `router` answering only requests that carry `Authorization: Bearer KEY` (the server's key
/// for this node), compared in constant time; others get 401.
pub fn only_with_key(router: Router, key: String) -> Router {
    let key = Arc::new(key);
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let key = key.clone();
            async move {
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default();
                let same: bool =
                    subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), key.as_bytes()).into();
                if !same {
                    return error(
                        401,
                        "Unauthorized: only the API server may call this node's agent".into(),
                    );
                }
                next.run(request).await
            }
        },
    ))
}

async fn container_logs(
    State(source): State<Arc<dyn LogSource>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let parse = |name: &str, v: &Option<String>| -> Result<Option<u64>, String> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| format!("{name}: {s:?} is not a non-negative integer"))
            })
            .transpose()
    };
    let (tail, limit) = match (
        parse("tailLines", &query.tail_lines),
        parse("limitBytes", &query.limit_bytes),
    ) {
        (Ok(t), Ok(l)) => (t, l),
        (Err(e), _) | (_, Err(e)) => return error(400, e),
    };
    let located = match source.locate(&ns, &pod, &container, flag(&query.previous)) {
        Ok(l) => l,
        Err((code, message)) => return error(code, message),
    };
    // The run may have started without writing anything yet: then there is nothing to read.
    let files = crate::logs::files(&located.path);
    let start = match crate::logs::tail_start(&files, tail) {
        Ok(s) => s,
        Err(e) => return error(500, format!("cannot read the log: {e}")),
    };
    let reader = match crate::logs::Reader::open(&located.path, start) {
        Ok(r) => r,
        Err(e) => return error(500, format!("cannot read the log: {e}")),
    };
    let follow = flag(&query.follow);
    let renderer = crate::logs::Renderer::new(flag(&query.timestamps));
    let instance = located.instance;
    let state = (reader, renderer, limit, false);
    let stream =
        futures::stream::unfold(state, move |(mut reader, mut renderer, mut left, done)| {
            let source = source.clone();
            let instance = instance.clone();
            async move {
                if done || left == Some(0) {
                    return None;
                }
                loop {
                    // Whether the run was over before this read: then what the read finds is
                    // the last of it.
                    let running = instance.as_deref().is_some_and(|i| source.is_running(i));
                    let mut out = Vec::new();
                    let read = reader.read_available(&mut |entry| renderer.render(entry, &mut out));
                    if read.is_err() {
                        return None;
                    }
                    if !out.is_empty() {
                        if let Some(l) = left {
                            out.truncate(l.min(out.len() as u64) as usize);
                            left = Some(l - out.len() as u64);
                        }
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(out)),
                            (reader, renderer, left, false),
                        ));
                    }
                    if !follow || !running {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    plain(Body::from_stream(stream))
}

/// The `Upgrade` protocol of minik's exec tunnel between the API server and the agent: after
/// `101 Switching Protocols` the connection carries exec frames (see [`crate::exec`]).
pub const EXEC_PROTOCOL: &str = "minik-exec";

/// The parameters of `POST /exec/...`: `command` (repeated), `stdin`, `stdout`, `stderr`, `tty`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecQuery {
    /// Reads a query string (`command=sh&command=-c&...`, form-encoded).
    pub fn parse(query: &str) -> Result<ExecQuery, String> {
        let mut parsed = ExecQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name)?;
            let value = form_decode(value)?;
            let flag = || match value.as_str() {
                "true" | "1" | "" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!("{name}: {value:?} is not a boolean")),
            };
            match name.as_str() {
                "command" => parsed.command.push(value),
                "stdin" => parsed.stdin = flag()?,
                "stdout" => parsed.stdout = flag()?,
                "stderr" => parsed.stderr = flag()?,
                "tty" => parsed.tty = flag()?,
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// Decodes one form-encoded query component (`+` is a space, `%XX` a byte, UTF-8 overall).
fn form_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("the query has a bad escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("the query is not UTF-8 in {s:?}"))
}

/// `POST /exec/{ns}/{pod}/{container}?command=...&stdin&stdout&stderr&tty` with `Connection:
/// Upgrade` and `Upgrade: minik-exec`: starts the command, then switches protocols and runs the
/// session ([`crate::exec::run`]). Refusals are HTTP answers before the switch.
async fn exec_command(
    State(source): State<Arc<dyn LogSource>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    request: axum::extract::Request,
) -> Response {
    let query = match tunnel_query(&request) {
        Ok(q) => q,
        Err((code, message)) => return error(code, message),
    };
    if query.command.is_empty() {
        return error(
            400,
            "you must specify at least one command for the container".into(),
        );
    }
    let exec = ExecRequest {
        command: query.command.clone(),
        env: Vec::new(),
        working_dir: None,
        tty: query.tty,
        stdin: query.stdin,
    };
    let started = source.exec(&ns, &pod, &container, exec).await;
    switch(
        request,
        started,
        query,
        format!("exec in {pod}/{container}"),
    )
}

/// `POST /attach/{ns}/{pod}/{container}?stdin&stdout&stderr&tty`, upgraded as exec is: joins
/// the container's own process ([`LogSource::attach`]); the session ends with the container
/// or the client, and never stops the container.
async fn attach_container(
    State(source): State<Arc<dyn LogSource>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    request: axum::extract::Request,
) -> Response {
    let query = match tunnel_query(&request) {
        Ok(q) => q,
        Err((code, message)) => return error(code, message),
    };
    let started = source.attach(&ns, &pod, &container, query.stdin).await;
    switch(
        request,
        started,
        query,
        format!("attach to {pod}/{container}"),
    )
}

/// The query of an exec or attach tunnel, once the request is one (`Upgrade: minik-exec`).
fn tunnel_query(request: &axum::extract::Request) -> Result<ExecQuery, (u16, String)> {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case(EXEC_PROTOCOL) {
        return Err((
            400,
            format!("exec and attach need `Connection: Upgrade` and `Upgrade: {EXEC_PROTOCOL}`"),
        ));
    }
    ExecQuery::parse(request.uri().query().unwrap_or_default()).map_err(|e| (400, e))
}

/// Switches the request to the tunnel's frames and runs the session of the process that
/// `started` over it; a process that did not start is an HTTP answer.
fn switch(
    mut request: axum::extract::Request,
    started: Result<ExecProcess, (u16, String)>,
    query: ExecQuery,
    what: String,
) -> Response {
    let process = match started {
        Ok(p) => p,
        Err((code, message)) => return error(code, message),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let wanted = crate::exec::Wanted {
        stdout: query.stdout,
        stderr: query.stderr,
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let stream = hyper_util::rt::TokioIo::new(upgraded);
                let ended = crate::exec::run(stream, process, &query.command, wanted).await;
                tracing::debug!(%what, ?ended, "session ended");
            }
            Err(e) => {
                process.control.kill();
                tracing::debug!(%what, error = %e, "upgrade failed");
            }
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static(EXEC_PROTOCOL),
    );
    response
}

fn plain(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerSpec, ProcessRuntime, Runtime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn exec_queries_are_read_with_repeated_commands() {
        let q = ExecQuery::parse(
            "command=sh&command=-c&command=echo+a%20b%3Bexit%203&stdin=true&stdout=1&stderr=false&tty=",
        )
        .unwrap();
        assert_eq!(q.command, ["sh", "-c", "echo a b;exit 3"]);
        assert!(q.stdin && q.stdout && !q.stderr && q.tty);
        assert_eq!(ExecQuery::parse("").unwrap(), ExecQuery::default());
        assert!(ExecQuery::parse("command=%zz").is_err());
        assert!(ExecQuery::parse("command=%e2%82").is_err());
        assert!(ExecQuery::parse("tty=maybe").is_err());
    }

    /// A node with one pod, `ns/p`, whose container `c` runs (a host process).
    struct OnePod {
        runtime: ProcessRuntime,
    }

    impl LogSource for OnePod {
        fn locate(&self, _: &str, _: &str, _: &str, _: bool) -> Result<Located, (u16, String)> {
            Err((404, "no logs here".into()))
        }

        fn is_running(&self, _: &str) -> bool {
            false
        }

        fn exec(
            &self,
            ns: &str,
            pod: &str,
            container: &str,
            request: ExecRequest,
        ) -> crate::BoxFuture<'_, Result<ExecProcess, (u16, String)>> {
            let found = (ns, pod, container) == ("ns", "p", "c");
            Box::pin(async move {
                if !found {
                    return Err((404, "pod \"p\" is not on this node".into()));
                }
                self.runtime.exec("u/c/1", &request).map_err(|e| (500, e))
            })
        }
    }

    /// Sends one exec request; answers the status line and head, and the connection.
    async fn post(port: u16, path_and_query: &str, key: &str) -> (String, tokio::net::TcpStream) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "POST {path_and_query} HTTP/1.1\r\nHost: node\r\nAuthorization: Bearer {key}\r\nConnection: Upgrade\r\nUpgrade: minik-exec\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // The head, byte by byte: what follows it is the tunnel's.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).into_owned(), stream)
    }

    #[tokio::test]
    async fn exec_over_http_starts_first_then_switches_to_frames() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = ProcessRuntime::new();
        runtime
            .start(&ContainerSpec {
                id: "u/c/1".into(),
                program: "sleep".into(),
                args: vec!["300".into()],
                env: vec![],
                working_dir: None,
                log_path: dir.path().join("c.log"),
                memory_limit: None,
                host_ports: vec![],
                fake: Default::default(),
                image: None,
                handler: None,
                mounts: Vec::new(),
                stdio: Default::default(),
            })
            .unwrap();
        let source = Arc::new(OnePod {
            runtime: runtime.clone(),
        });
        let app = only_with_key(router(source), "secret".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let ok = "/exec/ns/p/c?command=sh&command=-c&command=echo%20hi%3B%20echo%20oops%20%3E%262%3B%20exit%202&stdout=true&stderr=true";
        let (head, _) = post(port, ok, "wrong").await;
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
        let (head, _) = post(port, "/exec/ns/q/c?command=true", "secret").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let (head, _) = post(port, "/exec/ns/p/c?stdout=true", "secret").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let (head, mut stream) = post(port, "/exec/ns/p/c?command=nope-xyz", "secret").await;
        assert!(head.starts_with("HTTP/1.1 500"), "{head}");
        let mut body = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            while !body.ends_with(b"$PATH") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("exec: \"nope-xyz\": executable file not found in $PATH"),
            "{body}"
        );

        let (head, stream) = post(port, ok, "secret").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("upgrade: minik-exec"),
            "{head}"
        );
        let mut frames = crate::exec::FrameReader::new(stream);
        let mut out = std::collections::BTreeMap::<u8, Vec<u8>>::new();
        let mut last = None;
        while let Some(f) = frames.next().await.unwrap() {
            out.entry(f.channel)
                .or_default()
                .extend_from_slice(&f.payload);
            last = Some(f.channel);
        }
        assert_eq!(out[&crate::exec::STDOUT], b"hi\n");
        assert_eq!(out[&crate::exec::STDERR], b"oops\n");
        assert_eq!(last, Some(crate::exec::ERROR));
        let status: serde_json::Value = serde_json::from_slice(&out[&crate::exec::ERROR]).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["details"]["causes"][0]["message"], "2");
        runtime.stop("u/c/1", Duration::from_secs(1)).await;
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let text = b"a\nb\nc\n";
        assert_eq!(&text[tail_offset(text, 1)..], b"c\n");
        assert_eq!(&text[tail_offset(text, 2)..], b"b\nc\n");
        assert_eq!(&text[tail_offset(text, 9)..], b"a\nb\nc\n");
        assert_eq!(&text[tail_offset(text, 0)..], b"");
        let unterminated = b"a\nb";
        assert_eq!(&unterminated[tail_offset(unterminated, 1)..], b"b");
        assert_eq!(tail_offset(b"", 3), 0);
    }
}
