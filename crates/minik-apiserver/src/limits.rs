//! Request limits that keep one client from exhausting the server: the largest body read
//! (413, as Kubernetes: `Request entity too large: limit is 3145728`), how long a client may take
//! to send its headers (slow-loris) and its body, and how many watches one client may hold open
//! at once (429 with `Retry-After`). [`serve`] is the HTTP server that applies the connection
//! limits; [`guard`] is the middleware that applies the per-request ones.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use minik_api::ApiError;

use crate::answer::{failure_status, json_response, HttpError};
use crate::ApiServer;

/// How many seconds a client refused for too many watches is asked to wait.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The answer to a body over `limit` bytes, in Kubernetes' words.
fn too_large(limit: usize) -> ApiError {
    ApiError::RequestEntityTooLarge(format!("Request entity too large: limit is {limit}"))
}

/// The body stopped arriving before the body-read timeout.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body was not received within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// Reads a request body of at most `limit` bytes. A longer body is answered 413; the rest of it
/// (up to another `limit` bytes) is read and dropped first, so that a client which sends its
/// whole body before reading the answer gets the 413 rather than a reset connection. Memory
/// stays within `limit` whatever the client sends.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut dropped: Option<usize> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = match (chunk, dropped) {
            (Ok(chunk), _) => chunk,
            // Already refused: whatever went wrong with the rest, the answer stays 413.
            (Err(_), Some(_)) => break,
            (Err(e), None) => return Err(body_error(&e)),
        };
        match dropped.as_mut() {
            Some(n) => {
                *n += chunk.len();
                if *n > limit {
                    break;
                }
            }
            None if buf.len() + chunk.len() > limit => {
                dropped = Some(buf.len() + chunk.len() - limit);
                buf = BytesMut::new();
            }
            None => buf.extend_from_slice(&chunk),
        }
    }
    match dropped {
        Some(_) => Err(too_large(limit)),
        None => Ok(buf.freeze()),
    }
}

/// Why a body could not be read: it came too slowly (408), or the connection failed (400).
fn body_error(e: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(timeout) = err.downcast_ref::<BodyTimeout>() {
            return ApiError::Other {
                code: 408,
                reason: "Timeout".into(),
                message: timeout.to_string(),
            };
        }
        source = err.source();
    }
    ApiError::BadRequest(format!("the request body could not be read: {e}"))
}

/// `body`, failing with [`BodyTimeout`] once `timeout` has passed since this call. The clock
/// starts only when the body is first read.
fn with_deadline(body: Body, timeout: Duration) -> Body {
    let deadline = tokio::time::Instant::now() + timeout;
    let chunks = body.into_data_stream();
    let stream = futures::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(axum::BoxError::from), Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((Err(BodyTimeout(timeout).into()), None)),
        }
    });
    Body::from_stream(stream)
}

/// Open watches per client address. A client without a known address (a request that did not
/// come through [`serve`]) counts under `None`.
#[derive(Default)]
pub(crate) struct WatchCounts(Mutex<HashMap<Option<IpAddr>, usize>>);

/// One open watch of one client; dropping it frees the slot.
struct WatchSlot {
    server: Arc<ApiServer>,
    client: Option<IpAddr>,
}

