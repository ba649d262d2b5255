//! `pods/{name}/exec`: runs a command in a container of a pod, through the pod's node agent,
//! the path Kubernetes takes through the kubelet.
//!
//! The query names the command (`command`, repeated), the container, and which of `stdin`,
//! `stdout`, `stderr` and `tty` the client wants. The client picks a protocol with `Upgrade`:
//! - `minik-exec`, minik's own: after `101 Switching Protocols` both ways carry the frames of
//!   the agent's tunnel (`[channel][u32 length][payload]`, [`frames`]). The agent has started
//!   the command when the client gets the 101; a refusal is an HTTP answer.
//! - `SPDY/3.1` with `X-Stream-Protocol-Version: v4.channel.k8s.io` (or v3, v2), kubectl's
//!   before 1.30: the client opens one stream per channel (header `streamType`: error, stdin,
//!   stdout, stderr, resize); the outcome is written on the error stream ([`over_spdy`]).
//! - `websocket` with the subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`, kubectl
//!   1.30+'s and the Python client's: each binary message is a channel byte and its data
//!   ([`over_websocket`]).
//!
//! Whatever the client speaks, the server opens one tunnel to the agent,
//! `POST /exec/{ns}/{pod}/{container}?command=...` upgraded to `minik-exec`, and passes the
//! channels between the two. With SPDY and WebSocket, the client is switched before the agent
//! is asked, so what the agent refuses reaches the client as a `Status` on the error channel.

mod frames;
mod over_spdy;
mod over_websocket;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use minik_api::ApiError;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::agent::{self, PodAgent};
use crate::portforward::{tokens, websocket};
use crate::ApiServer;

/// The `Upgrade` token of minik's own exec protocol; the agent speaks the same.
pub const RAW_PROTOCOL: &str = "minik-exec";

/// The `Upgrade` token of kubectl's SPDY.
const SPDY_PROTOCOL: &str = "SPDY/3.1";

/// The header that names the stream protocol within SPDY.
const STREAM_PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// What one exec or attach asks for, from the request's query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecOptions {
    /// An attach (`pods/{name}/attach`): to the container's own process, no command.
    pub attach: bool,
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A query parameter as Kubernetes converts it to a bool: absent, `false` or `0` is false,
/// anything else (an empty value too) is true; the first value counts.
fn flag(pairs: &[(String, String)], name: &str) -> bool {
    match pairs.iter().find(|(k, _)| k == name) {
        None => false,
        Some((_, v)) => !(v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

impl ExecOptions {
    /// The options of an exec's query `raw` (`command` repeated), checked as Kubernetes does.
    pub fn parse(raw: Option<&str>) -> Result<ExecOptions, ApiError> {
        Self::parse_as(raw, false)
    }

    /// The options of an attach's query `raw` (PodAttachOptions: no command).
    pub fn parse_attach(raw: Option<&str>) -> Result<ExecOptions, ApiError> {
        Self::parse_as(raw, true)
    }

    fn parse_as(raw: Option<&str>, attach: bool) -> Result<ExecOptions, ApiError> {
        let uri = format!("/?{}", raw.unwrap_or_default())
            .parse()
            .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|e| ApiError::BadRequest(format!("the query string is malformed: {e}")))?
            .0;
        let command: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if command.is_empty() && !attach {
            return Err(ApiError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        let tty = flag(&pairs, "tty");
        let options = ExecOptions {
            attach,
            command: if attach { Vec::new() } else { command },
            container: pairs
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone())
                .filter(|c| !c.is_empty()),
            stdin: flag(&pairs, "stdin"),
            stdout: flag(&pairs, "stdout"),
            // With a terminal, everything comes on stdout (the kubelet drops stderr too).
            stderr: flag(&pairs, "stderr") && !tty,
            tty,
        };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(options)
    }
}

/// The client's protocol, from the request's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Protocol {
    /// minik's frames.
    Raw,
    /// kubectl's SPDY, with the stream protocol chosen.
    Spdy(over_spdy::Version),
    /// WebSocket channels: the `Sec-WebSocket-Accept` to answer and the subprotocol chosen.
    WebSocket {
        accept: String,
        version: over_websocket::Version,
    },
}

impl Protocol {
    fn negotiate(headers: &HeaderMap) -> Result<Protocol, ApiError> {
        let offered: Vec<&str> = tokens(headers, header::UPGRADE.as_str()).collect();
        let offers = |p: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(p));
        if offers(RAW_PROTOCOL) {
            return Ok(Protocol::Raw);
        }
        if offers(SPDY_PROTOCOL) {
            let asked: Vec<&str> = tokens(headers, STREAM_PROTOCOL_HEADER).collect();
            return over_spdy::Version::choose(&asked).map(Protocol::Spdy).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {asked:?}, server accepts {:?}",
                    over_spdy::Version::NAMES
                ))
            });
        }
        if offers("websocket") {
            let asked: Vec<&str> = tokens(headers, "Sec-WebSocket-Protocol").collect();
            let version = over_websocket::Version::choose(&asked).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unable to upgrade connection: exec over WebSocket is served with the subprotocols {:?}, not {asked:?}",
                    over_websocket::Version::NAMES
                ))
            })?;
            let key = headers
                .get("Sec-WebSocket-Key")
                .and_then(|v| v.to_str().ok())
                .filter(|k| !k.trim().is_empty());
            return match (tokens(headers, "Sec-WebSocket-Version").next(), key) {
                (Some("13"), Some(key)) => Ok(Protocol::WebSocket {
                    accept: websocket::accept_key(key),
                    version,
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
            "unable to upgrade connection: the protocol {:?} is not supported; minik serves exec over `Upgrade: {RAW_PROTOCOL}`, `Upgrade: {SPDY_PROTOCOL}` and WebSocket with the subprotocols {:?}",
            offered.join(", "),
            over_websocket::Version::NAMES
        )))
    }
}

