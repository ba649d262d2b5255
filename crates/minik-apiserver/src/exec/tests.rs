//! The exec side of the API server alone: query and pod checks, protocol negotiation, and each
//! client protocol end to end against a fake node agent (an HTTP server on loopback that
//! speaks the agent's side of the exec tunnel).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, Request};
use axum::response::IntoResponse;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;

use crate::agent::container_of;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::*;
use crate::spdy::frame::{Frame, FLAG_FIN};
use crate::spdy::headers::{Compressor, Decompressor};
use crate::spdy::HeaderBlock;

const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

// ---------------------------------------------------------------------------------------------
// Checks of the request.

fn options(query: &str) -> Result<ExecOptions, ApiError> {
    ExecOptions::parse(Some(query))
}

#[test]
fn the_query_is_read_as_kubernetes_reads_it() {
    let o = options("command=sh&command=-c&command=echo%20a%26b&container=main&stdout=true&stderr=1&stdin=False").unwrap();
    assert_eq!(o.command, ["sh", "-c", "echo a&b"]);
    assert_eq!(o.container.as_deref(), Some("main"));
    assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
    // The Python client's spelling, an empty value, and a tty, which drops stderr.
    let o = options("command=ls&stdin=True&stdout=&stderr=true&tty=true").unwrap();
    assert!(o.stdin && o.stdout && o.tty && !o.stderr);
    assert_eq!(o.container, None);

    let refused = |q: &str| options(q).unwrap_err();
    let e = refused("stdout=true");
    assert_eq!(e.code(), 400);
    assert_eq!(
        e.to_string(),
        "you must specify at least one command for the container"
    );
    assert_eq!(
        refused("command=ls&stdout=false").to_string(),
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    assert_eq!(ExecOptions::parse(None).unwrap_err().code(), 400);
}

/// PodAttachOptions: the same streams, no command (one given is not run), and the agent's
/// path is `attach`.
#[tokio::test]
async fn an_attach_needs_no_command_and_goes_to_the_agents_attach() {
    let o = ExecOptions::parse_attach(Some(
        "command=ls&stdin=true&stdout=true&stderr=true&tty=true",
    ))
    .unwrap();
    assert!(o.attach && o.stdin && o.stdout && o.tty && !o.stderr);
    assert!(o.command.is_empty());
    assert_eq!(
        ExecOptions::parse_attach(Some("container=main"))
            .unwrap_err()
            .to_string(),
        "you must specify at least 1 of stdin, stdout, stderr"
    );
    let (base, agent) = fake_agent().await;
    let options = ExecOptions::parse_attach(Some("stdin=true&stdout=true")).unwrap();
    let target = Target::new(
        &reqwest::Client::new(),
        &base,
        "n1",
        ("default", "web", "main"),
        options,
    );
    let _ = target.open().await;
    let seen = agent.requests.lock().unwrap().clone();
    assert_eq!(seen[0].0, "/attach/default/web/main");
    assert_eq!(seen[0].1, "stdin=true&stdout=true&stderr=false&tty=false");
}

#[test]
fn containers_are_checked_with_the_api_servers_words() {
    let pod = json!({"spec": {
        "containers": [{"name": "a"}, {"name": "b"}],
        "initContainers": [{"name": "init"}],
    }});
    assert_eq!(container_of(&pod, "web", Some("b")).unwrap(), "b");
    assert_eq!(container_of(&pod, "web", Some("init")).unwrap(), "init");
    assert_eq!(
        container_of(&pod, "web", Some("wrong"))
            .unwrap_err()
            .to_string(),
        "container wrong is not valid for pod web"
    );
    assert_eq!(
        container_of(&pod, "web", None).unwrap_err().to_string(),
        "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]"
    );
    let one = json!({"spec": {"containers": [{"name": "only"}]}});
    assert_eq!(container_of(&one, "web", None).unwrap(), "only");
}

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
        Protocol::negotiate(&headers(&[("upgrade", "minik-exec")])).unwrap(),
        Protocol::Raw
    );
    // kubectl's SPDY offers v5 first; the server picks the best it speaks.
    assert_eq!(
        Protocol::negotiate(&headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]))
        .unwrap(),
        Protocol::Spdy(over_spdy::Version::V4)
    );
    assert_eq!(
        Protocol::negotiate(&headers(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v2.channel.k8s.io"),
        ]))
        .unwrap(),
        Protocol::Spdy(over_spdy::Version::V2)
    );
    assert!(refused(headers(&[
        ("upgrade", "SPDY/3.1"),
        ("x-stream-protocol-version", "portforward.k8s.io"),
    ]))
    .contains("unable to negotiate protocol"));
    assert!(refused(headers(&[("upgrade", "SPDY/3.1")])).contains("unable to negotiate"));
    assert_eq!(
        Protocol::negotiate(&headers(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                "v4.channel.k8s.io, v5.channel.k8s.io"
            ),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]))
        .unwrap(),
        Protocol::WebSocket {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            version: over_websocket::Version::V5,
        }
    );
    assert!(refused(headers(&[
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "x"),
    ]))
    .contains("subprotocols"));
    assert!(refused(headers(&[
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", "v4.channel.k8s.io"),
    ]))
    .contains("Sec-WebSocket-Key"));
}

