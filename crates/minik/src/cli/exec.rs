//! `exec`: runs a command in a container of a pod, as kubectl's `exec`; `attach` joins the
//! process a container runs, over the same protocol. `POD` (or `pod/NAME`,
//! `deploy/NAME`, ... as `logs` takes them) names the pod; the container is `-c`, else the
//! pod's `kubectl.kubernetes.io/default-container`, else its only one. The command's exit code
//! becomes minik's.
//!
//! The request is `POST pods/{name}/exec?command=...` with `Upgrade: minik-exec`; after the
//! `101` both ways carry frames `[channel][u32 length][payload]` (docs/api.md): stdin (0) and
//! terminal sizes (4) go out, stdout (1), stderr (2) and how the command ended (3, a `Status`)
//! come back. With `-t` the local terminal is put in raw mode for the command's own terminal
//! (with `stty`, restored at the end) and its size follows the local one (SIGWINCH).

use std::io::{IsTerminal, Read, Write};
use std::process::{ExitCode, Stdio};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{fail, pick, CliResult, Client, ClientFlags};

/// The `Upgrade` token of minik's exec protocol.
const PROTOCOL: &str = "minik-exec";
/// The annotation that names the container kubectl's exec (and `logs`) use by default.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// The largest frame payload accepted (the server's and the agent's limit).
const MAX_FRAME: usize = 1 << 20;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// What `exec` and `attach` share: the client, the session's streams, the pod and container.
#[derive(clap::Args, Debug)]
pub struct SessionFlags {
    #[command(flatten)]
    client: ClientFlags,
    /// Pass stdin to the command (`exec`) or to the container's stdin (`attach`, when the pod
    /// declares `stdin: true`).
    #[arg(short = 'i', long)]
    stdin: bool,
    /// A terminal: `exec` runs the command in one (with -i, when stdin is one); `attach` uses
    /// the container's (when it was started with `tty: true`).
    #[arg(short = 't', long)]
    tty: bool,
    /// The container (default: the pod's default-container annotation, else its only one).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// No warnings (that -t cannot be used, say) and no prompt hint.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// POD, pod/NAME, or deploy|rs|rc|svc/NAME (a pod of the workload).
    target: String,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    session: SessionFlags,
    /// The command and its arguments, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    session: SessionFlags,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The container to run in: the one asked for, the pod's default-container annotation when it
/// names one of its containers, or its only container.
fn container_of(pod: &Value, asked: Option<&str>) -> CliResult<String> {
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        return Ok(c.to_owned());
    }
    let containers: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER))
        .and_then(Value::as_str)
        .filter(|c| containers.contains(c));
    if let Some(c) = annotated {
        return Ok(c.to_owned());
    }
    match containers[..] {
        [only] => Ok(only.to_owned()),
        _ => Err(fail!(
            "a container name must be specified for pod {}, choose one of: [{}]",
            str_at(pod, "/metadata/name"),
            containers.join(" ")
        )),
    }
}

/// The client, the pod and the container a session is for, refused as kubectl refuses a
/// completed pod (`cannot {verb} a container in a completed pod`: "exec into", "attach").
async fn target(args: &SessionFlags, verb: &str) -> CliResult<(Client, Value, String)> {
    let client = Client::new(&args.client)?;
    let what = if verb == "attach" { "attach to" } else { verb };
    let pod = pick::pod_of_target(&client, &args.target, what).await?.pod;
    let phase = str_at(&pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(fail!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        ));
    }
    let container = container_of(&pod, args.container.as_deref())?;
    Ok((client, pod, container))
}

/// `s` escaped for a query string: everything but RFC 3986's unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query of an exec (or, without a command, an attach).
fn query(command: &[String], container: &str, stdin: bool, tty: bool) -> String {
    let mut pairs: Vec<String> = command
        .iter()
        .map(|c| format!("command={}", escape(c)))
        .collect();
    pairs.push(format!("container={}", escape(container)));
    pairs.push(format!("stdin={stdin}"));
    pairs.push("stdout=true".into());
    // With a terminal, the command's stderr comes on its stdout.
    pairs.push(format!("stderr={}", !tty));
    pairs.push(format!("tty={tty}"));
    pairs.join("&")
}

