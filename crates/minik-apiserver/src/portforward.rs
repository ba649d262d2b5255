//! `pods/{name}/portforward`: TCP tunnels from a client, through the API server, to the pod's
//! node agent, which connects to the pod's port — the path Kubernetes takes through the
//! kubelet.
//!
//! The client picks a protocol with `Upgrade`:
//! - `minik-portforward`, minik's own: one TCP connection to one port (`?ports=N`) as raw bytes
//!   after `101 Switching Protocols` (docs/api.md).
//! - `SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`, kubectl's: a SPDY session
//!   ([`crate::spdy`]) in which the client opens, for each connection it forwards, an error
//!   stream and a data stream (headers `streamType`, `port`, `requestID`). The server connects
//!   to the port when both are open, copies bytes between the data stream and the pod, and
//!   writes what went wrong, if anything, on the error stream before finishing it.
//! - `websocket` with the subprotocol `SPDY/3.1+portforward.k8s.io`, kubectl 1.30+'s first
//!   try: the same SPDY session carried in WebSocket binary messages ([`websocket`]).
//!
//! Whatever the client speaks, each forwarded connection is one tunnel to the agent
//! (`POST /portForward/{ns}/{pod}?port=N`, upgraded to `minik-portforward`); the agent side
//! is the same for all.

pub(crate) mod websocket;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use minik_api::ApiError;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::agent::{self, PodAgent};
use crate::spdy::frame::rst;
use crate::spdy::{self, HeaderBlock, StreamReader, StreamWriter};
use crate::ApiServer;

/// The `Upgrade` token of minik's raw tunnel; the agent speaks the same.
pub const RAW_PROTOCOL: &str = "minik-portforward";

/// The `Upgrade` token of kubectl's SPDY.
const SPDY_PROTOCOL: &str = "SPDY/3.1";

/// The header that names the stream protocol within SPDY, and port-forward's.
const STREAM_PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
const PORT_FORWARD_V1: &str = "portforward.k8s.io";

/// How long the two streams of one forwarded connection may arrive apart (the kubelet's
/// stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// The tunnel protocols a client may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Protocol {
    /// One TCP connection to one port, as raw bytes.
    Raw,
    /// kubectl's SPDY session.
    Spdy,
    /// kubectl's SPDY session inside a WebSocket; the `Sec-WebSocket-Accept` to answer.
    WebSocket { accept: String },
}

/// The comma-separated tokens of every `name` header.
pub(crate) fn tokens<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Protocol {
    fn negotiate(headers: &HeaderMap) -> Result<Protocol, ApiError> {
        let offered: Vec<&str> = tokens(headers, header::UPGRADE.as_str()).collect();
        let offers = |p: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(p));
        if offers(RAW_PROTOCOL) {
            return Ok(Protocol::Raw);
        }
        if offers(SPDY_PROTOCOL) {
            let mut asked = tokens(headers, STREAM_PROTOCOL_HEADER).peekable();
            // A client that names no stream protocol gets port-forward's (as the kubelet does).
            if asked.peek().is_some() && !asked.any(|p| p == PORT_FORWARD_V1) {
                let asked: Vec<&str> = tokens(headers, STREAM_PROTOCOL_HEADER).collect();
                return Err(ApiError::BadRequest(format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {asked:?}, server accepts [\"{PORT_FORWARD_V1}\"]"
                )));
            }
            return Ok(Protocol::Spdy);
        }
        if offers("websocket") {
            let tunnel = tokens(headers, "Sec-WebSocket-Protocol")
                .any(|p| p == websocket::SPDY_TUNNEL_PROTOCOL);
            if !tunnel {
                let asked: Vec<&str> = tokens(headers, "Sec-WebSocket-Protocol").collect();
                return Err(ApiError::BadRequest(format!(
                    "unable to upgrade connection: port-forward over WebSocket is served with the subprotocol {:?} only, not {asked:?}",
                    websocket::SPDY_TUNNEL_PROTOCOL
                )));
            }
            let version = tokens(headers, "Sec-WebSocket-Version").next();
            let key = headers
                .get("Sec-WebSocket-Key")
                .and_then(|v| v.to_str().ok())
                .filter(|k| !k.trim().is_empty());
            return match (version, key) {
                (Some("13"), Some(key)) => Ok(Protocol::WebSocket {
                    accept: websocket::accept_key(key),
                }),
                _ => Err(ApiError::BadRequest(
                    "unable to upgrade connection: a WebSocket handshake needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key".into(),
                )),
            };
        }
        if offered.is_empty() {
            return Err(ApiError::BadRequest("Upgrade request required".into()));
        }
        Err(ApiError::BadRequest(format!(
            "unable to upgrade connection: the protocol {:?} is not supported; minik serves port-forward over `Upgrade: {RAW_PROTOCOL}`, `Upgrade: {SPDY_PROTOCOL}` and WebSocket with the subprotocol {:?}",
            offered.join(", "),
            websocket::SPDY_TUNNEL_PROTOCOL
        )))
    }
}