#[test]
fn v2_and_v3_error_streams_carry_the_message_only() {
    let failure =
        br#"{"metadata":{},"status":"Failure","message":"boom","reason":"InternalError"}"#;
    let success = br#"{"metadata":{},"status":"Success"}"#;
    use over_spdy::Version;
    assert_eq!(Version::V4.error_stream_text(failure), failure);
    assert_eq!(Version::V3.error_stream_text(failure), b"boom");
    assert_eq!(Version::V2.error_stream_text(success), b"");
}

// ---------------------------------------------------------------------------------------------
// A fake node agent.

/// What the fake agent saw and did.
#[derive(Clone, Default)]
struct Agent {
    /// The path and query of each request.
    requests: Arc<Mutex<Vec<(String, String)>>>,
    /// A tunnel of `hang` ended (the server closed it).
    hung_up: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
}

const NON_ZERO: &str = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

/// The commands the fake agent knows, by their first word:
/// - `notrunning`: 400 before the upgrade; `gone`: 404 (a JSON Status body);
/// - `sh`: "out\n" on stdout, "err\n" on stderr, exit code 3;
/// - `cat`: stdin back on stdout until its end, then success;
/// - `resize`: the first terminal size back on stdout, then success;
/// - `hang`: nothing until the tunnel closes.
async fn exec_handler(
    axum::extract::State(agent): axum::extract::State<Agent>,
    Path((_ns, _pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> axum::response::Response {
    let query = query.unwrap_or_default();
    agent
        .requests
        .lock()
        .unwrap()
        .push((request.uri().path().to_owned(), query.clone()));
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if upgrade != RAW_PROTOCOL {
        return (StatusCode::BAD_REQUEST, "Upgrade: minik-exec required").into_response();
    }
    let command = ExecOptions::parse(Some(&query))
        .map(|o| o.command)
        .unwrap_or_default();
    let first = command.first().cloned().unwrap_or_default();
    match first.as_str() {
        "notrunning" => {
            return (
                StatusCode::BAD_REQUEST,
                format!("container {container} is not running"),
            )
                .into_response()
        }
        "gone" => {
            return (
                StatusCode::NOT_FOUND,
                r#"{"kind":"Status","message":"pod default/web is not on this node"}"#,
            )
                .into_response()
        }
        _ => {}
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        match first.as_str() {
            "sh" => {
                frames::write(&mut io, frames::STDOUT, b"out\n")
                    .await
                    .unwrap();
                frames::write(&mut io, frames::STDERR, b"err\n")
                    .await
                    .unwrap();
                frames::write(&mut io, frames::ERROR, NON_ZERO.as_bytes())
                    .await
                    .unwrap();
            }
            "cat" => {
                while let Ok(Some(frame)) = frames::read(&mut io).await {
                    if frame.channel != frames::STDIN {
                        continue;
                    }
                    if frame.payload.is_empty() {
                        break;
                    }
                    frames::write(&mut io, frames::STDOUT, &frame.payload)
                        .await
                        .unwrap();
                }
                frames::write(&mut io, frames::ERROR, SUCCESS.as_bytes())
                    .await
                    .unwrap();
            }
            "resize" => {
                while let Ok(Some(frame)) = frames::read(&mut io).await {
                    if frame.channel == frames::RESIZE {
                        frames::write(&mut io, frames::STDOUT, &frame.payload)
                            .await
                            .unwrap();
                        break;
                    }
                }
                frames::write(&mut io, frames::ERROR, SUCCESS.as_bytes())
                    .await
                    .unwrap();
            }
            _ => {
                // `hang`: until the server closes the tunnel.
                while let Ok(Some(_)) = frames::read(&mut io).await {}
                if let Some(tx) = agent.hung_up.lock().unwrap().as_ref() {
                    let _ = tx.send(());
                }
                return;
            }
        }
        let _ = io.shutdown().await;
    });
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(RAW_PROTOCOL));
    response
}

/// Starts the fake agent on loopback: its base URL and what it records.
async fn fake_agent() -> (String, Agent) {
    let agent = Agent::default();
    let app = axum::Router::new()
        .route(
            "/exec/{ns}/{pod}/{container}",
            axum::routing::post(exec_handler),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            axum::routing::post(exec_handler),
        )
        .with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), agent)
}