pub async fn run(args: ExecArgs) -> CliResult<ExitCode> {
    let (command, args) = (args.command, args.session);
    if command.is_empty() {
        return Err(fail!(
            "you must specify at least one command for the container"
        ));
    }
    let (client, pod, container) = target(&args, "exec into").await?;
    // As kubectl: a terminal only for stdin, and only when stdin is one.
    let tty = args.tty && args.stdin && {
        let terminal = std::io::stdin().is_terminal();
        if !terminal && !args.quiet {
            eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        }
        terminal
    };
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/exec?{}",
        str_at(&pod, "/metadata/namespace"),
        str_at(&pod, "/metadata/name"),
        query(&command, &container, args.stdin, tty)
    );
    // The size is known before the command starts, to go first: the command reads it as soon
    // as it runs.
    let size = if tty { terminal_size() } else { None };
    // Over the API's own connection settings (TLS, credentials): on 101 the exec's frames.
    let stream = client.api.upgrade(&path, PROTOCOL).await?;
    let terminal = if tty {
        Some(RawTerminal::enter().map_err(|e| fail!("cannot use the terminal: {e}"))?)
    } else {
        None
    };
    let outcome = session(stream, args.stdin, tty.then_some(size)).await;
    // The terminal is itself again before anything is printed.
    drop(terminal);
    let status = outcome?;
    exit_code(&status)
}

/// `attach`: joins the process a container runs, as kubectl's `attach`. The container's output
/// from now on comes back; with `-i`, stdin goes to the container's stdin (when the pod
/// declares one). The terminal follows the container: `-t` without one is dropped with
/// kubectl's warning, and a container with a terminal is attached as one. Ends when the
/// container does, or at ^C (the container goes on; with `stdinOnce`, its stdin closes).
pub async fn attach(args: AttachArgs) -> CliResult<ExitCode> {
    let args = args.session;
    let (client, pod, container) = target(&args, "attach").await?;
    let status = attach_to(
        &client,
        &pod,
        &container,
        (args.stdin, args.tty),
        args.quiet,
    )
    .await?;
    exit_code(&status)
}

/// Attaches to `container` of `pod` (`stdin`, `tty` as asked: `-i`, `-t`); answers the
/// session's status.
pub async fn attach_to(
    client: &Client,
    pod: &Value,
    container: &str,
    (stdin, asked_tty): (bool, bool),
    quiet: bool,
) -> CliResult<Value> {
    let allocated = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|c| c["name"] == container)
        .is_some_and(|c| c["tty"] == true);
    let tty = match (asked_tty, allocated) {
        (true, false) => {
            if !quiet {
                eprintln!(
                    "error: Unable to use a TTY - container {container} did not allocate one"
                );
            }
            false
        }
        // The container's output is a terminal's: it comes as one stream either way.
        (_, allocated) => allocated,
    };
    let raw = tty && stdin && std::io::stdin().is_terminal();
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/attach?{}",
        str_at(pod, "/metadata/namespace"),
        str_at(pod, "/metadata/name"),
        query(&[], container, stdin, tty)
    );
    let size = if raw { terminal_size() } else { None };
    let stream = client.api.upgrade(&path, PROTOCOL).await?;
    if raw && !quiet {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    let terminal = if raw {
        Some(RawTerminal::enter().map_err(|e| fail!("cannot use the terminal: {e}"))?)
    } else {
        None
    };
    let outcome = session(stream, stdin, raw.then_some(size)).await;
    drop(terminal);
    outcome
}

/// The exit status for how the command ended; kubectl's message for a non-zero exit code.
pub fn exit_code(status: &Value) -> CliResult<ExitCode> {
    if status["status"] == "Success" {
        return Ok(ExitCode::SUCCESS);
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.trim().parse::<i64>().ok());
        if let Some(code) = code {
            eprintln!("command terminated with exit code {code}");
            let code = u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1);
            return Ok(ExitCode::from(code));
        }
    }
    match status["message"].as_str().filter(|m| !m.is_empty()) {
        Some(message) => Err(fail!("{message}")),
        None => Err(fail!("the command failed: {status}")),
    }
}

