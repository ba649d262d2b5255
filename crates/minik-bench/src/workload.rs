//! The HTTP side of the benchmark: the pod every create sends, a keep-alive client, and the load
//! loops (creates, GETs, LISTs, watch delivery), each bounded in count and in time.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The annotation that carries when the writer sent a create, in nanoseconds since the run's
/// epoch, so a watcher can tell how long the event took to reach it.
pub const SENT_ANNOTATION: &str = "bench.minik.io/sent-ns";
const NAME_MARK: &str = "@@NAME@@";
const SENT_MARK: &str = "@@SENT@@";

/// A realistic pod (labels, annotations, one container with command, args, env, ports,
/// resources and a probe) padded to about a target size, with the name and the send time left
/// as marks so that rendering one is a string substitution, not JSON encoding.
pub struct PodTemplate {
    text: String,
}

impl PodTemplate {
    /// With `node` set, every pod is created already bound to that node (`spec.nodeName`), so
    /// the scheduler in the server has nothing to do for it.
    pub fn new(target_bytes: usize, node: Option<&str>) -> PodTemplate {
        let build = |note: &str| {
            let mut pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": NAME_MARK,
                    "labels": {
                        "app": "bench-web",
                        "app.kubernetes.io/instance": NAME_MARK,
                        "app.kubernetes.io/part-of": "minik-bench",
                        "tier": "frontend",
                        "track": "stable",
                    },
                    "annotations": {
                        SENT_ANNOTATION: SENT_MARK,
                        "bench.minik.io/note": note,
                    },
                },
                "spec": {
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "web",
                        "image": "docker.io/library/busybox:1.36",
                        "command": ["/bin/sh", "-c"],
                        "args": ["while true; do echo serving requests on 8080; sleep 5; done"],
                        "workingDir": "/srv",
                        "env": [
                            {"name": "MODE", "value": "production"},
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "LISTEN_ADDR", "value": "0.0.0.0:8080"},
                            {"name": "METRICS_ADDR", "value": "0.0.0.0:9090"},
                            {"name": "UPSTREAM_URL", "value": "http://backend.default.svc.cluster.local:8080"},
                        ],
                        "ports": [
                            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                        ],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": 8080},
                            "periodSeconds": 5,
                        },
                    }],
                },
            });
            if let Some(node) = node {
                pod["spec"]["nodeName"] = json!(node);
            }
            pod.to_string()
        };
        let pad = target_bytes.saturating_sub(build("").len());
        let sentence =
            "A pod the benchmark creates; this note pads it to the size of a typical pod. ";
        let note: String = sentence.chars().cycle().take(pad).collect();
        PodTemplate { text: build(&note) }
    }

    /// The pod named `name`, stamped as sent at `sent_ns` after the epoch.
    pub fn render(&self, name: &str, sent_ns: u64) -> String {
        self.text
            .replace(NAME_MARK, name)
            .replace(SENT_MARK, &sent_ns.to_string())
    }
}

/// A pod name with a fixed-width index, so every rendered pod has the same size.
pub fn pod_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:06}")
}

/// An HTTP/1.1 client with a keep-alive pool big enough for every worker; no proxy (loopback).
/// `request_timeout` bounds each whole request (not used for watches).
pub fn client(pool: usize, request_timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .connect_timeout(Duration::from_secs(5));
    if let Some(timeout) = request_timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().context("cannot build the HTTP client")
}

/// What a load loop did: successes with their latencies, failures, and the wall time.
#[derive(Debug, Default)]
pub struct Load {
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Bytes of the answers that succeeded.
    pub bytes: usize,
    /// For loops that number their requests (creates): the numbers that succeeded.
    pub succeeded: Vec<usize>,
}

impl Load {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Requests sent, successful or not.
    pub fn attempts(&self) -> usize {
        self.ok + self.errors
    }