/// A port number from a query parameter or a stream header.
fn parse_port(raw: &str) -> Result<u16, String> {
    match raw.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "invalid port {raw:?}: must be a number between 1 and 65535"
        )),
    }
}

/// The port asked for: `ports=N` (Kubernetes' name) or `port=N`; the raw protocol takes one.
fn requested_port(query: &HashMap<String, String>) -> Result<u16, ApiError> {
    let raw = query
        .get("ports")
        .or_else(|| query.get("port"))
        .map(String::as_str)
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::BadRequest(
            "ports: a port to forward to is required (?ports=N)".into(),
        ));
    }
    if raw.contains(',') {
        return Err(ApiError::BadRequest(format!(
            "ports: {RAW_PROTOCOL} forwards one port per connection, not {raw:?}"
        )));
    }
    parse_port(raw).map_err(|e| ApiError::BadRequest(format!("ports: {e}")))
}

/// The pod a port-forward reaches, and how to open a tunnel to one of its ports.
struct Target {
    nodes: reqwest::Client,
    agent: PodAgent,
    ns: String,
    name: String,
    uid: String,
}

/// Why a tunnel to the pod could not be opened.
enum TunnelError {
    /// The agent answered `code` with `message` (it could not connect to the pod, say).
    Refused { code: u16, message: String },
    /// The agent did not answer or did not upgrade.
    Unavailable(ApiError),
}

impl Target {
    /// A tunnel to `port` of the pod through its node agent, which has connected to the pod
    /// when this returns.
    async fn open(&self, port: u16) -> Result<reqwest::Upgraded, TunnelError> {
        let (ns, name) = (&self.ns, &self.name);
        let url = self.agent.url(&format!("/portForward/{ns}/{name}"));
        let answer = self
            .agent
            .authorize(self.nodes.post(&url))
            .query(&[("port", port.to_string())])
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, RAW_PROTOCOL)
            .send()
            .await
            .map_err(|e| TunnelError::Unavailable(self.agent.unreachable(e)))?;
        let code = answer.status().as_u16();
        if code != 101 {
            let message = answer.text().await.unwrap_or_default();
            return Err(TunnelError::Refused { code, message });
        }
        answer.upgrade().await.map_err(|e| {
            TunnelError::Unavailable(ApiError::ServiceUnavailable(format!(
                "the agent of node {} did not upgrade: {e}",
                self.agent.node
            )))
        })
    }
}

impl TunnelError {
    /// The answer to a raw tunnel's request.
    fn into_api_error(self, port: u16, name: &str) -> ApiError {
        match self {
            TunnelError::Refused { code: 400, message } => ApiError::BadRequest(message),
            TunnelError::Refused { code: 404, .. } => {
                ApiError::NotFound(minik_api::ObjectRef::new("", "pods", name))
            }
            TunnelError::Refused { message, .. } => ApiError::ServiceUnavailable(format!(
                "error forwarding port {port} to pod {name}: {message}"
            )),
            TunnelError::Unavailable(e) => e,
        }
    }

    /// The message for a stream's error stream.
    fn message(&self) -> String {
        match self {
            TunnelError::Refused { message, .. } => message.trim().to_owned(),
            TunnelError::Unavailable(e) => e.to_string(),
        }
    }
}