fn target(base: &str, query: &str) -> Target {
    Target::new(
        &reqwest::Client::new(),
        base,
        "n1",
        ("default", "web", "main"),
        options(query).unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// minik's own protocol.

#[tokio::test]
async fn the_agent_gets_the_command_and_the_options() {
    let (base, agent) = fake_agent().await;
    let tunnel = target(
        &base,
        "command=sh&command=-c&command=a%20b&stdout=true&stderr=true",
    )
    .open()
    .await
    .unwrap();
    drop(tunnel);
    let seen = agent.requests.lock().unwrap().clone();
    assert_eq!(seen[0].0, "/exec/default/web/main");
    let query: Vec<(String, String)> = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{}", seen[0].1).parse().unwrap(),
    )
    .unwrap()
    .0;
    let pairs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("command", "sh"),
            ("command", "-c"),
            ("command", "a b"),
            ("stdin", "false"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "false"),
        ]
    );
}

#[tokio::test]
async fn refusals_of_the_agent_become_api_errors() {
    let (base, _agent) = fake_agent().await;
    let e = target(&base, "command=notrunning&stdout=true")
        .open()
        .await
        .unwrap_err()
        .into_api_error();
    assert_eq!(
        (e.code(), e.to_string()),
        (400, "container main is not running".to_owned())
    );
    let e = target(&base, "command=gone&stdout=true")
        .open()
        .await
        .unwrap_err()
        .into_api_error();
    assert_eq!(
        (e.code(), e.to_string()),
        (404, "pod default/web is not on this node".to_owned())
    );
    // Nobody listening: unavailable, naming the node.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let e = target(&closed, "command=ls&stdout=true")
        .open()
        .await
        .unwrap_err()
        .into_api_error();
    assert_eq!(e.code(), 503);
    assert!(e.to_string().contains("node n1"), "{e}");
}

/// Reads frames until the error channel's; the data of each channel.
async fn raw_outcome(read: &mut ReadHalf<DuplexStream>) -> HashMap<u8, Vec<u8>> {
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    while let Some(frame) = within("a frame", frames::read(read)).await.unwrap() {
        got.entry(frame.channel)
            .or_default()
            .extend_from_slice(&frame.payload);
    }
    got
}

