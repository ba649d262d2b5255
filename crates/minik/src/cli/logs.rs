//! `logs`: containers' logs through the API server (`pods/{name}/log`), optionally followed.
//! `deploy/NAME` (or `rs/`, `rc/`, `svc/`) picks a pod of the workload's selector and `-l`
//! prints the logs of every pod that matches, as kubectl does.

use std::io::Write;

use futures::StreamExt;
use minik_client::{Api, ListParams};
use serde_json::Value;

use super::{fail, pick, resource, CliError, CliResult, Client, ClientFlags};

/// The annotation that names the container `logs` (and kubectl's exec) use by default.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// POD, pod/NAME, or deploy|rs|rc|svc/NAME (a pod of the workload); not with -l.
    target: Option<String>,
    /// The container (default: the pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Every container of the pod(s).
    #[arg(long)]
    all_containers: bool,
    /// Keeps printing as the log grows.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines (default: all, or 10 with -l).
    #[arg(long, allow_negative_numbers = true)]
    tail: Option<i64>,
    /// The log of the previous, terminated instance of the container.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Prefixes each line with its timestamp.
    #[arg(long)]
    timestamps: bool,
    /// The logs of every pod whose labels match this selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Prefixes each line with where it comes from: `[pod/NAME/CONTAINER] `.
    #[arg(long)]
    prefix: bool,
    /// With -f, how many logs may be followed at once.
    #[arg(long, default_value_t = 5)]
    max_log_requests: usize,
}

/// Which pods `logs` shows.
enum Pick {
    /// `POD` or `KIND/NAME`.
    Target(String),
    /// `-l SELECTOR`.
    Selector(String),
}

/// The validated settings of `logs`.
struct LogsSettings {
    pick: Pick,
    /// The query every log request carries (the container is added per stream).
    query: Vec<(&'static str, String)>,
    prefix: bool,
}

impl LogsArgs {
    fn settings(&self) -> CliResult<LogsSettings> {
        let pick = match (&self.target, &self.selector) {
            (Some(_), Some(_)) => {
                return Err(fail!(
                    "only a selector (-l) or a POD name is allowed, not both"
                ))
            }
            (None, None) => {
                return Err(fail!(
                    "expected POD, TYPE/NAME or -l selector: minik logs POD [-c CONTAINER]"
                ))
            }
            (Some(target), None) => Pick::Target(target.clone()),
            (None, Some(selector)) => Pick::Selector(selector.clone()),
        };
        if self.all_containers && self.container.is_some() {
            return Err(fail!(
                "--all-containers=true should not be specified with container name {}",
                self.container.as_deref().unwrap_or_default()
            ));
        }
        // kubectl shows the last 10 lines of each pod when a selector picks them.
        let tail = match self.tail {
            Some(n) if n < -1 => return Err(fail!("--tail must be -1 or more, not {n}")),
            Some(n) => n,
            None if self.selector.is_some() => 10,
            None => -1,
        };
        let mut query = Vec::new();
        if self.follow {
            query.push(("follow", "true".to_owned()));
        }
        if tail >= 0 {
            query.push(("tailLines", tail.to_string()));
        }
        if self.previous {
            query.push(("previous", "true".to_owned()));
        }
        if self.timestamps {
            query.push(("timestamps", "true".to_owned()));
        }
        Ok(LogsSettings {
            pick,
            query,
            prefix: self.prefix,
        })
    }
}

/// One log to print: a container of a pod.
struct LogSource {
    pod: String,
    container: String,
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn containers_of(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The pods a target names: itself, or the pod kubectl would pick from a workload.
async fn pods_of_target(client: &Client, target: &str) -> CliResult<Vec<Value>> {
    let picked = pick::pod_of_target(client, target, "get the logs of").await?;
    if picked.matched > 1 {
        eprintln!(
            "Found {} pods, using pod/{}",
            picked.matched,
            name_of(&picked.pod)
        );
    }
    Ok(vec![picked.pod])
}

/// The container logs to print for the chosen pods.
fn sources(args: &LogsArgs, pods: &[Value]) -> CliResult<Vec<LogSource>> {
    let mut out = Vec::new();
    for pod in pods {
        let name = name_of(pod).to_owned();
        let containers = containers_of(pod);
        let chosen: Vec<String> = if args.all_containers {
            containers
        } else if let Some(c) = &args.container {
            // The server says which containers exist when this one does not.
            vec![c.clone()]
        } else {
            let default = pod
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_CONTAINER))
                .and_then(Value::as_str)
                .filter(|d| containers.iter().any(|c| c == d))
                .map(str::to_owned);
            let Some(first) = default.clone().or_else(|| containers.first().cloned()) else {
                return Err(fail!("pod {name} has no containers"));
            };
            if containers.len() > 1 && default.is_none() && args.selector.is_none() {
                eprintln!(
                    "Defaulted container \"{first}\" out of: {}",
                    containers.join(", ")
                );
            }
            vec![first]
        };
        out.extend(chosen.into_iter().map(|container| LogSource {
            pod: name.clone(),
            container,
        }));
    }
    Ok(out)
}

/// Percent-encodes a path segment.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type Chunks = futures::stream::BoxStream<'static, Result<Vec<u8>, minik_api::ApiError>>;

async fn open(client: &Client, settings: &LogsSettings, source: &LogSource) -> CliResult<Chunks> {
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/log",
        encode(&client.settings.namespace),
        encode(&source.pod)
    );
    let mut query = settings.query.clone();
    query.push(("container", source.container.clone()));
    Ok(client.api.get_stream(&path, &query).await?)
}