    fn record(&mut self, latency: Duration, outcome: Result<usize, String>) {
        match outcome {
            Ok(bytes) => {
                self.ok += 1;
                self.bytes += bytes;
                self.latencies.push(latency);
            }
            Err(e) => self.error(e),
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    /// Adds another run of the same loop, its wall time included.
    pub fn add_round(&mut self, other: Load) {
        self.elapsed += other.elapsed;
        self.merge(other);
    }

    fn merge(&mut self, other: Load) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.latencies.extend(other.latencies);
        self.succeeded.extend(other.succeeded);
        if let Some(e) = other.first_error {
            self.first_error.get_or_insert(e);
        }
    }

    /// The errors, for a progress line: empty when there were none.
    pub fn error_note(&self) -> String {
        match &self.first_error {
            Some(e) => format!(" — {} errors, first: {e}", self.errors),
            None => String::new(),
        }
    }
}

/// Sends a request, reads the whole answer (so the connection goes back to the pool) and
/// checks its status; returns the answer's size.
async fn exchange(request: reqwest::RequestBuilder, expected: StatusCode) -> Result<Bytes, String> {
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| error_chain(&e))?;
    if status != expected {
        let shown = &body[..body.len().min(400)];
        return Err(format!("{status}: {}", String::from_utf8_lossy(shown)));
    }
    Ok(body)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What every load loop shares: the client, the server, the pod, the clock, the concurrency.
#[derive(Clone)]
pub struct Ctx {
    pub http: reqwest::Client,
    pub base: String,
    pub template: Arc<PodTemplate>,
    /// The instant send times are counted from.
    pub epoch: Instant,
    pub clients: usize,
    /// The longest any one loop may run.
    pub time_limit: Duration,
}

impl Ctx {
    fn pods_url(&self, namespace: &str) -> String {
        format!("{}/api/v1/namespaces/{namespace}/pods", self.base)
    }

