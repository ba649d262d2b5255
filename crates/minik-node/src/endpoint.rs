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
    /// The address of `port` of the pod (its host port under the process runtime). Errors are
    /// (HTTP code, message).
    fn resolve(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
    ) -> Result<std::net::SocketAddr, (u16, String)>;
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
    let address = match target.resolve(&ns, &pod, port) {
        Ok(a) => a,
        Err((code, message)) => return error(code, message),
    };
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
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