/// Checks the pod and the protocol and, for the raw protocol, opens the tunnel; then switches
/// the client's connection to the protocol asked for.
pub async fn pod_port_forward(
    server: &ApiServer,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let protocol = Protocol::negotiate(headers)?;
    // SPDY and WebSocket clients name their ports in each stream's headers.
    let raw_port = match protocol {
        Protocol::Raw => Some(requested_port(query)?),
        _ => None,
    };
    let on_upgrade = on_upgrade.ok_or_else(|| {
        ApiError::BadRequest("unable to upgrade connection: the request cannot be upgraded".into())
    })?;
    let pod = agent::pod(server, ns, name).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::BadRequest(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let target = Target {
        nodes: server.nodes.clone(),
        agent: agent::pod_agent(server, &pod, name).await?,
        ns: ns.to_owned(),
        name: name.to_owned(),
        uid: pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let answer = response.headers_mut();
    answer.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match protocol {
        Protocol::Raw => {
            // The agent connects to the pod before the client is switched, so that a refusal
            // is an HTTP answer.
            let port = raw_port.unwrap_or_default();
            let mut agent = target
                .open(port)
                .await
                .map_err(|e| e.into_api_error(port, name))?;
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => {
                        let mut client = hyper_util::rt::TokioIo::new(client);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "port-forward client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static(RAW_PROTOCOL));
        }
        Protocol::Spdy => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => serve_session(hyper_util::rt::TokioIo::new(client), target).await,
                    Err(e) => tracing::debug!(error = %e, "port-forward client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static(SPDY_PROTOCOL));
            answer.insert(
                STREAM_PROTOCOL_HEADER,
                HeaderValue::from_static(PORT_FORWARD_V1),
            );
        }
        Protocol::WebSocket { accept } => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => {
                        let bytes = websocket::tunnel(hyper_util::rt::TokioIo::new(client));
                        serve_session(bytes, target).await
                    }
                    Err(e) => tracing::debug!(error = %e, "port-forward client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            answer.insert(
                "Sec-WebSocket-Accept",
                HeaderValue::from_str(&accept).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            answer.insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(websocket::SPDY_TUNNEL_PROTOCOL),
            );
        }
    }
    Ok(response)
}

/// One side of a forwarded connection's pair of streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamType {
    Error,
    Data,
}

/// What a stream's headers ask for: (type, port, request id).
fn stream_request(id: u32, headers: &HeaderBlock) -> Result<(StreamType, u16, String), String> {
    let kind = match headers.get("streamType") {
        Some("error") => StreamType::Error,
        Some("data") => StreamType::Data,
        Some(other) => return Err(format!("invalid stream type {other:?}")),
        None => return Err("a stream without a streamType header".into()),
    };
    let port = parse_port(
        headers
            .get("port")
            .ok_or("a stream without a port header")?,
    )?;
    // Clients from before requestID paired streams by id: the data stream follows its error
    // stream (the kubelet's rule).
    let request = match headers.get("requestID") {
        Some(id) => id.to_owned(),
        None if kind == StreamType::Error => id.to_string(),
        None => id.saturating_sub(2).to_string(),
    };
    Ok((kind, port, request))
}

/// The accepted streams of one forwarded connection, while the other one is awaited.
#[derive(Default)]
struct Pending {
    port: u16,
    error: Option<(StreamReader, StreamWriter)>,
    data: Option<(StreamReader, StreamWriter)>,
}

/// Serves one SPDY session: pairs the streams the client opens and forwards each pair.
async fn serve_session<T>(io: T, target: Target)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let target = Arc::new(target);
    let mut incoming = spdy::serve(io, spdy::Config::default());
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let (expired_tx, mut expired_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let stream = tokio::select! {
            stream = incoming.next() => match stream {
                Some(stream) => stream,
                None => break,
            },
            Some(request) = expired_rx.recv() => {
                if let Some(p) = pending.remove(&request) {
                    let message = format!("timed out waiting for the data and error streams of request {request}");
                    tokio::spawn(fail(p, message));
                }
                continue;
            }
        };
        let (kind, port, request) = match stream_request(stream.id, &stream.headers) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(stream = stream.id, error = %e, "port-forward stream refused");
                stream.refuse(rst::CANCEL).await;
                continue;
            }
        };
        let entry = pending.entry(request.clone()).or_insert_with(|| {
            let expired = expired_tx.clone();
            let request = request.clone();
            tokio::spawn(async move {
                tokio::time::sleep(PAIR_TIMEOUT).await;
                let _ = expired.send(request);
            });
            Pending {
                port,
                ..Pending::default()
            }
        });
        let slot = match kind {
            StreamType::Error => &mut entry.error,
            StreamType::Data => &mut entry.data,
        };
        if slot.is_some() || entry.port != port {
            tracing::debug!(
                stream = stream.id,
                request,
                "a second {kind:?} stream, or another port, for one request"
            );
            stream.refuse(rst::PROTOCOL_ERROR).await;
            continue;
        }
        match stream.accept().await {
            Ok(halves) => *slot = Some(halves),
            Err(_) => continue,
        }
        if entry.error.is_some() && entry.data.is_some() {
            if let Some(Pending {
                port,
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&request)
            {
                tokio::spawn(forward(target.clone(), port, error, data));
            }
        }
    }
}

/// Ends a half-open request: the error on its error stream, if it has one.
async fn fail(pending: Pending, message: String) {
    if let Some((_, mut writer)) = pending.error {
        let _ = writer.write(message.as_bytes()).await;
        let _ = writer.finish().await;
    }
    if let Some((_, mut writer)) = pending.data {
        let _ = writer.finish().await;
    }
}