/// Where one exec's tunnel goes: the agent's request, ready to send.
pub(crate) struct Target {
    /// The agent's node, for messages.
    node: String,
    request: reqwest::RequestBuilder,
    options: ExecOptions,
}

/// Why the tunnel to the agent could not be opened.
#[derive(Debug)]
pub(crate) enum TunnelError {
    /// The agent answered `code` with `message` before starting the command.
    Refused { code: u16, message: String },
    /// The agent did not answer or did not upgrade.
    Unavailable(ApiError),
}

impl Target {
    /// The exec of `options` in `container` of pod `ns/pod` through the agent at `base`
    /// (`http://host:port`); `client` sends it.
    fn new(
        client: &reqwest::Client,
        base: &str,
        node: &str,
        (ns, pod, container): (&str, &str, &str),
        options: ExecOptions,
    ) -> Target {
        let bool_text = |b: bool| if b { "true" } else { "false" };
        let mut query: Vec<(&str, &str)> = options
            .command
            .iter()
            .map(|c| ("command", c.as_str()))
            .collect();
        query.extend([
            ("stdin", bool_text(options.stdin)),
            ("stdout", bool_text(options.stdout)),
            ("stderr", bool_text(options.stderr)),
            ("tty", bool_text(options.tty)),
        ]);
        let path = if options.attach { "attach" } else { "exec" };
        let request = client
            .post(format!("{base}/{path}/{ns}/{pod}/{container}"))
            .query(&query)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, RAW_PROTOCOL);
        Target {
            node: node.to_owned(),
            request,
            options,
        }
    }

    /// The exec through the agent of a pod's node, with the server's credentials.
    fn to_agent(
        client: &reqwest::Client,
        agent: &PodAgent,
        pod: (&str, &str, &str),
        options: ExecOptions,
    ) -> Target {
        let mut target = Target::new(client, &agent.url(""), &agent.node, pod, options);
        target.request = agent.authorize(target.request);
        target
    }

    /// Opens the tunnel: the command has started when this returns.
    async fn open(self) -> Result<reqwest::Upgraded, TunnelError> {
        let node = self.node;
        let answer = self.request.send().await.map_err(|e| {
            TunnelError::Unavailable(ApiError::ServiceUnavailable(format!(
                "cannot reach the agent of node {node}: {e}"
            )))
        })?;
        let code = answer.status().as_u16();
        if code != 101 {
            let body = answer.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.trim().to_owned());
            let message = if message.is_empty() {
                format!("the agent of node {node} answered {code}")
            } else {
                message
            };
            return Err(TunnelError::Refused { code, message });
        }
        answer.upgrade().await.map_err(|e| {
            TunnelError::Unavailable(ApiError::ServiceUnavailable(format!(
                "the agent of node {node} did not upgrade: {e}"
            )))
        })
    }
}

impl TunnelError {
    /// The answer to a client of the raw protocol.
    fn into_api_error(self) -> ApiError {
        match self {
            TunnelError::Refused { code: 400, message } => ApiError::BadRequest(message),
            TunnelError::Refused { code: 404, message } => ApiError::Other {
                code: 404,
                reason: "NotFound".into(),
                message,
            },
            TunnelError::Refused { code: 500, message } => ApiError::Internal(message),
            TunnelError::Refused { code, message } => {
                ApiError::ServiceUnavailable(format!("the node agent answered {code}: {message}"))
            }
            TunnelError::Unavailable(e) => e,
        }
    }