    fn since_epoch(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Creates a namespace (an existing one is fine).
pub async fn ensure_namespace(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let response = ctx
        .http
        .post(format!("{}/api/v1/namespaces", ctx.base))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot create namespace {name}"))?;
    let status = response.status();
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!(
            "creating namespace {name} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Creates the pods `{prefix}-{i}` for `i` in `indices` in `namespace`, with `ctx.clients`
/// concurrent clients, until done or `ctx.time_limit`.
pub async fn create_pods(ctx: &Ctx, namespace: &str, prefix: &str, indices: Range<usize>) -> Load {
    let url = Arc::new(ctx.pods_url(namespace));
    let prefix: Arc<str> = prefix.into();
    let next = Arc::new(AtomicUsize::new(indices.start));
    let started = Instant::now();
    let workers: Vec<_> = (0..ctx.clients)
        .map(|_| {
            let (ctx, url, prefix, next, end) = (
                ctx.clone(),
                url.clone(),
                prefix.clone(),
                next.clone(),
                indices.end,
            );
            tokio::spawn(async move {
                let mut load = Load::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end || started.elapsed() >= ctx.time_limit {
                        return load;
                    }
                    let sent = ctx.since_epoch();
                    let body = ctx
                        .template
                        .render(&pod_name(&prefix, i), sent.as_nanos() as u64);
                    let request = ctx
                        .http
                        .post(url.as_str())
                        .header(CONTENT_TYPE, "application/json")
                        .body(body);
                    let outcome = exchange(request, StatusCode::CREATED)
                        .await
                        .map(|b| b.len());
                    if outcome.is_ok() {
                        load.succeeded.push(i);
                    }
                    load.record(ctx.since_epoch().saturating_sub(sent), outcome);
                }
            })
        })
        .collect();
    gather(workers, started).await
}

/// GETs `paths` (picked at random) with `ctx.clients` concurrent clients for `duration` or
/// `max_requests` requests, whichever comes first.
pub async fn get_paths(
    ctx: &Ctx,
    paths: Arc<Vec<String>>,
    duration: Duration,
    max_requests: usize,
) -> Load {
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let limit = duration.min(ctx.time_limit);
    let workers: Vec<_> = (0..ctx.clients)
        .map(|worker| {
            let (ctx, paths, issued) = (ctx.clone(), paths.clone(), issued.clone());
            tokio::spawn(async move {
                let mut load = Load::default();
                let mut rng = XorShift::new(worker as u64);
                while started.elapsed() < limit
                    && issued.fetch_add(1, Ordering::Relaxed) < max_requests
                {
                    let path = &paths[rng.below(paths.len())];
                    let t = Instant::now();
                    let outcome = exchange(ctx.http.get(path.as_str()), StatusCode::OK)
                        .await
                        .map(|b| b.len());
                    load.record(t.elapsed(), outcome);
                }
                load
            })
        })
        .collect();
    gather(workers, started).await
}

async fn gather(workers: Vec<tokio::task::JoinHandle<Load>>, started: Instant) -> Load {
    let mut total = Load::default();
    for worker in workers {
        match worker.await {
            Ok(load) => total.merge(load),
            Err(e) => total.error(format!("a load worker failed: {e}")),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Lists the pods of `namespace` `runs` times, one after the other; returns the loop and the
/// last answer's body.
pub async fn list_pods(ctx: &Ctx, namespace: &str, runs: usize) -> anyhow::Result<(Load, Bytes)> {
    let url = ctx.pods_url(namespace);
    let started = Instant::now();
    let mut load = Load::default();
    let mut last = None;
    for _ in 0..runs {
        if started.elapsed() >= ctx.time_limit {
            break;
        }
        let t = Instant::now();
        let outcome = exchange(ctx.http.get(&url), StatusCode::OK).await;
        let latency = t.elapsed();
        load.record(
            latency,
            outcome.as_ref().map(Bytes::len).map_err(Clone::clone),
        );
        if let Ok(body) = outcome {
            last = Some(body);
        }
    }
    load.elapsed = started.elapsed();
    let body = last.with_context(|| format!("no LIST of {url} succeeded{}", load.error_note()))?;
    Ok((load, body))
}

/// The items of a list answer, each as compact JSON.
pub fn list_items(body: &[u8]) -> anyhow::Result<Vec<Bytes>> {
    let list: Value = serde_json::from_slice(body).context("the LIST answer is not JSON")?;
    let items = list["items"]
        .as_array()
        .context("the LIST answer has no items")?;
    items
        .iter()
        .map(|item| Ok(Bytes::from(serde_json::to_vec(item)?)))
        .collect()
}

/// What the watch test saw.
#[derive(Debug, Default)]
pub struct WatchOutcome {
    /// For each event each watcher got: its arrival minus the writer's send time.
    pub deliveries: Vec<Duration>,
    /// How many deliveries there should have been (watchers × pods created).
    pub expected: usize,
    /// The writer's creates, one at a time.
    pub creates: Load,
    /// Errors watchers met, one line each.
    pub watcher_errors: Vec<String>,
    /// From the first watch request to the last watch answering with its headers.
    pub setup: Duration,
}

/// `watchers` concurrent watches of the default namespace from the current revision; then one
/// writer creates `pods` pods, one every `interval`; every watcher times every event it gets.
pub async fn watch_delivery(
    ctx: &Ctx,
    watch_http: &reqwest::Client,
    watchers: usize,
    pods: usize,
    interval: Duration,
) -> anyhow::Result<WatchOutcome> {
    let revision = current_revision(ctx).await?;
    let url = format!(
        "{}?watch=true&resourceVersion={revision}",
        ctx.pods_url("default")
    );
    let deadline = tokio::time::Instant::now() + ctx.time_limit;
    let (ready_tx, mut ready_rx) = mpsc::channel(watchers.max(1));
    let setup_started = Instant::now();
    let tasks: Vec<_> = (0..watchers)
        .map(|_| {
            let (http, url, ready, epoch) =
                (watch_http.clone(), url.clone(), ready_tx.clone(), ctx.epoch);
            tokio::spawn(watch_one(http, url, pods, epoch, ready, deadline))
        })
        .collect();
    drop(ready_tx);
    let abort_all = || tasks.iter().for_each(|t| t.abort());
    // Every watch must be registered before the first create, or its first deliveries would be
    // replays and look slow. The server subscribes before it answers with headers.
    let mut answered = 0;
    while answered < watchers {
        match tokio::time::timeout(Duration::from_secs(15), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => answered += 1,
            Ok(Some(Err(e))) => {
                abort_all();
                bail!("a watch failed to start: {e}");
            }
            Ok(None) | Err(_) => {
                abort_all();
                bail!("only {answered} of {watchers} watches answered within 15 s");
            }
        }
    }
    let setup = setup_started.elapsed();

    let create_url = ctx.pods_url("default");
    let mut creates = Load::default();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for i in 0..pods {
        ticker.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let sent = ctx.since_epoch();
        let body = ctx
            .template
            .render(&pod_name("watch", i), sent.as_nanos() as u64);
        let request = ctx
            .http
            .post(&create_url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let outcome = exchange(request, StatusCode::CREATED)
            .await
            .map(|b| b.len());
        creates.record(ctx.since_epoch().saturating_sub(sent), outcome);
    }
    creates.elapsed = started.elapsed();

    let mut outcome = WatchOutcome {
        expected: watchers * creates.ok,
        creates,
        setup,
        ..WatchOutcome::default()
    };
    for task in tasks {
        match task.await {
            Ok(seen) => {
                outcome.deliveries.extend(seen.deliveries);
                outcome.watcher_errors.extend(seen.error);
            }
            Err(e) => outcome
                .watcher_errors
                .push(format!("a watcher task failed: {e}")),
        }
    }
    Ok(outcome)
}

/// The store's current revision, from a list of a namespace that holds no pods (cheap, and as
/// current as any list): every durable write anywhere moves it by one.
pub async fn current_revision(ctx: &Ctx) -> anyhow::Result<u64> {
    let body = exchange(ctx.http.get(ctx.pods_url("kube-system")), StatusCode::OK)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the current resourceVersion: {e}"))?;
    let list: Value = serde_json::from_slice(&body).context("the list answer is not JSON")?;
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .context("the list answer has no numeric metadata.resourceVersion")
}

/// What one watcher saw.
struct Seen {
    deliveries: Vec<Duration>,
    error: Option<String>,
}

/// One watch connection: times every ADDED event that carries a send time until it has seen
/// `expected` of them, the stream ends, or the deadline.
async fn watch_one(
    http: reqwest::Client,
    url: String,
    expected: usize,
    epoch: Instant,
    ready: mpsc::Sender<Result<(), String>>,
    deadline: tokio::time::Instant,
) -> Seen {
    let mut seen = Seen {
        deliveries: Vec::with_capacity(expected),
        error: None,
    };
    let response = match http.get(&url).send().await {
        Ok(r) if r.status() == StatusCode::OK => r,
        Ok(r) => {
            let e = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
            let _ = ready.send(Err(e.clone())).await;
            seen.error = Some(e);
            return seen;
        }
        Err(e) => {
            let e = error_chain(&e);
            let _ = ready.send(Err(e.clone())).await;
            seen.error = Some(e);
            return seen;
        }
    };
    let _ = ready.send(Ok(())).await;
    drop(ready);
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while seen.deliveries.len() < expected {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => {
                seen.error = Some(format!("the watch stream failed: {}", error_chain(&e)));
                break;
            }
            Ok(None) => {
                seen.error = Some("the server ended the watch".into());
                break;
            }
            Err(_) => {
                seen.error = Some(format!(
                    "saw {} of {expected} events before the deadline",
                    seen.deliveries.len()
                ));
                break;
            }
        };
        // Every line ending in this chunk arrived now.
        let arrived = epoch.elapsed();
        pending.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = pending[consumed..].iter().position(|b| *b == b'\n') {
            let line = &pending[consumed..consumed + end];
            consumed += end + 1;
            if line.starts_with(b"{\"type\":\"ERROR\"") {
                seen.error = Some(format!("ERROR event: {}", String::from_utf8_lossy(line)));
                return seen;
            }
            if line.starts_with(b"{\"type\":\"ADDED\"") {
                if let Some(sent) = sent_ns(line) {
                    seen.deliveries
                        .push(arrived.saturating_sub(Duration::from_nanos(sent)));
                }
            }
        }
        pending.drain(..consumed);
    }
    seen
}

/// The send time in a watch event's object, found by its annotation without parsing the JSON.
fn sent_ns(line: &[u8]) -> Option<u64> {
    let key = format!("\"{SENT_ANNOTATION}\":\"");
    let key = key.as_bytes();
    let start = line.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// A small deterministic generator for picking which pod to GET.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_is_about_the_target_size_and_valid_json() {
        let template = PodTemplate::new(1500, None);
        let pod = template.render(&pod_name("bench", 42), 123_456_789);
        let len = pod.len();
        assert!((1450..=1550).contains(&len), "{len}");
        let v: Value = serde_json::from_str(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "bench-000042");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/instance"],
            "bench-000042"
        );
        assert_eq!(v["metadata"]["annotations"][SENT_ANNOTATION], "123456789");
    }

    #[test]
    fn bound_pods_name_their_node() {
        let pod = PodTemplate::new(1500, Some("bench-node")).render("bench-000001", 1);
        let v: Value = serde_json::from_str(&pod).unwrap();
        assert_eq!(v["spec"]["nodeName"], "bench-node");
        assert!((1450..=1550).contains(&pod.len()), "{}", pod.len());
    }

    #[test]
    fn send_time_is_found_in_an_event_line() {
        let template = PodTemplate::new(1500, None);
        let pod = template.render("watch-000001", 987_654_321);
        let line = format!("{{\"type\":\"ADDED\",\"object\":{pod}}}");
        assert_eq!(sent_ns(line.as_bytes()), Some(987_654_321));
        assert_eq!(sent_ns(b"{\"type\":\"ADDED\",\"object\":{}}"), None);
    }

    #[test]
    fn random_picks_stay_in_range() {
        let mut rng = XorShift::new(3);
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.below(0), 0);
    }
}