#[tokio::test]
async fn the_raw_protocol_relays_frames_both_ways() {
    let (base, _agent) = fake_agent().await;
    // Output, error output and the exit code.
    let tunnel = target(&base, "command=sh&stdout=true&stderr=true")
        .open()
        .await
        .unwrap();
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(relay(server, tunnel));
    let (mut read, _write) = tokio::io::split(client);
    let got = raw_outcome(&mut read).await;
    assert_eq!(got[&frames::STDOUT], b"out\n");
    assert_eq!(got[&frames::STDERR], b"err\n");
    assert_eq!(got[&frames::ERROR], NON_ZERO.as_bytes());

    // Stdin, its end; frames on channels the client may not write are dropped.
    let tunnel = target(&base, "command=cat&stdin=true&stdout=true")
        .open()
        .await
        .unwrap();
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(relay(server, tunnel));
    let (mut read, mut write) = tokio::io::split(client);
    frames::write(&mut write, frames::STDOUT, b"not this")
        .await
        .unwrap();
    frames::write(&mut write, frames::STDIN, b"hello\n")
        .await
        .unwrap();
    frames::write(&mut write, frames::STDIN, b"").await.unwrap();
    let got = raw_outcome(&mut read).await;
    assert_eq!(got[&frames::STDOUT], b"hello\n");
    assert_eq!(got[&frames::ERROR], SUCCESS.as_bytes());
}

#[tokio::test]
async fn a_client_gone_closes_the_tunnel() {
    let (base, agent) = fake_agent().await;
    let (hung_up_tx, mut hung_up) = mpsc::unbounded_channel();
    *agent.hung_up.lock().unwrap() = Some(hung_up_tx);
    let tunnel = target(&base, "command=hang&stdout=true")
        .open()
        .await
        .unwrap();
    let (client, server) = tokio::io::duplex(1 << 16);
    let relayed = tokio::spawn(relay(server, tunnel));
    drop(client);
    within("the relay to end", relayed).await.unwrap();
    within("the agent to see the tunnel close", hung_up.recv()).await;
}

// ---------------------------------------------------------------------------------------------
// WebSocket.

/// The client end of an exec WebSocket.
struct WsClient {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
}

impl WsClient {
    fn start(target: Target, version: over_websocket::Version) -> WsClient {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(over_websocket::serve(server, target, version));
        let (read, write) = tokio::io::split(client);
        WsClient { read, write }
    }