/// Writes to stdout; `false` once stdout is closed (`| head`), which ends the command quietly,
/// as kubectl does.
fn emit(data: &[u8]) -> bool {
    let mut stdout = std::io::stdout();
    stdout.write_all(data).and_then(|()| stdout.flush()).is_ok()
}

/// Splits a stream into lines, each with `prefix` before it (the last one may lack its newline).
fn prefixed(prefix: &str, pending: &mut Vec<u8>, data: &[u8], end: bool) -> Vec<u8> {
    pending.extend_from_slice(data);
    let mut out = Vec::new();
    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend(pending.drain(..=pos));
    }
    if end && !pending.is_empty() {
        out.extend_from_slice(prefix.as_bytes());
        out.append(pending);
        out.push(b'\n');
    }
    out
}

pub async fn run(args: LogsArgs) -> CliResult {
    let settings = args.settings()?;
    let client = Client::new(&args.client)?;
    let pods = match &settings.pick {
        Pick::Target(target) => pods_of_target(&client, target).await?,
        Pick::Selector(selector) => {
            let pods = resource("pods")?;
            let mut list = client
                .api
                .list(
                    pods,
                    client.ns_for(pods),
                    &ListParams::labels(selector.clone()),
                )
                .await?
                .items;
            list.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            if list.is_empty() {
                eprintln!(
                    "No resources found in {} namespace.",
                    client.settings.namespace
                );
                return Ok(());
            }
            list
        }
    };
    let sources = sources(&args, &pods)?;
    if args.follow && sources.len() > args.max_log_requests {
        return Err(fail!(
            "you are attempting to follow {} log streams, but maximum allowed concurrency is {}, use --max-log-requests to increase the limit",
            sources.len(),
            args.max_log_requests
        ));
    }
    let prefix_of = |s: &LogSource| {
        if settings.prefix {
            format!("[pod/{}/{}] ", s.pod, s.container)
        } else {
            String::new()
        }
    };
    if args.follow && sources.len() > 1 {
        return follow_all(&client, &settings, &sources, prefix_of).await;
    }
    // One after the other: each log in full.
    for source in &sources {
        let prefix = prefix_of(source);
        let mut stream = open(&client, &settings, source).await?;
        let mut pending = Vec::new();
        loop {
            let (data, end) = match stream.next().await {
                Some(Ok(data)) => (data, false),
                Some(Err(e)) => return Err(CliError::from(e)),
                None => (Vec::new(), true),
            };
            let out = if prefix.is_empty() {
                data
            } else {
                prefixed(&prefix, &mut pending, &data, end)
            };
            if !emit(&out) {
                return Ok(());
            }
            if end {
                break;
            }
        }
    }
    Ok(())
}

/// Follows several logs at once, printing whole lines as they come so lines of different pods
/// never interleave mid-line.
async fn follow_all(
    client: &Client,
    settings: &LogsSettings,
    sources: &[LogSource],
    prefix_of: impl Fn(&LogSource) -> String,
) -> CliResult {
    let mut streams = Vec::new();
    for source in sources {
        let prefix = prefix_of(source);
        let stream = open(client, settings, source).await?;
        let mut pending = Vec::new();
        streams.push(
            stream
                .map(Some)
                .chain(futures::stream::once(async { None }))
                .map(move |item| match item {
                    Some(Ok(data)) => Ok(prefixed(&prefix, &mut pending, &data, false)),
                    Some(Err(e)) => Err(e),
                    None => Ok(prefixed(&prefix, &mut pending, &[], true)),
                })
                .boxed(),
        );
    }
    let mut all = futures::stream::select_all(streams);
    while let Some(item) = all.next().await {
        let out = item?;
        if !emit(&out) {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_get_their_prefix_even_when_split_across_chunks() {
        let mut pending = Vec::new();
        let mut out = prefixed("[p] ", &mut pending, b"one\ntw", false);
        out.extend(prefixed("[p] ", &mut pending, b"o\nthr", false));
        out.extend(prefixed("[p] ", &mut pending, b"ee", true));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "[p] one\n[p] two\n[p] three\n"
        );
    }
}