impl WatchCounts {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, usize>> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WatchSlot {
    /// A slot for one more watch of `client`, unless it already holds `max` (0: no limit).
    fn acquire(server: &Arc<ApiServer>, client: Option<IpAddr>) -> Result<WatchSlot, ApiError> {
        let max = server.config.max_watches_per_client;
        let mut counts = server.watches.counts();
        let open = counts.entry(client).or_insert(0);
        if max > 0 && *open >= max {
            let who = client.map_or_else(|| "this client".to_owned(), |ip| ip.to_string());
            return Err(ApiError::TooManyRequests(format!(
                "too many watches from {who}: the limit is {max} open watches per client, please try again later"
            )));
        }
        *open += 1;
        drop(counts);
        Ok(WatchSlot {
            server: server.clone(),
            client,
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut counts = self.server.watches.counts();
        if let Some(open) = counts.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Whether a request is a watch, as `http.rs` decides: a GET with the `/watch/` path prefix or
/// a `watch` query parameter of `true`, `1` or empty (the last one wins).
fn is_watch(request: &Request) -> bool {
    if request.method() != Method::GET {
        return false;
    }
    let segments: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    if matches!(
        segments.as_slice(),
        ["api", _, "watch", ..] | ["apis", _, _, "watch", ..]
    ) {
        return true;
    }
    // Most requests have no `watch` parameter: skip decoding their query.
    let Some(raw) = request
        .uri()
        .query()
        .filter(|q| q.contains("watch") || q.contains('%'))
    else {
        return false;
    };
    let pairs = format!("/?{raw}")
        .parse()
        .ok()
        .and_then(|uri| axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok());
    pairs.is_some_and(|q| {
        q.0.iter()
            .rev()
            .find(|(k, _)| k == "watch")
            .is_some_and(|(_, v)| matches!(v.as_str(), "true" | "1" | ""))
    })
}

/// The 429 a client gets for one watch too many, with `Retry-After` as Kubernetes' max-in-flight
/// filter sends it.
fn too_many(error: &ApiError) -> Response {
    let mut status = failure_status(error);
    status["details"] = serde_json::json!({ "retryAfterSeconds": RETRY_AFTER_SECONDS });
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        Bytes::from(status.to_string()),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// The middleware of every request: refuses a declared body far over the limit before reading
/// it, puts the body-read deadline on the body, and holds a watch slot for as long as a watch's
/// answer streams.
pub(crate) async fn guard(
    State(server): State<Arc<ApiServer>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = server.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Within twice the limit, read_body reads and drops the excess so the client sees the 413;
    // beyond, answering at once is cheaper than reading.
    if declared.is_some_and(|n| n > (limit as u64).saturating_mul(2)) {
        return HttpError(too_large(limit)).into_response();
    }
    let request = if matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let timeout = server.config.body_read_timeout;
        request.map(|body| with_deadline(body, timeout))
    } else {
        request
    };
    if !is_watch(&request) {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let slot = match WatchSlot::acquire(&server, client) {
        Ok(slot) => slot,
        Err(e) => return too_many(&e),
    };
    let response = next.run(request).await;
    // The slot lives in the answer's body: freed when the stream ends or the client goes away.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

/// Closes the connection a request came on, from inside its handler. A watch cut as too slow
/// whose client has stopped reading ends this way: what waits to be written to that client is
/// freed now rather than when (if ever) it reads.
#[derive(Clone)]
pub(crate) struct CloseConnection(pub(crate) Arc<tokio::sync::Notify>);

/// The client certificate of the connection a request came on (its user and groups), when the
/// client presented one the cluster CA issued ([`serve_tls`] puts it in the request's
/// extensions; authentication reads it).
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub minik_tls::ClientIdentity);

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown` resolves, then stops accepting and
/// waits for the open connections to finish. A client that has not sent a whole request head
/// within `config.header_read_timeout` (including an idle kept-alive connection) is
/// disconnected. Requests carry the client's address as `ConnectInfo<SocketAddr>` and a
/// [`CloseConnection`] for their connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &crate::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, config, None, shutdown).await
}

/// [`serve`] over HTTPS with `tls`: the handshake must complete within the header-read
/// timeout; a plain-HTTP request gets Go's 400 ("Client sent an HTTP request to an HTTPS
/// server."); requests on a connection with a client certificate carry its
/// [`ClientCertificate`].
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &crate::Config,
    tls: Arc<minik_tls::rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = minik_tls::tokio_rustls::TlsAcceptor::from(tls);
    serve_with(listener, app, config, Some(acceptor), shutdown).await
}

async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    config: &crate::Config,
    acceptor: Option<minik_tls::tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let handshake_timeout = config.header_read_timeout;
    // Connections hold a receiver; dropping the sender tells them to finish, and `closed()`
    // says when the last one has.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            peer,
            stop: stop_rx.clone(),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                return connection.drive(TokioIo::new(stream), None).await;
            };
            match minik_tls::accept(stream, &acceptor, handshake_timeout).await {
                Ok(minik_tls::Accepted::Tls(tls)) => {
                    let certificate = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(minik_tls::client_identity)
                        .map(ClientCertificate);
                    connection.drive(TokioIo::new(*tls), certificate).await
                }
                Ok(minik_tls::Accepted::Plain) => {
                    tracing::debug!(%peer, "answered a plain-HTTP request on the HTTPS port");
                }
                Err(e) => tracing::debug!(%peer, error = %e, "a TLS handshake failed"),
            }
        });
    }
    drop(stop_rx);
    drop(listener);
    let stop_tx = stop_tx;
    stop_tx.send_replace(());
    stop_tx.closed().await;
    Ok(())
}

/// One accepted connection, before its bytes are read.
struct Connection {
    builder: hyper::server::conn::http1::Builder,
    app: Router,
    peer: SocketAddr,
    stop: tokio::sync::watch::Receiver<()>,
}

impl Connection {
    /// Serves the requests of the connection until it ends, it is closed as a too-slow watch's,
    /// or the server stops (then the request under way finishes first).
    async fn drive<I>(self, io: I, certificate: Option<ClientCertificate>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            app,
            peer,
            mut stop,
        } = self;
        let tower = TowerToHyperService::new(app);
        let close = CloseConnection(Arc::default());
        let closed = close.0.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(close.clone());
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            hyper::service::Service::call(&tower, request)
        });
        let connection = builder.serve_connection(io, service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        // Returning drops the connection, and with it the socket and all it buffers.
        let mut closed = std::pin::pin!(closed.notified());
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = closed.as_mut() => {
                tracing::info!(
                    %peer,
                    "closed the connection of a watch cut as too slow: its client is not reading"
                );
                return;
            }
            _ = stop.changed() => connection.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            _ = connection => {}
            _ = closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn watches_are_recognized_as_http_rs_serves_them() {
        for watch in [
            "/api/v1/pods?watch=true",
            "/api/v1/namespaces/a/pods?watch=1",
            "/api/v1/pods?watch",
            "/api/v1/pods?watch=false&watch=true",
            "/api/v1/pods?w%61tch=true",
            "/api/v1/watch/pods",
            "/apis/apps/v1/watch/namespaces/a/deployments",
        ] {
            assert!(is_watch(&request(Method::GET, watch)), "{watch}");
        }
        for not_watch in [
            "/api/v1/pods",
            "/api/v1/pods?watch=false",
            "/api/v1/pods?watch=true&watch=0",
            "/api/v1/namespaces/watch/pods",
            "/apis/apps/v1/deployments?labelSelector=watch",
        ] {
            assert!(!is_watch(&request(Method::GET, not_watch)), "{not_watch}");
        }
        assert!(!is_watch(&request(Method::POST, "/api/v1/pods?watch=true")));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_and_drained() {
        let within = read_body(Body::from(vec![b'x'; 10]), 10).await.unwrap();
        assert_eq!(within.len(), 10);
        for size in [11, 25, 1000] {
            let err = read_body(Body::from(vec![b'x'; size]), 10)
                .await
                .unwrap_err();
            assert_eq!(err.code(), 413, "{size}");
            assert_eq!(err.to_string(), "Request entity too large: limit is 10");
        }
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_with_408() {
        // A body that never sends anything, nor ends.
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let body = with_deadline(Body::from_stream(rx), Duration::from_millis(50));
        let read = tokio::time::timeout(Duration::from_secs(20), read_body(body, 100));
        let err = read.await.expect("the deadline never fired").unwrap_err();
        drop(tx);
        assert_eq!(err.code(), 408);
        assert_eq!(
            err.to_string(),
            "the request body was not received within 50ms"
        );
    }
}