    /// Sends a masked frame.
    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.try_send(opcode, payload).await.unwrap();
    }

    /// Sends a masked frame, which the server may not read to its end.
    async fn try_send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [9u8, 8, 7, 6];
        let mut out = BytesMut::new();
        out.put_u8(0x80 | opcode);
        match payload.len() {
            n if n < 126 => out.put_u8(0x80 | n as u8),
            n if n <= 0xffff => {
                out.put_u8(0x80 | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(0x80 | 127);
                out.put_u64(n as u64);
            }
        }
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.write.write_all(&out).await
    }

    /// The next frame from the server: (opcode, payload), `None` at the end.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within("a WebSocket frame", async {
            let head = websocket::read_head(&mut self.read).await.ok()??;
            assert!(head.mask.is_none());
            let mut payload = vec![0; head.len as usize];
            self.read.read_exact(&mut payload).await.ok()?;
            Some((head.opcode, payload))
        })
        .await
    }

    /// The binary messages until the close: (channel, data) each, and the close code.
    async fn until_close(&mut self) -> (Vec<(u8, Vec<u8>)>, u16) {
        let mut messages = Vec::new();
        loop {
            match self.frame().await {
                Some((websocket::OP_BINARY, m)) => {
                    messages.push((m[0], m[1..].to_vec()));
                }
                Some((websocket::OP_CLOSE, p)) => {
                    return (messages, u16::from_be_bytes([p[0], p[1]]));
                }
                Some((websocket::OP_PONG, _)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn joined(messages: &[(u8, Vec<u8>)], channel: u8) -> Vec<u8> {
    messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

#[tokio::test]
async fn websocket_clients_get_channels_and_the_status() {
    let (base, _agent) = fake_agent().await;
    let mut ws = WsClient::start(
        target(&base, "command=sh&stdout=true&stderr=true"),
        over_websocket::Version::V4,
    );
    let (messages, code) = ws.until_close().await;
    assert_eq!(code, 1000);
    // First an empty message on stdout: the exec has started.
    assert_eq!(messages[0], (frames::STDOUT, Vec::new()));
    assert_eq!(joined(&messages, frames::STDOUT), b"out\n");
    assert_eq!(joined(&messages, frames::STDERR), b"err\n");
    assert_eq!(joined(&messages, frames::ERROR), NON_ZERO.as_bytes());
}

#[tokio::test]
async fn websocket_v5_stdin_ends_with_the_close_signal() {
    let (base, _agent) = fake_agent().await;
    let mut ws = WsClient::start(
        target(&base, "command=cat&stdin=true&stdout=true"),
        over_websocket::Version::V5,
    );
    assert_eq!(
        ws.frame().await,
        Some((websocket::OP_BINARY, vec![frames::STDOUT]))
    );
    // A ping in between, a message in two fragments, then stdin's end.
    ws.send(websocket::OP_PING, b"hb").await;
    assert_eq!(ws.frame().await, Some((websocket::OP_PONG, b"hb".to_vec())));
    let mut first = BytesMut::new();
    // No FIN bit: the message goes on in a continuation.
    first.put_u8(websocket::OP_BINARY);
    {
        // A fragment without FIN.
        let mask = [1u8, 2, 3, 4];
        let payload = [frames::STDIN, b'h', b'e'];
        first.put_u8(0x80 | payload.len() as u8);
        first.put_slice(&mask);
        first.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    ws.write.write_all(&first).await.unwrap();
    ws.send(websocket::OP_CONTINUATION, b"llo\n").await;
    ws.send(websocket::OP_BINARY, &[255, frames::STDIN]).await;
    let (messages, code) = ws.until_close().await;
    assert_eq!(code, 1000);
    assert_eq!(joined(&messages, frames::STDOUT), b"hello\n");
    assert_eq!(joined(&messages, frames::ERROR), SUCCESS.as_bytes());
}

#[tokio::test]
async fn websocket_resizes_reach_the_agent() {
    let (base, _agent) = fake_agent().await;
    let mut ws = WsClient::start(
        target(&base, "command=resize&stdin=true&stdout=true&tty=true"),
        over_websocket::Version::V5,
    );
    assert_eq!(
        ws.frame().await,
        Some((websocket::OP_BINARY, vec![frames::STDOUT]))
    );
    ws.send(websocket::OP_BINARY, b"\x04{\"Width\":120,\"Height\":40}\n")
        .await;
    let (messages, _) = ws.until_close().await;
    assert_eq!(
        joined(&messages, frames::STDOUT),
        br#"{"Width":120,"Height":40}"#
    );
}

#[tokio::test]
async fn websocket_clients_get_the_agents_refusal_as_a_status() {
    let (base, _agent) = fake_agent().await;
    let mut ws = WsClient::start(
        target(&base, "command=notrunning&stdout=true"),
        over_websocket::Version::V5,
    );
    let (messages, code) = ws.until_close().await;
    assert_eq!(code, 1000);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let status: Value = serde_json::from_slice(&joined(&messages, frames::ERROR)).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(status["message"], "container main is not running");
}

#[tokio::test]
async fn a_websocket_client_gone_closes_the_tunnel() {
    let (base, agent) = fake_agent().await;
    let (hung_up_tx, mut hung_up) = mpsc::unbounded_channel();
    *agent.hung_up.lock().unwrap() = Some(hung_up_tx);
    let mut ws = WsClient::start(
        target(&base, "command=hang&stdout=true"),
        over_websocket::Version::V5,
    );
    assert_eq!(
        ws.frame().await,
        Some((websocket::OP_BINARY, vec![frames::STDOUT]))
    );
    ws.send(websocket::OP_CLOSE, &1000u16.to_be_bytes()).await;
    assert_eq!(ws.frame().await.map(|f| f.0), Some(websocket::OP_CLOSE));
    within("the agent to see the tunnel close", hung_up.recv()).await;
}

#[tokio::test]
async fn bad_websocket_frames_close_the_connection() {
    let (base, _agent) = fake_agent().await;
    for (opcode, payload, code) in [
        (websocket::OP_TEXT, b"0hi".to_vec(), 1003u16),
        (websocket::OP_CONTINUATION, b"x".to_vec(), 1002),
        (
            websocket::OP_BINARY,
            vec![0u8; 2 * frames::MAX_FRAME + 1],
            1009,
        ),
    ] {
        let mut ws = WsClient::start(
            target(&base, "command=hang&stdin=true&stdout=true"),
            over_websocket::Version::V5,
        );
        ws.frame().await;
        // The server stops reading a message too big.
        let _ = ws.try_send(opcode, &payload).await;
        let (_, got) = ws.until_close().await;
        assert_eq!(got, code);
    }
}

// ---------------------------------------------------------------------------------------------
// SPDY.

/// The client end of an exec SPDY session, as kubectl's.
struct SpdyClient {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
    buf: BytesMut,
    compressor: Compressor,
    decompressor: Decompressor,
    next_id: u32,
}

impl SpdyClient {
    fn start(target: Target, version: over_spdy::Version) -> SpdyClient {
        let (client, server) = tokio::io::duplex(1 << 20);
        tokio::spawn(over_spdy::serve(server, target, version));
        let (read, write) = tokio::io::split(client);
        SpdyClient {
            read,
            write,
            buf: BytesMut::new(),
            compressor: Compressor::new(),
            decompressor: Decompressor::new(1 << 20),
            next_id: 1,
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.write.write_all(&out).await.unwrap();
    }

    /// Opens a stream of `stream_type`; its id.
    async fn open(&mut self, stream_type: &str) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let block = HeaderBlock(vec![("streamtype".into(), stream_type.into())]);
        let headers = self.compressor.compress(&block).unwrap();
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
        id
    }

    async fn data(&mut self, stream_id: u32, data: &'static [u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: Bytes::from_static(data),
        })
        .await;
    }

    /// Reads until the server closes the connection: each stream's data, the streams it
    /// finished, and the streams it reset.
    async fn until_closed(&mut self) -> (HashMap<u32, Vec<u8>>, Vec<u32>, Vec<u32>) {
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let (mut finished, mut reset) = (Vec::new(), Vec::new());
        within("the session to end", async {
            loop {
                let frame = match Frame::decode(&mut self.buf).unwrap() {
                    Some(frame) => frame,
                    None => {
                        if self.read.read_buf(&mut self.buf).await.unwrap() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                match frame {
                    Frame::Data {
                        stream_id,
                        flags,
                        data: d,
                    } => {
                        data.entry(stream_id).or_default().extend_from_slice(&d);
                        if flags & FLAG_FIN != 0 {
                            finished.push(stream_id);
                        }
                    }
                    Frame::SynReply { headers, .. } => {
                        self.decompressor.decompress(&headers).unwrap();
                    }
                    Frame::RstStream { stream_id, .. } => reset.push(stream_id),
                    _ => {}
                }
            }
        })
        .await;
        (data, finished, reset)
    }
}

#[tokio::test]
async fn spdy_v4_clients_get_output_and_the_exit_status() {
    let (base, _agent) = fake_agent().await;
    let mut c = SpdyClient::start(
        target(&base, "command=sh&stdout=true&stderr=true"),
        over_spdy::Version::V4,
    );
    let error = c.open("error").await;
    let stdout = c.open("stdout").await;
    let stderr = c.open("stderr").await;
    // kubectl half-closes the streams it does not write on.
    c.data(stdout, b"", true).await;
    let (data, finished, reset) = c.until_closed().await;
    assert_eq!(data[&stdout], b"out\n");
    assert_eq!(data[&stderr], b"err\n");
    assert_eq!(data[&error], NON_ZERO.as_bytes());
    for id in [error, stdout, stderr] {
        assert!(finished.contains(&id), "stream {id} not finished");
    }
    assert!(reset.is_empty(), "{reset:?}");
}

#[tokio::test]
async fn spdy_stdin_and_its_end_reach_the_agent() {
    let (base, _agent) = fake_agent().await;
    let mut c = SpdyClient::start(
        target(&base, "command=cat&stdin=true&stdout=true"),
        over_spdy::Version::V4,
    );
    let error = c.open("error").await;
    let stdin = c.open("stdin").await;
    let stdout = c.open("stdout").await;
    // A stream of a type the exec has already: refused.
    let extra = c.open("stdout").await;
    c.data(stdin, b"hel", false).await;
    c.data(stdin, b"lo\n", true).await;
    let (data, _, reset) = c.until_closed().await;
    assert_eq!(data[&stdout], b"hello\n");
    assert_eq!(data[&error], SUCCESS.as_bytes());
    assert_eq!(reset, [extra]);
}

#[tokio::test]
async fn spdy_resizes_reach_the_agent() {
    let (base, _agent) = fake_agent().await;
    let mut c = SpdyClient::start(
        target(&base, "command=resize&stdin=true&stdout=true&tty=true"),
        over_spdy::Version::V4,
    );
    let error = c.open("error").await;
    c.open("stdin").await;
    let stdout = c.open("stdout").await;
    let resize = c.open("resize").await;
    c.data(resize, b"{\"Width\":80,\"Height\":24}\n", false)
        .await;
    let (data, _, _) = c.until_closed().await;
    assert_eq!(data[&stdout], br#"{"Width":80,"Height":24}"#);
    assert_eq!(data[&error], SUCCESS.as_bytes());
}

#[tokio::test]
async fn spdy_clients_get_the_agents_refusal_on_the_error_stream() {
    let (base, _agent) = fake_agent().await;
    let mut c = SpdyClient::start(
        target(&base, "command=notrunning&stdout=true"),
        over_spdy::Version::V4,
    );
    let error = c.open("error").await;
    let stdout = c.open("stdout").await;
    let (data, finished, _) = c.until_closed().await;
    let status: Value = serde_json::from_slice(&data[&error]).unwrap();
    assert_eq!(status["message"], "container main is not running");
    assert_eq!(status["code"], 400);
    assert!(finished.contains(&stdout));

    // v2: the message alone.
    let mut c = SpdyClient::start(
        target(&base, "command=notrunning&stdout=true"),
        over_spdy::Version::V2,
    );
    let error = c.open("error").await;
    c.open("stdout").await;
    let (data, _, _) = c.until_closed().await;
    assert_eq!(data[&error], b"container main is not running");
}

#[tokio::test]
async fn a_spdy_client_gone_closes_the_tunnel() {
    let (base, agent) = fake_agent().await;
    let (hung_up_tx, mut hung_up) = mpsc::unbounded_channel();
    *agent.hung_up.lock().unwrap() = Some(hung_up_tx);
    let mut c = SpdyClient::start(
        target(&base, "command=hang&stdout=true"),
        over_spdy::Version::V4,
    );
    c.open("error").await;
    c.open("stdout").await;
    // Wait for the tunnel to be open: the agent has seen the request.
    within("the exec to reach the agent", async {
        while agent.requests.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(c);
    within("the agent to see the tunnel close", hung_up.recv()).await;
}