/// Appends one frame (split when longer than the most a frame carries).
fn encode(out: &mut Vec<u8>, channel: u8, payload: &[u8]) {
    let mut chunks = payload.chunks(MAX_FRAME).peekable();
    if chunks.peek().is_none() {
        out.push(channel);
        out.extend_from_slice(&0u32.to_be_bytes());
    }
    for chunk in chunks {
        out.push(channel);
        // A chunk is at most MAX_FRAME (1 MiB) long.
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The next frame, `None` at a clean end between frames.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..]).await?,
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes: the most is {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

/// Runs the exec on `stream` after the `101`: stdin (and, with a terminal, its size now if
/// known and whenever it changes) out, output in, until the server passes on how the command
/// ended (that `Status`).
async fn session<S>(stream: S, stdin: bool, tty: Option<Option<(u16, u16)>>) -> CliResult<Value>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let (to_server, mut outgoing) = mpsc::channel::<(u8, Vec<u8>)>(8);
    // One task writes every frame to the server.
    tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some((channel, payload)) = outgoing.recv().await {
            out.clear();
            encode(&mut out, channel, &payload);
            if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
                return;
            }
        }
        // Nothing more to send: the connection stays open for what comes back.
        std::future::pending::<()>().await;
    });
    if let Some(size) = tty {
        if let Some(size) = size {
            // The channel is empty: this cannot fail for want of room.
            let _ = to_server.try_send((RESIZE, size_json(size)));
        }
        follow_terminal_size(to_server.clone());
    }
    if stdin {
        forward_stdin(to_server.clone());
    }
    drop(to_server);
    loop {
        let frame = read_frame(&mut read)
            .await
            .map_err(|e| fail!("the connection to the server broke: {e}"))?;
        match frame {
            Some((STDOUT, data)) => {
                let mut out = std::io::stdout().lock();
                // A reader that went away (`| head`) only loses the rest.
                let _ = out.write_all(&data).and_then(|()| out.flush());
            }
            Some((STDERR, data)) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&data).and_then(|()| err.flush());
            }
            Some((ERROR, data)) => {
                return serde_json::from_slice(&data).map_err(|e| {
                    fail!(
                        "error stream protocol error: {e} in {:?}",
                        String::from_utf8_lossy(&data)
                    )
                });
            }
            Some(_) => {}
            None => {
                return Err(fail!(
                    "the connection to the server closed before the command finished"
                ))
            }
        }
    }
}