    /// The `Status` for an error channel.
    fn status(self) -> Vec<u8> {
        failure_status(&self.into_api_error())
    }
}

/// A failure `Status` as the error channel carries it (the kubelet's JSON, no type meta).
fn failure_status(e: &ApiError) -> Vec<u8> {
    let status = json!({
        "metadata": {},
        "status": "Failure",
        "message": e.to_string(),
        "reason": e.reason(),
        "code": e.code(),
    });
    status.to_string().into_bytes()
}

/// The status for a tunnel that ended before the agent said how the command ended.
fn broken_status(node: &str, why: &str) -> Vec<u8> {
    failure_status(&ApiError::Internal(format!(
        "error executing command in container: the tunnel to the agent of node {node} ended before the command did: {why}"
    )))
}

/// Checks the request and the pod, then switches the client to the protocol it asked for (an
/// exec or, with `options.attach`, an attach).
pub(crate) async fn pod_session(
    server: &ApiServer,
    ns: &str,
    name: &str,
    options: ExecOptions,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let pod = agent::pod(server, ns, name).await?;
    let container = agent::container_of(&pod, name, options.container.as_deref())?;
    let agent = agent::pod_agent(server, &pod, name).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    match phase {
        "Running" => {}
        // kubectl's words, which it checks itself.
        "Succeeded" | "Failed" if options.attach => {
            return Err(ApiError::BadRequest(format!(
                "cannot attach a container in a completed pod; current phase is {phase}"
            )))
        }
        "Succeeded" | "Failed" => {
            return Err(ApiError::BadRequest(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )))
        }
        // The kubelet's, for a container it has not started.
        _ => {
            return Err(ApiError::BadRequest(format!(
                "unable to upgrade connection: container not found (\"{container}\")"
            )))
        }
    }
    let protocol = Protocol::negotiate(headers)?;
    let on_upgrade = on_upgrade.ok_or_else(|| {
        ApiError::BadRequest("unable to upgrade connection: the request cannot be upgraded".into())
    })?;
    let target = Target::to_agent(&server.nodes, &agent, (ns, name, &container), options);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let answer = response.headers_mut();
    answer.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match protocol {
        Protocol::Raw => {
            // The command starts before the client is switched: a refusal is an HTTP answer.
            let tunnel = target.open().await.map_err(TunnelError::into_api_error)?;
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => relay(hyper_util::rt::TokioIo::new(client), tunnel).await,
                    Err(e) => tracing::debug!(error = %e, "exec client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static(RAW_PROTOCOL));
        }
        Protocol::Spdy(version) => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => {
                        over_spdy::serve(hyper_util::rt::TokioIo::new(client), target, version)
                            .await
                    }
                    Err(e) => tracing::debug!(error = %e, "exec client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static(SPDY_PROTOCOL));
            answer.insert(
                STREAM_PROTOCOL_HEADER,
                HeaderValue::from_static(version.name()),
            );
        }
        Protocol::WebSocket { accept, version } => {
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(client) => {
                        over_websocket::serve(hyper_util::rt::TokioIo::new(client), target, version)
                            .await
                    }
                    Err(e) => tracing::debug!(error = %e, "exec client upgrade failed"),
                }
            });
            answer.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            answer.insert(
                "Sec-WebSocket-Accept",
                HeaderValue::from_str(&accept).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            answer.insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(version.name()),
            );
        }
    }
    Ok(response)
}

/// minik's protocol: the client's stdin and resize frames to the agent, everything the agent
/// sends to the client. Ends when the agent closes the tunnel (after the outcome), or when the
/// client goes away (which closes the tunnel, and the agent kills the command).
async fn relay<C>(client: C, agent: reqwest::Upgraded)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut agent_read, mut agent_write) = tokio::io::split(agent);
    let upstream = async {
        loop {
            match frames::read(&mut client_read).await {
                Ok(Some(frame)) if matches!(frame.channel, frames::STDIN | frames::RESIZE) => {
                    if frames::write(&mut agent_write, frame.channel, &frame.payload)
                        .await
                        .is_err()
                    {
                        // The agent is gone; its end of the tunnel ends the relay.
                        std::future::pending::<()>().await;
                    }
                }
                Ok(Some(frame)) => {
                    tracing::debug!(
                        channel = frame.channel,
                        "exec: a client frame on a channel it may not write"
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "exec: reading from the client failed");
                    return;
                }
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut agent_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    // Whichever ends first ends the exec: the client gone, or the agent done.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests;
