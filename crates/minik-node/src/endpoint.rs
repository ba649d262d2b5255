//! The agent's own HTTP endpoint, which the API server calls to serve `pods/{name}/log`:
//! `GET /containerLogs/{namespace}/{pod}/{container}?follow&tailLines&previous&limitBytes`.
//! Logs are the files the runtime writes, one per container run.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
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

/// The endpoint's router.
pub fn router(source: Arc<dyn LogSource>) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(source)
}

async fn container_logs(
    State(source): State<Arc<dyn LogSource>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    if flag(&query.timestamps) {
        return error(
            400,
            "timestamps are not recorded by minik's process runtime yet; ask without timestamps"
                .into(),
        );
    }
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
    let mut file = match std::fs::File::open(&located.path) {
        Ok(f) => f,
        // The run started but wrote nothing yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return plain(Body::empty()),
        Err(e) => return error(500, format!("cannot read the log: {e}")),
    };
    let mut start = 0u64;
    if let Some(n) = tail {
        let mut text = Vec::new();
        if let Err(e) = file.read_to_end(&mut text) {
            return error(500, format!("cannot read the log: {e}"));
        }
        start = tail_offset(&text, n as usize) as u64;
    }
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        return error(500, format!("cannot read the log: {e}"));
    }
    let follow = flag(&query.follow);
    let instance = located.instance;
    let state = (file, limit, false);
    let stream = futures::stream::unfold(state, move |(mut file, mut left, done)| {
        let source = source.clone();
        let instance = instance.clone();
        async move {
            if done || left == Some(0) {
                return None;
            }
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let want = left.map_or(buffer.len(), |l| (l as usize).min(buffer.len()));
                match file.read(&mut buffer[..want]) {
                    Ok(0) => {
                        let running = instance.as_deref().is_some_and(|i| source.is_running(i));
                        if !follow || !running {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(n) => {
                        left = left.map(|l| l - n as u64);
                        buffer.truncate(n);
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(buffer)),
                            (file, left, false),
                        ));
                    }
                    Err(_) => return None,
                }
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