/// Reads stdin on a thread of its own (a blocking read of a terminal cannot be cancelled; the
/// thread does not keep the process alive) and sends it, then its end.
fn forward_stdin(to_server: mpsc::Sender<(u8, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to_server.blocking_send((STDIN, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = to_server.blocking_send((STDIN, Vec::new()));
    });
}

/// A terminal size as the resize channel carries it.
fn size_json((width, height): (u16, u16)) -> Vec<u8> {
    format!("{{\"Width\":{width},\"Height\":{height}}}").into_bytes()
}

/// Sends the terminal's size whenever it changes (SIGWINCH).
fn follow_terminal_size(to_server: mpsc::Sender<(u8, Vec<u8>)>) {
    let mut changes =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::debug!(error = %e, "cannot follow the terminal's size");
                return;
            }
        };
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            if let Some(size) = terminal_size() {
                if to_server.send((RESIZE, size_json(size))).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// Runs `stty ARGS` on the terminal that is stdin; its output.
fn stty(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run stty: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "stty {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The terminal's size: (columns, rows).
fn terminal_size() -> Option<(u16, u16)> {
    parse_size(&stty(&["size"]).ok()?)
}

/// `stty size`'s "ROWS COLUMNS" as (columns, rows).
fn parse_size(text: &str) -> Option<(u16, u16)> {
    let mut words = text.split_whitespace();
    let rows = words.next()?.parse().ok()?;
    let columns = words.next()?.parse().ok()?;
    Some((columns, rows))
}

/// The local terminal in raw mode: keys go to the command as typed, and nothing is echoed
/// twice. Its settings are restored when this is dropped.
struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal, String> {
        let saved = stty(&["-g"])?;
        stty(&["raw", "-echo"])?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Err(e) = stty(&[&self.saved]) {
            eprintln!("warning: cannot restore the terminal ({e}); `stty sane` does");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_container_defaults_as_kubectls() {
        let pod = |annotation: Option<&str>, containers: &[&str]| {
            let mut pod = json!({
                "metadata": {"name": "web"},
                "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
            });
            if let Some(a) = annotation {
                pod["metadata"]["annotations"] = json!({ DEFAULT_CONTAINER: a });
            }
            pod
        };
        assert_eq!(container_of(&pod(None, &["a"]), None).unwrap(), "a");
        assert_eq!(
            container_of(&pod(None, &["a", "b"]), Some("b")).unwrap(),
            "b"
        );
        assert_eq!(
            container_of(&pod(Some("b"), &["a", "b"]), None).unwrap(),
            "b"
        );
        assert_eq!(
            container_of(&pod(Some("gone"), &["a", "b"]), None)
                .unwrap_err()
                .to_string(),
            "error: a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(container_of(&pod(Some("gone"), &["a"]), None).unwrap(), "a");
    }

    #[test]
    fn the_query_carries_each_argument_escaped() {
        let command: Vec<String> = ["sh", "-c", "echo a&b=c ü"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            query(&command, "main", true, false),
            "command=sh&command=-c&command=echo%20a%26b%3Dc%20%C3%BC&container=main&stdin=true&stdout=true&stderr=true&tty=false"
        );
        assert!(query(&command, "main", true, true).ends_with("stderr=false&tty=true"));
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        let ok = json!({"metadata": {}, "status": "Success"});
        assert_eq!(exit_code(&ok).unwrap(), ExitCode::SUCCESS);
        let three = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_code(&three).unwrap(), ExitCode::from(3));
        let failed = json!({"status": "Failure", "message": "container main is not running"});
        assert_eq!(
            exit_code(&failed).unwrap_err().to_string(),
            "error: container main is not running"
        );
    }

    #[test]
    fn stty_sizes_are_rows_then_columns() {
        assert_eq!(parse_size("24 80\n"), Some((80, 24)));
        assert_eq!(parse_size("24"), None);
        assert_eq!(parse_size("a b"), None);
    }

    /// A session against a fake server: stdin is not read (no `-i`), output goes to the test's
    /// stdout and stderr, and the status ends it.
    #[tokio::test]
    async fn a_session_ends_with_the_status() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut wire = Vec::new();
        encode(&mut wire, STDOUT, b"");
        encode(&mut wire, 9, b"unknown channels are ignored");
        encode(&mut wire, ERROR, br#"{"metadata":{},"status":"Success"}"#);
        server.write_all(&wire).await.unwrap();
        let status = session(client, false, None).await.unwrap();
        assert_eq!(status["status"], "Success");

        let (client, mut server) = tokio::io::duplex(1 << 16);
        server.write_all(&[STDOUT, 0, 0]).await.unwrap();
        drop(server);
        assert!(session(client, false, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("broke"));

        let (client, server) = tokio::io::duplex(1 << 16);
        drop(server);
        assert!(session(client, false, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("closed before the command finished"));
    }

    #[test]
    fn long_payloads_are_split_into_frames() {
        let mut out = Vec::new();
        encode(&mut out, STDIN, &vec![7u8; MAX_FRAME + 1]);
        assert_eq!(out.len(), 2 * 5 + MAX_FRAME + 1);
        assert_eq!(&out[1..5], &(MAX_FRAME as u32).to_be_bytes());
        let mut empty = Vec::new();
        encode(&mut empty, STDIN, b"");
        assert_eq!(empty, [0, 0, 0, 0, 0]);
    }
}