/// Forwards one connection: opens the tunnel to the pod's port and copies bytes both ways.
async fn forward(
    target: Arc<Target>,
    port: u16,
    error: (StreamReader, StreamWriter),
    data: (StreamReader, StreamWriter),
) {
    // The client writes nothing on the error stream.
    let (_, mut error_writer) = error;
    let (mut data_reader, mut data_writer) = data;
    let tunnel = match target.open(port).await {
        Ok(tunnel) => tunnel,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid {}: {}",
                target.name,
                target.uid,
                e.message()
            );
            let _ = error_writer.write(message.as_bytes()).await;
            let _ = error_writer.finish().await;
            let _ = data_writer.finish().await;
            return;
        }
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(tunnel);
    // Client to pod: ends at the client's FIN (passed on as a shutdown) or reset.
    let upstream = async {
        loop {
            match data_reader.read().await {
                Ok(Some(bytes)) => {
                    if pod_write.write_all(&bytes).await.is_err() {
                        // The pod stopped reading; what the client still sends is dropped.
                        return false;
                    }
                }
                Ok(None) => {
                    let _ = pod_write.shutdown().await;
                    return false;
                }
                Err(_) => return true,
            }
        }
    };
    // Pod to client: ends at the pod's end of the connection, passed on as a FIN.
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_read.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if data_writer.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, port, "port-forward: reading from the pod failed");
                    break;
                }
            }
        }
        let _ = data_writer.finish().await;
    };
    tokio::pin!(upstream, downstream);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            reset = &mut upstream, if !up_done => {
                up_done = true;
                if reset {
                    // The client gave up on the connection.
                    break;
                }
            }
            () = &mut downstream, if !down_done => {
                down_done = true;
                // kubectl waits for the error stream to end once the pod's side has.
                let _ = error_writer.finish().await;
            }
        }
    }
    let _ = error_writer.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn protocols_are_negotiated() {
        let refused = |h: HeaderMap| Protocol::negotiate(&h).unwrap_err().to_string();
        assert!(refused(HeaderMap::new()).contains("Upgrade request required"));
        assert!(refused(headers(&[("upgrade", "h2c")])).contains("\"h2c\" is not supported"));
        assert_eq!(
            Protocol::negotiate(&headers(&[("upgrade", "websocket, minik-portforward")])).unwrap(),
            Protocol::Raw
        );
        assert_eq!(
            Protocol::negotiate(&headers(&[
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", "portforward.k8s.io"),
            ]))
            .unwrap(),
            Protocol::Spdy
        );
        assert_eq!(
            Protocol::negotiate(&headers(&[("upgrade", "spdy/3.1")])).unwrap(),
            Protocol::Spdy
        );
        assert!(refused(headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ]))
        .contains("unable to negotiate protocol"));
        assert_eq!(
            Protocol::negotiate(&headers(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ]))
            .unwrap(),
            Protocol::WebSocket {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
        // The older WebSocket port-forward protocol (channels) is not served; kubectl never
        // asks for it.
        assert!(refused(headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "x"),
        ]))
        .contains("subprotocol"));
        assert!(refused(headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
        ]))
        .contains("Sec-WebSocket-Key"));
    }

    #[test]
    fn streams_are_paired_by_request_id_or_by_stream_id() {
        let block = |pairs: &[(&str, &str)]| {
            HeaderBlock(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            stream_request(
                5,
                &block(&[("streamtype", "data"), ("port", "80"), ("requestid", "7")])
            ),
            Ok((StreamType::Data, 80, "7".into()))
        );
        // Without requestID: the data stream's id is its error stream's plus 2.
        assert_eq!(
            stream_request(1, &block(&[("streamtype", "error"), ("port", "80")])),
            Ok((StreamType::Error, 80, "1".into()))
        );
        assert_eq!(
            stream_request(3, &block(&[("streamtype", "data"), ("port", "80")])),
            Ok((StreamType::Data, 80, "1".into()))
        );
        for (pairs, message) in [
            (
                &[("streamtype", "resize"), ("port", "80")][..],
                "invalid stream type",
            ),
            (&[("port", "80")][..], "without a streamType"),
            (&[("streamtype", "data")][..], "without a port"),
            (&[("streamtype", "data"), ("port", "0")][..], "invalid port"),
        ] {
            let error = stream_request(1, &block(pairs)).unwrap_err();
            assert!(error.contains(message), "{error}");
        }
    }

    #[test]
    fn raw_ports_are_checked() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert_eq!(requested_port(&q("ports", "8080")).unwrap(), 8080);
        assert_eq!(requested_port(&q("port", "80")).unwrap(), 80);
        for bad in ["0", "70000", "http", "80,81"] {
            assert_eq!(requested_port(&q("ports", bad)).unwrap_err().code(), 400);
        }
        assert_eq!(requested_port(&HashMap::new()).unwrap_err().code(), 400);
    }
}
